"""One image decoder, one pixel limit: headers checked before decoding, 16-bit without widening copies.

Split from the hardening suite (one file per subsystem); each test reproduces one way gazeclip could
be attacked or hurt by an unlucky file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gazeclip

from helpers import png_bytes, png_header_only

SRC = Path(gazeclip.__file__).resolve().parent  # the package under test (main or this branch)


# ---------------------------------------------------------------- 2. one image decoder, one limit
def test_huge_16bit_png_refused_from_header(tmp_path, monkeypatch):
    import cv2

    from gazeclip.faces.io import ImageReadError, load_image

    calls = []
    real_imdecode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: calls.append(1) or real_imdecode(*a, **k))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(30000, 30000))  # 5.4 GB of 16-bit RGB, declared in 4 KB
    with pytest.raises(ImageReadError, match=r"bomb\.png.*900000000 pixels.*GAZECLIP_MAX_IMAGE_PIXELS"):
        load_image(bomb)
    assert calls == [], "OpenCV was asked to decode a 900-megapixel image"


def test_between_one_and_two_times_pillow_limit_refused(tmp_path):
    from PIL import Image

    from gazeclip.faces.io import ImageReadError, load_image

    p = tmp_path / "big.png"  # 100 megapixels (Pillow only warns below 2 x 89.5 M), 1-bit: 30 KB on disk
    Image.new("1", (10000, 10000)).save(p)
    with pytest.raises(ImageReadError, match="big.png"):
        load_image(p)


def test_limit_is_configurable(tmp_path, monkeypatch):
    from gazeclip.faces.io import ImageReadError, load_image, set_max_image_pixels

    p = tmp_path / "a.png"
    p.write_bytes(png_bytes(np.full((40, 50, 3), 7, np.uint16) * 1000))  # 16-bit: the OpenCV path
    monkeypatch.setenv("GAZECLIP_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageReadError, match="a.png"):
        load_image(p)
    monkeypatch.setenv("GAZECLIP_MAX_IMAGE_PIXELS", "2000")
    assert load_image(p).shape == (40, 50, 3)
    set_max_image_pixels(10)
    try:
        with pytest.raises(ImageReadError):
            load_image(p)
    finally:
        set_max_image_pixels(None)


def test_16bit_converted_exactly_without_widening_copies(tmp_path):
    import tracemalloc

    from gazeclip.faces.io import decode_image

    rng = np.random.default_rng(0)
    h, w = 400, 500
    rgba = rng.integers(0, 65536, (h, w, 4), dtype=np.uint16)  # BGRA for OpenCV
    data = png_bytes(rgba)
    decode_image(png_bytes(rgba[:2, :2]), "warm-up.png")  # Pillow imports its plugins on first use
    tracemalloc.start()
    out = decode_image(data, "x.png")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    hi = (rgba >> 8).astype(np.int64)
    a = hi[:, :, 3:4]
    want = (hi[:, :, 2::-1] * a + 255 * (255 - a) + 127) // 255  # composited on white
    assert np.array_equal(out, want.astype(np.uint8))
    # the 16-bit decode itself is h*w*8 bytes; int64/float copies of it would be 4-8x that
    assert peak < 2 * h * w * 8, f"peak {peak / 1e6:.1f} MB for a {h * w * 8 / 1e6:.1f} MB 16-bit image"
    rgb = rng.integers(0, 65536, (h, w, 3), dtype=np.uint16)
    assert np.array_equal(decode_image(png_bytes(rgb), "y.png"), (rgb[:, :, ::-1] >> 8).astype(np.uint8))


def test_every_image_read_in_src_goes_through_the_decoder():
    allowed = {SRC / "faces" / "io.py"}
    hits = [f"{p.relative_to(SRC)}: {needle}" for p in SRC.rglob("*.py") if p not in allowed
            for needle in ("Image.open(", "cv2.imread(", "cv2.imdecode(", "imdecode(") if needle in p.read_text()]
    assert hits == []
