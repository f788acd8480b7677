"""`gazeclip train`: train a model on a benchmark protocol (single process or torchrun/DDP).

    gazeclip train --model gazeclip --data DIR --protocol P2 --out runs/gazeclip-p2
    gazeclip train --config default --data DIR --out RUN --epochs 5 --lr 5e-4
    torchrun --nproc_per_node 2 -m gazeclip train --model clip-lora --data DIR --out RUN
    gazeclip train --out RUN --resume          # continue a killed run where its checkpoint stopped
"""
from __future__ import annotations

import argparse
import sys

from ..cli import key_value as _kv
from .config import TrainConfig, help_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "config fields (YAML keys and --set KEY=VALUE):\n" + help_table()
    p.add_argument("--model", help="model name (default from the config: gazeclip)")
    p.add_argument("--data", help="dataset folder with manifest.csv and protocols.yaml")
    p.add_argument("--protocol", help="protocol name, e.g. P2")
    p.add_argument("--out", required=True, help="run folder to create (or to continue with --resume)")
    p.add_argument("--config", help="run config: a packaged name (default, smoke, tiny) or a YAML file path")
    p.add_argument("--backbone", help="backbone name, e.g. clip-b16-offline or tiny-random")
    p.add_argument("--clip", help="checkpoint for the clip-b16 / clip-l14 backbones")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--faces", choices=["detect", "none"], help="detect faces (default) or use whole images")
    p.add_argument("--no-cache", action="store_true", help="do not use the frozen-prefix feature cache")
    p.add_argument("--set", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field (repeatable)")
    p.add_argument("--model-arg", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="keyword passed to create_model, e.g. use_gaze=false (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue RUN from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    cfg = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    if args.set:
        cfg = TrainConfig.from_dict({**cfg.to_dict(), **dict(args.set)}, source="--set")
    cfg = cfg.replace(model=args.model, protocol=args.protocol, backbone=args.backbone, clip=args.clip,
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      device=args.device, faces=args.faces)
    if args.model_arg:
        cfg = cfg.replace(model_overrides={**cfg.model_overrides, **dict(args.model_arg)})
    if args.no_cache:
        cfg = cfg.replace(feature_cache=False)
    if args.quiet:
        cfg = cfg.replace(progress=False)
    return cfg


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .trainer import load_run_config, read_run_yaml, train

    cfg = resolve_config(args)
    data = args.data
    try:
        if args.resume and data is None and (Path(args.out) / "config.yaml").is_file():
            data = read_run_yaml(args.out).get("data")
            cfg = load_run_config(args.out).replace(progress=cfg.progress)
        if data is None:
            print("gazeclip train: --data DIR is required (a folder with manifest.csv)", file=sys.stderr)
            return 2
        res = train(cfg, data, args.out, resume=args.resume)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as e:
        print(f"gazeclip train: {e}", file=sys.stderr)
        return 1
    from .utils import is_main

    if is_main():
        b = res.best_metrics
        print(f"done: best epoch {res.best_epoch} val_acc {b['val_acc']:.3f} val_auc {b['val_auc']:.3f} "
              f"-> {res.run_dir}/model")
    return 0
