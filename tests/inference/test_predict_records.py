"""predict: records matched to images by position; broken links reported; empty input refused.

Split from the hardening suite (one file per subsystem); each test reproduces one way gazeclip could
be attacked or hurt by an unlucky file."""
from __future__ import annotations

from pathlib import Path

import pytest

import gazeclip

from helpers import predict_json

SRC = Path(gazeclip.__file__).resolve().parent  # the package under test (main or this branch)


# ---------------------------------------------------------------- 8. predict
def test_predict_records_by_position(untrained_run, images, capsys):
    a, b = images
    rc, recs, _ = predict_json(capsys, [a, a, b, a, "--run", untrained_run])
    assert rc == 0
    assert [(Path(r["path"]).name, r["face"]) for r in recs] == [("img0.png", 0), ("img0.png", 0),
                                                                  ("img1.png", 0), ("img0.png", 0)]
    # each record is its own file's (batch composition moves the last printed digit at most)
    solo = {p: predict_json(capsys, [p, "--run", untrained_run])[1][0]["p_fake"] for p in (a, b)}
    assert [r["p_fake"] for r in recs] == pytest.approx([solo[a], solo[a], solo[b], solo[a]], abs=1e-5)


def test_predict_reports_broken_links_and_refuses_empty_input(untrained_run, images, tmp_path, capsys):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "ok.png").write_bytes(images[0].read_bytes())
    (folder / "gone.png").symlink_to(tmp_path / "deleted.png")
    rc, recs, err = predict_json(capsys, [folder, "--run", untrained_run])
    assert rc == 1 and [Path(r["path"]).name for r in recs] == ["gone.png", "ok.png"]
    assert "broken symbolic link" in recs[0]["error"]
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, recs, err = predict_json(capsys, [empty, "--run", untrained_run])
    assert rc != 0 and recs == [] and "no image files" in err
