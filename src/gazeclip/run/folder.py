"""Reading and writing a run folder safely. Run folders are what people share, so nothing in one
may run code, and a damaged file must give one line naming it, never a traceback.

- `load_checkpoint` reads `checkpoint.pt` with `torch.load(weights_only=True)`: tensors and plain
  data only; a pickled object is refused (`UnsafeFileError`).
- `read_json_file`, `read_taxonomy`, `read_calibration`: JSON files, validated field by field.
- `save_model` replaces `model/`'s files one at a time, each atomically, so a kill at any moment
  leaves a loadable model (see its docstring).
- `clean_stale` removes what killed runs leave behind (temp files, half-saved model folders).
"""
from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DamagedFileError, MissingFileError, UnsafeFileError, UsageError
from ..models.interface import Taxonomy
from .config import TrainConfig
from .verdict import AbstainLimits

CHECKPOINT_FIX = ("move it away and run `gazeclip train --out RUN --resume` to start the run again from the "
                  "beginning")


# ---------------------------------------------------------------- checkpoint.pt
def rng_state() -> dict:
    """Python, numpy and torch RNG states as tensors and plain data (no numpy objects, so the
    checkpoint loads with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random_state_plain(),
            "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}


def random_state_plain():
    import random

    version, internal, gauss = random.getstate()
    return [int(version), [int(x) for x in internal], gauss]


def set_rng_state(s: dict) -> None:
    import random

    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = s["python"]
    random.setstate((version, tuple(internal), gauss))


def load_checkpoint(path: str | Path) -> dict:
    """`checkpoint.pt` as written by the trainer, loaded without running any code from it."""
    path = Path(path)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()
        hint = next((ln.strip() for ln in first if "Unsupported global" in ln or "GLOBAL" in ln), "")
        raise UnsafeFileError(path, "holds pickled Python objects, which gazeclip never loads (they can run code)"
                              + (f": {hint[:120]}" if hint else "")
                              + "; a gazeclip checkpoint holds only tensors and plain data", CHECKPOINT_FIX) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        raise DamagedFileError(path, f"damaged checkpoint ({str(e).strip().splitlines()[0][:120] if str(e) else type(e).__name__})",
                               CHECKPOINT_FIX) from None
    want = {"model": dict, "optimizer": dict, "scheduler": dict, "state": dict, "rng": dict}
    if not isinstance(ck, dict) or any(not isinstance(ck.get(k), t) for k, t in want.items()):
        raise DamagedFileError(path, f"not a gazeclip checkpoint (expected keys {', '.join(want)})", CHECKPOINT_FIX)
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in ck["model"].items()):
        raise DamagedFileError(path, "its model weights are not a mapping of names to tensors", CHECKPOINT_FIX)
    try:
        rng = ck["rng"]
        if not (isinstance(rng["torch"], torch.Tensor) and isinstance(rng["numpy"]["keys"], torch.Tensor)):
            raise TypeError
    except (KeyError, TypeError):
        raise DamagedFileError(path, "its RNG state is missing or damaged", CHECKPOINT_FIX) from None
    return ck


# ---------------------------------------------------------------- JSON files
def read_json_file(path: str | Path, fix: str | None = None) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DamagedFileError(path, f"damaged JSON ({str(e)[:100]})", fix) from None


def taxonomy_from_json(d: Any, path: str | Path, fix: str | None = None) -> Taxonomy:
    """A Taxonomy from its JSON form, every field checked; errors name `path`."""
    try:
        classes, families = d["classes"], d["families"]
        cf, ft = d["class_family"], d["class_forgery_type"]
        ok = (all(isinstance(x, list) and x and all(isinstance(c, str) and c for c in x) for x in (classes, families))
              and all(isinstance(m, dict) and all(isinstance(v, str) for v in m.values()) for m in (cf, ft)))
        if not ok:
            raise TypeError("fields of the wrong type")
        if len(set(classes)) != len(classes) or len(set(families)) != len(families):
            raise UsageError("a class or family is listed twice")
        missing = [c for c in classes if c not in cf or c not in ft]
        if missing:
            raise UsageError(f"no family/forgery type for {missing[:3]}")
        unknown = sorted({cf[c] for c in classes} - set(families))
        if unknown:
            raise UsageError(f"families {unknown} are not in 'families'")
        return Taxonomy.from_dict(d)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DamagedFileError(path, f"not a valid taxonomy ({type(e).__name__}: {e})", fix) from None


def read_taxonomy(path: str | Path) -> Taxonomy:
    return taxonomy_from_json(read_json_file(path), path)


def same_taxonomy(a: Taxonomy, b: Taxonomy) -> bool:
    return (a.classes == b.classes and a.families == b.families
            and all(a.class_family.get(c) == b.class_family.get(c) for c in a.classes)
            and all(a.class_forgery_type.get(c) == b.class_forgery_type.get(c) for c in a.classes))


def read_calibration(path: str | Path, fix: str | None = None) -> dict:
    """`calibration.json`, validated: `unknown_threshold` (and, from version 2 on,
    `detection_threshold`) must be finite probabilities; from version 3 on, `abstain` holds the
    abstain limits (numbers or null). Returns the record as read, with its `version` (1 when it has none)."""
    fix = fix or "calibrate the run again: `gazeclip calibrate --run RUN`"
    d = read_json_file(path, fix)
    if not isinstance(d, dict):
        raise DamagedFileError(path, "is not a JSON object", fix)
    version = d.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise DamagedFileError(path, f"version {str(version)[:40]} is not an integer", fix)
    keys = ("unknown_threshold", "detection_threshold") if version >= 2 else ("unknown_threshold",)
    for key in keys:
        thr = d.get(key)
        if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not math.isfinite(thr) or \
                not 0.0 <= thr <= 1.0:
            raise DamagedFileError(path, f"{key} {str(thr)[:40]} is not a probability between 0 and 1", fix)
    if version >= 3:
        _check_abstain(path, d.get("abstain"), fix)
    return {**d, "version": version}


def _check_abstain(path, d, fix: str) -> None:
    """Version 3's "abstain" limits: a mapping whose limits are finite numbers or null."""
    if not isinstance(d, dict):
        raise DamagedFileError(path, f"abstain {d!r} is not a mapping of limits", fix)
    for key in (k for k in AbstainLimits.__dataclass_fields__ if k.startswith(("min_", "max_"))):
        v = d.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise DamagedFileError(path, f"abstain limit {key} {v!r} is not a number or null", fix)
    unknown = sorted(set(d) - set(AbstainLimits.__dataclass_fields__))
    if unknown:
        raise DamagedFileError(path, f"abstain has unknown keys {unknown}", fix)


# ---------------------------------------------------------------- model/ and stale files
# the run settings a model's answers depend on besides its weights: stored with them (model/config.json,
# covered by the weights' digest), so that an edited config.yaml is refused, not silently obeyed
MODEL_BOUND_SETTINGS = ("faces", "gaze_estimator")


def model_bound_settings(cfg: TrainConfig) -> dict:
    return {k: getattr(cfg, k) for k in MODEL_BOUND_SETTINGS}


def check_model_bound_settings(run_dir: str | Path, cfg: TrainConfig) -> None:
    """`config.yaml` against the settings stored with `model/` (models saved without them, by
    `save_pretrained` outside a run, are not checked)."""
    from ..models.saving import read_pretrained_meta

    stored = read_pretrained_meta(Path(run_dir) / "model").get("run") or {}
    for key, value in stored.items():
        if key in MODEL_BOUND_SETTINGS and getattr(cfg, key) != value:
            raise DamagedFileError(Path(run_dir) / "config.yaml",
                                   f"{key}: {getattr(cfg, key)!r}, but the model was trained with {key}: {value!r} "
                                   "(recorded with its weights; the answers would silently change)",
                                   f"set it back to {value!r}, or train a model with the setting you want")


def save_model(model: torch.nn.Module, dest: str | Path, run_settings: dict | None = None) -> None:
    """`save_pretrained` into a temp folder, then move its files into `dest` one by one with
    os.replace, weights first. Within a run `config.json` never changes (the model, its config and
    taxonomy are fixed), so after any prefix of these renames `dest` holds a consistent model: the
    old or the new weights with the same config. A kill leaves a loadable model, and at worst the
    temp folder, which `clean_stale` removes."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        model.save_pretrained(tmp, run_settings)
        names = sorted(p.name for p in tmp.iterdir())
        names.sort(key=lambda n: n != "model.safetensors")  # weights first, then the (unchanged) config
        for name in names:
            os.replace(tmp / name, dest / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def clean_stale(run_dir: str | Path) -> list[str]:
    """Remove what a killed run leaves: temp files of atomic writes (`.NAME.*.tmp`), temp model
    folders (`.model.*`), and recover `model.old` (left by the previous save scheme) when `model/`
    is gone. Returns the names removed."""
    run_dir = Path(run_dir)
    removed = []
    if not run_dir.is_dir():
        return removed
    old, model = run_dir / "model.old", run_dir / "model"
    if old.is_dir() and not model.exists():
        old.rename(model)
    for folder in (run_dir, model):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.name.startswith(".") and (p.name.endswith(".tmp") or (folder == run_dir and p.name.startswith(".model."))):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed.append(str(p.relative_to(run_dir)))
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
        removed.append("model.old")
    return removed


def read_run_yaml(run_dir: str | Path) -> dict:
    """`RUN/config.yaml` as a mapping; `DamagedFileError` naming it when it is not one."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise MissingFileError(f"{path}: not a training run folder (no config.yaml); pass the --out of "
                                "`gazeclip train`")
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DamagedFileError(path, f"damaged YAML ({str(e).splitlines()[0][:100]})") from None
    if not isinstance(d, dict):
        raise DamagedFileError(path, "not a mapping of TrainConfig fields")
    return d


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """`RUN/config.yaml` as a checked TrainConfig; `DamagedFileError` naming it when it is not one."""
    path = Path(run_dir) / "config.yaml"
    d = read_run_yaml(run_dir)
    d.pop("data", None)
    d.pop("world_size", None)
    try:
        return TrainConfig.from_dict(d, source=str(path))
    except (TypeError, ValueError) as e:
        raise DamagedFileError(path, str(e).removeprefix(f"{path}: ")) from None
