"""Image perturbations for robustness curves (the paper's Figure 5): five kinds, five severities.

Each function maps a uint8 RGB image to a uint8 RGB image of the same size, deterministically
(noise is seeded by the caller). Severity 1..5; 0 means clean.
"""
from __future__ import annotations

import io

import numpy as np

from ..errors import UsageError

LEVELS: dict[str, list] = {
    "jpeg": [90, 70, 50, 30, 10],                   # JPEG quality
    "blur": [0.5, 1.0, 1.5, 2.5, 4.0],              # Gaussian sigma, pixels at 224 px (scaled to the crop)
    "noise": [4.0, 8.0, 16.0, 24.0, 40.0],          # Gaussian noise std, in 0..255 units
    "resize": [0.75, 0.5, 0.35, 0.25, 0.15],        # down-scale factor, then back up (bilinear)
    "color": [(0.05, 0.9), (-0.1, 0.8), (0.15, 0.7), (-0.2, 0.6), (0.25, 0.5)],  # (brightness shift, contrast)
}
PERTURBATIONS = tuple(LEVELS)


def perturb(img: np.ndarray, kind: str, severity: int, rng: np.random.Generator | None = None) -> np.ndarray:
    from PIL import Image, ImageFilter

    if severity == 0:
        return img
    if kind not in LEVELS:
        raise UsageError(f"unknown perturbation {kind!r}; known: {', '.join(PERTURBATIONS)}")
    if not 1 <= severity <= len(LEVELS[kind]):
        raise UsageError(f"severity {severity}: use 0..{len(LEVELS[kind])}")
    level = LEVELS[kind][severity - 1]
    pil = Image.fromarray(np.ascontiguousarray(img))
    if kind == "jpeg":
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(level))
        from ..faces.io import decode_image

        return decode_image(buf.getvalue(), f"<JPEG quality {int(level)}>")
    if kind == "blur":
        return np.asarray(pil.filter(ImageFilter.GaussianBlur(level * img.shape[0] / 224.0)), dtype=np.uint8)
    if kind == "noise":
        rng = rng or np.random.default_rng(0)
        return np.clip(img.astype(np.float32) + rng.normal(0, level, img.shape), 0, 255).astype(np.uint8)
    if kind == "resize":
        h, w = img.shape[:2]
        small = pil.resize((max(1, round(w * level)), max(1, round(h * level))), Image.BILINEAR)
        return np.asarray(small.resize((w, h), Image.BILINEAR), dtype=np.uint8)
    # color: brightness shift and contrast around the image mean
    b, c = level
    x = img.astype(np.float32)
    m = x.mean()
    return np.clip((x - m) * c + m + 255.0 * b, 0, 255).astype(np.uint8)
