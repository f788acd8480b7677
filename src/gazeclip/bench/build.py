"""`gazeclip bench build`: the offline benchmark (real faces + 11 generators in 7 families).

Every image, real or fake, gets the same post-processing (`finalize`): MediaPipe landmarks, the
canonical square face crop, a 64 px bottleneck, bicubic to 128x128, RGB PNG at zlib level 9, no
metadata. So no class differs by resolution, format, colour mode or compression.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from gazeclip.data.manifest import REAL, ManifestRow, Protocol, write_manifest, write_protocols

from .faceops import detect_face, face_crop
from .forgers import REGISTRY, create_forger, derive_seed

OUT_SIZE = 128
# design choice, not from the paper: every class passes through a 64 px bottleneck (the native
# size of the here-trained and DigiFace generators) so that sharpness/resolution, and with it
# PNG file size, is not a shortcut that separates 1024 px sources from 64 px ones.
BOTTLENECK = 64
PNG_LEVEL = 9
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Preset:
    name: str
    per_split: tuple[int, int, int]   # images per generator in train, val, test

    @property
    def per_class(self) -> int:
        return sum(self.per_split)


PRESETS: dict[str, Preset] = {
    "smoke": Preset("smoke", (6, 2, 6)),
    "mini": Preset("mini", (60, 10, 30)),
    "full": Preset("full", (300, 50, 150)),
}

# Real identities -> split. One identity never appears in two splits.
# design choice, not from the paper: the 4 Obama portraits train, Biden validates, and three
# different people (Collins, Hopper, Trump) test, so the test reals are the most diverse.
REAL_SPLIT = {"barack-obama": "train", "joe-biden": "val", "eileen-collins": "test",
              "grace-hopper": "test", "donald-trump": "test"}


@dataclass(frozen=True)
class BuildConfig:
    preset: Preset
    seed: int = 0
    generators: tuple[str, ...] = tuple(REGISTRY)
    out_size: int = OUT_SIZE
    bottleneck: int = BOTTLENECK       # 0: none
    include_real: bool = True
    update: bool = False               # keep the other classes of an existing build in `out`


@dataclass
class BuildReport:
    preset: str
    seed: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    face_found: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0


def finalize(img: np.ndarray, out_size: int = OUT_SIZE, bottleneck: int = BOTTLENECK) -> tuple[bytes, bool]:
    """The one post-processing of every class: face crop, bottleneck, resize, PNG bytes."""
    face = detect_face(img)
    if bottleneck:
        crop, found = face_crop(img, bottleneck, face)
        crop = cv2.resize(crop, (out_size, out_size), interpolation=cv2.INTER_CUBIC)
    else:
        crop, found = face_crop(img, out_size, face)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(crop[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes(), found


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


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


def _real_items() -> list[tuple[str, np.ndarray, dict]]:
    from gazeclip.faces.io import load_image
    from gazeclip.weights import REAL_PHOTOS, asset_path

    items = []
    for photo in REAL_PHOTOS:
        path = asset_path(photo.asset)
        img = load_image(path)  # the one decoder: identical pixels to cv2.imread here (checked on all 8)
        items.append((photo.identity, img,
                      {"asset": photo.asset, "rights": photo.rights, "file": Path(path).name}))
    return items


def build(out: Path, cfg: BuildConfig, quiet: bool = False) -> BuildReport:
    """Write images, manifest.csv, protocols.yaml, items.jsonl and build_info.json under `out`."""
    from gazeclip.weights import SOURCES

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    rep = BuildReport(cfg.preset.name, cfg.seed)
    rows: list[ManifestRow] = []
    items: list[dict] = []

    if cfg.include_real:
        t0 = time.perf_counter()
        real = _real_items()
        counts = {s: 0 for s in SPLITS}
        found = 0
        for i, (ident, img, meta) in enumerate(tqdm(real, desc=f"{REAL:>18}", disable=quiet, unit="img")):
            split = REAL_SPLIT[ident]
            data, ok = finalize(img, cfg.out_size, cfg.bottleneck)
            found += ok
            rel = f"{REAL}/{i:05d}.png"
            atomic_write_bytes(out / rel, data)
            sha = hashlib.sha256(data).hexdigest()
            rows.append(ManifestRow(rel, REAL, "real", "real", split, f"real photo {meta['file']} ({meta['asset']})",
                                    meta["rights"], sha, ident))
            items.append({"path": rel, "face_found": ok, **meta})
            counts[split] += 1
        rep.counts[REAL] = counts
        rep.seconds[REAL] = round(time.perf_counter() - t0, 1)
        rep.face_found[REAL] = found / max(1, len(real))

    for name in cfg.generators:
        forger = create_forger(name)
        info = forger.info
        t0 = time.perf_counter()
        counts = {s: 0 for s in SPLITS}
        found = 0
        bar = tqdm(total=cfg.preset.per_class, desc=f"{name:>18}", disable=quiet, unit="img")
        idx = 0
        for split, n in zip(SPLITS, cfg.preset.per_split):
            for f in forger.iter_generate(n, derive_seed("bench", cfg.seed, name, split)):
                data, ok = finalize(f.image, cfg.out_size, cfg.bottleneck)
                found += ok
                rel = f"{name}/{idx:05d}.png"
                atomic_write_bytes(out / rel, data)
                sha = hashlib.sha256(data).hexdigest()
                rows.append(ManifestRow(rel, name, info.family, info.forgery_type, split, info.source,
                                        info.licence, sha, ""))
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
        raise RuntimeError("; ".join(errs))
    write_manifest(rows, out / "manifest.csv")
    write_protocols(protos, out / "protocols.yaml")
    atomic_write_text(out / "items.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in items))
    rep.total_seconds = round(time.perf_counter() - t_all, 1)
    if cfg.update:
        rep.total_seconds = round(sum(rep.seconds.values()), 1)
    info = {"report": asdict(rep), "config": {**asdict(cfg), "preset": asdict(cfg.preset)},
            "generators": {n: asdict(REGISTRY[n].info) for n in gens},
            "python": platform.python_version(), "platform": platform.platform(),
            "weights": {s.name: f"{s.package}=={s.version}" for s in SOURCES}}
    atomic_write_text(out / "build_info.json", json.dumps(info, indent=1, sort_keys=True))
    return rep
