"""The offline benchmark: real-face sources, forgers (one `Forger` interface and a registry),
protocols, the builder, importers and checks. Heavy modules are imported on use.

    from gazeclip.bench import build, BuildConfig, PRESETS, create_forger, list_forgers
"""
from __future__ import annotations

from typing import Any

_LAZY = {
    "build": "build", "BuildConfig": "build", "PRESETS": "build", "Preset": "build",
    "default_protocols": "build", "finalize": "build",
    "Forger": "forgers", "ForgerInfo": "forgers", "Forged": "forgers", "REGISTRY": "forgers",
    "create_forger": "forgers", "list_forgers": "forgers", "register": "forgers",
    "import_dataset": "importers", "train_forgers": "train",
    "shortcut_report": "checks", "near_duplicates": "checks", "pixel_stats_report": "checks",
    "real_faces": "realfaces", "FacePool": "realfaces",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
