"""Reading videos: probe, choose which frames to sample, and decode them as (H, W, 3) uint8 RGB.

OpenCV's FFmpeg backend decodes (mp4, mov, avi, mkv, webm...). Frames are read in order with
`grab()` and only the sampled ones are converted (`retrieve()`), because seeking by frame number
is inexact for many codecs. Every failure is one `VideoReadError` naming the file and the fix.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"}
# design choice, not from the paper: without --fps or --frames, 16 frames spread evenly over the
# whole video, so the cost of a video does not grow with its length.
DEFAULT_FRAMES = 16
# a decoded frame larger than this many pixels is refused (the image decoder's idea of a bomb)
MAX_FRAME_PIXELS = 7680 * 4320


class VideoReadError(ValueError):
    """A file could not be read as a video. `str(err)` is one line naming the file and the fix."""

    def __init__(self, path: str | os.PathLike, reason: str, fix: str | None = None):
        self.path = str(path)
        self.reason = reason
        fix = fix or "check that it is a complete video file (mp4/mov/avi/mkv/webm), e.g. by playing it"
        super().__init__(f"{self.path}: cannot read video: {reason}; {fix}")


@dataclass(frozen=True)
class VideoInfo:
    path: str
    fps: float            # frames per second from the container (0 when it does not say)
    n_frames: int         # frame count from the container (may be approximate; 0 when unknown)
    width: int
    height: int

    @property
    def duration(self) -> float | None:
        return self.n_frames / self.fps if self.fps > 0 and self.n_frames > 0 else None


@dataclass
class VideoFrame:
    index: int            # position in the video, from 0
    time: float           # seconds from the start (index / fps)
    image: np.ndarray     # (H, W, 3) uint8 RGB


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


def _open(path: str | os.PathLike):
    import cv2

    p = Path(path)
    if not p.exists():
        raise VideoReadError(path, "no such file", "check the path")
    if p.is_dir():
        raise VideoReadError(path, "it is a folder", "pass a video file")
    if not os.access(p, os.R_OK):
        raise VideoReadError(path, "permission denied", "make the file readable")
    if p.stat().st_size == 0:
        raise VideoReadError(path, "the file is empty")
    cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise VideoReadError(path, "not a video file, or its codec is not supported")
    return cap


def probe(path: str | os.PathLike) -> VideoInfo:
    """Container metadata (fps, frame count, size) without decoding frames."""
    import cv2

    cap = _open(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    finally:
        cap.release()
    if not np.isfinite(fps) or fps < 0 or fps > 10000:
        fps = 0.0
    if w * h > MAX_FRAME_PIXELS:
        raise VideoReadError(path, f"frames of {w}x{h} pixels exceed the limit of {MAX_FRAME_PIXELS}",
                             "downscale the video first")
    return VideoInfo(str(path), fps, max(0, n), w, h)


def sample_indices(info: VideoInfo, fps: float | None = None, frames: int | None = None) -> list[int]:
    """Frame numbers to decode: every 1/fps seconds with `fps`, else `frames` (default 16) spread
    evenly from the first frame to the last. Without a frame count in the container, the first
    `frames` frames (or every frame at the container's rate when fps is asked for)."""
    if fps is not None and frames is not None:
        raise ValueError("give fps or frames, not both")
    if fps is not None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, not {fps}")
        step = info.fps / fps if info.fps > 0 else 1.0
        step = max(step, 1.0)
        n = info.n_frames or 100_000  # unknown length: the reader stops at the end
        return sorted({i for i in (int(round(k * step)) for k in range(int(np.ceil(n / step)))) if i < n})
    frames = DEFAULT_FRAMES if frames is None else int(frames)
    if frames < 1:
        raise ValueError(f"frames must be >= 1, not {frames}")
    if info.n_frames <= 0:
        return list(range(frames))
    return sorted({int(round(v)) for v in np.linspace(0, info.n_frames - 1, min(frames, info.n_frames))})


def iter_frames(path: str | os.PathLike, fps: float | None = None, frames: int | None = None,
                info: VideoInfo | None = None) -> Iterator[VideoFrame]:
    """The sampled frames in order, decoded as RGB. A video from which no frame decodes raises
    `VideoReadError`; one that ends early (truncated, or a wrong frame count) just stops."""
    import cv2

    info = info or probe(path)
    wanted = sample_indices(info, fps, frames)
    if not wanted:
        raise VideoReadError(path, "the video has no frames")
    cap = _open(path)
    got = 0
    try:
        want = iter(wanted)
        target = next(want)
        index = 0
        while target is not None:
            if not cap.grab():
                break
            if index == target:
                ok, bgr = cap.retrieve()
                if ok and bgr is not None and bgr.ndim == 3:
                    t = index / info.fps if info.fps > 0 else float(index)
                    got += 1
                    yield VideoFrame(index, round(t, 4), np.ascontiguousarray(bgr[:, :, ::-1]))
                target = next(want, None)
            index += 1
    finally:
        cap.release()
    if got == 0:
        raise VideoReadError(path, "no frame could be decoded (damaged or truncated file)")
