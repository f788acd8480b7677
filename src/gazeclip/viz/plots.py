"""Matplotlib figures for reports: confusion matrix, ROC curves, robustness curves.
Headless (Agg); every figure is written atomically."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_fig(fig, path: str | Path, dpi: int = 120) -> None:
    from ..atomic import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def confusion_png(cm: np.ndarray, labels: list[str], path: str | Path, title: str = "Attribution (seen classes)"):
    plt = _plt()
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    save_fig(fig, path)


def roc_png(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "Detection ROC"):
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for name, (y, s) in curves.items():
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    save_fig(fig, path)


def robustness_png(results: dict, path: str | Path) -> None:
    """results[run][perturbation] = list of {severity, attribution_acc_seen, detection_auc}."""
    plt = _plt()
    perts = list(next(iter(results.values())).keys())
    fig, axes = plt.subplots(2, len(perts), figsize=(3.0 * len(perts), 5.2), squeeze=False)
    for j, p in enumerate(perts):
        for run, per in results.items():
            pts = per[p]
            sev = [q["severity"] for q in pts]
            axes[0, j].plot(sev, [q["attribution_acc_seen"] for q in pts], marker="o", label=run)
            axes[1, j].plot(sev, [q["detection_auc"] for q in pts], marker="o", label=run)
        axes[0, j].set_title(p)
        axes[1, j].set_xlabel("severity (0 = clean)")
        for i in range(2):
            axes[i, j].set_ylim(0, 1.02)
            axes[i, j].grid(alpha=0.3)
    axes[0, 0].set_ylabel("attribution ACC (seen)")
    axes[1, 0].set_ylabel("detection AUC")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    save_fig(fig, path)


def per_generator_delta_png(rows: dict[str, dict], model: str, reference: str, path: str | Path) -> None:
    """Per-generator deltas (model − reference, points, mean ± sd over seeds) as grouped bars:
    seen generators (attribution ACC, detection AUC vs real) and unseen ones (cluster recall,
    detection AUC vs real). `rows`: generator -> {"seen", key: {"mean", "sd"}} (experiment results)."""
    plt = _plt()
    groups = [("seen generators", [g for g, r in rows.items() if r["seen"]],
               [("attribution_acc", "attribution ACC"), ("detection_auc", "detection AUC vs real")]),
              ("unseen generators", [g for g, r in rows.items() if not r["seen"]],
               [("cluster_recall", "cluster recall"), ("detection_auc", "detection AUC vs real")])]
    groups = [g for g in groups if g[1]]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 0.6 + 0.45 * max(len(g[1]) for g in groups)),
                             squeeze=False)
    for ax, (title, gens, keys) in zip(axes[0], groups):
        y = np.arange(len(gens))
        h = 0.8 / len(keys)
        for j, (k, name) in enumerate(keys):
            mean = np.array([100 * rows[g][k]["mean"] for g in gens], dtype=float)
            sd = np.array([100 * rows[g][k]["sd"] for g in gens], dtype=float)
            ax.barh(y + (j - (len(keys) - 1) / 2) * h, np.nan_to_num(mean), h,
                    xerr=np.where(np.isfinite(sd), sd, 0), label=name, capsize=2)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, gens, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"{model} − {reference} (points)")
        ax.set_title(title)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("per-generator deltas, mean ± sd over seeds (test split)", fontsize=9)
    save_fig(fig, path)


def probe_png(rep: dict, path: str | Path) -> None:
    """The gaze probe (`gazeclip gaze-probe`): detection AUC against real per class and feature set,
    and the paired gains of each added block, both with their 95% bootstrap intervals."""
    plt = _plt()
    classes = list(rep["fakes"]) + ["all"]
    labels = [f"{g} (unseen)" if g in rep["unseen"] else g for g in rep["fakes"]] + ["all fakes"]
    panels = [("detection AUC vs real (%)", [(s, rep["sets"][s]) for s in rep["sets"]], 50.0)]
    if rep["gains"]:
        panels.append(("paired gain in AUC (points)", [(f"{g['set']} − {g['base']}", g) for g in rep["gains"]], 0.0))
    most = max(len(series) for _, series, _ in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 1.4 + len(classes) * (0.2 + 0.1 * most)),
                             squeeze=False)
    y = np.arange(len(classes))
    colours = plt.cm.tab20.colors if most > 10 else plt.cm.tab10.colors
    for ax, (title, series, ref) in zip(axes[0], panels):
        h = 0.84 / len(series)
        for j, (name, d) in enumerate(series):
            v = np.array([100 * _num(d[f"auc/{g}"]["value"]) for g in classes])
            lo = np.array([100 * _num(d[f"auc/{g}"]["ci"][0]) for g in classes])
            hi = np.array([100 * _num(d[f"auc/{g}"]["ci"][1]) for g in classes])
            err = np.nan_to_num(np.stack([v - lo, hi - v]).clip(min=0))
            ax.barh(y + (j - (len(series) - 1) / 2) * h, np.nan_to_num(v - ref), h, left=ref, xerr=err,
                    label=name, color=colours[j % len(colours)], capsize=1.5, error_kw={"lw": 0.7})
        ax.axvline(ref, color="black", lw=0.8)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(title)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=2, frameon=False)
    fig.suptitle(f"gaze probe, protocol {rep.get('protocol')}, read on {rep['split']} "
                 f"(n = {sum(rep['n_eval'].values())}); 95% bootstrap intervals", fontsize=9)
    fig.tight_layout()
    save_fig(fig, path)


def _num(v) -> float:
    return float("nan") if v is None else float(v)
