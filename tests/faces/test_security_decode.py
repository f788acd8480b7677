"""The one image decoder under hostile files (issue 23, items 1, 5, 10, 11): only PNG, JPEG, WebP,
TIFF, BMP and GIF by their magic bytes, never an external program; the progressive-JPEG scan bomb
refused before decoding; truncated and inconsistent JPEGs refused by name; 16-bit colour PNGs
upright per EXIF. Each case is made here with Pillow, OpenCV and a few patched bytes.

Each refusal is one line naming the file and the fix, and a `predict` batch reports it and goes on.
"""
from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gazeclip.faces.io import MAX_JPEG_SCANS, ImageReadError, decode_image, inspect_image, jpeg_scans
from helpers import encode, eps_bytes, scan_bomb

RNG = np.random.default_rng(23)


def photo(h: int = 256, w: int = 320) -> np.ndarray:
    """Smooth random colours (what a JPEG encoder sees in a photo), not noise."""
    import cv2

    return cv2.resize(RNG.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8), (w, h))


def refused(data: bytes, name: str) -> ImageReadError:
    with pytest.raises(ImageReadError) as e:
        decode_image(data, name)
    msg = str(e.value)
    assert msg.startswith(f"{name}: cannot read image: ") and "\n" not in msg and ";" in msg  # the file, the fix
    return e.value


# ---------------------------------------------------------------- 1. formats: by magic, no external program
def test_eps_is_refused_without_running_anything(monkeypatch):
    import subprocess

    def no_programs(*a, **k):
        raise AssertionError(f"an external program was started: {a[:1]}")

    monkeypatch.setattr(subprocess, "Popen", no_programs)
    for name in ("drawing.eps", "photo.png"):  # the name does not matter, the bytes do
        err = refused(eps_bytes(), name)
        assert "not an image file of a supported format" in err.reason


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "TGA", "PCX"])
def test_other_formats_pillow_knows_are_refused(fmt):
    data = encode(photo(32, 32), fmt)
    assert Image.open(io.BytesIO(data)).format  # Pillow itself would open it
    assert "supported format" in refused(data, f"x.{fmt.lower()}").reason


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF"])
def test_the_six_formats_decode(fmt):
    arr = photo(48, 64)
    out = decode_image(encode(arr, fmt), f"x.{fmt}")
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert inspect_image(encode(arr, fmt)).format == fmt


def test_magic_disagreeing_with_contents_is_refused():
    data = b"\x89PNG\r\n\x1a\n" + encode(photo(16, 16), "JPEG")  # a PNG signature, JPEG inside
    refused(data, "mixed.png")


# ---------------------------------------------------------------- 5. progressive-JPEG scan bomb
def test_scan_bomb_refused_before_decoding():
    bomb = scan_bomb()
    assert jpeg_scans(bomb) > MAX_JPEG_SCANS
    t0 = time.process_time()
    err = refused(bomb, "bomb.jpg")
    assert time.process_time() - t0 < 0.5  # counted from the markers, nothing decoded
    assert "progressive scans" in err.reason and "limit" in err.reason


def test_ordinary_progressive_and_exif_thumbnail_jpegs_pass():
    arr = photo(200, 240)
    prog = encode(arr, "JPEG", progressive=True, quality=90)
    assert 2 <= jpeg_scans(prog) <= 12
    assert decode_image(prog, "p.jpg").shape == (200, 240, 3)
    # an EXIF block holding another JPEG (a thumbnail, with its own scans) is skipped with its segment
    thumb = encode(photo(16, 16), "JPEG", progressive=True)
    exif = Image.Exif()
    exif[0x010E] = "x"
    raw = exif.tobytes() + thumb
    with_thumb = encode(arr, "JPEG", exif=raw)
    assert jpeg_scans(with_thumb) == 1
    assert decode_image(with_thumb, "t.jpg").shape == (200, 240, 3)
    cmyk = io.BytesIO()
    Image.fromarray(arr).convert("CMYK").save(cmyk, "JPEG")
    assert decode_image(cmyk.getvalue(), "cmyk.jpg").shape == (200, 240, 3)


# ---------------------------------------------------------------- 11. truncated / inconsistent JPEGs
def test_jpeg_cut_at_30_percent_with_an_end_marker_refused():
    data = encode(photo(), "JPEG", quality=92)
    cut = data[: int(len(data) * 0.3)] + b"\xff\xd9"
    # what Pillow alone does with it: a picture, most of it grey
    grey = (np.asarray(Image.open(io.BytesIO(cut)).convert("RGB")) == 128).all(-1).mean()
    assert grey > 0.4
    assert "truncated" in refused(cut, "cut.jpg").reason


def test_jpeg_whose_header_claims_9400_pixels_refused():
    data = bytearray(encode(photo(512, 512), "JPEG", quality=90))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 9400, 9400)  # height, width: under the pixel limit
    assert "damaged or truncated" in refused(bytes(data), "claims.jpg").reason


def test_truncated_files_of_every_format_refused():
    arr = photo(120, 120)
    for fmt in ("PNG", "GIF", "WEBP", "TIFF", "BMP"):
        data = encode(arr, fmt)
        refused(data[: len(data) // 3], f"cut.{fmt.lower()}")
    png = encode(arr, "PNG")
    refused(png[: len(png) // 3] + png[-12:], "cut-iend.png")  # IEND appended after the cut


# ---------------------------------------------------------------- 10. 16-bit colour PNG honours EXIF orientation
def png_with_exif(data: bytes, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    body = exif.tobytes()
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body) & 0xFFFFFFFF)
    end = 8 + 25  # after the signature and IHDR
    return data[:end] + chunk + data[end:]


@pytest.mark.parametrize("alpha", [False, True])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_16bit_colour_png_is_turned_upright(orientation, alpha):
    import cv2

    rgb8 = photo(40, 64)
    channels = [rgb8[:, :, ::-1].astype(np.uint16) * 257]
    if alpha:
        channels.append(np.full((40, 64, 1), 65535, np.uint16))
    ok, buf = cv2.imencode(".png", np.concatenate(channels, axis=2))
    assert ok
    wide = png_with_exif(buf.tobytes(), orientation)
    narrow = png_with_exif(encode(rgb8, "PNG"), orientation)
    got, want = decode_image(wide, "wide.png"), decode_image(narrow, "narrow.png")
    assert got.shape == want.shape == ((40, 64, 3) if orientation == 3 else (64, 40, 3))
    assert np.array_equal(got, want)


# ---------------------------------------------------------------- a batch reports each and goes on
def test_predict_batch_reports_each_bad_file_and_goes_on(tmp_path, capsys):
    from helpers import make_run, predict_json

    run = tmp_path / "run"
    make_run(run, faces="none", unknown_threshold=0.5)
    good = encode(photo(40, 48), "PNG")
    data = encode(photo(), "JPEG")
    files = {"a.png": good, "drawing.eps": eps_bytes(), "bomb.jpg": scan_bomb(256, 200),
             "cut.jpg": data[: len(data) // 3] + b"\xff\xd9", "z.png": good}
    for name, b in files.items():
        (tmp_path / name).write_bytes(b)
    rc, recs, err = predict_json(capsys, [*(tmp_path / n for n in files), "--run", run])
    assert rc == 1
    by = {Path(r["path"]).name: r for r in recs}
    assert set(by) == set(files)
    assert "p_fake" in by["a.png"] and "p_fake" in by["z.png"]  # the good file after the bad ones
    for name in ("drawing.eps", "bomb.jpg", "cut.jpg"):
        e = by[name]["error"]
        assert f"{tmp_path / name}: cannot read image" in e and "\n" not in e
