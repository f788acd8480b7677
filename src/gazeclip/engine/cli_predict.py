"""`gazeclip predict PATH... --run RUN [--json | --csv OUT]`: faces, p_fake, generator, gaze.

    gazeclip predict photo.jpg folder/ --run runs/gazeclip-p2 --json
    {"path": "photo.jpg", "face": 0, "p_fake": 0.03, "generator": "real", "generator_prob": 0.95,
     "family": "real", "unknown_generator": false, "gaze": {"pitch": -4.1, "yaw": 7.9}}
    {"path": "folder/coffee.png", "faces": 0}
    {"path": "folder/broken.jpg", "error": "..."}

The exit code is 1 when any file could not be read (all others are still processed), 2 when no
image file was given or found.
"""
from __future__ import annotations

import argparse
import csv
import sys

from .. import safejson

CSV_COLUMNS = ["path", "face", "p_fake", "generator", "generator_prob", "family", "unknown_generator",
               "gaze_pitch", "gaze_yaw", "faces", "error"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders (searched recursively)")
    p.add_argument("--run", required=True, help="run folder written by `gazeclip train`")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    g.add_argument("--csv", metavar="OUT", help="write a CSV file")
    p.add_argument("--device", default="auto")
    p.add_argument("--face-cache", help="cache folder for face/gaze records (default: none)")
    p.add_argument("--quiet", action="store_true")


def _human(rec: dict) -> str:
    if "error" in rec:
        face = f" face {rec['face']}" if "face" in rec else ""
        return f"{rec['path']}{face}: ERROR {rec['error']}"
    if rec.get("faces") == 0:
        return f"{rec['path']}: no face"
    g = rec["gaze"]
    gz = f"gaze pitch {g['pitch']:+.1f} yaw {g['yaw']:+.1f} deg" if g else "gaze n/a"
    unk = " (unknown generator)" if rec["unknown_generator"] else ""
    return (f"{rec['path']} face {rec['face']}: p_fake {rec['p_fake']:.3f}  {rec['generator']} "
            f"({rec['generator_prob']:.2f}, {rec['family']}){unk}  {gz}")


def run(args: argparse.Namespace) -> int:
    from .evaluate import load_run
    from .predict import expand_paths, predict_paths

    try:
        run_ = load_run(args.run, args.device)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"gazeclip predict: {e}", file=sys.stderr)
        return 1
    files = expand_paths(args.paths)
    if not files:
        print(f"gazeclip predict: no image files in {', '.join(args.paths)}; give image files, or folders holding "
              ".jpg/.png/.webp/... images", file=sys.stderr)
        return 2
    failed = 0
    writer = fh = None
    if args.csv:
        fh = open(args.csv, "w", newline="")
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
    try:
        for rec in predict_paths(run_, files, face_cache_dir=args.face_cache,
                                 progress=not args.quiet and not args.json):
            failed += "error" in rec
            if args.json:
                print(safejson.dumps(rec), flush=True)
            elif writer is not None:
                flat = {k: v for k, v in rec.items() if k != "gaze"}
                if rec.get("gaze"):
                    flat["gaze_pitch"], flat["gaze_yaw"] = rec["gaze"]["pitch"], rec["gaze"]["yaw"]
                writer.writerow(flat)
            else:
                print(_human(rec), flush=True)
            if "error" in rec and not args.json:
                print(f"gazeclip predict: {rec['path']}: {rec['error']}", file=sys.stderr)
    finally:
        if fh is not None:
            fh.close()
    return 1 if failed else 0
