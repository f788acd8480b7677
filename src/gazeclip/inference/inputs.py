"""What `gazeclip.load(run).predict(x)` accepts, sorted into kinds, and in-memory images analysed.

    str / Path      an image file, a video file (by extension) or a folder (its images, recursively)
    PIL.Image       converted to RGB (EXIF orientation applied, transparency on white)
    numpy array     (H, W, 3) uint8 RGB, (H, W) grey or (H, W, 4) RGBA
    list / tuple    any mix of the above, results in the same order
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..faces.video import is_video
from ..errors import UsageError


@dataclass
class Item:
    """One input: kind is "files" (image paths, folders already expanded), "array" or "video"."""

    kind: str
    label: str                       # path, or "<array N>" / "<image N>" for in-memory images
    payload: Any = None              # list[str] for files, RGB array for arrays


def to_rgb(x: Any, label: str = "<array>") -> np.ndarray:
    """(H, W, 3) uint8 RGB from a PIL image or a numpy array; a clear error otherwise."""
    from PIL import Image, ImageOps

    if isinstance(x, Image.Image):
        from ..faces.io import DEFAULT_BACKGROUND, pil_to_rgb

        return np.ascontiguousarray(pil_to_rgb(ImageOps.exif_transpose(x), DEFAULT_BACKGROUND))
    a = np.asarray(x)
    if a.dtype != np.uint8:
        raise UsageError(f"{label}: expected a uint8 RGB array, got dtype {a.dtype}; convert with "
                         "(x * 255).clip(0, 255).astype('uint8') for floats in [0, 1]")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or min(a.shape[:2]) < 1:
        raise UsageError(f"{label}: expected an (H, W, 3) RGB array, got shape {a.shape}")
    return np.ascontiguousarray(a[:, :, :3])


def sort_inputs(x: Any) -> list[Item]:
    """The inputs in order, consecutive image files merged into one "files" item (batched together)."""
    from PIL import Image

    from .predict import expand_paths

    seq = list(x) if isinstance(x, (list, tuple)) else [x]
    items: list[Item] = []
    for i, v in enumerate(seq):
        if isinstance(v, (str, Path)):
            if is_video(v) and not Path(v).is_dir():
                items.append(Item("video", str(v)))
                continue
            files = expand_paths([v])
            if items and items[-1].kind == "files":
                items[-1].payload += files
            else:
                items.append(Item("files", str(v), files))
        elif isinstance(v, Image.Image):
            items.append(Item("array", f"<image {i}>", v))
        elif isinstance(v, np.ndarray):
            items.append(Item("array", f"<array {i}>", v))
        else:
            raise TypeError(f"input {i}: cannot predict on {type(v).__name__}; pass a path, a folder, a PIL image, "
                            "a numpy RGB array, a video path or a list of them")
    return items


def analyze_array(source, image: np.ndarray, label: str):
    """`ImageFaces` of an in-memory RGB image through a FaceGazeSource (no cache: no file to hash).
    Whole-image runs (faces: none) keep the image as `.image`, as FaceGazeSource does for files."""
    from ..gaze.pipeline import analyze_image
    from ..records import ImageFaces

    if source.mode == "none":
        res = ImageFaces(path=label, faces=[], size=(int(image.shape[1]), int(image.shape[0])))
        res.image = image
        return res
    return analyze_image(image, source.analyzer, source.estimator, path=label)
