"""Importers: users' datasets -> the same `manifest.csv` the builder writes.

- `folder`:    root/<class>/**/*.{png,jpg,...}; a YAML mapping class -> family, forgery_type
               (licence, split optional). Class `real` (or any class mapped to family `real`) is real.
- `owdfa-csv`: the open-world deepfake attribution protocol CSVs: rows `path,label` (header
               optional), one file per split (`train.csv`, `val.csv`/`valid.csv`, `test.csv`, or
               file names containing those words); the YAML mapping gives label -> class name,
               family, forgery type (numeric labels are kept as `label-<n>` without a mapping).
- `genface`:   GenFace-style nested trees: root/<split>/<real|fake>/<family>/<generator>/.../*.png
               (split level optional); class = generator folder, family = family folder.

Paths in the manifest stay relative to the dataset root; images are not copied or re-encoded, so
the format-shortcut guarantee of `bench build` does NOT hold for imported data (the manifest's
`source` column says `import:*`). Manifest paths must stay inside the data folder (no `..`): with
`--out` elsewhere than the root, `OUT/images` is made a symbolic link to the root and the paths
start with `images/`. CSV rows naming absolute paths or `..` are refused.
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import yaml

from gazeclip.common import IMAGE_EXTS, sha256_of
from gazeclip.data.manifest import REAL, ManifestRow, path_problem, write_manifest
from gazeclip.errors import MissingFileError, UnsafeFileError, UsageError

SPLIT_WORDS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}
# design choice, not from the paper: imported items without a split get train/val/test 60/10/30,
# drawn per class with a seeded permutation.
DEFAULT_FRACTIONS = (0.6, 0.1, 0.3)


def load_mapping(path: Path | None) -> dict[str, dict]:
    if path is None:
        return {}
    if not Path(path).is_file():
        raise MissingFileError(f"{path}: mapping file not found; give a YAML of class -> "
                                "{family: ..., forgery_type: ...}")
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a YAML mapping of class -> {{family, forgery_type}}")
    return {str(k): (v or {}) for k, v in data.items()}


def _assign_splits(items: list[dict], seed: int) -> None:
    by_cls: dict[str, list[dict]] = {}
    for it in items:
        if not it.get("split"):
            by_cls.setdefault(it["cls"], []).append(it)
    for cls, group in sorted(by_cls.items()):
        group.sort(key=lambda it: it["rel"])
        rng = np.random.default_rng([seed, int(hashlib.sha256(cls.encode()).hexdigest()[:8], 16)])
        order = rng.permutation(len(group))
        n_tr = round(DEFAULT_FRACTIONS[0] * len(group))
        n_va = round(DEFAULT_FRACTIONS[1] * len(group))
        for rank, i in enumerate(order):
            group[i]["split"] = "train" if rank < n_tr else "val" if rank < n_tr + n_va else "test"


def _rows(items: list[dict], root: Path, mapping: dict[str, dict], kind: str, seed: int) -> list[ManifestRow]:
    _assign_splits(items, seed)
    rows = []
    for it in sorted(items, key=lambda it: it["rel"]):
        m = mapping.get(it["cls"], {})
        fam = it.get("family") or m.get("family") or ("real" if it["cls"] == REAL else "unknown")
        is_real = fam == "real" or it["cls"] == REAL
        cls = REAL if is_real else it["cls"]
        ftype = "real" if is_real else (m.get("forgery_type") or it.get("forgery_type") or "unknown")
        split = m.get("split") or it["split"]
        if split not in ("train", "val", "test"):
            raise UsageError(f"{it['rel']}: split {split!r} is not train/val/test")
        rows.append(ManifestRow(it["rel"], cls, "real" if is_real else fam, ftype, split, f"import:{kind}",
                                m.get("licence", ""), sha256_of(root / it["rel"]), m.get("identity", "")))
    return rows


def import_folder(root: Path, mapping: dict[str, dict], seed: int = 0) -> list[ManifestRow]:
    items = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(d.rglob("*")):
            if f.suffix.lower() in IMAGE_EXTS:
                rel = f.relative_to(root).as_posix()
                split = next((SPLIT_WORDS[p] for p in f.relative_to(d).parts[:-1] if p in SPLIT_WORDS), "")
                items.append({"rel": rel, "cls": d.name, "split": split})
    if not items:
        raise UsageError(f"{root}: no images under root/<class>/; expected e.g. {root}/real/0001.png")
    return _rows(items, root, mapping, "folder", seed)


def _csv_split(path: Path) -> str:
    stem = path.stem.lower()
    for word, split in sorted(SPLIT_WORDS.items(), key=lambda kv: -len(kv[0])):
        if word in stem.replace("-", "_").split("_") or stem == word or stem.endswith(word) or stem.startswith(word):
            return split
    raise UsageError(f"{path}: cannot tell the split from the file name; name it train.csv, val.csv or test.csv")


def import_owdfa_csv(root: Path, csvs: list[Path], mapping: dict[str, dict], seed: int = 0) -> list[ManifestRow]:
    items = []
    for c in csvs:
        if not Path(c).is_file():
            raise MissingFileError(f"{c}: protocol CSV not found")
        split = _csv_split(Path(c))
        with open(c, newline="") as fh:
            for i, rec in enumerate(csv.reader(fh)):
                if not rec or (i == 0 and rec[0].strip().lower() in ("path", "image", "img_path", "file")):
                    continue
                if len(rec) < 2:
                    raise UsageError(f"{c}:{i + 1}: expected `path,label`")
                path, label = rec[0].strip(), rec[1].strip()
                why = path_problem(path)
                if why:
                    raise UnsafeFileError(f"{c}:{i + 1}", f"{why}; only files inside the dataset root {root} are "
                                          "imported", "list paths relative to the dataset root, without ..")
                m = mapping.get(label, {})
                cls = m.get("class") or (label if not label.isdigit() else f"label-{label}")
                items.append({"rel": path, "cls": cls, "split": split, "family": m.get("family", ""),
                              "forgery_type": m.get("forgery_type", "")})
                mapping.setdefault(cls, m)
    missing = [it["rel"] for it in items if not (root / it["rel"]).is_file()]
    if missing:
        raise MissingFileError(f"{root / missing[0]}: listed in the CSVs but missing ({len(missing)} missing); "
                                "give the dataset root the CSV paths are relative to")
    return _rows(items, root, mapping, "owdfa-csv", seed)


def import_genface(root: Path, mapping: dict[str, dict], seed: int = 0) -> list[ManifestRow]:
    items = []
    for f in sorted(root.rglob("*")):
        if f.suffix.lower() not in IMAGE_EXTS:
            continue
        parts = [p for p in f.relative_to(root).parts[:-1]]
        split = ""
        if parts and parts[0].lower() in SPLIT_WORDS:
            split = SPLIT_WORDS[parts[0].lower()]
            parts = parts[1:]
        if not parts:
            raise UsageError(f"{f}: expected root/[split/]<real|fake>/<family>/<generator>/...")
        if parts[0].lower() == "real":
            items.append({"rel": f.relative_to(root).as_posix(), "cls": REAL, "split": split, "family": "real"})
            continue
        if parts[0].lower() != "fake" or len(parts) < 3:
            raise UsageError(f"{f}: expected root/[split/]<real|fake>/<family>/<generator>/...")
        items.append({"rel": f.relative_to(root).as_posix(), "cls": parts[2], "split": split,
                      "family": parts[1].lower(), "forgery_type": ""})
    if not items:
        raise UsageError(f"{root}: no images found")
    return _rows(items, root, mapping, "genface", seed)


def import_dataset(kind: str, root: Path, out: Path | None = None, mapping: Path | None = None,
                   csvs: list[Path] | None = None, seed: int = 0) -> list[ManifestRow]:
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"{root}: dataset root not found")
    m = load_mapping(mapping)
    if kind == "folder":
        rows = import_folder(root, m, seed)
    elif kind == "owdfa-csv":
        if not csvs:
            raise UsageError("owdfa-csv: give the protocol CSVs with --csv train.csv test.csv ...")
        rows = import_owdfa_csv(root, list(csvs), m, seed)
    elif kind == "genface":
        rows = import_genface(root, m, seed)
    else:
        raise UsageError(f"unknown importer {kind!r}; known: folder, owdfa-csv, genface")
    out = Path(out or root)
    if out.resolve() != root.resolve():  # the manifest's paths are relative to its own folder
        import dataclasses
        import os

        rel = [Path(os.path.relpath(root.resolve() / r.path, out.resolve())).as_posix() for r in rows]
        if any(path_problem(p) for p in rel):  # the root is not below OUT: reach it through OUT/images
            link = out / LINK_NAME
            out.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() and link.resolve() == root.resolve():
                pass
            elif link.exists() or link.is_symlink():
                raise UsageError(f"{link}: exists and is not a link to {root}; choose another --out")
            else:
                link.symlink_to(root.resolve(), target_is_directory=True)
            rel = [f"{LINK_NAME}/{r.path}" for r in rows]
        rows = [dataclasses.replace(r, path=p) for r, p in zip(rows, rel)]
    write_manifest(rows, out / "manifest.csv")
    return rows


LINK_NAME = "images"  # OUT/images -> the dataset root, when --out is not above the root
