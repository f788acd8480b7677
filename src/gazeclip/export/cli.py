"""`gazeclip export --run RUN [--out DIR] [--int8]`: the trained model as ONNX for onnxruntime.

    gazeclip export --run runs/gazeclip-p2 --int8          # -> runs/gazeclip-p2/export/
    gazeclip predict photos/ --run runs/gazeclip-p2 --runtime onnx --json

DIR gets model.onnx (fp32), model.int8.onnx (with --int8), export.json (inputs, outputs,
preprocessing, parity vs torch measured at export) and the run's config.yaml, taxonomy.json and
calibration.json (classes, families, unknown-generator threshold).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder written by `gazeclip train`")
    p.add_argument("--out", help="export folder (default: RUN/export)")
    p.add_argument("--int8", action="store_true", help="also write model.int8.onnx (onnxruntime dynamic quantisation)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18, the least --runtime openvino reads "
                                                         "right)")


def run(args: argparse.Namespace) -> int:
    from .exporter import export_run

    out = Path(args.out) if args.out else Path(args.run) / "export"
    try:
        meta = export_run(args.run, out, int8=args.int8, force=args.force, opset=args.opset)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as e:
        print(f"gazeclip export: {e}", file=sys.stderr)
        return 1
    for prec, fname in meta["files"].items():
        size = (out / fname).stat().st_size / 2**20
        d = meta["parity_max_abs_diff_vs_torch"][prec]
        print(f"{out / fname}: {size:.1f} MiB, {prec}; max |logit - torch| {d['attribution_logits']:.2e}, "
              f"max |p_fake - torch| {d['p_fake']:.2e} on the export check batch")
    print(f"inputs: {', '.join(meta['inputs'])}; outputs: {', '.join(meta['outputs'])}")
    return 0
