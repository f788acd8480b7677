"""`gazeclip predict PATH... --run RUN [--json | --csv OUT]`: faces, p_fake, generator, gaze;
images, folders and videos.

    gazeclip predict photo.jpg folder/ clip.mp4 --run runs/gazeclip-p2 --json
    gazeclip predict folder/ --run runs/gazeclip-p2/export --runtime onnx --precision int8 --json
    gazeclip predict folder/ --run runs/gazeclip-p2 --runtime openvino --json     # RUN/export, bf16 where native
    {"path": "photo.jpg", "face": 0, "p_fake": 0.03, "verdict": "real", "generator": null,
     "generator_prob": null, "family": null, "unknown_generator": false,
     "gaze": {"pitch": -4.1, "yaw": 7.9, "arrows": [...]}, "box": [...], "head": {...}}
    {"path": "folder/coffee.png", "faces": 0}
    {"path": "folder/broken.jpg", "error": "..."}
    {"path": "clip.mp4", "frames": 16, "fps": 24.0, "duration": 19.7, "faces": 16, "p_fake": 0.2,
     "verdict": "real", "tracks": [...]}

It prints what `gazeclip.load(RUN).predict(...)` computes (engine/detector.py: one code path).
The exit code is 1 when any file could not be read (all others are still processed), 2 when no
image or video file was given or found.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import sys

from .. import safejson
from ..atomic import atomic_path

CSV_COLUMNS = ["path", "face", "p_fake", "verdict", "generator", "generator_prob", "family", "unknown_generator",
               "gaze_pitch", "gaze_yaw", "box", "frame", "time", "track", "frames", "faces", "error"]


def add_runtime_arguments(p: argparse.ArgumentParser) -> None:
    """--runtime, --precision and --threads (predict and serve)."""
    p.add_argument("--runtime", choices=("torch", "onnx", "openvino"), default="torch",
                   help="torch (default); onnx: the run's ONNX export under onnxruntime; openvino: the same export "
                        "compiled by OpenVINO (RUN or RUN/export, written by `gazeclip export`)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32", "int8"), default="auto",
                   help="auto (default): bf16 on CPUs with native bf16 (AMX / AVX512-BF16) and bf16-capable GPUs, "
                        "else fp32; with --runtime onnx or openvino, int8 when exported (--int8, --openvino-int8)")
    p.add_argument("--threads", type=int, help="CPU threads of torch, onnxruntime and OpenVINO (default: torch's, "
                   "one per core; on a machine shared with other jobs fewer threads can be faster)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders (searched recursively)")
    p.add_argument("--run", required=True, help="run folder written by `gazeclip train`")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    g.add_argument("--csv", metavar="OUT", help="write a CSV file")
    p.add_argument("--fps", type=float, help="videos: sample this many frames per second")
    p.add_argument("--frames", type=int, help="videos: sample N frames spread evenly (default 16)")
    p.add_argument("--per-frame", action="store_true", help="videos: also print a record per sampled frame and face")
    p.add_argument("--device", default="auto")
    add_runtime_arguments(p)
    p.add_argument("--face-cache", help="cache folder for face/gaze records (default: none)")
    p.add_argument("--quiet", action="store_true")


def runtime_options(args: argparse.Namespace) -> dict:
    """The loader options of `add_runtime_arguments` (sets torch's thread count, which onnxruntime
    and OpenVINO follow); ValueError for a precision the runtime does not have."""
    if args.threads:
        import torch

        torch.set_num_threads(max(1, args.threads))
    if args.precision == "int8" and args.runtime == "torch":
        raise ValueError("--precision int8 needs --runtime onnx (an export made with --int8) or --runtime openvino "
                         "(one made with --openvino-int8)")
    return {"precision": args.precision, "runtime": args.runtime}


def run(args: argparse.Namespace) -> int:
    from .detector import load
    from .results import describe_record
    from .predict import expand_paths
    from .video import VideoOptions

    if args.fps is not None and args.frames is not None:
        print("gazeclip predict: give --fps or --frames, not both", file=sys.stderr)
        return 2
    try:
        det = load(args.run, args.device, face_cache=args.face_cache, **runtime_options(args))
        video = VideoOptions(fps=args.fps, frames=args.frames)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"gazeclip predict: {e}", file=sys.stderr)
        return 1
    if not expand_paths(args.paths):
        print(f"gazeclip predict: no image files in {', '.join(args.paths)}; give image or video files, or folders "
              "holding .jpg/.png/.webp/... images", file=sys.stderr)
        return 2
    failed = 0
    writer = None
    with contextlib.ExitStack() as stack:
        if args.csv:  # written to a temp file and renamed when complete: a kill leaves no half CSV
            tmp = stack.enter_context(atomic_path(args.csv))
            fh = stack.enter_context(open(tmp, "w", newline=""))
            writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
        for _, rec in det.iter_records(args.paths, video, progress=not args.quiet and not args.json,
                                       per_frame=args.per_frame):
            failed += "error" in rec
            if args.json:
                print(safejson.dumps(rec), flush=True)
            elif writer is not None:
                flat = {k: v for k, v in rec.items() if k != "gaze"}
                if rec.get("gaze"):
                    flat["gaze_pitch"], flat["gaze_yaw"] = rec["gaze"]["pitch"], rec["gaze"]["yaw"]
                writer.writerow(flat)
            else:
                print(describe_record(rec), flush=True)
            if "error" in rec and not args.json:
                print(f"gazeclip predict: {rec['path']}: {rec['error']}", file=sys.stderr)
    return 1 if failed else 0
