"""The per-face verdict rule and the validation calibration of its thresholds, on hand-made inputs."""
from __future__ import annotations

import numpy as np
import pytest

from gazeclip.run.calibrate import calibration_record, detection_threshold_from, threshold_from
from gazeclip.run.verdict import decide, fake_conditional_probs, top_fake, unknown_score

CLASSES = ("real", "g1", "g2")
FAMILIES = ("real", "gan", "diffusion")


def test_fake_conditional_probs_ignore_the_real_logit():
    logits = np.array([[9.0, 1.0, 1.0 + np.log(3.0)], [-9.0, 1.0, 1.0 + np.log(3.0)]])
    p = fake_conditional_probs(logits)
    assert p == pytest.approx(np.array([[0.25, 0.75], [0.25, 0.75]]))  # same whatever the real logit
    idx, conf = top_fake(logits)
    assert idx.tolist() == [2, 2] and conf == pytest.approx([0.75, 0.75])
    assert unknown_score(logits) == pytest.approx([0.25, 0.25])


def test_threshold_from_hand_computed():
    # p(g | fake) of the top generator: rows 1-4 (fakes) -> 0.5, 0.9, 0.8 (wrong: named g2, is g1), 0.7
    logits = np.log(np.array([[0.9, 0.05, 0.05],
                              [0.1, 0.45, 0.45],
                              [0.1, 0.09, 0.81],
                              [0.1, 0.18, 0.72],
                              [0.1, 0.63, 0.27]]))
    labels = np.array([0, 1, 2, 1, 1])
    # row 1 is a tie (0.5): argmax names g1 = its label -> correct. Correct: rows 1 (0.5), 2 (0.9), 4 (0.7)
    thr, n = threshold_from(logits, labels, 0.0)
    assert n == 3 and thr == pytest.approx(0.5)
    thr, _ = threshold_from(logits, labels, 0.5)
    assert thr == pytest.approx(0.7)  # the median of 0.5, 0.7, 0.9
    # nothing named correctly: every fake is used
    thr, n = threshold_from(logits, np.array([0, 2, 1, 0, 2]), 1.0)
    assert n == 3 and thr == pytest.approx(0.9)
    assert threshold_from(logits, np.zeros(5, int), 0.05) == (0.0, 0)  # no fakes at all
    # labels -1 (not a training class) are ignored
    assert threshold_from(logits, np.array([0, 1, -1, -1, -1]), 0.5) == (pytest.approx(0.5), 1)


def test_detection_threshold_balanced_and_fpr():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.6, 0.5, 0.7, 0.8, 0.9])
    r = detection_threshold_from(y, s, "balanced")
    # best balanced accuracy: cut between 0.6 and 0.7 (real recall 1, fake recall 3/4) -> 0.875;
    # the cut between 0.2 and 0.5 gives (2/3 + 1) / 2 = 0.833
    assert r["threshold"] == pytest.approx(0.65) and r["rule"] == "balanced"
    assert r["val_fpr"] == 0.0 and r["val_tpr"] == pytest.approx(0.75) and (r["n_real"], r["n_fake"]) == (3, 4)
    r = detection_threshold_from(y, s, "fpr", target_fpr=0.34)  # one of 3 real faces may be called fake
    assert r["threshold"] == pytest.approx(0.35) and r["val_fpr"] == pytest.approx(1 / 3) and r["val_tpr"] == 1.0
    # separable: the cut sits in the gap, whatever the rule
    assert detection_threshold_from([0, 1], [0.2, 0.6])["threshold"] == pytest.approx(0.4)
    # a one-class split cannot be calibrated: 0.5, said so
    r = detection_threshold_from([1, 1], [0.2, 0.6])
    assert r["threshold"] == 0.5 and r["rule"] == "fallback"
    with pytest.raises(ValueError, match="balanced or fpr"):
        detection_threshold_from(y, s, "youden")


def test_balanced_ties_go_to_the_widest_gap():
    # one perfect cut: in the gap between the classes
    r = detection_threshold_from([0, 0, 1, 1], [0.1, 0.3, 0.35, 0.9])
    assert r["threshold"] == pytest.approx(0.325)
    # equal balanced accuracy at 0.2 (real recall 1/2, fake 1) and 0.7 (1, 1/2): the wider gap wins
    r = detection_threshold_from([0, 1, 0, 1], [0.1, 0.3, 0.5, 0.95])
    assert r["threshold"] == pytest.approx(0.725)


def test_calibration_record_keys():
    logits = np.log(np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]]))
    rec = calibration_record(logits, np.array([0, 1, 2]), np.array([0, 1, 1]), np.array([0.2, 0.9, 0.8]), 0.05)
    assert rec["version"] == 3 and rec["split"] == "val"
    assert rec["detection_threshold"] == pytest.approx(0.5) and rec["n_val_used"] == 2
    assert 0.0 < rec["unknown_threshold"] <= 1.0
    # no face quality given: every abstain limit is off
    assert all(rec["abstain"][k] is None for k in rec["abstain"] if k.startswith(("min_", "max_")))


def test_decide_never_contradicts_itself():
    rng = np.random.default_rng(0)
    n = 500
    logits = rng.normal(0, 3, (n, 3))
    fam = rng.normal(0, 3, (n, 3))
    p_fake = rng.uniform(0, 1, n)
    vs = decide(p_fake, logits, fam, CLASSES, FAMILIES, detection_threshold=0.6, unknown_threshold=0.7)
    assert len(vs) == n
    for p, v in zip(p_fake, vs):
        if p >= 0.6:
            assert v.verdict == "fake" and v.generator in CLASSES[1:] and v.family in FAMILIES[1:]
            assert v.unknown_generator == (v.generator_prob < 0.7)
        else:
            assert v.verdict == "real" and v.generator is None and v.family is None
            assert v.generator_prob is None and not v.unknown_generator
    # the old failure: real has the largest logit yet p_fake says fake -> a generator is named
    v = decide(np.array([0.75]), np.array([[5.0, 1.0, 2.0]]), np.array([[5.0, 0.0, 1.0]]), CLASSES, FAMILIES,
               0.5, None)[0]
    assert (v.verdict, v.generator, v.family, v.unknown_generator) == ("fake", "g2", "diffusion", False)
    assert v.as_dict()["generator_prob"] == pytest.approx(np.exp(2) / (np.exp(1) + np.exp(2)), abs=1e-6)
    # no calibrated detection threshold (an old run): 0.5
    assert decide(np.array([0.49]), np.zeros((1, 3)), np.zeros((1, 3)), CLASSES, FAMILIES, None, None)[0].verdict \
        == "real"
    with pytest.raises(ValueError, match="first class"):
        decide(np.array([0.5]), np.zeros((1, 3)), np.zeros((1, 3)), ("g1", "real", "g2"), FAMILIES, 0.5, None)
