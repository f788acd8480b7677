"""Typed run configuration: dataclass fields carry their help text (as peft's configs do), a YAML
file (a packaged one by name: `default`, `smoke`, `tiny`; or a user's file by path) sets them, and command-line flags override both. The resolved config
is written to `RUN/config.yaml` so that a run says exactly how it was made.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


def _f(default, help: str, **kw):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class TrainConfig:
    """Everything `gazeclip train` needs besides the data folder and the run folder."""

    model: str = _f("gazeclip", "registered model name (gazeclip.models.list_models())")
    backbone: str = _f("clip-b16-offline", "backbone name (gazeclip.models.backbones.list_backbones())")
    clip: str | None = _f(None, "checkpoint path for the clip-b16 / clip-l14 backbones")
    model_overrides: dict = _f({}, "keyword overrides passed to create_model (ablation switches)")
    protocol: str = _f("P2", "protocol name in DATA/protocols.yaml")
    epochs: int = _f(10, "maximum number of epochs")
    batch_size: int = _f(32, "global batch size (split evenly across DDP processes)")
    lr: float = _f(1e-3, "peak learning rate of AdamW")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    betas: tuple = _f((0.9, 0.999), "AdamW betas")
    warmup_epochs: float = _f(1.0, "linear warm-up length in epochs, then cosine decay to min_lr_ratio*lr")
    min_lr_ratio: float = _f(0.0, "final learning rate as a fraction of lr")
    grad_clip: float = _f(1.0, "clip the global gradient norm to this (0 = off)")
    seed: int = _f(0, "seed for model init, data order and augmentation")
    precision: str = _f("auto", "training precision: auto (bf16 autocast on CUDA devices that support it, else "
                        "fp32; a CPU trains in fp32 unless bf16 is asked) | bf16 | fp32")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")
    patience: int = _f(3, "early stopping: epochs without improvement of the validation metric (0 = off)")
    select_metric: str = _f("val_score", "validation metric to select on: val_score (mean of attribution ACC "
                            "and detection AUC), val_acc, val_auc or val_loss")
    checkpoint_every: int = _f(0, "also checkpoint every N optimiser steps inside an epoch (0 = end of epoch only)")
    feature_cache: bool = _f(True, "train the upper blocks from cached frozen-prefix hidden states")
    cache_dir: str | None = _f(None, "feature cache folder (default: DATA/.cache/features)")
    cache_dtype: str = _f("float16", "storage dtype of cached hidden states (float16 halves the disk)")
    faces: str = _f("detect", "detect: crop the detected face and estimate gaze | none: whole image, no gaze")
    gaze_estimator: str = _f("ethxgaze-r18", "gaze estimator name (gazeclip.gaze)")
    face_cache_dir: str | None = _f(None, "face/gaze record cache folder (default: DATA/.cache/faces)")
    hflip: float = _f(0.0, "augmentation: probability of a horizontal flip (changes pixels: bypasses the cache)")
    color_jitter: float = _f(0.0, "augmentation: probability of a brightness/contrast jitter (bypasses the cache)")
    num_workers: int = _f(0, "DataLoader worker processes")
    # design choice, not from the paper: class-balanced sampling (real and every seen generator
    # drawn equally often; an epoch = n_classes x median class size items).
    balance_classes: bool = _f(True, "draw real and each seen generator equally often in training "
                               "(epoch = n_classes x median class size); false: every item once per epoch")
    unknown_quantile: float = _f(0.05, "unknown-generator threshold: this quantile of the predicted-class "
                                 "probability p(g | fake) on correctly attributed fake validation faces")
    detection_threshold_rule: str = _f("balanced", "design choice, not from the paper: the real/fake threshold of "
                                       "predict verdicts, chosen on the validation split: 'balanced' (max balanced "
                                       "accuracy) or 'fpr' (at most detection_target_fpr of real val faces called fake)")
    detection_target_fpr: float = _f(0.05, "target false-positive rate on real validation faces for rule 'fpr'")
    max_train_items: int = _f(0, "use at most this many training items (0 = all), for quick trials")
    find_unused_parameters: bool = _f(True, "DDP: tolerate trainable parameters a step does not use")
    progress: bool = _f(True, "show tqdm progress bars")
    interrupt_after_steps: int = _f(0, "testing only: exit as if killed after N optimiser steps (0 = off)")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(d["betas"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{source}: unknown keys {unknown}; known keys: {', '.join(sorted(names))}")
        d = dict(d)
        defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                    for f in fields(cls)}
        for k, v in d.items():  # YAML reads 1e-3 as a string: accept numbers written that way
            if isinstance(defaults.get(k), float) and isinstance(v, str):
                try:
                    d[k] = float(v)
                except ValueError:
                    pass
        bad = [f"{k}={d[k]!r} (expected {_kind(defaults[k])})" for k in defaults
               if k in d and not _fits(d[k], defaults[k])]
        if bad:
            raise ValueError(f"{source}: wrong type for {', '.join(bad)}")
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        """A run config file, or a packaged one by name (`smoke`; see gazeclip/configs/runs/)."""
        from ..configs import find_config

        path = find_config("runs", path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not valid YAML ({str(e).splitlines()[0][:100]})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a run config must be a YAML mapping of TrainConfig fields")
        return cls.from_dict(data, source=str(path))

    def replace(self, **kw) -> "TrainConfig":
        return dataclasses.replace(self, **{k: v for k, v in kw.items() if v is not None})


def _fits(value, default) -> bool:
    """Does `value` have the type of a field whose default is `default`? (a damaged or hand-edited
    config gives a one-line error instead of a failure deep inside training)"""
    if default is None:
        return value is None or isinstance(value, str)  # the optional paths
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list))
    return isinstance(value, type(default))


def _kind(default) -> str:
    return "a path or null" if default is None else "a list" if isinstance(default, tuple) else type(default).__name__


def help_table() -> str:
    return "\n".join(f"  {f.name}: {f.metadata.get('help', '')} (default {f.default!r})"
                     for f in fields(TrainConfig) if f.default is not dataclasses.MISSING)
