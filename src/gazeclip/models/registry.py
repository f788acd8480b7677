"""Model registry: one YAML per model in the package's `configs/models/` (like DeepfakeBench's
detector configs, shipped as open_clip ships its model configs), each naming an architecture and
the config values that differ from its defaults. `add_model_config(path)` adds a user's own.

    >>> from gazeclip.models import list_models, create_model
    >>> model = create_model("gazeclip", backbone="tiny-random", taxonomy=tax, lora_rank=4)
    >>> model.save_pretrained("run/model")          # trainable weights + config only
    >>> again = from_pretrained("run/model")         # frozen towers come from the weight cache

A YAML file:

    name: gazeclip-no-aws
    architecture: gazeclip
    description: GazeCLIP without the word selector (ablation)
    config:
      aws: none
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..configfields import config_from_dict
from ..registry import UnknownNameError
from .backbones import Backbone, create_backbone
from .base import DFADModel
from .baselines import ClipLinearProbe, ClipZeroShot
from .config import GazeCLIPConfig, LinearProbeConfig, ZeroShotConfig
from .gazeclip import GazeCLIP
from .interface import Taxonomy
from .saving import (CONFIG_FILE, FORMAT, WEIGHTS_FILE, read_pretrained_meta,  # noqa: F401 (API)
                     read_pretrained_weights, save_pretrained)
from ..errors import MissingFileError, UsageError

ARCHITECTURES: dict[str, tuple[type[DFADModel], type]] = {
    "gazeclip": (GazeCLIP, GazeCLIPConfig),
    "clip-linear-probe": (ClipLinearProbe, LinearProbeConfig),
    "clip-zeroshot": (ClipZeroShot, ZeroShotConfig),
}


_EXTRA_CONFIGS: list[Path] = []  # added by add_model_config(), searched after the packaged ones


def add_model_config(path: str | Path) -> None:
    """Register a user's model YAML file, or every *.yaml of a folder (open_clip's `add_model_config`).
    A user file with a packaged model's name replaces it."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: no such model config file or folder")
    _EXTRA_CONFIGS.append(path)


def _config_files() -> list:
    """Packaged model YAMLs, then `$GAZECLIP_MODEL_CONFIGS` (a folder), then add_model_config() paths."""
    from ..configs import packaged

    files = list(packaged("models").values())
    extra = [Path(os.environ["GAZECLIP_MODEL_CONFIGS"])] if os.environ.get("GAZECLIP_MODEL_CONFIGS") else []
    for p in extra + _EXTRA_CONFIGS:
        files += sorted(p.glob("*.yaml")) if p.is_dir() else [p]
    return files


@dataclass(frozen=True)
class ModelSpec:
    name: str
    architecture: str
    description: str
    config: dict[str, Any]  # raw values from the YAML, checked when the model is built
    path: Any  # Path or importlib.resources Traversable


def _load_spec(path) -> ModelSpec:
    data = yaml.safe_load(path.read_text()) or {}
    allowed = {"name", "architecture", "description", "config"}
    extra = sorted(set(data) - allowed)
    if extra:
        raise UsageError(f"{path}: unknown key(s) {', '.join(extra)}; valid: {', '.join(sorted(allowed))}")
    arch = data.get("architecture")
    if arch not in ARCHITECTURES:
        raise UsageError(f"{path}: architecture {arch!r} is not one of {', '.join(ARCHITECTURES)}")
    stem = Path(path.name).stem
    name = data.get("name", stem)
    if name != stem:
        raise UsageError(f"{path}: name {name!r} must equal the file name {stem!r}")
    return ModelSpec(name, arch, data.get("description", ""), dict(data.get("config") or {}), path)


def _specs() -> dict[str, ModelSpec]:
    specs = {}
    for f in _config_files():
        spec = _load_spec(f)
        specs[spec.name] = spec
    return specs


def list_models() -> list[str]:
    return sorted(_specs())


def model_spec(name: str) -> ModelSpec:
    specs = _specs()
    if name not in specs:
        raise UnknownNameError("model", name, sorted(specs))
    return specs[name]


def model_config(name: str, **overrides):
    """The typed config of a registered model, with overrides applied and checked."""
    spec = model_spec(name)
    _, cfg_cls = ARCHITECTURES[spec.architecture]
    values = dict(spec.config)
    for k, v in overrides.items():
        if k == "prompts" and isinstance(v, dict):
            v = {**values.get("prompts", {}), **v}
        values[k] = v
    return config_from_dict(cfg_cls, values, f"model {name!r}")


def create_model(name: str, backbone: str | Backbone = "clip-b16-offline", taxonomy: Taxonomy | None = None,
                 clip: str | Path | None = None, **overrides) -> DFADModel:
    """Build a registered model on a backbone (a name, or a `Backbone` already built: its frozen
    towers are shared, not copied). `overrides` are config fields (see the package's `configs/models/*.yaml`)."""
    if taxonomy is None:
        raise UsageError("create_model needs taxonomy= (the classes and families to attribute)")
    spec = model_spec(name)
    config = model_config(name, **overrides)
    if not isinstance(backbone, Backbone):
        backbone = create_backbone(backbone, clip=clip)
    model_cls, _ = ARCHITECTURES[spec.architecture]
    return model_cls(backbone, taxonomy, config, name=name)


def from_pretrained(path: str | Path, backbone: str | Backbone | None = None, clip: str | Path | None = None,
                    map_location: str = "cpu") -> DFADModel:
    """Rebuild a model saved by `save_pretrained`; the backbone is the saved one unless given.
    Damaged or inconsistent files raise `DamagedFileError` naming the file."""
    from ..errors import DamagedFileError

    path = Path(path)
    meta = read_pretrained_meta(path)
    arch = meta["architecture"]
    if arch not in ARCHITECTURES:
        raise UsageError(f"{path}: architecture {arch!r} is not one of {', '.join(ARCHITECTURES)}")
    state = read_pretrained_weights(path, meta, map_location)
    model_cls, cfg_cls = ARCHITECTURES[arch]
    config = config_from_dict(cfg_cls, meta["config"], str(path / CONFIG_FILE))
    try:
        taxonomy = Taxonomy.from_dict(meta["taxonomy"])
    except (KeyError, TypeError, ValueError) as e:
        raise DamagedFileError(path / CONFIG_FILE, f"damaged taxonomy ({e})") from None
    if backbone is None:
        backbone = meta["backbone"]
    if not isinstance(backbone, Backbone):
        backbone = create_backbone(backbone, clip=clip)
    model = model_cls(backbone, taxonomy, config, name=meta["model"])
    try:
        model.load_trainable_state_dict(state)
    except ValueError as e:
        raise DamagedFileError(path / WEIGHTS_FILE, f"does not fit the model of config.json ({e})") from None
    return model
