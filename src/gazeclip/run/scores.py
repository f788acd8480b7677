"""Score primitives that training (validation AUC, which picks the kept epoch) and evaluation (test
AUC, AP, EER) share, so that both report the same AUC: numpy only, fast enough for the bootstrap."""
from __future__ import annotations

import numpy as np


def roc_points(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points at every distinct score, highest first, starting at (0, 0): (fpr, tpr, precision).
    numpy only (the bootstrap calls this thousands of times; sklearn's checks cost ~1 ms a call);
    equal to sklearn's roc_curve / precision at each threshold (tested against hand-computed values)."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last].astype(np.float64)
    fp = (last + 1) - tp
    npos, nneg = y.sum(), (~y).sum()
    fpr = np.r_[0.0, fp / max(nneg, 1)]
    tpr = np.r_[0.0, tp / max(npos, 1)]
    return fpr, tpr, tp / (tp + fp)


def binary_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC (ties count one half), NaN unless both classes are present."""
    y = np.asarray(y).astype(bool)
    if y.all() or not y.any():
        return float("nan")
    fpr, tpr, _ = roc_points(y, score)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
