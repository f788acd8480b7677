"""The onnxruntime side of an ONNX export (`gazeclip export`, engine/export.py): find an export
folder, read its `export.json`, and run its model file behind the engine's model interface
(`OnnxModel(folder, precision)(batch) -> ModelOutput`) on the CPU."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..models.interface import Batch, ModelOutput

FORMAT = "gazeclip-onnx/1"
INPUTS = ("pixel_values", "gaze_vector", "gaze_pitchyaw", "gaze_features", "gaze_valid", "region_boxes")
OUTPUTS = ("attribution_logits", "family_logits", "p_fake", "embedding")
FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}


def session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OnnxModel:
    """An exported model run by onnxruntime (CPU) behind the engine's interface: `model(batch)`
    returns a ModelOutput of CPU tensors; eval()/train(False) are accepted, training is not."""

    training = False
    inference_only = True

    def __init__(self, folder: str | Path, precision: str = "fp32", threads: int | None = None):
        from ..models.backbones import ImagePreprocess

        folder = Path(folder)
        meta = read_export_meta(folder)
        if precision not in FILES:
            raise ValueError(f"ONNX precision {precision!r}: use {' or '.join(FILES)}")
        path = folder / meta["files"].get(precision, FILES[precision])
        if not path.is_file():
            hint = " --int8" if precision == "int8" else ""
            raise FileNotFoundError(f"{path}: not exported; run `gazeclip export --run RUN --out {folder}{hint}`")
        self.folder, self.path, self.precision, self.meta = folder, path, precision, meta
        self._open(path, threads)
        self.preprocess = ImagePreprocess(int(meta["image_size"]), tuple(meta["mean"]), tuple(meta["std"]))
        self.gaze_feature_dim = int(meta["gaze_feature_dim"])
        self.model_name = meta["model"]

    def _open(self, path: Path, threads: int | None) -> None:
        """The runtime's session for `path` (the OpenVINO model, run/openvino_runtime.py, has its own)."""
        self.session = session(path, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def eval(self) -> "OnnxModel":
        return self

    def train(self, mode: bool = True) -> "OnnxModel":
        if mode:
            raise RuntimeError(f"{self.path}: an ONNX model cannot be trained")
        return self

    def to(self, *args, **kwargs) -> "OnnxModel":
        return self

    def run_arrays(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(list(OUTPUTS), {k: feeds[k] for k in self.input_names})
        return dict(zip(OUTPUTS, outs))

    def __call__(self, batch: Batch) -> ModelOutput:
        if batch.pixel_values is None:
            raise ValueError("the ONNX model needs pixel_values (it has no frozen-prefix input)")

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


def read_export_meta(folder: str | Path) -> dict:
    folder = Path(folder)
    p = folder / "export.json"
    if not p.is_file():
        raise FileNotFoundError(f"{folder}: not an ONNX export (no export.json); make one with "
                                f"`gazeclip export --run RUN --out {folder}`")
    meta = json.loads(p.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{p}: format {meta.get('format')!r}, expected {FORMAT!r}; export the run again")
    return meta


def find_export(run_dir: str | Path) -> Path:
    """An export folder itself, or RUN/export inside a training run."""
    run_dir = Path(run_dir)
    for d in (run_dir, run_dir / "export"):
        if (d / "export.json").is_file():
            return d
    raise FileNotFoundError(f"{run_dir}: no ONNX export here or in {run_dir / 'export'}; make one with "
                            f"`gazeclip export --run {run_dir} --out {run_dir / 'export'} [--int8]`")


def resolve_onnx_precision(folder: Path, precision: str | None) -> str:
    """auto: int8 when the export has it, else fp32."""
    if precision in (None, "auto"):
        return "int8" if (folder / FILES["int8"]).is_file() else "fp32"
    if precision not in FILES:
        raise ValueError(f"precision {precision!r} with runtime onnx: use auto, fp32 or int8 "
                         "(bf16 is for the torch runtime)")
    return precision
