"""`gazeclip eval --run RUN --data DIR [--protocol P] [--out DIR]`: metrics.json, report.md, PNGs."""
from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder written by `gazeclip train`")
    p.add_argument("--data", required=True, help="dataset folder (manifest.csv, protocols.yaml)")
    p.add_argument("--protocol", help="protocol (default: the run's)")
    p.add_argument("--out", help="output folder (default: RUN/eval)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, fmt
    from .metrics import HEADLINE

    try:
        m = evaluate(args.run, args.data, args.protocol, args.out, args.device, progress=not args.quiet)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"gazeclip eval: {e}", file=sys.stderr)
        return 1
    print(f"n_test {m['n_test']}  " + "  ".join(f"{k} {fmt(m.get(k))}" for k in HEADLINE))
    print(f"wrote {args.out or args.run + '/eval'}/metrics.json, report.md, confusion.png, roc.png")
    return 0
