"""ONNX export of a trained run, and the onnxruntime model that runs it.

`export_run(RUN, OUT, int8=True)` writes a folder that predicts without torch weights:

    OUT/model.onnx        the model, fp32: LoRA merged, prompt embeddings baked in as constants
    OUT/model.int8.onnx   (int8=True) onnxruntime dynamic quantisation of it (int8 weights of
                          every MatMul/Gemm, activations quantised per call)
    OUT/export.json       inputs, outputs, preprocessing, versions, the sha256 of every other
                          file, and the quality of each file measured at export (below)
    OUT/config.yaml, calibration.json   copied from the run (faces/gaze settings, the
                          thresholds); OUT/taxonomy.json the model's classes and families

Quality (`export.json` "quality"): each file against the torch model on the faces of the run's
validation split (real and generated; the data folder of the run's config.yaml, or `data=`):
the largest |p_fake - torch|, the verdicts and named generators it changes at the run's
thresholds. `default_precision` (what `--runtime onnx` uses unless told) is int8 only when it
changes none of them, else fp32; without data to measure on, fp32. The fixed pseudo-random batch
of `parity_max_abs_diff_vs_torch` checks the graph, not the quality on faces.

Inputs (batch-first, any batch size): pixel_values (B, 3, S, S) float32 (CLIP-normalised
crops), gaze_vector (B, 3), gaze_pitchyaw (B, 2), gaze_features (B, Dg) float32,
gaze_valid (B,) bool, region_boxes (B, R, 4) float32. A model that does not use an input (a
baseline, or `gaze: false`) has no such graph input. Outputs: attribution_logits (B, C),
family_logits (B, F), p_fake (B,), embedding (B, E).

`engine.onnx_runtime.OnnxModel` runs such a file behind the engine's model interface (Batch ->
ModelOutput), so `load_run(OUT, runtime="onnx")`, `predict` and `eval` use it like a torch model.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_dir
from ..models.interface import REGIONS, Batch

from ..run.onnx_runtime import FILES, FORMAT, INPUTS, OUTPUTS, session as _session  # noqa: F401 (re-exported)
from ..errors import OutputExistsError

# 18, not 17: OpenVINO's ONNX reader (2026.4) reduces an opset-17 ReduceLogSumExp over every axis
# (its `axes` attribute is ignored), which broke p_fake under --runtime openvino; opset 18 passes
# the axes as an input, read right by onnxruntime and OpenVINO alike
OPSET = 18


class _Graph(nn.Module):
    """Tensors in, tensors out: the traced function around a model's Batch interface."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, gaze_vector, gaze_pitchyaw, gaze_features, gaze_valid, region_boxes):
        out = self.model(Batch(pixel_values, gaze_vector, gaze_pitchyaw, gaze_features, gaze_valid, region_boxes))
        return out.attribution_logits, out.family_logits, out.p_fake, out.embedding


def example_inputs(size: int, gaze_dim: int, n: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """A fixed pseudo-random batch (pixels roughly CLIP-normalised, boxes inside the crop)."""
    g = torch.Generator().manual_seed(seed)
    lo = torch.rand(n, len(REGIONS), 2, generator=g) * 0.5
    boxes = torch.cat([lo, lo + 0.1 + torch.rand(n, len(REGIONS), 2, generator=g) * 0.4], -1)
    vec = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    valid = torch.ones(n, dtype=torch.bool)
    valid[-1] = n < 2  # one face without gaze when there are several: the masked branch is traced too
    return {"pixel_values": torch.randn(n, 3, size, size, generator=g), "gaze_vector": vec,
            "gaze_pitchyaw": torch.randn(n, 2, generator=g) * 0.3,
            "gaze_features": torch.randn(n, gaze_dim, generator=g).abs(), "gaze_valid": valid,
            "region_boxes": boxes}


def export_onnx(model: nn.Module, path: str | Path, size: int, gaze_dim: int, opset: int = OPSET) -> None:
    """Trace an inference-prepared fp32 model (gazeclip.models.inference) into an ONNX file."""
    import warnings

    graph = _Graph(model).eval()
    args = tuple(example_inputs(size, gaze_dim).values())
    dynamic = {name: {0: "batch"} for name in INPUTS + OUTPUTS}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        # the fused eval kernels of nn.TransformerEncoderLayer / nn.MultiheadAttention have no ONNX
        # form: trace their plain composition instead
        torch.backends.mha.set_fastpath_enabled(False)
        with warnings.catch_warnings(), torch.no_grad():
            # the TorchScript exporter warns about Python values it records as constants (the patch
            # grid side, the prompt embeddings): constants are what we want here
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, args, str(path), input_names=list(INPUTS), output_names=list(OUTPUTS),
                              dynamic_axes=dynamic, opset_version=opset, dynamo=False, do_constant_folding=True,
                              verbose=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def quantize_int8(src: str | Path, dst: str | Path) -> None:
    """onnxruntime dynamic quantisation: int8 weights (per output channel) for MatMul/Gemm."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    dst = Path(dst)
    pre = dst.with_name(dst.name + ".pre.onnx")
    try:
        # onnxruntime's recommended pre-processing (shape inference, graph fusions); its symbolic
        # shape pass cannot follow the VPE's reshapes, ONNX's own shape inference is used instead
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        # design choice, not from the paper: per-channel int8 weights, activations uint8 per call
        # (onnxruntime's default activation type for dynamic quantisation); convolutions stay fp32
        quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"])
    finally:
        pre.unlink(missing_ok=True)


def max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) for k in OUTPUTS}


def measure_quality(run, folder: Path, precisions, data_dir: str | Path | None) -> dict:
    """Each exported precision against the run's torch model (the fp32 inference copy) on the
    faces of the validation split of `data_dir` (see the module docstring)."""
    from ..data.dataset import FaceDataset, manifest_samples
    from ..data.manifest import load_protocol, read_manifest, select_rows
    from ..run.modeling import run_model
    from ..run.onnx_runtime import OnnxModel
    from ..run.verdict import fake_verdict, top_fake

    if not data_dir or not (Path(data_dir) / "manifest.csv").is_file():
        return {"measured": False, "why": f"no data folder to measure on ({data_dir or 'none recorded'}); "
                                          "export with --data DIR"}
    data_dir = Path(data_dir)
    rows = read_manifest(data_dir)
    proto = load_protocol(data_dir, run.cfg.protocol, rows)
    val = select_rows(rows, proto, "val")
    if not val:
        return {"measured": False, "why": f"{data_dir}: no validation rows for protocol {proto.name}"}
    samples = manifest_samples(val, data_dir, run.cfg.faces, run.cfg.gaze_estimator, run.preprocess.size,
                               run.gaze_dim, face_cache_dir=run.cfg.face_cache_dir)
    ds = FaceDataset(samples, run.taxonomy, run.preprocess, None)
    ref = run_model(run.model, ds)
    ref_fake = fake_verdict(ref.p_fake, run.detection_threshold)
    ref_gen = top_fake(ref.attribution_logits)[0]
    n_real = int(sum(c == "real" for c in samples.classes))
    out = {"measured": True, "on": f"validation split of {data_dir.name} (protocol {proto.name})",
           "data": str(data_dir.resolve()), "n_faces": len(ds), "n_real": n_real, "n_fake": len(ds) - n_real}
    for prec in precisions:
        got = run_model(OnnxModel(folder, prec), ds)
        fake = fake_verdict(got.p_fake, run.detection_threshold)
        both = fake & ref_fake
        out[prec] = {"max_abs_p_fake_vs_torch": float(np.max(np.abs(got.p_fake.astype(np.float64) - ref.p_fake))),
                     "verdicts_changed": int((fake != ref_fake).sum()),
                     "generators_changed": int((top_fake(got.attribution_logits)[0] != ref_gen)[both].sum())}
    return out


def export_run(run_dir: str | Path, out: str | Path, int8: bool = False, force: bool = False,
               opset: int = OPSET, data: str | Path | None = None) -> dict:
    """Export a training run (see the module docstring). Returns the written export.json."""
    from importlib.metadata import version

    from ..run.folder import read_run_yaml
    from ..run.loader import load_run
    from ..common import sha256_of
    from ..run.onnx_runtime import RUN_FILES
    from ..run.utils import atomic_write_json

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise OutputExistsError(f"{out}: not empty; choose another --out or pass --force to replace it")
    run = load_run(run_dir, "cpu", precision="fp32")  # the inference copy in fp32: int8 is made from it
    model = run.model
    pre, gaze_dim = run.preprocess, run.gaze_dim or 512
    with atomic_dir(out) as tmp:
        export_onnx(model, tmp / FILES["fp32"], pre.size, gaze_dim, opset)
        files = {"fp32": FILES["fp32"]}
        if int8:
            quantize_int8(tmp / FILES["fp32"], tmp / FILES["int8"])
            files["int8"] = FILES["int8"]
        for name in ("config.yaml", "calibration.json"):  # load_run required both
            shutil.copy2(run.run_dir / name, tmp / name)
        # the label space is the model's own (load_run checked taxonomy.json against it)
        atomic_write_json(tmp / "taxonomy.json", run.taxonomy.to_dict())
        # parity on a fixed batch, measured now: torch (the prepared fp32 model) vs each file
        check = example_inputs(pre.size, gaze_dim, n=4, seed=1)
        with torch.no_grad():
            ref = {k: v.numpy() for k, v in zip(OUTPUTS, _Graph(model)(*check.values()))}
        feeds = {k: v.numpy() for k, v in check.items()}
        parity = {}
        for prec, fname in files.items():
            sess = _session(tmp / fname)
            names = [i.name for i in sess.get_inputs()]
            got = dict(zip(OUTPUTS, sess.run(list(OUTPUTS), {k: feeds[k] for k in names})))
            parity[prec] = max_abs_diff(ref, got)
        meta = {"format": FORMAT, "source_run": str(Path(run_dir).resolve()), "model": run.cfg.model,
                "backbone": run.cfg.backbone, "image_size": pre.size, "mean": list(pre.mean), "std": list(pre.std),
                "gaze_feature_dim": gaze_dim, "regions": list(REGIONS), "inputs": names_of(tmp / FILES["fp32"]),
                "outputs": list(OUTPUTS), "files": files, "opset": opset,
                "parity_max_abs_diff_vs_torch": parity, "parity_batch": "export.example_inputs(n=4, seed=1)",
                "versions": {p: version(p) for p in ("torch", "onnx", "onnxruntime")},
                "sha256": {n: sha256_of(tmp / n) for n in (*files.values(), *RUN_FILES)},
                "default_precision": "fp32"}
        atomic_write_json(tmp / "export.json", meta)  # first without the quality: OnnxModel reads it
        quality = measure_quality(run, tmp, files, data or read_run_yaml(run_dir).get("data"))
        int8_ok = quality["measured"] and "int8" in quality and \
            quality["int8"]["verdicts_changed"] == quality["int8"]["generators_changed"] == 0
        meta.update(quality=quality, default_precision="int8" if int8_ok else "fp32")
        atomic_write_json(tmp / "export.json", meta)
    return meta


def names_of(path: Path) -> list[str]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    init = {i.name for i in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name not in init]
