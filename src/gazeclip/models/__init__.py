"""Models: backbones, GazeCLIP (VPE/AGPM, GIE, LRE, DFAD expert) and the baselines, behind one
interface (`interface.py`) and one registry (`registry.py`, YAMLs in the package's `configs/models/`)."""
from __future__ import annotations

_REGISTRY_NAMES = ("list_models", "create_model", "model_config", "model_spec", "save_pretrained",
                   "from_pretrained", "add_model_config", "ARCHITECTURES")

__all__ = [*_REGISTRY_NAMES]


def __getattr__(name: str):
    # lazy: `import gazeclip.models.interface` (the engine's contract) stays cheap
    if name in _REGISTRY_NAMES:
        from . import registry

        return getattr(registry, name)
    raise AttributeError(name)
