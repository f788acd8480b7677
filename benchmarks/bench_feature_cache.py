"""Epoch time of GazeCLIP training with and without the frozen-prefix feature cache, in one run.

    .venv/bin/python benchmarks/bench_feature_cache.py                       # clip-b16-offline, n=32
    .venv/bin/python benchmarks/bench_feature_cache.py --backbone tiny-random --n 64

Both modes run the engine's own training step (collate, DDP-ready step module, AdamW, clipping)
over the same synthetic images and report the median epoch time over --epochs epochs after one
warm-up epoch. The cache is filled before timing (its one-off fill time is printed separately).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="clip-b16-offline")
    ap.add_argument("--model", default="gazeclip")
    ap.add_argument("--n", type=int, default=32, help="training images")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per mode (after one warm-up epoch)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from torch.utils.data import DataLoader

    from gazeclip.data.dataset import FaceDataset, SampleSet, collate
    from gazeclip.data.feature_cache import FeatureCache
    from gazeclip.run.modeling import fill_pending, prefix_id
    from gazeclip.train.trainer import _Step
    from gazeclip.models import create_model
    from gazeclip.models.interface import REGIONS, Taxonomy

    classes = ("real", "gan-a", "gan-b", "diff-a")
    tx = Taxonomy(classes, {"real": "real", "gan-a": "gan", "gan-b": "gan", "diff-a": "diffusion"},
                  dict.fromkeys(classes, "entire-synthesis") | {"real": "real"}, ("real", "diffusion", "gan"))
    torch.manual_seed(0)
    try:
        model = create_model(args.model, backbone=args.backbone, taxonomy=tx)
    except Exception as e:  # noqa: BLE001 - e.g. weights not pulled
        print(f"cannot build {args.model} on {args.backbone} ({e}); try --backbone tiny-random", file=sys.stderr)
        return 1
    pre = model.preprocess
    gd = getattr(model.config, "gaze_feature_dim", 512)
    rng = np.random.default_rng(0)
    n, s = args.n, pre.size
    samples = SampleSet([f"img{i}" for i in range(n)], [classes[i % 4] for i in range(n)],
                        rng.integers(0, 255, (n, s, s, 3), dtype=np.uint8),
                        rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 2)).astype(np.float32),
                        rng.normal(size=(n, gd)).astype(np.float32), np.ones(n, bool),
                        np.tile(np.array([0.2, 0.2, 0.8, 0.8], np.float32), (n, len(REGIONS), 1)), np.ones(n, np.int64))
    params = [p for p in model.parameters() if p.requires_grad]
    step = _Step(model)

    def epoch(ds) -> float:
        opt = torch.optim.AdamW(params, lr=1e-4)
        model.train()
        t = time.perf_counter()
        for batch, pending, _ in DataLoader(ds, batch_size=args.batch_size, shuffle=False, collate_fn=collate):
            fill_pending(model, batch, pending)
            _, losses = step(batch)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        return time.perf_counter() - t

    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(Path(tmp), prefix_id(model), "float16")
        t = time.perf_counter()
        model.eval()
        cache.fill(samples.keys, lambda idx: pre(list(samples.crops[idx])), lambda x: model.encode_prefix(x),
                   batch_size=args.batch_size)
        fill = time.perf_counter() - t
        results = {}
        for mode, c in (("without cache", None), ("with cache", cache)):
            ds = FaceDataset(samples, tx, pre, c)
            ds.family[:] = [tx.family_index(cl) for cl in samples.classes]
            epoch(ds)  # warm-up
            results[mode] = statistics.median(epoch(ds) for _ in range(args.epochs))
        disk = sum(p.stat().st_size for p in Path(tmp).rglob("*.npy"))
    w, c = results["without cache"], results["with cache"]
    print(f"model {args.model} on {args.backbone}: prefix_layer {model.prefix_layer} of "
          f"{model.gie.num_layers} blocks; n = {n} images, batch {args.batch_size}, {args.threads} threads")
    print(f"cache fill (once):      {fill:8.2f} s  ({disk / n / 1024:.0f} KiB per image on disk, float16)")
    print(f"epoch without cache:    {w:8.2f} s  ({1000 * w / n:.0f} ms/image)")
    print(f"epoch with cache:       {c:8.2f} s  ({1000 * c / n:.0f} ms/image)")
    print(f"speed-up:               {w / c:8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
