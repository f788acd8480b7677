"""Caches notice edited images and rewrite damaged entries.

Split from the hardening suite (one file per subsystem); each test reproduces one way gazeclip could
be attacked or hurt by an unlucky file."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

import gazeclip

from helpers import png_bytes

SRC = Path(gazeclip.__file__).resolve().parent  # the package under test (main or this branch)


# ---------------------------------------------------------------- 6. caches
def test_samples_cache_notices_an_edited_image_and_rebuilds_a_damaged_one(synthetic_data, tmp_path):
    import shutil

    from gazeclip.data.dataset import manifest_samples
    from gazeclip.data.manifest import read_manifest

    data = tmp_path / "d"
    shutil.copytree(synthetic_data, data, ignore=shutil.ignore_patterns(".cache"))
    rows = [r for r in read_manifest(data) if r.split == "val"]
    kw = dict(mode="none", estimator="ethxgaze-r18", size=32, gaze_dim=None)
    a = manifest_samples(rows, data, **kw)
    img = data / rows[0].path
    st = img.stat()
    img.write_bytes(png_bytes(np.zeros((32, 32, 3), np.uint8)))  # edited in place, manifest unchanged
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    b = manifest_samples(rows, data, **kw)
    assert not np.array_equal(a.crops[0], b.crops[0]) and (b.crops[0] == 0).all()
    assert np.array_equal(a.crops[1:], b.crops[1:])
    for f in (data / ".cache" / "samples").glob("*.npz"):
        f.write_bytes(f.read_bytes()[:200])  # truncated
    c = manifest_samples(rows, data, **kw)
    assert np.array_equal(b.crops, c.crops)


def test_feature_cache_rewrites_damaged_entries(tmp_path):
    from gazeclip.data.dataset import crop_key
    from gazeclip.data.feature_cache import FeatureCache

    crops = np.random.default_rng(0).integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
    keys = [crop_key(c) for c in crops]
    cache = FeatureCache(tmp_path, "p")

    def encode(x):
        return x.flatten(1)[:, :6].reshape(len(x), 2, 3) * 2

    pix = lambda idx: torch.from_numpy(crops[idx].astype(np.float32) / 255)  # noqa: E731
    assert cache.fill(keys, pix, encode) == 4
    files = sorted(p for p in (tmp_path / "p").rglob("*") if p.is_file())
    assert len(files) == 4
    b = bytearray(files[0].read_bytes())
    b[len(b) // 2] ^= 0xFF  # a flipped byte
    files[0].write_bytes(bytes(b))
    files[1].write_bytes(files[1].read_bytes()[:40])  # truncated
    cache = FeatureCache(tmp_path, "p")
    assert cache.fill(keys, pix, encode) == 2  # both damaged entries encoded and written again
    for i, k in enumerate(keys):
        torch.testing.assert_close(cache.get(k), encode(pix([i]))[0], atol=1e-2, rtol=1e-3)


def test_gaze_cache_rewrites_damaged_entries(tmp_path):
    from gazeclip.gaze.cache import GazeCache
    from gazeclip.records import ImageFaces

    cache = GazeCache(tmp_path, {"x": 1})
    cache.put("ab" * 32, ImageFaces("a.png", [], (4, 4)))
    p = cache.path_for("ab" * 32)
    p.write_bytes(p.read_bytes()[:30])
    assert cache.get("ab" * 32, "a.png") is None
    cache.put("ab" * 32, ImageFaces("a.png", [], (4, 4)))
    assert cache.get("ab" * 32, "a.png").size == (4, 4)
