"""The unknown-generator threshold, calibrated on the validation split (never on test).

Validation holds only seen generators, so "unknown" is defined by what known generators look like:
the threshold is the `unknown_quantile` (default 5 %) quantile of the predicted-class probability
over validation fakes that the model attributes correctly. A face predicted fake whose generator
probability falls below it is flagged `unknown_generator` (design choice, not from the paper).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.special import softmax

from . import utils as U


def threshold_from(logits: np.ndarray, labels: np.ndarray, quantile: float) -> tuple[float, int]:
    prob = softmax(logits, axis=1)
    pred = prob.argmax(1)
    ok = (pred == labels) & (labels > 0)
    conf = prob[np.arange(len(pred)), pred][ok]
    if conf.size == 0:  # nothing attributed correctly: fall back to all fakes
        conf = prob.max(1)[labels > 0]
    if conf.size == 0:
        return 0.0, 0
    return float(np.quantile(conf, quantile)), int(conf.size)


def calibrate_run(run_dir: Path, val_ds, cfg, device, model) -> dict:
    from .modeling import run_model

    preds = run_model(model, val_ds, batch_size=32, device=device)
    thr, n = threshold_from(preds.attribution_logits, val_ds.labels, cfg.unknown_quantile)
    rec = {"unknown_threshold": thr, "quantile": cfg.unknown_quantile, "n_val_used": n, "split": "val"}
    U.atomic_write_json(run_dir / "calibration.json", rec)
    return rec
