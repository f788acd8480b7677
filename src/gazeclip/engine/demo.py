"""The end-to-end demo flow (what `make demo` runs, via `gazeclip demo`):
weights -> smoke benchmark -> train GazeCLIP and clip-linear-probe on P2 -> evaluate and compare
-> predict on a real photo and a generated face. Each step is skipped when its output exists, so
a second run (or a run after an interruption) continues where the first stopped."""
from __future__ import annotations

import time
from pathlib import Path

MODELS = ("gazeclip", "clip-linear-probe")


def _step(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def run_demo(out: str | Path = "demo-out", data: str | Path | None = None, preset: str = "smoke",
             backbone: str = "clip-b16-offline", epochs: int = 4, protocol: str = "P2", n_boot: int = 500) -> int:
    from ..cli import main
    from ..weights import asset_path, status

    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    missing = [r for r in status() if not r.present]
    if missing:
        print("demo: pretrained weights missing: run `gazeclip weights pull` (or `make weights`) first")
        return 1
    data = Path(data) if data else out / f"bench-{preset}"
    if not (data / "manifest.csv").is_file():
        _step(f"building the {preset} benchmark into {data}")
        rc = main(["bench", "build", "--preset", preset, "--out", str(data)])
        if rc:
            return rc
    runs = []
    for name in MODELS:
        run = out / "runs" / f"{name}-{protocol.lower()}"
        runs.append(str(run))
        if (run / "summary.json").is_file():
            continue
        _step(f"training {name} on {protocol} ({backbone}, {epochs} epochs)")
        args = ["train", "--config", "smoke", "--model", name, "--backbone", backbone,
                "--data", str(data), "--protocol", protocol, "--out", str(run), "--epochs", str(epochs)]
        if (run / "config.yaml").is_file():  # an interrupted run: continued (or restarted if no checkpoint yet)
            args.append("--resume")
        rc = main(args)
        if rc:
            return rc
    _step("evaluating and comparing on the test split")
    rc = main(["compare", *runs, "--data", str(data), "--n-boot", str(n_boot), "--out", str(out / "compare")])
    if rc:
        return rc
    _step("predicting on a real photo and a generated face")
    rows = [r for r in _manifest(data) if r.split == "test" and r.cls != "real"]
    photos = [str(asset_path("photo-astronaut"))] + ([str(data / rows[0].path)] if rows else [])
    main(["predict", *photos, "--run", runs[0]])
    print(f"\ndemo done in {(time.time() - t0) / 60:.1f} min; outputs under {out}/", flush=True)
    return 0


def _manifest(data: Path):
    from ..data.manifest import read_manifest

    return read_manifest(data)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run_demo())
