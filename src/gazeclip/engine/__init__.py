"""Training (single process and torchrun/DDP), evaluation, metrics, comparison, robustness and
prediction. Modules are imported on use (see docs/engine.md):

    config      TrainConfig (typed, with help text), YAML run configs
    trainer     train(): AdamW + warm-up/cosine, clipping, early stopping, atomic checkpoints, resume, DDP
    modeling    create/load models, run them over data, Predictions
    metrics     attribution / open-set / detection metrics, bootstrap intervals
    evaluate    evaluate(): metrics.json, report.md, plots;  load_run()
    compare     compare_runs(): side-by-side table with paired bootstrap intervals
    robustness  metrics under 5 perturbations x 5 severities
    predict     predict_paths(): per-face records for files and folders
    calibrate   the unknown-generator threshold from the validation split
    demo        the end-to-end demo flow
"""
