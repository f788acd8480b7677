"""What every mode shares: the run configuration (`config.TrainConfig`), the run folder and its safe
readers (`folder`), loading a trained run (`loader.load_run` -> `LoadedRun`, torch or onnx
runtime), models created and run over data (`modeling`), thresholds calibrated on validation
(`calibrate`), the per-face decision rule (`verdict`), and devices, precision and
torch.distributed helpers (`utils`). Training, evaluation, inference and export build on this and
never import one another."""
