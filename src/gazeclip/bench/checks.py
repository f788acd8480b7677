"""Checks of a built benchmark: format shortcuts, near-duplicates across splits, identities."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gazeclip.data.manifest import REAL, ManifestRow, read_manifest


def dhash(path: Path, size: int = 8) -> int:
    """64-bit difference hash of the greyscale image (numpy + cv2 only)."""
    g = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if g is None:
        raise FileNotFoundError(f"{path}: cannot read image")
    s = cv2.resize(g, (size + 1, size), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (s[:, 1:] > s[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0]) if size == 8 else int("".join("1" if b else "0" for b in bits), 2)


def near_duplicates(data_dir: Path, rows: list[ManifestRow] | None = None, max_dist: int = 3,
                    a: str = "train", b: str = "test") -> list[tuple[str, str, int]]:
    """Pairs (path in split a, path in split b, Hamming distance) with dHash distance <= max_dist."""
    data_dir = Path(data_dir)
    rows = rows if rows is not None else read_manifest(data_dir)
    ha = [(r.path, dhash(data_dir / r.path)) for r in rows if r.split == a]
    hb = [(r.path, dhash(data_dir / r.path)) for r in rows if r.split == b]
    if not ha or not hb:
        return []
    va = np.array([h for _, h in ha], dtype=np.uint64)
    out = []
    for pb, h in hb:
        x = np.bitwise_xor(va, np.uint64(h))
        d = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(1)
        for i in np.nonzero(d <= max_dist)[0]:
            out.append((ha[i][0], pb, int(d[i])))
    return out


def identities_across_splits(rows: list[ManifestRow]) -> dict[str, set[str]]:
    """Real identities that appear in more than one split."""
    sp: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r.cls == REAL and r.identity:
            sp[r.identity].add(r.split)
    return {k: v for k, v in sp.items() if len(v) > 1}


@dataclass
class ShortcutReport:
    formats: set[str]
    sizes: set[tuple[int, int]]
    modes: set[str]
    real_fake_balanced_acc: float     # cross-validated, from (file size, width, height, mode) alone
    class_acc: float                  # the same for all classes
    class_chance: float               # majority-class rate
    n: int


def _read_header(path: Path) -> tuple[str, tuple[int, int], str]:
    from PIL import Image

    with Image.open(path) as im:
        return im.format or "?", im.size, im.mode


def shortcut_report(data_dir: Path, rows: list[ManifestRow] | None = None, seed: int = 0) -> ShortcutReport:
    """Can (file size, width, height, colour mode) alone tell classes, or real from fake, apart?
    A depth-3 decision tree, stratified k-fold cross-validation."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.tree import DecisionTreeClassifier

    data_dir = Path(data_dir)
    rows = rows if rows is not None else read_manifest(data_dir)
    feats, formats, sizes, modes = [], set(), set(), set()
    for r in rows:
        p = data_dir / r.path
        fmt, size, mode = _read_header(p)
        formats.add(fmt)
        sizes.add(size)
        modes.add(mode)
        feats.append([p.stat().st_size, size[0], size[1], hash(mode) % 1000])
    x = np.array(feats, dtype=np.float64)

    def cv_pred(y: np.ndarray) -> np.ndarray:
        k = int(min(5, np.bincount(np.unique(y, return_inverse=True)[1]).min()))
        if k < 2:
            return np.full_like(y, np.bincount(y).argmax())
        return cross_val_predict(DecisionTreeClassifier(max_depth=3, random_state=seed), x, y,
                                 cv=StratifiedKFold(k, shuffle=True, random_state=seed))

    y_rf = np.array([r.cls != REAL for r in rows], dtype=int)
    if len(set(y_rf)) > 1:
        p = cv_pred(y_rf)
        bal = float(np.mean([np.mean(p[y_rf == c] == c) for c in (0, 1)]))
    else:
        bal = 0.5
    classes = sorted({r.cls for r in rows})
    y_c = np.array([classes.index(r.cls) for r in rows])
    pc = cv_pred(y_c)
    chance = float(np.bincount(y_c).max() / len(y_c))
    return ShortcutReport(formats, sizes, modes, bal, float(np.mean(pc == y_c)), chance, len(rows))
