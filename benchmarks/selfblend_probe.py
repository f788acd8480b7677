"""How far are self-blends from real photos in frozen CLIP space? A linear probe, real vs self-blend.

    .venv/bin/python benchmarks/selfblend_probe.py --data data/bench-mini              # K=2, seed 0
    .venv/bin/python benchmarks/selfblend_probe.py --data data/bench-mini --context faceswap-poisson

Renders (or finds) K self-blends per real train photo exactly as `gazeclip train --self-blend K`
does (into DATA/.cache/selfblend), takes the training face crop of every real photo and blend
(faces and gaze through the data folder's caches), embeds it with the frozen `clip-b16-offline`
image tower (L2-normalised image embedding) and fits a logistic regression, real vs self-blend,
under 5-fold GroupKFold by source photo (a photo and its blends are on the same side). Prints the
out-of-fold ROC AUC (pooled, per fold, per blend region); `--context CLASS...` adds the same probe
for real vs a benchmark class (StratifiedKFold: its images are not grouped by photo).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="a built benchmark folder")
    ap.add_argument("--k", type=int, default=2, help="self-blends per real train photo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--context", nargs="*", default=[], help="benchmark classes probed against real too")
    ap.add_argument("--backbone", default="clip-b16-offline")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    from gazeclip.data.dataset import manifest_samples
    from gazeclip.data.derived import DerivedSpec, derive_training_rows
    from gazeclip.data.manifest import REAL, read_manifest
    from gazeclip.models.backbones import create_backbone

    t0 = time.time()
    data = Path(args.data)
    rows = read_manifest(data)
    reals = [r for r in rows if r.cls == REAL and r.split == "train"]
    got = derive_training_rows(data, reals, DerivedSpec(self_blend=args.k, seed=args.seed), progress=True)
    bb = create_backbone(args.backbone)

    def embed(rs) -> np.ndarray:
        s = manifest_samples(rs, data, "detect", "ethxgaze-r18", bb.preprocess.size, None, progress=True)
        out = []
        with torch.no_grad():
            for i in range(0, len(s), 32):
                e = bb.image_tower(pixel_values=bb.preprocess(list(s.crops[i:i + 32]))).image_embeds
                out.append(torch.nn.functional.normalize(e, dim=-1).numpy())
        return np.concatenate(out)

    def out_of_fold(x, y, splits) -> tuple[np.ndarray, list[float]]:
        score, aucs = np.zeros(len(y)), []
        for tr, te in splits:
            score[te] = LogisticRegression(C=1.0, max_iter=5000).fit(x[tr], y[tr]).decision_function(x[te])
            aucs.append(float(roc_auc_score(y[te], score[te])))
        return score, aucs

    er, eb = embed(reals), embed(got.blends)
    x, y = np.concatenate([er, eb]), np.r_[np.zeros(len(er)), np.ones(len(eb))]
    groups = [r.path for r in reals] + [b.source.rsplit(" of ", 1)[1] for b in got.blends]
    score, aucs = out_of_fold(x, y, GroupKFold(5).split(x, y, groups))
    region = np.array([REAL] * len(er) + [b.source.split("(", 1)[1].split(")", 1)[0] for b in got.blends])
    res = {"n_real": len(er), "n_blend": len(eb), "auc_oof": float(roc_auc_score(y, score)), "auc_folds": aucs,
           "per_region": {g: {"n": int((region == g).sum()),
                              "auc": float(roc_auc_score(y[(region == REAL) | (region == g)],
                                                         score[(region == REAL) | (region == g)]))}
                          for g in sorted(set(region) - {REAL})}, "context": {}}
    for c in args.context:
        ec = embed([r for r in rows if r.cls == c])
        xc, yc = np.concatenate([er, ec]), np.r_[np.zeros(len(er)), np.ones(len(ec))]
        sc, ac = out_of_fold(xc, yc, StratifiedKFold(5, shuffle=True, random_state=0).split(xc, yc))
        res["context"][c] = {"n": len(ec), "auc_oof": float(roc_auc_score(yc, sc)), "auc_folds": ac}
    res["wall_s"] = round(time.time() - t0, 1)
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
