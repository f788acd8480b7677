"""`gazeclip gaze IMAGE... [--json] [--draw OUT.png]`: faces, head pose and gaze per image."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..errors import GazeclipError
from .. import safejson
from ..common import IMAGE_EXTS, WRITE_EXTS


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .estimators import describe_estimators

    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders (searched for images)")
    p.add_argument("--json", action="store_true", help="one JSON object per line per image (schema in docs/faces-gaze.md)")
    p.add_argument("--draw", metavar="OUT.png",
                   help="draw boxes, head direction and gaze arrows; with several images OUT is a folder "
                        "(or OUT_<image>.png next to OUT when OUT has an image suffix)")
    names = ", ".join(f"{k} ({v})" for k, v in describe_estimators().items())
    p.add_argument("--estimator", default="ethxgaze-r18", help=f"gaze estimator: {names}")
    p.add_argument("--checkpoint", help="weights file for the estimator (ethxgaze-ckpt needs one)")
    p.add_argument("--flip-tta", action="store_true",
                   help="average the estimate on each face and its mirror image (2x slower, mirror-exact yaw)")
    p.add_argument("--max-faces", type=int, default=8, help="most faces per image (largest first)")
    p.add_argument("--margin", type=float, default=None, help="CLIP crop margin per side, fraction of the face box")
    p.add_argument("--fallback", choices=("retinaface", "always", "none"), default="retinaface",
                   help="RetinaFace when MediaPipe finds nothing (default), always, or never")
    p.add_argument("--cache", metavar="DIR", help="content-hash cache folder for per-image results")
    p.add_argument("--landmarks", action="store_true", help="include all landmarks in --json output")
    p.add_argument("--device", default="cpu", help="torch device of the estimator")


def expand_inputs(items: list[str]) -> list[str]:
    """Folders become their image files (sorted; broken links kept, to be reported by name); files
    stay as given, even bad ones (reported later)."""
    from ..faces.io import find_images

    return find_images(items, IMAGE_EXTS)


def draw_target(out: str, image: str, n_images: int, used: set[str] | None = None) -> Path:
    """Where the drawing of `image` goes; names already in `used` get a numeric suffix."""
    o = Path(out)
    if n_images == 1 and o.suffix.lower() in WRITE_EXTS:
        return o
    stem = Path(image).stem
    for k in range(1, 10_000):
        name = stem if k == 1 else f"{stem}-{k}"
        if o.suffix.lower() in WRITE_EXTS:
            target = o.with_name(f"{o.stem}_{name}{o.suffix}")
        else:
            target = o / f"{name}_gaze.png"
        if used is None or str(target) not in used:
            break
    if used is not None:
        used.add(str(target))
    return target


def _human(imf) -> str:
    if imf.error:
        return f"{imf.path}: ERROR {imf.error}"
    lines = [f"{imf.path}: {len(imf.faces)} face(s)" + (f" in {imf.size[0]}x{imf.size[1]}" if imf.size else "")]
    for i, fg in enumerate(imf.faces):
        f, g = fg.face, fg.gaze
        s = f"  face {i}: box ({f.box[0]:.0f},{f.box[1]:.0f})-({f.box[2]:.0f},{f.box[3]:.0f}) score {f.score:.2f} [{f.detector}]"
        if f.head is not None:
            s += (f"  head pitch {math.degrees(f.head.pitch):+.1f} yaw {math.degrees(f.head.yaw):+.1f} "
                  f"roll {math.degrees(f.head.roll):+.1f} deg")
        if g is not None:
            s += (f"  gaze pitch {math.degrees(g.pitch):+.1f} yaw {math.degrees(g.yaw):+.1f} deg "
                  f"vector ({g.vector[0]:+.2f},{g.vector[1]:+.2f},{g.vector[2]:+.2f})")
        lines.append(s)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..faces import DEFAULT_MARGIN, FaceAnalyzer, load_image
    from .draw import draw_gaze, write_image_atomic
    from .estimators import create_estimator
    from .pipeline import iter_analyze
    from .serialize import to_json_dict

    paths = expand_inputs(args.images)
    if not paths:
        print("gazeclip gaze: no images found in the given folders", file=sys.stderr)
        return 2
    try:
        kw = {"device": args.device}
        if args.flip_tta:
            kw["flip_tta"] = True
        estimator = create_estimator(args.estimator, checkpoint=args.checkpoint, **kw)
    except GazeclipError as e:
        print(f"gazeclip gaze: {e}", file=sys.stderr)
        return 2
    analyzer = FaceAnalyzer(max_faces=args.max_faces, fallback=args.fallback,
                            margin=DEFAULT_MARGIN if args.margin is None else args.margin)
    failed = 0
    used: set[str] = set()
    for imf in iter_analyze(paths, analyzer, estimator, cache_dir=args.cache):
        if imf.error:
            failed += 1
        if args.json:
            print(safejson.dumps(to_json_dict(imf, landmarks=args.landmarks)), flush=True)
        elif not imf.error:
            print(_human(imf), flush=True)
        if imf.error:
            print(f"gazeclip gaze: {imf.error}", file=sys.stderr)
        if args.draw and not imf.error:
            target = draw_target(args.draw, imf.path, len(paths), used)
            try:
                write_image_atomic(target, draw_gaze(load_image(imf.path), imf))
            except OSError as e:
                print(f"gazeclip gaze: {target}: cannot write the drawing ({e}); check the folder is writable",
                      file=sys.stderr)
                failed += 1
            else:
                if not args.json:
                    print(f"  drawn: {target}")
    analyzer.close()
    if failed:
        print(f"gazeclip gaze: {failed} of {len(paths)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0
