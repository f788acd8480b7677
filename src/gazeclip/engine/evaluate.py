"""Evaluate a trained run on a dataset's test split: metrics.json, report.md, PNG plots and the
per-item predictions (predictions.npz, reused by `compare`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import FaceDataset, SampleSet, manifest_samples
from ..data.feature_cache import FeatureCache
from ..data.manifest import Protocol, load_protocol, read_manifest, select_rows
from ..models.interface import Taxonomy
from . import utils as U
from .config import TrainConfig
from .metrics import HEADLINE, OPEN_SET, EvalData, compute_metrics, per_generator_metrics, public
from .modeling import (Predictions, gaze_dim_of, load_pretrained, preprocess_of, prefix_id, run_model,
                       supports_prefix)


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: TrainConfig
    taxonomy: Taxonomy
    model: torch.nn.Module
    device: torch.device
    unknown_threshold: float | None
    runtime: str = "torch"     # torch | onnx
    precision: str = "fp32"    # what the model computes in: fp32 | bf16 (torch) | int8 (onnx)
    inference: bool = False    # prepared for inference only (LoRA merged): predict, export
    gaze_precision: str = "fp32"  # the gaze network's: bf16 where the image tower runs bf16 (or would, onnx)
    _sources: dict = field(default_factory=dict, repr=False, compare=False)
    detection_threshold: float | None = None  # None: no v2 calibration (verdicts then use 0.5)

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
        return preprocess_of(self.model)

    @property
    def gaze_dim(self) -> int | None:
        return gaze_dim_of(self.model)


def load_run(run_dir: str | Path, device: str = "auto", precision: str | None = None,
             runtime: str = "torch") -> LoadedRun:
    """The one loader of a run folder: every file is validated and a damaged one raises a
    `DamagedFileError` naming it. The model's own taxonomy (stored with its weights and checked
    against their digest) is the label space; a `taxonomy.json` that disagrees is refused.

    precision None (the default; eval, robustness, explain): the model as trained, fp32.
    precision auto | bf16 | fp32 (predict, export): an inference-only copy (LoRA merged, prompt
    embeddings computed once); auto = bf16 on CPUs with native bf16 (AMX / AVX512-BF16) and on
    CUDA devices with bf16, else fp32. The gaze network of `face_source` runs in the same precision.
    runtime onnx: the run's ONNX export (RUN itself or RUN/export, see `gazeclip export`) under
    onnxruntime on the CPU; precision auto = int8 when exported, else fp32.
    """
    from ..errors import DamagedFileError
    from .calibrate import load_calibration
    from .runfolder import read_taxonomy, same_taxonomy
    from .trainer import load_run_config

    if runtime not in ("torch", "onnx"):
        raise ValueError(f"runtime {runtime!r}: use torch or onnx")
    run_dir = Path(run_dir)
    if runtime == "onnx":
        return _load_onnx_run(run_dir, device, precision)
    cfg = load_run_config(run_dir)
    if not (run_dir / "model").is_dir():
        raise FileNotFoundError(f"{run_dir}: the run has no trained model yet (no model/); "
                                "finish it with `gazeclip train --out RUN --resume`")
    tx_path = run_dir / "taxonomy.json"
    stored = read_taxonomy(tx_path) if tx_path.is_file() else None
    # None for a run calibrated before v2: `recalibrate` it (evaluate does)
    cal = load_calibration(run_dir) or {}
    thr, det = cal.get("unknown_threshold"), cal.get("detection_threshold")
    dev = U.resolve_device(device)
    model = load_pretrained(run_dir / "model", cfg.clip).to(dev).eval()
    taxonomy = getattr(model, "taxonomy", None) or stored
    if taxonomy is None:
        raise FileNotFoundError(f"{tx_path}: missing; finish the run with `gazeclip train --out RUN --resume`")
    if stored is not None and not same_taxonomy(stored, taxonomy):
        raise DamagedFileError(tx_path, "does not match the taxonomy stored with model/ (a reordered or edited list "
                               "would rename generators)", "restore it, or delete it to use the model's own")
    if precision is None:
        return LoadedRun(run_dir, cfg, taxonomy, model, dev, thr, detection_threshold=det)
    from ..models.inference import prepare_for_inference

    dtype = U.autocast_dtype(precision, dev, inference=True)
    prepare_for_inference(model, dtype)
    prec = "bf16" if dtype is not None else "fp32"
    return LoadedRun(run_dir, cfg, taxonomy, model, dev, thr, precision=prec, inference=True, gaze_precision=prec,
                     detection_threshold=det)


def _load_onnx_run(run_dir: Path, device: str, precision: str | None) -> LoadedRun:
    """An ONNX export (`gazeclip export`) as a LoadedRun whose model is an `OnnxModel`."""
    from .onnx_runtime import OnnxModel, find_export, resolve_onnx_precision
    from .calibrate import load_calibration
    from .runfolder import read_taxonomy
    from .trainer import load_run_config

    if device not in ("auto", "cpu"):
        raise ValueError(f"--device {device}: the onnx runtime runs on the CPU; use --device cpu")
    run_dir = find_export(run_dir)
    cfg = load_run_config(run_dir)
    tx_path = run_dir / "taxonomy.json"
    if not tx_path.is_file():
        raise FileNotFoundError(f"{tx_path}: missing; export the run again with `gazeclip export`")
    cal = load_calibration(run_dir) or {}
    prec = resolve_onnx_precision(run_dir, precision)
    # the gaze network stays in torch: bf16 where auto would pick it for the image tower
    gaze = "bf16" if U.autocast_dtype("auto", torch.device("cpu"), inference=True) is not None else "fp32"
    return LoadedRun(run_dir, cfg, read_taxonomy(tx_path), OnnxModel(run_dir, prec), torch.device("cpu"),
                     cal.get("unknown_threshold"), runtime="onnx", precision=prec, inference=True,
                     gaze_precision=gaze, detection_threshold=cal.get("detection_threshold"))


def recalibrate(run: LoadedRun, data_dir: str | Path, progress: bool = False) -> dict:
    """Recompute RUN/calibration.json on the *validation* split of `data_dir` with the run's
    trained model (for runs calibrated before the detection threshold existed)."""
    from ..data.dataset import build_taxonomy
    from .calibrate import calibrate_run

    data_dir = Path(data_dir)
    rows = read_manifest(data_dir)
    proto = load_protocol(data_dir, run.cfg.protocol, rows)
    if list(build_taxonomy(rows, proto).classes) != list(run.taxonomy.classes):
        raise ValueError(f"{data_dir}: protocol {proto.name} here has other train classes than run {run.run_dir}; "
                         "recalibrate on the data the run was trained on")
    val_rows = select_rows(rows, proto, "val")
    if not val_rows:
        raise ValueError(f"{data_dir}/manifest.csv: no val rows for protocol {proto.name}; cannot calibrate")
    s = manifest_samples(val_rows, data_dir, run.cfg.faces, run.cfg.gaze_estimator, run.preprocess.size,
                         run.gaze_dim, face_cache_dir=run.cfg.face_cache_dir, progress=progress)
    rec = calibrate_run(run.run_dir, dataset_of(run, s, data_dir, progress=progress), run.cfg, run.device, run.model)
    run.unknown_threshold, run.detection_threshold = rec["unknown_threshold"], rec["detection_threshold"]
    return rec


def test_set(run: LoadedRun, data_dir: str | Path, protocol: str | None = None,
             progress: bool = False) -> tuple[SampleSet, Protocol, dict[str, str]]:
    data_dir = Path(data_dir)
    rows = read_manifest(data_dir)
    proto = load_protocol(data_dir, protocol or run.cfg.protocol, rows)
    missing = [c for c in run.taxonomy.classes if c not in proto.train_classes]
    if missing:
        raise ValueError(f"{data_dir}/protocols.yaml: protocol {proto.name} does not see {missing}, which the run "
                         f"was trained on; evaluate with the run's protocol ({run.cfg.protocol})")
    test_rows = select_rows(rows, proto, "test")
    if not test_rows:
        raise ValueError(f"{data_dir}/manifest.csv: no test rows for protocol {proto.name}")
    s = manifest_samples(test_rows, data_dir, run.cfg.faces, run.cfg.gaze_estimator, run.preprocess.size,
                         run.gaze_dim, face_cache_dir=run.cfg.face_cache_dir, progress=progress)
    return s, proto, {r.cls: r.family for r in rows}


def dataset_of(run: LoadedRun, samples: SampleSet, data_dir: str | Path | None = None, use_cache: bool = True,
               batch_size: int = 32, progress: bool = False) -> FaceDataset:
    """The run's dataset over `samples`, reading (and first filling) the data folder's frozen-prefix
    feature cache when the run trained with one."""
    cache = None
    if use_cache and run.cfg.feature_cache and supports_prefix(run.model) and data_dir is not None:
        cache = FeatureCache(run.cfg.cache_dir or Path(data_dir) / ".cache" / "features", prefix_id(run.model),
                             run.cfg.cache_dtype)
        pre = run.preprocess
        cache.fill(samples.keys, lambda idx: pre(list(samples.crops[idx])).to(run.device),
                   lambda x: run.model.encode_prefix(x).cpu(), batch_size=batch_size, progress=progress)
    return FaceDataset(samples, run.taxonomy, run.preprocess, cache)


def predict_samples(run: LoadedRun, samples: SampleSet, data_dir: str | Path | None = None, use_cache: bool = True,
                    batch_size: int = 32, progress: bool = False) -> Predictions:
    ds = dataset_of(run, samples, data_dir, use_cache, batch_size, progress)
    return run_model(run.model, ds, batch_size=batch_size, device=run.device, progress=progress, desc="evaluate")


def eval_data(run: LoadedRun, samples: SampleSet, proto: Protocol, class_family: dict[str, str],
              preds: Predictions) -> EvalData:
    return EvalData(list(samples.classes), list(run.taxonomy.classes), list(run.taxonomy.families), class_family,
                    list(proto.unseen), preds.attribution_logits, preds.family_logits, preds.p_fake, preds.embedding,
                    run.detection_threshold, run.unknown_threshold)


def evaluate(run_dir: str | Path, data_dir: str | Path, protocol: str | None = None, out: str | Path | None = None,
             device: str = "auto", progress: bool = False, run: LoadedRun | None = None) -> dict:
    run = run or load_run(run_dir, device)
    out = Path(out) if out else run.run_dir / "eval"
    if run.detection_threshold is None:  # calibrated before v2: redo it on the validation split
        recalibrate(run, data_dir, progress)
    samples, proto, class_family = test_set(run, data_dir, protocol, progress)
    preds = predict_samples(run, samples, data_dir, progress=progress)
    d = eval_data(run, samples, proto, class_family, preds)
    full = compute_metrics(d)
    m = public(full)
    m["per_generator"] = per_generator_metrics(d, full["_cluster_assign"])
    m.update(run=str(run.run_dir), model=run.cfg.model, backbone=run.cfg.backbone, protocol=proto.name,
             data=str(Path(data_dir).resolve()), unseen=list(proto.unseen))
    out.mkdir(parents=True, exist_ok=True)
    U.atomic_write_json(out / "metrics.json", m)  # NaN/Infinity (undefined metrics) written as null
    preds.save(out / "predictions.npz", classes=np.array(samples.classes), paths=np.array(samples.paths))
    from ..viz.plots import confusion_png, roc_png

    confusion_png(np.array(m["confusion_matrix"]), list(run.taxonomy.classes), out / "confusion.png")
    cls = np.array(samples.classes)
    y = (cls != "real").astype(int)
    um = (cls == "real") | np.isin(cls, proto.unseen)
    roc_png({"all": (y, preds.p_fake), "unseen only": (y[um], preds.p_fake[um])}, out / "roc.png")
    U.atomic_write_text(out / "report.md", report_md(m, run))
    return m


def fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.1f}"


def report_md(m: dict, run: LoadedRun) -> str:
    lines = [f"# Evaluation of `{run.run_dir.name}`", "",
             f"model `{m['model']}`, backbone `{m['backbone']}`, protocol {m['protocol']}, data `{m['data']}`", "",
             f"test items: {m['n_test']} (seen classes {m['n_seen']}, unseen generators {m['n_unseen']}, "
             f"real {m['n_real']}); unseen generators: {', '.join(m['unseen']) or 'none'}", "",
             "| metric | % |", "| --- | ---: |"]
    lines += [f"| {k} | {fmt(m.get(k))} |" for k in HEADLINE]
    extra = ("attribution_acc_seen_generators", "detection_acc_unseen", "detection_eer_unseen", "detection_ap_unseen")
    lines += [f"| {k} | {fmt(m.get(k))} |" for k in extra]
    lines += ["", "## Open set and the shipped thresholds (calibrated on the validation split)", "",
              f"detection threshold {m.get('detection_threshold')}, unknown threshold {m.get('unknown_threshold')}; "
              f"estimated number of unseen clusters: {m.get('n_clusters_estimated')} "
              f"(true: {len(m.get('unseen', []))})", "", "| metric | % |", "| --- | ---: |"]
    lines += [f"| {k} | {fmt(m.get(k))} |" for k in OPEN_SET if k != "n_clusters_estimated"]
    lines += ["", "## Per generator", "", "| generator | seen | n | attribution ACC | detection AUC vs real | "
              "called fake | cluster recall |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {g} | {'yes' if r['seen'] else 'no'} | {r['n']} | {fmt(r['attribution_acc'])} | "
              f"{fmt(r['detection_auc'])} | {fmt(r['called_fake'])} | {fmt(r['cluster_recall'])} |"
              for g, r in m.get("per_generator", {}).items()]
    lines += ["", "## Per-class attribution accuracy (seen classes)", "", "| class | % |", "| --- | ---: |"]
    lines += [f"| {c} | {fmt(v)} |" for c, v in m["per_class_acc"].items()]
    lines += ["", "![confusion](confusion.png) ![roc](roc.png)", "",
              "Metric definitions: docs/engine.md. Model selection used the validation split only.", ""]
    return "\n".join(lines)
