"""Model registry: one YAML per model under `configs/models/` (like DeepfakeBench's detector
configs), each naming an architecture and the config values that differ from its defaults.

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

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .backbones import Backbone, create_backbone
from .base import DFADModel
from .baselines import ClipLinearProbe, ClipZeroShot
from .config import GazeCLIPConfig, LinearProbeConfig, ZeroShotConfig, config_from_dict
from .gazeclip import GazeCLIP
from .interface import Taxonomy

ARCHITECTURES: dict[str, tuple[type[DFADModel], type]] = {
    "gazeclip": (GazeCLIP, GazeCLIPConfig),
    "clip-linear-probe": (ClipLinearProbe, LinearProbeConfig),
    "clip-zeroshot": (ClipZeroShot, ZeroShotConfig),
}
FORMAT = "gazeclip-model/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def config_dir() -> Path:
    """`$GAZECLIP_MODEL_CONFIGS`, else `configs/models/` of the source tree (editable install)."""
    env = os.environ.get("GAZECLIP_MODEL_CONFIGS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "configs" / "models"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    architecture: str
    description: str
    config: dict[str, Any]  # raw values from the YAML, checked when the model is built
    path: Path


def _load_spec(path: Path) -> ModelSpec:
    data = yaml.safe_load(path.read_text()) or {}
    allowed = {"name", "architecture", "description", "config"}
    extra = sorted(set(data) - allowed)
    if extra:
        raise ValueError(f"{path}: unknown key(s) {', '.join(extra)}; valid: {', '.join(sorted(allowed))}")
    arch = data.get("architecture")
    if arch not in ARCHITECTURES:
        raise ValueError(f"{path}: architecture {arch!r} is not one of {', '.join(ARCHITECTURES)}")
    name = data.get("name", path.stem)
    if name != path.stem:
        raise ValueError(f"{path}: name {name!r} must equal the file name {path.stem!r}")
    return ModelSpec(name, arch, data.get("description", ""), dict(data.get("config") or {}), path)


def _specs() -> dict[str, ModelSpec]:
    d = config_dir()
    if not d.is_dir():
        raise FileNotFoundError(f"model configs not found at {d} (set GAZECLIP_MODEL_CONFIGS)")
    return {p.stem: _load_spec(p) for p in sorted(d.glob("*.yaml"))}


def list_models() -> list[str]:
    return sorted(_specs())


def model_spec(name: str) -> ModelSpec:
    specs = _specs()
    if name not in specs:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(specs))}")
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
    return config_from_dict(cfg_cls, values, f" of model {name!r}")


def create_model(name: str, backbone: str | Backbone = "clip-b16-offline", taxonomy: Taxonomy | None = None,
                 clip: str | Path | None = None, **overrides) -> DFADModel:
    """Build a registered model on a backbone (a name, or a `Backbone` already built: its frozen
    towers are shared, not copied). `overrides` are config fields (see `configs/models/*.yaml`)."""
    if taxonomy is None:
        raise ValueError("create_model needs taxonomy= (the classes and families to attribute)")
    spec = model_spec(name)
    config = model_config(name, **overrides)
    if not isinstance(backbone, Backbone):
        backbone = create_backbone(backbone, clip=clip)
    model_cls, _ = ARCHITECTURES[spec.architecture]
    return model_cls(backbone, taxonomy, config, name=name)


def _taxonomy_to_json(t: Taxonomy) -> dict:
    return {"classes": list(t.classes), "class_family": dict(t.class_family),
            "class_forgery_type": dict(t.class_forgery_type), "families": list(t.families)}


def _taxonomy_from_json(d: dict) -> Taxonomy:
    return Taxonomy(tuple(d["classes"]), dict(d["class_family"]), dict(d["class_forgery_type"]), tuple(d["families"]))


def save_pretrained(model: DFADModel, path: str | Path) -> Path:
    """Write `config.json` (model, architecture, backbone, config, taxonomy) and the trainable
    weights in `model.safetensors`. Frozen towers are not stored."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "model": model.model_name, "architecture": model.architecture,
            "backbone": model.backbone_name, "config": dataclasses.asdict(model.config),
            "taxonomy": _taxonomy_to_json(model.taxonomy)}
    (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.trainable_state_dict().items()}
    save_file(state, str(path / WEIGHTS_FILE), metadata={"format": FORMAT})
    return path


def from_pretrained(path: str | Path, backbone: str | Backbone | None = None, clip: str | Path | None = None,
                    map_location: str = "cpu") -> DFADModel:
    """Rebuild a model saved by `save_pretrained`; the backbone is the saved one unless given."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = json.loads((path / CONFIG_FILE).read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a gazeclip model (format {meta.get('format')!r}, expected {FORMAT!r})")
    arch = meta["architecture"]
    if arch not in ARCHITECTURES:
        raise ValueError(f"{path}: architecture {arch!r} is not one of {', '.join(ARCHITECTURES)}")
    model_cls, cfg_cls = ARCHITECTURES[arch]
    config = config_from_dict(cfg_cls, meta["config"], f" in {path}")
    if backbone is None:
        backbone = meta["backbone"]
    if not isinstance(backbone, Backbone):
        backbone = create_backbone(backbone, clip=clip)
    model = model_cls(backbone, _taxonomy_from_json(meta["taxonomy"]), config, name=meta["model"])
    weights = path / WEIGHTS_FILE
    state = load_file(str(weights), device=map_location) if weights.exists() else {}
    model.load_trainable_state_dict(state)
    return model
