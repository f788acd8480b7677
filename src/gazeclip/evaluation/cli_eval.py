"""`gazeclip eval --run RUN --data DIR [--protocol P] [--out DIR] [--runtime onnx|openvino --precision P]`:
metrics.json, report.md, PNGs."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .metrics import K_ESTIMATORS

    p.add_argument("--run", required=True, help="run folder written by `gazeclip train`")
    p.add_argument("--data", required=True, help="dataset folder (manifest.csv, protocols.yaml)")
    p.add_argument("--protocol", help="protocol (default: the run's)")
    p.add_argument("--out", help="output folder (default: RUN/eval)")
    p.add_argument("--device", default="auto")
    p.add_argument("--runtime", choices=("torch", "onnx", "openvino"), default="torch",
                   help="onnx: evaluate the run's ONNX export (RUN or RUN/export) under onnxruntime; openvino: the "
                        "same export compiled by OpenVINO")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32", "int8"),
                   help="default: the model as trained (fp32); bf16 evaluates the inference copy in bf16; "
                        "with --runtime onnx: fp32 or int8 (default: int8 when exported); with --runtime openvino: "
                        "bf16 or fp32 (default: bf16 on CPUs with native bf16)")
    p.add_argument("--k-estimator", choices=K_ESTIMATORS, default=K_ESTIMATORS[0],
                   help="how the number of unseen generators is estimated for n_clusters_estimated / "
                        "cluster_acc_unseen_estk (default: gap, the gap statistic; silhouette: the earlier estimate)")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ..run.loader import load_run
    from .evaluate import evaluate, fmt
    from .metrics import HEADLINE

    run_ = None
    if args.runtime != "torch" or args.precision is not None:
        run_ = load_run(args.run, args.device, precision=args.precision, runtime=args.runtime,
                        calibrated=args.runtime != "torch")  # an export is calibrated when made
    m = evaluate(args.run, args.data, args.protocol, args.out, args.device, progress=not args.quiet, run=run_,
                 k_estimator=args.k_estimator)
    print(f"n_test {m['n_test']}  " + "  ".join(f"{k} {fmt(m.get(k))}" for k in HEADLINE))
    print(f"wrote {args.out or args.run + '/eval'}/metrics.json, report.md, confusion.png, roc.png")
    return 0
