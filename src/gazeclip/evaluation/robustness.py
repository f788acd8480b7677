"""Metrics under perturbations of the test images (JPEG, blur, noise, resize, colour) at 5 severities.

With face detection (`faces: detect`), each perturbation is applied to the face's CLIP crop and to
its ETH-XGaze normalised face, and the frozen gaze estimator is re-run on the perturbed normalised
face, so both the image tower and the gaze branch see the degraded pixels. Face boxes and landmarks
stay those of the clean image (design choice for CPU cost: detection is not re-run). Images
without a face (and `faces: none` runs) have their whole-image crop perturbed.

Perturbed crops are new pixels, so they get their own feature-cache entries (content-hash keyed;
`cache_perturbed=False` skips storing them): runs that share a frozen prefix (GazeCLIP, clip-lora and
the ablations on one backbone) compute the perturbed prefixes once between them. The perturbed
sample sets themselves are shared across the runs of one call (`shared`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data.perturb import LEVELS, PERTURBATIONS, perturb
from .metrics import compute_metrics, per_generator_metrics

KEYS = ("attribution_acc_seen", "detection_auc", "detection_auc_unseen", "family_acc_unseen", "detection_eer",
        "fpr_real_at_threshold", "tpr_fake_at_threshold", "n_test", "n_real")


def _subset_index(classes: list[str], max_items: int, seed: int) -> np.ndarray:
    """Up to max_items test items, the same fraction of every class (fixed seed)."""
    n = len(classes)
    if not max_items or n <= max_items:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    cls = np.array(classes)
    keep = []
    for c in np.unique(cls):
        idx = np.flatnonzero(cls == c)
        k = max(1, round(len(idx) * max_items / n))
        keep += list(rng.choice(idx, min(k, len(idx)), replace=False))
    return np.sort(np.array(keep))


class _Perturber:
    """Perturbed SampleSets of one clean SampleSet, with the gaze re-estimated where there is a face."""

    def __init__(self, run, samples, data_dir: Path):
        from ..data.dataset import FaceGazeSource, best_face_index

        self.samples = samples
        self.faces = [None] * len(samples)
        self.source = None
        if run.cfg.faces == "detect":
            self.source = FaceGazeSource("detect", run.cfg.gaze_estimator,
                                         run.cfg.face_cache_dir or data_dir / ".cache" / "faces", run.gaze_dim)
            paths = [str(data_dir / p) for p in samples.paths]
            for i, res in enumerate(self.source.iter(paths)):  # face-cache hits: no detection re-run
                if not res.error and res.faces and samples.n_faces[i] > 0:
                    self.faces[i] = res.faces[best_face_index(res.faces)].face
        self.size = samples.crops.shape[1]

    def __call__(self, kind: str, sev: int, seed: int):
        from ..data.dataset import face_arrays, square_resize
        from ..records import FaceGaze

        s = self.samples
        rng = np.random.default_rng([seed, sev, PERTURBATIONS.index(kind)])
        crops, vec, py, feats, valid = (s.crops.copy(), s.gaze_vector.copy(), s.gaze_pitchyaw.copy(),
                                        s.gaze_features.copy(), s.gaze_valid.copy())
        with_face = [i for i, f in enumerate(self.faces) if f is not None]
        new_faces = []
        for i in range(len(s)):
            f = self.faces[i]
            if f is None:
                crops[i] = square_resize(perturb(s.crops[i], kind, sev, rng), self.size)
                continue
            nf = perturb(f.norm_face, kind, sev, rng) if f.norm_face is not None else None
            new_faces.append(dataclasses.replace(f, clip_crop=perturb(f.clip_crop, kind, sev, rng), norm_face=nf))
        if with_face:
            gazes = self.source.estimator.estimate(new_faces)
            for i, f, g in zip(with_face, new_faces, gazes):
                c, v, p, ft, ok, _, _ = face_arrays(FaceGaze(f, g), self.size, self.source.gaze_dim)
                crops[i], vec[i], py[i], feats[i], valid[i] = c, v, p, ft, ok
        return replace(s, crops=crops, gaze_vector=vec, gaze_pitchyaw=py, gaze_features=feats, gaze_valid=valid,
                       keys=[])  # keys recomputed from the perturbed pixels


def _point(d) -> dict:
    """One point of a curve: the KEYS metrics, and per generator the share called fake at the
    shipped threshold (`called_fake`)."""
    m = compute_metrics(d, k_est=0)  # the KEYS need no unseen-generator count
    return {**{k: m.get(k) for k in KEYS},
            "called_fake": {g: r["called_fake"] for g, r in per_generator_metrics(d).items()}}


def robustness_run(run_dir: str | Path, data_dir: str | Path, perturbations=PERTURBATIONS,
                   severities=(0, 1, 2, 3, 4, 5), max_items: int = 0, seed: int = 0, device: str = "auto",
                   progress: bool = False, cache_perturbed: bool = True, shared: dict | None = None) -> dict:
    from tqdm import tqdm

    from ..run.loader import load_run
    from .evaluate import eval_data, predict_samples, test_set

    data_dir = Path(data_dir)
    run = load_run(run_dir, device)
    samples, proto, class_family = test_set(run, data_dir, progress=progress)
    samples = samples.subset(_subset_index(samples.classes, max_items, seed))
    shared = {} if shared is None else shared
    sig = (run.cfg.faces, run.cfg.gaze_estimator, run.preprocess.size, run.gaze_dim, tuple(samples.keys))
    out: dict = {}
    clean = None
    total = len(perturbations) * len([s for s in severities if s])
    bar = tqdm(total=total, desc=f"robustness {run.name}", disable=not progress)
    perturber = None
    for kind in perturbations:
        pts = []
        for sev in severities:
            if sev == 0:
                if clean is None:
                    preds = predict_samples(run, samples, data_dir)
                    clean = _point(eval_data(run, samples, proto, class_family, preds))
                m = clean
            else:
                key = (sig, kind, sev, seed)
                if key not in shared:
                    perturber = perturber or _Perturber(run, samples, data_dir)
                    shared[key] = perturber(kind, sev, seed)
                pert = shared[key]
                preds = predict_samples(run, pert, data_dir, use_cache=cache_perturbed)
                m = _point(eval_data(run, pert, proto, class_family, preds))
                bar.update(1)
            level = None if sev == 0 else LEVELS[kind][sev - 1]
            pts.append({"severity": sev, "level": level, **m})
        out[kind] = pts
    bar.close()
    return {"run": str(run_dir), "model": run.cfg.model, "n_items": len(samples), "curves": out,
            "gaze_perturbed": run.cfg.faces == "detect"}
