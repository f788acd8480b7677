"""`gazeclip explain IMAGE --run RUN --out PNG [--face K] [--block B]`: Grad-CAM of the predicted
class on the image tower, overlaid on the face (the paper's Figure 6)."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="image file")
    p.add_argument("--run", required=True, help="run folder written by `gazeclip train`")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--face", type=int, default=0, help="which face (largest first; default 0)")
    p.add_argument("--block", type=int, default=-2,
                   help="image block whose output is explained (default -2: the input of the last block)")
    p.add_argument("--target", help="class to explain instead of the predicted one")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from ..run.loader import load_run
    from .explain import explain

    r = load_run(args.run, args.device)
    info = explain(r, args.image, args.out, args.face, args.block, args.target)
    print(f"{info['path']}: {info['class']} ({info['prob']:.2f}), p_fake {info['p_fake']:.3f} -> {info['out']}")
    return 0
