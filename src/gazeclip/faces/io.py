"""Reading images: any common file becomes an (H, W, 3) uint8 RGB array, upright per EXIF.

Every failure is one `ImageReadError` whose message names the file and says what to do, so a
batch job can report it and go on.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# design choice, not from the paper: transparent pixels are composited on white (a passport-photo
# background) rather than black, so a cut-out face keeps a visible outline; see `background`.
DEFAULT_BACKGROUND = (255, 255, 255)


class ImageReadError(ValueError):
    """A file could not be read as an image. `str(err)` is one line naming the file and the fix."""

    def __init__(self, path: str | os.PathLike, reason: str, fix: str | None = None):
        self.path = str(path)
        self.reason = reason
        fix = fix or "check that it is a complete PNG/JPEG/TIFF/WebP/BMP image (re-export or re-download it)"
        super().__init__(f"{self.path}: cannot read image: {reason}; {fix}")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale integer/float pixel data of any depth to 0..255."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16 or (arr.dtype.kind in "iu" and arr.max(initial=0) > 255):
        # 16-bit (PIL gives I;16 as uint16 or int32): keep the high byte
        return (np.clip(arr.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
    if arr.dtype.kind in "iub":
        return np.clip(arr, 0, 255).astype(np.uint8)
    # float: assume 0..1 when it fits, else 0..255
    a = arr.astype(np.float64)
    a = np.nan_to_num(a)
    if a.max(initial=0.0) <= 1.0:
        a = a * 255.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _pil_to_rgb(im: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
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


def _read_16bit_colour(data: bytes) -> np.ndarray | None:
    """48/64-bit colour PNG/TIFF: PIL would drop to 8 bits badly or refuse; OpenCV reads them."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3:
        return None
    arr = _to_uint8(arr)
    if arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        rgb = arr[:, :, 2::-1].astype(np.float32)
        bg = np.array(DEFAULT_BACKGROUND, np.float32)
        return np.clip(rgb * alpha + bg * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[:, :, 2::-1])


def _is_16bit_colour_png(data: bytes) -> bool:
    # PNG IHDR: bit depth at byte 24, colour type at byte 25 (2 = RGB, 6 = RGBA)
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 26 and data[24] == 16 and data[25] in (2, 6)


def decode_image(data: bytes, name: str | os.PathLike = "<bytes>",
                 background: tuple[int, int, int] = DEFAULT_BACKGROUND) -> np.ndarray:
    """Decode encoded image bytes; `name` is only used in error messages."""
    if not data:
        raise ImageReadError(name, "the file is empty")
    if _is_16bit_colour_png(data):
        arr = _read_16bit_colour(data)
        if arr is not None:
            return arr
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. PIL's palette/EXIF warnings: not the user's concern
            with Image.open(io.BytesIO(data)) as im:
                im.load()  # force the full decode now, so a truncated file fails here
                im = ImageOps.exif_transpose(im)
                arr = _pil_to_rgb(im, background)
    except UnidentifiedImageError:
        raise ImageReadError(name, "not an image file (unknown format)") from None
    except Image.DecompressionBombError as e:
        raise ImageReadError(name, f"image too large ({e})", "downscale it first") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "truncated" in reason.lower() or isinstance(e, EOFError):
            reason = f"the file is truncated ({reason})"
        raise ImageReadError(name, reason) from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageReadError(name, f"unexpected decoded shape {arr.shape}")
    return np.ascontiguousarray(arr)


def read_bytes(path: str | os.PathLike) -> bytes:
    """The raw bytes of a file, with an `ImageReadError` for missing/unreadable files."""
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
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
