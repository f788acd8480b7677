"""Run a trained model on image files and folders: faces, real/fake, generator, gaze.

One record per face:
    {"path", "face", "p_fake", "generator", "generator_prob", "family", "unknown_generator",
     "gaze": {"pitch", "yaw"}}          (gaze in degrees, normalised frame; null when not estimated)
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

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def expand_paths(paths: Iterable[str | Path]) -> list[str]:
    """Files as given; folders recursively (image extensions only, sorted). A missing path, and a
    broken link found in a folder, are kept so that they are reported as errors by name."""
    from ..faces.io import find_images

    return find_images(paths, IMAGE_EXTS)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def predict_paths(run, paths: Iterable[str | Path], chunk: int = 32, face_cache_dir: str | None = None,
                  progress: bool = False) -> Iterator[dict]:
    from ..data.dataset import FaceDataset, FaceGazeSource, SampleSet, _empty_arrays, load_rgb, samples_from_faces
    from .modeling import run_model

    files = expand_paths(paths)
    mode = run.cfg.faces
    source = FaceGazeSource(mode, run.cfg.gaze_estimator, face_cache_dir, run.gaze_dim)
    size = run.preprocess.size
    tx = run.taxonomy
    thr = run.unknown_threshold
    from tqdm import tqdm

    bar = tqdm(total=len(files), desc="predict", unit="img", disable=not progress, leave=False)
    for s in range(0, len(files), chunk):
        part = files[s:s + chunk]
        results = source.analyze(part)
        sets: list[SampleSet] = []
        order: list[tuple[str, object, int]] = []  # (kind, payload, rows of `merged`) per input, in order
        for res in results:
            if res.error:
                order.append(("error", {"path": res.path, "error": res.error}, 0))
            elif mode == "none":  # the run was trained on whole images: the image is its one "face"
                img = getattr(res, "_image", None)
                img = img if img is not None else load_rgb(res.path)
                a = _empty_arrays(img, size, source.gaze_dim)
                sets.append(SampleSet([res.path], [""], a[0][None], a[1][None], a[2][None], a[3][None],
                                      np.array([False]), a[5][None], np.array([0])))
                order.append(("faces", res.path, 1))
            elif not res.faces:
                order.append(("noface", {"path": res.path, "faces": 0}, 0))
            else:
                sets.append(samples_from_faces(res.path, res.faces, size, source.gaze_dim))
                order.append(("faces", res.path, len(sets[-1])))
        if sets:
            merged = _concat(sets)
            preds = run_model(run.model, FaceDataset(merged, tx, run.preprocess), batch_size=32, device=run.device)
            prob = _softmax(preds.attribution_logits)
            fam = preds.family_logits.argmax(1)
        k = 0  # rows of `merged` are taken by position: input i owns the next n_rows rows
        for kind, payload, n_rows in order:
            if kind != "faces":
                yield payload
                continue
            for face_i in range(n_rows):
                if not (np.isfinite(prob[k]).all() and np.isfinite(preds.p_fake[k])):
                    yield {"path": payload, "face": face_i,
                           "error": f"{payload}: face {face_i}: the model's output is not a number (NaN/Inf); "
                                    "its weights may be damaged: run `gazeclip weights verify`"}
                    k += 1
                    continue
                c = int(prob[k].argmax())
                gp = float(prob[k, c])
                gaze = None
                if merged.gaze_valid[k]:
                    gaze = {"pitch": round(math.degrees(float(merged.gaze_pitchyaw[k, 0])), 3),
                            "yaw": round(math.degrees(float(merged.gaze_pitchyaw[k, 1])), 3)}
                yield {"path": payload, "face": face_i, "p_fake": round(float(preds.p_fake[k]), 6),
                       "generator": tx.classes[c], "generator_prob": round(gp, 6), "family": tx.families[int(fam[k])],
                       "unknown_generator": bool(c != 0 and thr is not None and gp < thr), "gaze": gaze}
                k += 1
        bar.update(len(part))
    bar.close()


def _concat(sets):
    from ..data.dataset import SampleSet

    cat = lambda a: np.concatenate([getattr(s, a) for s in sets])  # noqa: E731
    return SampleSet(sum((s.paths for s in sets), []), sum((s.classes for s in sets), []), cat("crops"),
                     cat("gaze_vector"), cat("gaze_pitchyaw"), cat("gaze_features"), cat("gaze_valid"),
                     cat("region_boxes"), cat("n_faces"), sum((s.keys for s in sets), []))
