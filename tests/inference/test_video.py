"""Video input: frame sampling, decoding errors, IoU tracks, the top-k aggregation, `predict` on
videos through the CLI and the API (tiny synthetic videos; shipped real clips under `real`)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import gazeclip
from gazeclip.cli import main
from gazeclip.inference.video import IoUTracker, VideoOptions, box_iou, summarize_tracks, topk_mean
from gazeclip.faces.video import VideoInfo, VideoReadError, iter_frames, probe, sample_indices
from helpers import make_run, write_video


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("video")
    make_run(tmp / "run", faces="none")
    return tmp / "run", write_video(tmp / "clip.mp4")


def test_sampling_plans():
    info = VideoInfo("x.mp4", fps=30.0, n_frames=300, width=64, height=48)
    assert list(sample_indices(info, frames=4)) == [0, 100, 199, 299]
    assert list(sample_indices(info, fps=1.0)) == list(range(0, 300, 30))
    assert len(list(sample_indices(info))) == 16
    assert list(sample_indices(info, frames=1000)) == list(range(300))
    assert list(sample_indices(VideoInfo("x", 0.0, 0, 1, 1), frames=3)) == [0, 1, 2]  # unknown length
    with pytest.raises(ValueError, match="not both"):
        sample_indices(info, fps=1.0, frames=3)
    with pytest.raises(ValueError, match="fps must be > 0"):
        sample_indices(info, fps=0)


def test_decode_sampled_frames_in_order(tiny):
    _, clip = tiny
    info = probe(clip)
    assert (info.width, info.height, info.n_frames) == (64, 48, 20) and info.fps == pytest.approx(10.0)
    frames = list(iter_frames(clip, frames=5))
    assert [f.index for f in frames] == [0, 5, 10, 14, 19]
    assert [f.time for f in frames] == [0.0, 0.5, 1.0, 1.4, 1.9]
    assert frames[0].image.shape == (48, 64, 3) and frames[0].image.dtype == np.uint8
    # RGB, not OpenCV's BGR: frame 0 was written as B=0, G=80, R=200
    assert tuple(int(v) for v in frames[0].image[30, 40]) == pytest.approx((200, 80, 0), abs=12)
    assert [f.index for f in iter_frames(clip, fps=2.5)] == [0, 4, 8, 12, 16]


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"not a video at all" * 100, "not a video file"),
                                            (None, "no such file")])
def test_unreadable_videos_fail_by_name(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoReadError, match=f"bad.mp4: cannot read video: .*{reason}"):
        list(iter_frames(path))


def test_truncated_video_gives_the_frames_before_the_cut(tmp_path):
    clip = write_video(tmp_path / "full.mp4", n=30)
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    try:
        frames = list(iter_frames(cut, frames=30))
    except VideoReadError as e:  # an mp4 cut before its index cannot be opened at all: also fine
        assert "cut.mp4" in str(e)
    else:
        assert 0 < len(frames) <= 30


def test_iou_and_tracks_follow_faces_across_frames():
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10])[0, 0] == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30])[0, 0] == 0.0
    t = IoUTracker(iou=0.3)
    assert t.update([[0, 0, 10, 10], [100, 0, 110, 10]]) == [0, 1]
    # the faces come in the other order and have moved a little: same tracks
    assert t.update([[102, 1, 112, 11], [1, 1, 11, 11]]) == [1, 0]
    assert t.update([[300, 300, 310, 310]]) == [2]  # a new face
    assert t.update([]) == []
    assert t.update([[2, 2, 12, 12]]) == [0]  # tracks survive frames where they were not seen


def test_topk_aggregation_and_short_tracks():
    assert topk_mean([0.1, 0.9, 0.5, 0.7], 0.5) == pytest.approx(0.8)
    assert topk_mean([0.2], 0.5) == pytest.approx(0.2)
    assert topk_mean([0.1, 0.2, 0.3], 0.5) == pytest.approx(0.25)  # ceil(1.5) = 2

    class Run:  # a calibrated threshold (there is no fallback)
        detection_threshold = 0.5

    def rec(track, p, time, gen="gan-a"):
        return {"track": track, "p_fake": p, "time": time, "generator": gen, "generator_prob": 0.6,
                "family": "gan", "unknown_generator": False, "box": [0, 0, 1, 1]}

    recs = [rec(0, 0.2, t) for t in range(8)] + [rec(1, 0.99, 3.0)]  # track 1: one frame out of 8
    tracks, p, why = summarize_tracks(Run(), recs, 8, VideoOptions())
    assert [t["frames"] for t in tracks] == [8, 1]
    assert p == pytest.approx(0.2) and why is None  # the one-frame track is ignored for the video's score
    assert tracks[0]["verdict"] == "real" and tracks[0]["generator"] is None
    assert tracks[1]["verdict"] == "fake" and tracks[1]["generator"] == "gan-a"
    tracks, p, _ = summarize_tracks(Run(), [rec(0, 0.9, 0), rec(0, 0.7, 1), rec(0, 0.1, 2, "real")], 3, VideoOptions())
    assert p == pytest.approx(0.8) and tracks[0]["generator"] == "gan-a" and tracks[0]["verdict"] == "fake"


def test_predict_video_cli_and_api_agree(tiny, capsys):
    run, clip = tiny
    rc = main(["predict", str(clip), "--run", str(run), "--json", "--frames", "6", "--per-frame"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert rc == 0
    frames, video = lines[:-1], lines[-1]
    assert len(frames) == 6 and [f["frame"] for f in frames] == [0, 4, 8, 11, 15, 19]
    assert {f["track"] for f in frames} == {0}  # whole-image run: the frame is the one "face"
    assert video["frames"] == 6 and video["faces"] == 6 and video["fps"] == pytest.approx(10.0)
    expect = topk_mean([f["p_fake"] for f in frames], 0.5)
    assert video["p_fake"] == pytest.approx(expect, abs=1e-6) and video["verdict"] in ("real", "fake")
    assert video["tracks"][0]["frames"] == 6
    (res,) = gazeclip.load(run).predict(clip, frames=6)
    assert isinstance(res, gazeclip.VideoResult)
    assert res.records(per_frame=True) == lines
    assert res.p_fake == video["p_fake"] and len(res.frames) == 6 and res.frames[2].frame == 8
    assert res.tracks[0].p_fake == video["tracks"][0]["p_fake"]
    # without --per-frame only the video's line; --fps samples by time
    main(["predict", str(clip), "--run", str(run), "--json", "--fps", "5"])
    (only,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert only["frames"] == 10
    main(["predict", str(clip), "--run", str(run)])
    assert "video" in capsys.readouterr().out


def test_unreadable_video_is_reported_and_the_batch_goes_on(tiny, tmp_path, capsys):
    run, clip = tiny
    bad = tmp_path / "broken.mov"
    bad.write_bytes(b"\x00\x00\x00\x18ftypqt  " + b"\x00" * 200)
    rc = main(["predict", str(bad), str(clip), "--run", str(run), "--json", "--frames", "2"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert rc == 1
    assert set(lines[0]) == {"path", "error"} and "broken.mov: cannot read video" in lines[0]["error"]
    assert lines[1]["frames"] == 2
    (res,) = gazeclip.load(run).predict(bad)
    assert not res.ok and "broken.mov" in res.error


@pytest.mark.real
def test_faceless_video_has_no_score(real_weights, tmp_path):
    run = tmp_path / "run"
    make_run(run, faces="detect")
    clip = write_video(tmp_path / "flat.mp4", n=6, size=(96, 96))
    (res,) = gazeclip.load(run).predict(clip, frames=3)
    assert res.ok and res.frames_sampled == 3 and res.p_fake is None and res.verdict is None
    assert res.tracks == [] and res.frames == []
    assert [r["faces"] for r in res.frame_records] == [0, 0, 0]


@pytest.mark.real
def test_shipped_real_clip_gives_one_track(real_weights, tmp_path):
    from gazeclip.weights import asset_path

    run = tmp_path / "run"
    make_run(run, faces="detect")
    (res,) = gazeclip.load(run).predict(asset_path("video-single-face"), frames=4)
    assert res.frames_sampled == 4 and len(res.tracks) == 1 and res.tracks[0].frames == 4
    assert all(f.box is not None and f.gaze is not None for f in res.frames)
    assert res.duration == pytest.approx(2.4, abs=0.1)
    assert math.isclose(res.p_fake, topk_mean([f.p_fake for f in res.frames], 0.5), abs_tol=1e-6)


def test_write_video_round_trip_and_refuses_mixed_sizes(tmp_path):
    from gazeclip.bench.video_forgery import write_video

    frames = [np.full((48, 64, 3), v, np.uint8) for v in (20, 120, 220)]
    path = write_video(frames, tmp_path / "out.mp4", fps=5)
    got = list(iter_frames(path, frames=3))
    assert [f.index for f in got] == [0, 1, 2]
    assert [int(f.image.mean()) for f in got] == pytest.approx([20, 120, 220], abs=4)
    with pytest.raises(ValueError, match="differ in size"):
        write_video([frames[0], np.zeros((10, 10, 3), np.uint8)], tmp_path / "bad.mp4", fps=5)
    assert not (tmp_path / "bad.mp4").exists() and list(tmp_path.glob(".bad*")) == []  # nothing half-written


@pytest.mark.real
def test_gaze_redirect_changes_the_eyes_of_every_frame(real_weights):
    from gazeclip.bench.video_forgery import forge_frames
    from gazeclip.weights import asset_path

    frames = [f.image for f in iter_frames(asset_path("video-single-face"), frames=2)]
    fv = forge_frames(frames, "gaze-redirect", seed=3)
    assert fv.untouched == 0 and abs(fv.params["dx"]) >= 0.12
    for before, after in zip(frames, fv.frames):
        diff = np.abs(before.astype(int) - after.astype(int)).sum(2)
        changed = np.argwhere(diff > 10)
        assert len(changed) > 20  # the irises moved
        assert np.ptp(changed[:, 0]) < before.shape[0] / 4  # ... and nothing far from the eyes did
    again = forge_frames(frames, "gaze-redirect", seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(fv.frames, again.frames))  # seeded
