"""Facial region boxes in CLIP-crop coordinates, for the model's "local patches".

Order is `gazeclip.records.REGIONS`. "left"/"right" follow MediaPipe: the subject's own
left eye, which is on the image's right in an unmirrored photo.
"""
from __future__ import annotations

import numpy as np

from ..records import REGIONS, Face

# MediaPipe face-mesh indices per region (eye contours with irises, brows, nose, lips).
_LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398, 473, 474, 475, 476, 477)
_RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173, 468, 469, 470, 471, 472)
_BROWS = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336, 46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
_NOSE = (1, 2, 4, 5, 6, 45, 48, 64, 98, 115, 129, 168, 195, 197, 219, 275, 278, 294, 327, 344, 358, 439)
_MOUTH = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
          78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415)
# the mesh points of each region but "face" (also the self-blend masks of gazeclip.data.selfblend)
REGION_LANDMARKS = {"left_eye": _LEFT_EYE, "right_eye": _RIGHT_EYE, "brows": _BROWS, "nose": _NOSE, "mouth": _MOUTH}

# design choice, not from the paper: each region box is padded by this fraction of its size per side
REGION_PAD = 0.15


def _box(points: np.ndarray, pad: float, min_side: float) -> np.ndarray:
    lo, hi = points.min(0), points.max(0)
    c, half = (lo + hi) / 2, np.maximum((hi - lo) / 2 * (1 + 2 * pad), min_side / 2)
    return np.concatenate([c - half, c + half])


def region_boxes(face: Face, pad: float = REGION_PAD, crop_size: int | None = None) -> np.ndarray:
    """(len(REGIONS), 4) float32 boxes x0, y0, x1, y1 in [0, 1] of `face.clip_crop`.

    With 478 landmarks each region is the padded box of its mesh points. With RetinaFace's 5 points
    the regions are laid out from the eyes, nose and mouth corners by face proportions."""
    size = crop_size or face.clip_crop.shape[0]
    pts = np.asarray(face.crop_landmarks, np.float64) / float(size)
    out = np.zeros((len(REGIONS), 4), np.float64)
    face_box = _box(pts, 0.05, 0.0)
    if pts.shape[0] >= 468:
        eye_w = np.linalg.norm(pts[263] - pts[362])
        for i, name in enumerate(REGIONS[:-1]):
            idx = [j for j in REGION_LANDMARKS[name] if j < pts.shape[0]]
            out[i] = _box(pts[idx], pad, 0.35 * eye_w)
    else:
        # 5 points: image-left eye, image-right eye, nose, mouth image-left, mouth image-right
        le_img, re_img, nose, ml, mr = pts[:5]
        iod = max(np.linalg.norm(re_img - le_img), 1e-3)
        ex, ey = 0.45 * iod, 0.22 * iod  # half-sizes of an eye box
        out[0] = [re_img[0] - ex, re_img[1] - ey, re_img[0] + ex, re_img[1] + ey]  # subject's left = image right
        out[1] = [le_img[0] - ex, le_img[1] - ey, le_img[0] + ex, le_img[1] + ey]
        brow_y = min(le_img[1], re_img[1]) - 0.35 * iod
        out[2] = [le_img[0] - ex, brow_y - 0.15 * iod, re_img[0] + ex, brow_y + 0.15 * iod]
        eyes_y = (le_img[1] + re_img[1]) / 2
        out[3] = [nose[0] - 0.3 * iod, eyes_y, nose[0] + 0.3 * iod, nose[1] + 0.15 * iod]
        mouth_c = (ml + mr) / 2
        mw = max(np.linalg.norm(mr - ml), 0.3 * iod)
        out[4] = [ml[0] - 0.2 * mw, mouth_c[1] - 0.3 * mw, mr[0] + 0.2 * mw, mouth_c[1] + 0.35 * mw]
        fb = np.asarray(face.box, np.float64)
        # the detector box in crop coordinates, from the landmark->crop mapping of the 5 points
        lm = np.asarray(face.landmarks, np.float64)[:5]
        s = np.linalg.norm(pts[1] - pts[0]) / max(np.linalg.norm(lm[1] - lm[0]), 1e-9)
        t = pts[0] - s * lm[0]
        face_box = np.array([fb[0] * s + t[0], fb[1] * s + t[1], fb[2] * s + t[0], fb[3] * s + t[1]])
    out[-1] = face_box
    return np.clip(out, 0.0, 1.0).astype(np.float32)
