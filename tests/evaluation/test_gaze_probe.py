"""`gazeclip gaze-probe` on the smoke benchmark (real face and gaze networks, tiny CLIP): the output's
shape, and that a gaze signal planted in one generator's faces is found by the gaze-only probe and
not by the CLIP-only one; the consistency-cue views (mirror, shifts, zoom), on a stub and on real photos."""
from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    d = tmp_path_factory.mktemp("probe-caches")  # the shared smoke folder stays as built
    return ["--face-cache", str(d / "faces"), "--feature-cache", str(d / "features")]


@pytest.mark.real
def test_gaze_probe_cli_output_shape(smoke, caches, tmp_path):
    from gazeclip.cli import main
    from gazeclip.data.manifest import read_manifest, read_protocols

    out = tmp_path / "probe"
    sets = "gaze,clip,clip+gaze,gaze+head"
    rc = main(["gaze-probe", "--data", str(smoke), "--protocol", "P2", "--out", str(out), "--sets", sets,
               "--backbone", "tiny-random", "--bootstrap", "50", "--quiet", *caches])
    assert rc == 0
    rep = json.loads((out / "probe.json").read_text())
    proto = read_protocols(smoke)["P2"]
    test_classes = {r.cls for r in read_manifest(smoke) if r.split == "test"}
    assert list(rep["sets"]) == sets.split(",")
    assert set(rep["fakes"]) == test_classes - {"real"} and set(rep["unseen"]) == set(proto.unseen)
    assert rep["train_classes"] == ["real", *proto.seen]
    for s in rep["sets"].values():
        for g in rep["fakes"] + ["all"]:
            v, (lo, hi) = s[f"auc/{g}"]["value"], s[f"auc/{g}"]["ci"]
            assert 0 <= lo <= hi <= 1 and 0 <= v <= 1
        assert {f"acc/{c}" for c in rep["train_classes"]} <= set(s) and 0 <= s["acc/seen"]["value"] <= 1
        assert s["c_detect"] in rep["c_grid"] and s["c_attrib"] in rep["c_grid"]
    # one paired gain: clip+gaze over clip (gaze+head's prefix, gaze, is probed too)
    assert [(g["set"], g["base"]) for g in rep["gains"]] == [("clip+gaze", "clip"), ("gaze+head", "gaze")]
    g = rep["gains"][0]["auc/all"]
    a, b = rep["sets"]["clip+gaze"]["auc/all"]["value"], rep["sets"]["clip"]["auc/all"]["value"]
    assert g["value"] == pytest.approx(a - b) and g["ci"][0] <= g["value"] <= g["ci"][1]
    n = sum(rep["n_eval"].values())
    assert n + sum(v for k, v in rep["no_gaze"].items() if k.startswith("test/")) == \
        sum(1 for r in read_manifest(smoke) if r.split == "test")
    md = (out / "probe.md").read_text()
    auc_table = md.split("## Detection AUC against real")[1].split("##")[0]
    rows = [line for line in auc_table.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    assert len(rows) == 1 + len(rep["fakes"]) + 1  # header, one row per fake class, all fakes
    assert (out / "probe.png").stat().st_size > 10_000


@pytest.mark.real
def test_planted_gaze_signal_is_found(smoke, caches):
    """Shift the gaze yaw of one seen generator's faces (train and test) by 45 degrees: the gaze-only
    probes then attribute that class and separate it from real (the detector, trained on real vs all
    seven generators, less cleanly than the attributor), while CLIP, which never sees the planted
    numbers, does not change."""
    from gazeclip.evaluation.gaze_probe import collect_items, probe_report

    cache = dict(zip(["face_cache_dir", "feature_cache_dir"], caches[1::2]))
    items, train_classes, unseen = collect_items(smoke, "P2", backbone="tiny-random", **cache)  # cached by test 1
    target = "faceswap-poisson"
    sets = ["gaze", "clip"]
    before = probe_report(items, train_classes, unseen, sets, n_boot=50)
    m = np.array(items.classes) == target
    items.gaze_pitchyaw = items.gaze_pitchyaw.copy()
    items.gaze_pitchyaw[m, 1] += np.radians(45)
    after = probe_report(items, train_classes, unseen, sets, n_boot=50)
    auc, acc = (after["sets"]["gaze"][f"{k}/{target}"] for k in ("auc", "acc"))
    assert auc["value"] >= 0.9 and auc["ci"][0] > 0.7
    assert auc["value"] > before["sets"]["gaze"][f"auc/{target}"]["value"] + 0.2
    assert acc["value"] >= 0.8 and acc["value"] > before["sets"]["gaze"][f"acc/{target}"]["value"] + 0.5
    assert after["sets"]["clip"][f"auc/{target}"] == before["sets"]["clip"][f"auc/{target}"]


def test_feature_set_names_are_checked():
    from gazeclip.evaluation.gaze_probe import gain_pairs, parse_sets

    assert parse_sets(["clip+gaze", "gaze"]) == [("clip", "gaze"), ("gaze",)]
    with pytest.raises(ValueError, match="blocks are gaze, features, clip"):
        parse_sets(["clip+gase"])
    assert gain_pairs(["clip", "clip+gaze", "clip+gaze+flip", "gaze+flip"]) == [
        ("clip+gaze", "clip"), ("clip+gaze+flip", "clip+gaze")]


class _DotEstimator:
    """Stands in for the gaze network: 'pitch' = row, 'yaw' = column of the brightest pixel."""

    def preprocess(self, crops):
        return crops

    def forward_crops(self, x):
        flat = x[..., 0].reshape(len(x), -1).argmax(1)
        rc = np.stack(np.unravel_index(flat, x.shape[1:3]), 1).astype(np.float32)
        return rc, np.zeros((len(x), 1), np.float32)


def test_cue_views_move_the_face_as_named():
    from gazeclip.evaluation.gaze_probe import CUE_VARIANTS, _cue_variants

    faces = np.zeros((2, 224, 224, 3), np.uint8)
    faces[0, 100, 60] = 255
    faces[1, 150, 170] = 255
    v = _cue_variants(_DotEstimator(), faces, 8)
    assert v.shape == (2, len(CUE_VARIANTS), 2)
    got = {name: v[0, j] for j, name in enumerate(CUE_VARIANTS)}
    assert list(got["flip"]) == [100, -(223 - 60)]   # mirrored column, negated back as a yaw is
    assert list(got["left"]) == [100, 52] and list(got["right"]) == [100, 68]
    assert list(got["up"]) == [92, 60] and list(got["down"]) == [108, 60]
    r, c = got["zoom"]  # the central 208 px blown up to 224: away from the centre
    assert abs(r - (100 - 8) * 224 / 208) <= 1.5 and abs(c - (60 - 8) * 224 / 208) <= 1.5


@pytest.mark.real
def test_cues_on_real_photos_are_small(real_weights):
    """On the pulled real portraits the ETH-XGaze network agrees with itself under the mirror and
    the small shifts to within a few degrees (the cues measure departures from that)."""
    from gazeclip.evaluation.gaze_probe import ProbeItems, _cue_variants, feature_blocks
    from gazeclip.faces import FaceAnalyzer, load_image
    from gazeclip.gaze import analyze_image, create_estimator
    from gazeclip.weights import asset_path

    fa, est = FaceAnalyzer(), create_estimator()
    fgs = [analyze_image(load_image(asset_path(n)), fa, est).faces[0]
           for n in ("photo-astronaut", "photo-grace-hopper", "photo-obama-fr", "photo-biden-fr")]
    fa.close()
    py = np.array([[f.gaze.pitch, f.gaze.yaw] for f in fgs], np.float32)
    var = _cue_variants(est, np.stack([f.face.norm_face for f in fgs]), 8)
    n = len(fgs)
    it = ProbeItems([""] * n, ["real"] * n, ["test"] * n, py, np.stack([f.gaze.vector for f in fgs]),
                    np.array([[f.face.head.pitch, f.face.head.yaw, f.face.head.roll] for f in fgs]),
                    np.zeros((n, 1)), np.ones((n, 2)), var)
    b = feature_blocks(it)
    assert b["flip"].shape == (n, 3) and b["shift"].shape == (n, 3) and b["head"].shape == (n, 1)
    assert np.degrees(np.median(b["flip"][:, 2])) < 8 and np.degrees(np.median(b["shift"][:, 2])) < 8
