"""Checks of a built benchmark: format-level shortcuts (asserted by the tests), pixel statistics
per class (reported), near-duplicates across splits, real identities on one side of the split."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gazeclip.data.manifest import REAL, ManifestRow, read_manifest


def thumb_vector(path: Path, size: int = 32) -> np.ndarray:
    """The greyscale image, area-downscaled to size x size, mean removed, unit length: the dot
    product of two such vectors is their normalised correlation (blind to brightness and contrast)."""
    from gazeclip.faces.io import load_image

    g = cv2.cvtColor(load_image(path), cv2.COLOR_RGB2GRAY)  # the one decoder (pixel limit, errors by name)
    v = cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
    v -= v.mean()
    return v / (np.linalg.norm(v) + 1e-9)


# design choice, not from the paper: two images are near-duplicates when the normalised correlation
# of their 32x32 greyscale thumbnails is >= 0.96. Measured on mini v2: the most similar pair of
# different images across train and test (official portraits of two people, same framing) is at
# 0.940 (558,530 pairs); a lightly changed copy (brightness +8, 3x3 blur, 1-pixel shift, JPEG 85)
# is at >= 0.981 (200 real photos) and a gaze-redirected copy at >= 0.993. (v1's 256-bit dHash
# put copies at up to 29 bits and different official portraits at down to 16, so it was replaced.)
NEAR_DUP_CORR = 0.96


def near_duplicates(data_dir: Path, rows: list[ManifestRow] | None = None, min_corr: float = NEAR_DUP_CORR,
                    a: str = "train", b: str = "test", size: int = 32) -> list[tuple[str, str, float]]:
    """Pairs (path in split a, path in split b, correlation) whose thumbnails correlate >= min_corr."""
    data_dir = Path(data_dir)
    rows = rows if rows is not None else read_manifest(data_dir)
    pa = [r.path for r in rows if r.split == a]
    pb = [r.path for r in rows if r.split == b]
    if not pa or not pb:
        return []
    va = np.stack([thumb_vector(data_dir / p, size) for p in pa])
    vb = np.stack([thumb_vector(data_dir / p, size) for p in pb])
    c = va @ vb.T
    return [(pa[i], pb[j], round(float(c[i, j]), 4)) for i, j in zip(*np.nonzero(c >= min_corr))]


def identities_across_splits(rows: list[ManifestRow]) -> dict[str, set[str]]:
    """Real people who appear in more than one split, counting every row that names them: real
    photos and the manipulations made from them (identity `target+donor`)."""
    sp: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        for ident in filter(None, r.identity.split("+")):
            sp[ident].add(r.split)
    return {k: v for k, v in sp.items() if len(v) > 1}


# ------------------------------------------------------------------ format-level shortcut

# design choice, not from the paper: a format-level classifier may beat chance by at most this
# much (balanced accuracy, cross-validated) before the benchmark counts as leaking its labels
# through the file format.
FORMAT_MARGIN = 0.10
FORMAT_FEATURES = ("file_bytes", "width", "height", "mode", "format", "bit_depth", "png_chunks",
                   "png_ancillary_bytes", "jpeg", "jpeg_quant_mean")
_MODES = {"1": 1, "L": 2, "P": 3, "RGB": 4, "RGBA": 5, "CMYK": 6, "YCbCr": 7, "LA": 8, "I;16": 9}
_FORMATS = {"PNG": 1, "JPEG": 2, "WEBP": 3, "BMP": 4, "TIFF": 5, "GIF": 6}


def _png_chunks(data: bytes) -> list[tuple[bytes, int]]:
    """(type, length) of every chunk of a PNG file ([] if it is not one)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return []
    out, i = [], 8
    while i + 8 <= len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        out.append((data[i + 4:i + 8], n))
        i += 12 + n
    return out


def _jpeg_quant_mean(data: bytes) -> float:
    """Mean of the quantisation tables of a JPEG file (its DQT segments, read from the bytes before
    the first scan); 0.0 for anything that is not a JPEG."""
    if data[:2] != b"\xff\xd8":
        return 0.0
    vals: list[int] = []
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, n = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xDA:  # start of scan: the tables come before it
            break
        if marker == 0xDB:
            seg, k = data[i + 4:i + 2 + n], 0
            while k < len(seg):
                wide = seg[k] >> 4  # 0: 8-bit entries, 1: 16-bit
                step = 2 if wide else 1
                tab = seg[k + 1:k + 1 + 64 * step]
                vals += [int.from_bytes(tab[j:j + step], "big") for j in range(0, len(tab), step)]
                k += 1 + 64 * step
        i += 2 + n
    return float(np.mean(vals)) if vals else 0.0


def format_features(path: Path) -> tuple[list[float], str, tuple[int, int], str]:
    """Features a file carries besides its pixels: size in bytes, dimensions, colour mode, container
    format, bit depth, PNG chunk count and metadata (ancillary chunk) bytes, JPEG-ness and JPEG
    quantisation. Returns (features, format, size, mode)."""
    from gazeclip.faces.io import image_header, read_bytes

    data = read_bytes(path)  # size-checked like every image read
    fmt, size, mode = image_header(path)  # header only: no pixel is decoded
    bits = {"1": 1, "L": 8, "P": 8, "RGB": 8, "RGBA": 8, "I;16": 16}.get(mode, 8)
    chunks = _png_chunks(data)
    ancillary = sum(n for t, n in chunks if t[:1].islower())  # tEXt, iTXt, pHYs, gAMA, eXIf, ...
    feats = [len(data), size[0], size[1], _MODES.get(mode, 0), _FORMATS.get(fmt, 0), bits, len(chunks),
             ancillary, float(fmt == "JPEG"), _jpeg_quant_mean(data)]
    return feats, fmt, size, mode


@dataclass
class ShortcutReport:
    formats: set[str]
    sizes: set[tuple[int, int]]
    modes: set[str]
    real_fake_balanced_acc: float     # cross-validated (mean over folds), from the format-level features alone
    class_balanced_acc: float         # the same for all classes
    class_chance: float               # 1 / number of classes (balanced accuracy of any constant guess)
    n: int
    file_bytes: set[int]
    margin: float = FORMAT_MARGIN
    real_fake_sd: float = 0.0         # standard deviation across the folds
    class_sd: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.real_fake_balanced_acc <= 0.5 + self.margin
                and self.class_balanced_acc <= self.class_chance + self.margin)

    def summary(self) -> str:
        return (f"formats {sorted(self.formats)}, sizes {sorted(self.sizes)}, modes {sorted(self.modes)}, "
                f"{len(self.file_bytes)} distinct file size(s); format-level classifier, {self.n} images: "
                f"real vs fake balanced accuracy {self.real_fake_balanced_acc:.2f} ± {self.real_fake_sd:.2f} "
                f"(chance 0.50), {round(1 / self.class_chance)} classes {self.class_balanced_acc:.2f} ± "
                f"{self.class_sd:.2f} (chance {self.class_chance:.2f}; ± = sd over 5 folds); allowed margin "
                f"{self.margin:.2f}: "
                + ("passes" if self.ok else "FAILS"))


def _cv_balanced_acc(x: np.ndarray, y: np.ndarray, model, seed: int) -> tuple[float, float]:
    """Balanced accuracy of `model` under stratified k-fold cross-validation (k <= 5): the mean
    over the folds and its standard deviation across folds."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    _, yi = np.unique(y, return_inverse=True)
    if len(np.unique(yi)) < 2:
        return float("nan"), float("nan")
    k = int(min(5, np.bincount(yi).min()))
    if k < 2:
        return 1.0 / len(np.unique(yi)), 0.0
    sc = cross_val_score(clone(model), x, yi, cv=StratifiedKFold(k, shuffle=True, random_state=seed),
                         scoring="balanced_accuracy")
    return float(sc.mean()), float(sc.std())


def shortcut_report(data_dir: Path, rows: list[ManifestRow] | None = None, seed: int = 0,
                    margin: float = FORMAT_MARGIN) -> ShortcutReport:
    """Can the file format alone (FORMAT_FEATURES) tell real from fake, or class from class?
    A decision tree (depth 5, balanced class weights) under stratified k-fold cross-validation;
    `ok` when both balanced accuracies stay within `margin` of chance."""
    from sklearn.tree import DecisionTreeClassifier

    data_dir = Path(data_dir)
    rows = rows if rows is not None else read_manifest(data_dir)
    feats, formats, sizes, modes = [], set(), set(), set()
    for r in rows:
        f, fmt, size, mode = format_features(data_dir / r.path)
        feats.append(f)
        formats.add(fmt)
        sizes.add(size)
        modes.add(mode)
    x = np.array(feats, dtype=np.float64)
    tree = DecisionTreeClassifier(max_depth=5, class_weight="balanced", random_state=seed)
    y_rf = np.array([r.cls != REAL for r in rows], dtype=int)
    bal, bal_sd = _cv_balanced_acc(x, y_rf, tree, seed)
    y_c = np.array([r.cls for r in rows])
    n_cls = len(set(y_c))
    cls_acc, cls_sd = _cv_balanced_acc(x, y_c, tree, seed) if n_cls > 1 else (1.0, 0.0)
    return ShortcutReport(formats, sizes, modes, 0.5 if np.isnan(bal) else bal, cls_acc, 1.0 / n_cls, len(rows),
                          {int(v) for v in x[:, 0]}, margin, 0.0 if np.isnan(bal_sd) else bal_sd, cls_sd)


# ------------------------------------------------------------------ pixel statistics (reported only)

PIXEL_FEATURES = ("laplacian_var", "hf_energy_q", "hf_energy_h", "noise_residual_std", "gradient_mean")


def pixel_features(path: Path) -> list[float]:
    """Blur and high-frequency statistics of the greyscale image: variance of the Laplacian, share
    of spectral energy beyond 1/4 and 1/2 of the Nyquist radius, std of the residual after a 3x3
    median filter, mean gradient magnitude. Signal a detector may legitimately use."""
    from gazeclip.faces.io import load_image

    g = cv2.cvtColor(load_image(path), cv2.COLOR_RGB2GRAY)
    f = g.astype(np.float64)
    lap = cv2.Laplacian(f, cv2.CV_64F).var()
    spec = np.abs(np.fft.fftshift(np.fft.fft2(f - f.mean()))) ** 2
    h, w = f.shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))  # 1 = Nyquist along an axis
    tot = spec.sum() + 1e-12
    resid = f - cv2.medianBlur(g, 3).astype(np.float64)
    gx, gy = cv2.Sobel(f, cv2.CV_64F, 1, 0), cv2.Sobel(f, cv2.CV_64F, 0, 1)
    return [float(np.log1p(lap)), float(spec[r > 0.25].sum() / tot), float(spec[r > 0.5].sum() / tot),
            float(resid.std()), float(np.hypot(gx, gy).mean())]


@dataclass
class PixelStatsReport:
    per_class: dict[str, dict[str, float]]   # class -> {"vs_real", "vs_real_sd", "n", feature means}
    real_fake_balanced_acc: float
    class_balanced_acc: float
    class_chance: float
    n: int
    real_fake_sd: float = 0.0
    class_sd: float = 0.0

    def table(self) -> str:
        lines = ["| class | n | vs real: balanced acc ± sd | " + " | ".join(PIXEL_FEATURES) + " |",
                 "|---|---:|---:|" + "---:|" * len(PIXEL_FEATURES)]
        for c, d in self.per_class.items():
            acc = "-" if c == REAL else f"{d['vs_real']:.2f} ± {d['vs_real_sd']:.2f}"
            lines.append(f"| {c} | {int(d['n'])} | {acc} | "
                         + " | ".join(f"{d[k]:.3g}" for k in PIXEL_FEATURES) + " |")
        return "\n".join(lines)


def pixel_stats_report(data_dir: Path, rows: list[ManifestRow] | None = None, seed: int = 0) -> PixelStatsReport:
    """How well simple pixel statistics (PIXEL_FEATURES) separate each class from real, real from
    fake, and all classes: a random forest (50 trees, depth 6, balanced class weights) under
    stratified 5-fold cross-validation, balanced accuracy (mean and sd over the folds). Reported,
    never asserted."""
    from sklearn.ensemble import RandomForestClassifier

    data_dir = Path(data_dir)
    rows = rows if rows is not None else read_manifest(data_dir)
    x = np.array([pixel_features(data_dir / r.path) for r in rows])
    y = np.array([r.cls for r in rows])
    rf = RandomForestClassifier(n_estimators=50, max_depth=6, class_weight="balanced", random_state=seed, n_jobs=1)
    per: dict[str, dict[str, float]] = {}
    for c in dict.fromkeys(y):
        sel = (y == c) | (y == REAL)
        d = {"n": float((y == c).sum()), **{k: float(x[y == c, i].mean()) for i, k in enumerate(PIXEL_FEATURES)}}
        d["vs_real"], d["vs_real_sd"] = (float("nan"), float("nan")) if c == REAL else \
            _cv_balanced_acc(x[sel], (y[sel] != REAL).astype(int), rf, seed)
        per[c] = d
    n_cls = len(per)
    rf_acc, rf_sd = _cv_balanced_acc(x, (y != REAL).astype(int), rf, seed)
    cls_acc, cls_sd = _cv_balanced_acc(x, y, rf, seed)
    return PixelStatsReport(per, rf_acc, cls_acc, 1.0 / n_cls, len(rows), rf_sd, cls_sd)
