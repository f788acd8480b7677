"""Keep native libraries' log lines (MediaPipe / TFLite / LiteRT / absl) off the user's terminal.

MediaPipe's C++ core writes "W0000 ... face_landmarker_graph.cc ..." and "INFO: Created TensorFlow
Lite XNNPACK delegate" lines straight to file descriptor 2, below Python, and no environment
variable of mediapipe 1.2 turns them off. So the few calls into MediaPipe run inside
`native_logs_silenced()`, which points fd 2 at /dev/null for their duration. `gazeclip -v` (or
GAZECLIP_VERBOSE=1, or `set_verbose(True)`) lets them through.

The redirect is reference-counted under a lock, so overlapping uses from several threads (the
HTTP service) share one redirect and the terminal's stderr always comes back.
"""
from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

_verbose = os.environ.get("GAZECLIP_VERBOSE", "") not in ("", "0")
_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None


def set_verbose(on: bool) -> None:
    """Show (True) or hide (False, the default) native libraries' log lines."""
    global _verbose
    _verbose = bool(on)


def is_verbose() -> bool:
    return _verbose


@contextmanager
def native_logs_silenced() -> Iterator[None]:
    """fd 2 goes to /dev/null inside the block (unless verbose). Python's own stderr writes from
    other threads during the block are lost too, so keep the block around native calls only."""
    global _depth, _saved_fd
    if _verbose:
        yield
        return
    with _lock:
        if _depth == 0:
            try:
                sys.stderr.flush()
            except (AttributeError, ValueError, OSError):
                pass
            try:
                _saved_fd = os.dup(2)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            except OSError:  # no fd 2 (embedded interpreters): nothing to silence
                _saved_fd = None
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved_fd is not None:
                os.dup2(_saved_fd, 2)
                os.close(_saved_fd)
                _saved_fd = None
