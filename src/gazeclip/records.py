"""Small typed records passed between the steps of the data flow (files -> faces -> gaze -> model).

Angles are radians unless a field name says `_deg`. Image coordinates are pixels of the
original (EXIF-rotated) image unless a field says otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Facial regions pooled into appearance tokens ("local patches"); order is fixed. The faces step
# draws their boxes (faces.regions) and the models pool them (models.interface re-exports it).
REGIONS: tuple[str, ...] = ("left_eye", "right_eye", "brows", "nose", "mouth", "face")


@dataclass
class HeadPose:
    """Head rotation from PnP against a 3-D face model (camera frame: x right, y down, z forward)."""

    pitch: float
    yaw: float
    roll: float
    rvec: np.ndarray  # (3,) Rodrigues rotation, model -> camera
    tvec: np.ndarray  # (3,) translation in millimetres


@dataclass
class Face:
    """One detected face with everything later steps need from the pixels."""

    box: tuple[float, float, float, float]   # x0, y0, x1, y1 in the original image
    score: float
    landmarks: np.ndarray                     # (K, 2) pixels in the original image; K=478 (MediaPipe) or 5
    detector: str                             # "mediapipe", "retinaface" (5 points), "retinaface+mediapipe", "external"
    head: HeadPose | None
    clip_crop: np.ndarray                     # (S, S, 3) uint8 RGB square crop for the CLIP tower
    crop_landmarks: np.ndarray                # (K, 2) landmarks in clip_crop pixel coordinates
    norm_face: np.ndarray | None              # (224, 224, 3) uint8 RGB ETH-XGaze-normalised face
    norm_rotation: np.ndarray | None          # (3, 3) rotation of the normalisation (camera -> normalised)
    camera: np.ndarray | None = None          # (3, 3) intrinsics the head pose was solved with (added by faces)


@dataclass
class Gaze:
    """Output of a gaze estimator for one face."""

    pitch: float                # normalised frame, radians
    yaw: float                  # normalised frame, radians
    vector: np.ndarray          # (3,) unit gaze direction in the camera frame (de-normalised)
    features: np.ndarray        # (D,) penultimate features of the estimator
    estimator: str


@dataclass
class FaceGaze:
    """A face and its gaze: what the model's VPE consumes."""

    face: Face
    gaze: Gaze | None


@dataclass
class ImageFaces:
    """All faces of one image file, or the reason the file could not be read."""

    path: str
    faces: list[FaceGaze] = field(default_factory=list)
    size: tuple[int, int] | None = None  # (width, height) of the original image
    error: str | None = None
    # the decoded RGB image, kept only in memory for whole-image runs (faces: none) and in-memory
    # inputs, so that the crop needs no second read; never cached or serialised
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
