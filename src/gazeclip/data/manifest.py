"""The dataset manifest: one row per image, the contract between `bench` (writes) and
`engine` (reads). `DIR/manifest.csv` + `DIR/protocols.yaml`, images under `DIR/<class>/`.

Both files are validated when read, since data folders are shared: every manifest path must stay
inside the data folder (relative, no `..`: `path_problem`, also used by the importers), splits are exactly train/val/test, a
path is listed once; protocols name generators once, never `real`, never both seen and unseen.
"""
from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import yaml

from ..atomic import atomic_write_text
from ..common import IMAGE_EXTS
from ..errors import DamagedFileError, MissingFileError, UnsafeFileError, UsageError

REAL = "real"
SPLITS = ("train", "val", "test")
# design choice, not from the paper: PNG without compression (zlib level 0). Every file then has
# the same size (49,425 bytes at 128x128), so file size cannot tell classes apart; with
# compression, PNG size measures image entropy and separated the blurry generators (v1).
PNG_LEVEL = 0


def encode_png(rgb: np.ndarray) -> bytes:
    """The one encoding of every image of a built data folder (the benchmark's classes and the
    training items rendered from them): RGB PNG, zlib level PNG_LEVEL, no metadata."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


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
    fh = io.StringIO(newline="")
    w = csv.DictWriter(fh, fieldnames=COLUMNS)
    w.writeheader()
    for r in rows:
        w.writerow(_to_csv(r))
    atomic_write_text(path, fh.getvalue())


def path_problem(rel: str) -> str | None:
    """Why `rel` may not name a file of a data folder (None when it may): it must be a relative
    POSIX path that stays inside the folder (no `..`, no absolute or drive paths, no NUL)."""
    if not rel or not rel.strip():
        return "an empty path"
    if "\0" in rel:
        return "a path with a NUL character"
    if "\\" in rel:
        return f"{rel!r} uses backslashes; write paths with /"
    if rel.startswith("/") or (len(rel) > 1 and rel[0].isalpha() and rel[1] == ":" and rel[2:3] in ("", "/")):
        return f"{rel!r} is an absolute path"
    if any(part == ".." for part in rel.split("/")):
        return f"{rel!r} leaves the data folder (..)"
    return None


def read_manifest(path: Path) -> list[ManifestRow]:
    """The rows of `DIR/manifest.csv`, validated: paths inside DIR, splits exactly train/val/test,
    every path once. Errors name the file and line."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    if not path.is_file():
        raise MissingFileError(f"{path}: no manifest; build one with `gazeclip bench build` or "
                                "`gazeclip bench import`")
    fix = "fix the row, or rebuild it with `gazeclip bench build` / `gazeclip bench import`"
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"path", "class", "family", "forgery_type", "split"} - set(reader.fieldnames or [])
            if missing:
                raise UsageError(f"{path}: manifest lacks columns {sorted(missing)}")
            names = {f.name for f in fields(ManifestRow)}
            rows, first_line = [], {}
            for rec in reader:
                line = reader.line_num
                rec["cls"] = rec.pop("class")
                row = ManifestRow(**{k: rec.get(k, "") or "" for k in names})
                why = path_problem(row.path)
                if why:
                    raise UnsafeFileError(f"{path}:{line}", f"{why}; gazeclip reads only files inside the data "
                                          "folder", "list paths relative to the data folder, without ..")
                if row.split not in SPLITS:
                    raise DamagedFileError(f"{path}:{line}", f"split {row.split!r} is not one of "
                                           f"{', '.join(SPLITS)} (exactly, lower case)", fix)
                if not row.cls:
                    raise DamagedFileError(f"{path}:{line}", "empty class", fix)
                if row.path in first_line:
                    raise DamagedFileError(f"{path}:{line}", f"{row.path!r} is listed again (first on line "
                                           f"{first_line[row.path]})", "list every image once")
                first_line[row.path] = line
                rows.append(row)
    except UnicodeDecodeError as e:
        raise DamagedFileError(path, f"not UTF-8 text ({e.reason})", fix) from None
    except csv.Error as e:
        raise DamagedFileError(path, f"not a valid CSV file ({e})", fix) from None
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
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def protocol_problems(p: Protocol, families: dict[str, str] | None = None) -> list[str]:
    """Problems with a protocol (empty list when consistent): a generator named twice, a class both
    seen and unseen, `real` among the generators, and, given generator -> family, unknown names."""
    errs = []
    for kind, names in (("seen", p.seen), ("unseen", p.unseen)):
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            errs.append(f"{p.name}: {dup} listed twice in {kind}")
    if set(p.seen) & set(p.unseen):
        errs.append(f"{p.name}: {sorted(set(p.seen) & set(p.unseen))} both seen and unseen")
    if families is not None:
        unknown = (set(p.seen) | set(p.unseen)) - set(families) - {REAL}
        if unknown:
            errs.append(f"{p.name}: unknown generators {sorted(unknown)}")
    if REAL in p.seen or REAL in p.unseen:
        errs.append(f"{p.name}: 'real' is not a generator")
    return errs


def read_protocols(path: Path) -> dict[str, Protocol]:
    """Every protocol of `DIR/protocols.yaml`, validated (`protocol_problems`); errors name the file."""
    path = Path(path)
    if path.is_dir():
        path = path / "protocols.yaml"
    if not path.is_file():
        raise MissingFileError(f"{path}: no protocols; build the data folder with `gazeclip bench build` or "
                                "write protocols.yaml (see docs/bench.md)")
    fix = "fix protocols.yaml (see docs/bench.md) or rebuild it with `gazeclip bench build`"
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DamagedFileError(path, f"not valid YAML ({str(e).splitlines()[0]})", fix) from None
    if not isinstance(data, dict):
        raise DamagedFileError(path, "expected a mapping of protocol name -> {seen, unseen, description}", fix)
    out = {}
    for name, v in data.items():
        v = v or {}
        lists = {k: v.get(k, []) if isinstance(v, dict) else None for k in ("seen", "unseen")}
        if not isinstance(v, dict) or not all(isinstance(x, list) and all(isinstance(n, str) for n in x)
                                              for x in lists.values()):
            raise DamagedFileError(path, f"protocol {name!r} must map seen/unseen to lists of generator names", fix)
        p = Protocol(str(name), tuple(lists["seen"]), tuple(lists["unseen"]), str(v.get("description", "") or ""))
        errs = protocol_problems(p)
        if errs:
            raise DamagedFileError(path, "; ".join(errs), fix)
        out[p.name] = p
    return out


def load_protocol(data_dir: Path, name: str, rows: list[ManifestRow] | None = None) -> Protocol:
    """One protocol of `DATA/protocols.yaml`, validated; given the manifest rows, also checked
    against the classes the manifest has."""
    protocols = read_protocols(Path(data_dir))
    if name not in protocols:
        raise UsageError(f"{data_dir}/protocols.yaml has no protocol {name!r}; known: {', '.join(protocols)}")
    p = protocols[name]
    if rows is not None:
        errs = protocol_problems(p, {r.cls: r.family for r in rows})
        if errs:
            raise DamagedFileError(Path(data_dir) / "protocols.yaml", "; ".join(errs) + " (not in manifest.csv)",
                                   "fix protocols.yaml or the manifest")
    return p


def select_rows(rows: list[ManifestRow], protocol: Protocol, split: str) -> list[ManifestRow]:
    """The rows a protocol uses in one split: train/val hold `real` and the seen generators only;
    test holds real, seen and unseen generators. Unseen generators thus appear only in test,
    although the manifest (shared by all protocols) lists train/val images for every generator."""
    if split not in SPLITS:
        raise UsageError(f"split must be one of {SPLITS}, not {split!r}")
    keep = set(protocol.train_classes) | (set(protocol.unseen) if split == "test" else set())
    return [r for r in rows if r.split == split and r.cls in keep]


def list_dataset(data: Path, split: str | None = None) -> list[tuple[str, str]]:
    """(path, class) pairs, from the manifest when there is one, else from class subfolders."""
    if (data / "manifest.csv").is_file():
        rows = read_manifest(data / "manifest.csv")
        return [(str(data / r.path), r.cls) for r in rows if split is None or r.split == split]
    out = []
    for d in sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out += [(str(f), d.name) for f in sorted(d.rglob("*")) if f.suffix.lower() in IMAGE_EXTS and f.is_file()]
    return out
