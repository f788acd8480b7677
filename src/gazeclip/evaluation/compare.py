"""Side-by-side comparison of runs on one test split, with paired bootstrap 95% intervals."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..run.calibrate import load_calibration
from .metrics import HEADLINE, EvalData, bootstrap, compute_metrics, resample_indices
from ..run.modeling import Predictions

COLUMNS = ["attribution_acc_seen", "family_acc_unseen", "cluster_acc_unseen", "nmi_unseen", "ari_unseen",
           "detection_auc", "detection_auc_unseen", "detection_eer", "detection_ap"]
SHORT = {"attribution_acc_seen": "ACC seen", "family_acc_unseen": "fam ACC unseen",
         "cluster_acc_unseen": "clu ACC unseen", "nmi_unseen": "NMI unseen", "ari_unseen": "ARI unseen",
         "detection_auc": "AUC", "detection_auc_unseen": "AUC unseen", "detection_eer": "EER",
         "detection_ap": "AP", "detection_acc": "det ACC"}


def _eval_is_current(run_dir: Path, data_dir: Path, protocol: str | None) -> bool:
    m = run_dir / "eval" / "metrics.json"
    if not m.is_file() or not (run_dir / "eval" / "predictions.npz").is_file():
        return False
    try:
        meta = json.loads(m.read_text())
    except (UnicodeDecodeError, ValueError):
        return False  # damaged: evaluated again
    if not isinstance(meta, dict):
        return False
    if "fpr_real_at_threshold" not in meta:  # written before the open-set metrics: evaluate again
        return False
    same_data = meta.get("data") == str(Path(data_dir).resolve())
    return same_data and (protocol is None or meta.get("protocol") == protocol) and \
        m.stat().st_mtime >= (run_dir / "model").stat().st_mtime


def run_eval_data(run_dir: Path, data_dir: Path, protocol: str | None, device: str, progress: bool,
                  reuse: bool = True) -> tuple[EvalData, dict, np.ndarray]:
    """EvalData of a run (its eval/ predictions reused when they are for this data and protocol)."""
    from ..data.manifest import load_protocol, read_manifest
    from .evaluate import evaluate

    run_dir = Path(run_dir)
    if not (reuse and _eval_is_current(run_dir, data_dir, protocol)):
        evaluate(run_dir, data_dir, protocol, device=device, progress=progress)
    from ..run.folder import read_json_file, read_taxonomy

    meta = read_json_file(run_dir / "eval" / "metrics.json")
    preds, extra = Predictions.load(run_dir / "eval" / "predictions.npz")
    tx = read_taxonomy(run_dir / "taxonomy.json")
    rows = read_manifest(data_dir)
    proto = load_protocol(data_dir, meta["protocol"], rows)
    cal = load_calibration(run_dir) or {}
    d = EvalData([str(c) for c in extra["classes"]], list(tx.classes), list(tx.families), {r.cls: r.family for r in rows},
                 list(proto.unseen), preds.attribution_logits, preds.family_logits, preds.p_fake, preds.embedding,
                 cal.get("detection_threshold"), cal.get("unknown_threshold"))
    return d, meta, extra["paths"]


def compare_runs(runs: list[str | Path], data_dir: str | Path, protocol: str | None = None, n_boot: int = 1000,
                 seed: int = 0, device: str = "auto", progress: bool = False) -> dict:
    data_dir = Path(data_dir)
    loaded = [run_eval_data(Path(r), data_dir, protocol, device, progress) for r in runs]
    ref_paths = loaded[0][2]
    for (d, meta, paths), r in zip(loaded, runs):
        if len(paths) != len(ref_paths) or not np.array_equal(paths, ref_paths):
            raise ValueError(f"{r}: evaluated on a different test split than {runs[0]}; compare runs of one "
                             "protocol on one dataset")
    n = len(ref_paths)
    idx_sets = resample_indices(n, n_boot, seed)  # paired: the same resamples for every run
    out = {"data": str(data_dir.resolve()), "n_test": n, "n_boot": n_boot, "runs": {}}
    for (d, meta, _), r in zip(loaded, runs):
        point = compute_metrics(d)
        ci = bootstrap(d, COLUMNS + ["detection_acc"], n_boot=n_boot, seed=seed, idx_sets=idx_sets)
        out["runs"][Path(r).name] = {
            "run": str(r), "model": meta.get("model"), "protocol": meta.get("protocol"),
            "metrics": {k: point.get(k) for k in HEADLINE + ["n_test", "n_unseen"]},
            "ci95": {k: list(v) for k, v in ci.items()}}
    return out


def _cell(v, ci) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    lo, hi = ci
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{100 * v:.1f}"
    return f"{100 * v:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def table_markdown(res: dict) -> str:
    head = "| run | model | " + " | ".join(SHORT[c] for c in COLUMNS) + " |"
    sep = "| --- | --- | " + " | ".join("---:" for _ in COLUMNS) + " |"
    lines = [head, sep]
    for name, r in res["runs"].items():
        cells = [_cell(r["metrics"].get(c), r["ci95"][c]) for c in COLUMNS]
        lines.append(f"| {name} | {r['model']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"% on the test split (n = {res['n_test']}); [95% paired bootstrap interval, "
                 f"{res['n_boot']} resamples of test items]. EER: lower is better.")
    return "\n".join(lines)


def print_table(res: dict) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        print(table_markdown(res))
        return
    t = Table(title=f"test split, n = {res['n_test']}; 95% paired bootstrap intervals ({res['n_boot']})")
    t.add_column("run")
    t.add_column("model")
    for c in COLUMNS:
        t.add_column(SHORT[c], justify="right")
    for name, r in res["runs"].items():
        t.add_row(name, str(r["model"]), *[_cell(r["metrics"].get(c), r["ci95"][c]).replace(" [", "\n[")
                                           for c in COLUMNS])
    Console(width=200).print(t)
