"""Epoch time of GazeCLIP training with and without the frozen-prefix feature cache, in one run.

    .venv/bin/python benchmarks/bench_feature_cache.py                       # clip-b16-offline, n=32
    .venv/bin/python benchmarks/bench_feature_cache.py --backbone tiny-random --n 64

Both modes run the engine's own training step (collate, DDP-ready step module, AdamW, clipping)
over the same synthetic images and report the median epoch time over --epochs epochs after one
warm-up epoch. The cache is filled before timing (its one-off fill time is printed separately).
The pieces (`toy_model`, `synthetic_samples`, `train_epoch`) are shared with bench_train.py.
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

CLASSES = ("real", "gan-a", "gan-b", "diff-a")


def toy_model(model: str, backbone: str, seed: int = 0):
    """`model` on `backbone` for a 4-class taxonomy (real, two GANs, a diffusion model)."""
    from gazeclip.models import create_model
    from gazeclip.models.interface import Taxonomy

    tx = Taxonomy(CLASSES, {"real": "real", "gan-a": "gan", "gan-b": "gan", "diff-a": "diffusion"},
                  dict.fromkeys(CLASSES, "entire-synthesis") | {"real": "real"}, ("real", "diffusion", "gan"))
    torch.manual_seed(seed)
    return create_model(model, backbone=backbone, taxonomy=tx), tx


def synthetic_samples(model, n: int, seed: int = 0):
    """n random crops at the model's input size with random gaze arrays, classes cycled."""
    from gazeclip.data.dataset import SampleSet
    from gazeclip.models.interface import REGIONS
    from gazeclip.run.modeling import preprocess_of

    gd = getattr(model.config, "gaze_feature_dim", 512)
    rng = np.random.default_rng(seed)
    s = preprocess_of(model).size
    return SampleSet([f"img{i}" for i in range(n)], [CLASSES[i % 4] for i in range(n)],
                     rng.integers(0, 255, (n, s, s, 3), dtype=np.uint8),
                     rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 2)).astype(np.float32),
                     rng.normal(size=(n, gd)).astype(np.float32), np.ones(n, bool),
                     np.tile(np.array([0.2, 0.2, 0.8, 0.8], np.float32), (n, len(REGIONS), 1)), np.ones(n, np.int64))


def dataset(samples, tx, model, cache=None):
    from gazeclip.data.dataset import FaceDataset
    from gazeclip.run.modeling import preprocess_of

    ds = FaceDataset(samples, tx, preprocess_of(model), cache)
    ds.family[:] = [tx.family_index(cl) for cl in samples.classes]
    return ds


def train_epoch(model, ds, batch_size: int, amp: torch.dtype | None = None) -> float:
    """Seconds for one epoch of the trainer's own step (`step_loss`: autocast to `amp`, fp32
    master weights), AdamW and gradient clipping, over `ds` in order."""
    from torch.utils.data import DataLoader

    from gazeclip.data.dataset import collate
    from gazeclip.train.trainer import _Step, step_loss

    params = [p for p in model.parameters() if p.requires_grad]
    step = _Step(model)
    opt = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    cpu = torch.device("cpu")
    t = time.perf_counter()
    for batch, pending, _ in DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate):
        loss = step_loss(model, step, batch, pending, amp, cpu)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return time.perf_counter() - t


def fill_cache(model, samples, folder: Path, batch_size: int):
    """A feature cache of `samples` in `folder` (fp32 states stored as float16, as training does)."""
    from gazeclip.data.feature_cache import FeatureCache
    from gazeclip.run.modeling import preprocess_of, prefix_id

    pre = preprocess_of(model)
    cache = FeatureCache(folder, prefix_id(model), "float16")
    model.eval()
    cache.fill(samples.keys, lambda idx: pre(list(samples.crops[idx])), lambda x: model.encode_prefix(x),
               batch_size=batch_size)
    return cache


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

    try:
        model, tx = toy_model(args.model, args.backbone)
    except Exception as e:  # noqa: BLE001 - e.g. weights not pulled
        print(f"cannot build {args.model} on {args.backbone} ({e}); try --backbone tiny-random", file=sys.stderr)
        return 1
    n = args.n
    samples = synthetic_samples(model, n)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        cache = fill_cache(model, samples, Path(tmp), args.batch_size)
        fill = time.perf_counter() - t
        results = {}
        for mode, c in (("without cache", None), ("with cache", cache)):
            ds = dataset(samples, tx, model, c)
            train_epoch(model, ds, args.batch_size)  # warm-up
            results[mode] = statistics.median(train_epoch(model, ds, args.batch_size) for _ in range(args.epochs))
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
