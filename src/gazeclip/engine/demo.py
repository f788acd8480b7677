"""The end-to-end demo flow (what `make demo` runs, via `gazeclip demo`):
weights -> smoke benchmark -> train GazeCLIP and clip-linear-probe on P2 -> evaluate and compare
-> predict on a real photo and a generated face. Each step is skipped when its output exists, so
a second run (or a run after an interruption) continues where the first stopped."""
from __future__ import annotations

import sys
import time
from pathlib import Path

MODELS = ("gazeclip", "clip-linear-probe")


def _step(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def run_demo(out: str | Path = "demo-out", data: str | Path | None = None, preset: str = "smoke",
             backbone: str = "clip-b16-offline", epochs: int = 4, protocol: str = "P2", n_boot: int = 500) -> int:
    from ..weights import asset_path, status

    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    missing = [r for r in status() if not r.present]
    if missing:
        print("demo: pretrained weights missing: run `gazeclip weights pull` (or `make weights`) first")
        return 1
    try:
        data = Path(data) if data else out / f"bench-{preset}"
        if not (data / "manifest.csv").is_file():
            _step(f"building the {preset} benchmark into {data}")
            _build_benchmark(data, preset)
        runs = []
        for name in MODELS:
            run = out / "runs" / f"{name}-{protocol.lower()}"
            runs.append(str(run))
            if (run / "summary.json").is_file():
                continue
            _step(f"training {name} on {protocol} ({backbone}, {epochs} epochs)")
            _train(name, backbone, data, protocol, run, epochs)
        _step("evaluating and comparing on the test split")
        _compare(runs, data, n_boot, out / "compare")
        _step("predicting on a real photo and a generated face")
        rows = [r for r in _manifest(data) if r.split == "test" and r.cls != "real"]
        photos = [str(asset_path("photo-astronaut"))] + ([str(data / rows[0].path)] if rows else [])
        _predict(photos, runs[0])
    except (FileNotFoundError, FileExistsError, ValueError, KeyError, RuntimeError) as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    print(f"\ndemo done in {(time.time() - t0) / 60:.1f} min; outputs under {out}/", flush=True)
    return 0


def _build_benchmark(data: Path, preset: str) -> None:
    """What `gazeclip bench build --preset PRESET --out DATA` does, with its defaults."""
    import torch

    from ..bench.build import PRESETS, BuildConfig, build
    from ..bench.report import counts_table

    torch.set_num_threads(2)
    rep = build(data, BuildConfig(PRESETS[preset]))
    print(counts_table(data))
    print(f"built {data} (preset {preset}, seed 0) in {rep.total_seconds / 60:.1f} min")


def _train(name: str, backbone: str, data: Path, protocol: str, run: Path, epochs: int) -> None:
    """The packaged `smoke` run config with this model, backbone, protocol and epoch count; an
    interrupted run (config.yaml but no summary) is continued, or restarted if it has no checkpoint yet."""
    from .config import TrainConfig
    from .trainer import train

    cfg = TrainConfig.from_yaml("smoke").replace(model=name, backbone=backbone, protocol=protocol, epochs=epochs)
    res = train(cfg, data, run, resume=(run / "config.yaml").is_file())
    b = res.best_metrics
    print(f"done: best epoch {res.best_epoch} val_acc {b['val_acc']:.3f} val_auc {b['val_auc']:.3f} "
          f"-> {res.run_dir}/model")


def _compare(runs: list[str], data: Path, n_boot: int, out: Path) -> None:
    from .compare import compare_runs, print_table, table_markdown
    from .utils import atomic_write_json, atomic_write_text

    res = compare_runs(runs, data, None, n_boot, 0, "auto", progress=True)
    print_table(res)
    atomic_write_json(out / "compare.json", res)
    atomic_write_text(out / "compare.md", table_markdown(res) + "\n")
    print(f"wrote {out}/compare.json, compare.md")


def _predict(photos: list[str], run: str) -> None:
    from .detector import load
    from .results import describe_record

    for _, rec in load(run).iter_records(photos, progress=True):
        print(describe_record(rec), flush=True)


def _manifest(data: Path):
    from ..data.manifest import read_manifest

    return read_manifest(data)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run_demo())
