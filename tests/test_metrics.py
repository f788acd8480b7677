"""Metrics against hand-computed values on small fixtures."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gazeclip.engine.metrics import EvalData, bootstrap, compute_metrics, detection_metrics, eer, hungarian_acc


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
