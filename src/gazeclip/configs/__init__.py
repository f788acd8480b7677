"""Model and run configs that travel with the package (as open_clip's `model_configs/`).

    configs/models/*.yaml   one registered model each (read by gazeclip.models.registry)
    configs/runs/*.yaml     run configs for `gazeclip train --config NAME` (default, smoke, tiny)

They are read with importlib.resources, so a wheel install finds them wherever it lives; a user's
own file is always given by its path (`--config my.yaml`), and `gazeclip.models.add_model_config`
adds a user's model folder or file to the registry.
"""
from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ..errors import MissingFileError



def kinds() -> list[str]:
    """The folders of configs shipped in the package (models, runs, and any added later)."""
    return sorted(t.name for t in resources.files(__name__).iterdir() if t.is_dir() and not t.name.startswith("_"))


def packaged(kind: str) -> dict[str, Traversable]:
    """name -> YAML file shipped in the package, for one kind of config."""
    if kind not in kinds():
        raise ValueError(f"unknown config kind {kind!r}; known: {', '.join(kinds())}")
    folder = resources.files(__name__) / kind
    return {Path(t.name).stem: t for t in sorted(folder.iterdir(), key=lambda t: t.name)
            if t.name.endswith(".yaml")}


def find_config(kind: str, name_or_path: str | Path) -> Path | Traversable:
    """A config file: an existing path as given, else a packaged config of that name
    (`smoke` or `smoke.yaml`). Unknown names fail with the known ones listed."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    known = packaged(kind)
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
    # a bare name, or a path `.../configs/<kind>/NAME.yaml` of the source tree before the configs
    # moved into the package (older docs and scripts)
    old_layout = p.parent.name == kind and p.parent.parent.name == "configs"
    if stem in known and (len(p.parts) == 1 or old_layout):
        return known[stem]
    raise MissingFileError(f"{name_or_path}: no such config file, and not a packaged {kind[:-1]} config "
                            f"(packaged: {', '.join(known)})")
