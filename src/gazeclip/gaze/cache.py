"""On-disk cache of per-image face/gaze results, keyed by the image's content hash.

Layout: `<cache_dir>/<config-hash>/<sha[:2]>/<sha>.npz`, where the config hash covers the face
analyzer's settings, the estimator (name + weights) and the schema version, so changing any of
them never returns stale results. Writes go to a temp file in the same folder, then `os.replace`:
two processes writing the same entry at once both succeed and a reader never sees half a file.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes
from ..records import ImageFaces
from .serialize import SCHEMA_VERSION, from_arrays, to_arrays


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_hash(config: dict) -> str:
    blob = json.dumps({"schema": SCHEMA_VERSION, **config}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class GazeCache:
    def __init__(self, cache_dir: str | os.PathLike, config: dict, crops: bool = True):
        self.root = Path(cache_dir).expanduser() / config_hash(config)
        self.crops = crops  # design choice, not from the paper: keep crops (~300 KB/face) so training never re-crops
        self.hits = self.misses = 0

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.npz"

    def get(self, digest: str, path: str) -> ImageFaces | None:
        p = self.path_for(digest)
        if not p.is_file():
            self.misses += 1
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                imf = from_arrays({k: z[k] for k in z.files})
        except Exception:  # noqa: BLE001 - an unreadable entry is a miss; it is rewritten
            self.misses += 1
            return None
        self.hits += 1
        imf.path = str(path)  # the same content may live under another name
        return imf

    def put(self, digest: str, imf: ImageFaces) -> None:
        if imf.error is not None:
            return  # errors are not cached: the file may be fixed
        p = self.path_for(digest)
        buf = io.BytesIO()
        np.savez(buf, **to_arrays(imf, crops=self.crops))
        atomic_write_bytes(p, buf.getvalue())
