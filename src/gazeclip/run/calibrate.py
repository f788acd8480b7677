"""Thresholds calibrated on the validation split (never on test), stored in RUN/calibration.json.

- Detection threshold: a face is called fake when p_fake >= it. Default rule `balanced`: the cut
  that maximises balanced accuracy (mean of the real and fake recall) on validation faces, placed
  midway between the two validation scores it separates; ties go to the widest gap. Rule `fpr`:
  the lowest cut at which at most `detection_target_fpr` of the real validation faces are called
  fake. (Design choice, not from the paper, which reports threshold-free AUC.)
- Unknown-generator threshold: validation holds only seen generators, so "unknown" is defined by
  what known generators look like: the `unknown_quantile` (default 5 %) quantile of the
  fake-conditional top probability p(g | fake) (gazeclip.run.verdict) over validation fakes
  whose generator is named correctly. A fake face whose p(g | fake) falls below it is flagged
  `unknown_generator` (design choice, not from the paper).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import utils as U
from .verdict import DEFAULT_DETECTION_THRESHOLD, top_fake

CALIBRATION_VERSION = 2  # 2: fake-conditional unknown score + detection threshold


def threshold_from(logits: np.ndarray, labels: np.ndarray, quantile: float) -> tuple[float, int]:
    """Unknown-generator threshold from validation logits (column 0 = real) and labels (0 = real,
    -1 = ignored): the `quantile` of p(named generator | fake) over fakes named correctly (all
    fakes if none is). Returns (threshold, number of faces it rests on); (0.0, 0) without fakes."""
    labels = np.asarray(labels)
    fake = labels > 0
    if not fake.any():
        return 0.0, 0
    idx, conf = top_fake(np.asarray(logits)[fake])
    ok = idx == labels[fake]
    use = conf[ok] if ok.any() else conf  # nothing named correctly: fall back to all fakes
    return float(np.quantile(use, quantile)), int(use.size)


def _cuts(scores: np.ndarray) -> np.ndarray:
    """Candidate thresholds: below all, between consecutive distinct scores, above all."""
    u = np.unique(scores)
    mids = (u[:-1] + u[1:]) / 2
    lo = u[0] - 1e-6 if u[0] > 0 else u[0]
    return np.concatenate([[lo], mids, [np.nextafter(u[-1], np.inf)]])


def detection_threshold_from(is_fake: np.ndarray, p_fake: np.ndarray, rule: str = "balanced",
                             target_fpr: float = 0.05) -> dict:
    """The detection threshold from validation faces. Returns {"threshold", "rule", "n_real",
    "n_fake", "val_fpr", "val_tpr"}; rule "fallback" (threshold 0.5) when the split lacks a class."""
    y = np.asarray(is_fake).astype(bool)
    s = np.asarray(p_fake, dtype=np.float64)
    n_real, n_fake = int((~y).sum()), int(y.sum())
    if rule not in ("balanced", "fpr"):
        raise ValueError(f"detection threshold rule {rule!r}: use balanced or fpr")
    if n_real == 0 or n_fake == 0:
        t, used = DEFAULT_DETECTION_THRESHOLD, "fallback"
    else:
        cuts = _cuts(s)
        tpr = (s[y][None, :] >= cuts[:, None]).mean(1)
        fpr = (s[~y][None, :] >= cuts[:, None]).mean(1)
        if rule == "balanced":
            bal = (tpr + 1 - fpr) / 2
            best = np.flatnonzero(np.isclose(bal, bal.max()))
            u = np.unique(s)
            # gap around each cut: the distance between the scores it separates (ends: infinite)
            gaps = np.concatenate([[np.inf], np.diff(u), [np.inf]])
            t = float(cuts[best[np.argmax(gaps[best])]])
        else:
            ok = np.flatnonzero(fpr <= target_fpr + 1e-12)
            t = float(cuts[ok[0]])  # the lowest cut meeting the target: the most fakes caught
        used = rule
    return {"threshold": t, "rule": used, "target_fpr": target_fpr if rule == "fpr" else None,
            "n_real": n_real, "n_fake": n_fake,
            "val_fpr": float((s[~y] >= t).mean()) if n_real else None,
            "val_tpr": float((s[y] >= t).mean()) if n_fake else None}


def calibration_record(logits: np.ndarray, labels: np.ndarray, is_fake: np.ndarray, p_fake: np.ndarray,
                       unknown_quantile: float, rule: str = "balanced", target_fpr: float = 0.05) -> dict:
    thr, n = threshold_from(logits, labels, unknown_quantile)
    det = detection_threshold_from(is_fake, p_fake, rule, target_fpr)
    return {"version": CALIBRATION_VERSION, "split": "val",
            "unknown_threshold": thr, "quantile": unknown_quantile, "n_val_used": n,
            "detection_threshold": det["threshold"], "detection_rule": det["rule"],
            "detection_target_fpr": det["target_fpr"], "detection_n_real": det["n_real"],
            "detection_n_fake": det["n_fake"], "detection_val_fpr": det["val_fpr"],
            "detection_val_tpr": det["val_tpr"]}


def calibrate_run(run_dir: Path, val_ds, cfg, device, model) -> dict:
    from .modeling import run_model

    preds = run_model(model, val_ds, batch_size=32, device=device)
    rec = calibration_record(preds.attribution_logits, val_ds.labels, val_ds.is_fake, preds.p_fake,
                             cfg.unknown_quantile, cfg.detection_threshold_rule, cfg.detection_target_fpr)
    U.atomic_write_json(Path(run_dir) / "calibration.json", rec)
    return rec


def calibrate_fix(run_dir: str | Path) -> str:
    return f"calibrate it on the run's validation split: `gazeclip calibrate --run {run_dir}`"


def load_calibration(run_dir: str | Path) -> dict | None:
    """RUN/calibration.json (validated by `folder.read_calibration`: a damaged file raises
    `DamagedFileError` naming it), or None when absent or written before version 2 (its unknown
    threshold is on another score). Only for the steps that recalibrate such a run themselves
    (`eval`, `gazeclip calibrate`); everything else calls `require_calibration`."""
    from .folder import read_calibration

    p = Path(run_dir) / "calibration.json"
    if not p.is_file():
        return None
    rec = read_calibration(p, calibrate_fix(run_dir))
    return rec if rec["version"] >= CALIBRATION_VERSION else None


def require_calibration(run_dir: str | Path, fix: str | None = None) -> dict:
    """RUN/calibration.json, version 2: a missing or older file is refused with the command that
    fixes it, never replaced by a default threshold (0.5 and no unknown flag would silently change
    every verdict)."""
    from ..errors import DamagedFileError

    p = Path(run_dir) / "calibration.json"
    fix = fix or calibrate_fix(run_dir)
    if not p.is_file():
        raise DamagedFileError(p, "missing (it holds the run's detection and unknown-generator thresholds)", fix)
    rec = load_calibration(run_dir)
    if rec is None:
        raise DamagedFileError(p, "written by an older gazeclip (version 1: no detection threshold, its unknown "
                               "threshold on another score)", fix)
    return rec
