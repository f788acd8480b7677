"""The OpenVINO side of an ONNX export (`gazeclip export`): the same folder and the same
`model.onnx`, read by OpenVINO's CPU plugin (oneDNN kernels, fused attention and LayerNorm) and
compiled in bf16 on CPUs with native bf16 (AMX / AVX512-BF16) or fp32 elsewhere, behind the
engine's model interface: `OpenVinoModel(folder, precision)(batch) -> ModelOutput`. Precision
int8 runs the NNCF-quantised model of `gazeclip export --openvino-int8` (export/openvino_int8.py)
from the folder's `openvino-int8/`, checked against the sha256 recorded with it.

OpenVINO is already a dependency (the benchmark's MobileStyleGAN runs on it), so fp32 and bf16
add nothing to install. The ONNX file is read directly (no IR files next to it): conversion and
compilation take a few seconds once per load.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import torch

from ..common import sha256_of
from ..errors import DamagedFileError, MissingFileError, StaleRunError, UsageError
from .onnx_runtime import OUTPUTS, OnnxModel, read_export_meta

# our precision names -> OpenVINO's INFERENCE_PRECISION_HINT
HINTS = {"fp32": "f32", "bf16": "bf16"}
PRECISIONS = ("fp32", "bf16", "int8")
# OpenVINO 2026.4 reads an opset-17 ReduceLogSumExp as a reduction over every axis (p_fake wrong);
# from opset 18 its axes are an input, read right (export/exporter.py exports 18)
MIN_OPSET = 18
INT8_DIR = "openvino-int8"          # written by export/openvino_int8.py
INT8_FORMAT = "gazeclip-openvino-int8/1"


def native_precision() -> str:
    """bf16 on CPUs with native bf16 (`cpu_native_bf16`), else fp32."""
    from .utils import cpu_native_bf16

    return "bf16" if cpu_native_bf16() else "fp32"


def resolve_openvino_precision(folder: str | Path, precision: str | None) -> str:
    """auto (or None): int8 when the export has `openvino-int8/` (as onnx's auto picks its int8),
    else `native_precision()`."""
    if precision in (None, "auto"):
        return "int8" if (Path(folder) / INT8_DIR / "quantization.json").is_file() else native_precision()
    if precision not in PRECISIONS:
        raise UsageError(f"precision {precision!r} with runtime openvino: use auto, {', '.join(PRECISIONS)}")
    return precision


def input_names(model) -> dict:
    """{graph input port: our input name} (a port also carries the exporter's internal names)."""
    return {port: next(n for n in sorted(port.get_names()) if not n.startswith("/")) for port in model.inputs}


def compile_cpu(path: str | Path, precision: str, threads: int | None = None):
    """`path` (ONNX or OpenVINO IR) compiled for the CPU, its float ops in `precision` (fp32 |
    bf16), for latency, with `threads` inference threads (default: torch's thread count)."""
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
    return core.compile_model(core.read_model(str(path)), "CPU", config)


def int8_model_path(folder: Path) -> Path:
    """`openvino-int8/model.xml`, its two files checked against quantization.json's sha256."""
    d = folder / INT8_DIR
    meta_path = d / "quantization.json"
    if not meta_path.is_file():
        raise MissingFileError(f"{d}: no OpenVINO int8 model; make one with "
                                f"`gazeclip export --run RUN --out {folder} --openvino-int8`")
    fix = f"make it again: `gazeclip export --run RUN --out {folder} --openvino-int8`"
    try:
        meta = json.loads(meta_path.read_text())
        files = meta["files"]
    except (ValueError, KeyError, TypeError):
        raise DamagedFileError(meta_path, "not a quantization record", fix) from None
    if meta.get("format") != INT8_FORMAT:
        raise DamagedFileError(meta_path, f"format {meta.get('format')!r}, expected {INT8_FORMAT!r}", fix)
    for name, digest in files.items():
        if not (d / name).is_file() or sha256_of(d / name) != digest:
            raise DamagedFileError(d / name, "missing or does not match the sha256 in quantization.json", fix)
    return d / "model.xml"


class OpenVinoModel(OnnxModel):
    """An export compiled by OpenVINO for the CPU: model.onnx in fp32 or bf16, or the NNCF int8
    model (its other ops in `native_precision()`). `model(batch)` returns a ModelOutput of CPU
    tensors (the ONNX model's interface); calls are served one at a time."""

    def __init__(self, folder: str | Path, precision: str = "bf16", threads: int | None = None):
        folder = Path(folder)
        precision = resolve_openvino_precision(folder, precision)
        opset = int(read_export_meta(folder).get("opset", 0))
        if opset < MIN_OPSET:
            raise StaleRunError(f"{folder}: exported with ONNX opset {opset}, which OpenVINO misreads (p_fake); export "
                             f"the run again: `gazeclip export --run RUN --out {folder} --force` (opset {MIN_OPSET})")
        self._int8 = int8_model_path(folder) if precision == "int8" else None
        self._hint = native_precision() if precision == "int8" else precision
        super().__init__(folder, "fp32", threads)  # the export's checks and interface; _open compiles
        self.precision = precision

    def _open(self, path: Path, threads: int | None) -> None:
        if self._int8 is not None:
            self.path = path = self._int8
        self.session = compile_cpu(path, self._hint, threads)
        self._request = self.session.create_infer_request()
        self._lock = threading.Lock()
        self._inputs = input_names(self.session)
        self.input_names = list(self._inputs.values())
        self._outputs = {k: self.session.output(k) for k in OUTPUTS}

    def run_arrays(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:  # an infer request serves one call at a time
            res = self._request.infer({port: feeds[name] for port, name in self._inputs.items()})
            return {k: np.array(res[port]) for k, port in self._outputs.items()}
