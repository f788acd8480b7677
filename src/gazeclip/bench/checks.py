"""Checks of a built benchmark: format shortcuts, near-duplicates across splits, identities."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gazeclip.data.manifest import REAL, ManifestRow, read_manifest


def dhash_bits(path: Path, size: int = 16) -> np.ndarray:
    """Difference hash (size x size bits, packed to uint8) of the greyscale image, numpy + cv2 only."""
    from gazeclip.faces.io import load_image

    g = cv2.cvtColor(load_image(path), cv2.COLOR_RGB2GRAY)  # the one decoder (pixel limit, errors by name)
    s = cv2.resize(g, (size + 1, size), interpolation=cv2.INTER_AREA).astype(np.int16)
    return np.packbits((s[:, 1:] > s[:, :-1]).ravel())


def dhash(path: Path, size: int = 8) -> int:
    """The classic 64-bit dHash as an int."""
    return int.from_bytes(dhash_bits(path, size).tobytes(), "big")


# design choice, not from the paper: a 256-bit dHash (16x16) with a distance of at most 24 bits
# (9%) marks near-duplicates (a gaze-redirected copy is at 0, a 9x9-blurred copy at 18, the
# closest different faces of the mini build at 40); the 64-bit dHash gives chance collisions
# between different people once all faces share one canonical crop.
def near_duplicates(data_dir: Path, rows: list[ManifestRow] | None = None, max_dist: int = 24,
                    a: str = "train", b: str = "test", size: int = 16) -> list[tuple[str, str, int]]:
    """Pairs (path in split a, path in split b, Hamming distance) with dHash distance <= max_dist."""
    data_dir = Path(data_dir)
    rows = rows if rows is not None else read_manifest(data_dir)
    pa = [r.path for r in rows if r.split == a]
    pb = [r.path for r in rows if r.split == b]
    if not pa or not pb:
        return []
    ha = np.stack([dhash_bits(data_dir / p, size) for p in pa])
    out = []
    for p in pb:
        d = np.unpackbits(np.bitwise_xor(ha, dhash_bits(data_dir / p, size)[None]), axis=1).sum(1)
        for i in np.nonzero(d <= max_dist)[0]:
            out.append((pa[i], p, int(d[i])))
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
    from gazeclip.faces.io import image_header

    return image_header(path)


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
