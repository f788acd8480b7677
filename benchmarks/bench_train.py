"""Training epoch time in fp32 vs bf16 autocast (fp32 master weights), in one run.

    .venv/bin/python benchmarks/bench_train.py                          # GazeCLIP on clip-b16-offline, n=32
    .venv/bin/python benchmarks/bench_train.py --backbone tiny-random --n 64 --epochs 3
    .venv/bin/python benchmarks/bench_train.py --no-cache               # frozen prefix on the fly too

The trainer's own step (`gazeclip.train.trainer.step_loss`, AdamW, clipping) over the same
synthetic crops, the two precisions interleaved epoch by epoch after one warm-up epoch each, so
load drift hits them alike. With the feature cache (the training default) only the adapted blocks,
the text tower and the heads run per step; the cache itself always holds fp32 states (filled once,
untimed). Printed: the CPU's bf16 kind, what `--precision auto` picks here, the median epoch time
per precision with its range, the ratio, and the load average before and after. No pass/fail.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench_feature_cache import dataset, fill_cache, synthetic_samples, toy_model, train_epoch  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="clip-b16-offline", help="clip-b16-offline (real) or tiny-random")
    ap.add_argument("--model", default="gazeclip")
    ap.add_argument("--n", type=int, default=32, help="training images (synthetic crops)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per precision (after one warm-up each)")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--no-cache", action="store_true", help="train from pixels (every frozen block every step)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from gazeclip.run import utils as U

    load0 = os.getloadavg()
    try:
        model, tx = toy_model(args.model, args.backbone)
    except Exception as e:  # noqa: BLE001 - e.g. weights not pulled
        print(f"cannot build {args.model} on {args.backbone} ({e}); try --backbone tiny-random", file=sys.stderr)
        return 1
    samples = synthetic_samples(model, args.n)
    init = {k: v.detach().clone() for k, v in model.trainable_state_dict().items()}
    precisions = {"fp32": None, "bf16": torch.bfloat16}
    auto = U.autocast_dtype("auto", torch.device("cpu"))
    print(f"model {args.model} on {args.backbone}: n = {args.n} synthetic crops, batch {args.batch_size}, "
          f"{args.threads} threads, {'no cache (pixels)' if args.no_cache else 'feature cache (fp32 states)'}; "
          f"prefix_layer {model.prefix_layer} of {model.gie.num_layers} blocks")
    print(f"CPU bf16: {U.cpu_bf16_kind() or 'none (AVX2 or older)'}; --precision auto trains in "
          f"{'bf16' if auto is not None else 'fp32'} here; load average at start {load0[0]:.2f} {load0[1]:.2f} "
          f"{load0[2]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        cache = None if args.no_cache else fill_cache(model, samples, Path(tmp), args.batch_size)
        ds = dataset(samples, tx, model, cache)
        times = {k: [] for k in precisions}
        for r in range(args.epochs + 1):
            for name, amp in precisions.items():
                model.load_trainable_state_dict(init)  # every epoch starts from the same weights
                t = train_epoch(model, ds, args.batch_size, amp)
                if r:  # the first round warms up (oneDNN primitive caches)
                    times[name].append(t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    for name, v in times.items():
        print(f"  epoch {name}: {med[name]:8.2f} s  [{min(v):.2f}, {max(v):.2f}] over {len(v)} epochs  "
              f"({1000 * med[name] / args.n:.0f} ms/image)")
    print(f"  fp32 / bf16 epoch time: {med['fp32'] / med['bf16']:.2f}x")
    load1 = os.getloadavg()
    print(f"load average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
