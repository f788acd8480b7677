"""A tiny synthetic dataset in the benchmark's layout (manifest.csv, protocols.yaml, DIR/<class>/),
for tests and speed measurements: each class is a learnable texture (its own tint and stripe
frequency plus noise). Not faces: use it with `faces: none`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .manifest import ManifestRow, Protocol, write_manifest, write_protocols

DEFAULT_CLASSES = {"real": "real", "gan-a": "gan", "gan-b": "gan", "diff-a": "diffusion", "flow-a": "flow"}


def make_synthetic_dataset(out: str | Path, classes: dict[str, str] | None = None, n_train: int = 8, n_val: int = 4,
                           n_test: int = 4, unseen: tuple[str, ...] = ("gan-b", "flow-a"), size: int = 32,
                           seed: int = 0) -> Path:
    from PIL import Image

    out = Path(out)
    classes = classes or DEFAULT_CLASSES
    rng = np.random.default_rng(seed)
    rows = []
    yy, xx = np.mgrid[0:size, 0:size] / size
    for ci, (cls, fam) in enumerate(classes.items()):
        (out / cls).mkdir(parents=True, exist_ok=True)
        tint = np.random.default_rng(ci + 100).uniform(60, 200, 3)
        freq = 2 + 3 * ci
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            if cls in unseen and split != "test":
                continue
            for k in range(n):
                phase = rng.uniform(0, 2 * np.pi)
                wave = 40 * np.sin(2 * np.pi * freq * (xx + yy * (ci % 2)) + phase)
                img = tint[None, None, :] + wave[..., None] + rng.normal(0, 12, (size, size, 3))
                img = np.clip(img, 0, 255).astype(np.uint8)
                rel = f"{cls}/{split}-{k:03d}.png"
                Image.fromarray(img).save(out / rel)
                sha = hashlib.sha256((out / rel).read_bytes()).hexdigest()
                ftype = "real" if cls == "real" else "entire-synthesis"
                rows.append(ManifestRow(rel, cls, fam, ftype, split, "synthetic", "CC0", sha,
                                        identity=f"id{k}" if cls == "real" else ""))
    write_manifest(rows, out / "manifest.csv")
    fakes = [c for c in classes if c != "real"]
    seen = tuple(c for c in fakes if c not in unseen)
    write_protocols([Protocol("P1", tuple(fakes), (), "closed set"),
                     Protocol("P2", seen, tuple(unseen), "open set")], out / "protocols.yaml")
    return out
