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
- n_clusters_estimated / cluster_acc_unseen_estk / nmi_unseen_estk: the same clustering with k
  chosen without the oracle count, k in 2..min(10, n-1): by default by the gap statistic
  (`EvalData.k_estimator` "gap"), or by the best silhouette of k-means per k ("silhouette"; see
  estimate_k).
- unknown_auroc: ROC AUC of the unknown score 1 - max_g p(g | fake) (gazeclip.run.verdict),
  unseen-generator fakes (positive) vs seen-generator fakes (negative).
- unknown_tpr_unseen / unknown_fpr_seen: the unknown flag at the run's calibrated threshold
  (p(g | fake) below it) on unseen-generator fakes / on seen-generator fakes; the flag as the
  attribution stage raises it, on every fake whatever the detection verdict.
- fpr_real_at_threshold / tpr_fake_at_threshold / tpr_unseen_at_threshold: the share of real test
  faces called fake, of fake faces called fake, and of unseen-generator fakes called fake at the
  run's shipped (validation-calibrated) detection threshold; balanced_acc_at_threshold their mean
  recall (real and fake).
- detection_*: fake = 1, score p_fake. AUC (ROC), AP (average precision), ACC at p_fake >= 0.5,
  EER (the point where the false-positive rate equals the false-negative rate, linearly
  interpolated on the ROC). `_unseen` variants: real test items + unseen-generator items only.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np

from ..run.scores import binary_auc, roc_points
from ..run.verdict import fake_verdict, unknown_flag, unknown_score

CLUSTER_K_MAX = 10  # design choice, not from the paper: the largest k tried when estimating the cluster count


def hungarian_mapping(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[dict, int]:
    """The best one-to-one mapping of true labels to predicted clusters ({label: cluster}) and the
    number of items it gets right."""
    from scipy.optimize import linear_sum_assignment

    t_ids, t = np.unique(np.asarray(y_true), return_inverse=True)
    p_ids, p = np.unique(np.asarray(y_pred), return_inverse=True)
    w = np.zeros((len(p_ids), len(t_ids)), np.int64)
    np.add.at(w, (p, t), 1)
    r, c = linear_sum_assignment(-w)
    return {t_ids[j]: p_ids[i] for i, j in zip(r, c)}, int(w[r, c].sum())


def hungarian_acc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Accuracy of the best one-to-one mapping of predicted clusters to true labels."""
    y_true = np.asarray(y_true)
    if y_true.size == 0:
        return float("nan")
    return hungarian_mapping(y_true, y_pred)[1] / y_true.size


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """sklearn's average_precision_score: sum over thresholds of (recall step) x precision."""
    y = np.asarray(y).astype(bool)
    if not y.any():
        return float("nan")
    _, tpr, prec = roc_points(y, score)
    return float(np.sum(np.diff(tpr) * prec))


def eer(y: np.ndarray, score: np.ndarray) -> float:
    """Equal error rate: FPR == FNR (= 1 - TPR) on the ROC, linearly interpolated."""
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return float("nan")
    fpr, tpr, _ = roc_points(y, score)
    fnr = 1 - tpr
    d = fpr - fnr  # increases from -1 (fpr 0, fnr 1) to +1
    i = int(np.argmax(d >= 0))
    if d[i] == 0 or i == 0:
        return float(fpr[i])
    # crossing between points i-1 and i: interpolate both rates on the segment
    a = d[i - 1] / (d[i - 1] - d[i])
    return float(fpr[i - 1] + a * (fpr[i] - fpr[i - 1]))


def detection_metrics(y: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    y = np.asarray(y).astype(int)
    score = np.asarray(score, dtype=np.float64)
    both = len(np.unique(y)) == 2
    return {
        "auc": binary_auc(y, score) if both else float("nan"),
        "ap": average_precision(y, score) if both else float("nan"),
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


K_ESTIMATORS = ("gap", "silhouette")  # the first is the default
# design choice, not from the paper: reference data sets of the gap statistic
GAP_REFERENCES = 10


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float64)


def _kmeans(x: np.ndarray, k: int, seed: int, n_init: int = 10):
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():  # duplicate points: fewer distinct clusters than k
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)


def gap_k(x: np.ndarray, k_max: int = CLUSTER_K_MAX, seed: int = 0,
          references: int = GAP_REFERENCES) -> tuple[int, np.ndarray, np.ndarray]:
    """The gap statistic (Tibshirani, Walther & Hastie, J. R. Stat. Soc. B 63, 2001): Gap(k) =
    E*[log W*_k] - log W_k, W_k the k-means within-cluster sum of squares, E* over `references`
    data sets drawn uniformly in the box of the data's principal axes (their method b); k is the
    smallest k in 2..min(k_max, n-1) with Gap(k) >= Gap(k+1) - s_{k+1}, s the references' sd times
    sqrt(1 + 1/B). Unlike the silhouette it keeps counting inside a group of close clusters.
    Returns (k, Gap(1..K+1), s(1..K+1))."""
    n = len(x)
    top = min(k_max, n - 1)
    xc = x - x.mean(0)
    xp = xc @ np.linalg.svd(xc, full_matrices=False)[2].T
    lo, hi = xp.min(0), xp.max(0)
    rng = np.random.default_rng(seed)
    refs = [rng.uniform(lo, hi, xp.shape) for _ in range(references)]
    ks = np.arange(1, top + 2)  # Gap(k + 1) is needed for k = top; top + 1 <= n
    log_w = np.array([np.log(max(_kmeans(xp, k, seed).inertia_, 1e-300)) for k in ks])
    # design choice, not from the paper: 2 k-means restarts per reference set (10 for the data); the
    # references' mean over B sets absorbs the rest of their noise
    log_ref = np.array([[np.log(max(_kmeans(r, k, seed, 2).inertia_, 1e-300)) for r in refs] for k in ks])
    gap = log_ref.mean(1) - log_w
    sd = log_ref.std(1) * np.sqrt(1 + 1 / references)
    k = next((k for k in range(2, top + 1) if gap[k - 1] >= gap[k] - sd[k]), top)
    return k, gap, sd


def estimate_k(embedding: np.ndarray, k_max: int = CLUSTER_K_MAX, seed: int = 0,
               method: str = K_ESTIMATORS[0]) -> tuple[int, np.ndarray | None]:
    """The number of clusters without the oracle count, and the k-means assignment at that k (on the
    L2-normalised embeddings, as the oracle-k clustering), k in 2..min(k_max, n-1). `method`:
    - "gap" (default): the gap statistic (`gap_k`);
    - "silhouette": k-means per k, the k with the highest silhouette (ties: the smaller k). It
      takes the coarsest split when the clusters come in groups: 2 of the 4 unseen generators in
      every p2-main run.
    Returns (k, assignment); (0, None) with fewer than 3 items."""
    from sklearn.metrics import silhouette_score

    if method not in K_ESTIMATORS:
        raise ValueError(f"cluster-count estimator {method!r}: use one of {', '.join(K_ESTIMATORS)}")
    n = len(embedding)
    if n < 3:
        return 0, None
    x = _unit(embedding)
    if method == "gap":
        k = gap_k(x, k_max, seed)[0]
        return k, _kmeans(x, k, seed).labels_
    best = (-np.inf, 0, None)
    for k in range(2, min(k_max, n - 1) + 1):
        assign = _kmeans(x, k, seed).labels_
        if len(np.unique(assign)) < 2:  # identical points: k-means could not split them
            continue
        sc = float(silhouette_score(x, assign))
        if sc > best[0] + 1e-12:
            best = (sc, k, assign)
    return best[1], best[2]


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, ai = np.unique(np.asarray(a), return_inverse=True)
    _, bi = np.unique(np.asarray(b), return_inverse=True)
    c = np.zeros((ai.max() + 1, bi.max() + 1), np.int64)
    np.add.at(c, (ai.ravel(), bi.ravel()), 1)
    return c


def nmi_score(a: np.ndarray, b: np.ndarray) -> float:
    """sklearn's normalized_mutual_info_score (arithmetic mean of the entropies), numpy only (the
    bootstrap calls it thousands of times)."""
    c = _contingency(a, b).astype(np.float64)
    if c.shape[0] == c.shape[1] == 1:
        return 1.0
    n = c.sum()
    pa, pb = c.sum(1) / n, c.sum(0) / n
    nz = c > 0
    pij = c[nz] / n
    mi = max(0.0, float(np.sum(pij * (np.log(pij) - np.log(np.outer(pa, pb)[nz])))))
    if mi == 0:
        return 0.0
    h = (-np.sum(pa * np.log(pa)) - np.sum(pb * np.log(pb))) / 2
    return float(mi / max(h, np.finfo(np.float64).eps))


def ari_score(a: np.ndarray, b: np.ndarray) -> float:
    """sklearn's adjusted_rand_score from the pair confusion matrix, numpy only."""
    c = _contingency(a, b)
    n = int(c.sum())
    ss = int((c.astype(object) ** 2).sum())
    n_c, n_k = c.sum(1), c.sum(0)
    fp = int((c @ n_k).sum()) - ss
    fn = int((c.T @ n_c).sum()) - ss
    tp = ss - n
    tn = n * n - fp - fn - ss
    if fn == 0 and fp == 0:
        return 1.0
    return float(2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)))


def _cluster_scores(labels: np.ndarray, assign: np.ndarray | None) -> tuple[float, float, float]:
    if assign is None or labels.size == 0:
        return math.nan, math.nan, math.nan
    ok = len(np.unique(labels)) >= 2
    return (hungarian_acc(labels, assign), nmi_score(labels, assign) if ok else math.nan,
            ari_score(labels, assign) if ok else math.nan)


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
    detection_threshold: float | None = None  # the run's calibrated thresholds (RUN/calibration.json)
    unknown_threshold: float | None = None
    k_estimator: str = K_ESTIMATORS[0]  # how n_clusters_estimated is found (estimate_k's method)

    def subset(self, idx: np.ndarray) -> "EvalData":
        return replace(self, classes=[self.classes[i] for i in idx], attribution_logits=self.attribution_logits[idx],
                       family_logits=self.family_logits[idx], p_fake=self.p_fake[idx], embedding=self.embedding[idx])


def _rate(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else math.nan


def compute_metrics(d: EvalData, cluster_assign: np.ndarray | None = None, seed: int = 0,
                    cluster_assign_estk: np.ndarray | None = None, k_est: int | None = None) -> dict:
    """The metrics.json dict. `cluster_assign` / `cluster_assign_estk` + `k_est` (for unseen items,
    in order) skip k-means (bootstrap); the fitted ones come back under `_cluster_assign*`."""
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
        lab = cls[unseen_mask]
        if cluster_assign is None:
            cm_ = cluster_metrics(d.embedding[unseen_mask], lab, seed)
        else:
            acc, nmi, ari = _cluster_scores(lab, cluster_assign)
            cm_ = {"cluster_acc": acc, "nmi": nmi, "ari": ari, "assign": cluster_assign}
        m["cluster_acc_unseen"], m["nmi_unseen"], m["ari_unseen"] = cm_["cluster_acc"], cm_["nmi"], cm_["ari"]
        m["_cluster_assign"] = cm_["assign"]
        if cluster_assign_estk is None and k_est is None:
            k_est, cluster_assign_estk = estimate_k(d.embedding[unseen_mask], seed=seed, method=d.k_estimator)
        m["n_clusters_estimated"] = int(k_est) if k_est else math.nan
        m["cluster_acc_unseen_estk"], m["nmi_unseen_estk"], _ = _cluster_scores(lab, cluster_assign_estk)
        m["_cluster_assign_estk"], m["_k_est"] = cluster_assign_estk, k_est
    else:
        m.update(family_acc_unseen=math.nan, cluster_acc_unseen=math.nan, nmi_unseen=math.nan, ari_unseen=math.nan,
                 n_clusters_estimated=math.nan, cluster_acc_unseen_estk=math.nan, nmi_unseen_estk=math.nan)
        m["_cluster_assign"] = m["_cluster_assign_estk"] = m["_k_est"] = None
    # open set: is a fake from a generator never seen? (fakes only: seen generators vs unseen)
    seen_fake = seen_mask & ~real_mask
    if unseen_mask.any() and seen_fake.any():
        both = seen_fake | unseen_mask
        m["unknown_auroc"] = binary_auc(unseen_mask[both], unknown_score(d.attribution_logits[both]))
    else:
        m["unknown_auroc"] = math.nan
    if d.unknown_threshold is not None:
        flag = unknown_flag(d.attribution_logits, d.unknown_threshold)
        m["unknown_tpr_unseen"], m["unknown_fpr_seen"] = _rate(flag[unseen_mask]), _rate(flag[seen_fake])
    else:
        m["unknown_tpr_unseen"] = m["unknown_fpr_seen"] = math.nan
    m["unknown_threshold"] = d.unknown_threshold if d.unknown_threshold is not None else math.nan
    # the shipped detection threshold (validation-calibrated): what a user of `predict` gets
    called_fake = fake_verdict(d.p_fake, d.detection_threshold)
    m["detection_threshold"] = d.detection_threshold if d.detection_threshold is not None else math.nan
    m["fpr_real_at_threshold"] = _rate(called_fake[real_mask])
    m["tpr_fake_at_threshold"] = _rate(called_fake[~real_mask])
    m["tpr_unseen_at_threshold"] = _rate(called_fake[unseen_mask])
    m["balanced_acc_at_threshold"] = ((1 - m["fpr_real_at_threshold"] + m["tpr_fake_at_threshold"]) / 2
                                      if real_mask.any() and (~real_mask).any() else math.nan)
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
OPEN_SET = ["unknown_auroc", "unknown_tpr_unseen", "unknown_fpr_seen", "n_clusters_estimated",
            "cluster_acc_unseen_estk", "fpr_real_at_threshold", "tpr_fake_at_threshold"]
PRIVATE = ("_cluster_assign", "_cluster_assign_estk", "_k_est")
# The one table of metric names -> short column headers that every table (compare, experiment) uses;
# val_* are the kept epoch's validation figures (the run's summary.json)
METRIC_LABELS = {
    "val_acc": "val ACC", "val_auc": "val AUC",
    "attribution_acc_seen_generators": "ACC seen gen.", "attribution_acc_seen": "ACC seen (+real)",
    "family_acc_unseen": "family ACC unseen", "cluster_acc_unseen": "cluster ACC unseen (oracle k)",
    "cluster_acc_unseen_estk": "cluster ACC unseen (est. k)", "n_clusters_estimated": "est. k",
    "nmi_unseen": "NMI unseen", "ari_unseen": "ARI unseen", "detection_auc": "AUC", "detection_auc_unseen": "AUC unseen",
    "detection_acc": "det ACC", "detection_eer": "EER", "detection_ap": "AP",
    "fpr_real_at_threshold": "FPR real @thr", "tpr_fake_at_threshold": "TPR fake @thr",
    "unknown_auroc": "unknown AUROC", "unknown_tpr_unseen": "unknown TPR unseen", "unknown_fpr_seen": "unknown FPR seen",
}


def public(m: dict) -> dict:
    """metrics without the private clustering assignments (for metrics.json)."""
    return {k: v for k, v in m.items() if k not in PRIVATE}


def per_generator_metrics(d: EvalData, cluster_assign: np.ndarray | None = None) -> dict[str, dict]:
    """Per generator class of the test split (seen and unseen): `seen`, `n`, `attribution_acc`
    (seen generators: argmax == the class), `detection_auc` (real test faces vs this generator's),
    `called_fake` (share called fake at the shipped threshold), and for unseen generators
    `cluster_recall` (share of its faces in the cluster the Hungarian mapping gives it)."""
    cls = np.array(d.classes)
    real = cls == "real"
    pred = d.attribution_logits.argmax(1)
    cidx = {c: i for i, c in enumerate(d.train_classes)}
    called = fake_verdict(d.p_fake, d.detection_threshold)
    unseen_mask = np.isin(cls, d.unseen)
    mapping: dict[str, object] = {}
    if cluster_assign is not None and unseen_mask.any():
        mapping = {str(g): k for g, k in hungarian_mapping(cls[unseen_mask], cluster_assign)[0].items()}
    out: dict[str, dict] = {}
    for g in sorted(set(cls) - {"real"}):
        gm = cls == g
        rec: dict = {"seen": g in cidx, "n": int(gm.sum()),
                     "attribution_acc": float((pred[gm] == cidx[g]).mean()) if g in cidx else math.nan,
                     "called_fake": float(called[gm].mean())}
        both = gm | real
        rec["detection_auc"] = binary_auc(gm[both], d.p_fake[both])  # NaN without real test faces
        if g in d.unseen and cluster_assign is not None:
            a = cluster_assign[cls[unseen_mask] == g]
            rec["cluster_recall"] = float((a == mapping[g]).mean()) if g in mapping else 0.0
        else:
            rec["cluster_recall"] = math.nan
        out[g] = rec
    return out
