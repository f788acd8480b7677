"""What the abstain rule (gazeclip.run.verdict) needs to know of a face: its size in source-image
pixels, the detector's confidence, the head pose and how much colour it has (`FaceQuality`).

Measured the same way for training, validation and predict faces (data.dataset.face_arrays
calls it), so the limits calibrated on validation faces apply to predict faces unchanged.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..records import Face, FaceQuality
from .geometry import direction_to_pitchyaw


def chroma(rgb: np.ndarray) -> float:
    """Mean of max(R, G, B) - min(R, G, B) over the central half of an (H, W, 3) uint8 image:
    the face itself in a face crop (the crop's margin and any black border outside the source
    image stay out). 0 for greyscale."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] < 3 or a.size == 0:
        return float("nan")
    h, w = a.shape[:2]
    c = a[h // 4: max(h // 4 + 1, 3 * h // 4), w // 4: max(w // 4 + 1, 3 * w // 4), :3].astype(np.int16)
    return float((c.max(2) - c.min(2)).mean())


def head_angles(face: Face) -> tuple[float, float, float]:
    """(pitch, yaw, roll) of the head in degrees, NaN when not solved. Pitch and yaw are taken
    relative to the line of sight from the camera to the face (ETH-XGaze's normalised frame, when
    the face was normalised), so a frontal face high in a wide photo is not "turned"; roll is the
    tilt in the image plane."""
    h = face.head
    if h is None:
        return (math.nan,) * 3
    pitch, yaw = h.pitch, h.yaw
    if face.norm_rotation is not None and h.rvec is not None:
        rot = np.asarray(face.norm_rotation, np.float64) @ cv2.Rodrigues(np.asarray(h.rvec, np.float64))[0]
        pitch, yaw = direction_to_pitchyaw(rot @ np.array([0.0, 0.0, -1.0]))
    return math.degrees(pitch), math.degrees(yaw), math.degrees(h.roll)


def face_quality(face: Face) -> FaceQuality:
    """The quality of a detected face. Its crop (`clip_crop`) is the source pixels around the box,
    resampled: a greyscale source gives a greyscale crop, so chroma is read there."""
    x0, y0, x1, y1 = face.box
    pitch, yaw, roll = head_angles(face)
    return FaceQuality(face_px=float(max(x1 - x0, y1 - y0)), score=float(face.score), pitch=pitch, yaw=yaw,
                       roll=roll, chroma=chroma(face.clip_crop))


def image_quality(image: np.ndarray) -> FaceQuality:
    """A whole image taken as the face (runs with `faces: none`): its longer side, its colour."""
    h, w = np.asarray(image).shape[:2]
    nan = math.nan
    return FaceQuality(face_px=float(max(h, w)), score=nan, pitch=nan, yaw=nan, roll=nan, chroma=chroma(image))
