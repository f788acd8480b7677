"""`gazeclip bench {build,train-forgers,import,list,report}`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    b = sub.add_parser("build", help="build the offline benchmark into a folder")
    b.add_argument("--preset", choices=["smoke", "mini", "full"], default="smoke")
    b.add_argument("--out", type=Path, required=True, help="output folder (images, manifest.csv, protocols.yaml)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--only", nargs="+", metavar="GENERATOR", help="build only these generators (default: all)")
    b.add_argument("--no-real", action="store_true", help="leave the real photos out")
    b.add_argument("--no-bottleneck", action="store_true",
                   help="skip the common 64 px bottleneck (keeps native sharpness, re-opens a resolution shortcut)")
    b.add_argument("--landmark-source", choices=["real", "msg"], default="real",
                   help="faces the landmark forgers edit: real photos of the same split (default) or fresh "
                        "MobileStyleGAN faces (benchmark v1)")
    b.add_argument("--update", action="store_true",
                   help="add/rebuild only the chosen classes of an existing build in --out, keep the others")
    b.add_argument("--grids", type=Path, default=None,
                   help="also write sample grids (JPEG) of the fully synthetic classes into this folder")
    b.add_argument("--grids-include-real", action="store_true",
                   help="draw the real class and the manipulations of real photos too (local viewing only: "
                        "those photos must never be committed or redistributed)")
    b.add_argument("--threads", type=int, default=2)

    t = sub.add_parser("train-forgers", help="train the here-trained generators and write their checkpoints")
    t.add_argument("--only", nargs="+", metavar="NAME")
    t.add_argument("--out", type=Path, default=None, help="checkpoint folder (default: the package's checkpoints/)")
    t.add_argument("--n-train", type=int, default=600, help="MobileStyleGAN training faces")
    t.add_argument("--steps", type=int, default=None, help="override the step count (quick tries)")
    t.add_argument("--threads", type=int, default=1, help="torch threads (the checkpoints were trained with 1)")
    t.add_argument("--max-minutes", type=float, default=None, help="wall-clock cap per forger")

    i = sub.add_parser("import", help="turn a user's dataset into a gazeclip manifest")
    i.add_argument("kind", choices=["folder", "owdfa-csv", "genface"])
    i.add_argument("root", type=Path, help="dataset root folder")
    i.add_argument("--out", type=Path, default=None, help="where manifest.csv goes (default: ROOT)")
    i.add_argument("--mapping", type=Path, default=None,
                   help="YAML: class -> {family, forgery_type, licence, split} (folder, genface)")
    i.add_argument("--csv", type=Path, nargs="+", default=None,
                   help="owdfa-csv: the protocol CSV files (path,label); split from the file name")
    i.add_argument("--seed", type=int, default=0, help="seed of the train/val/test split when none is given")

    sub.add_parser("list", help="list the registered generators")
    r = sub.add_parser("report", help="markdown tables (generators, real faces by source and identity, counts) "
                                      "of a built benchmark")
    r.add_argument("dir", type=Path)
    r.add_argument("--checks", action="store_true",
                   help="also run the format-shortcut, pixel-statistics and near-duplicate checks (slower)")


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "action", None)
    if action is None:
        print("usage: gazeclip bench {build,train-forgers,import,list,report} ...  (see --help)", file=sys.stderr)
        return 2
    return _run(args, action)


def _run(args: argparse.Namespace, action: str) -> int:
    if action == "build":
        import torch

        from .build import BOTTLENECK, PRESETS, BuildConfig, build
        from .forgers import REGISTRY

        torch.set_num_threads(max(1, args.threads))
        gens = tuple(args.only) if args.only else tuple(REGISTRY)
        unknown = [g for g in gens if g not in REGISTRY]
        if unknown:
            raise KeyError(f"unknown generator(s) {unknown}; known: {', '.join(REGISTRY)}")
        cfg = BuildConfig(PRESETS[args.preset], seed=args.seed, generators=gens,
                          bottleneck=0 if args.no_bottleneck else BOTTLENECK, include_real=not args.no_real,
                          update=args.update, landmark_source=args.landmark_source)
        rep = build(args.out, cfg)
        if args.grids:
            from .report import write_grids

            write_grids(args.out, args.grids, include_real=args.grids_include_real)
        from .report import counts_table

        print(counts_table(args.out))
        print(f"built {args.out} (preset {args.preset}, seed {args.seed}) in {rep.total_seconds / 60:.1f} min")
        return 0
    if action == "train-forgers":
        from .train import train_forgers

        res = train_forgers(only=args.only, n_train=args.n_train, root=args.out, steps=args.steps,
                            threads=args.threads, max_minutes=args.max_minutes)
        print(json.dumps([{k: m[k] for k in ("name", "cpu_minutes", "wall_minutes", "bytes", "steps_done")}
                          for m in res], indent=1))
        return 0
    if action == "import":
        from .importers import import_dataset

        rows = import_dataset(args.kind, args.root, out=args.out, mapping=args.mapping, csvs=args.csv,
                              seed=args.seed)
        print(f"wrote {(args.out or args.root) / 'manifest.csv'} with {len(rows)} rows")
        return 0
    if action == "list":
        from .forgers import REGISTRY

        for name, cls in REGISTRY.items():
            i = cls.info
            print(f"{name:18s} {i.family:14s} {i.forgery_type:24s} {i.how}")
        return 0
    if action == "report":
        from .report import full_report

        print(full_report(args.dir, checks=args.checks))
        return 0
    raise UsageError(f"unknown action {action}")
