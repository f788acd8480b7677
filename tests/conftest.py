"""Shared fixtures. Tests never touch the network. Tests marked `real` use the pulled weights;
`make test` pulls them first and sets GAZECLIP_REQUIRE_WEIGHTS=1, so there they fail instead of skip."""
from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _weights_present() -> bool:
    from gazeclip.weights import status

    return all(row.present for row in status())


@pytest.fixture(scope="session")
def real_weights():
    """Skip (or fail under `make test`) when the pretrained weights have not been pulled."""
    if not _weights_present():
        msg = "pretrained weights missing: run `gazeclip weights pull`"
        if os.environ.get("GAZECLIP_REQUIRE_WEIGHTS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    from gazeclip.weights import home

    return home()


@pytest.fixture(scope="session")
def smoke(real_weights, tmp_path_factory):
    """The smoke benchmark, built once per session (seed 0, as `gazeclip bench build --preset smoke`).
    Shared: tests must not write into it (point caches elsewhere)."""
    from gazeclip.bench.build import PRESETS, BuildConfig, build

    out = tmp_path_factory.mktemp("bench-smoke")
    build(out, BuildConfig(PRESETS["smoke"], seed=0), quiet=True)
    return out


@pytest.fixture(scope="session")
def tiny_backbone():
    from gazeclip.models.backbones import create_backbone

    return create_backbone("tiny-random")


@pytest.fixture()
def images(tmp_path):
    """Two small flat-colour PNG files (no face)."""
    from PIL import Image

    out = []
    for i, colour in enumerate(((200, 30, 30), (20, 180, 60))):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (40, 30), colour).save(p)
        out.append(p)
    return out


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """One synthetic dataset for every test that trains: 3 train classes x 8 train items (divisible
    by the batch of 8 and by 2 processes), 4 val and 4 test items per class, whole images."""
    from gazeclip.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("syn"), n_train=8, n_val=4, n_test=4)


@pytest.fixture(scope="session")
def untrained_run(tmp_path_factory):
    """A whole-image run folder holding an untrained tiny model (what `train` leaves, minus training)."""
    from helpers import make_run

    run = tmp_path_factory.mktemp("untrained") / "run"
    make_run(run, faces="none", unknown_threshold=0.5)
    return run


@pytest.fixture(scope="session")
def trained_run(synthetic_data, tmp_path_factory):
    """One tiny trained run for every test that needs one: the packaged `tiny` run config on
    `synthetic_data`, 2 epochs, seed 1, hflip 0.25. Tests that change it work on a copy."""
    from gazeclip.cli import main

    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--config", "tiny", "--data", str(synthetic_data), "--out", str(run), "--epochs", "2",
                 "--seed", "1", "--set", "hflip=0.25", "--quiet"]) == 0
    return run
