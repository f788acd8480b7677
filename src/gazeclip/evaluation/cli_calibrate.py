"""`gazeclip calibrate --run RUN [--data DIR]`: (re)compute RUN/calibration.json, the detection and
unknown-generator thresholds, on the validation split of the data the run was trained on (default:
the `data` folder its config.yaml records). The fix for a run whose calibration is missing or was
written by an older gazeclip, which every other command refuses rather than defaulting to 0.5."""
from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder written by `gazeclip train`")
    p.add_argument("--data", help="dataset folder the run was trained on (default: the one in RUN/config.yaml)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ..run.folder import read_run_yaml
    from ..run.loader import load_run
    from .evaluate import recalibrate

    data = args.data or read_run_yaml(args.run).get("data")
    if not data:
        print(f"gazeclip calibrate: {args.run}/config.yaml records no data folder; pass --data DIR "
              "(the dataset the run was trained on)", file=sys.stderr)
        return 1
    rec = recalibrate(load_run(args.run, args.device, calibrated=False), data, progress=not args.quiet)
    print(f"wrote {args.run}/calibration.json: detection threshold {rec['detection_threshold']:.4f} "
          f"({rec['detection_rule']}), unknown threshold {rec['unknown_threshold']:.4f} "
          f"(on {rec['detection_n_real']} real and {rec['detection_n_fake']} fake validation faces)")
    return 0
