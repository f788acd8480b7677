"""Atomic file writes: a temp file in the same folder, fsync, then rename, so a kill never leaves
half a file behind (`atomic_dir`: the same for a whole folder). Every step that writes files uses
these (the one temp-then-rename in src/)."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path next to `path` for writers that need a file name (savefig, cv2.VideoWriter,
    safetensors); on success fsync it and rename it onto `path`, on any error remove it.
    `suffix` lets a writer that picks its format by extension see the right one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp folder next to `path` to fill; on success it replaces `path` (an older folder
    there is removed) with the permissions of a folder made under the umask (mkdtemp makes it
    private; outputs are shared like run folders), on any error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


# kernel and device file systems: a "file" there is an interface, never a place for results
_NOT_FOR_OUTPUT = ("/sys", "/proc", "/dev")


def check_writable(path: str | os.PathLike, what: str, folder: bool = False) -> Path:
    """Refuse, before any work starts, an output path the atomic writers above could not complete:
    a folder where a file is wanted (or a file where a folder is), a place under /sys, /proc or
    /dev, a folder that cannot be created or written. A probe file is made and removed there.
    Returns the path; raises `OutputPathError` (one line naming `what` and the path)."""
    from .errors import OutputPathError

    p = Path(path)
    real = p.resolve()
    # the name as given counts too: the rename would replace a link such as /dev/stdout itself
    for q in (Path(os.path.abspath(p)), real):
        if any(q == Path(s) or Path(s) in q.parents for s in _NOT_FOR_OUTPUT):
            raise OutputPathError(what, p, f"{q} is on a kernel or device file system", "write to a regular folder")
    if folder and real.exists() and not real.is_dir():
        raise OutputPathError(what, p, "it exists and is not a folder", "give a new or an empty folder")
    if not folder and real.is_dir():
        raise OutputPathError(what, p, "it is a folder", "give a file name, e.g. DIR/predictions.csv")
    if not folder and real.exists() and not real.is_file():
        raise OutputPathError(what, p, "it exists and is not a regular file", "give a regular file's name")
    where = real if folder else real.parent
    try:
        where.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=where, prefix=".write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputPathError(what, p, f"cannot write in {where} ({e.strerror or type(e).__name__})",
                              "choose a writable folder") from None
    return p
