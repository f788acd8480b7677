"""Training engine on a tiny synthetic dataset and the tiny-random backbone: loss goes down,
resume after an interruption equals an uninterrupted run, 2-process DDP equals one process."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gazeclip.run.config import TrainConfig
from gazeclip.train.trainer import Interrupted, train


def cfg(**kw) -> TrainConfig:
    base = dict(model="gazeclip", backbone="tiny-random", protocol="P2", epochs=2, batch_size=8, lr=3e-3,
                faces="none", progress=False, patience=0, warmup_epochs=0.5,
                model_overrides={"loss_contrastive": 0.0})
    base.update(kw)
    return TrainConfig(**base)


def final_weights(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]


def test_train_reduces_loss_and_writes_run(synthetic_data, tmp_path):
    res = train(cfg(epochs=4, model_overrides={}), synthetic_data, tmp_path / "run")
    losses = [h["train_loss"] for h in res.history]
    assert losses[-1] < losses[0], losses
    run = tmp_path / "run"
    for f in ("config.yaml", "taxonomy.json", "model", "checkpoint.pt", "log.csv", "tb", "calibration.json",
              "summary.json"):
        assert (run / f).exists(), f
    assert len((run / "log.csv").read_text().strip().splitlines()) == 1 + len(res.history)
    with pytest.raises(FileExistsError):  # a finished run is never overwritten
        train(cfg(epochs=1), synthetic_data, run)
    # the feature cache was filled and used: one .npz per train/val crop
    assert len(list((synthetic_data / ".cache" / "features").rglob("*.npz"))) >= 36


def test_resume_after_interrupt_equals_uninterrupted(synthetic_data, tmp_path):
    # augmentation on: flipped items bypass the cache and must still replay identically
    c = cfg(checkpoint_every=2, hflip=0.5)
    train(c, synthetic_data, tmp_path / "full")
    with pytest.raises(Interrupted):  # killed at step 5 (of 6); the last checkpoint is at step 4
        train(c.replace(interrupt_after_steps=5), synthetic_data, tmp_path / "cut")
    train(c, synthetic_data, tmp_path / "cut", resume=True)
    a, b = final_weights(tmp_path / "full"), final_weights(tmp_path / "cut")
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_match_single(synthetic_data, tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    assert torchrun, "torchrun not found next to the interpreter"
    args = ["train", "--model", "gazeclip", "--backbone", "tiny-random", "--data", str(synthetic_data), "--protocol", "P2",
            "--epochs", "2", "--batch-size", "8", "--lr", "3e-3", "--faces", "none", "--quiet",
            "--set", "patience=0", "--set", "warmup_epochs=0.5", "--model-arg", "loss_contrastive=0",
            "--precision", "fp32"]  # bf16 (auto on CPUs with native bf16) rounds per-rank batches differently
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "gazeclip", *args, "--out", str(tmp_path / "one")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", str(_free_port()), "-m", "gazeclip",
                          *args, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a, b = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4, msg=k)


def test_bf16_training_shares_the_fp32_feature_cache_and_follows_fp32(synthetic_data, tmp_path):
    import json

    syn = synthetic_data

    cache = tmp_path / "cache"
    a = train(cfg(epochs=1, precision="fp32", cache_dir=str(cache)), syn, tmp_path / "fp32")
    n_entries = len(list(cache.rglob("*.npz")))
    b = train(cfg(epochs=1, precision="bf16", cache_dir=str(cache)), syn, tmp_path / "bf16")
    # the cache holds fp32 states whatever the training precision: one prefix folder, nothing added
    assert len([d for d in cache.iterdir() if d.is_dir()]) == 1
    assert len(list(cache.rglob("*.npz"))) == n_entries
    assert json.loads((tmp_path / "bf16" / "summary.json").read_text())["precision"] == "bf16"
    assert json.loads((tmp_path / "fp32" / "summary.json").read_text())["precision"] == "fp32"
    la, lb = a.history[0]["train_loss"], b.history[0]["train_loss"]
    assert abs(la - lb) < 0.05 * abs(la), (la, lb)
    # the saved weights are fp32 (master weights), whatever the step computed in
    w = final_weights(tmp_path / "bf16")
    assert w and all(v.dtype == torch.float32 for v in w.values())


def test_feature_cache_roundtrip_and_fill(tmp_path):
    import numpy as np

    from gazeclip.data.dataset import crop_key
    from gazeclip.data.feature_cache import FeatureCache

    crops = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    crops[4] = crops[0]  # a duplicate crop shares its entry
    keys = [crop_key(c) for c in crops]
    assert keys[0] == keys[4] and len(set(keys)) == 4
    cache = FeatureCache(tmp_path, "tiny-random-L8-S32")
    calls = []

    def encode(x):
        calls.append(len(x))
        return x.flatten(1)[:, :6].reshape(len(x), 2, 3) * 2

    pix = lambda idx: torch.from_numpy(crops[idx].astype(np.float32) / 255)  # noqa: E731
    assert cache.fill(keys, pix, encode, batch_size=2) == 4 and sum(calls) == 4
    assert cache.fill(keys, pix, encode) == 0  # everything cached: nothing recomputed
    got = cache.get(keys[1])
    want = encode(pix([1]))[0]
    torch.testing.assert_close(got, want, atol=1e-2, rtol=1e-3)  # float16 storage
    assert cache.get("0" * 64) is None
    # one .npz file (zip: CRC-checked) per crop, under the prefix's folder
    files = list((tmp_path / "tiny-random-L8-S32").rglob("*.npz"))
    assert len(files) == 4 and np.load(files[0])["states"].dtype == np.float16
