"""Video prediction: sample frames, predict each face, follow faces across frames, score the video.

    frames (gazeclip.faces.video: every 1/fps s, or N spread evenly; default 16)
      -> per-frame face records (the same code as images: engine.predict.predict_results)
      -> tracks: a face in frame t joins the track whose last box overlaps it most (IoU >= 0.3,
         one-to-one by the Hungarian assignment); otherwise it starts a new track
      -> per-track score: the mean of the top-k frame p_fake, k = ceil(topk * frames of the track),
         over the frames whose face is not "uncertain" (a track of only uncertain frames is uncertain)
      -> per-video score: the highest score of the judged tracks among those seen in at least
         `min_track_fraction` of the sampled frames (all tracks if none is); "uncertain" when none
         of those could be judged: an uncertain face is never counted as fake

Output records (the lines `gazeclip predict --json` prints; per-frame ones with `--per-frame`):
    per frame and face: the image record + {"frame", "time", "track"}; {"path", "frame", "time",
    "faces": 0} for a sampled frame without a face
    per video: {"path", "frames", "frames_read", "container_frames", "warning", "fps", "duration", "faces",
                "p_fake", "verdict", "reason", "tracks": [...]}; "warning" (else null) when the stream ended
                before the frame count the container claims (truncated, or an overstated header): the record
                then rests on the frames that were read, and "duration" on them too
    unreadable: {"path", "error"}
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..faces.video import FrameReader, VideoReadError, probe
from .inputs import analyze_array
from .predict import predict_results
from .results import verdict_of, with_verdict


@dataclass(frozen=True)
class VideoOptions:
    fps: float | None = None          # sample every 1/fps seconds ...
    frames: int | None = None         # ... or this many frames spread evenly (default 16)
    iou: float = 0.3                  # design choice, not from the paper: IoU to continue a track
    topk: float = 0.5                 # design choice, not from the paper: mean of the top half of frame p_fake
    min_track_fraction: float = 0.25  # design choice, not from the paper: tracks shorter than this are noise
    chunk: int = 8                    # frames analysed and run through the model together


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) boxes [x0, y0, x1, y1] -> (N, M) intersection over union."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


class IoUTracker:
    """IoU tracking: each frame's faces are assigned one-to-one to the existing tracks
    (Hungarian on 1 - IoU against each track's last box); unmatched faces open new tracks."""

    def __init__(self, iou: float = 0.3):
        self.iou = float(iou)
        self.last: dict[int, np.ndarray] = {}

    def update(self, boxes: list) -> list[int]:
        """Track ids for one frame's boxes, in order."""
        from scipy.optimize import linear_sum_assignment

        ids = [-1] * len(boxes)
        if boxes and self.last:
            tids = list(self.last)
            m = box_iou(np.array(boxes), np.array([self.last[t] for t in tids]))
            rows, cols = linear_sum_assignment(-m)
            for r, c in zip(rows, cols):
                if m[r, c] >= self.iou:
                    ids[r] = tids[c]
        for i, b in enumerate(boxes):
            if ids[i] < 0:
                ids[i] = max(self.last) + 1 if self.last else 0
            self.last[ids[i]] = np.asarray(b, np.float64)
        return ids


def topk_mean(values: list[float], fraction: float) -> float:
    v = sorted(values, reverse=True)
    k = max(1, math.ceil(fraction * len(v)))
    return float(np.mean(v[:k]))


def summarize_tracks(run, recs: list[dict], n_sampled: int,
                     opts: VideoOptions) -> tuple[list[dict], float | None, str | None]:
    """Per-track aggregates (dicts with TrackResult's fields), the video's p_fake and, when no
    track could be judged, why (the video is then "uncertain"; its p_fake is the tracks' highest,
    for information only)."""
    by_track: dict[int, list[dict]] = {}
    for r in recs:
        by_track.setdefault(r["track"], []).append(r)
    tracks = []
    for tid, all_rs in sorted(by_track.items()):
        rs = [r for r in all_rs if r.get("verdict") != "uncertain"]  # the frames that can be judged
        unsure = [r for r in all_rs if r.get("verdict") == "uncertain"]
        p = round(topk_mean([r["p_fake"] for r in rs or all_rs], opts.topk), 6)
        verdict = verdict_of(run, p) if rs else "uncertain"
        named = [r for r in rs if r.get("generator") not in (None, "real")]
        gen = fam = gprob = None
        unknown = False
        if verdict == "fake" and named:
            # the most frequent generator named by the track's frames; ties go to the higher mean probability
            counts = Counter(r["generator"] for r in named)
            gen = max(counts, key=lambda g: (counts[g], np.mean([r["generator_prob"] for r in named
                                                                   if r["generator"] == g])))
            gprob = round(float(np.mean([r["generator_prob"] for r in named if r["generator"] == gen])), 6)
            fams = Counter(r["family"] for r in named if r.get("family") not in (None, "real"))
            fam = fams.most_common(1)[0][0] if fams else None
            unknown = sum(bool(r.get("unknown_generator")) for r in named) * 2 >= len(named)
        tracks.append({"track": tid, "frames": len(all_rs), "first_time": all_rs[0]["time"],
                       "last_time": all_rs[-1]["time"], "p_fake": p, "verdict": verdict, "generator": gen,
                       "generator_prob": gprob, "family": fam, "unknown_generator": bool(unknown),
                       "box": all_rs[0].get("box"), "uncertain_frames": len(unsure),
                       "reason": unsure[0]["reason"] if not rs else None})
    if not tracks:
        return [], None, None
    long_enough = [t for t in tracks if t["frames"] >= opts.min_track_fraction * n_sampled] or tracks
    judged = [t for t in long_enough if t["verdict"] != "uncertain"]
    if not judged:
        longest = max(long_enough, key=lambda t: t["frames"])
        return tracks, max(t["p_fake"] for t in long_enough), f"no face track could be judged: {longest['reason']}"
    return tracks, max(t["p_fake"] for t in judged), None


def predict_video(run, source, path: str, opts: VideoOptions = VideoOptions()) -> Iterator[dict]:
    """Per-frame records (face records with frame/time/track, or a no-face line per frame) and,
    last, the video's record. An unreadable video (a FIFO or a device included: never opened)
    gives one {"path", "error"} record."""
    from .files import input_error

    if (err := input_error(path)) is not None:
        yield {"path": path, "error": err}
        return
    try:
        info = probe(path)
        frames = FrameReader(path, opts.fps, opts.frames, info)
        tracker = IoUTracker(opts.iou)
        face_recs: list[dict] = []
        n_sampled = 0
        buf = []

        def flush():
            results = [analyze_array(source, f.image, path) for f in buf]
            recs = iter(predict_results(run, results, source.gaze_dim))
            for f, res in zip(buf, results):
                n = 1 if res.error or not (res.faces or source.mode == "none") else max(1, len(res.faces))
                got = [next(recs) for _ in range(n)]
                faces = [with_verdict(run, r) for r in got if "p_fake" in r]
                if not faces:
                    yield {"path": path, "frame": f.index, "time": f.time, "faces": 0}
                    continue
                full = [0.0, 0.0, float(f.image.shape[1]), float(f.image.shape[0])]
                ids = tracker.update([r["box"] or full for r in faces])
                for r, tid in zip(faces, ids):
                    r.update(frame=f.index, time=f.time, track=tid)
                    face_recs.append(r)
                    yield r
            buf.clear()

        for f in frames:
            n_sampled += 1
            buf.append(f)
            if len(buf) >= opts.chunk:
                yield from flush()
        yield from flush()
    except VideoReadError as e:
        yield {"path": path, "error": str(e)}
        return
    tracks, p, why = summarize_tracks(run, face_recs, n_sampled, opts)
    verdict = None if p is None else "uncertain" if why else verdict_of(run, p)
    duration, warning = info.duration, None
    if frames.ended_early:  # the container's count is not what the stream holds: trust what was read
        duration = frames.read / info.fps if info.fps > 0 else None
        warning = (f"the container lists {info.n_frames} frames but the stream ended after {frames.read} "
                   "(truncated or damaged file, or a header that overstates its length); this record rests on "
                   f"the {n_sampled} frames sampled from those")
    yield {"path": path, "frames": n_sampled, "frames_read": frames.read, "container_frames": info.n_frames or None,
           "warning": warning, "fps": round(info.fps, 3) if info.fps else None,
           "duration": round(duration, 3) if duration else None, "faces": len(face_recs),
           "p_fake": p, "verdict": verdict, "reason": why, "tracks": tracks}
