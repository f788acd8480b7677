"""How well `n_clusters_estimated` counts generators, on frozen CLIP embeddings of a benchmark.

    .venv/bin/python benchmarks/cluster_count.py --data data/bench-mini --protocol P2 --seeds 10

Reads the frozen CLIP image embeddings that `gazeclip gaze-probe` caches (computing any that are
missing) and runs every cluster-count estimator of `gazeclip.evaluation.metrics` (`K_ESTIMATORS`)
on three sets whose true count is known: the protocol's unseen generators of the test split (what
the metric counts), and, as checks that do not read the test split, the seen generators of the
train and of the validation split. Per seed (the k-means / reference-set seed) on all items and on
a class-stratified 5/6 subsample drawn with that seed: the estimated k and the cluster ACC at it,
next to the oracle-k cluster ACC. Frozen embeddings, not a trained run's: a trained GazeCLIP's
joint embedding is what `gazeclip eval` clusters.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--protocol", default="P2")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--backbone", default="clip-b16-offline")
    args = ap.parse_args()

    from gazeclip.data.manifest import REAL
    from gazeclip.evaluation.gaze_probe import collect_items
    from gazeclip.evaluation.metrics import K_ESTIMATORS, cluster_metrics, estimate_k, hungarian_acc

    sets = {}
    for split in ("test", "val"):
        items, _, unseen = collect_items(args.data, args.protocol, split=split, backbone=args.backbone)
        cls, sp = np.array(items.classes), np.array(items.splits)
        if split == "test":
            m = (sp == "test") & np.isin(cls, unseen)
            sets["test, unseen generators"] = (items.clip[m], cls[m])
            m = (sp == "train") & (cls != REAL)
            sets["train, seen generators"] = (items.clip[m], cls[m])
        else:
            m = (sp == "val") & (cls != REAL)
            sets["val, seen generators"] = (items.clip[m], cls[m])
    print(f"# cluster count on frozen `{args.backbone}` embeddings, {args.data}, protocol {args.protocol}\n")
    print("| items | truth | n | draw | seed | oracle-k ACC | " +
          " | ".join(f"{m}: k | {m}: ACC" for m in K_ESTIMATORS) + " |")
    print("| --- | ---: | ---: | --- | ---: | ---: | " + " | ".join("---: | ---:" for _ in K_ESTIMATORS) + " |")
    tally: dict[tuple[str, str], Counter] = {}
    for name, (x, y) in sets.items():
        truth = len(set(y))
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            sub = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), round(np.sum(y == c) * 5 / 6),
                                                     replace=False) for c in sorted(set(y))]))
            for draw, idx in (("all", np.arange(len(y))), ("5/6", sub)):
                xs, ys = x[idx], y[idx]
                cells = []
                for m in K_ESTIMATORS:
                    k, a = estimate_k(xs, seed=seed, method=m)
                    tally.setdefault((name, m), Counter())[k] += 1
                    cells.append(f"{k} | {100 * hungarian_acc(ys, a):.1f}")
                print(f"| {name} | {truth} | {len(ys)} | {draw} | {seed} | "
                      f"{100 * cluster_metrics(xs, ys, seed)['cluster_acc']:.1f} | " + " | ".join(cells) + " |",
                      flush=True)
    print("\nestimated k over all seeds and draws:")
    for (name, m), c in tally.items():
        print(f"- {name}, {m}: " + ", ".join(f"k={k} x{v}" for k, v in sorted(c.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
