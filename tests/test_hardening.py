"""Hardening: no code runs from a run folder, bounded memory on any image, damaged files refused by
name, caches that notice changes, resume from any kill, predict records by position.

Each test reproduces one way gazeclip could be attacked or hurt by an unlucky file; all of them
failed before these fixes. Tiny models (`tiny-random`) and whole-image runs (`faces: none`) keep
them fast and free of the pulled weights, except where marked `real`.
"""
from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import gazeclip
from gazeclip.cli import main
from gazeclip.run.config import TrainConfig

SRC = Path(gazeclip.__file__).resolve().parent  # the package under test (main or this branch)


def strict_json(line: str):
    """json.loads that refuses NaN/Infinity, as strict JSON parsers do."""
    def bad(c):
        raise AssertionError(f"not JSON: {c} in {line[:200]}")
    return json.loads(line, parse_constant=bad)


def png_bytes(arr: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def png_header_only(w: int, h: int, depth: int = 16, colour: int = 2) -> bytes:
    """A tiny PNG file whose header declares w x h pixels (its pixel data is a few zero rows)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + \
        chunk(b"IEND", b"")


TAXONOMY = dict(classes=("real", "gan-a", "diff-a"), class_family={"real": "real", "gan-a": "gan", "diff-a": "diffusion"},
                class_forgery_type={"real": "real", "gan-a": "entire-synthesis", "diff-a": "entire-synthesis"},
                families=("real", "diffusion", "gan"))


def make_run(run: Path, nan_weights: bool = False):
    """A run folder with an untrained tiny whole-image model (what `train` leaves, minus training)."""
    from gazeclip.train.trainer import taxonomy_to_dict
    from gazeclip.run.utils import atomic_write_json
    from gazeclip.models import create_model
    from gazeclip.models.interface import Taxonomy

    tx = Taxonomy(**TAXONOMY)
    model = create_model("gazeclip", backbone="tiny-random", taxonomy=tx)
    if nan_weights:
        with torch.no_grad():
            for p in model.trainable_parameters().values():
                p.fill_(float("nan"))
    model.save_pretrained(run / "model")
    (run / "config.yaml").write_text(yaml.safe_dump(TrainConfig(model="gazeclip", backbone="tiny-random",
                                                                faces="none").to_dict()))
    atomic_write_json(run / "taxonomy.json", taxonomy_to_dict(tx))
    atomic_write_json(run / "calibration.json", {"version": 2, "unknown_threshold": 0.5, "quantile": 0.05,
                                                 "detection_threshold": 0.5})
    return tx


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("hard") / "run"
    make_run(run)
    return run


@pytest.fixture()
def images(tmp_path) -> list[Path]:
    from PIL import Image

    out = []
    for i, colour in enumerate(((200, 30, 30), (20, 180, 60))):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (40, 30), colour).save(p)
        out.append(p)
    return out


def predict_json(capsys, args) -> tuple[int, list[dict], str]:
    rc = main(["predict", *map(str, args), "--json", "--quiet"])
    cap = capsys.readouterr()
    return rc, [strict_json(line) for line in cap.out.splitlines() if line.strip()], cap.err


# ---------------------------------------------------------------- 1. checkpoints run no code
class _Boom:
    """Unpickling this runs os.mkdir(marker): what a crafted checkpoint.pt can do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture(scope="module")
def syn(tmp_path_factory) -> Path:
    from gazeclip.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("syn"), n_train=8, n_val=4, n_test=2)


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(model="clip-linear-probe", backbone="tiny-random", protocol="P2", epochs=1, batch_size=8, lr=3e-3,
                faces="none", progress=False, patience=0, warmup_epochs=0.0)
    base.update(kw)
    return TrainConfig(**base)


def test_pickled_checkpoint_runs_no_code(syn, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    resolved = {**tiny_cfg().to_dict(), "data": str(syn), "world_size": 1}
    (run / "config.yaml").write_text(yaml.safe_dump(resolved))
    marker = tmp_path / "pwned"
    torch.save({"model": {}, "optimizer": {}, "scheduler": {}, "state": {}, "rng": {"x": _Boom(str(marker))}},
               run / "checkpoint.pt")
    try:
        rc = main(["train", "--out", str(run), "--resume", "--quiet"])
    except BaseException:  # noqa: BLE001 - whatever happened afterwards, the question is the marker
        rc = None
    assert not marker.exists(), "loading the checkpoint ran code from it"
    err = capsys.readouterr().err
    assert rc == 1 and "checkpoint.pt" in err and "pickled" in err and "Traceback" not in err


def test_no_weights_only_false_in_src():
    offenders = [str(p) for p in SRC.rglob("*.py") if "weights_only=False" in p.read_text()]
    assert offenders == []


# ---------------------------------------------------------------- 2. one image decoder, one limit
def test_huge_16bit_png_refused_from_header(tmp_path, monkeypatch):
    import cv2

    from gazeclip.faces.io import ImageReadError, load_image

    calls = []
    real_imdecode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: calls.append(1) or real_imdecode(*a, **k))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(30000, 30000))  # 5.4 GB of 16-bit RGB, declared in 4 KB
    with pytest.raises(ImageReadError, match=r"bomb\.png.*900000000 pixels.*GAZECLIP_MAX_IMAGE_PIXELS"):
        load_image(bomb)
    assert calls == [], "OpenCV was asked to decode a 900-megapixel image"


def test_between_one_and_two_times_pillow_limit_refused(tmp_path):
    from PIL import Image

    from gazeclip.faces.io import ImageReadError, load_image

    p = tmp_path / "big.png"  # 100 megapixels (Pillow only warns below 2 x 89.5 M), 1-bit: 30 KB on disk
    Image.new("1", (10000, 10000)).save(p)
    with pytest.raises(ImageReadError, match="big.png"):
        load_image(p)


def test_limit_is_configurable(tmp_path, monkeypatch):
    from gazeclip.faces.io import ImageReadError, load_image, set_max_image_pixels

    p = tmp_path / "a.png"
    p.write_bytes(png_bytes(np.full((40, 50, 3), 7, np.uint16) * 1000))  # 16-bit: the OpenCV path
    monkeypatch.setenv("GAZECLIP_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageReadError, match="a.png"):
        load_image(p)
    monkeypatch.setenv("GAZECLIP_MAX_IMAGE_PIXELS", "2000")
    assert load_image(p).shape == (40, 50, 3)
    set_max_image_pixels(10)
    try:
        with pytest.raises(ImageReadError):
            load_image(p)
    finally:
        set_max_image_pixels(None)


def test_16bit_converted_exactly_without_widening_copies(tmp_path):
    import tracemalloc

    from gazeclip.faces.io import decode_image

    rng = np.random.default_rng(0)
    h, w = 400, 500
    rgba = rng.integers(0, 65536, (h, w, 4), dtype=np.uint16)  # BGRA for OpenCV
    data = png_bytes(rgba)
    decode_image(png_bytes(rgba[:2, :2]), "warm-up.png")  # Pillow imports its plugins on first use
    tracemalloc.start()
    out = decode_image(data, "x.png")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    hi = (rgba >> 8).astype(np.int64)
    a = hi[:, :, 3:4]
    want = (hi[:, :, 2::-1] * a + 255 * (255 - a) + 127) // 255  # composited on white
    assert np.array_equal(out, want.astype(np.uint8))
    # the 16-bit decode itself is h*w*8 bytes; int64/float copies of it would be 4-8x that
    assert peak < 2 * h * w * 8, f"peak {peak / 1e6:.1f} MB for a {h * w * 8 / 1e6:.1f} MB 16-bit image"
    rgb = rng.integers(0, 65536, (h, w, 3), dtype=np.uint16)
    assert np.array_equal(decode_image(png_bytes(rgb), "y.png"), (rgb[:, :, ::-1] >> 8).astype(np.uint8))


def test_every_image_read_in_src_goes_through_the_decoder():
    allowed = {SRC / "faces" / "io.py"}
    hits = [f"{p.relative_to(SRC)}: {needle}" for p in SRC.rglob("*.py") if p not in allowed
            for needle in ("Image.open(", "cv2.imread(", "cv2.imdecode(", "imdecode(") if needle in p.read_text()]
    assert hits == []


# ---------------------------------------------------------------- 3. weights verified, JSON finite
def test_changed_weight_file_refused_before_use(tmp_path, monkeypatch):
    from gazeclip.weights import WeightsError, asset_path, source_dir
    from gazeclip.weights import store

    monkeypatch.setenv("GAZECLIP_HOME", str(tmp_path))
    monkeypatch.setattr(store, "_verified", {})
    source, entry = store.find("photo-astronaut")
    f = tmp_path / source.name / entry.dest
    f.parent.mkdir(parents=True)
    f.write_bytes(b"\x89PNG one flipped byte is enough")
    with pytest.raises(WeightsError, match=r"astronaut.*weights pull --force"):
        asset_path("photo-astronaut")
    d = tmp_path / "minilm-l6"
    for af in next(s for s in store.SOURCES if s.name == "minilm-l6").files:
        (d / af.dest).parent.mkdir(parents=True, exist_ok=True)
        (d / af.dest).write_bytes(b"{}")
    with pytest.raises(WeightsError, match="weights pull --force"):
        source_dir("minilm-l6")


@pytest.mark.real
def test_verified_stamp_written_and_used(real_weights, tmp_path, monkeypatch):
    import shutil

    from gazeclip.weights import asset_path
    from gazeclip.weights import store

    source, entry = store.find("photo-astronaut")
    home = tmp_path / "home"
    (home / source.name).mkdir(parents=True)
    shutil.copy(real_weights / source.name / entry.dest, home / source.name / entry.dest)
    monkeypatch.setenv("GAZECLIP_HOME", str(home))
    monkeypatch.setattr(store, "_verified", {})
    assert asset_path("photo-astronaut").is_file()
    stamps = json.loads((home / "verified.json").read_text())
    assert stamps[f"{source.name}/{entry.dest}"]["sha256"] == entry.sha256
    monkeypatch.setattr(store, "_verified", {})  # a new process: the stamp spares the hash
    monkeypatch.setattr(store, "sha256_of", lambda p: pytest.fail("re-hashed a file whose stamp matches"))
    asset_path("photo-astronaut")


def test_gaze_json_has_no_nan(tmp_path, monkeypatch, capsys):
    import gazeclip.faces as faces_mod
    from gazeclip.gaze import estimators, pipeline
    from gazeclip.records import Face, FaceGaze, Gaze, ImageFaces

    nan = float("nan")
    face = Face((0, 0, 10, 10), 0.9, np.zeros((5, 2)), "external", None, np.zeros((4, 4, 3), np.uint8),
                np.zeros((5, 2)), None, None)
    imf = ImageFaces("x.png", [FaceGaze(face, Gaze(nan, float("inf"), np.array([nan, 0, 1.0]), np.zeros(2), "e"))],
                     (10, 10))

    class Dummy:
        def __init__(self, *a, **k):
            pass

        def close(self):
            pass

    monkeypatch.setattr(faces_mod, "FaceAnalyzer", Dummy)
    monkeypatch.setattr(estimators, "create_estimator", lambda *a, **k: Dummy())
    monkeypatch.setattr(pipeline, "iter_analyze", lambda *a, **k: iter([imf]))
    assert main(["gaze", str(tmp_path / "x.png"), "--json"]) == 0
    rec = strict_json(capsys.readouterr().out.strip())
    assert rec["faces"][0]["gaze"]["pitch"] is None and rec["faces"][0]["gaze"]["vector"][0] is None


def test_predict_json_with_nan_model_reports_failed_faces(tmp_path, images, capsys):
    run = tmp_path / "run"
    make_run(run, nan_weights=True)
    rc, recs, _ = predict_json(capsys, [*images, "--run", run])
    assert rc == 1 and len(recs) == 2
    assert all(set(r) == {"path", "face", "error"} and "not a number" in r["error"] for r in recs)


def test_metrics_json_has_no_nan(tmp_path):
    from gazeclip.run.utils import atomic_write_json

    atomic_write_json(tmp_path / "m.json", {"auc": float("nan"), "x": [np.float32("inf"), 1.5]})
    assert strict_json((tmp_path / "m.json").read_text()) == {"auc": None, "x": [None, 1.5]}


# ---------------------------------------------------------------- 4. run folders validated on load
def _copy_run(run_dir: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    return dst


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_weights_named(run_dir, tmp_path, images, capsys, damage):
    run = _copy_run(run_dir, tmp_path)
    w = run / "model" / "model.safetensors"
    b = bytearray(w.read_bytes())
    if damage == "flip":
        b[-5] ^= 0x01  # one bit of one weight
    else:
        b = b[: len(b) // 2]
    w.write_bytes(bytes(b))
    rc, recs, err = predict_json(capsys, [images[0], "--run", run])
    assert rc == 1 and recs == []
    assert "model.safetensors" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name,content", [
    ("taxonomy.json", '{"classes": ["real", "gan-a"'),
    ("calibration.json", '{"unknown_threshold": "high"}'),
    ("calibration.json", '{"version": 2, "unknown_threshold": 0.5, "detection_threshold": 7}'),
    ("calibration.json", "\x00\x01garbage"),
    ("config.yaml", "model: [unclosed"),
    ("config.yaml", "epochs: many\n"),
    ("model/config.json", "{not json"),
])
def test_damaged_run_file_named(run_dir, tmp_path, images, capsys, name, content):
    run = _copy_run(run_dir, tmp_path)
    (run / name).write_text(content)
    rc, recs, err = predict_json(capsys, [images[0], "--run", run])
    assert rc == 1 and recs == []
    assert name.split("/")[-1] in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_reordered_taxonomy_refused(run_dir, tmp_path, images, capsys):
    run = _copy_run(run_dir, tmp_path)
    tx = json.loads((run / "taxonomy.json").read_text())
    tx["classes"] = [tx["classes"][0], *reversed(tx["classes"][1:])]  # would silently rename generators
    (run / "taxonomy.json").write_text(json.dumps(tx))
    rc, recs, err = predict_json(capsys, [images[0], "--run", run])
    assert rc == 1 and recs == [] and "taxonomy.json" in err
    # the same edit inside model/config.json: refused too, its weights recorded the original
    run2 = _copy_run(run_dir, tmp_path / "b")
    cfg = json.loads((run2 / "model" / "config.json").read_text())
    cfg["taxonomy"]["classes"] = tx["classes"]
    (run2 / "model" / "config.json").write_text(json.dumps(cfg))
    rc, recs, err = predict_json(capsys, [images[0], "--run", run2])
    assert rc == 1 and recs == [] and "config.json" in err


def test_cli_top_level_turns_file_errors_into_one_line(monkeypatch, capsys):
    import sys
    import types

    from gazeclip import cli
    from gazeclip.errors import DamagedFileError

    mod = types.ModuleType("gazeclip_fake_cmd")
    mod.add_arguments = lambda p: None

    def run(args):
        raise DamagedFileError("/x/y.json", "damaged JSON")
    mod.run = run
    monkeypatch.setitem(sys.modules, "gazeclip_fake_cmd", mod)
    monkeypatch.setitem(cli.COMMANDS, "fake", ("gazeclip_fake_cmd", "test"))
    assert cli.main(["fake"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == ["gazeclip fake: /x/y.json: damaged JSON; restore it "
                                                            "from a good copy or write it again with the command "
                                                            "that made it"]


# ---------------------------------------------------------------- 5. manifests and protocols
def _manifest(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    from gazeclip.data.manifest import ManifestRow, write_manifest

    write_manifest([ManifestRow(p, c, "real" if c == "real" else "gan", "x", s, "t", "", "")
                    for p, c, s in rows], tmp_path / "manifest.csv")
    return tmp_path


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "real/../../x.png"])
def test_manifest_paths_must_stay_inside(tmp_path, bad):
    from gazeclip.data.manifest import read_manifest

    _manifest(tmp_path, [("real/a.png", "real", "train"), (bad, "real", "train")])
    with pytest.raises(ValueError, match=r"manifest\.csv:3"):
        read_manifest(tmp_path)


def test_manifest_split_spelling_and_duplicates(tmp_path):
    from gazeclip.data.manifest import read_manifest

    _manifest(tmp_path, [("real/a.png", "real", "train"), ("real/b.png", "real", "Train ")])
    with pytest.raises(ValueError, match="'Train '"):
        read_manifest(tmp_path)
    _manifest(tmp_path, [("real/a.png", "real", "train"), ("real/a.png", "real", "test")])
    with pytest.raises(ValueError, match="listed again"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("proto,why", [
    ({"seen": ["real", "gan-a"], "unseen": []}, "real"),
    ({"seen": ["gan-a", "gan-a"], "unseen": []}, "twice"),
    ({"seen": ["gan-a"], "unseen": ["gan-a"]}, "both seen and unseen"),
    ({"seen": "gan-a", "unseen": []}, "lists"),
])
def test_protocols_validated_on_load(tmp_path, proto, why):
    from gazeclip.data.manifest import load_protocol

    (tmp_path / "protocols.yaml").write_text(yaml.safe_dump({"P": proto}))
    with pytest.raises(ValueError, match=why):
        load_protocol(tmp_path, "P")


def test_owdfa_csv_outside_paths_refused(tmp_path):
    from gazeclip.bench.importers import import_dataset

    root = tmp_path / "root"
    (root / "imgs").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(png_bytes(np.zeros((4, 4, 3), np.uint8)))
    (root / "imgs" / "a.png").write_bytes(png_bytes(np.zeros((4, 4, 3), np.uint8)))
    for bad in ("../secret.png", str(tmp_path / "secret.png")):
        (root / "test.csv").write_text(f"imgs/a.png,0\n{bad},1\n")
        with pytest.raises(ValueError, match=r"test\.csv:2"):
            import_dataset("owdfa-csv", root, csvs=[root / "test.csv"])


def test_import_with_out_elsewhere_keeps_paths_inside(tmp_path):
    from gazeclip.bench.importers import import_dataset
    from gazeclip.data.manifest import read_manifest

    root = tmp_path / "faces"
    for c in ("real", "gan-x"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            (root / c / f"{i}.png").write_bytes(png_bytes(np.full((4, 4, 3), i, np.uint8)))
    out = tmp_path / "data"
    import_dataset("folder", root, out=out)
    rows = read_manifest(out)
    assert len(rows) == 6 and all(".." not in r.path for r in rows)
    assert all((out / r.path).is_file() for r in rows)


# ---------------------------------------------------------------- 6. caches
def test_samples_cache_notices_an_edited_image_and_rebuilds_a_damaged_one(syn, tmp_path):
    import shutil

    from gazeclip.data.dataset import manifest_samples
    from gazeclip.data.manifest import read_manifest

    data = tmp_path / "d"
    shutil.copytree(syn, data, ignore=shutil.ignore_patterns(".cache"))
    rows = [r for r in read_manifest(data) if r.split == "val"]
    kw = dict(mode="none", estimator="ethxgaze-r18", size=32, gaze_dim=None)
    a = manifest_samples(rows, data, **kw)
    img = data / rows[0].path
    st = img.stat()
    img.write_bytes(png_bytes(np.zeros((32, 32, 3), np.uint8)))  # edited in place, manifest unchanged
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    b = manifest_samples(rows, data, **kw)
    assert not np.array_equal(a.crops[0], b.crops[0]) and (b.crops[0] == 0).all()
    assert np.array_equal(a.crops[1:], b.crops[1:])
    for f in (data / ".cache" / "samples").glob("*.npz"):
        f.write_bytes(f.read_bytes()[:200])  # truncated
    c = manifest_samples(rows, data, **kw)
    assert np.array_equal(b.crops, c.crops)


def test_feature_cache_rewrites_damaged_entries(tmp_path):
    from gazeclip.data.dataset import crop_key
    from gazeclip.data.feature_cache import FeatureCache

    crops = np.random.default_rng(0).integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
    keys = [crop_key(c) for c in crops]
    cache = FeatureCache(tmp_path, "p")

    def encode(x):
        return x.flatten(1)[:, :6].reshape(len(x), 2, 3) * 2

    pix = lambda idx: torch.from_numpy(crops[idx].astype(np.float32) / 255)  # noqa: E731
    assert cache.fill(keys, pix, encode) == 4
    files = sorted(p for p in (tmp_path / "p").rglob("*") if p.is_file())
    assert len(files) == 4
    b = bytearray(files[0].read_bytes())
    b[len(b) // 2] ^= 0xFF  # a flipped byte
    files[0].write_bytes(bytes(b))
    files[1].write_bytes(files[1].read_bytes()[:40])  # truncated
    cache = FeatureCache(tmp_path, "p")
    assert cache.fill(keys, pix, encode) == 2  # both damaged entries encoded and written again
    for i, k in enumerate(keys):
        torch.testing.assert_close(cache.get(k), encode(pix([i]))[0], atol=1e-2, rtol=1e-3)


def test_gaze_cache_rewrites_damaged_entries(tmp_path):
    from gazeclip.gaze.cache import GazeCache
    from gazeclip.records import ImageFaces

    cache = GazeCache(tmp_path, {"x": 1})
    cache.put("ab" * 32, ImageFaces("a.png", [], (4, 4)))
    p = cache.path_for("ab" * 32)
    p.write_bytes(p.read_bytes()[:30])
    assert cache.get("ab" * 32, "a.png") is None
    cache.put("ab" * 32, ImageFaces("a.png", [], (4, 4)))
    assert cache.get("ab" * 32, "a.png").size == (4, 4)


# ---------------------------------------------------------------- 7. resume from any kill
def test_resume_without_checkpoint_starts_over_and_cleans_temp_files(syn, tmp_path):
    from gazeclip.train.trainer import Interrupted, train

    run = tmp_path / "run"
    with pytest.raises(Interrupted):  # killed at step 1: before the first checkpoint (end of epoch 1)
        train(tiny_cfg(interrupt_after_steps=1), syn, run)
    assert not (run / "checkpoint.pt").exists() and (run / "config.yaml").is_file()
    (run / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"\0" * 1000)  # what a kill during a save leaves
    (run / ".model.abc123").mkdir()
    (run / ".model.abc123" / "model.safetensors").write_bytes(b"half")
    res = train(tiny_cfg(), syn, run, resume=True)
    assert res.best_epoch == 1 and (run / "summary.json").is_file()
    assert not list(run.glob(".*")), "stale temp files left in the run folder"


def test_kill_at_any_rename_of_the_model_save_leaves_a_loadable_model(tiny_backbone, tmp_path, monkeypatch):
    from gazeclip.train import trainer
    from gazeclip.models import create_model, from_pretrained
    from gazeclip.models.interface import Taxonomy

    save = getattr(trainer, "save_model", None) or getattr(trainer, "_save_model_atomic")
    tx = Taxonomy(**TAXONOMY)
    old = create_model("gazeclip", backbone=tiny_backbone, taxonomy=tx)
    new = create_model("gazeclip", backbone=tiny_backbone, taxonomy=tx)
    with torch.no_grad():
        for p in new.trainable_parameters().values():
            p.add_(1.0)
    want = [{k: v.clone() for k, v in m.trainable_state_dict().items()} for m in (old, new)]

    class Killed(BaseException):
        pass

    real = {"replace": os.replace, "rename": os.rename}

    def counting(limit):
        n = {"calls": 0}

        def wrap(name):
            def f(*a, **k):
                n["calls"] += 1
                if n["calls"] == limit:
                    raise Killed
                return real[name](*a, **k)
            return f
        monkeypatch.setattr(os, "replace", wrap("replace"))
        monkeypatch.setattr(os, "rename", wrap("rename"))
        return n

    n = counting(10 ** 9)  # count the renames of a save over an existing model
    save(old, tmp_path / "probe" / "model")
    first = n["calls"]
    save(new, tmp_path / "probe" / "model")
    total = n["calls"] - first
    monkeypatch.setattr(os, "replace", real["replace"])
    monkeypatch.setattr(os, "rename", real["rename"])
    assert total >= 2
    for k in range(1, total + 1):
        dest = tmp_path / f"k{k}" / "model"
        save(old, dest)
        counting(k)
        with pytest.raises(Killed):
            save(new, dest)
        monkeypatch.setattr(os, "replace", real["replace"])
        monkeypatch.setattr(os, "rename", real["rename"])
        m = from_pretrained(dest, backbone=tiny_backbone)
        got = m.trainable_state_dict()
        assert any(all(torch.equal(got[key], w[key]) for key in w) for w in want), f"kill at rename {k}"


# ---------------------------------------------------------------- 8. predict
def test_predict_records_by_position(run_dir, images, capsys):
    a, b = images
    rc, recs, _ = predict_json(capsys, [a, a, b, a, "--run", run_dir])
    assert rc == 0
    assert [(Path(r["path"]).name, r["face"]) for r in recs] == [("img0.png", 0), ("img0.png", 0),
                                                                  ("img1.png", 0), ("img0.png", 0)]
    # each record is its own file's (batch composition moves the last printed digit at most)
    solo = {p: predict_json(capsys, [p, "--run", run_dir])[1][0]["p_fake"] for p in (a, b)}
    assert [r["p_fake"] for r in recs] == pytest.approx([solo[a], solo[a], solo[b], solo[a]], abs=1e-5)


def test_predict_reports_broken_links_and_refuses_empty_input(run_dir, images, tmp_path, capsys):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "ok.png").write_bytes(images[0].read_bytes())
    (folder / "gone.png").symlink_to(tmp_path / "deleted.png")
    rc, recs, err = predict_json(capsys, [folder, "--run", run_dir])
    assert rc == 1 and [Path(r["path"]).name for r in recs] == ["gone.png", "ok.png"]
    assert "broken symbolic link" in recs[0]["error"]
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, recs, err = predict_json(capsys, [empty, "--run", run_dir])
    assert rc != 0 and recs == [] and "no image files" in err
