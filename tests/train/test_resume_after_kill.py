"""Training resumes from a kill at any point; a kill during the model save leaves a loadable model.

Split from the hardening suite (one file per subsystem); each test reproduces one way gazeclip could
be attacked or hurt by an unlucky file."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import gazeclip

from helpers import TAXONOMY, tiny_cfg

SRC = Path(gazeclip.__file__).resolve().parent  # the package under test (main or this branch)


# ---------------------------------------------------------------- 7. resume from any kill
def test_resume_without_checkpoint_starts_over_and_cleans_temp_files(synthetic_data, tmp_path):
    from gazeclip.train.trainer import Interrupted, train

    run = tmp_path / "run"
    with pytest.raises(Interrupted):  # killed at step 1: before the first checkpoint (end of epoch 1)
        train(tiny_cfg(interrupt_after_steps=1), synthetic_data, run)
    assert not (run / "checkpoint.pt").exists() and (run / "config.yaml").is_file()
    (run / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"\0" * 1000)  # what a kill during a save leaves
    (run / ".model.abc123").mkdir()
    (run / ".model.abc123" / "model.safetensors").write_bytes(b"half")
    res = train(tiny_cfg(), synthetic_data, run, resume=True)
    assert res.best_epoch == 1 and (run / "summary.json").is_file()
    assert not list(run.glob(".*")), "stale temp files left in the run folder"


def test_kill_at_any_rename_of_the_model_save_leaves_a_loadable_model(tiny_backbone, tmp_path, monkeypatch):
    from gazeclip.train import trainer
    from gazeclip.models import create_model, from_pretrained
    from gazeclip.models.interface import Taxonomy

    save = getattr(trainer, "save_model", None) or getattr(trainer, "_save_model_atomic")
    tx = Taxonomy(**TAXONOMY)
    old = create_model("gazeclip", backbone=tiny_backbone, taxonomy=tx)
    new = create_model("gazeclip", backbone=tiny_backbone, taxonomy=tx)
    with torch.no_grad():
        for p in new.trainable_parameters().values():
            p.add_(1.0)
    want = [{k: v.clone() for k, v in m.trainable_state_dict().items()} for m in (old, new)]

    class Killed(BaseException):
        pass

    real = {"replace": os.replace, "rename": os.rename}

    def counting(limit):
        n = {"calls": 0}

        def wrap(name):
            def f(*a, **k):
                n["calls"] += 1
                if n["calls"] == limit:
                    raise Killed
                return real[name](*a, **k)
            return f
        monkeypatch.setattr(os, "replace", wrap("replace"))
        monkeypatch.setattr(os, "rename", wrap("rename"))
        return n

    n = counting(10 ** 9)  # count the renames of a save over an existing model
    save(old, tmp_path / "probe" / "model")
    first = n["calls"]
    save(new, tmp_path / "probe" / "model")
    total = n["calls"] - first
    monkeypatch.setattr(os, "replace", real["replace"])
    monkeypatch.setattr(os, "rename", real["rename"])
    assert total >= 2
    for k in range(1, total + 1):
        dest = tmp_path / f"k{k}" / "model"
        save(old, dest)
        counting(k)
        with pytest.raises(Killed):
            save(new, dest)
        monkeypatch.setattr(os, "replace", real["replace"])
        monkeypatch.setattr(os, "rename", real["rename"])
        m = from_pretrained(dest, backbone=tiny_backbone)
        got = m.trainable_state_dict()
        assert any(all(torch.equal(got[key], w[key]) for key in w) for w in want), f"kill at rename {k}"
