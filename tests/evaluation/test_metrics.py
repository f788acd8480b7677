"""Metrics against hand-computed values on small fixtures."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gazeclip.evaluation.bootstrap import bootstrap
from gazeclip.evaluation.metrics import EvalData, compute_metrics, detection_metrics, eer, hungarian_acc


def test_hungarian_acc_hand_computed():
    # clusters 1->class 0 (2 items), 0->class 1 (2), 2->class 2 (1 of 2): 5/6
    assert hungarian_acc([0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 0, 2]) == pytest.approx(5 / 6)
    # a permutation of labels is perfect
    assert hungarian_acc(["a", "a", "b"], [7, 7, 3]) == 1.0
    # more clusters than classes: only one cluster may map to each class
    assert hungarian_acc([0, 0, 0, 0], [0, 0, 1, 1]) == pytest.approx(0.5)


def test_eer_hand_computed():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    # threshold in (0.4, 0.6]: one negative above (FPR 1/4), one positive below (FNR 1/4)
    assert eer(y, s) == pytest.approx(0.25)
    assert eer(y, np.r_[np.zeros(4), np.ones(4)]) == pytest.approx(0.0)   # separable
    assert eer(y, np.r_[np.ones(4), np.zeros(4)]) == pytest.approx(1.0)   # inverted


def test_eer_interpolated():
    # ROC points (fpr, fnr): (0, 1) (0, .5) (.5, .5)... with 2 negatives, 2 positives:
    y = np.array([0, 0, 1, 1])
    s = np.array([0.2, 0.6, 0.5, 0.9])
    # thresholds 0.9: fpr 0, fnr .5; 0.6: fpr .5, fnr .5 -> crossing exactly at 0.5
    assert eer(y, s) == pytest.approx(0.5)


def test_detection_metrics_hand_computed():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.6, 0.4, 0.9])
    m = detection_metrics(y, s)
    assert m["auc"] == pytest.approx(0.75)          # 3 of 4 (pos, neg) pairs ordered right
    assert m["acc"] == pytest.approx(0.5)           # 0.1 ok, 0.6 wrong, 0.4 wrong, 0.9 ok
    assert m["ap"] == pytest.approx((1 / 1 + 2 / 3) / 2)


def _fixture() -> EvalData:
    classes = ["real", "real", "g1", "g1", "g2", "g2", "u1", "u1", "u2", "u2"]
    train = ["real", "g1", "g2"]
    fams = ["real", "gan", "diffusion", "flow"]
    cf = {"real": "real", "g1": "gan", "g2": "diffusion", "u1": "gan", "u2": "flow"}
    logits = np.full((10, 3), -5.0)
    pred = [0, 0, 1, 2, 2, 2, 1, 1, 2, 2]  # g1 item 2 wrong (-> g2): seen acc 5/6
    logits[np.arange(10), pred] = 5.0
    fam_logits = np.full((10, 4), -5.0)
    fam_pred = [0, 0, 1, 1, 2, 2, 1, 2, 3, 3]  # unseen: u1 gan ok, gan wrong, flow ok, ok -> 3/4
    fam_logits[np.arange(10), fam_pred] = 5.0
    p_fake = np.array([0.1, 0.7, 0.8, 0.9, 0.6, 0.95, 0.3, 0.85, 0.75, 0.65])
    emb = np.zeros((10, 4))
    emb[:, 0] = 1
    emb[8:, 1] = 5  # u2 separate from u1: perfect clusters
    return EvalData(classes, train, fams, cf, ["u1", "u2"], logits, fam_logits, p_fake, emb)


def test_compute_metrics_fixture():
    m = compute_metrics(_fixture())
    assert m["n_test"] == 10 and m["n_unseen"] == 4 and m["n_real"] == 2
    assert m["attribution_acc_seen"] == pytest.approx(5 / 6)
    assert m["attribution_acc_seen_generators"] == pytest.approx(3 / 4)
    assert m["per_class_acc"] == {"real": 1.0, "g1": 0.5, "g2": 1.0}
    assert np.array(m["confusion_matrix"]).sum() == 6
    assert m["family_acc_unseen"] == pytest.approx(3 / 4)
    assert m["cluster_acc_unseen"] == 1.0 and m["nmi_unseen"] == pytest.approx(1.0) and m["ari_unseen"] == 1.0
    # detection, all 10: AUC = fraction of (fake, real) pairs with the fake scored higher
    pos = [0.8, 0.9, 0.6, 0.95, 0.3, 0.85, 0.75, 0.65]
    expected = (sum(p > 0.1 for p in pos) + sum(p > 0.7 for p in pos)) / 16
    assert m["detection_auc"] == pytest.approx(expected)
    # unseen only: real (0.1, 0.7) vs u (0.3, 0.85, 0.75, 0.65)
    assert m["detection_auc_unseen"] == pytest.approx((4 + 2) / 8)
    assert m["detection_acc"] == pytest.approx(8 / 10)  # wrong: real 0.7, fake 0.3
    for k in ("attribution_acc_seen", "family_acc_unseen", "cluster_acc_unseen", "nmi_unseen", "ari_unseen",
              "detection_auc", "detection_auc_unseen", "detection_acc", "detection_eer", "detection_ap"):
        assert 0.0 <= m[k] <= 1.0, k


def test_no_unseen_gives_nan_not_crash():
    d = _fixture()
    d.unseen = []
    m = compute_metrics(d)
    assert math.isnan(m["family_acc_unseen"]) and math.isnan(m["detection_auc_unseen"])


def test_bootstrap_interval_brackets_estimate():
    d = _fixture()
    m = compute_metrics(d)
    ci = bootstrap(d, ["attribution_acc_seen", "detection_auc", "cluster_acc_unseen"], n_boot=200, seed=1)
    for k, (lo, hi) in ci.items():
        assert lo <= m[k] + 1e-9 and m[k] <= hi + 1e-9, (k, lo, m[k], hi)


def test_open_set_metrics_hand_computed():
    from gazeclip.evaluation.metrics import per_generator_metrics

    d = _fixture()
    # fake-conditional top probabilities: seen fakes (rows 2-5) are confident (logit 5 vs -5 among the
    # two generators: p = 1/(1+e^-10)); unseen fakes get flatter logits
    d.attribution_logits = d.attribution_logits.copy()
    d.attribution_logits[6] = [0.0, 0.2, 0.0]    # p(g|fake) = e^.2/(1+e^.2) = 0.5498
    d.attribution_logits[7] = [0.0, 3.0, 0.0]    # 0.9526: looks like a known generator
    d.attribution_logits[8] = [0.0, 0.0, 0.5]    # 0.6225
    d.attribution_logits[9] = [0.0, 0.0, 1.0]    # 0.7311
    d.unknown_threshold = 0.9
    d.detection_threshold = 0.7
    m = compute_metrics(d)
    # unknown score: unseen 0.45, 0.047, 0.38, 0.27 vs 4 seen at 4.5e-5: every pair ordered right
    assert m["unknown_auroc"] == pytest.approx(1.0)
    assert m["unknown_tpr_unseen"] == pytest.approx(3 / 4)   # 0.9526 is not below 0.9
    assert m["unknown_fpr_seen"] == 0.0
    # detection at 0.7: real 0.1 (no), 0.7 (yes: >=) -> FPR 1/2; fakes >= 0.7: .8 .9 .95 .85 .75 -> 5/8
    assert m["fpr_real_at_threshold"] == pytest.approx(0.5)
    assert m["tpr_fake_at_threshold"] == pytest.approx(5 / 8)
    assert m["tpr_unseen_at_threshold"] == pytest.approx(2 / 4)
    assert m["balanced_acc_at_threshold"] == pytest.approx((0.5 + 5 / 8) / 2)
    # two well separated unseen clusters: the silhouette picks k = 2 (k = 3 is the only other option)
    assert m["n_clusters_estimated"] == 2 and m["cluster_acc_unseen_estk"] == 1.0
    # no thresholds: the threshold metrics fall back to 0.5 / are undefined, nothing crashes
    d.unknown_threshold = d.detection_threshold = None
    m2 = compute_metrics(d)
    assert math.isnan(m2["unknown_tpr_unseen"]) and m2["fpr_real_at_threshold"] == pytest.approx(0.5)
    pg = per_generator_metrics(d, m["_cluster_assign"])
    assert set(pg) == {"g1", "g2", "u1", "u2"}
    assert pg["g1"]["seen"] and pg["g1"]["attribution_acc"] == 0.5 and math.isnan(pg["g1"]["cluster_recall"])
    assert not pg["u1"]["seen"] and math.isnan(pg["u1"]["attribution_acc"]) and pg["u1"]["cluster_recall"] == 1.0
    # real p_fake 0.1, 0.7 vs g2 0.6, 0.95: 3 of 4 pairs ordered right
    assert pg["g2"]["detection_auc"] == pytest.approx(3 / 4)


def test_estimate_k_finds_the_clusters_without_the_oracle():
    from gazeclip.evaluation.metrics import estimate_k

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (4, 16)) * 5
    x = np.concatenate([c + rng.normal(0, 0.3, (25, 16)) for c in centres])
    y = np.repeat(np.arange(4), 25)
    k, assign = estimate_k(x, seed=0)
    assert k == 4 and hungarian_acc(y, assign) == 1.0
    assert estimate_k(x[:2]) == (0, None)  # too few items


def _paired_blobs(seed: int, n: int = 30, d: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """4 tight clusters in two far-apart pairs (as P2's unseen generators: three trained on the same
    faces, one an edit of real photos): a hierarchy whose coarsest split is 2."""
    rng = np.random.default_rng(seed)
    e = np.eye(d)
    centres = [e[0], e[0] + 0.35 * e[2], e[1], e[1] + 0.35 * e[3]]
    return np.concatenate([c + 0.05 * rng.normal(size=(n, d)) for c in centres]), np.repeat(np.arange(4), n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gap_statistic_counts_paired_clusters_where_the_silhouette_says_two(seed):
    from gazeclip.evaluation.metrics import estimate_k

    x, y = _paired_blobs(seed)
    assert estimate_k(x, seed=seed, method="silhouette")[0] == 2  # the failure seen in every p2-main run
    k, assign = estimate_k(x, seed=seed, method="gap")
    assert k == 4 and hungarian_acc(y, assign) == 1.0


def test_k_estimator_is_a_switch_of_the_metrics():
    x, _ = _paired_blobs(0)
    classes = ["real"] * 4 + ["g1"] * 4 + [f"u{i}" for i in range(4) for _ in range(30)]
    n = len(classes)
    d = EvalData(classes, ["real", "g1"], ["real", "gan"], {"real": "real", "g1": "gan", **{f"u{i}": "gan" for i in
                                                                                          range(4)}},
                 [f"u{i}" for i in range(4)], np.zeros((n, 2)), np.zeros((n, 2)), np.full(n, 0.5),
                 np.concatenate([np.ones((8, 16)), x]))
    assert compute_metrics(d)["n_clusters_estimated"] == 4  # the gap statistic by default
    d.k_estimator = "silhouette"
    assert compute_metrics(d)["n_clusters_estimated"] == 2
    from gazeclip.evaluation.metrics import estimate_k

    with pytest.raises(ValueError, match="gap, silhouette"):
        estimate_k(x, method="xmeans")


def test_wrong_k_counts_unmatched_clusters_as_errors():
    d = _fixture()
    # the estimated-k clustering splits u1 in two: one half maps to u1, the other is unmatched
    m = compute_metrics(d, cluster_assign=np.array([0, 0, 1, 1]), cluster_assign_estk=np.array([0, 2, 1, 1]),
                        k_est=3)
    assert m["n_clusters_estimated"] == 3 and m["cluster_acc_unseen_estk"] == pytest.approx(3 / 4)
    assert m["cluster_acc_unseen"] == 1.0


def test_bootstrap_resamples_estimated_k_assignment():
    d = _fixture()
    ci = bootstrap(d, ["cluster_acc_unseen_estk", "n_clusters_estimated"], n_boot=50, seed=0)
    assert ci["cluster_acc_unseen_estk"] == (1.0, 1.0) and ci["n_clusters_estimated"] == (2.0, 2.0)


def test_numpy_auc_and_ap_equal_sklearn():
    from sklearn.metrics import average_precision_score, roc_auc_score

    from gazeclip.evaluation.metrics import average_precision, binary_auc

    rng = np.random.default_rng(0)
    for t in range(100):
        n = int(rng.integers(4, 60))
        y = np.r_[0, 1, rng.integers(0, 2, n - 2)]
        s = rng.integers(0, 6, n) / 5.0 if t % 2 else rng.uniform(size=n)  # with and without ties
        assert binary_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert math.isnan(binary_auc([1, 1], [0.2, 0.3]))


def test_numpy_nmi_and_ari_equal_sklearn():
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from gazeclip.evaluation.metrics import ari_score, nmi_score

    rng = np.random.default_rng(1)
    for _ in range(100):
        n = int(rng.integers(2, 80))
        a, b = rng.integers(0, rng.integers(1, 6), n), rng.integers(0, rng.integers(1, 7), n)
        assert nmi_score(a, b) == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-10)
        assert ari_score(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-10)
