"""Frozen-prefix feature cache.

The image tower is frozen below the model's first adapted block (`model.prefix_layer`) and a face
crop never changes, so the hidden states entering that block are a pure function of the crop's
pixels. They are computed once, stored on disk keyed by the crop's content hash (one `.npz` per
crop, under a folder named after the frozen prefix: backbone, weights digest, layer, input size).
Training then runs only the upper blocks.

An entry is checked when read (zip CRC, dtype, shape agreeing with the other entries, finite
values); a damaged entry counts as missing and `fill` writes it again.

Pixel-changing augmentation (flip, colour jitter) gives different pixels, hence different hidden
states: such items bypass the cache and are encoded on the fly (see `FaceDataset`).
Writes are atomic (temp file + rename), so several processes may fill the same cache at once.
"""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..atomic import atomic_write_bytes
from ..errors import UsageError


class FeatureCache:
    def __init__(self, root: str | Path, prefix_id: str, dtype: str = "float16"):
        if dtype not in ("float16", "float32"):
            raise UsageError(f"cache dtype {dtype!r}: use float16 or float32")
        self.dir = Path(root) / re.sub(r"[^A-Za-z0-9_.-]+", "_", prefix_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dtype = np.dtype(dtype)
        self.hits = self.misses = self.damaged = 0
        self.shape: tuple[int, ...] | None = None  # of every entry: set by the first good one

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npz"

    def __contains__(self, key: str) -> bool:
        return self._read(key) is not None

    def _read(self, key: str) -> np.ndarray | None:
        """The stored states, or None when missing or damaged (zip CRC, dtype, shape, NaN/Inf)."""
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                arr = z["states"]
        except Exception:  # noqa: BLE001 - truncated, bad CRC, not a zip: damaged, written again
            self.damaged += 1
            return None
        if (arr.dtype != self.dtype or arr.ndim != 2 or (self.shape is not None and arr.shape != self.shape)
                or not np.isfinite(arr).all()):
            self.damaged += 1
            return None
        if self.shape is None:
            self.shape = arr.shape
        return arr

    def get(self, key: str) -> torch.Tensor | None:
        arr = self._read(key)
        if arr is None:
            self.misses += 1
            return None
        self.hits += 1
        return torch.from_numpy(arr.astype(np.float32))

    def put(self, key: str, states: np.ndarray | torch.Tensor) -> None:
        if isinstance(states, torch.Tensor):
            states = states.detach().float().cpu().numpy()
        p = self.path(key)
        buf = io.BytesIO()
        np.savez(buf, states=states.astype(self.dtype))  # zip: a CRC per entry
        atomic_write_bytes(p, buf.getvalue())

    def fill(self, keys: Sequence[str], pixels_of: Callable[[list[int]], torch.Tensor],
             encode: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 32, rank: int = 0,
             world: int = 1, progress: bool = False) -> int:
        """Encode and store every key not yet cached (this rank's share: i % world == rank).
        Returns the number computed here."""
        todo = [i for i, k in enumerate(keys) if i % world == rank and k not in self]
        # the same crop may appear twice (duplicates); encode it once
        seen, uniq = set(), []
        for i in todo:
            if keys[i] not in seen:
                seen.add(keys[i])
                uniq.append(i)
        if not uniq:
            return 0
        from tqdm import tqdm

        bar = tqdm(total=len(uniq), desc="feature cache", unit="img", disable=not progress, leave=False)
        for s in range(0, len(uniq), batch_size):
            idx = uniq[s:s + batch_size]
            with torch.no_grad():
                states = encode(pixels_of(idx))
            for i, st in zip(idx, states):
                self.put(keys[i], st)
            bar.update(len(idx))
        bar.close()
        return len(uniq)
