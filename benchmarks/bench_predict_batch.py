"""`gazeclip predict --out` throughput with 1 process and with N processes (torchrun, gloo) on the
same files, in one run: files per second and their ratio.

    .venv/bin/python benchmarks/bench_predict_batch.py                  # an untrained GazeCLIP on clip-b16-offline
    .venv/bin/python benchmarks/bench_predict_batch.py --run runs/gazeclip --n 64 --procs 2 --repeats 2

The files are the real face photos pulled by `gazeclip weights pull` (one face each), copied to
--n distinct names (so that they shard like distinct files). One process gets all --threads
torch threads; each of the N processes gets threads / N (what torchrun's OMP_NUM_THREADS=1 gives on
2 cores). The variants alternate within each repeat, so load drift hits them alike. Throughput is
summary.json's `files_per_s`: files predicted / the busiest rank's seconds (listing, model loading
and the merge not counted; the wall time of the whole command is printed too). Speed does not
depend on training: without --run an untrained GazeCLIP run is written to a temp folder.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_predict import PHOTOS, make_run  # run as a script: benchmarks/ is on sys.path


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def one_job(cmd: list[str], out: Path, env: dict) -> tuple[float, float]:
    """(files/s from summary.json, wall seconds of the command)."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return json.loads((out / "summary.json").read_text())["this_run"]["files_per_s"], wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="a trained run (default: an untrained GazeCLIP on --backbone, in a temp folder)")
    ap.add_argument("--backbone", default="clip-b16-offline")
    ap.add_argument("--n", type=int, default=48, help="image files (the pulled photos, cycled)")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    from gazeclip.weights import asset_path

    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        run = Path(args.run) if args.run else make_run(tmp, args.backbone)
        files = tmp / "files"
        files.mkdir()
        for i in range(args.n):
            src = Path(asset_path(PHOTOS[i % len(PHOTOS)]))
            shutil.copyfile(src, files / f"{i:05d}{src.suffix}")
        torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
        base = ["predict", str(files), "--run", str(run), "--quiet"]
        per = max(1, args.threads // args.procs)
        variants = {
            "1 process": ([sys.executable, "-m", "gazeclip", *base, "--threads", str(args.threads)], args.threads),
            f"{args.procs} processes": ([torchrun, "--nproc-per-node", str(args.procs), "-m", "gazeclip", "--", *base,
                                         "--threads", str(per)], per),
        }
        load0 = os.getloadavg()
        got: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
        for _ in range(args.repeats):
            for name, (cmd, threads) in variants.items():
                out = tmp / name.replace(" ", "-")
                env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
                got[name].append(one_job([*cmd, "--out", str(out)], out, env))
        load1 = os.getloadavg()
        print(f"{cpu_name()}, {os.cpu_count()} cores; n = {args.n} files (one face each), {args.repeats} repeat(s); "
              f"load average {load0[0]:.1f} before, {load1[0]:.1f} after")
        rates = {}
        for name, rs in got.items():
            rates[name] = statistics.median(r for r, _ in rs)
            walls = ", ".join(f"{w:.0f}" for _, w in rs)
            print(f"  {name:12s} {rates[name]:6.3f} files/s (median; each: {', '.join(f'{r:.3f}' for r, _ in rs)}), "
                  f"command wall {walls} s")
        a, b = rates.values()
        print(f"  ratio {args.procs} processes / 1 process: {b / a:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
