"""Face landmarks (MediaPipe FaceLandmarker, Tasks API, the pinned `face-landmarker` asset) and the
one canonical face crop every benchmark image goes through."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

# design choice, not from the paper: crop side = 1.4 x the larger side of the 478-landmark box,
# centred on that box; every class (real and fake) gets exactly this crop.
CROP_SCALE = 1.4
# MediaPipe FaceMesh indices used by the landmark forgers.
LEFT_IRIS = list(range(468, 473))    # subject's left (image right)
RIGHT_IRIS = list(range(473, 478))
LEFT_EYE = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
RIGHT_EYE = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]
MOUTH = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]


@dataclass(frozen=True)
class FaceLM:
    """One detected face: 478x2 landmarks in pixels of the image they were found in."""

    landmarks: np.ndarray

    @property
    def box(self) -> tuple[float, float, float, float]:
        x0, y0 = self.landmarks.min(0)
        x1, y1 = self.landmarks.max(0)
        return float(x0), float(y0), float(x1), float(y1)


class Landmarker:
    """Thread-safe lazy singleton around MediaPipe FaceLandmarker (IMAGE mode, deterministic)."""

    _lock = threading.Lock()
    _inst: "Landmarker | None" = None

    def __init__(self) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        from gazeclip.quiet import native_logs_silenced
        from gazeclip.weights import asset_path

        opts = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(asset_path("face-landmarker"))),
            num_faces=1, min_face_detection_confidence=0.5, min_face_presence_confidence=0.5)
        with native_logs_silenced():
            self._lm = vision.FaceLandmarker.create_from_options(opts)

    @classmethod
    def get(cls) -> "Landmarker":
        with cls._lock:
            if cls._inst is None:
                cls._inst = Landmarker()
            return cls._inst

    def detect(self, rgb: np.ndarray, max_side: int = 512) -> FaceLM | None:
        """Largest face's landmarks in pixel coordinates of `rgb`, or None."""
        import mediapipe as mp

        h, w = rgb.shape[:2]
        s = min(1.0, max_side / max(h, w))
        small = rgb if s == 1.0 else cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        small = np.ascontiguousarray(small, dtype=np.uint8)
        from gazeclip.quiet import native_logs_silenced

        with self._lock, native_logs_silenced():
            res = self._lm.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=small))
        if not res.face_landmarks:
            return None
        pts = np.array([[p.x * w, p.y * h] for p in res.face_landmarks[0]], dtype=np.float64)
        return FaceLM(pts)


def detect_face(rgb: np.ndarray) -> FaceLM | None:
    """Landmarks of the main face (MediaPipe FaceLandmarker, 478 points), or None.

    design choice, not from the paper: the builder runs the landmarker itself rather than
    `gazeclip.faces.FaceAnalyzer` (same MediaPipe model), so the canonical crop, and with it every
    benchmark sha256, does not move when the faces module changes its fallbacks; the tests check
    the built images with `gazeclip.faces.FaceAnalyzer`.
    """
    return Landmarker.get().detect(rgb)


def crop_box(face: FaceLM, scale: float = CROP_SCALE) -> tuple[float, float, float]:
    """(cx, cy, side) of the canonical square crop."""
    x0, y0, x1, y1 = face.box
    return (x0 + x1) / 2, (y0 + y1) / 2, scale * max(x1 - x0, y1 - y0)


def square_crop(rgb: np.ndarray, cx: float, cy: float, side: float, out: int) -> np.ndarray:
    """Crop a square (replicating the border where it leaves the image) and resize it to out x out."""
    s = out / side
    m = np.array([[s, 0, out / 2 - s * cx], [0, s, out / 2 - s * cy]], dtype=np.float64)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    if s < 0.5:  # area-downscale first for anti-aliasing, then the exact affine
        k = int(1 / s / 1.5) or 1
        if k > 1:
            rgb = cv2.resize(rgb, (rgb.shape[1] // k, rgb.shape[0] // k), interpolation=cv2.INTER_AREA)
            m[:, :2] *= k
            m = m.copy()
        interp = cv2.INTER_LINEAR
    return cv2.warpAffine(rgb, m, (out, out), flags=interp, borderMode=cv2.BORDER_REPLICATE)


def face_crop(rgb: np.ndarray, out: int, face: FaceLM | None = None) -> tuple[np.ndarray, bool]:
    """Canonical face crop; (crop, face_found). Without a face, the central square is used."""
    face = face if face is not None else detect_face(rgb)
    if face is None:
        h, w = rgb.shape[:2]
        return square_crop(rgb, w / 2, h / 2, min(h, w), out), False
    return square_crop(rgb, *crop_box(face), out), True
