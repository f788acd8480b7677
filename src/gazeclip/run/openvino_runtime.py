"""The OpenVINO side of an ONNX export (`gazeclip export`): the same folder and the same
`model.onnx`, read by OpenVINO's CPU plugin (oneDNN kernels, fused attention and LayerNorm) and
compiled in bf16 on CPUs with native bf16 (AMX / AVX512-BF16) or fp32 elsewhere, behind the
engine's model interface: `OpenVinoModel(folder, precision)(batch) -> ModelOutput`.

OpenVINO is already a dependency (the benchmark's MobileStyleGAN runs on it), so this runtime adds
nothing to install. It reads the ONNX file directly (no IR files next to it): conversion and
compilation take a few seconds once per load.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from .onnx_runtime import OUTPUTS, OnnxModel

# our precision names -> OpenVINO's INFERENCE_PRECISION_HINT
HINTS = {"fp32": "f32", "bf16": "bf16"}
# OpenVINO 2026.4 reads an opset-17 ReduceLogSumExp as a reduction over every axis (p_fake wrong);
# from opset 18 its axes are an input, read right (export/exporter.py exports 18)
MIN_OPSET = 18


def resolve_openvino_precision(precision: str | None) -> str:
    """auto (or None): bf16 on CPUs with native bf16 (`cpu_native_bf16`), else fp32."""
    from .utils import cpu_native_bf16

    if precision in (None, "auto"):
        return "bf16" if cpu_native_bf16() else "fp32"
    if precision not in HINTS:
        raise ValueError(f"precision {precision!r} with runtime openvino: use auto, bf16 or fp32")
    return precision


def compile_cpu(path: str | Path, precision: str, threads: int | None = None):
    """`path` (ONNX or OpenVINO IR) compiled for the CPU in `precision` (fp32 | bf16) for latency,
    with `threads` inference threads (default: torch's thread count)."""
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
    return core.compile_model(core.read_model(str(path)), "CPU", config)


class OpenVinoModel(OnnxModel):
    """An export's `model.onnx` compiled by OpenVINO for the CPU, in fp32 or bf16: `model(batch)`
    returns a ModelOutput of CPU tensors (the ONNX model's interface; one call at a time)."""

    def __init__(self, folder: str | Path, precision: str = "bf16", threads: int | None = None):
        from .onnx_runtime import read_export_meta

        self._hint = resolve_openvino_precision(precision)
        opset = int(read_export_meta(folder).get("opset", 0))
        if opset < MIN_OPSET:
            raise ValueError(f"{folder}: exported with ONNX opset {opset}, which OpenVINO misreads (p_fake); export "
                             f"the run again: `gazeclip export --run RUN --out {folder} --force` (opset {MIN_OPSET})")
        super().__init__(folder, "fp32", threads)  # the export's fp32 graph; OpenVINO lowers it to bf16
        self.precision = self._hint

    def _open(self, path: Path, threads: int | None) -> None:
        self.session = compile_cpu(path, self._hint, threads)
        self._request = self.session.create_infer_request()
        self._lock = threading.Lock()
        self._inputs = {}  # graph input port -> our input name (a port also has internal names)
        for port in self.session.inputs:
            self._inputs[port] = next(n for n in sorted(port.get_names()) if not n.startswith("/"))
        self.input_names = list(self._inputs.values())
        self._outputs = {k: self.session.output(k) for k in OUTPUTS}

    def run_arrays(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:  # an infer request serves one call at a time
            res = self._request.infer({port: feeds[name] for port, name in self._inputs.items()})
            return {k: np.array(res[port]) for k, port in self._outputs.items()}
