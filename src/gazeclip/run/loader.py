"""Loading a trained run for any mode (evaluation, inference, export, explain): `load_run(RUN)`
validates every file of the run folder and returns a `LoadedRun` with its model, taxonomy and
calibrated thresholds, under the torch, onnx or openvino runtime. `load_run()` (no folder) loads
the reference model packaged with gazeclip (`gazeclip.run.reference`), its files checked against
their pinned sha256 first."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import DamagedFileError, MissingFileError, UsageError
from ..models.interface import Taxonomy
from . import utils as U
from .calibrate import abstain_of, load_calibration, require_calibration
from .config import TrainConfig
from .folder import check_model_bound_settings, load_run_config, read_taxonomy, same_taxonomy
from .modeling import load_pretrained
from .onnx_runtime import (RUN_FILES, OnnxModel, export_fix, find_export, read_export_meta, resolve_onnx_precision,
                           verified_file)
from .verdict import AbstainLimits

RUNTIMES = ("torch", "onnx", "openvino")


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: TrainConfig
    taxonomy: Taxonomy
    model: torch.nn.Module
    device: torch.device
    unknown_threshold: float | None
    runtime: str = "torch"     # torch | onnx | openvino
    precision: str = "fp32"    # what the model computes in: fp32 | bf16 (torch, openvino) | int8 (onnx, openvino)
    inference: bool = False    # prepared for inference only (LoRA merged): predict, export
    gaze_precision: str = "fp32"  # the gaze network's: bf16 where the image tower runs bf16 (or would, onnx)
    _sources: dict = field(default_factory=dict, repr=False, compare=False)
    detection_threshold: float | None = None  # None only while eval / calibrate recalibrate the run
    abstain: AbstainLimits | None = None      # None only while eval / calibrate recalibrate the run

    @property
    def name(self) -> str:
        return self.run_dir.name

    def face_source(self, cache_dir: str | Path | None = None):
        """The run's faces + gaze step (face detector, landmarker, gaze network), built once per
        cache folder and reused by every later call; its gaze network in `gaze_precision`."""
        from ..data.dataset import FaceGazeSource

        key = str(cache_dir) if cache_dir else None
        if key not in self._sources:
            src = FaceGazeSource(self.cfg.faces, self.cfg.gaze_estimator, cache_dir, self.gaze_dim)
            if self.gaze_precision == "bf16" and hasattr(src.estimator, "set_precision"):
                src.estimator.set_precision(torch.bfloat16)
            self._sources[key] = src
        return self._sources[key]

    @property
    def preprocess(self):
        return self.model.preprocess

    @property
    def gaze_dim(self) -> int | None:
        return self.model.gaze_feature_dim


def load_run(run_dir: str | Path | None = None, device: str = "auto", precision: str | None = None,
             runtime: str = "torch", calibrated: bool = True) -> LoadedRun:
    """The one loader of a run folder: every file is validated and a damaged one raises a
    `DamagedFileError` naming it. The model's own taxonomy (stored with its weights and checked
    against their digest) is the label space; a `taxonomy.json` that disagrees is refused.

    precision None (the default; eval, robustness, explain): the model as trained, fp32.
    precision auto | bf16 | fp32 (predict, export): an inference-only copy (LoRA merged, prompt
    embeddings computed once); auto = bf16 on CPUs with native bf16 (AMX / AVX512-BF16) and on
    CUDA devices with bf16, else fp32. The gaze network of `face_source` runs in the same precision.
    runtime onnx: the run's ONNX export (RUN itself or RUN/export, see `gazeclip export`) under
    onnxruntime on the CPU; precision auto = int8 when the export measured that it changes no
    verdict on real faces, else fp32.
    runtime openvino: the same export's model.onnx compiled by OpenVINO for the CPU; precision
    auto = int8 when `gazeclip export --openvino-int8` made one, else bf16 on CPUs with native bf16,
    else fp32 (run/openvino_runtime.py).
    calibrated: a missing or older `calibration.json` is refused with the command that fixes
    it (`gazeclip calibrate --run RUN`); False only for the steps that calibrate the run themselves
    (`eval`, `gazeclip calibrate`), whose LoadedRun then has no thresholds until they do.
    run_dir None: the packaged reference model (torch runtime), verified against its pins.
    """
    if runtime not in RUNTIMES:
        raise UsageError(f"runtime {runtime!r}: use {', '.join(RUNTIMES)}")
    if run_dir is None:
        if runtime != "torch":
            raise UsageError("the packaged reference model runs under the torch runtime; for onnx or openvino, "
                             "export a trained run (`gazeclip export --run RUN`) and give it with --run")
        from .reference import reference_dir

        run_dir = reference_dir()
    run_dir = Path(run_dir)
    if runtime != "torch":
        return _load_export_run(run_dir, device, precision, runtime)
    cfg = load_run_config(run_dir)
    if not (run_dir / "model").is_dir():
        raise MissingFileError(f"{run_dir}: the run has no trained model yet (no model/); "
                                "finish it with `gazeclip train --out RUN --resume`")
    tx_path = run_dir / "taxonomy.json"
    stored = read_taxonomy(tx_path) if tx_path.is_file() else None
    cal = require_calibration(run_dir) if calibrated else load_calibration(run_dir) or {}
    thr, det = cal.get("unknown_threshold"), cal.get("detection_threshold")
    dev = U.resolve_device(device)
    model = load_pretrained(run_dir / "model", cfg.clip).to(dev).eval()
    check_model_bound_settings(run_dir, cfg)  # after the digests: model/config.json is the original
    taxonomy = getattr(model, "taxonomy", None) or stored
    if taxonomy is None:
        raise MissingFileError(f"{tx_path}: missing; finish the run with `gazeclip train --out RUN --resume`")
    if stored is not None and not same_taxonomy(stored, taxonomy):
        raise DamagedFileError(tx_path, "does not match the taxonomy stored with model/ (a reordered or edited list "
                               "would rename generators)", "restore it, or delete it to use the model's own")
    if precision is None:
        return LoadedRun(run_dir, cfg, taxonomy, model, dev, thr, detection_threshold=det, abstain=abstain_of(cal))
    from ..models.inference import prepare_for_inference

    dtype = U.autocast_dtype(precision, dev)
    prepare_for_inference(model, dtype)
    prec = "bf16" if dtype is not None else "fp32"
    return LoadedRun(run_dir, cfg, taxonomy, model, dev, thr, precision=prec, inference=True, gaze_precision=prec,
                     detection_threshold=det, abstain=abstain_of(cal))


def _load_export_run(run_dir: Path, device: str, precision: str | None, runtime: str) -> LoadedRun:
    """An ONNX export (`gazeclip export`) as a LoadedRun whose model is an `OnnxModel` (onnxruntime)
    or an `OpenVinoModel`."""
    if device not in ("auto", "cpu"):
        raise UsageError(f"--device {device}: the {runtime} runtime runs on the CPU; use --device cpu")
    run_dir = find_export(run_dir)
    meta = read_export_meta(run_dir)
    for name in RUN_FILES:  # pinned by export.json: a changed taxonomy or threshold is refused
        verified_file(run_dir, meta, name)
    cfg = load_run_config(run_dir)
    cal = require_calibration(run_dir, export_fix(run_dir))
    if runtime == "openvino":
        from .openvino_runtime import OpenVinoModel, resolve_openvino_precision

        prec = resolve_openvino_precision(run_dir, precision)
        model = OpenVinoModel(run_dir, prec)
    else:
        prec = resolve_onnx_precision(run_dir, precision, meta)
        model = OnnxModel(run_dir, prec)
    # the gaze network stays in torch: bf16 where auto would pick it for the image tower
    gaze = "bf16" if U.autocast_dtype("auto", torch.device("cpu")) is not None else "fp32"
    return LoadedRun(run_dir, cfg, read_taxonomy(run_dir / "taxonomy.json"), model, torch.device("cpu"),
                     cal["unknown_threshold"], runtime=runtime, precision=prec, inference=True,
                     gaze_precision=gaze, detection_threshold=cal["detection_threshold"], abstain=abstain_of(cal))
