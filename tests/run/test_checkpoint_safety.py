"""Checkpoints and run folders never run code from a file (torch.load weights_only).

Split from the hardening suite (one file per subsystem); each test reproduces one way gazeclip could
be attacked or hurt by an unlucky file."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import yaml

import gazeclip
from gazeclip.cli import main

from helpers import tiny_cfg

SRC = Path(gazeclip.__file__).resolve().parent  # the package under test (main or this branch)


# ---------------------------------------------------------------- 1. checkpoints run no code
class _Boom:
    """Unpickling this runs os.mkdir(marker): what a crafted checkpoint.pt can do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_checkpoint_runs_no_code(synthetic_data, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    resolved = {**tiny_cfg().to_dict(), "data": str(synthetic_data), "world_size": 1}
    (run / "config.yaml").write_text(yaml.safe_dump(resolved))
    marker = tmp_path / "pwned"
    torch.save({"model": {}, "optimizer": {}, "scheduler": {}, "state": {}, "rng": {"x": _Boom(str(marker))}},
               run / "checkpoint.pt")
    try:
        rc = main(["train", "--out", str(run), "--resume", "--quiet"])
    except BaseException:  # noqa: BLE001 - whatever happened afterwards, the question is the marker
        rc = None
    assert not marker.exists(), "loading the checkpoint ran code from it"
    err = capsys.readouterr().err
    assert rc == 1 and "checkpoint.pt" in err and "pickled" in err and "Traceback" not in err


def test_no_weights_only_false_in_src():
    offenders = [str(p) for p in SRC.rglob("*.py") if "weights_only=False" in p.read_text()]
    assert offenders == []
