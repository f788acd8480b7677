"""Evaluation metrics, as fractions in [0, 1] (scikit-learn / scipy; Hungarian matching with
`scipy.optimize.linear_sum_assignment`).

Definitions (test split; "seen" = the protocol's train classes, i.e. real + seen generators):
- attribution_acc_seen: argmax over the train classes == true class, over test items of seen
  classes (real included: closed-set attribution). attribution_acc_seen_generators: the same over
  seen-generator items only (real excluded). per_class_acc: the same per class.
- family_acc_unseen: argmax of the family logits == the generator's family, over unseen-generator items.
- cluster_acc_unseen / nmi_unseen / ari_unseen: k-means (k = number of unseen generators, fixed
  seed) on the L2-normalised joint embeddings of unseen-generator items; cluster ACC is the
  accuracy under the best one-to-one cluster->class mapping (Hungarian).
- detection_*: fake = 1, score p_fake. AUC (ROC), AP (average precision), ACC at p_fake >= 0.5,
  EER (the point where the false-positive rate equals the false-negative rate, linearly
  interpolated on the ROC). `_unseen` variants: real test items + unseen-generator items only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def hungarian_acc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Accuracy of the best one-to-one mapping of predicted clusters to true labels."""
    from scipy.optimize import linear_sum_assignment

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.size == 0:
        return float("nan")
    t_ids, t = np.unique(y_true, return_inverse=True)
    p_ids, p = np.unique(y_pred, return_inverse=True)
    w = np.zeros((len(p_ids), len(t_ids)), np.int64)
    np.add.at(w, (p, t), 1)
    r, c = linear_sum_assignment(-w)
    return float(w[r, c].sum() / y_true.size)


def eer(y: np.ndarray, score: np.ndarray) -> float:
    """Equal error rate: FPR == FNR (= 1 - TPR) on the ROC, linearly interpolated."""
    from sklearn.metrics import roc_curve

    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return float("nan")
    fpr, tpr, _ = roc_curve(y, score)
    fnr = 1 - tpr
    d = fpr - fnr  # increases from -1 (fpr 0, fnr 1) to +1
    i = int(np.argmax(d >= 0))
    if d[i] == 0 or i == 0:
        return float(fpr[i])
    # crossing between points i-1 and i: interpolate both rates on the segment
    a = d[i - 1] / (d[i - 1] - d[i])
    return float(fpr[i - 1] + a * (fpr[i] - fpr[i - 1]))


def detection_metrics(y: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y).astype(int)
    score = np.asarray(score, dtype=np.float64)
    both = len(np.unique(y)) == 2
    return {
        "auc": float(roc_auc_score(y, score)) if both else float("nan"),
        "ap": float(average_precision_score(y, score)) if both else float("nan"),
        "acc": float(((score >= threshold).astype(int) == y).mean()) if y.size else float("nan"),
        "eer": eer(y, score) if both else float("nan"),
    }


def cluster_metrics(embedding: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, object]:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    labels = np.asarray(labels)
    k = len(np.unique(labels))
    if labels.size < 2 or k < 2:
        return {"cluster_acc": float("nan"), "nmi": float("nan"), "ari": float("nan"), "assign": None}
    x = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
    assign = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x.astype(np.float64))
    return {"cluster_acc": hungarian_acc(labels, assign), "nmi": float(normalized_mutual_info_score(labels, assign)),
            "ari": float(adjusted_rand_score(labels, assign)), "assign": assign}


@dataclass
class EvalData:
    """Everything metrics need, per test item."""

    classes: list[str]           # true class names
    train_classes: list[str]     # taxonomy.classes (index 0 = real)
    families: list[str]          # taxonomy.families
    class_family: dict[str, str]  # every class (seen and unseen) -> family
    unseen: list[str]
    attribution_logits: np.ndarray
    family_logits: np.ndarray
    p_fake: np.ndarray
    embedding: np.ndarray


def compute_metrics(d: EvalData, cluster_assign: np.ndarray | None = None, seed: int = 0) -> dict:
    """The metrics.json dict. `cluster_assign` (for unseen items, in order) skips k-means (bootstrap)."""
    cls = np.array(d.classes)
    n = len(cls)
    seen_mask = np.isin(cls, d.train_classes)
    unseen_mask = np.isin(cls, d.unseen)
    real_mask = cls == "real"
    pred = d.attribution_logits.argmax(1)
    cidx = {c: i for i, c in enumerate(d.train_classes)}
    y_seen = np.array([cidx.get(c, -1) for c in cls])
    m: dict = {"n_test": int(n), "n_seen": int(seen_mask.sum()), "n_unseen": int(unseen_mask.sum()),
               "n_real": int(real_mask.sum())}
    m["attribution_acc_seen"] = float((pred[seen_mask] == y_seen[seen_mask]).mean()) if seen_mask.any() else math.nan
    gen = seen_mask & ~real_mask
    m["attribution_acc_seen_generators"] = float((pred[gen] == y_seen[gen]).mean()) if gen.any() else math.nan
    m["per_class_acc"] = {c: float((pred[cls == c] == cidx[c]).mean()) for c in d.train_classes if (cls == c).any()}
    k = len(d.train_classes)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y_seen[seen_mask], pred[seen_mask]), 1)
    m["confusion_matrix"] = cm.tolist()
    # unseen generators: family and clustering
    if unseen_mask.any():
        fam_pred = d.family_logits[unseen_mask].argmax(1)
        fam_true = np.array([d.families.index(d.class_family[c]) if d.class_family.get(c) in d.families else -1
                             for c in cls[unseen_mask]])
        m["family_acc_unseen"] = float((fam_pred == fam_true).mean())
        if cluster_assign is None:
            cm_ = cluster_metrics(d.embedding[unseen_mask], cls[unseen_mask], seed)
        else:
            from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

            lab = cls[unseen_mask]
            ok = len(np.unique(lab)) >= 2
            cm_ = {"cluster_acc": hungarian_acc(lab, cluster_assign),
                   "nmi": float(normalized_mutual_info_score(lab, cluster_assign)) if ok else math.nan,
                   "ari": float(adjusted_rand_score(lab, cluster_assign)) if ok else math.nan,
                   "assign": cluster_assign}
        m["cluster_acc_unseen"], m["nmi_unseen"], m["ari_unseen"] = cm_["cluster_acc"], cm_["nmi"], cm_["ari"]
        m["_cluster_assign"] = cm_["assign"]
    else:
        m.update(family_acc_unseen=math.nan, cluster_acc_unseen=math.nan, nmi_unseen=math.nan, ari_unseen=math.nan)
        m["_cluster_assign"] = None
    # detection
    y = (~real_mask).astype(int)
    det = detection_metrics(y, d.p_fake)
    for k_, v in det.items():
        m[f"detection_{k_}"] = v
    um = real_mask | unseen_mask
    det_u = detection_metrics(y[um], d.p_fake[um]) if unseen_mask.any() else dict.fromkeys(det, math.nan)
    for k_, v in det_u.items():
        m[f"detection_{k_}_unseen"] = v
    return m


HEADLINE = ["attribution_acc_seen", "family_acc_unseen", "cluster_acc_unseen", "nmi_unseen", "ari_unseen",
            "detection_auc", "detection_auc_unseen", "detection_acc", "detection_eer", "detection_ap"]


def bootstrap(d: EvalData, keys: list[str], n_boot: int = 1000, seed: int = 0,
              idx_sets: list[np.ndarray] | None = None) -> dict[str, tuple[float, float]]:
    """95% percentile intervals over test items resampled with replacement. Clustering is not refit:
    the k-means assignment of the full test set is resampled with its items (cheap, and the
    interval then reflects sampling of items, not k-means restarts)."""
    base = compute_metrics(d, seed=seed)
    assign_full = base.get("_cluster_assign")
    cls = np.array(d.classes)
    unseen_pos = np.cumsum(np.isin(cls, d.unseen)) - 1
    rng = np.random.default_rng(seed)
    vals = {k: [] for k in keys}
    for b in range(n_boot):
        idx = idx_sets[b] if idx_sets is not None else rng.integers(0, len(cls), len(cls))
        sub = EvalData([d.classes[i] for i in idx], d.train_classes, d.families, d.class_family, d.unseen,
                       d.attribution_logits[idx], d.family_logits[idx], d.p_fake[idx], d.embedding[idx])
        ca = None
        if assign_full is not None:
            sel = idx[np.isin(cls[idx], d.unseen)]
            ca = assign_full[unseen_pos[sel]]
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mb = compute_metrics(sub, cluster_assign=ca)
        for k in keys:
            vals[k].append(mb.get(k, math.nan))
    return {k: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))) if np.isfinite(v).any()
            else (math.nan, math.nan) for k, v in vals.items()}
