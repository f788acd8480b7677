"""`gazeclip robustness --run RUN [--run RUN2 ...] --data DIR [--out DIR]`: attribution ACC and
detection AUC against perturbation severity (JPEG, blur, noise, resize, colour; 5 severities),
robustness.json + robustness.png (the paper's Figure 5)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", action="append", required=True, help="run folder (repeat for several runs)")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--out", help="output folder (default: the first RUN/robustness)")
    p.add_argument("--perturbations", default="jpeg,blur,noise,resize,color",
                   help="comma-separated subset of jpeg,blur,noise,resize,color")
    p.add_argument("--severities", default="0,1,2,3,4,5",
                   help="comma-separated severities 0..5 (0 = clean; e.g. 0,2 for clean and JPEG quality 70)")
    p.add_argument("--max-items", type=int, default=0,
                   help="evaluate at most this many test items, stratified by class (0 = all); CPU budget")
    p.add_argument("--no-cache-perturbed", action="store_true",
                   help="do not store the perturbed crops' prefix states in the feature cache (saves disk)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ..data.perturb import PERTURBATIONS
    from ..viz.plots import robustness_png
    from .evaluate import fmt
    from .robustness import robustness_run
    from ..run.utils import atomic_write_json

    kinds = [k.strip() for k in args.perturbations.split(",") if k.strip()]
    bad = [k for k in kinds if k not in PERTURBATIONS]
    if bad:
        print(f"gazeclip robustness: unknown perturbation(s) {bad}; choose from {', '.join(PERTURBATIONS)}",
              file=sys.stderr)
        return 2
    try:
        severities = sorted({int(v) for v in args.severities.split(",") if v.strip()})
    except ValueError:
        severities = []
    if not severities or not all(0 <= v <= 5 for v in severities):
        print(f"gazeclip robustness: --severities {args.severities!r}: give comma-separated integers 0..5",
              file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.run[0]) / "robustness"
    results, shared = {}, {}  # shared: perturbed test sets, computed once for all runs
    for r in args.run:
        res = robustness_run(r, args.data, kinds, severities=tuple(severities), max_items=args.max_items,
                             seed=args.seed, device=args.device, progress=not args.quiet,
                             cache_perturbed=not args.no_cache_perturbed, shared=shared)
        results[Path(r).name] = res
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "robustness.json", results)
    robustness_png({name: res["curves"] for name, res in results.items()}, out / "robustness.png")
    for name, res in results.items():
        for kind, pts in res["curves"].items():
            acc = " ".join(fmt(p["attribution_acc_seen"]) for p in pts)
            auc = " ".join(fmt(p["detection_auc"]) for p in pts)
            print(f"{name:>20} {kind:>7}  ACC {acc}  |  AUC {auc}")
    print(f"wrote {out}/robustness.json, robustness.png")
    return 0
