"""`gazeclip export --run RUN [--out DIR] [--int8] [--openvino-int8]`: the trained model as ONNX for
onnxruntime and OpenVINO.

    gazeclip export --run runs/gazeclip-p2 --int8          # -> runs/gazeclip-p2/export/
    gazeclip predict photos/ --run runs/gazeclip-p2 --runtime onnx --json
    gazeclip export --run runs/gazeclip-p2 --openvino-int8 # + export/openvino-int8/ (NNCF, val-calibrated)
    gazeclip predict photos/ --run runs/gazeclip-p2 --runtime openvino --json

DIR gets model.onnx (fp32), model.int8.onnx (with --int8), export.json (inputs, outputs,
preprocessing, the sha256 of every file, each file's error vs torch measured on the run's
validation faces) and the run's config.yaml, taxonomy.json and calibration.json. int8 is what
`--runtime onnx` uses by default only when it changed no verdict and no generator there.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder written by `gazeclip train`")
    p.add_argument("--out", help="export folder (default: RUN/export)")
    p.add_argument("--int8", action="store_true", help="also write model.int8.onnx (onnxruntime dynamic quantisation)")
    p.add_argument("--openvino-int8", action="store_true",
                   help="also write openvino-int8/ (NNCF int8 for --runtime openvino, calibrated on the run's "
                        "validation split; needs `pip install nncf==3.4.0`); on an existing export without --force, "
                        "only this is (re)made")
    p.add_argument("--calibration-items", type=int, default=300,
                   help="--openvino-int8: validation faces to calibrate on (default 300, or all there are)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18, the least --runtime openvino reads "
                                                         "right)")
    p.add_argument("--data", help="dataset whose validation faces measure each file against torch, and calibrate "
                                  "--openvino-int8 (default: the run's data folder); int8 becomes the onnx default "
                                  "only if it changes no verdict there")


def run(args: argparse.Namespace) -> int:
    from .exporter import export_run

    out = Path(args.out) if args.out else Path(args.run) / "export"
    only_int8 = args.openvino_int8 and (out / "export.json").is_file() and not (args.force or args.int8)
    if not only_int8:
        meta = export_run(args.run, out, int8=args.int8, force=args.force, opset=args.opset, data=args.data)
        q = meta["quality"]
        for prec, fname in meta["files"].items():
            size = (out / fname).stat().st_size / 2**20
            if q["measured"]:
                m = q[prec]
                print(f"{out / fname}: {size:.1f} MiB, {prec}; on {q['n_faces']} faces ({q['on']}): max |p_fake - torch| "
                      f"{m['max_abs_p_fake_vs_torch']:.4f}, {m['verdicts_changed']} verdicts and "
                      f"{m['generators_changed']} generators changed")
            else:
                print(f"{out / fname}: {size:.1f} MiB, {prec}; quality not measured: {q['why']}")
        print(f"--runtime onnx uses {meta['default_precision']} unless --precision says otherwise")
        print(f"inputs: {', '.join(meta['inputs'])}; outputs: {', '.join(meta['outputs'])}")
    if args.openvino_int8:
        from .openvino_int8 import INT8_DIR, quantize_openvino_int8

        q = quantize_openvino_int8(out, args.data, args.calibration_items)
        par = q["parity_on_calibration_items"]
        print(f"{out / INT8_DIR}: NNCF int8 calibrated on {q['calibration']['items']} validation faces; vs fp32 on "
              f"them: max |p_fake diff| {par['max_abs_p_fake_diff_vs_fp32']:.3f}, argmax agreement "
              f"{par['argmax_agreement']:.1%}")
    return 0
