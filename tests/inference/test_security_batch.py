"""Hostile and careless input to `gazeclip predict` batches (issue 23, items 7, 14 and 16): only
regular files are read, nothing found is skipped without a word, output paths are checked before
the work starts, any file name can be written out, bad video sampling values are refused at once.
Each case failed (hung, crashed or lost its output) before these checks."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gazeclip.cli import main
from helpers import make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("sec") / "run"
    make_run(run, faces="none")
    return run


def image(path: Path, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


def json_records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_special_files_are_one_error_each_and_never_hang(run, tmp_path):
    """/dev/zero and a FIFO named on the command line, a FIFO named x.png and a link to /dev/zero
    found in a folder: one error record each, unopened; the good file after them is predicted.
    (Before: /dev/zero was read without end, the FIFO blocked for ever, those in folders were
    skipped without a word.)"""
    folder = tmp_path / "dump"
    folder.mkdir()
    os.mkfifo(tmp_path / "pipe.jpg")
    os.mkfifo(folder / "x.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    (folder / "clip.mp4").symlink_to("/dev/zero")
    image(folder / "y.png")
    try:
        r = subprocess.run([sys.executable, "-m", "gazeclip", "predict", "/dev/zero", str(tmp_path / "pipe.jpg"),
                            str(folder), "--run", str(run), "--json"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        pytest.fail("predict hung on a special file")
    recs = {Path(r["path"]).name: r for r in json_records(r.stdout)}
    assert r.returncode == 1 and set(recs) == {"zero", "pipe.jpg", "x.png", "zero.png", "y.png"}, r.stderr[-2000:]
    assert "a character device, not a regular file" in recs["zero"]["error"]
    assert "a named pipe (FIFO), not a regular file" in recs["x.png"]["error"]
    assert "a named pipe (FIFO)" in recs["pipe.jpg"]["error"]
    assert "a character device" in recs["zero.png"]["error"] and "zero.png" in recs["zero.png"]["error"]
    assert "p_fake" in recs["y.png"]
    # videos are checked the same way, and so is a batch into a result folder
    out = tmp_path / "out"
    assert main(["predict", "/dev/zero", str(folder / "clip.mp4"), str(folder), "--run", str(run),
                 "--out", str(out), "--quiet"]) == 0
    got = {Path(r["path"]).name: r for r in json_records((out / "predictions.jsonl").read_text())}
    assert set(got) == {"zero", "clip.mp4", "x.png", "zero.png", "y.png"}
    assert "not a regular file" in got["clip.mp4"]["error"] and "p_fake" in got["y.png"]
    assert json.loads((out / "summary.json").read_text())["errors"]["files"] == 4


def test_a_folder_that_cannot_be_listed_is_reported(run, tmp_path, capsys, monkeypatch):
    """A mode-000 sub-folder was skipped without a word; now it is one error record naming it."""
    folder = tmp_path / "photos"
    (folder / "locked").mkdir(parents=True)
    image(folder / "locked" / "hidden-from-us.png")
    image(folder / "ok.png")
    os.chmod(folder / "locked", 0)
    if os.geteuid() == 0:  # root lists any folder: make this one fail as it does for everyone else
        real_scandir = os.scandir

        def scandir(path="."):
            if Path(os.fsdecode(path)).resolve() == (folder / "locked").resolve():
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)
    try:
        rc = main(["predict", str(folder), "--run", str(run), "--json"])
    finally:
        os.chmod(folder / "locked", 0o755)
    recs = {Path(r["path"]).name: r for r in json_records(capsys.readouterr().out)}
    assert rc == 1 and set(recs) == {"locked", "ok.png"}
    assert "a folder that cannot be listed (Permission denied)" in recs["locked"]["error"]
    assert "chmod" in recs["locked"]["error"]


@pytest.mark.parametrize("target, why", [("DIR", "it is a folder"), ("/sys/kernel/predictions.csv", "kernel"),
                                         ("FILE/p.csv", "cannot write in"), ("/dev/stdout", "kernel or device")])
def test_csv_target_checked_before_any_work(run, tmp_path, capsys, monkeypatch, target, why):
    """A CSV path that cannot be written is refused in one line before the model is loaded (before:
    a traceback, for a folder only after all the work was done)."""
    from gazeclip.inference import detector

    (tmp_path / "DIR").mkdir()
    (tmp_path / "FILE").write_text("a file, not a folder")
    target = target.replace("DIR", str(tmp_path / "DIR")).replace("FILE", str(tmp_path / "FILE"))
    monkeypatch.setattr(detector, "load", lambda *a, **k: pytest.fail("the work started"))
    assert main(["predict", str(image(tmp_path / "a.png")), "--run", str(run), "--csv", target]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(f"gazeclip predict: --csv {target}: ") and why in err[0], err


def test_out_target_checked_before_any_work(run, tmp_path, capsys, monkeypatch):
    from gazeclip.inference import detector

    monkeypatch.setattr(detector, "load", lambda *a, **k: pytest.fail("the work started"))
    (tmp_path / "f").write_text("x")
    for out, why in ((tmp_path / "f", "not a folder"), ("/proc/self/out", "kernel")):
        assert main(["predict", str(tmp_path), "--run", str(run), "--out", str(out)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0], err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_csv_into_a_read_only_folder_refused_first(run, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        assert main(["predict", str(image(tmp_path / "a.png")), "--run", str(run), "--csv", str(ro / "p.csv")]) == 1
    finally:
        os.chmod(ro, 0o755)
    assert "cannot write in" in capsys.readouterr().err


def test_non_utf8_file_names_never_lose_the_output(run, tmp_path, capsys):
    """A name with bytes that are not UTF-8 is written with them as \\xNN in the CSV, the JSON and
    the result folder (before: UnicodeEncodeError, and the whole CSV was lost)."""
    folder = tmp_path / "names"
    folder.mkdir()
    raw = os.fsdecode(os.fsencode(str(folder)) + b"/caf\xe9.png")  # Latin-1 e-acute
    image(Path(raw))
    image(folder / "plain.png", seed=1)
    shown = str(folder) + "/caf\\xe9.png"
    assert main(["predict", str(folder), "--run", str(run), "--csv", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv", encoding="utf-8")))
    assert sorted(r["path"] for r in rows) == sorted([shown, str(folder / "plain.png")])
    capsys.readouterr()
    assert main(["predict", str(folder), "--run", str(run), "--json"]) == 0
    out = capsys.readouterr().out
    out.encode("utf-8")  # no lone surrogates: valid UTF-8 for any JSON reader
    assert shown in {r["path"] for r in json_records(out)}
    res = tmp_path / "res"
    for resume in ([], ["--resume"]):  # resumed by the real name: nothing is predicted twice
        assert main(["predict", str(folder), "--run", str(run), "--out", str(res), "--quiet", *resume]) == 0
    assert shown in {r["path"] for r in json_records((res / "predictions.jsonl").read_text(encoding="utf-8"))}
    assert json.loads((res / "summary.json").read_text())["this_run"]["predicted"] == 0


@pytest.mark.parametrize("option", [["--frames", "0"], ["--frames", "-3"], ["--fps", "-1"], ["--fps", "nan"],
                                    ["--fps", "inf"], ["--fps", "0"], ["--chunk", "0"]])
def test_bad_sampling_values_refused_at_parse_time(tmp_path, capsys, option):
    with pytest.raises(SystemExit) as e:
        main(["predict", str(tmp_path), "--run", str(tmp_path / "no-run"), *option])
    assert e.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and option[0] in err[0] and repr(option[1]) in err[0], err
