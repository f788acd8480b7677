"""Peak memory of `gazeclip serve` under concurrent large images, over loopback only.

    .venv/bin/python benchmarks/serve_rss.py --run RUN [--side 9000] [--requests 8]

Starts `gazeclip serve --host 127.0.0.1` in a subprocess, sends one small warm-up request, then
`--requests` concurrent POST /v1/predict requests, each one PNG of side x side pixels in one flat
colour (9000 x 9000: 81 megapixels, under the default pixel limit, about 236 KB), and samples the
server's resident memory (RSS, psutil) every 20 ms. Prints the idle RSS, the peak above it and
each request's status (200, or 503 when the decode budget was full). A fixed, bounded number of
requests; nothing leaves the machine.
"""
from __future__ import annotations

import argparse
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench_serve import serving


def flat_png(side: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (90, 140, 200)).save(buf, "PNG", compress_level=9)
    return buf.getvalue()


def measure(run: str, side: int = 9000, requests: int = 8, *serve_args: str) -> dict:
    """{"idle_rss", "peak_rss", "peak_above_idle", "statuses", "png_bytes", "seconds"} (bytes)."""
    import httpx
    import numpy as np
    import psutil
    from PIL import Image

    big = flat_png(side)
    small = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(small, "PNG")
    with serving(run, *serve_args) as (server, url), httpx.Client(base_url=url, timeout=600) as client:
        proc = psutil.Process(server.pid)
        assert client.post("/v1/predict", files={"files": ("warm.png", small.getvalue(), "image/png")}).status_code == 200
        time.sleep(1.0)
        idle = proc.memory_info().rss
        peak, stop = [idle], threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.02)

        def ask(i):
            return client.post("/v1/predict", files={"files": (f"big{i}.png", big, "image/png")}).status_code

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(requests) as pool:
            statuses = list(pool.map(ask, range(requests)))
        seconds = time.perf_counter() - t0
        time.sleep(0.2)
        stop.set()
        sampler.join()
        after = proc.memory_info().rss
    return {"idle_rss": idle, "peak_rss": peak[0], "peak_above_idle": peak[0] - idle, "after_rss": after,
            "statuses": statuses, "png_bytes": len(big), "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--side", type=int, default=9000)
    ap.add_argument("--requests", type=int, default=8)
    args = ap.parse_args()
    m = measure(args.run, args.side, args.requests)
    gb = 1 / 2**30
    print(f"{args.requests} concurrent requests of a {args.side}x{args.side} PNG ({m['png_bytes'] / 1e3:.0f} KB): "
          f"idle RSS {m['idle_rss'] * gb:.2f} GiB, peak {m['peak_rss'] * gb:.2f} GiB "
          f"(+{m['peak_above_idle'] * gb:.2f} GiB), after {m['after_rss'] * gb:.2f} GiB, "
          f"statuses {sorted(m['statuses'])}, {m['seconds']:.1f} s")


if __name__ == "__main__":
    main()
