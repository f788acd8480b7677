"""Metrics under perturbations of the test images (JPEG, blur, noise, resize, colour) at 5 severities.

The perturbation is applied to the face crop the image tower sees. Face boxes and gaze come from
the clean image (design choice for CPU cost: the face/gaze records are cached once; note that this
spares the gaze branch the perturbation). Perturbed crops are new pixels, so they get their own
feature-cache entries (content-hash keyed; `cache_perturbed=False` skips storing them): runs that
share a frozen prefix (GazeCLIP, clip-lora and the ablations on one backbone) then compute the
perturbed prefixes once between them.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data.perturb import LEVELS, PERTURBATIONS, perturb
from .metrics import compute_metrics

KEYS = ("attribution_acc_seen", "detection_auc", "detection_auc_unseen", "family_acc_unseen", "detection_eer")


def _subset(samples, max_items: int, seed: int):
    """Up to max_items test items, the same fraction of every class (fixed seed)."""
    n = len(samples)
    if not max_items or n <= max_items:
        return samples
    rng = np.random.default_rng(seed)
    cls = np.array(samples.classes)
    keep = []
    for c in np.unique(cls):
        idx = np.flatnonzero(cls == c)
        k = max(1, round(len(idx) * max_items / n))
        keep += list(rng.choice(idx, min(k, len(idx)), replace=False))
    return samples.subset(np.sort(np.array(keep)))


def robustness_run(run_dir: str | Path, data_dir: str | Path, perturbations=PERTURBATIONS,
                   severities=(0, 1, 2, 3, 4, 5), max_items: int = 0, seed: int = 0, device: str = "auto",
                   progress: bool = False, cache_perturbed: bool = True) -> dict:
    from tqdm import tqdm

    from .evaluate import eval_data, load_run, predict_samples, test_set

    run = load_run(run_dir, device)
    samples, proto, class_family = test_set(run, data_dir, progress=progress)
    samples = _subset(samples, max_items, seed)
    out: dict = {}
    clean = None
    total = len(perturbations) * len([s for s in severities if s])
    bar = tqdm(total=total, desc=f"robustness {run.name}", disable=not progress)
    for kind in perturbations:
        pts = []
        for sev in severities:
            if sev == 0:
                if clean is None:
                    preds = predict_samples(run, samples, data_dir)
                    clean = compute_metrics(eval_data(run, samples, proto, class_family, preds))
                m = clean
            else:
                rng = np.random.default_rng([seed, sev])
                crops = np.stack([perturb(c, kind, sev, rng) for c in samples.crops])
                pert = replace(samples, crops=crops, keys=[])  # keys recomputed from the perturbed pixels
                preds = predict_samples(run, pert, data_dir, use_cache=cache_perturbed)
                m = compute_metrics(eval_data(run, pert, proto, class_family, preds))
                bar.update(1)
            level = None if sev == 0 else LEVELS[kind][sev - 1]
            pts.append({"severity": sev, "level": level, **{k: m.get(k) for k in KEYS}})
        out[kind] = pts
    bar.close()
    return {"run": str(run_dir), "model": run.cfg.model, "n_items": len(samples), "curves": out}
