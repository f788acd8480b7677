"""`gazeclip gaze-probe --data DIR --protocol P [--out DIR]`: is gaze worth it on this data? Simple
logistic-regression probes on frozen gaze, gaze features and CLIP embeddings, trained on the train
split and read on the test split (probe.json, probe.md, probe.png)."""
from __future__ import annotations

import argparse
import sys


from ..errors import GazeclipError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .gaze_probe import BLOCKS, CUE_SETS, DEFAULT_SETS

    p.add_argument("--data", required=True, help="dataset folder (manifest.csv, protocols.yaml)")
    p.add_argument("--protocol", default="P2", help="protocol of protocols.yaml (default P2)")
    p.add_argument("--out", help="output folder (default: gaze-probe-PROTOCOL)")
    p.add_argument("--sets", help=f"comma-separated feature sets, blocks {'/'.join(BLOCKS)} joined by '+' "
                                  f"(default: {','.join(DEFAULT_SETS)}; with --cues also {','.join(CUE_SETS)})")
    p.add_argument("--cues", action="store_true", help="also run the gaze-consistency passes (mirror, shifts) "
                                                       "and probe the cue sets")
    p.add_argument("--split", choices=("test", "val"), default="test", help="split the probes are read on")
    p.add_argument("--C", type=float, help="fixed inverse regularisation strength (default: chosen by "
                                           "stratified 5-fold CV on the train split)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", default="clip-b16-offline", help="CLIP backbone of the `clip` block")
    p.add_argument("--clip", help="CLIP checkpoint for --backbone clip-b16 / clip-l14")
    p.add_argument("--estimator", default="ethxgaze-r18")
    p.add_argument("--face-cache", help="face/gaze cache folder (default DATA/.cache/faces)")
    p.add_argument("--feature-cache", help="CLIP-embedding and cue cache folder (default DATA/.cache/features)")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from .gaze_probe import gaze_probe

    out = args.out or f"gaze-probe-{args.protocol}"
    sets = [s for s in (args.sets or "").split(",") if s.strip()] or None
    try:
        rep = gaze_probe(args.data, args.protocol, out, sets, args.cues, args.split, args.C, args.bootstrap,
                         args.seed, args.backbone, args.clip, args.estimator, args.face_cache, args.feature_cache,
                         progress=not args.quiet)
    except GazeclipError as e:
        print(f"gazeclip gaze-probe: {e}", file=sys.stderr)
        return 1
    names = list(rep["sets"])
    print(f"detection AUC vs real, % ({rep['split']} split, n = {sum(rep['n_eval'].values())})")
    print(f"{'class':28s}" + "".join(f"{s[:18]:>19s}" for s in names))
    for g in rep["fakes"] + ["all"]:
        label = f"{g} (unseen)" if g in rep["unseen"] else g
        print(f"{label:28s}" + "".join(f"{_pct(rep['sets'][s][f'auc/{g}']['value']):>19s}" for s in names))
    print(f"{'ACC seen generators':28s}" + "".join(
        f"{_pct(rep['sets'][s]['acc/seen_generators']['value']):>19s}" for s in names))
    print(f"wrote {out}/probe.json, probe.md, probe.png")
    return 0


def _pct(v) -> str:
    import math

    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.1f}"
