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
