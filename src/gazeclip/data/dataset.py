"""From manifest rows to model `Batch`es.

files -> faces/gaze records (gazeclip.faces / gazeclip.gaze, cached on disk by content hash)
      -> one `SampleSet` of fixed-size uint8 face crops + gaze arrays (one face per image: the most
         confident, largest one) -> `FaceDataset` (preprocess, augmentation, feature cache) -> `Batch`.

An image where no face is found is kept: its whole image is the crop, its gaze is zeros with
`gaze_valid` False and its region boxes are the full image (so no class can be dropped by the
face detector failing more often on it).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..atomic import atomic_write_bytes
from ..models.interface import REGIONS, Batch, Taxonomy
from ..records import QUALITY_FIELDS
from .manifest import REAL, ManifestRow, Protocol
from ..errors import GazeclipError, UsageError

DEFAULT_GAZE_DIM = 512  # ResNet-18 penultimate width; used only when no estimator is loaded


def build_taxonomy(rows: Sequence[ManifestRow], protocol: Protocol) -> Taxonomy:
    """real + the protocol's seen generators; families over every class of the manifest."""
    fam = {r.cls: r.family for r in rows}
    ftype = {r.cls: r.forgery_type for r in rows}
    fam[REAL], ftype[REAL] = REAL, REAL
    missing = [c for c in protocol.seen if c not in fam]
    if missing:
        raise UsageError(f"protocol {protocol.name}: seen generators {missing} have no rows in the manifest; "
                         "rebuild the benchmark or fix protocols.yaml")
    families = [REAL] + sorted({f for c, f in fam.items() if c != REAL and f != REAL})
    classes = protocol.train_classes
    return Taxonomy(classes=tuple(classes), class_family={c: fam[c] for c in classes},
                    class_forgery_type={c: ftype[c] for c in classes}, families=tuple(families))


@dataclass
class SampleSet:
    """One face per image, as arrays (cheap to index, to save and to hash)."""

    paths: list[str]
    classes: list[str]              # true class name of each item ("" when unknown, e.g. predict)
    crops: np.ndarray               # (N, S, S, 3) uint8 RGB
    gaze_vector: np.ndarray         # (N, 3) float32
    gaze_pitchyaw: np.ndarray       # (N, 2) float32 radians
    gaze_features: np.ndarray       # (N, Dg) float32
    gaze_valid: np.ndarray          # (N,) bool
    region_boxes: np.ndarray        # (N, R, 4) float32 in [0, 1]
    n_faces: np.ndarray             # (N,) int: faces found in the image
    keys: list[str] = field(default_factory=list)  # content hash of each crop
    # (N, len(QUALITY_FIELDS)) float32: face size in source pixels, detector score, head pose,
    # chroma (records.FaceQuality; NaN where unknown): what the abstain rule reads
    quality: np.ndarray | None = None

    def __post_init__(self):
        if not self.keys:
            self.keys = [crop_key(c) for c in self.crops]
        if self.quality is None:
            self.quality = np.full((len(self.paths), len(QUALITY_FIELDS)), np.nan, np.float32)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx: Sequence[int]) -> "SampleSet":
        idx = np.asarray(idx, dtype=np.int64)
        return SampleSet([self.paths[i] for i in idx], [self.classes[i] for i in idx], self.crops[idx],
                         self.gaze_vector[idx], self.gaze_pitchyaw[idx], self.gaze_features[idx],
                         self.gaze_valid[idx], self.region_boxes[idx], self.n_faces[idx],
                         [self.keys[i] for i in idx], self.quality[idx])


def crop_key(crop: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(crop.shape).encode())
    h.update(np.ascontiguousarray(crop).tobytes())
    return h.hexdigest()


def square_resize(img: np.ndarray, size: int) -> np.ndarray:
    """CLIP's geometry (short side to `size`, bicubic, centre crop) kept as uint8."""
    from PIL import Image

    if img.shape[:2] == (size, size):
        return np.ascontiguousarray(img)
    pil = Image.fromarray(np.ascontiguousarray(img))
    w, h = pil.size
    s = size / min(w, h)
    pil = pil.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
    w, h = pil.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(pil.crop((left, top, left + size, top + size)), dtype=np.uint8)


def load_rgb(path: str | Path) -> np.ndarray:
    """uint8 RGB through gazeclip's one image decoder (EXIF, CMYK, 16-bit, the pixel limit)."""
    from ..faces.io import load_image

    return load_image(path)


class FaceGazeSource:
    """Faces and gaze for image paths. `mode="none"` skips detection (whole image, no gaze)."""

    def __init__(self, mode: str = "detect", estimator: str = "ethxgaze-r18", cache_dir: str | Path | None = None,
                 gaze_dim: int | None = None):
        if mode not in ("detect", "none"):
            raise UsageError(f"faces mode {mode!r}: use 'detect' or 'none'")
        self.mode = mode
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.analyzer = self.estimator = None
        self.gaze_dim = gaze_dim or DEFAULT_GAZE_DIM
        if mode == "detect":
            try:
                from ..faces import FaceAnalyzer  # type: ignore[attr-defined]
                from ..gaze import create_estimator  # type: ignore[attr-defined]
            except ImportError as e:
                raise GazeclipError(f"face detection is not available ({e}); use --faces none") from e
            self.analyzer = FaceAnalyzer()
            self.estimator = create_estimator(estimator)
            self.gaze_dim = int(self.estimator.feature_dim)

    def analyze(self, paths: Sequence[str]) -> list:
        """list[ImageFaces]; unreadable files come back with `.error` set."""
        return list(self.iter(paths))

    def iter(self, paths: Sequence[str], progress: bool = False):
        """ImageFaces per path, streamed (a large dataset's crops are never all held as records)."""
        from ..records import ImageFaces

        if self.mode == "detect":
            from ..gaze import iter_analyze  # type: ignore[attr-defined]

            yield from iter_analyze(list(paths), self.analyzer, self.estimator, self.cache_dir, progress=progress)
            return
        for p in paths:
            try:
                img = load_rgb(p)
                res = ImageFaces(path=str(p), faces=[], size=(img.shape[1], img.shape[0]))
                res.image = img  # whole-image crop, no second read
                yield res
            except Exception as e:  # noqa: BLE001 - any unreadable file is reported by name
                yield ImageFaces(path=str(p), error=f"{type(e).__name__}: {e}")


def best_face_index(faces: list) -> int:
    def score(fg):
        x0, y0, x1, y1 = fg.face.box
        return fg.face.score * max(1.0, (x1 - x0) * (y1 - y0))
    return int(np.argmax([score(fg) for fg in faces]))


def face_arrays(fg, size: int, gaze_dim: int) -> tuple:
    """(crop, vector, pitchyaw, features, valid, boxes, quality) for one FaceGaze record."""
    from ..faces import region_boxes  # type: ignore[attr-defined]
    from ..faces.quality import face_quality

    crop = square_resize(fg.face.clip_crop, size)
    boxes = np.asarray(region_boxes(fg.face), dtype=np.float32).reshape(len(REGIONS), 4)
    quality = face_quality(fg.face).as_row()
    g = fg.gaze
    if g is None:
        return (crop, np.zeros(3, np.float32), np.zeros(2, np.float32), np.zeros(gaze_dim, np.float32), False, boxes,
                quality)
    feats = np.zeros(gaze_dim, np.float32)
    f = np.asarray(g.features, np.float32).ravel()[:gaze_dim]
    feats[: f.size] = f
    return (crop, np.asarray(g.vector, np.float32), np.array([g.pitch, g.yaw], np.float32), feats, True, boxes,
            quality)


def whole_image_arrays(img: np.ndarray, size: int, gaze_dim: int) -> tuple:
    """face_arrays' tuple for a whole image taken as the face."""
    from ..faces.quality import image_quality

    full = np.tile(np.array([0, 0, 1, 1], np.float32), (len(REGIONS), 1))
    return (square_resize(img, size), np.zeros(3, np.float32), np.zeros(2, np.float32),
            np.zeros(gaze_dim, np.float32), False, full, image_quality(img).as_row())


def build_samples(paths: Sequence[str], classes: Sequence[str], source: FaceGazeSource, size: int,
                  progress: bool = False) -> tuple[SampleSet, list[tuple[str, str]]]:
    """One sample per readable image (its best face, or the whole image). Returns (samples, errors)."""
    results = source.iter(paths, progress=progress)
    items, keep_paths, keep_cls, errors = [], [], [], []
    for p, c, res in zip(paths, classes, results):
        if res.error:
            errors.append((str(p), res.error))
            continue
        if res.faces:
            items.append(face_arrays(res.faces[best_face_index(res.faces)], size, source.gaze_dim) + (len(res.faces),))
        else:
            img = res.image
            if img is None:
                try:
                    img = load_rgb(p)
                except Exception as e:  # noqa: BLE001
                    errors.append((str(p), f"{type(e).__name__}: {e}"))
                    continue
            items.append(whole_image_arrays(img, size, source.gaze_dim) + (0,))
        keep_paths.append(str(p))
        keep_cls.append(c)
    if not items:
        return empty_samples(size, source.gaze_dim), errors
    cols = list(zip(*items))
    return SampleSet(keep_paths, keep_cls, np.stack(cols[0]), np.stack(cols[1]), np.stack(cols[2]),
                     np.stack(cols[3]), np.array(cols[4], bool), np.stack(cols[5]), np.array(cols[7]),
                     quality=np.stack(cols[6])), errors


def empty_samples(size: int, gaze_dim: int) -> SampleSet:
    return SampleSet([], [], np.zeros((0, size, size, 3), np.uint8), np.zeros((0, 3), np.float32),
                     np.zeros((0, 2), np.float32), np.zeros((0, gaze_dim), np.float32), np.zeros(0, bool),
                     np.zeros((0, len(REGIONS), 4), np.float32), np.zeros(0, np.int64))


def samples_from_faces(path: str, faces: list, size: int, gaze_dim: int) -> SampleSet:
    """Every face of one image as a SampleSet (for predict)."""
    items = [face_arrays(fg, size, gaze_dim) for fg in faces]
    if not items:
        return empty_samples(size, gaze_dim)
    cols = list(zip(*items))
    n = len(items)
    return SampleSet([path] * n, [""] * n, np.stack(cols[0]), np.stack(cols[1]), np.stack(cols[2]),
                     np.stack(cols[3]), np.array(cols[4], bool), np.stack(cols[5]), np.full(n, n),
                     quality=np.stack(cols[6]))


# ---------------------------------------------------------------- augmentation
@dataclass(frozen=True)
class Augment:
    """Pixel-changing augmentation. An augmented item cannot use the feature cache (its pixels,
    hence its frozen-prefix hidden states, differ from the cached ones): it is encoded on the fly."""

    hflip: float = 0.0
    color_jitter: float = 0.0

    @property
    def active(self) -> bool:
        return self.hflip > 0 or self.color_jitter > 0


def hflip_item(crop, vec, py, boxes):
    crop = crop[:, ::-1].copy()
    boxes = boxes.copy()
    boxes[:, [0, 2]] = 1.0 - boxes[:, [2, 0]]
    li, ri = REGIONS.index("left_eye"), REGIONS.index("right_eye")
    boxes[[li, ri]] = boxes[[ri, li]]
    vec = vec * np.array([-1, 1, 1], np.float32)
    py = py * np.array([1, -1], np.float32)
    return crop, vec, py, boxes


@dataclass
class Variants:
    """Pre-rendered stand-ins for training items (perturbed copies, `gazeclip.data.derived`): item
    i is replaced, with probability `p` per epoch, by one of `samples[of[i]]`. They have faces,
    gaze and cached prefix states of their own, so a replaced item still comes from the caches."""

    samples: SampleSet
    of: list[np.ndarray]  # per training item, indices into `samples` (empty: none)
    p: float


def variants_for(items: SampleSet, copies: SampleSet, copy_of: Sequence[str], p: float) -> Variants:
    """The Variants of `items` whose copy j stands in for the item with path `copy_of[j]`."""
    where: dict[str, list[int]] = {}
    for j, path in enumerate(copy_of):
        where.setdefault(path, []).append(j)
    return Variants(copies, [np.asarray(where.get(path, []), np.int64) for path in items.paths], p)


# ---------------------------------------------------------------- dataset
class FaceDataset(Dataset):
    """Indexes a SampleSet. With a feature cache, unaugmented items return cached prefix states.
    Items of a class outside the taxonomy that are fake (self-blends) train detection only."""

    def __init__(self, samples: SampleSet, taxonomy: Taxonomy | None, preprocess: Callable,
                 cache=None, augment: Augment = Augment(), seed: int = 0, variants: Variants | None = None):
        self.s = samples
        self.preprocess = preprocess
        self.cache = cache
        self.augment = augment
        self.variants = variants
        self.seed = seed
        self.epoch = 0
        n = len(samples)
        self.labels = np.full(n, -1, np.int64)
        self.family = np.full(n, -1, np.int64)
        self.is_fake = np.array([c != REAL for c in samples.classes], np.float32)
        if taxonomy is not None:
            cidx = {c: i for i, c in enumerate(taxonomy.classes)}
            fam_of = {}
            for c in set(samples.classes):
                fam_of[c] = taxonomy.class_family.get(c)
            for i, c in enumerate(samples.classes):
                self.labels[i] = cidx.get(c, -1)
        self.taxonomy = taxonomy

    def set_families(self, class_family: dict[str, str]) -> None:
        """Family index of every item, including unseen classes (their family comes from the manifest)."""
        fams = self.taxonomy.families
        for i, c in enumerate(self.s.classes):
            f = class_family.get(c)
            self.family[i] = fams.index(f) if f in fams else -1

    @property
    def sample_groups(self) -> np.ndarray:
        """The class index of each item for class-balanced sampling; detection-only fakes (label -1)
        are one group of their own."""
        g = self.labels.copy()
        g[(g < 0) & (self.is_fake > 0)] = len(self.taxonomy.classes) if self.taxonomy else 0
        return g

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.s)

    def _source(self, i: int) -> tuple[SampleSet, int]:
        """Where item i's pixels and gaze come from this epoch: itself or one of its variants."""
        v = self.variants
        if v is not None and len(v.of[i]):
            rng = np.random.default_rng([self.seed, self.epoch, i, 1])  # its own stream: hflip/jitter unchanged
            if rng.random() < v.p:
                return v.samples, int(v.of[i][rng.integers(len(v.of[i]))])
        return self.s, i

    def __getitem__(self, i: int) -> dict:
        s, j = self._source(i)
        crop, vec, py, boxes = s.crops[j], s.gaze_vector[j], s.gaze_pitchyaw[j], s.region_boxes[j]
        augmented = False
        if self.augment.active:
            # per-(seed, epoch, item) randomness: the same whatever the rank or resume point
            rng = np.random.default_rng([self.seed, self.epoch, i])
            if rng.random() < self.augment.hflip:
                crop, vec, py, boxes = hflip_item(crop, vec, py, boxes)
                augmented = True
            if rng.random() < self.augment.color_jitter:
                b, c = rng.uniform(-0.2, 0.2), rng.uniform(0.8, 1.2)
                x = crop.astype(np.float32)
                crop = np.clip((x - x.mean()) * c + x.mean() + 255 * b, 0, 255).astype(np.uint8)
                augmented = True
        item = {
            "gaze_vector": torch.from_numpy(np.ascontiguousarray(vec, np.float32)),
            "gaze_pitchyaw": torch.from_numpy(np.ascontiguousarray(py, np.float32)),
            "gaze_features": torch.from_numpy(s.gaze_features[j]),
            "gaze_valid": bool(s.gaze_valid[j]),
            "region_boxes": torch.from_numpy(np.ascontiguousarray(boxes, np.float32)),
            "labels": int(self.labels[i]), "family": int(self.family[i]), "is_fake": float(self.is_fake[i]),
            "index": i, "prefix": None, "pixels": None,
        }
        if self.cache is not None and not augmented:
            item["prefix"] = self.cache.get(s.keys[j])
        if item["prefix"] is None:
            item["pixels"] = self.preprocess(crop)[0]
        return item


@dataclass
class Pending:
    """Rows of a batch whose prefix states are not cached (augmented or new): encode them on the fly."""

    rows: list[int]
    pixels: torch.Tensor


def collate(items: list[dict]) -> tuple[Batch, Pending | None, torch.Tensor]:
    """-> (Batch, Pending or None, item indices). All cached: Batch.prefix_states, no pixels.
    None cached: Batch.pixel_values. Mixed: prefix_states with the Pending rows to fill in."""
    st = lambda k: torch.stack([it[k] for it in items])  # noqa: E731
    batch = Batch(pixel_values=None, gaze_vector=st("gaze_vector"), gaze_pitchyaw=st("gaze_pitchyaw"),
                  gaze_features=st("gaze_features"),
                  gaze_valid=torch.tensor([it["gaze_valid"] for it in items], dtype=torch.bool),
                  region_boxes=st("region_boxes"),
                  labels=torch.tensor([it["labels"] for it in items], dtype=torch.long),
                  family=torch.tensor([it["family"] for it in items], dtype=torch.long),
                  is_fake=torch.tensor([it["is_fake"] for it in items], dtype=torch.float32))
    index = torch.tensor([it["index"] for it in items], dtype=torch.long)
    cached = [it["prefix"] is not None for it in items]
    if not any(cached):
        batch.pixel_values = st("pixels")
        return batch, None, index
    first = next(it["prefix"] for it in items if it["prefix"] is not None)
    prefix = torch.zeros((len(items), *first.shape), dtype=torch.float32)
    rows = []
    for r, it in enumerate(items):
        if it["prefix"] is not None:
            prefix[r] = it["prefix"]
        else:
            rows.append(r)
    batch.prefix_states = prefix
    pending = Pending(rows, torch.stack([items[r]["pixels"] for r in rows])) if rows else None
    return batch, pending, index


# ---------------------------------------------------------------- sample sets cached on disk
def samples_key(rows: Sequence[ManifestRow], mode: str, estimator: str, size: int, gaze_dim: int,
                pipeline: str = "", data_dir: str | Path | None = None) -> str:
    """Changes with the rows, the face/gaze settings (`pipeline`), the crop size and, given
    `data_dir`, each file's size and modification time (so an edited image is never served from
    the cache; the manifest's sha256 alone is not checked against the file)."""
    h = hashlib.sha256(f"v3|{mode}|{estimator}|{size}|{gaze_dim}|{pipeline}".encode())
    for r in rows:
        h.update(f"|{r.path}:{r.sha256}".encode())
        if data_dir is not None:
            try:
                st = (Path(data_dir) / r.path).stat()
                h.update(f":{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                h.update(b":missing")  # reported by name when the set is built
    return h.hexdigest()[:32]


def save_samples(s: SampleSet, path: Path) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, paths=np.array(s.paths), classes=np.array(s.classes), crops=s.crops, gaze_vector=s.gaze_vector,
             gaze_pitchyaw=s.gaze_pitchyaw, gaze_features=s.gaze_features, gaze_valid=s.gaze_valid,
             region_boxes=s.region_boxes, n_faces=s.n_faces, keys=np.array(s.keys), quality=s.quality)
    atomic_write_bytes(path, buf.getvalue())


def load_samples(path: Path) -> SampleSet:
    """A saved SampleSet; `DamagedFileError` when the file is truncated, fails its zip CRC, or its
    arrays do not agree in length."""
    from ..errors import DamagedFileError

    try:
        with np.load(path, allow_pickle=False) as z:
            s = SampleSet([str(p) for p in z["paths"]], [str(c) for c in z["classes"]], z["crops"],
                          z["gaze_vector"], z["gaze_pitchyaw"], z["gaze_features"], z["gaze_valid"],
                          z["region_boxes"], z["n_faces"], [str(k) for k in z["keys"]], z["quality"])
    except Exception as e:  # noqa: BLE001 - zip, CRC, header and missing-key errors all mean "damaged"
        raise DamagedFileError(path, f"damaged sample cache ({type(e).__name__}: {str(e)[:80]})",
                               "delete it; it is rebuilt") from None
    n = len(s.paths)
    if any(len(a) != n for a in (s.classes, s.crops, s.gaze_vector, s.gaze_pitchyaw, s.gaze_features,
                                 s.gaze_valid, s.region_boxes, s.n_faces, s.keys, s.quality)):
        raise DamagedFileError(path, "damaged sample cache (arrays of different lengths)", "delete it; it is rebuilt")
    return s


def manifest_samples(rows: Sequence[ManifestRow], data_dir: str | Path, mode: str, estimator: str, size: int,
                     gaze_dim: int | None, cache_dir: str | Path | None = None,
                     face_cache_dir: str | Path | None = None,
                     progress: bool = False, build: bool = True) -> SampleSet | None:
    """The SampleSet of manifest rows, read from `cache_dir` or built (faces + gaze) and saved there.
    With build=False, returns None when it is not cached yet (DDP: rank 0 builds, others wait)."""
    data_dir = Path(data_dir)
    cache_dir = Path(cache_dir) if cache_dir else data_dir / ".cache" / "samples"
    gd = gaze_dim or DEFAULT_GAZE_DIM
    source = FaceGazeSource(mode, estimator, face_cache_dir or data_dir / ".cache" / "faces", gaze_dim)
    pipeline = ""
    if source.analyzer is not None:  # analyser/estimator settings: a change invalidates the saved set
        import json

        pipeline = json.dumps({"faces": source.analyzer.config(), "gaze": source.estimator.config()},
                              sort_keys=True, default=str)
    path = cache_dir / f"{samples_key(rows, mode, estimator, size, gd, pipeline, data_dir)}.npz"
    if path.is_file():
        from ..errors import DamagedFileError

        try:
            s = load_samples(path)
            if s.paths == [r.path for r in rows]:
                return s
        except DamagedFileError:
            pass
        if not build:
            return None
        path.unlink(missing_ok=True)  # damaged or not these rows: rebuilt below
    if not build:
        return None
    if gaze_dim and source.gaze_dim != gaze_dim:
        raise UsageError(f"gaze estimator {estimator} gives {source.gaze_dim}-d features but the model expects "
                         f"{gaze_dim}; choose the estimator the model was built for")
    samples, errors = build_samples([str(data_dir / r.path) for r in rows], [r.cls for r in rows], source, size,
                                    progress)
    if errors:
        p, e = errors[0]
        raise UsageError(f"{p}: unreadable dataset image ({e}); {len(errors)} such file(s): rebuild the benchmark "
                         "or remove them from the manifest")
    samples.paths = [r.path for r in rows]  # relative to the data folder, as in the manifest
    save_samples(samples, path)
    return samples
