"""JSON output without NaN or Infinity (which JSON does not have: `json.dumps` would write them
and strict parsers reject the line). Non-finite numbers become null."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def finite(obj: Any) -> Any:
    """A copy of `obj` (dicts, lists, tuples, numbers, numpy scalars and arrays) where every NaN or
    +-Infinity is None and numpy values are plain Python."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return finite(obj.tolist())
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return finite(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj: Any, **kw) -> str:
    """`json.dumps` of `finite(obj)`; raises (allow_nan=False) rather than ever writing NaN."""
    return json.dumps(finite(obj), allow_nan=False, **kw)
