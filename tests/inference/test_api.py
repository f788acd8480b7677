"""The Python API, `gazeclip.load(run).predict(x)`: same numbers as `gazeclip predict`, every input
kind, typed results, one face detector and gaze estimator for all calls, quiet MediaPipe."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gazeclip
from gazeclip.cli import main
from helpers import make_run


@pytest.fixture(scope="module")
def whole_image_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    make_run(tmp / "run", faces="none")
    folder = tmp / "photos"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate(["a.png", "sub/b.jpg", "c.png"]):
        Image.fromarray(rng.integers(0, 255, (48 + 8 * i, 40, 3), dtype=np.uint8)).save(folder / name)
    return tmp / "run", folder


def _cli_json(capsys, *argv) -> tuple[int, list[dict]]:
    rc = main(["predict", *argv, "--json"])
    return rc, [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_api_gives_the_cli_records_for_files_and_folders(whole_image_run, capsys):
    run, folder = whole_image_run
    rc, cli = _cli_json(capsys, str(folder), str(folder / "a.png"), str(folder / "missing.png"), "--run", str(run))
    assert rc == 1  # the missing file
    det = gazeclip.load(run)
    results = det.predict([folder, folder / "a.png", folder / "missing.png"])
    api = [rec for r in results for rec in r.records()]
    assert api == cli  # same records, same numbers, same order (the file given twice included)
    assert [r.source for r in results] == [str(folder / "a.png"), str(folder / "c.png"), str(folder / "sub/b.jpg"),
                                           str(folder / "a.png"), str(folder / "missing.png")]
    bad = results[-1]
    assert not bad.ok and "missing.png" in bad.error and bad.faces == []
    face = results[0].faces[0]
    assert isinstance(face, gazeclip.FaceResult)
    assert face.verdict == ("fake" if face.p_fake >= 0.5 else "real")  # the fallback threshold of this run
    assert json.loads(face.to_json()) == face.to_dict() == cli[0]
    assert json.loads(results[0].to_json())["faces"][0]["p_fake"] == face.p_fake


def test_arrays_and_pil_images_score_like_their_files(whole_image_run):
    run, folder = whole_image_run
    det = gazeclip.load(run)
    path = folder / "a.png"
    rgb = np.asarray(Image.open(path).convert("RGB"))
    by_path, by_array, by_pil, by_grey = det.predict([path, rgb, Image.open(path), rgb[:, :, 0]])
    assert by_array.source == "<array 1>" and by_pil.source == "<image 2>"
    assert by_array.faces[0].p_fake == pytest.approx(by_path.faces[0].p_fake, abs=1e-5)
    assert by_pil.faces[0].p_fake == pytest.approx(by_path.faces[0].p_fake, abs=1e-5)
    assert by_grey.faces[0].generator in det.classes
    one = det.predict(rgb)  # a single input still gives a list
    assert len(one) == 1 and one[0].faces[0].p_fake == by_array.faces[0].p_fake


def test_bad_inputs_and_options_fail_clearly(whole_image_run):
    run, _ = whole_image_run
    det = gazeclip.load(run)
    with pytest.raises(ValueError, match="uint8"):
        det.predict(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        det.predict(np.zeros((8, 8, 5), np.uint8))
    with pytest.raises(TypeError, match="cannot predict on dict"):
        det.predict({"not": "an image"})
    with pytest.raises(TypeError, match="unknown option.*colour"):
        gazeclip.load(run, colour="blue")
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        gazeclip.load(run.parent / "no-such-run")


def test_detector_and_gaze_estimator_are_built_once(whole_image_run, monkeypatch):
    from gazeclip.data import dataset

    run, folder = whole_image_run
    det = gazeclip.load(run)
    built = []
    monkeypatch.setattr(dataset.FaceGazeSource, "__init__", lambda self, *a, **k: built.append(1))
    det.predict(folder)
    det.predict([folder / "a.png", np.zeros((32, 32, 3), np.uint8)])
    assert built == []  # every call reused the source made by load()


@pytest.mark.real
def test_real_faces_api_matches_cli_with_box_gaze_and_head_pose(real_weights, tmp_path, capsys):
    from gazeclip.weights import asset_path

    run = tmp_path / "run"
    make_run(run, faces="detect")
    photo = tmp_path / "astronaut.png"
    shutil.copy(asset_path("photo-astronaut"), photo)
    rc, cli = _cli_json(capsys, str(photo), "--run", str(run))
    assert rc == 0
    assert "face_landmarker_graph" not in capsys.readouterr().err  # MediaPipe stays quiet
    det = gazeclip.load(run)
    (res,) = det.predict(photo)
    assert [f.to_dict() for f in res.faces] == cli
    face = res.faces[0]
    x0, y0, x1, y1 = face.box
    assert 150 < x0 < x1 < 300 and 50 < y0 < y1 < 200  # the astronaut's face (512x512 photo)
    assert face.gaze is not None and len(face.gaze.arrows) == 2 and abs(face.gaze.yaw) < 45
    assert face.head_pose is not None and abs(face.head_pose.yaw) < 30
    (arr,) = det.predict(np.asarray(Image.open(photo).convert("RGB")))
    assert arr.faces[0].p_fake == pytest.approx(face.p_fake, abs=1e-4)
    assert arr.faces[0].box == pytest.approx(face.box, abs=0.2)


def test_verbose_flag_is_accepted_before_and_after_the_command(whole_image_run, capsys):
    from gazeclip import quiet

    run, folder = whole_image_run
    try:
        assert main(["-v", "predict", str(folder / "a.png"), "--run", str(run), "--json"]) == 0
        assert quiet.is_verbose()
        quiet.set_verbose(False)
        assert main(["predict", str(folder / "a.png"), "--run", str(run), "--json", "-v"]) == 0
        assert quiet.is_verbose()
    finally:
        quiet.set_verbose(False)
    capsys.readouterr()


def test_native_log_lines_are_hidden_unless_verbose(capfd):
    import os

    from gazeclip import quiet

    with quiet.native_logs_silenced():
        os.write(2, b"W0000 native log line\n")
    assert "native log line" not in capfd.readouterr().err
    quiet.set_verbose(True)
    try:
        with quiet.native_logs_silenced():
            os.write(2, b"W0000 shown when verbose\n")
    finally:
        quiet.set_verbose(False)
    assert "shown when verbose" in capfd.readouterr().err
    os.write(2, b"stderr is back\n")
    assert "stderr is back" in capfd.readouterr().err



def test_loading_and_predicting_never_import_the_trainer_or_evaluation(whole_image_run):
    """`gazeclip.load(run).predict(x)` pulls in inference and run/, not train/ or evaluation/
    (a fresh interpreter, so the other tests' imports do not count)."""
    import subprocess
    import sys

    run, folder = whole_image_run
    code = ("import sys, gazeclip; det = gazeclip.load(sys.argv[1]); det.predict(sys.argv[2]); "
            "print(' '.join(sorted(m.split('.')[1] for m in sys.modules if m.count('.') >= 1 and m.startswith('gazeclip.'))))")
    out = subprocess.run([sys.executable, "-c", code, str(run), str(folder / "a.png")], capture_output=True,
                         text=True, check=True)
    packages = set(out.stdout.split())
    assert {"inference", "run", "models"} <= packages  # the probe sees what was imported
    assert not packages & {"train", "evaluation", "experiment", "export"}, packages
