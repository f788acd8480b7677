"""Weights verified before use; JSON output never holds NaN/Infinity; a NaN model output is an error record.

Split from the hardening suite (one file per subsystem); each test reproduces one way gazeclip could
be attacked or hurt by an unlucky file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gazeclip
from gazeclip.cli import main

from helpers import make_run, predict_json, strict_json

SRC = Path(gazeclip.__file__).resolve().parent  # the package under test (main or this branch)


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
    make_run(run, faces="none", nan_weights=True, unknown_threshold=0.5)
    rc, recs, _ = predict_json(capsys, [*images, "--run", run])
    assert rc == 1 and len(recs) == 2
    assert all(set(r) == {"path", "face", "error"} and "not a number" in r["error"] for r in recs)



def test_api_gives_one_result_per_image_when_a_face_output_is_nan(tmp_path, images, capsys):
    """A face the model cannot score (NaN output) makes its image's result an error: still exactly
    one ImageResult per input, whose records() are the lines `predict --json` prints."""
    import gazeclip

    run = tmp_path / "run"
    make_run(run, faces="none", nan_weights=True, unknown_threshold=0.5)
    results = gazeclip.load(run).predict(images)
    assert [r.source for r in results] == [str(p) for p in images]
    assert all(not r.ok and "not a number" in r.error and r.faces == [] for r in results)
    _, recs, _ = predict_json(capsys, [*images, "--run", run])
    assert [rec for r in results for rec in r.records()] == recs

def test_metrics_json_has_no_nan(tmp_path):
    from gazeclip.run.utils import atomic_write_json

    atomic_write_json(tmp_path / "m.json", {"auc": float("nan"), "x": [np.float32("inf"), 1.5]})
    assert strict_json((tmp_path / "m.json").read_text()) == {"auc": None, "x": [None, 1.5]}
