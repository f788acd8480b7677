"""Run folders validated on load: damaged or edited files refused by name.

Split from the hardening suite (one file per subsystem); each test reproduces one way gazeclip could
be attacked or hurt by an unlucky file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import gazeclip

from helpers import predict_json

SRC = Path(gazeclip.__file__).resolve().parent  # the package under test (main or this branch)


# ---------------------------------------------------------------- 4. run folders validated on load
def _copy_run(run_dir: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    return dst


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_weights_named(untrained_run, tmp_path, images, capsys, damage):
    run = _copy_run(untrained_run, tmp_path)
    w = run / "model" / "model.safetensors"
    b = bytearray(w.read_bytes())
    if damage == "flip":
        b[-5] ^= 0x01  # one bit of one weight
    else:
        b = b[: len(b) // 2]
    w.write_bytes(bytes(b))
    rc, recs, err = predict_json(capsys, [images[0], "--run", run])
    assert rc == 1 and recs == []
    assert "model.safetensors" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name,content", [
    ("taxonomy.json", '{"classes": ["real", "gan-a"'),
    ("calibration.json", '{"unknown_threshold": "high"}'),
    ("calibration.json", '{"version": 2, "unknown_threshold": 0.5, "detection_threshold": 7}'),
    ("calibration.json", "\x00\x01garbage"),
    ("config.yaml", "model: [unclosed"),
    ("config.yaml", "epochs: many\n"),
    ("model/config.json", "{not json"),
])
def test_damaged_run_file_named(untrained_run, tmp_path, images, capsys, name, content):
    run = _copy_run(untrained_run, tmp_path)
    (run / name).write_text(content)
    rc, recs, err = predict_json(capsys, [images[0], "--run", run])
    assert rc == 1 and recs == []
    assert name.split("/")[-1] in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_reordered_taxonomy_refused(untrained_run, tmp_path, images, capsys):
    run = _copy_run(untrained_run, tmp_path)
    tx = json.loads((run / "taxonomy.json").read_text())
    tx["classes"] = [tx["classes"][0], *reversed(tx["classes"][1:])]  # would silently rename generators
    (run / "taxonomy.json").write_text(json.dumps(tx))
    rc, recs, err = predict_json(capsys, [images[0], "--run", run])
    assert rc == 1 and recs == [] and "taxonomy.json" in err
    # the same edit inside model/config.json: refused too, its weights recorded the original
    run2 = _copy_run(untrained_run, tmp_path / "b")
    cfg = json.loads((run2 / "model" / "config.json").read_text())
    cfg["taxonomy"]["classes"] = tx["classes"]
    (run2 / "model" / "config.json").write_text(json.dumps(cfg))
    rc, recs, err = predict_json(capsys, [images[0], "--run", run2])
    assert rc == 1 and recs == [] and "config.json" in err


def test_cli_top_level_turns_file_errors_into_one_line(monkeypatch, capsys):
    import sys
    import types

    from gazeclip import cli
    from gazeclip.errors import DamagedFileError

    mod = types.ModuleType("gazeclip_fake_cmd")
    mod.add_arguments = lambda p: None

    def run(args):
        raise DamagedFileError("/x/y.json", "damaged JSON")
    mod.run = run
    monkeypatch.setitem(sys.modules, "gazeclip_fake_cmd", mod)
    monkeypatch.setitem(cli.COMMANDS, "fake", ("gazeclip_fake_cmd", "test"))
    assert cli.main(["fake"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == ["gazeclip fake: /x/y.json: damaged JSON; restore it "
                                                            "from a good copy or write it again with the command "
                                                            "that made it"]
