"""Training items rendered from a data folder's own training images: self-blends of its real photos
(`selfblend`, SBI) and perturbed copies of every training item (`augment`).

design choice, not from the paper: both are pre-rendered, K seeded images per source image, into
`DATA/.cache/selfblend/<tag>/` and `DATA/.cache/perturbed/<tag>/`, rather than made on the fly,
because training reads cached faces, gaze and frozen-prefix states (a 2-core CPU cannot afford
the frozen blocks per step): rendered files go through the same face/gaze analysis and caches as
the benchmark's images, and the gaze branch sees a perturbed copy's pixels as `gazeclip
robustness` and `predict` do. A file is named after its source image's content (sha256), its
index j and a tag of the settings and seed, and made from a generator seeded by the same, so it is
the same on every run and machine; an existing readable file is reused.

Self-blends are extra training items (class `self-blend`, detection-only, see `selfblend`); only
real photos of the train split are blended. Perturbed copies stand in for their source item (with
probability p per epoch, `dataset.Variants`), so an epoch keeps its length. Both are written as
the benchmark writes every class (`manifest.encode_png`: the same size, PNG, no metadata; a blend
keeps its real photo's geometry, so no second crop or bottleneck): the format checks of
`gazeclip.bench.checks` see nothing new.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..atomic import atomic_write_bytes
from .augment import MAX_SEVERITY, check_augment, random_perturbation
from .manifest import REAL, ManifestRow, encode_png
from .perturb import PERTURBATIONS
from .selfblend import BLEND_CLASS, BLEND_FAMILY, BLEND_REGIONS, MESH_POINTS, self_blend
from ..errors import UsageError

VERSION = 1  # bump when a transform changes: new tags, so files made by older code are not reused
CACHE = Path(".cache")


@dataclass(frozen=True)
class DerivedSpec:
    """What to render (TrainConfig's switches): K self-blends per real train photo, K perturbed
    copies per training item, and the seed."""

    self_blend: int = 0
    regions: tuple[str, ...] = BLEND_REGIONS
    perturbed: int = 0
    kinds: tuple[str, ...] = PERTURBATIONS
    severity: tuple[int, int] = (1, MAX_SEVERITY)
    seed: int = 0

    def __post_init__(self):
        bad = [r for r in self.regions if r not in BLEND_REGIONS]
        if bad or not self.regions:
            raise UsageError(f"self_blend_regions {list(self.regions)}: use one or more of {', '.join(BLEND_REGIONS)}")
        check_augment(self.kinds, self.severity)
        if self.self_blend < 0 or self.perturbed < 0:
            raise UsageError("self_blend and robust_augment count images per source: use 0 (off) or more")

    def tag(self, what: str) -> str:
        """The cache folder of one kind of item: changes with every setting that changes its pixels."""
        keys = {"selfblend": (self.regions,), "perturbed": (self.kinds, self.severity)}[what]
        digest = hashlib.sha256(repr((VERSION, what, self.seed, *keys)).encode()).hexdigest()[:12]
        return f"v{VERSION}-s{self.seed}-{digest}"


@dataclass
class DerivedRows:
    """Rows of rendered files (paths relative to the data folder, like the manifest's)."""

    blends: list[ManifestRow] = field(default_factory=list)  # extra training items
    copies: list[ManifestRow] = field(default_factory=list)  # stand-ins; copies[j] for the row at copy_of[j]
    copy_of: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)    # real photo -> why it has no self-blend


def item_rng(tag: str, sha256: str, j: int) -> np.random.Generator:
    """The generator of the j-th item made from the image with this content hash."""
    return np.random.default_rng(int.from_bytes(hashlib.sha256(f"{tag}|{sha256}|{j}".encode()).digest()[:16], "big"))


def _existing_sha(path: Path) -> str | None:
    """sha256 of a rendered file that decodes, or None (missing or damaged: render it again)."""
    from ..faces.io import decode_image

    try:
        data = path.read_bytes()
        decode_image(data, path)
    except Exception:  # noqa: BLE001 - unreadable in any way: made again
        return None
    return hashlib.sha256(data).hexdigest()


def _write(path: Path, rgb: np.ndarray) -> str:
    data = encode_png(rgb)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def best_landmarks(paths: Sequence[str], estimator: str = "ethxgaze-r18",
                   cache_dir: str | Path | None = None) -> list[np.ndarray | None]:
    """The 478 landmarks of each image's training face (the one `dataset.build_samples` keeps),
    from the face/gaze records (read from `cache_dir` when there); None without such a face."""
    from .dataset import FaceGazeSource, best_face_index

    out: list[np.ndarray | None] = []
    for res in FaceGazeSource("detect", estimator, cache_dir).iter(paths):
        lm = None
        if not res.error and res.faces:
            lm = np.asarray(res.faces[best_face_index(res.faces)].face.landmarks, np.float64)
        out.append(lm if lm is not None and lm.shape[0] > MESH_POINTS else None)
    return out


def derive_training_rows(data_dir: str | Path, train_rows: Sequence[ManifestRow], spec: DerivedSpec,
                         landmarks_of: Callable[[list[str]], list] | None = None,
                         progress: bool = False) -> DerivedRows:
    """Render (or find) the self-blends and perturbed copies of `train_rows` under DATA/.cache;
    their rows. `landmarks_of(paths)` gives each real photo's 478 landmarks or None (default:
    `best_landmarks`, analysed only for photos whose blends are not all on disk yet)."""
    from tqdm import tqdm

    data_dir = Path(data_dir)
    out = DerivedRows()
    if spec.self_blend:
        tag = spec.tag("selfblend")
        reals = [r for r in train_rows if r.cls == REAL and r.split == "train"]  # only real train photos
        plan = [(r, j, CACHE / "selfblend" / tag / f"{r.sha256[:20]}-{j}.png") for r in reals
                for j in range(spec.self_blend)]
        found = {rel: _existing_sha(data_dir / rel) for _, _, rel in plan}
        todo = list(dict.fromkeys(r.path for r, _, rel in plan if found[rel] is None))
        lms = dict(zip(todo, (landmarks_of or best_landmarks)([str(data_dir / p) for p in todo]))) if todo else {}
        for r, j, rel in tqdm(plan, desc="self-blends", unit="img", disable=not progress, leave=False):
            rng = item_rng(tag, r.sha256, j)
            region = spec.regions[int(rng.integers(len(spec.regions)))]
            sha = found[rel]
            if sha is None:
                if lms.get(r.path) is None:
                    out.skipped[r.path] = "no face with 478 landmarks"
                    continue
                from ..faces.io import load_image

                try:
                    sha = _write(data_dir / rel, self_blend(load_image(data_dir / r.path), lms[r.path], region,
                                                            rng).image)
                except ValueError as e:
                    out.skipped[r.path] = str(e)
                    continue
            out.blends.append(ManifestRow(rel.as_posix(), BLEND_CLASS, BLEND_FAMILY, BLEND_CLASS, "train",
                                          f"self-blend ({region}) of {r.path}", r.licence, sha, r.identity))
    if spec.perturbed:
        from ..faces.io import load_image

        tag = spec.tag("perturbed")
        sources = [r for r in [*train_rows, *out.blends] if r.split == "train"]
        for r in tqdm(sources, desc="perturbed copies", unit="img", disable=not progress, leave=False):
            img = None
            for j in range(spec.perturbed):
                rel = CACHE / "perturbed" / tag / f"{r.sha256[:20]}-{j}.png"
                rng = item_rng(tag, r.sha256, j)
                sha = _existing_sha(data_dir / rel)
                if sha is None:
                    img = load_image(data_dir / r.path) if img is None else img
                    pert, kind, sev = random_perturbation(img, rng, spec.kinds, spec.severity)
                    sha = _write(data_dir / rel, pert)
                out.copies.append(dataclasses.replace(r, path=rel.as_posix(), sha256=sha,
                                                      source=f"perturbed copy {j} of {r.path}"))
                out.copy_of.append(r.path)
    return out
