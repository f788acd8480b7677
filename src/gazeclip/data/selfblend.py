"""Self-blended images (SBI: Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images",
CVPR 2022): pseudo-fakes made from one real photo, so that a detector learns what every blend of a
real photo leaves behind (a boundary, a colour or sharpness mismatch, a slight misalignment)
instead of the look of one generator. The benchmark's real-photo edits (swap, region transplant)
are such blends, and they are what the detector missed most (issue 19).

From one real face and its 478 MediaPipe landmarks: a pseudo-source, the photo under random
colour, sharpness, scale/shift and small elastic-warp transforms, is blended into the
pseudo-target, the photo itself, under a mask: the convex hull of the face's landmarks (or of one
region's: eyes, mouth, nose; `gazeclip.faces.regions`), elastically deformed, eroded, feathered
(Gaussian), scaled by a blend ratio and clipped to the face hull (a region: to its padded hull).

These are pure functions of (image, landmarks, rng); `gazeclip.data.derived` renders them into a
cache folder for training.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..faces.regions import REGION_LANDMARKS
from ..errors import UsageError

BLEND_REGIONS = ("face", "eyes", "mouth", "nose")
# design choice, not from the paper: a self-blend is a detection-only training item (fake, with no
# attribution class and no family): it is not a generator a verdict could name, its blends would
# compete with the benchmark's own blends (swap, region transplant) for their attribution, and the
# label space stays the same with or without self-blends, so runs with and without stay comparable.
BLEND_CLASS = "self-blend"
BLEND_FAMILY = "blend"
_PARTS = {"eyes": ("left_eye", "right_eye"), "mouth": ("mouth",), "nose": ("nose",)}
# design choice, not from the paper: a region's hull is its mesh points spread about their centre by
# (x, y) factors, so an eye's covers its lids and a mouth's the skin around the lips
_SPREAD = {"left_eye": (1.4, 2.0), "right_eye": (1.4, 2.0), "mouth": (1.25, 1.6), "nose": (1.1, 1.1)}
MESH_POINTS = 468  # the face mesh; 468..477 are the irises, inside it
BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # SBI's draw of the mask's peak weight
REGION_PAD = 0.06        # a region's hull may grow by this fraction of the face size (its limit)
ELASTIC = {"face": 0.03, "region": 0.015}  # mask deformation amplitude, fraction of the face size
FEATHER = {"face": (0.015, 0.045), "region": (0.012, 0.025)}  # feather sigma range, fraction of the face size


@dataclass
class SelfBlend:
    image: np.ndarray   # (H, W, 3) uint8: the blend
    mask: np.ndarray    # (H, W) float32 in [0, 1]: the pseudo-source's weight
    limit: np.ndarray   # (H, W) bool: where the mask may be non-zero (face hull; a region's padded hull)
    region: str


def face_size(landmarks: np.ndarray) -> float:
    """The larger side of the face mesh's box, in pixels."""
    pts = np.asarray(landmarks, np.float64)[:MESH_POINTS]
    return float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]), 1.0))


def hull_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """bool (H, W): the filled convex hull of `points` (x, y pixels)."""
    m = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    return m.astype(bool)


def face_hull(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return hull_mask(np.asarray(landmarks)[:MESH_POINTS], shape)


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def region_masks(landmarks: np.ndarray, shape: tuple[int, int], region: str) -> tuple[np.ndarray, np.ndarray]:
    """(hull, limit), bool (H, W): the region's landmark hulls, and where its blend may reach
    (the face hull; a region's hulls dilated by REGION_PAD of the face size, inside the face hull)."""
    if region not in BLEND_REGIONS:
        raise UsageError(f"self-blend region {region!r}: use one of {', '.join(BLEND_REGIONS)}")
    lm = np.asarray(landmarks, np.float64)
    if lm.shape[0] < MESH_POINTS:
        raise UsageError(f"self-blends need the 478 MediaPipe landmarks, not {lm.shape[0]}")
    face = face_hull(lm, shape)
    if region == "face":
        return face, face
    hull = np.zeros(shape, bool)
    for part in _PARTS[region]:
        pts = lm[list(REGION_LANDMARKS[part])]
        c = pts.mean(0)
        hull |= hull_mask(c + (pts - c) * np.array(_SPREAD[part]), shape)
    pad = max(1, round(REGION_PAD * face_size(lm)))
    limit = cv2.dilate(hull.astype(np.uint8), _disk(pad)).astype(bool) & face
    return hull & face, limit


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, amp: float, grid: int = 5) -> tuple:
    """A smooth random displacement (dx, dy), float32 (H, W): Gaussian values on a grid x grid
    lattice, bicubically upsampled."""
    h, w = shape
    d = [cv2.resize(rng.normal(0, amp, (grid, grid)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
         for _ in range(2)]
    return d[0], d[1]


def elastic(x: np.ndarray, rng: np.random.Generator, amp: float, interp: int = cv2.INTER_LINEAR) -> np.ndarray:
    """`x` (image or mask) resampled through a smooth random displacement of about `amp` pixels."""
    h, w = x.shape[:2]
    dx, dy = _smooth_field((h, w), rng, amp)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(x, xs + dx, ys + dy, interp, borderMode=cv2.BORDER_REFLECT)


def blend_mask(landmarks: np.ndarray, shape: tuple[int, int], region: str,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(mask float32 in [0, 1], limit bool): the region's hull elastically deformed, shrunk (the
    face) or grown (a region) at random, kept 2 sigma inside `limit`, feathered by a Gaussian of
    that sigma and scaled by a blend ratio; zero outside `limit`."""
    hull, limit = region_masks(landmarks, shape, region)
    size = face_size(landmarks)
    kind = "face" if region == "face" else "region"
    core = elastic(hull.astype(np.uint8), rng, ELASTIC[kind] * size, cv2.INTER_NEAREST)
    sigma = max(float(rng.uniform(*FEATHER[kind])) * size, 0.8)
    if region == "face":  # an inner hull of random size
        core = cv2.erode(core, _disk(int(rng.uniform(0, 0.04) * size)))
    else:  # a region grows into its padding at random
        core = cv2.dilate(core, _disk(int(rng.integers(0, round(REGION_PAD * size) + 1))))
    # at least 2 sigma inside the limit, so that the feathered edge fades out before it
    inner = cv2.erode(limit.astype(np.uint8), _disk(int(np.ceil(2 * sigma)))).astype(bool)
    core = core.astype(bool) & inner
    if not core.any():  # a tiny region: its whole inner part
        core = inner if inner.any() else hull
    m = cv2.GaussianBlur(core.astype(np.float32), (0, 0), sigma)
    m = m / max(float(m.max()), 1e-6) * float(rng.choice(BLEND_RATIOS))
    return (m * limit).astype(np.float32), limit


def pseudo_source(img: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The photo with random colour (channel shift, saturation, brightness, contrast), sharpness
    (down-and-up scaling, blur or sharpening), scale/shift about the face centre and a small
    elastic warp: what is blended back into the photo."""
    h, w = img.shape[:2]
    size = face_size(landmarks)
    x = img.astype(np.float32) + rng.uniform(-20, 20, 3).astype(np.float32)
    g = x.mean(2, keepdims=True)
    x = g + (x - g) * rng.uniform(0.7, 1.3)
    mean = x.mean()
    x = np.clip((x - mean) * rng.uniform(0.85, 1.15) + mean + 255 * rng.uniform(-0.08, 0.08), 0, 255)
    kind = int(rng.integers(3))
    if kind == 0:  # lower resolution
        f = rng.uniform(0.4, 0.8)
        small = cv2.resize(x, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        x = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    elif kind == 1:  # blur
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.5))
    else:  # sharpen (unsharp mask)
        x = x + rng.uniform(0.5, 1.5) * (x - cv2.GaussianBlur(x, (0, 0), 1.0))
    x = np.clip(x, 0, 255)
    c = np.asarray(landmarks, np.float64)[:MESH_POINTS].mean(0)
    s = rng.uniform(0.95, 1.05)
    m = np.array([[s, 0, (1 - s) * c[0]], [0, s, (1 - s) * c[1]]], np.float64)
    m[:, 2] += rng.uniform(-0.03, 0.03, 2) * size
    x = cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    x = elastic(x, rng, 0.01 * size)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def self_blend(img: np.ndarray, landmarks: np.ndarray, region: str, rng: np.random.Generator) -> SelfBlend:
    """One self-blend of the real photo `img` (uint8 RGB) with its 478 landmarks (pixels of `img`).

    design choice, not from the paper: SBI transforms the source or the target at random; here the
    pseudo-target is always the untouched photo (the source's random colour shifts go either way),
    so a blend differs from its real photo only under its mask (outside it, every pixel is equal)."""
    shape = img.shape[:2]
    src = pseudo_source(img, landmarks, rng)
    mask, limit = blend_mask(landmarks, shape, region, rng)
    x = img.astype(np.float32)
    out = np.clip(np.rint(x + mask[..., None] * (src.astype(np.float32) - x)), 0, 255).astype(np.uint8)
    if not np.any(out != img):
        raise UsageError("the blend left the photo unchanged (a face too small to blend)")
    return SelfBlend(out, mask, limit, region)
