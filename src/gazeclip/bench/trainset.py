"""The training set of the here-trained forgers: MobileStyleGAN faces, canonical crop, 64x64.

Seeds for these faces live in their own range (`TRAIN_SEED_BASE`), disjoint from every seed the
benchmark builder uses, so no training face of a forger appears as a benchmark image.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_write_bytes

TRAIN_SEED_BASE = 9_000_000
TRAIN_RES = 64


def cache_dir() -> Path:
    from gazeclip.weights import home

    return Path(home()) / "bench"


def build_trainset(n: int = 600, res: int = TRAIN_RES, path: Path | None = None) -> np.ndarray:
    """N x res x res x 3 uint8 faces; cached as .npy (atomic write), deterministic in n and res."""
    from .faceops import detect_face, face_crop
    from .pretrained import MobileStyleGAN

    path = path or cache_dir() / f"trainset-msg-{n}-{res}.npy"
    if path.is_file():
        return np.load(path)
    g = MobileStyleGAN.get()
    out = []
    seed = TRAIN_SEED_BASE
    bar = tqdm(total=n, desc="trainset (MobileStyleGAN faces)", unit="img")
    while len(out) < n:
        img = g(seed)
        seed += 1
        face = detect_face(img)
        if face is None:
            continue
        out.append(face_crop(img, res, face)[0])
        bar.update(1)
    bar.close()
    arr = np.stack(out)
    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write_bytes(path, buf.getvalue())
    return arr
