"""Which files `gazeclip predict` reads, and how their names are written out.

A batch over a platform dump or a seized disk meets more than images: named pipes, device nodes,
links to /dev/zero, folders it may not list, names that are not UTF-8. Reading a FIFO blocks for
ever and reading /dev/zero never ends, so only *regular* files are read; everything else found
(named on the command line, listed in `--files-from`, or met while walking a folder) becomes one
error record naming it, and the batch goes on. Nothing is skipped without a word.

    walk(paths, exts)       files as given; folders walked (hidden entries skipped, links to folders
                            not followed); a sub-folder that cannot be listed is kept as an entry
    input_error(path)       None for a readable regular file, else the one-line error of its record
    printable(text)         a file name any output can encode: bytes that are not UTF-8 (kept by
                            Python as lone surrogates) written as \\xNN
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable

_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def walk(paths: Iterable[str | os.PathLike], exts: Iterable[str]) -> list[str]:
    """Files as given (each once per mention); folders walked recursively for names ending in
    `exts`, sorted, hidden files and folders skipped, links to folders not followed (no loops).
    Every entry with a matching name is kept whatever it is (a FIFO, a device link, a broken link),
    and so is every sub-folder that cannot be listed: `input_error` reports them by name."""
    exts = {e.lower() for e in exts}
    out: list[str] = []
    for p in paths:
        p = os.fspath(p)
        if not os.path.isdir(p):
            out.append(str(Path(p)))
            continue
        found: list[str] = []
        unlisted: list[OSError] = []  # os.walk hands every folder it cannot list to onerror: kept
        for root, dirs, files in os.walk(p, onerror=unlisted.append):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found += [os.path.join(root, f) for f in files
                      if not f.startswith(".") and os.path.splitext(f)[1].lower() in exts]
        out += sorted(str(Path(f)) for f in found + [e.filename for e in unlisted])
    return out


def input_error(path: str | os.PathLike) -> str | None:
    """None when `path` is a regular file (or a link to one) that may be read, else the one line
    that names it and says what to do. Nothing is opened, so a FIFO or a device never blocks."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            return _line(p, f"broken symbolic link (to {os.readlink(p)})", "fix or remove the link")
        return _line(p, "no such file", "check the path")
    except PermissionError:
        return _line(p, "permission denied", "make it and its folders readable")
    except OSError as e:  # a loop of links, a name too long, an I/O error
        return _line(p, e.strerror or type(e).__name__, "check the file system")
    if stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISDIR(st.st_mode):
        try:
            with os.scandir(p):
                pass
        except OSError as e:
            return _line(p, f"a folder that cannot be listed ({e.strerror or type(e).__name__})",
                         "make it readable (chmod u+rx) or leave it out")
        return _line(p, "it is a folder", "pass folders on the command line (they are walked), list files in "
                     "--files-from")
    kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
    return _line(p, f"{kind}, not a regular file", "only regular files are read; copy its data into a file")


def _line(path: str, reason: str, fix: str) -> str:
    return f"{printable(path)}: cannot read: {reason}; {fix}"


def printable(text: str) -> str:
    """`text` as valid Unicode: a file name's bytes that are not UTF-8 (which os.fsdecode keeps as
    lone surrogates, U+DC80..U+DCFF) become `\\xNN`, any other lone surrogate `\\udNNN`; valid
    text is returned unchanged."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def printable_record(rec: dict) -> dict:
    """A `predict --json` record whose path and error text any output (CSV, JSON, a terminal) can
    encode. The record itself is returned when nothing needs escaping."""
    bad = [k for k in ("path", "error") if isinstance(rec.get(k), str) and printable(rec[k]) != rec[k]]
    return {**rec, **{k: printable(rec[k]) for k in bad}} if bad else rec
