"""Error types every step shares, so the command line can turn them into one line and an exit code.

`GazeclipError` and its subclasses are problems with a file or an input, never bugs: `str(err)` is
one line naming the file and the fix, and `gazeclip` prints it without a traceback (exit 1).
"""
from __future__ import annotations

import os


class GazeclipError(Exception):
    """An input problem the user can fix; `str(err)` is one line naming the file and the fix."""


class DamagedFileError(GazeclipError, ValueError):
    """A file gazeclip wrote or reads (run folder, cache, manifest, checkpoint) is damaged,
    truncated, edited inconsistently, or not what its name says."""

    def __init__(self, path: str | os.PathLike, reason: str, fix: str | None = None):
        self.path, self.reason = str(path), reason
        self.fix = fix or "restore it from a good copy or write it again with the command that made it"
        super().__init__(f"{self.path}: {reason}; {self.fix}")


class UnsafeFileError(DamagedFileError):
    """A file asks for something gazeclip refuses on principle (pickled code, paths outside the
    data folder, an image larger than the pixel limit)."""


class UsageError(GazeclipError, ValueError):
    """A bad option, name or value given by the user (a ValueError, so callers written for one keep
    working)."""


class MissingFileError(GazeclipError, FileNotFoundError):
    """A file or folder the command needs is not there; the message says which command makes it."""


class OutputExistsError(GazeclipError, FileExistsError):
    """The output would overwrite something that is not ours to replace."""


class StaleRunError(GazeclipError, ValueError):
    """A run folder written before a file or field this gazeclip needs existed; `str(err)` names
    the command that adds it."""


class OutputPathError(GazeclipError, ValueError):
    """An output path (`--csv`, `--out`, ...) that cannot be written, found before the work starts."""

    def __init__(self, what: str, path: str | os.PathLike, reason: str, fix: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{what} {path}: {reason}; {fix}")
