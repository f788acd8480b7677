"""Videos whose container lies (issue 23, items 6 and 12): an mp4 whose `stts` box is patched to
claim 2e9 frames must not make `--fps 1` build 8e7 frame numbers, must still get its 16 evenly
spread frames and a duration from the frames that exist; a truncated moov-first mp4 (3 of 8
frames decode) says so in its record. The files are made with OpenCV and a few patched bytes.
"""
from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path

import pytest

from gazeclip.cli import main
from gazeclip.faces.video import FrameReader, VideoInfo, probe, sample_indices
from helpers import make_run
from helpers import write_video


def boxes(data: bytes, start: int = 0, end: int | None = None):
    """(type, offset, size) of the MP4 boxes between start and end."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        yield kind.decode("latin-1"), pos, size
        pos += size


def moov_first(data: bytes) -> bytes:
    """The same mp4 with its index (moov) moved before the media data (mdat), as `faststart` does:
    every chunk offset (stco) grows by the size of moov."""
    top = {k: (o, s) for k, o, s in boxes(data)}
    mo, ms = top["moov"]
    moov = bytearray(data[mo:mo + ms])
    i = moov.find(b"stco")
    n = struct.unpack(">I", moov[i + 8:i + 12])[0]
    for j in range(n):
        at = i + 12 + 4 * j
        struct.pack_into(">I", moov, at, struct.unpack(">I", moov[at:at + 4])[0] + ms)
    rest = data[:mo] + data[mo + ms:]
    fo, fs = top["ftyp"]
    return rest[:fo + fs] + bytes(moov) + rest[fo + fs:]


def claim_frames(data: bytes, count: int) -> bytes:
    """The mp4 with its (single-entry) time-to-sample table claiming `count` frames."""
    b = bytearray(data)
    i = b.find(b"stts")
    assert struct.unpack(">I", b[i + 8:i + 12])[0] == 1  # one entry: (sample_count, sample_delta)
    struct.pack_into(">I", b, i + 12, count)
    return bytes(b)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    r = tmp_path_factory.mktemp("secvideo") / "run"
    make_run(r, faces="none")
    return r


def video_record(capsys, run: Path, path: Path, *args) -> tuple[int, dict]:
    rc = main(["predict", str(path), "--run", str(run), "--json", "--quiet", *args])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    return rc, lines[-1]


# ---------------------------------------------------------------- 6. a container that overstates its frame count
def test_sampling_plan_allocates_nothing_whatever_the_header_says():
    info = VideoInfo("x.mp4", fps=30.0, n_frames=2_000_000_000, width=64, height=48)
    tracemalloc.start()
    plan = sample_indices(info, fps=1.0)
    first = [next(plan) for _ in range(3)]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert first == [0, 30, 60] and peak < 1 << 20  # lazily generated: no list of 6.7e7 numbers


@pytest.mark.parametrize("args", [["--fps", "1"], []])
def test_overstated_frame_count(tmp_path, run, capsys, args):
    clip = write_video(tmp_path / "clip.mp4", n=40, fps=10.0)
    lying = tmp_path / "lying.mp4"
    lying.write_bytes(claim_frames(clip.read_bytes(), 2_000_000_000))
    assert probe(lying).n_frames >= 1_000_000_000  # what the container claims
    tracemalloc.start()
    rc, rec = video_record(capsys, run, lying, *args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rc == 0 and peak < 200 << 20
    assert rec["frames_read"] == 40 and rec["duration"] == pytest.approx(4.0)  # from the frames that exist
    assert rec["frames"] == (4 if args else 16)  # 1 per second, or 16 spread over the 40 real frames
    assert "container lists" in rec["warning"]
    if not args:
        reader = FrameReader(lying)
        idx = [f.index for f in reader]
        assert idx[0] == 0 and idx[-1] == 39 and len(set(idx)) == 16 and idx == sorted(idx)


def test_honest_video_has_no_warning(tmp_path, run, capsys):
    clip = write_video(tmp_path / "clip.mp4", n=12, fps=10.0)
    rc, rec = video_record(capsys, run, clip, "--frames", "4")
    assert rc == 0 and rec["warning"] is None and rec["container_frames"] == 12 and rec["frames"] == 4
    assert rec["duration"] == pytest.approx(1.2)


# ---------------------------------------------------------------- 12. a partial decode is reported
def test_truncated_moov_first_mp4_reports_the_partial_decode(tmp_path, run, capsys):
    import gazeclip

    clip = write_video(tmp_path / "clip.mp4", n=8, fps=8.0, size=(96, 64))
    fast = moov_first(clip.read_bytes())
    whole = tmp_path / "fast.mp4"
    whole.write_bytes(fast)
    assert len(list(FrameReader(whole))) == 8
    # cut inside the media data, after the 3rd frame's chunk
    moov_end = next(o + s for k, o, s in boxes(fast) if k == "moov")
    reader = FrameReader(whole)
    assert reader.info.n_frames == 8
    cut = tmp_path / "cut.mp4"
    for keep in range(moov_end + 200, len(fast), 50):
        cut.write_bytes(fast[:keep])
        got = list(FrameReader(cut))
        if len(got) >= 3:
            break
    assert 0 < len(got) < 8
    rc, rec = video_record(capsys, run, cut)
    assert rc == 0 and rec["frames"] == len(got) and rec["container_frames"] == 8
    assert f"the container lists 8 frames but the stream ended after {len(got)}" in rec["warning"]
    (res,) = gazeclip.load(run).predict(cut)
    assert res.warning == rec["warning"] and res.frames_read == len(got)
