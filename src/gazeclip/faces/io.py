"""Reading images: any common file becomes an (H, W, 3) uint8 RGB array, upright per EXIF.

This is the one image decoder of gazeclip (every image file read goes through `load_image` or
`decode_image`). It opens only PNG, JPEG, WebP, TIFF, BMP and GIF, chosen by the file's first
bytes (never by its name), and only with Pillow's own decoders for them (no format that hands
the bytes to an external program, such as EPS to Ghostscript). `inspect_image` checks, before
any pixel is decoded:

- the size the header declares against one limit, `max_image_pixels()` (default 89,478,485
  pixels, Pillow's own default; set `GAZECLIP_MAX_IMAGE_PIXELS` or call `set_max_image_pixels`),
  for every format and bit depth, so a small file declaring a huge image cannot take the memory;
  only the first frame of an animated or multi-page file is decoded, so that is its cost;
- for JPEG, the number of scans (at most `MAX_JPEG_SCANS`: a progressive file of thousands of
  empty scans costs a full pass over the image each), then the whole entropy-coded data, decoded
  at 1/8 scale by libjpeg-turbo in strict mode: a truncated file (even with an end marker
  appended) or a header claiming more pixels than the data holds is refused instead of being
  decoded with grey rows.

Every failure is one `ImageReadError` whose message names the file and says what to do, so a
batch job can report it and go on.
"""
from __future__ import annotations

import io
import os
import re
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from struct import error as struct_error
from typing import Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import GazeclipError, UsageError

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
# the formats read, as Pillow names them, by the magic bytes that start their files
SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"))
# design choice, not from the paper: encoders write up to about 20 scans (libjpeg's progressive
# script 10, mozjpeg's optimised ones more); each scan is a pass over the whole image
MAX_JPEG_SCANS = 64


class ImageReadError(GazeclipError, ValueError):
    """A file could not be read as an image. `str(err)` is one line naming the file and the fix."""

    def __init__(self, path: str | os.PathLike, reason: str, fix: str | None = None):
        self.path = str(path)
        self.reason = reason
        fix = fix or "check that it is a complete PNG/JPEG/TIFF/WebP/BMP/GIF image (re-export or re-download it)"
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
        raise UsageError(f"max image pixels {n}: must be at least 1")
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


def _png_exif(data: bytes) -> bytes | None:
    """The eXIf chunk of a PNG, wherever it is (the chunk list is walked, no pixel is read)."""
    pos = 8
    while pos + 8 <= len(data):
        n, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        if kind == b"eXIf":
            return data[pos + 8:pos + 8 + n]
        if kind == b"IEND":
            break
        pos += 12 + n
    return None


# EXIF orientation -> the transform that makes the image upright (as ImageOps.exif_transpose does),
# on the decoded array: views, then one contiguous copy at most
_ORIENT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
           7: lambda a: np.rot90(a, 2).transpose(1, 0, 2), 8: lambda a: np.rot90(a, 1)}


def _orientation(exif: Image.Exif | None) -> int:
    try:
        value = int(exif.get(0x0112, 1)) if exif is not None else 1
    except (TypeError, ValueError):
        return 1
    return value if value in _ORIENT else 1


def _pillow_allows(limit: int) -> None:
    """Pillow refuses images over 2x its own MAX_IMAGE_PIXELS while opening the header; make sure
    it never refuses what our limit allows (our check, on the header, is the one that applies)."""
    cur = Image.MAX_IMAGE_PIXELS
    if cur is not None and cur < limit:
        Image.MAX_IMAGE_PIXELS = limit


def sniff_format(data: bytes) -> str | None:
    """The format (one of SUPPORTED_FORMATS) that `data` starts like, else None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in _MAGIC if data.startswith(magic)), None)


# in entropy-coded JPEG data 0xFF is followed by 0x00 (a stuffed byte) or a restart marker; any
# other byte after it starts the next marker segment
_JPEG_MARKER = re.compile(rb"\xff(?!\x00|[\xd0-\xd7])")


def jpeg_scans(data: bytes) -> int:
    """The number of scans (SOS segments) of a JPEG stream, by walking its marker segments (the
    EXIF thumbnail inside APP1 is skipped with its segment)."""
    pos, scans = 2, 0
    while pos + 4 <= len(data):
        m = _JPEG_MARKER.match(data, pos)
        if m is None:  # not at a marker: malformed, the decoder will say so
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # end of image
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:
            scans += 1
            nxt = _JPEG_MARKER.search(data, pos)
            if nxt is None:
                break
            pos = nxt.start()
    return scans


def _validate_jpeg(data: bytes) -> None:
    """Decode the whole entropy-coded data at 1/8 scale with libjpeg-turbo in strict mode: any
    warning (premature end of data, a header claiming more rows than the data holds, corrupt
    data) raises ValueError. About a third of the cost of the full decode, and 1/64 its memory."""
    import simplejpeg

    colour = simplejpeg.decode_jpeg_header(data)[2]
    simplejpeg.decode_jpeg(data, colorspace="CMYK" if colour in ("CMYK", "YCCK") else "GRAY", min_factor=8,
                           strict=True)


@dataclass(frozen=True)
class ImageInfo:
    """What `inspect_image` found in a file's header, before any decoding."""

    format: str          # one of SUPPORTED_FORMATS
    width: int
    height: int
    mode: str            # Pillow's mode
    scans: int = 1       # JPEG: its number of scans
    wide: bool = False   # a 16-bit colour PNG (decoded at 16 bits first: twice the memory)

    @property
    def pixels(self) -> int:
        """Pixels decoded: width x height of the first frame (the only one decoded)."""
        return self.width * self.height

    @property
    def cost(self) -> int:
        """The decode budget this file takes, in 8-bit pixels (a 16-bit decode counts twice)."""
        return self.pixels * (2 if self.wide else 1)


@contextmanager
def _reading(name, limit: int):
    """Pillow's, OpenCV's and libjpeg's exceptions as one ImageReadError naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. PIL's palette/EXIF warnings: not the user's concern
            yield
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
    except (OSError, SyntaxError, ValueError, EOFError, struct_error) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "truncated" in reason.lower() or isinstance(e, EOFError):
            reason = f"the file is truncated ({reason})"
        raise ImageReadError(name, reason) from None


def inspect_image(data: bytes, name: str | os.PathLike = "<bytes>", max_pixels: int | None = None) -> ImageInfo:
    """Every check that comes before decoding (see the module docstring): the format by its magic
    bytes, the declared size against the pixel limit, and for JPEG the scan count and a strict
    1/8-scale decode of the data. Raises `ImageReadError`; returns what `decode_image` needs."""
    if not data:
        raise ImageReadError(name, "the file is empty")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageReadError(name, "not an image file of a supported format (" + ", ".join(SUPPORTED_FORMATS) + ")",
                             "convert it to PNG or JPEG")
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    _pillow_allows(limit)
    with _reading(name, limit), Image.open(io.BytesIO(data), formats=[fmt]) as im:
        w, h = im.size  # from the header: nothing decoded yet
        check_declared_size(name, w, h, limit)
        info = ImageInfo(fmt, w, h, im.mode, wide=_is_16bit_colour_png(data))
    if fmt == "JPEG":
        scans = jpeg_scans(data)
        if scans > MAX_JPEG_SCANS:
            raise ImageReadError(name, f"it has {scans} progressive scans, over the limit of {MAX_JPEG_SCANS} "
                                 "(each is a pass over the whole image: a decoding-time bomb)",
                                 "re-encode it (any encoder writes far fewer)")
        try:
            _validate_jpeg(data)
        except ValueError as e:
            raise ImageReadError(name, f"the file is damaged or truncated ({str(e).splitlines()[0][:120]})") from None
        info = ImageInfo(fmt, w, h, info.mode, scans=scans)
    return info


def decode_image(data: bytes, name: str | os.PathLike = "<bytes>",
                 background: tuple[int, int, int] = DEFAULT_BACKGROUND, max_pixels: int | None = None,
                 info: ImageInfo | None = None) -> np.ndarray:
    """Decode encoded image bytes; `name` is only used in error messages. `inspect_image`'s
    checks run first (pass its `info` when you have it, so that they are not run twice)."""
    info = info or inspect_image(data, name, max_pixels)
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    with _reading(name, limit), Image.open(io.BytesIO(data), formats=[info.format]) as im:
        arr = _read_16bit_colour(data, background) if info.wide else None
        if arr is not None:
            raw = _png_exif(data)
            orientation = _orientation(_exif_of(raw) if raw else None)
        else:
            im.load()  # force the full decode now, so a truncated file fails here
            orientation = _orientation(im.getexif())
            arr = pil_to_rgb(im, background)
    if orientation != 1:
        arr = _ORIENT[orientation](arr)
    return _checked(arr, name)


def _exif_of(raw: bytes) -> Image.Exif:
    exif = Image.Exif()
    exif.load(raw)
    return exif


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
    """(format, (width, height), mode) from the header, with every check of `inspect_image`."""
    info = inspect_image(read_bytes(path), path)
    return info.format, (info.width, info.height), info.mode


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
