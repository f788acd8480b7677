"""Small things every step of the data flow shares, kept once at the bottom of the package so that
no step has to import another for them: file hashing and the image file extensions we read.
(Atomic writes live next door in `gazeclip.atomic`; softmax comes from `scipy.special`.)"""
from __future__ import annotations

import hashlib
import os

# Extensions the image decoder (gazeclip.faces.io, OpenCV underneath) reads: folders are listed by
# these. WRITE_EXTS are those OpenCV can encode a drawing to.
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
WRITE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in blocks (hashlib.file_digest)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
