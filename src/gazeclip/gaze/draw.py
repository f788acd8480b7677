"""Gaze arrows drawn on the image (OpenCV), written atomically."""
from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from ..atomic import atomic_write_bytes
from ..common import WRITE_EXTS
from ..faces import geometry as geo
from ..records import ImageFaces

GAZE_COLOUR = (255, 40, 40)   # RGB
HEAD_COLOUR = (40, 120, 255)
BOX_COLOUR = (40, 220, 40)


def _eye_centres(lms: np.ndarray) -> list[np.ndarray]:
    if len(lms) >= 478:
        return [lms[geo.R_IRIS[0]], lms[geo.L_IRIS[0]]]
    if len(lms) >= 468:
        return [lms[list(geo.R_EYE_CORNERS)].mean(0), lms[list(geo.L_EYE_CORNERS)].mean(0)]
    return [lms[0], lms[1]]


def _arrow(v_cam: np.ndarray, norm_rot: np.ndarray | None) -> np.ndarray:
    """2-D arrow of a camera-frame direction. With the normalisation rotation the arrow is the
    direction relative to the line of sight to the camera (looking at the camera = a dot), laid
    along the face's own image axes; without it, the vector's image-plane components."""
    v = np.asarray(v_cam, np.float64)
    if norm_rot is None:
        return v[:2]
    r = np.asarray(norm_rot, np.float64)
    vn = r @ v
    right, down = r[0, :2], r[1, :2]
    right = right / max(np.linalg.norm(right), 1e-9)
    down = down / max(np.linalg.norm(down), 1e-9)
    return vn[0] * right + vn[1] * down


def gaze_arrows(face, gaze, arrow_scale: float = 0.9, relative: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """(start, end) pixel points of the gaze arrow from each eye, as `draw_gaze` draws them."""
    x0, _, x1, _ = face.box
    length = arrow_scale * (x1 - x0)
    a = _arrow(gaze.vector, face.norm_rotation if relative else None)
    return [(c, c + length * a) for c in _eye_centres(np.asarray(face.landmarks, np.float64))]


def draw_gaze(image: np.ndarray, result: ImageFaces, arrow_scale: float = 0.9, relative: bool = True) -> np.ndarray:
    """A copy of the RGB image with each face's box, head direction (blue, from the nose) and
    gaze (red, from each eye), arrows scaled by the face width. relative=True draws directions
    relative to the line of sight to the camera (as ETH-XGaze's demo does in the normalised
    image); relative=False draws the camera-frame vectors' image-plane components."""
    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    thick = max(1, round(max(h, w) / 400))
    for fg in result.faces:
        f = fg.face
        x0, y0, x1, y1 = (int(round(v)) for v in f.box)
        cv2.rectangle(out, (x0, y0), (x1, y1), BOX_COLOUR, thick)
        length = arrow_scale * (x1 - x0)
        lms = np.asarray(f.landmarks, np.float64)
        if f.head is not None:
            nose = lms[4] if len(lms) >= 468 else lms[2]
            d = cv2.Rodrigues(np.asarray(f.head.rvec, np.float64))[0] @ np.array([0.0, 0.0, -1.0])
            tip = nose + 0.6 * length * _arrow(d, f.norm_rotation if relative else None)
            cv2.arrowedLine(out, tuple(int(v) for v in nose), tuple(int(v) for v in tip), HEAD_COLOUR, thick,
                            tipLength=0.2)
        label = f"{f.score:.2f}"
        if fg.gaze is not None:
            for c, tip in gaze_arrows(f, fg.gaze, arrow_scale, relative):
                cv2.arrowedLine(out, tuple(int(round(t)) for t in c), tuple(int(round(t)) for t in tip), GAZE_COLOUR,
                                thick + 1, tipLength=0.2)
            label = f"gaze p{math.degrees(fg.gaze.pitch):+.0f} y{math.degrees(fg.gaze.yaw):+.0f}"
        cv2.putText(out, label, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, BOX_COLOUR, thick,
                    cv2.LINE_AA)
    return out


def write_image_atomic(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """PNG/JPEG by suffix; temp file in the same folder, then os.replace."""
    path = Path(path)
    ext = path.suffix.lower() or ".png"
    ok, buf = cv2.imencode(ext if ext in WRITE_EXTS else ".png",
                           cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: could not encode the drawing")
    atomic_write_bytes(path, buf.tobytes())
