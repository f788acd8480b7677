"""Requests per second of `gazeclip serve` on this machine, over loopback only.

    .venv/bin/python benchmarks/bench_serve.py --run demo-out/runs/gazeclip-p2 [--requests 24] [--repeats 5]
        [--concurrency 1 4]

Starts `gazeclip serve --host 127.0.0.1` in a subprocess, waits for /healthz, then for each
concurrency level sends a fixed, bounded number of POST /v1/predict requests (the astronaut photo,
512x512 PNG, one face) from that many client threads, `--repeats` times. Prints requests/s as the
median and interquartile range over the repeats, and the median latency. Never pass/fail: the
machine's load moves these numbers 2-10x, compare figures from one run only.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(run: str, *extra: str):
    """`gazeclip serve --run RUN --host 127.0.0.1` in a subprocess, once /healthz answers:
    yields (the process, its base URL); terminated on exit."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "gazeclip", "serve", "--run", str(run), "--host", "127.0.0.1",
                               "--port", str(port), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        with httpx.Client(base_url=url, timeout=60) as client:
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"server did not start: {server.stderr.read().decode()[-2000:]}")
                time.sleep(0.5)
        yield server, url
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--requests", type=int, default=24, help="requests per repeat (bounded)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    args = ap.parse_args()
    import httpx

    from gazeclip.weights import asset_path

    photo = asset_path("photo-astronaut").read_bytes()
    with serving(args.run) as (server, url), httpx.Client(base_url=url, timeout=600) as client:
        h = client.get("/healthz").json()
        print(f"gazeclip serve: model {h['model']} on {h['backbone']}, {os.cpu_count()} CPU(s), "
              f"{args.requests} requests x {args.repeats} repeats per level, loopback only")

        def one(_):
            t = time.perf_counter()
            r = client.post("/v1/predict", files={"files": ("astronaut.png", photo, "image/png")})
            assert r.status_code == 200, r.text
            return time.perf_counter() - t

        one(0)  # warm-up: first request loads lazily built parts
        for c in args.concurrency:
            rates, lat = [], []
            for _ in range(args.repeats):
                t = time.perf_counter()
                with ThreadPoolExecutor(c) as pool:
                    lat += list(pool.map(one, range(args.requests)))
                rates.append(args.requests / (time.perf_counter() - t))
            q1, med, q3 = np.percentile(rates, [25, 50, 75])
            print(f"  concurrency {c:2d}: {med:6.2f} requests/s  IQR [{q1:.2f}, {q3:.2f}]  "
                  f"(n={args.repeats} repeats x {args.requests}), median latency {1000 * np.median(lat):.0f} ms")


if __name__ == "__main__":
    main()
