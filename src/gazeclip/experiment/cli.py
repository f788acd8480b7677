"""`gazeclip experiment run CONFIG [--resume]`: models x seeds on one benchmark protocol, each
evaluated once on the test split; tables of mean ± sd, paired bootstrap differences to a reference
model and per-generator deltas under results/NAME/ (see gazeclip.experiment.runner).

    gazeclip experiment run p2-main              # a packaged config, or a path
    gazeclip experiment run p2-main --resume     # skip finished runs
    gazeclip experiment run tiny --data /tmp/syn --out /tmp/res
"""
from __future__ import annotations

import argparse
import shlex
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = __doc__.split("\n\n", 1)[1]
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = sub.add_parser("run", help="train and evaluate the grid, then write the tables")
    r.add_argument("config", help="experiment YAML: a path, or a packaged name (tiny, p2-main)")
    r.add_argument("--resume", action="store_true", help="continue: skip finished runs, resume killed ones")
    r.add_argument("--data", help="dataset folder (overrides the config's 'data')")
    r.add_argument("--out", help="results folder (default: the config's 'out', else results/NAME)")
    r.add_argument("--device", help="auto | cpu | cuda")
    r.add_argument("--n-boot", type=int, dest="n_boot", help="bootstrap resamples (default: the config's, 1000)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from .runner import load_experiment, run_experiment

    cfg = load_experiment(args.config, data=args.data, out=args.out, device=args.device, n_boot=args.n_boot)
    res = run_experiment(cfg, resume=args.resume, quiet=args.quiet,
                         command="gazeclip " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    out = cfg.out_dir()
    print(f"{res['n_runs_finished']} of {res['n_runs']} runs finished; wrote {out}/summary.md, table.md/.csv, "
          f"diffs.md/.csv, per_generator.md/.csv/.png, results.json")
    if res["failures"]:
        for k, v in res["failures"].items():
            print(f"gazeclip experiment: run {k} failed: {v}", file=sys.stderr)
        return 1
    return 0
