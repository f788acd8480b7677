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


_EXTRA_CONFIGS: list[Path] = []  # added by add_model_config(), searched after the packaged ones


def add_model_config(path: str | Path) -> None:
    """Register a user's model YAML file, or every *.yaml of a folder (open_clip's `add_model_config`).
    A user file with a packaged model's name replaces it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model config file or folder")
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
        raise ValueError(f"{path}: unknown key(s) {', '.join(extra)}; valid: {', '.join(sorted(allowed))}")
    arch = data.get("architecture")
    if arch not in ARCHITECTURES:
        raise ValueError(f"{path}: architecture {arch!r} is not one of {', '.join(ARCHITECTURES)}")
    stem = Path(path.name).stem
    name = data.get("name", stem)
    if name != stem:
        raise ValueError(f"{path}: name {name!r} must equal the file name {stem!r}")
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
    towers are shared, not copied). `overrides` are config fields (see the package's `configs/models/*.yaml`)."""
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


def _state_digest(state: dict) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def _meta_digest(meta: dict) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()


def save_pretrained(model: DFADModel, path: str | Path) -> Path:
    """Write `config.json` (model, architecture, backbone, config, taxonomy) and the trainable
    weights in `model.safetensors`. Frozen towers are not stored. The weights file records the
    sha256 of its tensors and of config.json's content, so a flipped byte, a truncation or an
    edited config.json (e.g. a reordered taxonomy) is refused when loaded."""
    from safetensors.torch import save_file

    from ..atomic import atomic_write_text

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "model": model.model_name, "architecture": model.architecture,
            "backbone": model.backbone_name, "config": dataclasses.asdict(model.config),
            "taxonomy": _taxonomy_to_json(model.taxonomy)}
    atomic_write_text(path / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.trainable_state_dict().items()}
    save_file(state, str(path / WEIGHTS_FILE), metadata={"format": FORMAT, "weights_sha256": _state_digest(state),
                                                         "config_sha256": _meta_digest(meta)})
    return path


def read_pretrained_meta(path: str | Path) -> dict:
    """`config.json` of a saved model, checked: one `DamagedFileError` naming the file otherwise."""
    from ..errors import DamagedFileError

    cfg = Path(path) / CONFIG_FILE
    if not cfg.is_file():
        raise FileNotFoundError(f"{cfg}: missing; not a saved gazeclip model folder")
    try:
        meta = json.loads(cfg.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DamagedFileError(cfg, f"damaged JSON ({str(e)[:100]})") from None
    if not isinstance(meta, dict):
        raise DamagedFileError(cfg, "not a JSON object")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a gazeclip model (format {meta.get('format')!r}, expected {FORMAT!r})")
    missing = [k for k in ("model", "architecture", "backbone", "config", "taxonomy") if k not in meta]
    if missing or not isinstance(meta["config"], dict) or not isinstance(meta["taxonomy"], dict):
        raise DamagedFileError(cfg, f"missing or malformed fields {missing or ['config', 'taxonomy']}")
    return meta


def read_pretrained_weights(path: str | Path, meta: dict | None = None, map_location: str = "cpu") -> dict:
    """The tensors of `model.safetensors`, checked against the digests stored with them (files
    saved before digests were recorded are read unchecked)."""
    from safetensors import safe_open

    from ..errors import DamagedFileError

    weights = Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: missing; the model folder is incomplete (train it again, or "
                                "`gazeclip train --out RUN --resume`)")
    fix = "copy the run folder again, or retrain it"
    try:
        with safe_open(str(weights), framework="pt", device=map_location) as f:
            stored = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for damaged headers
        raise DamagedFileError(weights, f"damaged or truncated weights ({str(e).splitlines()[0][:100]})", fix) from None
    want = stored.get("weights_sha256")
    if want is not None and _state_digest(state) != want:
        raise DamagedFileError(weights, "its tensors do not match the sha256 stored with them (a changed byte)", fix)
    want_cfg = stored.get("config_sha256")
    if meta is not None and want_cfg is not None and _meta_digest(meta) != want_cfg:
        raise DamagedFileError(Path(path) / CONFIG_FILE, f"does not match {WEIGHTS_FILE} (edited after saving: "
                               "e.g. a reordered taxonomy would rename generators)",
                               "restore the original config.json from the run you copied")
    return state


def from_pretrained(path: str | Path, backbone: str | Backbone | None = None, clip: str | Path | None = None,
                    map_location: str = "cpu") -> DFADModel:
    """Rebuild a model saved by `save_pretrained`; the backbone is the saved one unless given.
    Damaged or inconsistent files raise `DamagedFileError` naming the file."""
    from ..errors import DamagedFileError

    path = Path(path)
    meta = read_pretrained_meta(path)
    arch = meta["architecture"]
    if arch not in ARCHITECTURES:
        raise ValueError(f"{path}: architecture {arch!r} is not one of {', '.join(ARCHITECTURES)}")
    state = read_pretrained_weights(path, meta, map_location)
    model_cls, cfg_cls = ARCHITECTURES[arch]
    config = config_from_dict(cfg_cls, meta["config"], f" in {path / CONFIG_FILE}")
    try:
        taxonomy = _taxonomy_from_json(meta["taxonomy"])
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
