"""Reading videos: probe, choose which frames to sample, and decode them as (H, W, 3) uint8 RGB.

OpenCV's FFmpeg backend decodes (mp4, mov, avi, mkv, webm...). Frames are read in order with
`grab()` and only the sampled ones are converted (`retrieve()`), because seeking by frame number
is inexact for many codecs. Every failure is one `VideoReadError` naming the file and the fix.

The container's frame count is a claim, not a fact (a patched `stts` box can say 2e9 frames):
the frame numbers to sample are generated lazily, so nothing the header says allocates memory,
and `FrameReader` counts the frames it actually read. When the stream ends before the count the
container gave, the reader says so (`FrameReader.ended_early`, reported in the video's record),
and for evenly spread sampling it plans again over the frames that exist, so that a video whose
header overstates its length still gets its 16 frames.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import UsageError

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


def _unique(values: Iterable[int], stop: int | None) -> Iterator[int]:
    """Increasing values without repeats, below `stop` (None: no end)."""
    last = -1
    for v in values:
        if stop is not None and v >= stop:
            return
        if v > last:
            last = v
            yield v


def sample_indices(info: VideoInfo, fps: float | None = None, frames: int | None = None) -> Iterator[int]:
    """Frame numbers to decode, increasing, generated lazily (whatever the container claims, no
    list of them is built): every 1/fps seconds with `fps`, else `frames` (default 16) spread
    evenly from the first frame to the last. Without a frame count in the container, the first
    `frames` frames (or every frame at the container's rate, to the end, when fps is asked for)."""
    if fps is not None and frames is not None:
        raise UsageError("give fps or frames, not both")
    n = info.n_frames
    if fps is not None:
        if not fps > 0 or not np.isfinite(fps):
            raise UsageError(f"fps must be > 0 and finite, not {fps}")
        step = max(info.fps / fps if info.fps > 0 else 1.0, 1.0)
        return _unique((int(round(i * step)) for i in count()), n or None)
    frames = DEFAULT_FRAMES if frames is None else int(frames)
    if frames < 1:
        raise UsageError(f"frames must be >= 1, not {frames}")
    if n <= 0:
        return iter(range(frames))
    m = min(frames, n)
    span = (n - 1) / (m - 1) if m > 1 else 0.0
    return _unique((int(round(i * span)) for i in range(m)), n)


class FrameReader:
    """The sampled frames of a video in order, decoded as RGB (iterate it once). After the
    iteration: `read` (frames read from the stream), `sampled`, and `ended_early` (the stream
    ended before the frame count the container gave: a truncated file, or a header that
    overstates its length). A video from which no frame decodes raises `VideoReadError`."""

    def __init__(self, path: str | os.PathLike, fps: float | None = None, frames: int | None = None,
                 info: VideoInfo | None = None):
        self.path, self.fps, self.frames = path, fps, frames
        self.info = info or probe(path)
        self.read = 0
        self.sampled = 0
        self.ended_early = False
        # validated now, not at the first frame
        sample_indices(self.info, fps, frames)

    def _pass(self, wanted: Iterator[int], after: int = -1) -> Iterator[VideoFrame]:
        import cv2

        cap = _open(self.path)
        try:
            target = next((w for w in wanted if w > after), None)
            index = 0
            while target is not None:
                if not cap.grab():
                    self.ended_early = self.info.n_frames > 0 and index < self.info.n_frames
                    break
                self.read = max(self.read, index + 1)
                if index == target:
                    ok, bgr = cap.retrieve()
                    if ok and bgr is not None and bgr.ndim == 3:
                        t = index / self.info.fps if self.info.fps > 0 else float(index)
                        self.sampled += 1
                        yield VideoFrame(index, round(t, 4), np.ascontiguousarray(bgr[:, :, ::-1]))
                    target = next(wanted, None)
                index += 1
        finally:
            cap.release()

    def __iter__(self) -> Iterator[VideoFrame]:
        last = -1
        for f in self._pass(sample_indices(self.info, self.fps, self.frames)):
            last = f.index
            yield f
        if self.ended_early and self.fps is None and self.read > 0:
            # spread over the frames that exist: the later ones of that plan, after those already given
            real = VideoInfo(self.info.path, self.info.fps, self.read, self.info.width, self.info.height)
            for f in self._pass(sample_indices(real, None, self.frames), after=last):
                yield f
        if self.sampled == 0:
            raise VideoReadError(self.path, "no frame could be decoded (damaged or truncated file)")


def iter_frames(path: str | os.PathLike, fps: float | None = None, frames: int | None = None,
                info: VideoInfo | None = None) -> Iterator[VideoFrame]:
    """The sampled frames in order (see `FrameReader`, which also says how many were read)."""
    return iter(FrameReader(path, fps, frames, info))
