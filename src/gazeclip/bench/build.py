"""`gazeclip bench build`: the offline benchmark (637 real faces + 11 generators in 7 families).

Every image, real or fake, gets the same post-processing (`finalize`): MediaPipe landmarks, the
canonical square face crop, a 64 px bottleneck, bicubic to 128x128, an uncompressed RGB PNG with
no metadata. So no class differs by resolution, format, colour mode, compression or file size.
The real photos and the landmark forgers' inputs first go through the same 256 px work crop
(`realfaces.work_face`), and the landmark forgers take their faces from the real photos of the
split they build.
"""
from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from gazeclip.atomic import atomic_write_bytes, atomic_write_text
from gazeclip.data.manifest import REAL, ManifestRow, Protocol, encode_png, write_manifest, write_protocols

from .faceops import FaceLM, detect_face, face_crop
from .forgers import REGISTRY, LandmarkForger, create_forger, derive_seed
from .realfaces import REAL_FRACTIONS, FacePool, real_faces
from ..errors import GazeclipError, MissingFileError, UsageError

OUT_SIZE = 128
# design choice, not from the paper: every class passes through a 64 px bottleneck (the native
# size of the here-trained and DigiFace generators) so that sharpness/resolution, and with it
# PNG file size, is not a shortcut that separates 1024 px sources from 64 px ones.
BOTTLENECK = 64
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Preset:
    name: str
    per_split: tuple[int, int, int]   # images per generator in train, val, test
    # real photos per split (at most; the split's first ones in its fixed order); None: all of them
    real_per_split: tuple[int, int, int] | None = None

    @property
    def per_class(self) -> int:
        return sum(self.per_split)


PRESETS: dict[str, Preset] = {
    "smoke": Preset("smoke", (6, 2, 6), (12, 4, 12)),
    "mini": Preset("mini", (60, 10, 30)),
    "full": Preset("full", (300, 50, 150)),
}


@dataclass(frozen=True)
class BuildConfig:
    preset: Preset
    seed: int = 0
    generators: tuple[str, ...] = tuple(REGISTRY)
    out_size: int = OUT_SIZE
    bottleneck: int = BOTTLENECK       # 0: none
    include_real: bool = True
    update: bool = False               # keep the other classes of an existing build in `out`
    real_fractions: tuple[float, float, float] = REAL_FRACTIONS
    # design choice, not from the paper: the landmark forgers edit real photos of the same split
    # ("real", as FaceForensics++ and DF40 do); "msg" restores v1's fresh MobileStyleGAN faces.
    landmark_source: str = "real"


@dataclass
class BuildReport:
    preset: str
    seed: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    face_found: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)   # real photo -> why it was left out


def finalize(img: np.ndarray, out_size: int = OUT_SIZE, bottleneck: int = BOTTLENECK,
             face: FaceLM | None = None) -> tuple[bytes, bool]:
    """The one post-processing of every class: face crop, bottleneck, resize, PNG bytes.
    `face`: landmarks already found on `img` by the same detector (saves a second detection)."""
    face = face if face is not None else detect_face(img)
    if bottleneck:
        crop, found = face_crop(img, bottleneck, face)
        crop = cv2.resize(crop, (out_size, out_size), interpolation=cv2.INTER_CUBIC)
    else:
        crop, found = face_crop(img, out_size, face)
    return encode_png(crop), found


def default_protocols(generators: tuple[str, ...]) -> list[Protocol]:
    """P1 closed-set, P2 open-set (4 unseen from 4 families), P3 manipulation family held out.
    Generators not in `generators` are dropped from each list."""
    keep = lambda names: tuple(n for n in names if n in generators)  # noqa: E731
    allg = tuple(generators)
    p2_unseen = keep(("sngan-msg", "ldm-msg", "realnvp-msg", "gaze-redirect"))
    p3_unseen = keep(tuple(n for n in REGISTRY if REGISTRY[n].info.family == "manipulation"))
    return [
        Protocol("P1", allg, (), "closed set: every generator seen in training"),
        Protocol("P2", tuple(n for n in allg if n not in p2_unseen), p2_unseen,
                 "open set: 4 unseen generators from 4 families (gan, diffusion, flow, manipulation); "
                 "the GAN and manipulation families keep seen members"),
        Protocol("P3", tuple(n for n in allg if n not in p3_unseen), p3_unseen,
                 "whole family held out: manipulation (gaze redirection, region transplant)"),
    ]


def check_protocol(p: Protocol, families: dict[str, str]) -> list[str]:
    """Problems with a protocol given generator -> family (empty list when consistent); the same
    checks every reader of protocols.yaml applies (`gazeclip.data.manifest.protocol_problems`)."""
    from gazeclip.data.manifest import protocol_problems

    return protocol_problems(p, families)


def _check_real_photos_pulled(faces) -> None:
    """One clear error, before anything is written, when the real photos have not been pulled."""
    from gazeclip.weights import WeightsError, asset_path

    missing = []
    for f in faces:
        try:
            asset_path(f.asset)
        except WeightsError:
            missing.append(f)
    if missing:
        pkgs = sorted({f.package for f in missing})
        raise MissingFileError(f"{len(missing)} of {len(faces)} real face photos are missing (from {', '.join(pkgs)}); "
                                "run `gazeclip weights pull`")


def build(out: Path, cfg: BuildConfig, quiet: bool = False) -> BuildReport:
    """Write images, manifest.csv, protocols.yaml, items.jsonl and build_info.json under `out`."""
    from gazeclip.weights import SOURCES

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    rep = BuildReport(cfg.preset.name, cfg.seed)
    rows: list[ManifestRow] = []
    items: list[dict] = []

    faces = real_faces(cfg.real_fractions)
    uses_real = cfg.include_real or (cfg.landmark_source == "real" and any(
        issubclass(REGISTRY[g], LandmarkForger) for g in cfg.generators))
    if uses_real:
        _check_real_photos_pulled(faces)
    pools = {sp: FacePool([f for f in faces if f.split == sp]) for sp in SPLITS}
    if cfg.include_real:
        t0 = time.perf_counter()
        counts = {s: 0 for s in SPLITS}
        caps = cfg.preset.real_per_split or (None, None, None)
        todo = [(sp, j) for sp, cap in zip(SPLITS, caps) for j in range(len(pools[sp]) if cap is None
                                                                        else min(cap, len(pools[sp])))]
        for split, j in tqdm(todo, desc=f"{REAL:>18}", disable=quiet, unit="img"):
            wf = pools[split].get(j)
            f = pools[split].faces[j]
            if wf is None:  # unreadable or faceless photo: reported, the build goes on
                rep.skipped[f.asset] = pools[split].bad[f.asset]
                if not quiet:
                    print(f"skipped {rep.skipped[f.asset]}", flush=True)
                continue
            data, _ = finalize(wf.image, cfg.out_size, cfg.bottleneck, face=wf.landmarks)
            rel = f"{REAL}/{counts['train'] + counts['val'] + counts['test']:05d}.png"
            atomic_write_bytes(out / rel, data)
            sha = hashlib.sha256(data).hexdigest()
            rows.append(ManifestRow(rel, REAL, "real", "real", split, f"{f.package}:{f.file}", f.rights, sha,
                                    f.identity))
            items.append({"path": rel, "face_found": True, "asset": f.asset, "group": f.group})
            counts[split] += 1
        rep.counts[REAL] = counts
        rep.seconds[REAL] = round(time.perf_counter() - t0, 1)
        rep.face_found[REAL] = sum(counts.values()) / max(1, len(todo))

    for name in cfg.generators:
        forger = create_forger(name)
        info = forger.info
        t0 = time.perf_counter()
        counts = {s: 0 for s in SPLITS}
        found = 0
        bar = tqdm(total=cfg.preset.per_class, desc=f"{name:>18}", disable=quiet, unit="img")
        idx = 0
        landmark = isinstance(forger, LandmarkForger)
        if landmark and cfg.landmark_source not in ("real", "msg"):
            raise UsageError(f"landmark_source must be 'real' or 'msg', not {cfg.landmark_source!r}")
        for split, n in zip(SPLITS, cfg.preset.per_split):
            if landmark:  # real photos of this split only: nothing crosses the split
                forger.use_pool(pools[split] if cfg.landmark_source == "real" else None)
            source = forger.row_source if landmark else info.source
            licence = forger.row_licence if landmark else info.licence
            for f in forger.iter_generate(n, derive_seed("bench", cfg.seed, name, split)):
                data, ok = finalize(f.image, cfg.out_size, cfg.bottleneck)
                found += ok
                rel = f"{name}/{idx:05d}.png"
                atomic_write_bytes(out / rel, data)
                sha = hashlib.sha256(data).hexdigest()
                rows.append(ManifestRow(rel, name, info.family, info.forgery_type, split, source,
                                        licence, sha, "+".join(f.identities)))
                items.append({"path": rel, "face_found": ok, **f.meta})
                counts[split] += 1
                idx += 1
                bar.update(1)
        bar.close()
        rep.counts[name] = counts
        rep.seconds[name] = round(time.perf_counter() - t0, 1)
        rep.face_found[name] = found / max(1, idx)

    gens = tuple(cfg.generators)
    if cfg.update and (out / "manifest.csv").is_file():
        from gazeclip.data.manifest import read_manifest

        rebuilt = set(gens) | ({REAL} if cfg.include_real else set())
        old = [r for r in read_manifest(out) if r.cls not in rebuilt]
        old_items = {json.loads(line)["path"]: line for line in (out / "items.jsonl").read_text().splitlines()} \
            if (out / "items.jsonl").is_file() else {}
        order = {c: i for i, c in enumerate((REAL, *REGISTRY))}
        rows = sorted(old + rows, key=lambda r: order.get(r.cls, len(order)))  # stable: a fresh build's order
        new_items = {it["path"]: it for it in items}
        items = [new_items[r.path] if r.path in new_items else json.loads(old_items[r.path])
                 for r in rows if r.path in new_items or r.path in old_items]
        gens = tuple(n for n in REGISTRY if any(r.cls == n for r in rows))
        prev = out / "build_info.json"
        if prev.is_file():
            pr = json.loads(prev.read_text())["report"]
            for k in ("counts", "seconds", "face_found"):
                getattr(rep, k).update({c: v for c, v in pr[k].items() if c not in getattr(rep, k)})
            rep.counts = {c: rep.counts[c] for c in sorted(rep.counts, key=lambda c: order.get(c, 99))}
    protos = default_protocols(gens)
    fams = {n: REGISTRY[n].info.family for n in gens}
    errs = [e for p in protos for e in check_protocol(p, fams)]
    if errs:
        raise GazeclipError("; ".join(errs))
    write_manifest(rows, out / "manifest.csv")
    write_protocols(protos, out / "protocols.yaml")
    atomic_write_text(out / "items.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in items))
    for pool in pools.values():  # faces a landmark forger could not use
        rep.skipped.update({a: why for a, why in pool.bad.items() if a not in rep.skipped})
    rep.total_seconds = round(time.perf_counter() - t_all, 1)
    if cfg.update:
        rep.total_seconds = round(sum(rep.seconds.values()), 1)
    info = {"report": asdict(rep), "config": {**asdict(cfg), "preset": asdict(cfg.preset)},
            "generators": {n: asdict(REGISTRY[n].info) for n in gens},
            "python": platform.python_version(), "platform": platform.platform(),
            "weights": {s.name: f"{s.package}=={s.version}" for s in SOURCES}}
    atomic_write_text(out / "build_info.json", json.dumps(info, indent=1, sort_keys=True))
    return rep
