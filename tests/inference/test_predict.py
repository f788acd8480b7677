"""`gazeclip predict` on a folder with a real face, an image without a face and a corrupt file."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gazeclip.run.utils import atomic_write_json
from helpers import calibration, make_run

FACE_KEYS = {"path", "face", "p_fake", "generator", "generator_prob", "family", "unknown_generator", "gaze", "box",
             "head", "verdict", "reason"}


@pytest.mark.real
def test_predict_folder_three_records(real_weights, tmp_path, capsys):
    from gazeclip.cli import main
    from gazeclip.weights import asset_path

    folder = tmp_path / "photos" / "nested"
    folder.mkdir(parents=True)
    shutil.copy(asset_path("photo-astronaut"), folder / "astronaut.png")
    shutil.copy(asset_path("photo-coffee"), folder.parent / "coffee.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("not an image: skipped in folders")
    run = tmp_path / "run"
    tx = make_run(run)
    rc = main(["predict", str(tmp_path / "photos"), "--run", str(run), "--json"])
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert rc == 1  # one unreadable file
    by_name = {Path(r["path"]).name: r for r in out}
    assert set(by_name) == {"astronaut.png", "coffee.png", "broken.jpg"}
    face = by_name["astronaut.png"]
    assert set(face) == FACE_KEYS and face["face"] == 0
    assert 0.0 <= face["p_fake"] <= 1.0
    assert face["verdict"] == ("fake" if face["p_fake"] >= 0.5 else "real")
    if face["verdict"] == "fake":  # a fake verdict names a generator, never "real"
        assert face["generator"] in tx.classes[1:] and face["family"] in tx.families[1:]
        assert 0.0 < face["generator_prob"] <= 1.0
    else:
        assert face["generator"] is None and face["family"] is None and not face["unknown_generator"]
    assert isinstance(face["unknown_generator"], bool)
    assert set(face["gaze"]) == {"pitch", "yaw", "arrows"} and abs(face["gaze"]["yaw"]) < 60
    assert len(face["box"]) == 4 and set(face["head"]) == {"pitch", "yaw", "roll"}
    assert by_name["coffee.png"] == {"path": str(folder.parent / "coffee.png"), "faces": 0}
    bad = by_name["broken.jpg"]
    assert set(bad) == {"path", "error"} and "broken.jpg" in bad["error"]


def test_predict_csv_and_missing_run(tmp_path, capsys):
    from gazeclip.cli import main

    assert main(["predict", str(tmp_path), "--run", str(tmp_path / "nope")]) == 1
    assert "config.yaml" in capsys.readouterr().err
    # whole-image runs (faces: none) predict one "face" per image without detection
    from PIL import Image

    Image.new("RGB", (40, 30), (120, 30, 200)).save(tmp_path / "a.png")
    run = tmp_path / "run"
    make_run(run, faces="none")
    rc = main(["predict", str(tmp_path / "a.png"), "--run", str(run), "--csv", str(tmp_path / "out.csv")])
    assert rc == 0
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0].startswith("path,face,p_fake") and len(lines) == 2


def _predict_json(main, capsys, image: Path, run: Path) -> dict:
    assert main(["predict", str(image), "--run", str(run), "--json"]) == 0
    return json.loads(capsys.readouterr().out.splitlines()[-1])


def test_predict_verdict_follows_the_calibrated_threshold(tmp_path, capsys):
    """The shipped threshold (calibration.json, chosen on validation) decides the verdict, not 0.5:
    the same p_fake is "fake" just above the threshold and "real" just below it."""
    from PIL import Image

    from gazeclip.cli import main

    Image.new("RGB", (40, 30), (120, 30, 200)).save(tmp_path / "a.png")
    run = tmp_path / "run"
    make_run(run, faces="none")
    p = _predict_json(main, capsys, tmp_path / "a.png", run)["p_fake"]
    assert 0.001 < p < 0.999
    for thr, verdict in ((p - 0.001, "fake"), (p + 0.001, "real")):
        atomic_write_json(run / "calibration.json", calibration(thr))
        rec = _predict_json(main, capsys, tmp_path / "a.png", run)
        assert rec["p_fake"] == pytest.approx(p) and rec["verdict"] == verdict
        assert (rec["generator"] is None) == (verdict == "real")


def test_predict_csv_is_not_left_half_written(tmp_path, capsys, monkeypatch):
    """A batch killed midway leaves no CSV (and no temp file): the CSV appears whole or not at all."""
    from PIL import Image

    from gazeclip.cli import main
    from gazeclip.inference.detector import Detector

    Image.new("RGB", (40, 30), (120, 30, 200)).save(tmp_path / "a.png")
    run = tmp_path / "run"
    make_run(run, faces="none")
    real_iter = Detector.iter_records

    def dies_after_one(self, *a, **kw):
        it = real_iter(self, *a, **kw)
        yield next(it)
        raise KeyboardInterrupt

    monkeypatch.setattr(Detector, "iter_records", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        main(["predict", str(tmp_path / "a.png"), "--run", str(run), "--csv", str(tmp_path / "out" / "p.csv")])
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
