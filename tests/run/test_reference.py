"""The reference model packaged with gazeclip (gazeclip.run.reference, `gazeclip reference pack`):
a tiny trained run packed into a temporary reference folder (`$GAZECLIP_REFERENCE_DIR`), never
into the package. Its files are pinned by sha256 and a changed byte is refused by name;
`gazeclip.load()`, `gazeclip predict PHOTO` and `gazeclip serve` without --run use it and give the
records of the fp32 run within the float16 tolerance measured here; with no reference packaged
they fail with one line naming the fix."""
from __future__ import annotations

import fnmatch
import json
import shutil
import tomllib
from pathlib import Path

import pytest

import gazeclip
from gazeclip.cli import main
from gazeclip.data.synthetic import make_synthetic_dataset
from gazeclip.errors import DamagedFileError
from gazeclip.run.reference import ENV, FILES, PIN_FILE, NoReferenceError, read_pin

ROOT = Path(__file__).resolve().parents[2]
# |p_fake(packed) - p_fake(run)| allowed per face. Measured on the 20 test images of this tiny run:
# at most 1.0e-4 in predict's default precision (bf16 on this AVX512-BF16 CPU), 1.9e-5 in fp32
# (the pack's own parity check); the float16 weights change p_fake by far less than this bound.
TOL = 1e-3


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    data = make_synthetic_dataset(tmp / "data", n_train=6, n_val=3, n_test=4)
    run = tmp / "run"
    assert main(["train", "--config", "tiny", "--data", str(data), "--out", str(run), "--epochs", "2",
                 "--seed", "1", "--quiet"]) == 0
    root = tmp / "ref"
    assert main(["reference", "pack", "--run", str(run), "--name", "tiny-ref", "--root", str(root)]) == 0
    return data, run, root


def _test_images(data: Path) -> list[str]:
    return sorted(str(p) for p in data.glob("*/test-*.png"))


def _records(capsys, args: list[str]) -> list[dict]:
    capsys.readouterr()
    assert main(["predict", *args, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_pack_writes_pinned_float16_files(packed, capsys):
    import torch
    from safetensors import safe_open

    from gazeclip.common import sha256_of

    _, run, root = packed
    pin = read_pin(root)
    assert pin.name == "tiny-ref" and sorted(pin.files) == sorted(FILES) and pin.dtype == "float16"
    folder = root / "tiny-ref"
    for rel, f in pin.files.items():
        assert sha256_of(folder / rel) == f["sha256"] and (folder / rel).stat().st_size == f["size"]
    with safe_open(str(folder / "model" / "model.safetensors"), "pt") as fh:
        assert {fh.get_tensor(k).dtype for k in fh.keys()} == {torch.float16}
    packed_size = (folder / "model" / "model.safetensors").stat().st_size
    assert packed_size < 0.55 * (run / "model" / "model.safetensors").stat().st_size  # half, plus the header
    import yaml

    assert "data" in yaml.safe_load((run / "config.yaml").read_text())
    assert "data" not in yaml.safe_load((folder / "config.yaml").read_text())  # no local path is shipped
    assert pin.parity["n_faces"] >= 8 and pin.parity["max_abs_diff"] <= 0.01
    assert pin.parity["verdicts_equal"] == pin.parity["n_faces"]
    assert main(["reference", "show", "--root", str(root)]) == 0
    assert "every file matches its pinned sha256" in capsys.readouterr().out


def test_package_data_carries_every_reference_file():
    """pyproject.toml's package-data patterns match each file a packed reference has."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = cfg["tool"]["setuptools"]["package-data"]["gazeclip"]
    for rel in (PIN_FILE, *(f"some-name/{f}" for f in FILES)):
        assert any(fnmatch.fnmatch(f"reference/{rel}", p) for p in patterns), rel


@pytest.mark.parametrize("rel", FILES)
def test_a_changed_byte_is_refused_by_name(packed, tmp_path, monkeypatch, capsys, rel):
    _, _, root = packed
    copy = tmp_path / "ref"
    shutil.copytree(root, copy)
    path = copy / "tiny-ref" / rel
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    monkeypatch.setenv(ENV, str(copy))
    with pytest.raises(DamagedFileError, match="does not match the pinned") as e:
        gazeclip.load()
    assert str(path) in str(e.value) and "\n" not in str(e.value) and "reinstall gazeclip" in str(e.value)
    assert main(["predict", str(path), "--json"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err


def test_without_a_packaged_reference_one_line_names_the_fix(tmp_path, monkeypatch, capsys):
    from PIL import Image

    monkeypatch.setenv(ENV, str(tmp_path / "empty"))
    with pytest.raises(NoReferenceError, match="gazeclip reference pack --run RUN --name NAME"):
        gazeclip.load()
    Image.new("RGB", (40, 30), (120, 30, 200)).save(tmp_path / "a.png")
    for cmd in (["predict", str(tmp_path / "a.png")], ["serve"]):
        assert main(cmd) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "no reference model is packaged" in err and "--run RUN" in err


def test_load_without_argument_uses_the_packaged_reference(packed, monkeypatch):
    data, _, root = packed
    monkeypatch.setenv(ENV, str(root))
    det = gazeclip.load()
    assert det.run.run_dir == root / "tiny-ref" and det.run.name == "tiny-ref"
    (res,) = det.predict(_test_images(data)[0])
    assert len(res.faces) == 1 and 0.0 <= res.faces[0].p_fake <= 1.0
    with pytest.raises(ValueError, match="torch runtime"):
        gazeclip.load(runtime="onnx")


def test_predict_without_run_gives_the_runs_records(packed, monkeypatch, capsys):
    data, run, root = packed
    monkeypatch.setenv(ENV, str(root))
    images = _test_images(data)
    packed_recs = _records(capsys, images)
    run_recs = _records(capsys, [*images, "--run", str(run)])
    thr = json.loads((run / "calibration.json").read_text())["detection_threshold"]
    assert len(packed_recs) == len(run_recs) == len(images) == 20
    worst = 0.0
    for a, b in zip(packed_recs, run_recs):
        assert a.keys() == b.keys() and a["path"] == b["path"]
        diff = abs(a["p_fake"] - b["p_fake"])
        worst = max(worst, diff)
        assert diff <= TOL
        if abs(b["p_fake"] - thr) > TOL:  # away from the threshold the verdict cannot flip
            assert (a["verdict"], a["generator"], a["family"]) == (b["verdict"], b["generator"], b["family"])
    print(f"max |Δp_fake| packed vs run over {len(images)} images: {worst:.2e}")


def test_serve_without_run_answers(packed, monkeypatch, capsys):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    import uvicorn
    from fastapi.testclient import TestClient

    data, _, root = packed
    monkeypatch.setenv(ENV, str(root))
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    assert main(["serve", "--port", "8765"]) == 0
    assert served["port"] == 8765 and "tiny-ref" in capsys.readouterr().out
    client = TestClient(served["app"])
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["run"] == "tiny-ref"
    img = Path(_test_images(data)[0])
    r = client.post("/v1/predict", files={"files": (img.name, img.read_bytes(), "image/png")})
    assert r.status_code == 200
    (rec,) = r.json()["records"]
    (cli,) = _records(capsys, [str(img)])
    assert rec["p_fake"] == cli["p_fake"] and rec["verdict"] == cli["verdict"]


def test_pack_refusals_leave_the_packaged_reference_as_it_was_and_a_repack_replaces_it(packed, tmp_path, capsys):
    from helpers import make_run

    data, run, root = packed
    copy = tmp_path / "ref"
    shutil.copytree(root, copy)
    before = (copy / PIN_FILE).read_text()
    img = _test_images(data)[0]
    base = ["reference", "pack", "--run", str(run), "--root", str(copy), "--images", img]
    cases = [(["--name", "big", "--max-mb", "0.01"], "over the 0.01 MB"),
             (["--name", "strict", "--tolerance", "0"], "not packaged"),
             (["--name", "../escape"], "reference name"),
             ]
    for extra, msg in cases:
        capsys.readouterr()
        assert main([*base, *extra]) == 1
        assert msg in capsys.readouterr().err
    uncal = tmp_path / "uncalibrated"
    make_run(uncal, faces="none")
    (uncal / "calibration.json").unlink()
    assert main(["reference", "pack", "--run", str(uncal), "--name", "u", "--root", str(copy), "--images", img]) == 1
    assert "gazeclip eval" in capsys.readouterr().err
    assert (copy / PIN_FILE).read_text() == before
    assert sorted(p.name for p in copy.iterdir()) == [PIN_FILE, "tiny-ref"]  # no staging folder left behind
    # a new pack replaces the packaged reference: one is shipped at a time
    assert main([*base, "--name", "tiny-ref-2"]) == 0
    again = read_pin(copy)
    assert again.name == "tiny-ref-2"
    assert again.files == read_pin(root).files  # the same run packs to the same bytes (reproducible pins)
    assert sorted(p.name for p in copy.iterdir()) == [PIN_FILE, "tiny-ref-2"]


def test_model_card_figures_are_written_from_an_evaluation(packed, tmp_path, capsys):
    """`gazeclip reference card` fills the card's figures section from eval + robustness outputs,
    leaves the rest of the card as it was, and gives the same section when run again."""
    from gazeclip.evaluation.card import BEGIN, END

    data, run, _ = packed
    ev, rob = tmp_path / "eval", tmp_path / "rob"
    assert main(["eval", "--run", str(run), "--data", str(data), "--out", str(ev), "--quiet"]) == 0
    assert main(["robustness", "--run", str(run), "--data", str(data), "--out", str(rob), "--perturbations", "jpeg",
                 "--severities", "0,2", "--max-items", "10", "--quiet"]) == 0  # clean and JPEG quality 70
    assert [p["severity"] for p in json.loads((rob / "robustness.json").read_text())[run.name]["curves"]["jpeg"]] == [0, 2]
    text = (ROOT / "docs" / "model-card.md").read_text()
    card = tmp_path / "card.md"
    card.write_text(text)
    cmd = ["reference", "card", "--eval", str(ev), "--eval", f"clip-lora={ev}", "--robustness", str(rob),
           "--card", str(card), "--n-boot", "50"]
    assert main(cmd) == 0
    new = card.read_text()
    assert new.startswith(text.split(BEGIN)[0]) and new.endswith(text.split(END)[1])
    section = new[new.index(BEGIN):new.index(END)]
    m = json.loads((ev / "metrics.json").read_text())
    assert f"n = {m['n_test']} test faces, {m['n_real']} real" in section and "TODO" not in section
    assert f"({round(m['fpr_real_at_threshold'] * m['n_real'])}/{m['n_real']})" in section  # count and n
    g, r = next(iter(m["per_generator"].items()))
    assert f"| {g} |" in section and f"({round(r['called_fake'] * r['n'])}/{r['n']})" in section
    assert "| jpeg | 70 |" in section and "| reference | clip-lora |" in section
    assert main(cmd) == 0 and card.read_text() == new  # the same inputs give the same card
    capsys.readouterr()
    assert main(["reference", "card", "--eval", str(tmp_path / "none"), "--card", str(card)]) == 1
    assert "gazeclip eval" in capsys.readouterr().err


@pytest.mark.real
def test_demo_predicts_with_the_reference_and_trains_only_when_asked_or_without_one(
        real_weights, packed, tmp_path, monkeypatch, capsys):
    from gazeclip import demo

    data, _, root = packed
    trained = []
    monkeypatch.setattr(demo, "_train_and_compare", lambda out, data, *a: trained.append(data))
    monkeypatch.setenv(ENV, str(root))
    assert demo.run_demo(out=tmp_path / "demo", data=data) == 0
    out = capsys.readouterr().out
    assert "packaged reference model 'tiny-ref'" in out and trained == []
    assert "real photos:" in out and "benchmark fakes: " in out and "of 4 face(s) called fake" in out
    assert demo.run_demo(out=tmp_path / "demo", data=data, train=True) == 0 and trained == [data]
    capsys.readouterr()
    monkeypatch.setenv(ENV, str(tmp_path / "none"))
    assert demo.run_demo(out=tmp_path / "demo", data=data) == 0 and trained == [data, data]
    out = capsys.readouterr().out
    assert "no reference model is packaged" in out and "packaged reference model '" not in out


@pytest.mark.real
@pytest.mark.slow
def test_real_gazeclip_fits_the_size_limit_and_predicts_a_photo(real_weights, tmp_path, monkeypatch, capsys):
    """GazeCLIP on the pulled CLIP ViT-B/16 (faces detected, gaze estimated): its trainable weights
    in float16 fit the package's 25 MB, and `predict PHOTO` without --run gives the record of the
    fp32 folder. (An untrained model: the weights are the real model's size, not a trained one's.)"""
    import yaml

    from gazeclip.models import create_model
    from gazeclip.models.interface import Taxonomy
    from gazeclip.run.config import TrainConfig
    from gazeclip.run.utils import atomic_write_json
    from gazeclip.train.trainer import taxonomy_to_dict
    from gazeclip.weights import asset_path

    tx = Taxonomy(("real", "gan-a", "diff-a"), {"real": "real", "gan-a": "gan", "diff-a": "diffusion"},
                  {"real": "real", "gan-a": "entire-synthesis", "diff-a": "entire-synthesis"},
                  ("real", "diffusion", "gan"))
    run = tmp_path / "run"
    create_model("gazeclip", backbone="clip-b16-offline", taxonomy=tx).save_pretrained(run / "model")
    (run / "config.yaml").write_text(yaml.safe_dump(TrainConfig(model="gazeclip", faces="detect").to_dict()))
    atomic_write_json(run / "taxonomy.json", taxonomy_to_dict(tx))
    atomic_write_json(run / "calibration.json", {"version": 3, "unknown_threshold": 0.99, "quantile": 0.05,
                                                 "detection_threshold": 0.5, "abstain": {}})
    photo = str(asset_path("photo-astronaut"))
    root = tmp_path / "ref"
    assert main(["reference", "pack", "--run", str(run), "--name", "b16", "--root", str(root), "--images", photo]) == 0
    print(capsys.readouterr().out)
    pin = read_pin(root)
    assert pin.size <= 25e6 and pin.backbone == "clip-b16-offline" and pin.parity["n_faces"] == 1
    monkeypatch.setenv(ENV, str(root))
    (a,) = _records(capsys, [photo])
    (b,) = _records(capsys, [photo, "--run", str(run)])
    assert a["box"] == b["box"] and a["gaze"] == b["gaze"] and abs(a["p_fake"] - b["p_fake"]) <= TOL
    print(f"packed {pin.size / 1e6:.2f} MB; predict |Δp_fake| {abs(a['p_fake'] - b['p_fake']):.2e}")
