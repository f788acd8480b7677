"""The one batch API: files -> faces -> gaze, with the content-hash cache.

`analyze_paths(paths)` returns one `ImageFaces` per path, in order. A file that cannot be read
becomes `ImageFaces(path, error=...)` and the others go on.
"""
from __future__ import annotations

import os
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


def iter_analyze(paths: Iterable[str | os.PathLike], analyzer: FaceAnalyzer | None = None,
                 estimator: GazeEstimator | None = None, cache_dir: str | os.PathLike | None = None,
                 batch_size: int = 8, progress: bool = False, gaze: bool = True) -> Iterator[ImageFaces]:
    """Yield one `ImageFaces` per path, in order; the estimator runs once per `batch_size` images."""
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
    for start in range(0, len(paths), max(1, batch_size)):
        chunk = paths[start:start + batch_size]
        results: list[ImageFaces] = []
        pending: list[tuple[ImageFaces, str | None]] = []  # computed here, to be cached
        for path in chunk:
            try:
                data = read_bytes(path)
                digest = content_hash(data) if cache else None  # hashing a large photo is not free
                hit = cache.get(digest, path) if cache else None
                if hit is not None:
                    results.append(hit)
                    continue
                image = decode_image(data, path)
                faces = analyzer.detect(image)
                imf = ImageFaces(path=path, faces=[FaceGaze(face=f, gaze=None) for f in faces],
                                 size=(int(image.shape[1]), int(image.shape[0])))
                results.append(imf)
                pending.append((imf, digest))
            except ImageReadError as e:
                results.append(ImageFaces(path=path, error=str(e)))
            except Exception as e:  # noqa: BLE001 - a batch job reports the bad item and goes on
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                results.append(ImageFaces(path=path, error=f"{path}: {type(e).__name__}: {msg}"))
        if estimator is not None:
            todo = [fg for imf, _ in pending for fg in imf.faces]
            if todo:
                for fg, g in zip(todo, estimator.estimate([fg.face for fg in todo])):
                    fg.gaze = g
        if cache is not None:
            for imf, digest in pending:
                cache.put(digest, imf)
        for r in results:
            if bar is not None:
                bar.update(1)
            yield r
    if bar is not None:
        bar.close()


def analyze_paths(paths: Iterable[str | os.PathLike], analyzer: FaceAnalyzer | None = None,
                  estimator: GazeEstimator | None = None, cache_dir: str | os.PathLike | None = None,
                  batch_size: int = 8, progress: bool = False, gaze: bool = True) -> list[ImageFaces]:
    """Faces and gaze of every file, in order; bad files come back with `error` set."""
    return list(iter_analyze(paths, analyzer, estimator, cache_dir, batch_size, progress, gaze))


def analyze_image(image, analyzer: FaceAnalyzer | None = None, estimator: GazeEstimator | None = None,
                  path: str = "<array>") -> ImageFaces:
    """Faces and gaze of an in-memory (H, W, 3) uint8 RGB image (no cache)."""
    analyzer = analyzer or FaceAnalyzer()
    estimator = estimator or create_estimator()
    faces = analyzer.detect(image)
    gazes = estimator.estimate(faces) if faces else []
    return ImageFaces(path=path, faces=[FaceGaze(f, g) for f, g in zip(faces, gazes)],
                      size=(int(image.shape[1]), int(image.shape[0])))
