"""The dataset manifest: one row per image, the contract between `bench` (writes) and
`engine` (reads). `DIR/manifest.csv` + `DIR/protocols.yaml`, images under `DIR/<class>/`.
"""
from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

REAL = "real"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ManifestRow:
    path: str          # relative to the dataset folder
    cls: str           # "real" or the generator name (CSV column `class`)
    family: str        # "real", "gan", "diffusion", "flow", "vae", "identity-swap", "manipulation", "morph", ...
    forgery_type: str  # "real", "entire-synthesis", "identity-swap", "attribute-manipulation", "gaze-manipulation", ...
    split: str         # train / val / test
    source: str        # where it came from (package, model, importer)
    licence: str
    sha256: str
    identity: str = ""  # real faces: the person, so that one identity stays on one side of a split


COLUMNS = ["path", "class", "family", "forgery_type", "split", "source", "licence", "sha256", "identity"]


def _to_csv(row: ManifestRow) -> dict[str, str]:
    d = asdict(row)
    d["class"] = d.pop("cls")
    return d


def write_manifest(rows: list[ManifestRow], path: Path) -> None:
    """Atomic write (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest.", suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow(_to_csv(r))
    os.replace(tmp, path)


def read_manifest(path: Path) -> list[ManifestRow]:
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest; build one with `gazeclip bench build` or "
                                "`gazeclip bench import`")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"path", "class", "family", "forgery_type", "split"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: manifest lacks columns {sorted(missing)}")
        names = {f.name for f in fields(ManifestRow)}
        rows = []
        for rec in reader:
            rec["cls"] = rec.pop("class")
            rows.append(ManifestRow(**{k: rec.get(k, "") or "" for k in names}))
    return rows


@dataclass(frozen=True)
class Protocol:
    """Which generators are seen in training and which are held out (test only)."""

    name: str
    seen: tuple[str, ...]
    unseen: tuple[str, ...]
    description: str = ""

    @property
    def train_classes(self) -> tuple[str, ...]:
        """Attribution classes the model learns: real first, then the seen generators."""
        return (REAL, *self.seen)


def write_protocols(protocols: list[Protocol], path: Path) -> None:
    data = {p.name: {"seen": list(p.seen), "unseen": list(p.unseen), "description": p.description}
            for p in protocols}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".protocols.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
    os.replace(tmp, path)


def read_protocols(path: Path) -> dict[str, Protocol]:
    path = Path(path)
    if path.is_dir():
        path = path / "protocols.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    return {name: Protocol(name, tuple(v.get("seen", [])), tuple(v.get("unseen", [])), v.get("description", ""))
            for name, v in data.items()}


def load_protocol(data_dir: Path, name: str) -> Protocol:
    protocols = read_protocols(Path(data_dir))
    if name not in protocols:
        raise ValueError(f"{data_dir}/protocols.yaml has no protocol {name!r}; known: {', '.join(protocols)}")
    return protocols[name]


def select_rows(rows: list[ManifestRow], protocol: Protocol, split: str) -> list[ManifestRow]:
    """The rows a protocol uses in one split: train/val hold `real` and the seen generators only;
    test holds real, seen and unseen generators. Unseen generators thus appear only in test,
    although the manifest (shared by all protocols) lists train/val images for every generator."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    keep = set(protocol.train_classes) | (set(protocol.unseen) if split == "test" else set())
    return [r for r in rows if r.split == split and r.cls in keep]
