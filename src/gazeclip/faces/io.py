"""Reading images: any common file becomes an (H, W, 3) uint8 RGB array, upright per EXIF.

This is the one image decoder of gazeclip (every image file read goes through `load_image` or
`decode_image`). Before any pixel is decoded, the size the file declares in its header is checked
against one limit, `max_image_pixels()` (default 89,478,485 pixels, Pillow's own default; set
`GAZECLIP_MAX_IMAGE_PIXELS` or call `set_max_image_pixels`), for every format and bit depth, so a
small file declaring a huge image cannot take the machine's memory.

Every failure is one `ImageReadError` whose message names the file and says what to do, so a
batch job can report it and go on.
"""
from __future__ import annotations

import io
import os
import sys
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import GazeclipError

# design choice, not from the paper: transparent pixels are composited on white (a passport-photo
# background) rather than black, so a cut-out face keeps a visible outline; see `background`.
DEFAULT_BACKGROUND = (255, 255, 255)

MAX_PIXELS_ENV = "GAZECLIP_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's default decompression-bomb limit (about 9459 x 9459)
# the largest file worth reading for that many pixels: 16-bit RGBA uncompressed (8 bytes a pixel)
# plus room for metadata; anything bigger is refused before it is read into memory
_BYTES_PER_PIXEL_BOUND = 8
_METADATA_BOUND = 64 << 20
_max_pixels_override: int | None = None


class ImageReadError(GazeclipError, ValueError):
    """A file could not be read as an image. `str(err)` is one line naming the file and the fix."""

    def __init__(self, path: str | os.PathLike, reason: str, fix: str | None = None):
        self.path = str(path)
        self.reason = reason
        fix = fix or "check that it is a complete PNG/JPEG/TIFF/WebP/BMP image (re-export or re-download it)"
        super().__init__(f"{self.path}: cannot read image: {reason}; {fix}")


def max_image_pixels() -> int:
    """The pixel limit (width x height) of any image read: `set_max_image_pixels`, else the
    environment variable GAZECLIP_MAX_IMAGE_PIXELS, else 89,478,485."""
    if _max_pixels_override is not None:
        return _max_pixels_override
    env = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if env:
        try:
            value = int(float(env))
        except ValueError:
            raise GazeclipError(f"{MAX_PIXELS_ENV}={env!r} is not a number of pixels; "
                                f"set it to e.g. {DEFAULT_MAX_PIXELS}") from None
        if value < 1:
            raise GazeclipError(f"{MAX_PIXELS_ENV}={env!r} must be at least 1")
        return value
    return DEFAULT_MAX_PIXELS


def set_max_image_pixels(n: int | None) -> None:
    """Set the pixel limit for this process (None: back to the environment/default)."""
    global _max_pixels_override
    if n is not None and int(n) < 1:
        raise ValueError(f"max image pixels {n}: must be at least 1")
    _max_pixels_override = None if n is None else int(n)


def _too_large(name, w: int, h: int, limit: int) -> ImageReadError:
    return ImageReadError(name, f"it declares {w}x{h} pixels ({w * h / 1e6:.1f} megapixels), over the limit of "
                          f"{limit / 1e6:.1f} megapixels",
                          f"downscale it, or raise the limit with {MAX_PIXELS_ENV}=N if you have the memory")


def check_declared_size(name, w: int, h: int, limit: int | None = None) -> None:
    """Refuse an image whose header declares more than the pixel limit."""
    limit = max_image_pixels() if limit is None else limit
    if w < 1 or h < 1:
        raise ImageReadError(name, f"it declares an empty {w}x{h} image")
    if w * h > limit:
        raise _too_large(name, w, h, limit)


def _high_byte(arr: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 (the high byte) as one uint8 copy: no wider temporary array."""
    a = np.ascontiguousarray(arr)
    big = a.dtype.byteorder == ">" or (a.dtype.byteorder in "=|" and sys.byteorder == "big")
    return np.ascontiguousarray(a.view(np.uint8)[..., 0::2] if big else a.view(np.uint8)[..., 1::2])


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale integer/float pixel data of any depth to 0..255 without widening copies."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return _high_byte(arr)
    if arr.dtype.kind in "iu" and arr.max(initial=0) > 255:
        # 16-bit data held in a wider integer (PIL's mode I): clip and keep the high byte, at the
        # array's own width
        a = np.clip(arr, 0, 65535)
        np.right_shift(a, 8, out=a)
        return a.astype(np.uint8)
    if arr.dtype.kind in "iub":
        return np.clip(arr, 0, 255).astype(np.uint8)
    # float: assume 0..1 when it fits, else 0..255 (float32 at most)
    a = np.nan_to_num(arr.astype(np.float32, copy=True), copy=False)
    if a.max(initial=0.0) <= 1.0:
        a *= 255.0
    np.rint(a, out=a)
    np.clip(a, 0, 255, out=a)
    return a.astype(np.uint8)


def pil_to_rgb(im: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    mode = im.mode
    if mode in ("RGB",):
        return np.asarray(im, dtype=np.uint8)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (*background, 255))
        return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"), dtype=np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        grey = _to_uint8(np.asarray(im))
        return np.repeat(grey[:, :, None], 3, axis=2)
    # L, 1, P, CMYK, YCbCr, LAB, HSV: PIL knows the conversion
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _read_16bit_colour(data: bytes, background: tuple[int, int, int]) -> np.ndarray | None:
    """48/64-bit colour PNG: PIL would drop to 8 bits badly; OpenCV reads them. The caller has
    checked the declared size. Converted at 16 bits at most (no float or int64 copies)."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3:
        return None
    hi = _high_byte(arr)  # (H, W, C) uint8, BGR(A)
    del arr  # the 16-bit decode is freed before anything else is allocated
    if hi.shape[2] == 4:
        # out = (rgb * a + bg * (255 - a) + 127) // 255 in uint16 (255 * 255 fits), a block of rows
        # at a time so that the 16-bit temporaries stay small
        out = np.empty((*hi.shape[:2], 3), np.uint8)
        bg = np.asarray(background, np.uint16)
        for r in range(0, hi.shape[0], 32):
            blk = hi[r:r + 32]
            alpha = blk[:, :, 3:4].astype(np.uint16)
            rgb = blk[:, :, 2::-1].astype(np.uint16)
            rgb *= alpha
            rgb += (255 - alpha) * bg
            rgb += 127
            rgb //= 255
            out[r:r + 32] = rgb
        return out
    return np.ascontiguousarray(hi[:, :, 2::-1])


def _is_16bit_colour_png(data: bytes) -> bool:
    # PNG IHDR: bit depth at byte 24, colour type at byte 25 (2 = RGB, 6 = RGBA)
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 26 and data[24] == 16 and data[25] in (2, 6)


def _pillow_allows(limit: int) -> None:
    """Pillow refuses images over 2x its own MAX_IMAGE_PIXELS while opening the header; make sure
    it never refuses what our limit allows (our check, on the header, is the one that applies)."""
    cur = Image.MAX_IMAGE_PIXELS
    if cur is not None and cur < limit:
        Image.MAX_IMAGE_PIXELS = limit


def decode_image(data: bytes, name: str | os.PathLike = "<bytes>",
                 background: tuple[int, int, int] = DEFAULT_BACKGROUND, max_pixels: int | None = None) -> np.ndarray:
    """Decode encoded image bytes; `name` is only used in error messages. The size the header
    declares is checked against the pixel limit before anything is decoded."""
    if not data:
        raise ImageReadError(name, "the file is empty")
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    _pillow_allows(limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. PIL's palette/EXIF warnings: not the user's concern
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size  # from the header: nothing decoded yet
                check_declared_size(name, w, h, limit)
                if _is_16bit_colour_png(data):
                    arr = _read_16bit_colour(data, background)
                    if arr is not None:
                        return _checked(arr, name)
                im.load()  # force the full decode now, so a truncated file fails here
                im = ImageOps.exif_transpose(im)
                arr = pil_to_rgb(im, background)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(name, "not an image file (unknown format)") from None
    except Image.DecompressionBombError as e:  # Pillow's own check, while reading the header
        raise ImageReadError(name, f"it declares more pixels than the limit of {limit / 1e6:.1f} megapixels "
                             f"({str(e).split(',')[0]})",
                             f"downscale it, or raise the limit with {MAX_PIXELS_ENV}=N if you have the memory") from None
    except MemoryError:
        raise ImageReadError(name, "not enough memory to decode it",
                             f"downscale it, or lower {MAX_PIXELS_ENV} to refuse such files up front") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "truncated" in reason.lower() or isinstance(e, EOFError):
            reason = f"the file is truncated ({reason})"
        raise ImageReadError(name, reason) from None
    return _checked(arr, name)


def _checked(arr: np.ndarray, name) -> np.ndarray:
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageReadError(name, f"unexpected decoded shape {arr.shape}")
    return np.ascontiguousarray(arr)


def read_bytes(path: str | os.PathLike, max_pixels: int | None = None) -> bytes:
    """The raw bytes of a file, with an `ImageReadError` for missing/unreadable files and for files
    too big to hold an image within the pixel limit (refused before they are read)."""
    p = Path(path)
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    try:
        size = p.stat().st_size
        if p.is_file() and size > limit * _BYTES_PER_PIXEL_BOUND + _METADATA_BOUND:
            raise ImageReadError(path, f"the file is {size / 1e9:.1f} GB, more than an image within the limit of "
                                 f"{limit / 1e6:.1f} megapixels can take",
                                 f"downscale it, or raise the limit with {MAX_PIXELS_ENV}=N")
        return p.read_bytes()
    except FileNotFoundError:
        if p.is_symlink():
            raise ImageReadError(path, f"broken symbolic link (to {os.readlink(p)})",
                                 "fix or remove the link") from None
        raise ImageReadError(path, "no such file", "check the path") from None
    except IsADirectoryError:
        raise ImageReadError(path, "it is a folder", "pass image files (or use a glob like DIR/*.jpg)") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied", "make the file readable") from None
    except OSError as e:
        raise ImageReadError(path, str(e), "check the file system") from None


def load_image(path: str | os.PathLike, background: tuple[int, int, int] = DEFAULT_BACKGROUND) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file, EXIF-rotated; grey, palette, RGBA, CMYK and 16-bit
    files are converted. Raises `ImageReadError` (one line naming the file and the fix)."""
    return decode_image(read_bytes(path), path, background)


def image_header(path: str | os.PathLike) -> tuple[str, tuple[int, int], str]:
    """(format, (width, height), mode) from the header only, with the same size check."""
    data = read_bytes(path)
    _pillow_allows(max_image_pixels())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                check_declared_size(path, *im.size)
                return im.format or "?", im.size, im.mode
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image file (unknown format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise ImageReadError(path, str(e).splitlines()[0] if str(e) else type(e).__name__) from None


def find_images(paths: Iterable[str | os.PathLike], exts: Iterable[str]) -> list[str]:
    """Files as given; folders searched recursively for the extensions `exts` (sorted, hidden
    files and folders skipped). Broken symbolic links found in folders are kept, so that they are
    reported by name rather than skipped without a word; a missing path given is kept too."""
    exts = {e.lower() for e in exts}
    out: list[str] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = []
            for q in p.rglob("*"):
                if q.suffix.lower() not in exts or any(part.startswith(".") for part in q.relative_to(p).parts):
                    continue
                if q.is_file() or (q.is_symlink() and not q.exists()):
                    found.append(str(q))
            out += sorted(found)
        else:
            out.append(str(p))
    return out
