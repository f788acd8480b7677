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


# Columns of a face's quality row (`FaceQuality.as_row`, `SampleSet.quality`), what the abstain
# rule of gazeclip.run.verdict reads; NaN where a value does not exist (whole image: no detector
# score, no head pose).
QUALITY_FIELDS: tuple[str, ...] = ("face_px", "score", "pitch", "yaw", "roll", "chroma")


@dataclass
class FaceQuality:
    """How much a verdict on one face can be trusted, measured on the source image (faces.quality).

    face_px: the longer side of the face box in source-image pixels (of the whole image for a
    whole-image run): a face upsampled beyond what training saw has lost the pixels a detector reads.
    pitch, yaw: relative to the line of sight from the camera (faces.quality.head_angles).
    chroma: colourfulness, the mean over the face's central half of max(R, G, B) - min(R, G, B)
    (0-255); 0 for a greyscale source (a greyscale file, or an RGB file of a grey photo, up to
    JPEG noise of 1-2).
    """

    face_px: float
    score: float            # detector confidence; NaN for a whole image
    pitch: float            # head pose, degrees (PnP); NaN when not solved or for a whole image
    yaw: float
    roll: float
    chroma: float

    def as_row(self) -> np.ndarray:
        return np.array([getattr(self, k) for k in QUALITY_FIELDS], np.float32)


# chroma below this: no colour but compression noise, a greyscale source (how a reason words it;
# the abstain rule itself uses the run's calibrated limit)
GREYSCALE_CHROMA = 2.0


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
