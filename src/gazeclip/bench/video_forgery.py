"""Manipulated videos, made frame by frame with the benchmark's landmark forgers (landmark_ops).

For one video and one method, the manipulation's parameters are drawn once (one MobileStyleGAN
source face, one gaze shift, one region), then applied to the face of every frame at that frame's
own 478 landmarks, as face-swap and reenactment tools do:

    faceswap-poisson    the source face's inner face warped onto each frame's landmarks, Poisson-blended
    gaze-redirect       both irises shifted by the same fraction of the eye width in every frame
    region-transplant   the donor's eyes or mouth aligned onto each frame and Poisson-blended

A frame where no face is found is kept as it is (counted in `ForgedVideo.untouched`).
`write_video` writes frames as mp4 (OpenCV mp4v) atomically; real and manipulated clips of an
evaluation go through the same writer so that the codec cannot tell them apart.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from .forgers import derive_seed
from ..errors import UsageError

METHODS = ("faceswap-poisson", "gaze-redirect", "region-transplant")


@dataclass
class ForgedVideo:
    frames: list[np.ndarray]      # RGB frames, manipulated where a face was found
    method: str
    params: dict
    untouched: int                # frames without a face, left as they were


def forge_frames(frames: list[np.ndarray], method: str, seed: int) -> ForgedVideo:
    """The frames with `method` applied to each frame's face; parameters fixed for the whole video."""
    from . import landmark_ops as ops
    from .faceops import detect_face
    from .forgers import source_face

    if method not in METHODS:
        raise UsageError(f"unknown video manipulation {method!r}; known: {', '.join(METHODS)}")
    rng = np.random.default_rng(derive_seed("video", method, seed))
    params: dict = {}
    if method in ("faceswap-poisson", "region-transplant"):
        donor, donor_lm = source_face(derive_seed("video-donor", seed))
        params["donor_seed"] = int(derive_seed("video-donor", seed))
    if method == "gaze-redirect":
        # the benchmark's range (bench/forgers.py GazeRedirectForger), drawn once per video
        params.update(dx=float(rng.uniform(0.12, 0.22) * rng.choice([-1, 1])), dy=float(rng.uniform(-0.08, 0.08)))
    if method == "region-transplant":
        params["region"] = "eyes" if rng.random() < 0.5 else "mouth"
    out, untouched = [], 0
    for f in frames:
        lm = detect_face(f)
        if lm is None:
            out.append(f.copy())
            untouched += 1
            continue
        try:
            if method == "faceswap-poisson":
                g = ops.identity_swap(f, lm, donor, donor_lm)
            elif method == "gaze-redirect":
                g = ops.gaze_redirect(f, lm, params["dx"], params["dy"])
            else:
                g = ops.region_transplant(f, lm, donor, donor_lm, params["region"])
        except Exception:  # noqa: BLE001 - a degenerate face (e.g. at the border): keep the frame
            g, untouched = f.copy(), untouched + 1
        out.append(np.ascontiguousarray(g, np.uint8))
    return ForgedVideo(out, method, params, untouched)


def write_video(frames: list[np.ndarray], path: str | os.PathLike, fps: float) -> Path:
    """RGB frames -> an mp4 (OpenCV's mp4v encoder), written to a temp file then renamed."""
    import cv2

    path = Path(path)
    if not frames:
        raise UsageError(f"{path}: no frames to write")
    h, w = frames[0].shape[:2]
    with atomic_path(path, suffix=path.suffix or ".mp4") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
        if not writer.isOpened():
            raise OSError(f"{path}: OpenCV cannot write mp4 here")
        for f in frames:
            if f.shape[:2] != (h, w):
                raise UsageError(f"{path}: frames differ in size ({f.shape[:2]} vs {(h, w)})")
            writer.write(np.ascontiguousarray(f[:, :, ::-1]))
        writer.release()
    return path
