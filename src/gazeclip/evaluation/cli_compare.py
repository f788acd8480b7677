"""`gazeclip compare RUN... --data DIR`: one table of runs on the same test split, with paired
bootstrap 95% intervals. Each run is evaluated first unless RUN/eval already holds this data's
predictions."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by `gazeclip train`")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--protocol", help="protocol (default: each run's)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write compare.json and compare.md into this folder")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table instead of a rich one")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from .compare import compare_runs, print_table, comparison_markdown
    from ..run.utils import atomic_write_json, atomic_write_text

    res = compare_runs(args.runs, args.data, args.protocol, args.n_boot, args.seed, args.device,
                       progress=not args.quiet)
    md = comparison_markdown(res)
    if args.markdown:
        print(md)
    else:
        print_table(res)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "compare.json", res)
        atomic_write_text(out / "compare.md", md + "\n")
        print(f"wrote {out}/compare.json, compare.md")
    return 0
