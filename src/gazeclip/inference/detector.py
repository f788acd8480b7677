"""The Python API: `det = gazeclip.load("runs/x")`, then `det.predict(x)`.

    import gazeclip
    det = gazeclip.load()            # the packaged reference model; or a run folder: load("runs/x")
    for face in det.predict("photo.jpg")[0].faces:
        print(face.verdict, face.p_fake, face.generator, face.gaze)

`x` is an image path, a folder, a video path, a PIL image, a numpy RGB array or a list of them;
`predict` returns one `ImageResult` or `VideoResult` per input (a folder gives one per image).
The run's model, the face detector and the gaze estimator are loaded once and reused by every
call; a lock makes one `Detector` safe to share between threads (the HTTP service does).

`gazeclip predict` prints `Detector.iter_records(...)`, so the command line and the API run the
same code and give the same numbers.
"""
from __future__ import annotations

import inspect
import threading
from pathlib import Path
from typing import Any, Iterator

from .inputs import analyze_array, sort_inputs, to_rgb
from .predict import predict_paths, predict_results
from .results import FaceResult, ImageResult, VideoResult, abstain_limits, with_verdict
from .video import VideoOptions, predict_video


class Detector:
    """A trained run ready to predict. Build it with `gazeclip.load(run_dir, ...)` (no run_dir:
    the reference model packaged with gazeclip)."""

    def __init__(self, run_dir: str | Path | None = None, device: str = "auto", face_cache: str | Path | None = None,
                 **options: Any):
        from ..run.loader import load_run
        from .predict import make_source

        # engine options (e.g. a runtime or precision choice) go to the run loader unchanged;
        # predicting means the inference copy, in predict's default precision (as `gazeclip predict`)
        options.setdefault("precision", "auto")
        try:
            inspect.signature(load_run).bind(run_dir, device, **options)
        except TypeError:
            raise TypeError(f"gazeclip.load: unknown option(s) {', '.join(sorted(options))}; "
                            f"the run loader takes {inspect.signature(load_run)}") from None
        self.run = load_run(run_dir, device, **options)
        abstain_limits(self.run)  # a run without abstain limits fails here, not at its first image
        self.source = make_source(self.run, str(face_cache) if face_cache else None)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return (f"Detector(run={str(self.run.run_dir)!r}, model={self.run.cfg.model!r}, "
                f"backbone={self.run.cfg.backbone!r}, faces={self.run.cfg.faces!r})")

    @property
    def lock(self) -> threading.RLock:
        """Held while the detector predicts; hold it to run anything else on its model or its face
        step (the service's Grad-CAM hooks the model's blocks)."""
        return self._lock

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.run.taxonomy.classes)

    # ------------------------------------------------------------ records (what the CLI prints)
    def iter_records(self, x: Any, video: VideoOptions = VideoOptions(), progress: bool = False,
                     per_frame: bool = True) -> Iterator[tuple[str, dict]]:
        """(kind, record) per output line, in input order; kind is "image", "frame" or "video".
        Records are the `predict --json` lines (each face record with its `verdict`)."""
        with self._lock:
            for item in sort_inputs(x):
                if item.kind == "files":
                    for rec in predict_paths(self.run, item.payload, progress=progress, source=self.source):
                        yield "image", with_verdict(self.run, rec)
                elif item.kind == "array":
                    res = analyze_array(self.source, to_rgb(item.payload, item.label), item.label)
                    for rec in predict_results(self.run, [res], self.source.gaze_dim):
                        yield "image", with_verdict(self.run, rec)
                else:
                    for rec in predict_video(self.run, self.source, item.label, video):
                        last = "frames" in rec or "error" in rec
                        if last or per_frame:
                            yield ("video" if last else "frame"), rec

    # ------------------------------------------------------------ typed results
    def predict(self, x: Any, fps: float | None = None, frames: int | None = None,
                video: VideoOptions | None = None) -> list[ImageResult | VideoResult]:
        """One result per image (folders expanded) or video, in input order.
        Videos: `fps` (sample every 1/fps s) or `frames` (N spread evenly; default 16)."""
        video = video or VideoOptions(fps=fps, frames=frames)
        out: list[ImageResult | VideoResult] = []
        current: ImageResult | None = None
        frame_recs: list[dict] = []
        for kind, rec in self.iter_records(x, video):
            if kind == "frame":
                frame_recs.append(rec)
                continue
            if kind == "video":
                out.append(VideoResult.from_records(rec, frame_recs))
                frame_recs, current = [], None
                continue
            if "face" not in rec:  # an unreadable image, or one without faces
                out.append(ImageResult(rec["path"], [], rec.get("error")))
                current = None
                continue
            if rec["face"] == 0 or current is None:  # records of one image come together, face 0 first
                current = ImageResult(rec["path"])
                out.append(current)
            if "error" in rec:  # this face could not be scored: the image's result says so
                current.face_errors.append(rec)
                current.error = current.error or rec["error"]
            else:
                current.faces.append(FaceResult.from_record(rec))
        return out

    __call__ = predict


def load(run_dir: str | Path | None = None, device: str = "auto", face_cache: str | Path | None = None,
         **options: Any) -> Detector:
    """A trained run (a `gazeclip train --out` folder) ready to predict: `load(run).predict(x)`;
    `load()` gives the reference model packaged with gazeclip (its files checked against their
    pinned sha256; a one-line error names the fix when none is packaged or a file does not match).

    device: auto | cpu | cuda[:N]; face_cache: a folder to cache face/gaze records of image files;
    other keyword options go to the engine's run loader (`gazeclip.run.loader.load_run`): precision (auto,
    the default: bf16 on CPUs with native bf16, else fp32 | bf16 | fp32 | int8 with runtime="onnx")
    and runtime ("torch"; "onnx" or "openvino": the run's `gazeclip export` under onnxruntime or OpenVINO)."""
    return Detector(run_dir, device=device, face_cache=face_cache, **options)
