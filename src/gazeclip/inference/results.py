"""Typed results of `gazeclip.load(run).predict(x)` (as ultralytics' `engine/results.py`).

Each result is built from the very records `gazeclip predict --json` prints, so the API and the
command line can never disagree: `FaceResult.to_dict()` is the record, `ImageResult.records()` and
`VideoResult.records()` are the lines `predict --json` prints for that input.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..run.verdict import fake_verdict


# ---------------------------------------------------------------- verdict
# The real/fake/uncertain rule is run.verdict's (validation-calibrated detection threshold and
# abstain limits from RUN/calibration.json). A run without them is refused, never given defaults.
def _calibrated(run, value, what: str):
    if value is None:
        from ..errors import StaleRunError

        where = getattr(run, "run_dir", "the run")
        raise StaleRunError(f"{where}/calibration.json: no {what} (not calibrated by this gazeclip); add it with "
                            f"`gazeclip calibrate --run {where}` (it recalibrates on the validation split of the "
                            "run's data)")
    return value


def abstain_limits(run):
    """The run's abstain limits (`AbstainLimits`: they come from its validation faces, so no default
    fits every run)."""
    return _calibrated(run, getattr(run, "abstain", None), "abstain limits")


def detection_threshold(run) -> float:
    """The run's validation-calibrated real/fake threshold on p_fake."""
    return float(_calibrated(run, getattr(run, "detection_threshold", None), "detection threshold"))


def verdict_of(run, p_fake: float) -> str:
    return "fake" if bool(fake_verdict(p_fake, detection_threshold(run))) else "real"


def with_verdict(run, rec: dict) -> dict:
    """The record with a `verdict` (added only when the record has none; predict_results sets it)."""
    if "p_fake" in rec and "verdict" not in rec:
        rec["verdict"] = verdict_of(run, rec["p_fake"])
    return rec
# ---------------------------------------------------------------- end of the verdict


class _JSON:
    def to_dict(self) -> dict:
        raise NotImplementedError

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)


@dataclass
class GazeAngles:
    pitch: float                      # degrees, ETH-XGaze normalised frame
    yaw: float
    arrows: list[list[float]] = field(default_factory=list)  # [x0, y0, x1, y1] pixels per eye


@dataclass
class HeadAngles:
    pitch: float                      # degrees
    yaw: float
    roll: float


@dataclass
class FaceResult(_JSON):
    """One face: where it is, real or fake, which generator, its gaze and head pose."""

    face: int                         # index of the face in its image, largest first
    box: tuple[float, float, float, float] | None   # x0, y0, x1, y1 pixels; None for whole-image runs
    p_fake: float
    verdict: str                      # "real" | "fake" | "uncertain"
    reason: str | None                # why "uncertain" (the limits crossed); None otherwise
    generator: str | None
    generator_prob: float | None
    family: str | None
    unknown_generator: bool
    gaze: GazeAngles | None
    head_pose: HeadAngles | None
    frame: int | None = None          # video frames only: frame number, time (s) and face track
    time: float | None = None
    track: int | None = None
    record: dict = field(default_factory=dict, repr=False)  # the `predict --json` record

    @classmethod
    def from_record(cls, rec: dict) -> "FaceResult":
        g, h = rec.get("gaze"), rec.get("head")
        return cls(face=rec["face"], box=tuple(rec["box"]) if rec.get("box") else None, p_fake=rec["p_fake"],
                   verdict=rec["verdict"], reason=rec.get("reason"), generator=rec.get("generator"),
                   generator_prob=rec.get("generator_prob"), family=rec.get("family"),
                   unknown_generator=bool(rec.get("unknown_generator")),
                   gaze=GazeAngles(g["pitch"], g["yaw"], list(g.get("arrows", []))) if g else None,
                   head_pose=HeadAngles(h["pitch"], h["yaw"], h["roll"]) if h else None,
                   frame=rec.get("frame"), time=rec.get("time"), track=rec.get("track"), record=rec)

    def to_dict(self) -> dict:
        return dict(self.record)


@dataclass
class ImageResult(_JSON):
    """All faces of one image (empty when none was found), or why it could not be read."""

    source: str                       # the path, or "<array N>" / "<image N>" for in-memory images
    faces: list[FaceResult] = field(default_factory=list)
    error: str | None = None          # the image could not be read, or one of its faces not scored
    face_errors: list[dict] = field(default_factory=list, repr=False)  # {"path", "face", "error"} records

    @property
    def ok(self) -> bool:
        return self.error is None

    def records(self) -> list[dict]:
        """The lines `gazeclip predict --json` prints for this image."""
        if self.error is not None and not self.face_errors:
            return [{"path": self.source, "error": self.error}]
        if not self.faces and not self.face_errors:
            return [{"path": self.source, "faces": 0}]
        return sorted([f.to_dict() for f in self.faces] + self.face_errors, key=lambda r: r["face"])

    def to_dict(self) -> dict:
        return {"source": self.source, "kind": "image", "error": self.error,
                "faces": [f.to_dict() for f in self.faces]}


@dataclass
class TrackResult:
    """One face followed across the sampled frames (IoU tracking) and its aggregated scores."""

    track: int
    frames: int                       # sampled frames the face was found in
    first_time: float
    last_time: float
    p_fake: float                     # mean of the top-k frame p_fake (see docs/engine.md, "Video")
    verdict: str                      # "uncertain" when every frame of the track is
    generator: str | None
    generator_prob: float | None
    family: str | None
    unknown_generator: bool
    box: list[float] | None           # in the first frame of the track
    uncertain_frames: int = 0         # frames of the track whose face is uncertain (left out of p_fake)
    reason: str | None = None         # an uncertain track's: its first frame's reason


@dataclass
class VideoResult(_JSON):
    """A video's verdict (its most suspicious face track), its tracks and its per-frame faces."""

    source: str
    fps: float | None = None
    duration: float | None = None
    frames_sampled: int = 0
    frames_read: int = 0              # frames read from the stream (up to the last one sampled)
    container_frames: int | None = None  # the frame count the container claims (None: it does not say)
    warning: str | None = None        # a partial decode: the stream ended before the container's count
    p_fake: float | None = None       # None when no face was found in any sampled frame
    verdict: str | None = None        # "uncertain" when no face track could be judged
    reason: str | None = None
    tracks: list[TrackResult] = field(default_factory=list)
    frames: list[FaceResult] = field(default_factory=list)
    error: str | None = None
    record: dict = field(default_factory=dict, repr=False)        # the `predict --json` video line
    frame_records: list[dict] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def from_records(cls, summary: dict, frame_records: list[dict]) -> "VideoResult":
        if "error" in summary:
            return cls(source=summary["path"], error=summary["error"], record=summary)
        faces = [FaceResult.from_record(r) for r in frame_records if "p_fake" in r]
        return cls(source=summary["path"], fps=summary.get("fps"), duration=summary.get("duration"),
                   frames_sampled=summary["frames"], frames_read=summary.get("frames_read", 0),
                   container_frames=summary.get("container_frames"), warning=summary.get("warning"),
                   p_fake=summary.get("p_fake"), verdict=summary.get("verdict"), reason=summary.get("reason"),
                   tracks=[TrackResult(**t) for t in summary.get("tracks", [])], frames=faces, record=summary,
                   frame_records=frame_records)

    def records(self, per_frame: bool = False) -> list[dict]:
        """The lines `gazeclip predict --json [--per-frame]` prints for this video."""
        return ([dict(r) for r in self.frame_records] if per_frame else []) + [dict(self.record)]

    def to_dict(self) -> dict:
        d = dict(self.record)
        d["kind"] = "video"
        d["frame_records"] = [dict(r) for r in self.frame_records]
        return d


def describe_record(rec: dict) -> str:
    """One human-readable line (a few for a video) for a prediction record, as `gazeclip predict` prints."""
    if "error" in rec:
        face = f" face {rec['face']}" if "face" in rec else ""
        return f"{rec['path']}{face}: ERROR {rec['error']}"
    where = f"{rec['path']} frame {rec['frame']} ({rec['time']:.2f} s)" if "frame" in rec else rec["path"]
    if "tracks" in rec:  # a video
        warn = f"\n  warning: {rec['warning']}" if rec.get("warning") else ""
        if rec["p_fake"] is None:
            return f"{where}: video, {rec['frames']} frames sampled, no face{warn}"
        lines = [f"{where}: video {rec['verdict'].upper()}{_why(rec)} p_fake {rec['p_fake']:.3f} "
                 f"({rec['frames']} frames sampled, {len(rec['tracks'])} face track(s)){warn}"]
        for t in rec["tracks"]:
            gen = f"  {t['generator']} ({t['family']})" if t["generator"] else ""
            unk = " (unknown generator)" if t["unknown_generator"] else ""
            lines.append(f"  track {t['track']}: {t['frames']} frames {t['first_time']:.1f}-{t['last_time']:.1f} s  "
                         f"{t['verdict']}{_why(t)} p_fake {t['p_fake']:.3f}{gen}{unk}")
        return "\n".join(lines)
    if rec.get("faces") == 0:
        return f"{where}: no face"
    g = rec["gaze"]
    gz = f"gaze pitch {g['pitch']:+.1f} yaw {g['yaw']:+.1f} deg" if g else "gaze n/a"
    unk = " (unknown generator)" if rec["unknown_generator"] else ""
    track = f" track {rec['track']}" if "track" in rec else ""
    gen = (f"  {rec['generator']} ({rec['generator_prob']:.2f}, {rec['family']})"
           if rec.get("generator") is not None else "")
    verdict = f"{rec['verdict']}{_why(rec)} " if "verdict" in rec else ""
    return f"{where} face {rec['face']}{track}: {verdict}p_fake {rec['p_fake']:.3f}{gen}{unk}  {gz}"


def _why(rec: dict) -> str:
    return f" ({rec['reason']})" if rec.get("reason") else ""
