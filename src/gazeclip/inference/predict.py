"""Run a trained model on image files and folders: faces, real/fake, generator, gaze.

One record per face:
    {"path", "face", "p_fake", "verdict", "reason", "generator", "generator_prob", "family", "unknown_generator",
     "gaze": {"pitch", "yaw", "arrows"},  (degrees, normalised frame; arrows: [x0, y0, x1, y1] pixels
                                           per eye, as drawn by `gazeclip gaze --draw`; null when not estimated)
     "box": [x0, y0, x1, y1],             (pixels of the original image; null for whole-image runs)
     "head": {"pitch", "yaw", "roll"}}    (head pose in degrees; null when not solved)
`verdict` is "uncertain" (with a `reason`) for a face outside what the run's validation faces cover
(too small in the source image, greyscale, ...), else "real" or "fake" at the run's
validation-calibrated threshold; only a fake verdict names a generator class (never "real") and a
family, see run.verdict.
one per readable file without a face: {"path", "faces": 0}
one per unreadable file:               {"path", "error"}   (broken links found in folders included)
one per face whose model output is not finite (NaN/Inf: damaged weights): {"path", "face", "error"}

Records come in the order of the inputs; a file listed twice gives its records twice.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from scipy.special import softmax

from ..common import IMAGE_EXTS


def expand_paths(paths: Iterable[str | Path], exts: Iterable[str] = IMAGE_EXTS) -> list[str]:
    """Files as given; folders recursively (image extensions only, sorted). A missing path, and
    anything found in a folder that is not a readable regular file (a broken link, a FIFO, a link to
    a device, a sub-folder that cannot be listed), are kept so that they are reported by name."""
    from .files import walk

    return walk(paths, exts)


def make_source(run, face_cache_dir: str | None = None):
    """The run's faces + gaze step (face detector and gaze estimator), built once and reused: a
    `LoadedRun` keeps one per cache folder (its gaze network in the run's inference precision)."""
    if hasattr(run, "face_source"):
        return run.face_source(face_cache_dir)
    from ..data.dataset import FaceGazeSource

    return FaceGazeSource(run.cfg.faces, run.cfg.gaze_estimator, face_cache_dir, run.gaze_dim)


def predict_paths(run, paths: Iterable[str | Path], chunk: int = 32, face_cache_dir: str | None = None,
                  progress: bool = False, source=None) -> Iterator[dict]:
    """Records for image files and folders, in order. `source` (from `make_source`) is reused when
    given, so a long-lived caller (gazeclip.load) loads the face detector and gaze estimator once."""
    files = expand_paths(paths)
    source = source or make_source(run, face_cache_dir)
    from tqdm import tqdm

    bar = tqdm(total=len(files), desc="predict", unit="img", disable=not progress, leave=False)
    for s in range(0, len(files), chunk):
        part = files[s:s + chunk]
        yield from predict_results(run, _analyze_regular(source, part), source.gaze_dim)
        bar.update(len(part))
    bar.close()


def _analyze_regular(source, paths: list[str]) -> list:
    """`source.analyze(paths)`, reading only regular files: anything else (missing, a FIFO, a
    device, a folder) comes back as an `ImageFaces` with its error, in its place, unopened."""
    from ..records import ImageFaces
    from .files import input_error

    errors = [input_error(p) for p in paths]
    read = iter(source.analyze([p for p, e in zip(paths, errors) if e is None]))
    return [next(read) if e is None else ImageFaces(path=p, error=e) for p, e in zip(paths, errors)]


def predict_results(run, results: list, gaze_dim: int) -> Iterator[dict]:
    """Records for analysed images (`ImageFaces`, from files, arrays or video frames), in order:
    the one place where faces become model inputs and model outputs become records.
    An `ImageFaces` may carry the decoded image as `.image` (whole-image runs use it)."""
    from ..data.dataset import SampleSet, whole_image_arrays, load_rgb, samples_from_faces
    from ..run.modeling import run_samples
    from ..run.verdict import decide
    from .results import abstain_limits

    limits = abstain_limits(run)
    mode = run.cfg.faces
    preprocess = run.preprocess
    size = preprocess.size
    tx = run.taxonomy
    thr = run.unknown_threshold
    sets: list[SampleSet] = []
    order: list[tuple[str, object]] = []  # (kind, payload) per image, in order
    for res in results:
        if res.error:
            order.append(("error", {"path": res.path, "error": res.error}))
        elif mode == "none":  # the run was trained on whole images: the image is its one "face"
            img = res.image
            img = img if img is not None else load_rgb(res.path)
            a = whole_image_arrays(img, size, gaze_dim)
            sets.append(SampleSet([res.path], [""], a[0][None], a[1][None], a[2][None], a[3][None],
                                  np.array([False]), a[5][None], np.array([0]), quality=a[6][None]))
            order.append(("faces", (res, 1)))
        elif not res.faces:
            order.append(("noface", {"path": res.path, "faces": 0}))
        else:
            sets.append(samples_from_faces(res.path, res.faces, size, gaze_dim))
            order.append(("faces", (res, len(res.faces))))
    if sets:
        merged = _concat(sets)
        # the faces of all the images given go through the model together, crops preprocessed at once
        preds = run_samples(run.model, merged, preprocess, batch_size=32, device=run.device)
        prob = softmax(preds.attribution_logits, axis=1)  # only to catch non-finite outputs
        verdicts = decide(preds.p_fake, preds.attribution_logits, preds.family_logits, tx.classes, tx.families,
                          getattr(run, "detection_threshold", None), thr, merged.quality, limits)
    k = 0  # row of `merged`: faces are matched to their image by position, never by path
    for kind, payload in order:
        if kind != "faces":
            yield payload
            continue
        res, n = payload
        for face_i in range(n):
            if not (np.isfinite(prob[k]).all() and np.isfinite(preds.p_fake[k])):
                yield {"path": res.path, "face": face_i,
                       "error": f"{res.path}: face {face_i}: the model's output is not a number (NaN/Inf); "
                                "its weights may be damaged: run `gazeclip weights verify`"}
                k += 1
                continue
            fg = res.faces[face_i] if res.faces else None
            # one coherent decision (engine.verdict): a real verdict names no generator
            rec = {"path": res.path, "face": face_i, "p_fake": round(float(preds.p_fake[k]), 6),
                   **verdicts[k].as_dict(),
                   "gaze": _gaze_field(fg, merged.gaze_pitchyaw[k]) if merged.gaze_valid[k] else None,
                   "box": None if fg is None else [round(float(v), 1) for v in fg.face.box],
                   "head": _head_field(fg)}
            yield rec
            k += 1


def _gaze_field(fg, pitchyaw) -> dict:
    """Gaze in degrees (normalised frame) and the arrows `gazeclip gaze --draw` draws, in pixels."""
    g = {"pitch": round(math.degrees(float(pitchyaw[0])), 3), "yaw": round(math.degrees(float(pitchyaw[1])), 3)}
    if fg is not None and fg.gaze is not None:
        from ..gaze.draw import gaze_arrows

        g["arrows"] = [[round(float(v), 1) for v in (*a, *b)] for a, b in gaze_arrows(fg.face, fg.gaze)]
    return g


def _head_field(fg) -> dict | None:
    if fg is None or fg.face.head is None:
        return None
    h = fg.face.head
    return {k: round(math.degrees(float(getattr(h, k))), 3) for k in ("pitch", "yaw", "roll")}


def _concat(sets):
    from ..data.dataset import SampleSet

    cat = lambda a: np.concatenate([getattr(s, a) for s in sets])  # noqa: E731
    return SampleSet(sum((s.paths for s in sets), []), sum((s.classes for s in sets), []), cat("crops"),
                     cat("gaze_vector"), cat("gaze_pitchyaw"), cat("gaze_features"), cat("gaze_valid"),
                     cat("region_boxes"), cat("n_faces"), sum((s.keys for s in sets), []), cat("quality"))
