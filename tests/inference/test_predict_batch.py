"""`gazeclip predict ... --out DIR`: one result folder from one process or several (torchrun, gloo),
resumable after kill -9; `--files-from` with 100,000 paths; a bad file is one error record.

A tiny untrained run (tiny-random backbone, whole images: no face detector), small random PNGs and
two short mp4 videos keep every process start to a few seconds. `--chunk 1` sends each input
through the model alone and OMP_NUM_THREADS=1 fixes the summation order, so one process and two
give the same bytes, not just close numbers."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gazeclip.cli import main
from helpers import make_run
from helpers import write_video

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> tuple[Path, Path]:
    """(run, data): 30 images (two of them in a sub-folder), 2 videos, one damaged image and one
    damaged video, and a text file (not an input)."""
    root = tmp_path_factory.mktemp("batch")
    make_run(root / "run", faces="none")
    data = root / "data"
    (data / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(30):
        where = data / "sub" if i < 2 else data
        Image.fromarray(rng.integers(0, 255, (24 + i, 32, 3), dtype=np.uint8)).save(where / f"img{i:02d}.png")
    write_video(data / "clip-a.mp4", n=12)
    write_video(data / "sub" / "clip-b.mp4", n=9, seed=1)
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (data / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 cut")
    (data / "notes.txt").write_text("not an input")
    return root / "run", data


def predict_args(run: Path, data: Path, out: Path, *extra: str, frames: int = 4) -> list[str]:
    return ["predict", str(data), "--run", str(run), "--out", str(out), "--chunk", "1", "--frames", str(frames),
            "--precision", "fp32", "--quiet", *extra]


def torchrun(n: int, args: list[str]) -> subprocess.Popen:
    """`torchrun --nproc-per-node n -m gazeclip -- ARGS` (the `--` keeps torchrun from taking
    gazeclip's `--run` for an abbreviation of its own `--run-path`), in its own process group."""
    exe = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    assert exe, "torchrun not found next to the interpreter"
    return subprocess.Popen([exe, "--nproc-per-node", str(n), "--master-port", str(_free_port()), "-m", "gazeclip",
                             "--", *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def single(args: list[str]) -> None:
    r = subprocess.run([sys.executable, "-m", "gazeclip", *args], env=ENV, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


def finish(proc: subprocess.Popen, ok: bool = True) -> None:
    _, err = proc.communicate(timeout=600)
    assert (proc.returncode == 0) == ok, err[-3000:]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_pid(launcher: int, rank: int, timeout: float = 120) -> int:
    """The pid of torchrun's worker with RANK=rank (read from /proc)."""
    end = time.time() + timeout
    while time.time() < end:
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                env = (d / "environ").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == launcher and f"RANK={rank}".encode() in env:
                return int(d.name)
        time.sleep(0.05)
    raise AssertionError(f"no worker with RANK={rank} under pid {launcher}")


def wait_for_chunk(out: Path, rank: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until rank `rank` has written its first chunk file (mid-way through its share)."""
    end = time.time() + timeout
    while time.time() < end:
        if list((out / "shards").glob(f"g*-r{rank:05d}/[0-9]*.jsonl")):
            return
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.01)
    raise AssertionError("no chunk written")


def merged(out: Path) -> list[str]:
    return sorted((out / "predictions.jsonl").read_text().splitlines())


@pytest.mark.slow
def test_two_gloo_processes_and_kill_9_resume_match_one_process(job, tmp_path):
    run, data = job
    single(predict_args(run, data, tmp_path / "one"))
    one = merged(tmp_path / "one")
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    # 30 images + 2 videos + 2 damaged files, each once; the text file is no input
    assert summary["inputs"] == 34 == len(one) and summary["images"]["files"] == 30
    assert summary["videos"]["files"] == 2 and summary["errors"]["files"] == 2
    assert summary["model"]["sha256"] and summary["model"]["file"] == "model.safetensors"
    assert (tmp_path / "one" / "predictions.jsonl").read_text().splitlines()[0].startswith('{"path": ')

    two = tmp_path / "two"
    finish(torchrun(2, predict_args(run, data, two)))
    assert merged(two) == one
    s2 = json.loads((two / "summary.json").read_text())
    assert s2["this_run"]["processes"] == 2 and sorted(r["rank"] for r in s2["this_run"]["ranks"]) == [0, 1]
    assert sum(r["assigned"] for r in s2["this_run"]["ranks"]) == 34
    assert sorted(p.name for p in (two / "shards").iterdir()) == ["g0001-r00000-of-00002.jsonl",
                                                                  "g0001-r00001-of-00002.jsonl"]

    # kill -9 of one rank after its first chunk; torchrun then stops the other; --resume finishes
    cut = tmp_path / "cut"
    proc = torchrun(2, predict_args(run, data, cut))
    victim = worker_pid(proc.pid, 1)
    wait_for_chunk(cut, 1, proc)
    os.kill(victim, signal.SIGKILL)
    finish(proc, ok=False)
    assert not (cut / "predictions.jsonl").exists()
    assert not list((cut / "shards").glob("g0001-r00001-of-*.jsonl")), "rank 1 had finished before the kill"
    finish(torchrun(2, predict_args(run, data, cut, "--resume")))
    assert merged(cut) == one
    resumed = json.loads((cut / "summary.json").read_text())["this_run"]
    assert resumed["skipped_done"] >= 1 and resumed["predicted"] == 34 - resumed["skipped_done"]

    # kill -9 of every process (the launcher's whole group), then resume in one process
    every = tmp_path / "every"
    proc = torchrun(2, predict_args(run, data, every))
    wait_for_chunk(every, 0, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    single(predict_args(run, data, every, "--resume"))
    assert merged(every) == one
    assert json.loads((every / "summary.json").read_text())["this_run"]["skipped_done"] >= 1


def test_resume_skips_by_path_size_mtime_and_refuses_other_settings(job, tmp_path, capsys):
    run, data = job
    files = tmp_path / "files"
    shutil.copytree(data, files, ignore=shutil.ignore_patterns("*.mp4"))
    out = tmp_path / "out"
    assert main(predict_args(run, files, out)) == 0
    first = (out / "predictions.jsonl").read_text()
    # without --resume a finished folder is refused; with other video options too
    assert main(predict_args(run, files, out)) == 1
    assert "add --resume" in capsys.readouterr().err
    assert main(predict_args(run, files, out, "--resume", frames=8)) == 1
    assert "frames differ" in capsys.readouterr().err
    # a resume with nothing changed predicts nothing and writes the same result
    assert main(predict_args(run, files, out, "--resume")) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["this_run"]["predicted"] == 0 and again["generation"] == 2
    assert (out / "predictions.jsonl").read_text() == first
    # a changed file (new size and mtime) and a new file are predicted; the others are not
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(files / "img05.png")
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(files / "new.png")
    assert main(predict_args(run, files, out, "--resume")) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["this_run"]["predicted"] == 2 and s["inputs"] == 32
    recs = {json.loads(line)["path"]: json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()}
    fresh = tmp_path / "fresh"
    assert main(predict_args(run, files, fresh)) == 0
    assert (fresh / "predictions.jsonl").read_text() == (out / "predictions.jsonl").read_text()
    assert str(files / "new.png") in recs
    # a folder holding something else is never written into
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(predict_args(run, files, other)) == 1
    assert "not empty" in capsys.readouterr().err and sorted(os.listdir(other)) == ["keep.txt"]
    # no input at all: refused, and no job is left behind
    (tmp_path / "nothing").mkdir()
    assert main(predict_args(run, tmp_path / "nothing", tmp_path / "empty-job")) == 1
    assert "no image or video files" in capsys.readouterr().err
    assert not (tmp_path / "empty-job" / "job.json").exists()


def test_files_from_100000_paths_mostly_missing(job, tmp_path):
    run, data = job
    real = sorted(str(p) for p in data.glob("img*.png"))[:5]
    lines = [real[i // 20000] if i % 20000 == 0 else f"{tmp_path}/gone/{i % 97}/x{i}.jpg" for i in range(100_000)]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    t0 = time.perf_counter()
    assert main(["predict", "--files-from", str(tmp_path / "list.txt"), "--run", str(run), "--out", str(out),
                 "--quiet"]) == 0
    wall = time.perf_counter() - t0
    s = json.loads((out / "summary.json").read_text())
    assert s["inputs"] == 100_000 and s["errors"]["files"] == 99_995 and s["images"]["faces"] == 5
    assert s["this_run"]["timing_s"]["listing"] < 10, s["this_run"]["timing_s"]  # read, not stat'ed: seconds
    assert wall < 240, wall
    with open(out / "predictions.jsonl") as fh:
        recs = [json.loads(line) for line in fh]
    assert len(recs) == 100_000 and [r["path"] for r in recs] == lines  # one record each, in list order
    assert recs[1] == {"path": lines[1], "error": f"{lines[1]}: cannot read: no such file; check the path"}
    assert "p_fake" in recs[0] and "p_fake" in recs[20000]


def test_a_file_that_raises_is_one_error_record(job, tmp_path, monkeypatch):
    """Whatever a file does to the predictor, it becomes one error record and the others go on."""
    import gazeclip
    from gazeclip.inference import batch
    from gazeclip.inference.detector import Detector
    from gazeclip.inference.video import VideoOptions

    run, data = job
    det = gazeclip.load(run, precision="fp32")
    paths = [str(data / f"img0{i}.png") for i in range(2, 6)]
    real_iter = Detector.iter_records

    def explodes_on_img04(self, x, *a, **kw):
        for kind, rec in real_iter(self, x, *a, **kw):
            if rec["path"].endswith("img04.png"):
                raise MemoryError("decoder ran out of memory")
            yield kind, rec

    monkeypatch.setattr(Detector, "iter_records", explodes_on_img04)
    got = batch.predict_items(det, paths, VideoOptions(), per_frame=False)
    assert list(got) == paths
    assert got[paths[2]] == [{"path": paths[2], "error": f"{paths[2]}: MemoryError: decoder ran out of memory"}]
    assert all("p_fake" in got[p][0] for p in paths if p != paths[2])


def test_shards_are_even_and_the_same_in_every_process():
    """The rank of a path depends on its bytes only (not on Python's per-process salted hash, not
    on the other inputs): every rank, machine and later --resume agree."""
    from gazeclip.inference.batch import shard_of

    names = [f"/data/dump/{i:06d}.jpg" for i in range(2000)]
    here = [shard_of(p, 4) for p in names]
    assert min(here.count(r) for r in range(4)) > 400  # roughly even
    code = ("import sys; from gazeclip.inference.batch import shard_of; "
            "print(''.join(str(shard_of(f'/data/dump/{i:06d}.jpg', 4)) for i in range(2000)))")
    there = subprocess.run([sys.executable, "-c", code], env={**ENV, "PYTHONHASHSEED": "12345"},
                           capture_output=True, text=True, check=True).stdout.strip()
    assert there == "".join(map(str, here))
