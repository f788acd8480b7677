"""Evaluate a trained run on a dataset's test split: metrics.json, report.md, PNG plots and the
per-item predictions (predictions.npz, reused by `compare`)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..data.dataset import FaceDataset, SampleSet, manifest_samples
from ..data.feature_cache import FeatureCache
from ..data.manifest import Protocol, load_protocol, read_manifest, select_rows
from ..run import utils as U
from ..run.loader import LoadedRun, load_run
from ..run.modeling import Predictions, prefix_id, run_model
from .metrics import HEADLINE, K_ESTIMATORS, OPEN_SET, EvalData, compute_metrics, per_generator_metrics, public
from ..errors import UsageError


def recalibrate(run: LoadedRun, data_dir: str | Path, progress: bool = False) -> dict:
    """Recompute RUN/calibration.json on the *validation* split of `data_dir` with the run's
    trained model (for runs calibrated before the detection threshold or the abstain limits existed)."""
    from ..data.dataset import build_taxonomy
    from ..run.calibrate import abstain_of, calibrate_run

    data_dir = Path(data_dir)
    rows = read_manifest(data_dir)
    proto = load_protocol(data_dir, run.cfg.protocol, rows)
    if list(build_taxonomy(rows, proto).classes) != list(run.taxonomy.classes):
        raise UsageError(f"{data_dir}: protocol {proto.name} here has other train classes than run {run.run_dir}; "
                         "recalibrate on the data the run was trained on")
    val_rows = select_rows(rows, proto, "val")
    if not val_rows:
        raise UsageError(f"{data_dir}/manifest.csv: no val rows for protocol {proto.name}; cannot calibrate")
    s = manifest_samples(val_rows, data_dir, run.cfg.faces, run.cfg.gaze_estimator, run.preprocess.size,
                         run.gaze_dim, face_cache_dir=run.cfg.face_cache_dir, progress=progress)
    rec = calibrate_run(run.run_dir, dataset_of(run, s, data_dir, progress=progress), run.cfg, run.device, run.model)
    run.unknown_threshold, run.detection_threshold = rec["unknown_threshold"], rec["detection_threshold"]
    run.abstain = abstain_of(rec)
    return rec


def uncertain_summary(samples: SampleSet, limits, detect: bool = True) -> dict:
    """How many test images predict would answer "uncertain", per class, and which limits they
    cross (the metrics above are over all of them, uncertain ones included). With face detection,
    an image without a face gets no verdict from predict: counted under "no_face" instead."""
    from collections import Counter

    per: dict[str, list[int]] = {}
    why: Counter = Counter()
    no_face = 0
    for c, q, n_faces in zip(samples.classes, samples.quality, samples.n_faces):
        rules = [rule for rule, _ in limits.check(q)] if limits is not None else []
        if detect and n_faces == 0:
            no_face, rules = no_face + 1, []
        n = per.setdefault(c, [0, 0])
        n[0] += 1
        n[1] += bool(rules)
        why.update(rules)
    total = [sum(v[0] for v in per.values()), sum(v[1] for v in per.values())]
    rate = lambda n: n[1] / n[0] if n[0] else None  # noqa: E731
    return {"n": total[0], "uncertain": total[1], "rate": rate(total), "reasons": dict(why), "no_face": no_face,
            "per_class": {c: {"n": v[0], "uncertain": v[1], "rate": rate(v)} for c, v in sorted(per.items())}}


def test_set(run: LoadedRun, data_dir: str | Path, protocol: str | None = None,
             progress: bool = False) -> tuple[SampleSet, Protocol, dict[str, str]]:
    data_dir = Path(data_dir)
    rows = read_manifest(data_dir)
    proto = load_protocol(data_dir, protocol or run.cfg.protocol, rows)
    missing = [c for c in run.taxonomy.classes if c not in proto.train_classes]
    if missing:
        raise UsageError(f"{data_dir}/protocols.yaml: protocol {proto.name} does not see {missing}, which the run "
                         f"was trained on; evaluate with the run's protocol ({run.cfg.protocol})")
    test_rows = select_rows(rows, proto, "test")
    if not test_rows:
        raise UsageError(f"{data_dir}/manifest.csv: no test rows for protocol {proto.name}")
    s = manifest_samples(test_rows, data_dir, run.cfg.faces, run.cfg.gaze_estimator, run.preprocess.size,
                         run.gaze_dim, face_cache_dir=run.cfg.face_cache_dir, progress=progress)
    return s, proto, {r.cls: r.family for r in rows}


def dataset_of(run: LoadedRun, samples: SampleSet, data_dir: str | Path | None = None, use_cache: bool = True,
               batch_size: int = 32, progress: bool = False) -> FaceDataset:
    """The run's dataset over `samples`, reading (and first filling) the data folder's frozen-prefix
    feature cache when the run trained with one."""
    cache = None
    if use_cache and run.cfg.feature_cache and run.model.supports_prefix_cache and data_dir is not None:
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
              preds: Predictions, k_estimator: str = K_ESTIMATORS[0]) -> EvalData:
    return EvalData(list(samples.classes), list(run.taxonomy.classes), list(run.taxonomy.families), class_family,
                    list(proto.unseen), preds.attribution_logits, preds.family_logits, preds.p_fake, preds.embedding,
                    run.detection_threshold, run.unknown_threshold, k_estimator)


def evaluate(run_dir: str | Path, data_dir: str | Path, protocol: str | None = None, out: str | Path | None = None,
             device: str = "auto", progress: bool = False, run: LoadedRun | None = None,
             k_estimator: str = K_ESTIMATORS[0]) -> dict:
    run = run or load_run(run_dir, device, calibrated=False)
    out = Path(out) if out else run.run_dir / "eval"
    if run.detection_threshold is None or run.abstain is None:  # not calibrated, or by an older gazeclip
        recalibrate(run, data_dir, progress)
    samples, proto, class_family = test_set(run, data_dir, protocol, progress)
    preds = predict_samples(run, samples, data_dir, progress=progress)
    d = eval_data(run, samples, proto, class_family, preds, k_estimator)
    full = compute_metrics(d)
    m = public(full)
    m["per_generator"] = per_generator_metrics(d, full["_cluster_assign"])
    m["uncertain"] = uncertain_summary(samples, run.abstain, run.cfg.faces == "detect")
    m.update(run=str(run.run_dir), model=run.cfg.model, backbone=run.cfg.backbone, protocol=proto.name,
             data=str(Path(data_dir).resolve()), unseen=list(proto.unseen), k_estimator=k_estimator)
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
              f"(true: {len(m.get('unseen', []))}; by {m.get('k_estimator', 'silhouette')})", "", "| metric | % |",
              "| --- | ---: |"]
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
