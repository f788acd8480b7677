"""The third verdict, "uncertain": where a verdict would be a guess (a face smaller in the source image
than the validation faces, greyscale, ...) predict abstains and says why, through `gazeclip predict
--json`, `gazeclip.load(run).predict`, the service's /v1/predict and video scoring; an uncertain face
is never counted as fake. The limits come from the run's validation faces (calibration.json v3); a
run without them is refused with the command that adds them."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import gazeclip
from gazeclip.cli import main
from gazeclip.records import QUALITY_FIELDS
from gazeclip.run.calibrate import abstain_limits_from
from gazeclip.run.utils import atomic_write_json
from gazeclip.run.verdict import AbstainLimits, decide
from helpers import calibration, make_run

CLASSES, FAMILIES = ("real", "gan-a", "diff-a"), ("real", "diffusion", "gan")
# hand-set limits of the tiny test runs (an untrained model has no validation faces to take them from)
TEST_LIMITS = {"min_face_px": 64.0, "min_chroma": 8.0, "quantile": 0.005, "n": 0}


def q(face_px=100.0, score=0.9, pitch=-5.0, yaw=3.0, roll=1.0, chroma=50.0) -> np.ndarray:
    return np.array([face_px, score, pitch, yaw, roll, chroma], np.float32)


def _json_lines(capsys) -> list[dict]:
    return [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]


# ---------------------------------------------------------------- the rule and its limits
def test_limits_are_quantiles_of_the_validation_faces_and_rules_can_be_switched_off():
    rows = np.stack([q(face_px=80 + i, score=0.5 + i / 200, yaw=-i, chroma=10 + i) for i in range(101)])
    lim = abstain_limits_from(rows, quantile=0.01)
    assert lim.min_face_px == pytest.approx(81.0) and lim.min_chroma == pytest.approx(11.0)
    assert lim.min_score == pytest.approx(0.505) and lim.max_yaw == pytest.approx(99.0)  # |yaw|
    assert lim.n == 101 and lim.quantile == 0.01 and lim.split == "val"
    off = abstain_limits_from(rows, 0.01, rules=["greyscale"])
    assert off.min_chroma is not None and off.min_face_px is None and off.max_yaw is None
    # whole-image faces have no score or pose: those limits stay off instead of being made up
    nan = np.stack([q(score=math.nan, pitch=math.nan, yaw=math.nan, roll=math.nan)] * 5)
    assert abstain_limits_from(nan).min_score is None and abstain_limits_from(nan).max_pitch is None
    with pytest.raises(ValueError, match="blurry"):
        abstain_limits_from(rows, rules=["blurry"])


def test_decide_abstains_with_a_reason_and_names_nothing():
    lim = AbstainLimits(min_face_px=64, min_chroma=8, min_score=0.5, max_pitch=30, max_yaw=40, max_roll=20)
    rows = np.stack([q(face_px=40), q(chroma=0.0), q(score=0.2), q(yaw=-70), q(), q(face_px=math.nan)])
    logits = np.tile([0.0, 3.0, 0.0], (len(rows), 1))
    vs = decide(np.full(len(rows), 0.99), logits, logits, CLASSES, FAMILIES, 0.5, 0.2, rows, lim)
    assert [v.verdict for v in vs] == ["uncertain"] * 4 + ["fake", "fake"]  # NaN: not measured, no limit crossed
    for v, word in zip(vs, ("small face: 40 px", "greyscale: colour 0.0", "low detector confidence: 0.20",
                            "extreme head pose: yaw -70")):
        assert word in v.reason and v.generator is None and v.family is None and not v.unknown_generator
        assert v.as_dict()["verdict"] == "uncertain" and v.as_dict()["reason"] == v.reason
    two = AbstainLimits(min_face_px=64, min_chroma=8).reasons(q(face_px=30, chroma=5.0))
    assert len(two) == 2 and "almost no colour" in two[1]  # not greyscale, but less colour than any val face


def test_run_without_abstain_limits_is_refused_naming_the_fix(tmp_path, capsys):
    run = tmp_path / "run"
    make_run(run, faces="none")
    cal = calibration()
    del cal["abstain"]
    atomic_write_json(run / "calibration.json", {**cal, "version": 2})
    with pytest.raises(gazeclip.errors.DamagedFileError, match="version 2 < 3.*gazeclip calibrate --run"):
        gazeclip.load(run)
    Image.new("RGB", (40, 30), (120, 30, 200)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--run", str(run), "--json"]) == 1
    err = capsys.readouterr().err
    assert "abstain limits" in err and "gazeclip calibrate" in err and len(err.strip().splitlines()) == 1
    # a damaged limit is named like any damaged run file
    atomic_write_json(run / "calibration.json", calibration(min_face_px="big"))
    with pytest.raises(gazeclip.errors.DamagedFileError, match="min_face_px"):
        gazeclip.load(run)


# ---------------------------------------------------------------- a trained run's own limits
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from gazeclip.data.synthetic import make_synthetic_dataset

    tmp = tmp_path_factory.mktemp("unc-train")
    data = make_synthetic_dataset(tmp / "data", n_train=6, n_val=3, n_test=4)  # 32 x 32 colour textures
    run = tmp / "run"
    assert main(["train", "--config", "tiny", "--data", str(data), "--out", str(run), "--epochs", "1",
                 "--quiet"]) == 0
    return data, run


def test_training_stores_limits_from_its_validation_faces_and_predict_applies_them(trained, tmp_path, capsys):
    data, run = trained
    cal = json.loads((run / "calibration.json").read_text())
    lim = cal["abstain"]
    assert cal["version"] == 3 and lim["split"] == "val" and lim["quantile"] == 0.005
    assert lim["min_face_px"] == 32.0  # every validation image (the whole-image run's "face") is 32 px
    assert lim["min_score"] is None and lim["max_yaw"] is None  # a whole image has no detector score or pose
    assert 0 < lim["min_chroma"] < 200
    img = np.asarray(Image.open(next((data / "gan-a").glob("test-*.png"))).convert("RGB"))
    Image.fromarray(img).save(tmp_path / "as-trained.png")
    Image.fromarray(cv2.resize(img, (20, 20), interpolation=cv2.INTER_AREA)).save(tmp_path / "small.png")
    Image.fromarray(img).convert("L").save(tmp_path / "grey.png")
    assert main(["predict", str(tmp_path), "--run", str(run), "--json"]) == 0
    by = {Path(r["path"]).name: r for r in _json_lines(capsys)}
    assert by["as-trained.png"]["verdict"] in ("real", "fake") and by["as-trained.png"]["reason"] is None
    assert by["small.png"]["verdict"] == "uncertain" and "small face: 20 px" in by["small.png"]["reason"]
    assert by["grey.png"]["verdict"] == "uncertain" and by["grey.png"]["reason"].startswith("greyscale")
    # eval reports how many test faces the rule would abstain on, per class
    assert main(["eval", "--run", str(run), "--data", str(data), "--quiet"]) == 0
    m = json.loads((run / "eval" / "metrics.json").read_text())["uncertain"]
    assert m["n"] == 20 and set(m["per_class"]) == {"real", "gan-a", "gan-b", "diff-a", "flow-a"}
    assert m["uncertain"] == sum(c["uncertain"] for c in m["per_class"].values())


def test_calibrate_adds_limits_to_a_run_calibrated_before_them(trained, tmp_path, capsys):
    import shutil

    data, run = trained
    old = tmp_path / "old"
    shutil.copytree(run, old)
    cal = json.loads((old / "calibration.json").read_text())
    del cal["abstain"]
    atomic_write_json(old / "calibration.json", {**cal, "version": 2})
    with pytest.raises(gazeclip.errors.DamagedFileError, match="gazeclip calibrate --run"):
        gazeclip.load(old)
    assert main(["calibrate", "--run", str(old), "--data", str(data), "--quiet"]) == 0  # the fix the error names
    assert json.loads((old / "calibration.json").read_text())["abstain"] == \
        json.loads((run / "calibration.json").read_text())["abstain"]
    gazeclip.load(old)


# ---------------------------------------------------------------- video
def test_video_tracks_leave_uncertain_frames_out_and_never_count_them_as_fake():
    from gazeclip.inference.video import VideoOptions, summarize_tracks

    class Run:
        detection_threshold = 0.5

    def rec(track, p, time, verdict):
        unsure = verdict == "uncertain"
        return {"track": track, "p_fake": p, "time": time, "verdict": verdict,
                "reason": "small face: 30 px in the source image, under the 64 px limit" if unsure else None,
                "generator": None if unsure else "gan-a", "generator_prob": None if unsure else 0.7,
                "family": None if unsure else "gan", "unknown_generator": False, "box": [0, 0, 1, 1]}

    # track 0: every frame uncertain, with high p_fake; track 1: judged real
    recs = [rec(0, 0.99, t, "uncertain") for t in range(4)] + [rec(1, 0.1, t, "real") for t in range(4)]
    tracks, p, why = summarize_tracks(Run(), recs, 4, VideoOptions())
    assert tracks[0]["verdict"] == "uncertain" and tracks[0]["uncertain_frames"] == 4
    assert tracks[0]["reason"].startswith("small face") and tracks[0]["generator"] is None
    assert p == pytest.approx(0.1) and why is None  # the video's score comes from the judged track only
    # a track with some uncertain frames: its score is its judged frames'
    mixed = [rec(0, 0.99, 0, "uncertain"), rec(0, 0.2, 1, "real"), rec(0, 0.3, 2, "real")]
    tracks, p, why = summarize_tracks(Run(), mixed, 3, VideoOptions())
    assert tracks[0]["verdict"] == "real" and tracks[0]["p_fake"] == pytest.approx(0.3) and p == pytest.approx(0.3)
    # only uncertain faces: the video is uncertain, not fake
    tracks, p, why = summarize_tracks(Run(), recs[:4], 4, VideoOptions())
    assert why.startswith("no face track could be judged: small face") and p == pytest.approx(0.99)


# ---------------------------------------------------------------- real faces, end to end
@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The astronaut photo as is (face about 106 px), downscaled (face about 40 px) and greyscaled,
    and an LFW face (25 x 25 greyscale) upsampled to 128 px: a large face, but without colour."""
    from gazeclip.weights import asset_path

    tmp = tmp_path_factory.mktemp("unc-photos")
    ast = np.asarray(Image.open(asset_path("photo-astronaut")).convert("RGB"))
    Image.fromarray(ast).save(tmp / "colour.png")
    Image.fromarray(cv2.resize(ast, (200, 200), interpolation=cv2.INTER_AREA)).save(tmp / "small.png")
    Image.fromarray(ast).convert("L").save(tmp / "grey.png")
    lfw = (np.load(asset_path("lfw-subset"))[0] * 255).round().astype(np.uint8)
    Image.fromarray(cv2.resize(lfw, (128, 128), interpolation=cv2.INTER_CUBIC)).save(tmp / "lfw.png")
    # detection threshold 0: any face that is judged is called fake, so "uncertain" is never a fake verdict
    make_run(tmp / "run", faces="detect", **TEST_LIMITS)
    atomic_write_json(tmp / "run" / "calibration.json", calibration(0.0, **TEST_LIMITS))
    return tmp


def _check(by: dict) -> None:
    assert by["colour.png"]["verdict"] == "fake" and by["colour.png"]["reason"] is None
    assert by["small.png"]["verdict"] == "uncertain" and "small face" in by["small.png"]["reason"]
    for name in ("grey.png", "lfw.png"):
        assert by[name]["verdict"] == "uncertain" and by[name]["reason"].startswith("greyscale: colour 0.0"), name
    for name in ("small.png", "grey.png", "lfw.png"):
        assert by[name]["generator"] is None and by[name]["family"] is None and 0 <= by[name]["p_fake"] <= 1


@pytest.mark.real
def test_small_and_greyscale_faces_are_uncertain_in_predict_and_the_api(real_weights, photos, capsys):
    run = photos / "run"
    files = [photos / n for n in ("colour.png", "small.png", "grey.png", "lfw.png")]
    assert main(["predict", *map(str, files), "--run", str(run), "--json"]) == 0
    cli = _json_lines(capsys)
    by = {Path(r["path"]).name: r for r in cli}
    _check(by)
    assert by["small.png"]["box"][2] - by["small.png"]["box"][0] < 64  # the face really is under the limit
    main(["predict", str(files[1]), "--run", str(run)])
    assert "uncertain (small face" in capsys.readouterr().out
    det = gazeclip.load(run)
    results = det.predict(files)
    assert [rec for r in results for rec in r.records()] == cli  # the API gives the CLI's records
    face = results[1].faces[0]
    assert face.verdict == "uncertain" and face.reason == by["small.png"]["reason"]
    # in-memory images: the same rule (the quality is measured on the pixels, not on the file)
    arrays = det.predict([np.asarray(Image.open(f).convert("RGB")) for f in files])
    _check({f.name: r.faces[0].to_dict() for f, r in zip(files, arrays)})


@pytest.mark.real
def test_service_answers_uncertain_and_explains_on_request(real_weights, photos):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from gazeclip.serve.app import create_app

    client = TestClient(create_app(gazeclip.load(photos / "run")))
    names = ("colour.png", "small.png", "grey.png", "lfw.png")
    files = [("files", (n, (photos / n).read_bytes(), "image/png")) for n in names]
    r = client.post("/v1/predict", files=files)
    assert r.status_code == 200, r.text
    by = {rec["path"]: rec for rec in r.json()["records"]}
    _check(by)
    assert all("cam" not in rec for rec in by.values())  # Grad-CAM only when asked for
    r = client.post("/v1/predict?explain=1", files=files[:2])
    assert r.status_code == 200, r.text
    for rec in r.json()["records"]:
        cam = rec["cam"]
        x0, y0, x1, y1 = cam["region"]
        b = rec["box"]
        assert x0 < b[0] and y0 < b[1] and x1 > b[2] and y1 > b[3]  # the crop: a square around the face box
        assert x1 - x0 == pytest.approx(y1 - y0, rel=1e-3) and cam["class"] in CLASSES
        png = Image.open(io.BytesIO(__import__("base64").b64decode(cam["png"].split(",", 1)[1])))
        assert png.mode == "RGBA" and png.size == (224, 224)
    # the same as a form field
    r = client.post("/v1/predict", files=files[:1], data={"explain": "1"})
    assert "cam" in r.json()["records"][0]


@pytest.mark.real
def test_video_of_small_faces_is_uncertain_not_fake(real_weights, photos, tmp_path, capsys):
    from gazeclip.weights import asset_path

    ast = np.asarray(Image.open(asset_path("photo-astronaut")).convert("RGB"))
    path = tmp_path / "small.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (200, 200))
    for k in range(4):
        frame = cv2.resize(np.roll(ast, 4 * k, axis=1), (200, 200), interpolation=cv2.INTER_AREA)
        w.write(np.ascontiguousarray(frame[:, :, ::-1]))
    w.release()
    run = photos / "run"
    assert main(["predict", str(path), "--run", str(run), "--json", "--frames", "4", "--per-frame"]) == 0
    lines = _json_lines(capsys)
    frames, video = lines[:-1], lines[-1]
    assert len(frames) == 4 and all(f["verdict"] == "uncertain" for f in frames)
    assert video["verdict"] == "uncertain" and video["reason"].startswith("no face track could be judged: small")
    assert video["tracks"][0]["uncertain_frames"] == 4  # at detection threshold 0 a judged face would be fake
    (res,) = gazeclip.load(run).predict(path, frames=4)
    assert res.verdict == "uncertain" and res.reason == video["reason"] and res.tracks[0].verdict == "uncertain"
