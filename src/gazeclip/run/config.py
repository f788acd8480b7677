"""Typed run configuration: dataclass fields carry their help text and, where the set is fixed,
their choices (gazeclip.configfields, shared with the model configs); a YAML file (a packaged one by
name: `default`, `smoke`, `tiny`; or a user's file by path) sets them, and `gazeclip train` flags,
generated from these fields, override both. A config is checked whenever it is built (`from_dict`,
the constructor, `replace`), so a bad value fails before any data work. The resolved config is
written to `RUN/config.yaml` so that a run says exactly how it was made.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..configfields import check_config, config_from_dict, option
from ..data.augment import MAX_SEVERITY
from ..data.derived import DerivedSpec
from ..data.perturb import PERTURBATIONS
from ..data.selfblend import BLEND_REGIONS
from .verdict import ABSTAIN_RULES
from ..errors import UsageError

PRECISIONS = ("auto", "bf16", "fp32")
SELECT_METRICS = ("val_score", "val_acc", "val_auc", "val_loss")


@dataclass
class TrainConfig:
    """Everything `gazeclip train` needs besides the data folder and the run folder."""

    model: str = option("gazeclip", "registered model name (gazeclip.models.list_models())")
    backbone: str = option("clip-b16-offline", "backbone name (gazeclip.models.backbones.list_backbones())")
    clip: str | None = option(None, "checkpoint path for the clip-b16 / clip-l14 backbones")
    model_overrides: dict = option({}, "model config fields passed to create_model (ablation switches; the flag "
                                       "is --model-arg KEY=VALUE)")
    protocol: str = option("P2", "protocol name in DATA/protocols.yaml")
    epochs: int = option(10, "maximum number of epochs")
    batch_size: int = option(32, "global batch size (split evenly across DDP processes)")
    lr: float = option(1e-3, "peak learning rate of AdamW")
    weight_decay: float = option(0.01, "AdamW weight decay")
    betas: tuple = option((0.9, 0.999), "AdamW betas")
    warmup_epochs: float = option(1.0, "linear warm-up length in epochs, then cosine decay to min_lr_ratio*lr")
    min_lr_ratio: float = option(0.0, "final learning rate as a fraction of lr")
    grad_clip: float = option(1.0, "clip the global gradient norm to this (0 = off)")
    seed: int = option(0, "seed for model init, data order and augmentation")
    precision: str = option("auto", "training precision: auto (bf16 autocast with fp32 master weights on CUDA "
                                    "devices with bf16 and on CPUs with native bf16, AMX or AVX512-BF16; fp32 "
                                    "elsewhere), bf16 or fp32 (forced)", PRECISIONS)
    device: str = option("auto", "auto | cpu | cuda | cuda:N")
    patience: int = option(3, "early stopping: epochs without improvement of the validation metric (0 = off)")
    select_metric: str = option("val_score", "validation metric to select on: val_score (mean of attribution ACC "
                                             "and detection AUC), val_acc, val_auc or val_loss", SELECT_METRICS)
    checkpoint_every: int = option(0, "also checkpoint every N optimiser steps inside an epoch (0 = end of epoch "
                                      "only)")
    feature_cache: bool = option(True, "train the upper blocks from cached frozen-prefix hidden states")
    cache_dir: str | None = option(None, "feature cache folder (default: DATA/.cache/features)")
    cache_dtype: str = option("float16", "storage dtype of cached hidden states (float16 halves the disk)",
                              ("float16", "float32"))
    faces: str = option("detect", "detect: crop the detected face and estimate gaze; none: whole image, no gaze",
                        ("detect", "none"))
    gaze_estimator: str = option("ethxgaze-r18", "gaze estimator name (gazeclip.gaze)")
    face_cache_dir: str | None = option(None, "face/gaze record cache folder (default: DATA/.cache/faces)")
    hflip: float = option(0.0, "augmentation: probability of a horizontal flip (changes pixels: bypasses the "
                               "cache)")
    color_jitter: float = option(0.0, "augmentation: probability of a brightness/contrast jitter (bypasses the "
                                      "cache)")
    # design choice, not from the paper: SBI self-blends and robustness copies are pre-rendered into
    # DATA/.cache (K seeded images per source), not made per step, so faces, gaze and frozen-prefix
    # states stay cached for them (gazeclip.data.derived)
    self_blend: int = option(0, "self-blended pseudo-fakes (SBI): K seeded blends per real train photo, trained as "
                                "detection-only fakes (0 = off)")
    self_blend_regions: tuple = option(BLEND_REGIONS, "self-blend mask regions, one drawn per blend: face, eyes, "
                                                      "mouth, nose")
    robust_augment: int = option(0, "robustness augmentation: K seeded perturbed copies (JPEG, blur, noise, resize, "
                                     "colour) per training item, self-blends included (0 = off)")
    robust_augment_p: float = option(0.5, "probability that an item is replaced by one of its perturbed copies in "
                                          "an epoch")
    robust_augment_kinds: tuple = option(PERTURBATIONS, "perturbation kinds drawn from (gazeclip robustness's)")
    robust_augment_severity: tuple = option((1, MAX_SEVERITY), "lowest and highest severity drawn (1..5, as in "
                                                               "gazeclip robustness)")
    num_workers: int = option(0, "DataLoader worker processes")
    # design choice, not from the paper: class-balanced sampling (real and every seen generator
    # drawn equally often; an epoch = n_classes x median class size items). Off by default: on the
    # validation split of mini v2 (seed 0) it cost clip-lora 11 and GazeCLIP 19 points of ACC (docs/engine.md).
    balance_classes: bool = option(False, "draw real and each seen generator equally often in training "
                                          "(epoch = n_classes x median class size); false (default): every item "
                                          "once per epoch")
    unknown_quantile: float = option(0.05, "unknown-generator threshold: this quantile of the predicted-class "
                                           "probability p(g | fake) on correctly attributed fake validation faces")
    detection_threshold_rule: str = option("balanced", "design choice, not from the paper: the real/fake threshold "
                                           "of predict verdicts, chosen on the validation split: 'balanced' (max "
                                           "balanced accuracy) or 'fpr' (at most detection_target_fpr of real val "
                                           "faces called fake)", ("balanced", "fpr"))
    detection_target_fpr: float = option(0.05, "target false-positive rate on real validation faces for rule 'fpr'")
    # design choice, not from the paper: abstain ("uncertain") outside what validation faces cover
    abstain_quantile: float = option(0.005, "abstain limits: a predict face smaller, less colourful or less "
                                            "confidently detected than this quantile of the validation faces, or "
                                            "with a head turned further than their 1 - quantile, is 'uncertain'")
    abstain_rules: tuple = option(ABSTAIN_RULES, "abstain rules to calibrate (YAML list; any of "
                                                 f"{', '.join(ABSTAIN_RULES)}; [] = never uncertain)")
    max_train_items: int = option(0, "use at most this many training items (0 = all), for quick trials")
    find_unused_parameters: bool = option(True, "DDP: tolerate trainable parameters a step does not use")
    progress: bool = option(True, "show tqdm progress bars")
    interrupt_after_steps: int = option(0, "testing only: exit as if killed after N optimiser steps (0 = off)",
                                        flag=False)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("betas", "self_blend_regions", "robust_augment_kinds", "robust_augment_severity", "abstain_rules"):
            d[k] = list(d[k])  # YAML's safe dumper writes lists, not tuples
        return d

    def __post_init__(self):
        check_config(self, "TrainConfig")
        try:
            self.derived_spec()
        except ValueError as e:
            raise UsageError(f"TrainConfig: {e}") from None
        if not 0.0 <= self.robust_augment_p <= 1.0:
            raise UsageError(f"TrainConfig: robust_augment_p={self.robust_augment_p} must lie in [0, 1]")
        bad = [r for r in self.abstain_rules if r not in ABSTAIN_RULES]
        if bad:
            raise UsageError(f"TrainConfig: abstain_rules {bad} unknown; use any of {', '.join(ABSTAIN_RULES)}")
        if not 0.0 <= self.abstain_quantile < 0.5:
            raise UsageError(f"TrainConfig: abstain_quantile={self.abstain_quantile} must be in [0, 0.5)")

    def derived_spec(self) -> DerivedSpec:
        """The training items to render from the data folder (self-blends, perturbed copies)."""
        return DerivedSpec(self.self_blend, tuple(self.self_blend_regions), self.robust_augment,
                           tuple(self.robust_augment_kinds), tuple(self.robust_augment_severity), self.seed)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> "TrainConfig":
        """From plain values (YAML): unknown keys, wrong types and values outside a field's choices
        fail with one line starting with `source`; "1e-3" is read as a number, lists as tuples."""
        return config_from_dict(cls, d, source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        """A run config file, or a packaged one by name (`smoke`; see gazeclip/configs/runs/)."""
        from ..configs import find_config

        path = find_config("runs", path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise UsageError(f"{path}: not valid YAML ({str(e).splitlines()[0][:100]})") from None
        if not isinstance(data, dict):
            raise UsageError(f"{path}: a run config must be a YAML mapping of TrainConfig fields")
        return cls.from_dict(data, source=str(path))

    def replace(self, **kw) -> "TrainConfig":
        return dataclasses.replace(self, **{k: v for k, v in kw.items() if v is not None})
