"""Grad-CAM, t-SNE, plots and perturbations on tiny inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gazeclip.data.dataset import FaceDataset, SampleSet, whole_image_arrays, collate
from gazeclip.data.perturb import LEVELS, PERTURBATIONS, perturb
from gazeclip.models.interface import Taxonomy

TX = Taxonomy(("real", "gan-a"), {"real": "real", "gan-a": "gan"}, {"real": "real", "gan-a": "x"}, ("real", "gan"))


def _batch(model):

    pre = model.preprocess
    img = np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    a = whole_image_arrays(img, pre.size, 512)
    s = SampleSet(["x"], ["real"], a[0][None], a[1][None], a[2][None], a[3][None], np.array([False]), a[5][None],
                  np.array([0]))
    return collate([FaceDataset(s, TX, pre)[0]])[0]


@pytest.mark.parametrize("name", ["gazeclip", "clip-linear-probe"])
def test_gradcam_map(name):
    from gazeclip.models import create_model
    from gazeclip.viz.gradcam import gradcam

    model = create_model(name, backbone="tiny-random", taxonomy=TX)
    before = {n: p.clone() for n, p in model.named_parameters()}
    res = gradcam(model, _batch(model))
    assert res.cam.shape == (4, 4)  # 32 px / patch 8
    assert res.cam.min() >= 0 and res.cam.max() == pytest.approx(1.0)
    assert res.target == int(np.argmax(res.probs))
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())  # explaining changes nothing


def test_gradcam_overlay_and_tsne(tmp_path):
    from gazeclip.viz.cli_tsne import tsne_png
    from gazeclip.viz.gradcam import CamResult, overlay_png

    face = np.full((64, 64, 3), 128, np.uint8)
    overlay_png(face, CamResult(np.eye(4), 1, np.array([0.3, 0.7]), 0.8), ["real", "gan-a"], tmp_path / "c.png")
    emb = np.random.default_rng(0).normal(size=(30, 8))
    classes = ["real"] * 10 + ["gan-a"] * 10 + ["new-gen"] * 10
    xy = tsne_png(emb, classes, {"real", "gan-a"}, tmp_path / "t.png", perplexity=5)
    assert xy.shape == (30, 2)
    for f in ("c.png", "t.png"):
        assert (tmp_path / f).read_bytes()[:4] == b"\x89PNG"


def test_plots(tmp_path):
    from gazeclip.viz.plots import confusion_png, robustness_png, roc_png

    confusion_png(np.array([[3, 1], [0, 4]]), ["real", "g"], tmp_path / "cm.png")
    y = np.array([0, 0, 1, 1])
    roc_png({"all": (y, np.array([0.1, 0.4, 0.35, 0.8]))}, tmp_path / "roc.png")
    pts = [{"severity": s, "attribution_acc_seen": 1 - s / 10, "detection_auc": 1 - s / 20} for s in range(6)]
    robustness_png({"a": {"jpeg": pts, "blur": pts}, "b": {"jpeg": pts, "blur": pts}}, tmp_path / "rob.png")
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("cm.png", "roc.png", "rob.png"))


def test_perturbations_shapes_and_severity():
    img = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    for kind in PERTURBATIONS:
        assert np.array_equal(perturb(img, kind, 0), img)
        diffs = []
        for sev in range(1, len(LEVELS[kind]) + 1):
            out = perturb(img, kind, sev, np.random.default_rng(1))
            assert out.shape == img.shape and out.dtype == np.uint8
            diffs.append(np.abs(out.astype(int) - img).mean())
        assert diffs[-1] > diffs[0], (kind, diffs)
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb(img, "sepia", 1)
