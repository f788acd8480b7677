"""`gazeclip predict PATH... [--run RUN] [--json | --csv OUT | --out DIR]`: faces, p_fake, generator,
gaze; images, folders and videos; without --run, with the reference model packaged with gazeclip.

    gazeclip predict photo.jpg
    gazeclip predict photo.jpg folder/ clip.mp4 --run runs/gazeclip-p2 --json
    gazeclip predict folder/ --run runs/gazeclip-p2/export --runtime onnx --precision int8 --json
    gazeclip predict folder/ --run runs/gazeclip-p2 --runtime openvino --json     # RUN/export, bf16 where native
    {"path": "photo.jpg", "face": 0, "p_fake": 0.03, "verdict": "real", "reason": null, "generator": null,
     "generator_prob": null, "family": null, "unknown_generator": false,
     "gaze": {"pitch": -4.1, "yaw": 7.9, "arrows": [...]}, "box": [...], "head": {...}}
    {"path": "folder/coffee.png", "faces": 0}
    {"path": "folder/broken.jpg", "error": "..."}
    {"path": "clip.mp4", "frames": 16, "fps": 24.0, "duration": 19.7, "faces": 16, "p_fake": 0.2,
     "verdict": "real", "tracks": [...]}

It prints what `gazeclip.load(RUN).predict(...)` computes (inference/detector.py: one code path).
The exit code is 1 when any file could not be read (all others are still processed), 2 when no
image or video file was given or found.

`--out DIR` writes a result folder instead (inference/batch.py): the same records in
DIR/predictions.jsonl and DIR/summary.json, in one process or under
`torchrun --nproc-per-node N -m gazeclip -- predict ... --out DIR`, resumable with `--resume`; the exit
code is 0 when the job completed (unreadable files are error records, counted in summary.json).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import math
import sys
from pathlib import Path

from ..errors import GazeclipError, UsageError
from .. import safejson
from ..atomic import atomic_path, check_writable

CSV_COLUMNS = ["path", "face", "p_fake", "verdict", "reason", "generator", "generator_prob", "family",
               "unknown_generator", "gaze_pitch", "gaze_yaw", "box", "frame", "time", "track", "frames", "faces",
               "error"]


def positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"{s!r} is not a whole number of at least 1")
    return v


def positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"{s!r} is not a positive finite number")
    return v


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
    p.add_argument("paths", nargs="*", metavar="PATH", help="image and video files, and folders (searched "
                   "recursively: images; with --out images and videos)")
    p.add_argument("--files-from", metavar="LIST", help="also the files named in LIST, one path per line (for "
                   "millions of inputs: read as they are, folders not walked)")
    p.add_argument("--run", help="run folder written by `gazeclip train` (default: the reference model packaged "
                                 "with gazeclip, see `gazeclip reference show`)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    g.add_argument("--csv", metavar="OUT", help="write a CSV file")
    g.add_argument("--out", metavar="DIR", help="write a result folder: DIR/predictions.jsonl and DIR/summary.json "
                   "(in chunks; also under torchrun; see docs/engine.md)")
    p.add_argument("--resume", action="store_true", help="with --out: continue the job in DIR; inputs already done "
                   "(same path, size and modification time) are not predicted again")
    p.add_argument("--chunk", type=positive_int, default=128, help="with --out: inputs per chunk file (default 128)")
    p.add_argument("--fps", type=positive_float, help="videos: sample this many frames per second")
    p.add_argument("--frames", type=positive_int, help="videos: sample N frames spread evenly (default 16)")
    p.add_argument("--per-frame", action="store_true", help="videos: also print a record per sampled frame and face")
    p.add_argument("--device", default="auto")
    add_runtime_arguments(p)
    p.add_argument("--face-cache", help="cache folder for face/gaze records (default: none)")
    p.add_argument("--quiet", action="store_true")
    # a refused value is one line, not the usage block (every value is checked here, at parse time)
    p.error = lambda message: p.exit(2, f"gazeclip predict: {message}; see `gazeclip predict --help`\n")


def _refuse(message: str) -> int:
    print(f"gazeclip predict: {message}", file=sys.stderr)
    return 2


def runtime_options(args: argparse.Namespace) -> dict:
    """The loader options of `add_runtime_arguments` (sets torch's thread count, which onnxruntime
    and OpenVINO follow); UsageError for a precision the runtime does not have."""
    if args.threads:
        import torch

        torch.set_num_threads(max(1, args.threads))
    if args.precision == "int8" and args.runtime == "torch":
        raise UsageError("--precision int8 needs --runtime onnx (an export made with --int8) or --runtime openvino "
                         "(one made with --openvino-int8)")
    return {"precision": args.precision, "runtime": args.runtime}


def run(args: argparse.Namespace) -> int:
    from ..run.utils import dist_env
    from .detector import load
    from .files import printable_record
    from .results import describe_record
    from .predict import expand_paths
    from .video import VideoOptions

    if args.fps is not None and args.frames is not None:
        return _refuse("give --fps or --frames, not both")
    if not args.paths and not args.files_from:
        return _refuse("give image or video files or folders (PATH...), or --files-from LIST")
    if args.resume and not args.out:
        return _refuse("--resume continues a result folder: give it with --out DIR")
    if dist_env()[1] > 1 and not args.out:
        return _refuse("under torchrun, write a result folder with --out DIR (each process predicts its share)")
    # output paths are checked before anything is loaded or predicted
    if args.csv:
        check_writable(args.csv, "--csv")
    if args.out:
        check_writable(args.out, "--out", folder=True)
    options = runtime_options(args)
    if args.out:
        return _run_batch(args, options)
    det = load(args.run, args.device, face_cache=args.face_cache, **options)
    video = VideoOptions(fps=args.fps, frames=args.frames)
    paths = list(args.paths)
    if args.files_from:
        from .batch import read_files_from

        paths += read_files_from(args.files_from)
    if not expand_paths(paths):
        print(f"gazeclip predict: no image files in {', '.join(paths)}; give image or video files, or folders "
              "holding .jpg/.png/.webp/... images", file=sys.stderr)
        return 2
    failed = 0
    writer = None
    with contextlib.ExitStack() as stack:
        if args.csv:  # written to a temp file and renamed when complete: a kill leaves no half CSV
            tmp = stack.enter_context(atomic_path(args.csv))
            fh = stack.enter_context(open(tmp, "w", newline="", encoding="utf-8", errors="backslashreplace"))
            writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
        for _, rec in det.iter_records(paths, video, progress=not args.quiet and not args.json,
                                       per_frame=args.per_frame):
            failed += "error" in rec
            rec = printable_record(rec)  # a file name that is not UTF-8 is written \xNN, never lost
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


def _run_batch(args: argparse.Namespace, options: dict) -> int:
    """`--out DIR`: the result folder, in this process or as one rank of torchrun's; `options`:
    `runtime_options(args)`."""
    from ..run import utils as U
    from .batch import DIST_TIMEOUT_S, BatchOptions, run_batch
    from .detector import load
    from .video import VideoOptions

    world = U.dist_env()[1]
    U.init_distributed(U.resolve_device(args.device), timeout_s=DIST_TIMEOUT_S)
    try:
        det = load(args.run, args.device, face_cache=args.face_cache, **options)
        opts = BatchOptions(Path(args.out), VideoOptions(fps=args.fps, frames=args.frames), per_frame=args.per_frame,
                            resume=args.resume, chunk=args.chunk, progress=not args.quiet)
        result = run_batch(det, args.paths, args.files_from, opts)
    except GazeclipError as e:
        print(f"gazeclip predict: {e}", file=sys.stderr)
        return 1
    finally:
        U.close_distributed()
    if result is None:  # a rank other than 0 (rank 0 reports, and says why when it refused the folder)
        return 0
    s, run_ = result.summary, result.summary["this_run"]
    rate = f" at {run_['files_per_s']:.2f} files/s" if run_["files_per_s"] else ""
    if not args.quiet:
        print(f"{args.out}: {s['inputs']} input(s), {s['errors']['files']} unreadable; {run_['predicted']} predicted"
              f"{rate} by {world} process(es), {run_['skipped_done']} already done; predictions.jsonl, summary.json")
    return 0
