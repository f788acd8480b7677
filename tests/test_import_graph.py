"""The package's imports point down the data flow only (checked statically, with `ast`).

Every `import` in src/gazeclip counts, including those inside functions (an import moved into a
function to dodge a circle is still an arrow). Two checks:
  1. no cycle between modules;
  2. no module imports one of a higher layer.

Layers, bottom to top (a module may import its own layer and those below):
  0 shared     gazeclip.atomic, common, registry, errors, safejson, quiet, records, configs, configfields
  1 weights    gazeclip.weights.*         pinned pretrained files
  2 faces      gazeclip.faces.*           decode, detect, crop, landmarks
  3 gaze       gazeclip.gaze.*            gaze estimators and their cache
  4 models     gazeclip.models.*          backbones, GazeCLIP and baselines
  5 data       gazeclip.data.*, bench.*   manifests, datasets, benchmark builder; viz.plots (the
                                          drawing primitives that the modes write their figures with)
  6 run        gazeclip.run.*             what every mode shares: run config, run folder, load_run
  7 modes      gazeclip.train.*, evaluation.*, inference.*, export.*: side by side; none imports another
  8 apps       gazeclip.viz.*, serve.*, experiment.*, `gazeclip` (the lazy API)
  9 cli        gazeclip.cli, __main__, demo, every `cli.py` / `cli_*.py` (parse, call, print)
A third check: a mode never imports another mode, so loading a model to predict never pulls in the
trainer (and `import gazeclip; gazeclip.load(...)` is checked at run time in test_api.py).
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "gazeclip"

SHARED = {"atomic", "common", "registry", "errors", "safejson", "quiet", "records", "configs", "configfields"}
MODES = {"train", "evaluation", "inference", "export"}
STEPS = {"weights": 1, "faces": 2, "gaze": 3, "models": 4, "data": 5, "bench": 5, "run": 6,
         **dict.fromkeys(MODES, 7), "viz": 8, "serve": 8, "experiment": 8}
NAMES = ["shared", "weights", "faces", "gaze", "models", "data/bench", "run", "modes", "apps", "cli"]


def modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = p.relative_to(SRC.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def layer(mod: str) -> int:
    parts = mod.split(".")
    last = parts[-1]
    if mod == "gazeclip":  # the package itself: the lazy public API (gazeclip.load), over inference
        return 8
    if mod in ("gazeclip.cli", "gazeclip.__main__", "gazeclip.demo") or last == "cli" or last.startswith("cli_"):
        return 9
    if mod == "gazeclip.viz.plots":
        return 5
    top = parts[1]
    if top in SHARED:
        return 0
    return STEPS[top]


def imports(mod: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that `mod` imports anywhere in its file."""
    is_pkg = path.name == "__init__.py"
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    found = set()

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("gazeclip"):
                    found.add(resolve(a.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = ".".join(base[: len(base) - node.level + 1])
                target = f"{pkg}.{node.module}" if node.module else pkg
            elif node.module and node.module.startswith("gazeclip"):
                target = node.module
            else:
                continue
            for a in node.names:  # `from . import x` imports the submodule x when there is one
                sub = f"{target}.{a.name}"
                found.add(sub if sub in known else resolve(target))
    found.discard(None)
    found.discard(mod)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports(m, p, known) for m, p in mods.items()}


def test_no_lower_layer_imports_a_higher_one():
    bad = [f"{m} ({NAMES[layer(m)]}) imports {t} ({NAMES[layer(t)]})"
           for m, ts in sorted(graph().items()) for t in sorted(ts) if layer(t) > layer(m)]
    assert not bad, "imports that point up the data flow:\n" + "\n".join(bad)


def mode_of(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in MODES else None


def test_no_mode_imports_another_mode():
    """train, evaluation, inference and export sit side by side (their `cli` modules included)."""
    bad = [f"{m} imports {t}" for m, ts in sorted(graph().items()) for t in sorted(ts)
           if mode_of(m) and mode_of(t) and mode_of(m) != mode_of(t)]
    assert not bad, "a mode imports another mode:\n" + "\n".join(bad)


def test_no_import_cycles():
    g = graph()
    # package __init__ re-exports are edges parent -> child; a child importing its own package's
    # __init__ would then close a loop, which is a real circle too, so they count like any module.
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def strong(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            strong(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_every_module_has_a_layer():
    for m in modules():
        assert 0 <= layer(m) < len(NAMES), m
