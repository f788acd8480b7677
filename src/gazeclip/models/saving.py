"""Saving a model and reading what was saved: `config.json` (model, architecture, backbone,
config, taxonomy) and the trainable weights in `model.safetensors`, each checked by digest when
read. It sits with the model base (`DFADModel.save_pretrained` calls it) and below the registry,
which rebuilds a model by name from what these functions read (`from_pretrained`)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..errors import MissingFileError, UsageError

FORMAT = "gazeclip-model/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


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


def save_pretrained(model, path: str | Path, run_settings: dict | None = None) -> Path:
    """Write `config.json` (model, architecture, backbone, config, taxonomy, and `run`: the run
    settings the model's answers depend on, e.g. `faces`, when given) and the trainable weights in
    `model.safetensors`. Frozen towers are not stored. The weights file records the sha256 of its
    tensors and of config.json's content, so a flipped byte, a truncation or an edited config.json
    (e.g. a reordered taxonomy) is refused when loaded."""
    from ..atomic import atomic_write_text

    if getattr(model, "inference_only", False):
        raise UsageError(f"{model.model_name}: a copy prepared for inference (LoRA merged) cannot be saved; "
                         "save the model before gazeclip.models.inference.prepare_for_inference")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "model": model.model_name, "architecture": model.architecture,
            "backbone": model.backbone_name, "config": dataclasses.asdict(model.config),
            "taxonomy": model.taxonomy.to_dict()}
    if run_settings:
        meta["run"] = dict(run_settings)
    atomic_write_text(path / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.trainable_state_dict().items()}
    _write_weights(path / WEIGHTS_FILE, state, meta)
    return path


def _write_weights(file: Path, state: dict, meta: dict, canonical: bool = False) -> None:
    """`model.safetensors` with the digests of its tensors and of the config it belongs to.
    canonical: the same tensors always give the same bytes (safetensors writes its metadata in a
    random order), so that a file pinned by sha256 can be written again identically."""
    import struct

    from safetensors.torch import save, save_file

    metadata = {"format": FORMAT, "weights_sha256": _state_digest(state), "config_sha256": _meta_digest(meta)}
    if not canonical:
        save_file(state, str(file), metadata=metadata)
        return
    raw = save(state, metadata=metadata)
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.dumps(json.loads(raw[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # safetensors aligns the data to 8 bytes
    Path(file).write_bytes(struct.pack("<Q", len(header)) + header + raw[8 + n:])


def copy_pretrained(src: str | Path, dest: str | Path, dtype=None) -> dict:
    """Copy a saved model folder, its floating-point weights cast to `dtype` (e.g. torch.float16:
    half the bytes; the model casts them back when it loads them). Both files are checked on
    reading; the copy records the digest of its own (cast) tensors, so it is checked like any saved
    model, and the same source always gives the same bytes. A weight that does not fit the new type
    (overflow) is refused by name. Returns the
    number of tensors and parameters written."""
    import shutil

    import torch

    src, dest = Path(src), Path(dest)
    meta = read_pretrained_meta(src)
    state = read_pretrained_weights(src, meta)
    if dtype is not None:
        for k, v in state.items():
            if v.is_floating_point():
                cast = v.to(dtype)
                if not torch.isfinite(cast).all() and torch.isfinite(v).all():
                    raise ValueError(f"{src / WEIGHTS_FILE}: weight {k} does not fit in {dtype} (overflow); "
                                     "pack it in float32")
                state[k] = cast.contiguous()
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / CONFIG_FILE, dest / CONFIG_FILE)  # the same bytes: its digest still matches
    _write_weights(dest / WEIGHTS_FILE, state, meta, canonical=True)
    return {"tensors": len(state), "parameters": int(sum(v.numel() for v in state.values()))}


def read_pretrained_meta(path: str | Path) -> dict:
    """`config.json` of a saved model, checked: one `DamagedFileError` naming the file otherwise."""
    from ..errors import DamagedFileError

    cfg = Path(path) / CONFIG_FILE
    if not cfg.is_file():
        raise MissingFileError(f"{cfg}: missing; not a saved gazeclip model folder")
    try:
        meta = json.loads(cfg.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DamagedFileError(cfg, f"damaged JSON ({str(e)[:100]})") from None
    if not isinstance(meta, dict):
        raise DamagedFileError(cfg, "not a JSON object")
    if meta.get("format") != FORMAT:
        raise UsageError(f"{path}: not a gazeclip model (format {meta.get('format')!r}, expected {FORMAT!r})")
    missing = [k for k in ("model", "architecture", "backbone", "config", "taxonomy") if k not in meta]
    if missing or not isinstance(meta["config"], dict) or not isinstance(meta["taxonomy"], dict):
        raise DamagedFileError(cfg, f"missing or malformed fields {missing or ['config', 'taxonomy']}")
    return meta


def read_pretrained_weights(path: str | Path, meta: dict | None = None, map_location: str = "cpu") -> dict:
    """The tensors of `model.safetensors`, checked against the digests stored with them. A file
    without them (saved before digests existed, or with them removed) is refused: the check cannot
    be skipped by deleting it."""
    from safetensors import safe_open

    from ..errors import DamagedFileError

    weights = Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        raise MissingFileError(f"{weights}: missing; the model folder is incomplete (train it again, or "
                                "`gazeclip train --out RUN --resume`)")
    fix = "copy the run folder again, or retrain it"
    try:
        with safe_open(str(weights), framework="pt", device=map_location) as f:
            stored = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for damaged headers
        raise DamagedFileError(weights, f"damaged or truncated weights ({str(e).splitlines()[0][:100]})", fix) from None
    unverifiable = "retrain the run with this gazeclip (`gazeclip train`), or get a copy of it saved with digests"
    want = stored.get("weights_sha256")
    if not isinstance(want, str):
        raise DamagedFileError(weights, "records no sha256 of its tensors (saved before digests existed, or the record "
                               "was removed), so it cannot be checked", unverifiable)
    if _state_digest(state) != want:
        raise DamagedFileError(weights, "its tensors do not match the sha256 stored with them (a changed byte)", fix)
    want_cfg = stored.get("config_sha256")
    if meta is not None and not isinstance(want_cfg, str):
        raise DamagedFileError(weights, f"records no sha256 of {CONFIG_FILE}, so the model's taxonomy cannot be checked",
                               unverifiable)
    if meta is not None and _meta_digest(meta) != want_cfg:
        raise DamagedFileError(Path(path) / CONFIG_FILE, f"does not match {WEIGHTS_FILE} (edited after saving: "
                               "e.g. a reordered taxonomy would rename generators)",
                               "restore the original config.json from the run you copied")
    return state
