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
- Abstain limits (`AbstainLimits`, gazeclip.run.verdict): the `abstain_quantile` (default 0.5 %)
  quantile of the validation faces' size in source pixels, colourfulness and detector score, and
  the 1 - `abstain_quantile` quantile of their |pitch|, |yaw| and |roll|: a predict face beyond one
  of them is further from what the model was trained on than all but that share of validation
  faces, and gets "uncertain" (design choice, not from the paper).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DamagedFileError, UsageError
from ..records import QUALITY_FIELDS
from . import utils as U
from .folder import read_calibration
from .verdict import ABSTAIN_RULES, DEFAULT_DETECTION_THRESHOLD, AbstainLimits, top_fake

CALIBRATION_VERSION = 3  # 2: fake-conditional unknown score + detection threshold; 3: + abstain limits


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
        raise UsageError(f"detection threshold rule {rule!r}: use balanced or fpr")
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


def abstain_limits_from(quality: np.ndarray, quantile: float = 0.005,
                        rules: tuple[str, ...] | list[str] = ABSTAIN_RULES) -> AbstainLimits:
    """The limits of the abstain rules named in `rules` from validation faces' quality rows
    ((N, QUALITY_FIELDS), NaN = not measured). A limit with no measured value stays None (off)."""
    unknown = sorted(set(rules) - set(ABSTAIN_RULES))
    if unknown:
        raise UsageError(f"abstain rules {unknown}: use any of {', '.join(ABSTAIN_RULES)}")
    q = np.asarray(quality, np.float64).reshape(-1, len(QUALITY_FIELDS))

    def at(name: str, rule: str, upper: bool = False) -> float | None:
        v = q[:, QUALITY_FIELDS.index(name)]
        v = np.abs(v[np.isfinite(v)]) if upper else v[np.isfinite(v)]
        if rule not in rules or not v.size:
            return None
        return round(float(np.quantile(v, 1 - quantile if upper else quantile)), 3)

    return AbstainLimits(min_face_px=at("face_px", "small-face"), min_chroma=at("chroma", "greyscale"),
                         min_score=at("score", "low-confidence"), max_pitch=at("pitch", "head-pose", True),
                         max_yaw=at("yaw", "head-pose", True), max_roll=at("roll", "head-pose", True),
                         quantile=quantile, n=int(np.isfinite(q).any(1).sum()), split="val")


def calibration_record(logits: np.ndarray, labels: np.ndarray, is_fake: np.ndarray, p_fake: np.ndarray,
                       unknown_quantile: float, rule: str = "balanced", target_fpr: float = 0.05,
                       quality: np.ndarray | None = None, abstain_quantile: float = 0.005,
                       abstain_rules: tuple[str, ...] | list[str] = ABSTAIN_RULES) -> dict:
    """calibration.json's record; `quality` (N, QUALITY_FIELDS) of the same validation faces gives
    the abstain limits (all off without it)."""
    thr, n = threshold_from(logits, labels, unknown_quantile)
    det = detection_threshold_from(is_fake, p_fake, rule, target_fpr)
    if quality is None:
        quality = np.full((len(p_fake), len(QUALITY_FIELDS)), np.nan)
    abstain = abstain_limits_from(quality, abstain_quantile, abstain_rules)
    return {"version": CALIBRATION_VERSION, "split": "val",
            "unknown_threshold": thr, "quantile": unknown_quantile, "n_val_used": n,
            "detection_threshold": det["threshold"], "detection_rule": det["rule"],
            "detection_target_fpr": det["target_fpr"], "detection_n_real": det["n_real"],
            "detection_n_fake": det["n_fake"], "detection_val_fpr": det["val_fpr"],
            "detection_val_tpr": det["val_tpr"], "abstain": abstain.as_dict()}


def calibrate_run(run_dir: Path, val_ds, cfg, device, model) -> dict:
    from .modeling import run_model

    preds = run_model(model, val_ds, batch_size=32, device=device)
    quality = val_ds.s.quality.copy()
    if cfg.faces == "detect":  # an image without a face gets no verdict from predict: its limits say nothing
        quality[val_ds.s.n_faces == 0] = np.nan
    rec = calibration_record(preds.attribution_logits, val_ds.labels, val_ds.is_fake, preds.p_fake,
                             cfg.unknown_quantile, cfg.detection_threshold_rule, cfg.detection_target_fpr,
                             quality, cfg.abstain_quantile, cfg.abstain_rules)
    U.atomic_write_json(Path(run_dir) / "calibration.json", rec)
    return rec


def calibrate_fix(run_dir: str | Path) -> str:
    return f"calibrate it on the run's validation split: `gazeclip calibrate --run {run_dir}`"


def load_calibration(run_dir: str | Path) -> dict | None:
    """RUN/calibration.json (validated by `folder.read_calibration`: a damaged file raises
    `DamagedFileError` naming it), or None when absent or written before CALIBRATION_VERSION (version
    1's unknown threshold is on another score; version 2 has no abstain limits). Only for the steps that
    recalibrate such a run themselves (`eval`, `gazeclip calibrate`); everything else calls
    `require_calibration`."""
    p = Path(run_dir) / "calibration.json"
    if not p.is_file():
        return None
    rec = read_calibration(p, calibrate_fix(run_dir))
    return rec if rec["version"] >= CALIBRATION_VERSION else None


def require_calibration(run_dir: str | Path, fix: str | None = None) -> dict:
    """RUN/calibration.json of the current version: a missing or older file is refused with the command that
    fixes it, never replaced by a default threshold (0.5 and no unknown flag would silently change
    every verdict)."""
    p = Path(run_dir) / "calibration.json"
    fix = fix or calibrate_fix(run_dir)
    if not p.is_file():
        raise DamagedFileError(p, "missing (it holds the run's detection and unknown-generator thresholds)", fix)
    rec = load_calibration(run_dir)
    if rec is None:
        raise DamagedFileError(p, f"written by an older gazeclip (version {read_calibration(p, fix)['version']} < "
                               f"{CALIBRATION_VERSION}: without the detection threshold or the abstain limits)", fix)
    return rec


def abstain_of(cal: dict) -> AbstainLimits | None:
    """The abstain limits of a calibration record (None before version 3)."""
    d = cal.get("abstain")
    return AbstainLimits.from_dict(d) if isinstance(d, dict) else None
