"""The onnxruntime side of an ONNX export (`gazeclip export`, export/exporter.py): find an export
folder, read and check its `export.json`, and run its model file behind the engine's model
interface (`OnnxModel(folder, precision)(batch) -> ModelOutput`) on the CPU.

An export folder is shared like a run folder, so nothing in it is trusted: `export.json` is
validated field by field (known names only, every number within bounds), it pins every other file
of the folder by sha256 (the model files, config.yaml, taxonomy.json, calibration.json), and a
file is used only after its digest matched (`verified_file`). Model file names are the fixed
names of FILES, so no path can point outside the folder.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..common import sha256_of
from ..errors import DamagedFileError, GazeclipError, MissingFileError, UsageError
from ..models.interface import Batch, ModelOutput

FORMAT = "gazeclip-onnx/1"
INPUTS = ("pixel_values", "gaze_vector", "gaze_pitchyaw", "gaze_features", "gaze_valid", "region_boxes")
OUTPUTS = ("attribution_logits", "family_logits", "p_fake", "embedding")
FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
RUN_FILES = ("config.yaml", "taxonomy.json", "calibration.json")  # copied from the run, pinned too
# design choice, not from the paper: sane bounds on what export.json may say (CLIP crops are
# 224-448 px; a 40000 px crop would take ~4.8 GB a face)
IMAGE_SIZE_RANGE = (16, 1024)
GAZE_DIM_RANGE = (1, 4096)


def session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def export_fix(folder: Path) -> str:
    return f"export the run again: `gazeclip export --run RUN --out {folder} --force [--int8]`"


def verified_file(folder: str | Path, meta: dict, name: str) -> Path:
    """FOLDER/name after checking it against the sha256 export.json pins for it."""
    folder = Path(folder)
    path = folder / name
    if not path.is_file():
        raise DamagedFileError(path, "missing from the export", export_fix(folder))
    if sha256_of(path) != meta["sha256"][name]:
        raise DamagedFileError(path, "does not match the sha256 export.json pins for it (a changed byte, or a file "
                               "from another export)", export_fix(folder))
    return path


class OnnxModel:
    """An exported model run by onnxruntime (CPU) behind the engine's interface: `model(batch)`
    returns a ModelOutput of CPU tensors; eval()/train(False) are accepted, training is not."""

    training = False
    inference_only = True
    supports_prefix_cache = False  # capabilities: models/interface.py

    def __init__(self, folder: str | Path, precision: str = "fp32", threads: int | None = None):
        from ..models.backbones import ImagePreprocess

        folder = Path(folder)
        meta = read_export_meta(folder)
        if precision not in FILES:
            raise UsageError(f"ONNX precision {precision!r}: use {' or '.join(FILES)}")
        if precision not in meta["files"]:
            hint = " --int8" if precision == "int8" else ""
            raise MissingFileError(f"{folder / FILES[precision]}: not exported; run "
                                    f"`gazeclip export --run RUN --out {folder} --force{hint}`")
        path = verified_file(folder, meta, FILES[precision])
        self.folder, self.path, self.precision, self.meta = folder, path, precision, meta
        self._open(path, threads)
        self.preprocess = ImagePreprocess(int(meta["image_size"]), tuple(meta["mean"]), tuple(meta["std"]))
        self.gaze_feature_dim = int(meta["gaze_feature_dim"])
        self.model_name = meta["model"]

    def _open(self, path: Path, threads: int | None) -> None:
        """The runtime's session for `path` (the OpenVINO model, run/openvino_runtime.py, has its own)."""
        try:
            self.session = session(path, threads)
        except Exception as e:  # noqa: BLE001 - onnxruntime's own error types for files it cannot load
            raise DamagedFileError(path, f"onnxruntime cannot load it ({str(e).splitlines()[0][:120]})",
                                   export_fix(self.folder)) from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        if not set(self.input_names) <= set(INPUTS):
            raise DamagedFileError(path, f"unexpected inputs {self.input_names}", export_fix(self.folder))

    def eval(self) -> "OnnxModel":
        return self

    def train(self, mode: bool = True) -> "OnnxModel":
        if mode:
            raise GazeclipError(f"{self.path}: an ONNX model cannot be trained")
        return self

    def to(self, *args, **kwargs) -> "OnnxModel":
        return self

    def run_arrays(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(list(OUTPUTS), {k: feeds[k] for k in self.input_names})
        return dict(zip(OUTPUTS, outs))

    def __call__(self, batch: Batch) -> ModelOutput:
        if batch.pixel_values is None:
            raise UsageError("the ONNX model needs pixel_values (it has no frozen-prefix input)")

        def f32(t):
            return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)

        feeds = {"pixel_values": f32(batch.pixel_values), "gaze_vector": f32(batch.gaze_vector),
                 "gaze_pitchyaw": f32(batch.gaze_pitchyaw), "gaze_features": f32(batch.gaze_features),
                 "gaze_valid": batch.gaze_valid.detach().cpu().numpy().astype(bool),
                 "region_boxes": f32(batch.region_boxes)}
        out = {k: torch.from_numpy(v) for k, v in self.run_arrays(feeds).items()}
        return ModelOutput(attribution_logits=out["attribution_logits"], family_logits=out["family_logits"],
                           p_fake=out["p_fake"], embedding=out["embedding"],
                           detection_logit=torch.logit(out["p_fake"].double(), eps=1e-12).float())


def _bad(p: Path, what: str) -> DamagedFileError:
    return DamagedFileError(p, what, export_fix(p.parent))


def _int_in(p: Path, meta: dict, key: str, lo: int, hi: int) -> int:
    v = meta.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _bad(p, f"{key} {str(v)[:40]} is not a whole number from {lo} to {hi}")
    return v


def _triple(p: Path, meta: dict, key: str, lo: float, hi: float) -> None:
    v = meta.get(key)
    if not (isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                        and math.isfinite(x) and lo <= x <= hi for x in v)):
        raise _bad(p, f"{key} {str(v)[:60]} is not three numbers from {lo} to {hi}")


def read_export_meta(folder: str | Path) -> dict:
    """FOLDER/export.json, validated field by field; a damaged one raises `DamagedFileError`
    naming it. The files it pins are checked when used (`verified_file`)."""
    from .folder import read_json_file

    folder = Path(folder)
    p = folder / "export.json"
    if not p.is_file():
        raise MissingFileError(f"{folder}: not an ONNX export (no export.json); make one with "
                                f"`gazeclip export --run RUN --out {folder}`")
    meta = read_json_file(p, export_fix(folder))
    if not isinstance(meta, dict):
        raise _bad(p, "is not a JSON object")
    if meta.get("format") != FORMAT:
        raise _bad(p, f"format {str(meta.get('format'))[:40]}, expected {FORMAT!r}")
    files, digests = meta.get("files"), meta.get("sha256")
    if not (isinstance(files, dict) and files and all(FILES.get(k) == v for k, v in files.items())):
        raise _bad(p, f"files {str(files)[:80]}: expected a mapping of precisions to {FILES}")
    pinned = [*files.values(), *RUN_FILES]
    if not (isinstance(digests, dict) and all(isinstance(digests.get(n), str) and len(digests[n]) == 64 for n in pinned)):
        raise _bad(p, f"sha256 must pin every file of the export ({', '.join(pinned)}); an export made before "
                   "files were pinned cannot be checked")
    _int_in(p, meta, "image_size", *IMAGE_SIZE_RANGE)
    _int_in(p, meta, "gaze_feature_dim", *GAZE_DIM_RANGE)
    _triple(p, meta, "mean", -10.0, 10.0)
    _triple(p, meta, "std", 1e-3, 10.0)
    if not all(isinstance(meta.get(k), str) and meta[k] for k in ("model", "backbone")):
        raise _bad(p, "model and backbone must be names")
    if meta.get("default_precision") not in files:
        raise _bad(p, f"default_precision {str(meta.get('default_precision'))[:40]} is not one of {list(files)}")
    return meta


def find_export(run_dir: str | Path) -> Path:
    """An export folder itself, or RUN/export inside a training run."""
    run_dir = Path(run_dir)
    for d in (run_dir, run_dir / "export"):
        if (d / "export.json").is_file():
            return d
    raise MissingFileError(f"{run_dir}: no ONNX export here or in {run_dir / 'export'}; make one with "
                            f"`gazeclip export --run {run_dir} --out {run_dir / 'export'} [--int8]`")


def resolve_onnx_precision(folder: Path, precision: str | None, meta: dict | None = None) -> str:
    """auto: the export's `default_precision`: int8 only when the export measured that it changes no
    verdict and no named generator on the run's validation faces, else fp32 (see export_run)."""
    if precision in (None, "auto"):
        return (meta or read_export_meta(folder))["default_precision"]
    if precision not in FILES:
        raise UsageError(f"precision {precision!r} with runtime onnx: use auto, fp32 or int8 "
                         "(bf16 is for the torch runtime)")
    return precision
