"""The one batch API: files -> faces -> gaze, with the content-hash cache.

`analyze_paths(paths)` returns one `ImageFaces` per path, in order. A file that cannot be read
becomes `ImageFaces(path, error=...)` and the others go on.
"""
from __future__ import annotations

import os
import weakref
from typing import Iterable, Iterator

from ..faces import FaceAnalyzer, ImageReadError
from ..faces.io import decode_image, read_bytes
from ..records import FaceGaze, ImageFaces
from .cache import GazeCache, content_hash
from .estimators import GazeEstimator, create_estimator


# Bump when the face/gaze computation changes in a way that changes results, so that caches
# written by older code are not read (they stay on disk under their own config hash).
PIPELINE_VERSION = 1


def _config(analyzer: FaceAnalyzer, estimator: GazeEstimator | None) -> dict:
    return {"faces": analyzer.config(), "gaze": None if estimator is None else estimator.config(),
            "pipeline": PIPELINE_VERSION}


# design choice, not from the paper: faces of up to 2 images are detected at once, each thread
# with its own MediaPipe tasks (they are not thread-safe); decoding and MediaPipe's graph release
# the GIL. Measured on the shared 2-core machine (docs/faces-gaze.md#many-images-at-once).
DETECT_WORKERS = min(2, os.cpu_count() or 1)


_CLONES: "weakref.WeakKeyDictionary[FaceAnalyzer, list[FaceAnalyzer]]" = weakref.WeakKeyDictionary()


def _analyzers(analyzer: FaceAnalyzer, n: int) -> list[FaceAnalyzer]:
    """`analyzer` and n - 1 copies of it, each with its own MediaPipe tasks (built on first use),
    kept for the analyzer's lifetime so that a long-lived caller builds them once."""
    import copy

    clones = _CLONES.setdefault(analyzer, [])
    while len(clones) < n - 1:
        clones.append(copy.copy(analyzer))  # __getstate__ drops the tasks: the copy builds its own
    return [analyzer, *clones[: n - 1]]


def _map_detect(analyzer: FaceAnalyzer, fn, items: list, workers: int) -> list:
    """[fn(analyzer_i, item)] in order; item k goes to thread k % workers and its own analyzer."""
    workers = max(1, min(workers, len(items)))
    if workers == 1:
        return [fn(analyzer, x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    ans = _analyzers(analyzer, workers)
    with ThreadPoolExecutor(workers, thread_name_prefix="faces") as pool:
        parts = list(pool.map(lambda i: [fn(ans[i], x) for x in items[i::workers]], range(workers)))
    out = [None] * len(items)
    for i, part in enumerate(parts):
        out[i::workers] = part
    return out


def _detect_file(analyzer: FaceAnalyzer, cache: GazeCache | None, path: str) -> tuple[ImageFaces, str | None, bool]:
    """(result, content digest, computed here) for one file: a cache hit, its faces, or its error."""
    try:
        data = read_bytes(path)
        digest = content_hash(data) if cache else None  # hashing a large photo is not free
        hit = cache.get(digest, path) if cache else None
        if hit is not None:
            return hit, digest, False
        image = decode_image(data, path)
        faces = analyzer.detect(image)
        return (ImageFaces(path=path, faces=[FaceGaze(face=f, gaze=None) for f in faces],
                           size=(int(image.shape[1]), int(image.shape[0]))), digest, True)
    except ImageReadError as e:
        return ImageFaces(path=path, error=str(e)), None, False
    except Exception as e:  # noqa: BLE001 - a batch job reports the bad item and goes on
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        return ImageFaces(path=path, error=f"{path}: {type(e).__name__}: {msg}"), None, False


def iter_analyze(paths: Iterable[str | os.PathLike], analyzer: FaceAnalyzer | None = None,
                 estimator: GazeEstimator | None = None, cache_dir: str | os.PathLike | None = None,
                 batch_size: int = 8, progress: bool = False, gaze: bool = True,
                 workers: int | None = None) -> Iterator[ImageFaces]:
    """Yield one `ImageFaces` per path, in order; the estimator runs once per `batch_size` images,
    and the faces of a batch's images are detected by `workers` threads (default DETECT_WORKERS)."""
    paths = [str(p) for p in paths]
    analyzer = analyzer or FaceAnalyzer()
    if gaze and estimator is None:
        estimator = create_estimator()
    if not gaze:
        estimator = None
    cache = GazeCache(cache_dir, _config(analyzer, estimator)) if cache_dir else None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="img", desc="faces+gaze")
    workers = DETECT_WORKERS if workers is None else workers
    for start in range(0, len(paths), max(1, batch_size)):
        chunk = paths[start:start + batch_size]
        done = _map_detect(analyzer, lambda a, p: _detect_file(a, cache, p), chunk, workers)
        pending = [(r, digest) for r, digest, new in done if new]  # computed here, to be cached
        if estimator is not None:
            todo = [fg for imf, _ in pending for fg in imf.faces]
            if todo:
                for fg, g in zip(todo, estimator.estimate([fg.face for fg in todo])):
                    fg.gaze = g
        if cache is not None:
            for imf, digest in pending:
                cache.put(digest, imf)
        for r, _, _ in done:
            if bar is not None:
                bar.update(1)
            yield r
    if bar is not None:
        bar.close()


def analyze_paths(paths: Iterable[str | os.PathLike], analyzer: FaceAnalyzer | None = None,
                  estimator: GazeEstimator | None = None, cache_dir: str | os.PathLike | None = None,
                  batch_size: int = 8, progress: bool = False, gaze: bool = True,
                  workers: int | None = None) -> list[ImageFaces]:
    """Faces and gaze of every file, in order; bad files come back with `error` set."""
    return list(iter_analyze(paths, analyzer, estimator, cache_dir, batch_size, progress, gaze, workers))


def analyze_image(image, analyzer: FaceAnalyzer | None = None, estimator: GazeEstimator | None = None,
                  path: str = "<array>") -> ImageFaces:
    """Faces and gaze of an in-memory (H, W, 3) uint8 RGB image (no cache)."""
    analyzer = analyzer or FaceAnalyzer()
    estimator = estimator or create_estimator()
    faces = analyzer.detect(image)
    gazes = estimator.estimate(faces) if faces else []
    return ImageFaces(path=path, faces=[FaceGaze(f, g) for f, g in zip(faces, gazes)],
                      size=(int(image.shape[1]), int(image.shape[0])))
