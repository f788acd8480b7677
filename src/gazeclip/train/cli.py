"""`gazeclip train`: train a model on a benchmark protocol (single process or torchrun/DDP).

    gazeclip train --model gazeclip --data DIR --protocol P2 --out runs/gazeclip-p2
    gazeclip train --config default --data DIR --out RUN --epochs 5 --lr 5e-4
    torchrun --nproc_per_node 2 -m gazeclip train --model clip-lora --data DIR --out RUN
    gazeclip train --out RUN --resume          # continue a killed run where its checkpoint stopped

Every TrainConfig field (engine/config.py) is a flag, generated from the dataclass: `--batch-size`,
`--select-metric {val_score,...}`, `--feature-cache/--no-feature-cache`; help and choices come from
the field's metadata. Only the flags given override the --config YAML.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from ..cli import key_value as _kv
from ..configfields import flag_fields
from ..errors import UsageError
from ..run.config import TrainConfig


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    defaults = TrainConfig()
    flagged = {f.name for f, _ in flag_fields(TrainConfig)}
    set_only = [f for f in dataclasses.fields(TrainConfig) if f.name not in flagged and f.metadata.get("flag", True)]
    p.epilog = ("Resolution: TrainConfig defaults < --config YAML < --set KEY=VALUE < the flags given.\n"
                "Each flag is also a YAML / --set key, with underscores (--batch-size: batch_size).\n"
                "YAML / --set only:\n"
                + "\n".join(f"  {f.name}: {f.metadata['help']} (default: {getattr(defaults, f.name)})"
                             for f in set_only))
    run = p.add_argument_group("run")
    run.add_argument("--data", help="dataset folder with manifest.csv and protocols.yaml")
    run.add_argument("--out", required=True, help="run folder to create (or to continue with --resume)")
    run.add_argument("--config", help="run config: a packaged name (default, smoke, tiny) or a YAML file path")
    run.add_argument("--resume", action="store_true", help="continue RUN from its last checkpoint")
    run.add_argument("--set", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                     help="set a run-config field (YAML value; repeatable), e.g. betas=[0.9,0.98]; model config "
                          "fields go to --model-arg")
    run.add_argument("--model-arg", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                     help="model config field passed to create_model (YAML value; repeatable), e.g. gaze=false")
    # one flag per TrainConfig field, generated so that a new field is a flag at once; default None:
    # only the flags given override the YAML config
    g = p.add_argument_group("run config (TrainConfig fields; the default is the --config YAML's, else the one shown)")
    for f, kind in flag_fields(TrainConfig):
        default = getattr(defaults, f.name)
        help_ = f.metadata["help"] + ("" if default is None else f" (default: {default})")
        kw = dict(dest=f.name, default=None, help=help_.replace("%", "%%"))
        if kind is bool:
            g.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, **kw)
        else:
            choices = f.metadata.get("choices")
            metavar = None if choices else {int: "N", float: "X"}.get(kind, "PATH" if default is None else "NAME")
            g.add_argument(_flag(f.name), type=kind, choices=choices, metavar=metavar, **kw)
    g.add_argument("--no-cache", dest="feature_cache", action="store_false", default=None,
                   help="same as --no-feature-cache")
    g.add_argument("--quiet", dest="progress", action="store_false", default=None, help="same as --no-progress")


def _refuse_model_fields(keys) -> None:
    """A model config field given to --set (as `gazeclip info` once took it) names --model-arg."""
    from ..models.config import GazeCLIPConfig, LinearProbeConfig, ZeroShotConfig

    run_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    model_fields = {f.name for c in (GazeCLIPConfig, LinearProbeConfig, ZeroShotConfig) for f in dataclasses.fields(c)}
    for k in keys:
        if k not in run_fields and k in model_fields:
            raise UsageError(f"--set {k}: {k} is a model config field, not a run-config one; pass it as "
                             f"--model-arg {k}=VALUE")


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig defaults < --config YAML < --set < the flags given; --model-arg adds model_overrides."""
    cfg = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    if args.set:
        _refuse_model_fields(dict(args.set))
        cfg = TrainConfig.from_dict({**cfg.to_dict(), **dict(args.set)}, source="--set")
    cfg = cfg.replace(**{f.name: getattr(args, f.name) for f, _ in flag_fields(TrainConfig)})  # None: not given
    if args.model_arg:
        cfg = cfg.replace(model_overrides={**cfg.model_overrides, **dict(args.model_arg)})
    return cfg


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..run.folder import load_run_config, read_run_yaml
    from .trainer import train

    data = args.data
    cfg = resolve_config(args)
    if args.resume and data is None and (Path(args.out) / "config.yaml").is_file():
        data = read_run_yaml(args.out).get("data")
        cfg = load_run_config(args.out).replace(progress=cfg.progress)
    if data is None:
        print("gazeclip train: --data DIR is required (a folder with manifest.csv)", file=sys.stderr)
        return 2
    res = train(cfg, data, args.out, resume=args.resume)
    from ..run.utils import is_main

    if is_main():
        b = res.best_metrics
        print(f"done: best epoch {res.best_epoch} val_acc {b['val_acc']:.3f} val_auc {b['val_auc']:.3f} "
              f"-> {res.run_dir}/model")
    return 0
