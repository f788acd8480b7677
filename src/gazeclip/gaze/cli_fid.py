"""`gazeclip gaze-fid --data DIR --out OUT`: Fréchet distance between the gaze distribution of
the real class and that of each generator (3-D gaze vectors and estimator features), with
bootstrap intervals; writes OUT/gaze_fid.json and OUT/gaze_fid.png."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import GazeclipError
from .. import safejson
from ..atomic import atomic_write_text



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset folder: DIR/<class>/*.png|jpg, or with DIR/manifest.csv")
    p.add_argument("--out", required=True, help="output folder (gaze_fid.json, gaze_fid.png)")
    p.add_argument("--real", default="real", help="name of the real class")
    p.add_argument("--split", help="only rows of this split (when a manifest is present)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the intervals (0: none)")
    p.add_argument("--feature-dims", type=int, default=64, help="PCA dimensions of the features (0: all)")
    p.add_argument("--max-per-class", type=int, default=0, help="use at most this many images per class (0: all)")
    p.add_argument("--estimator", default="ethxgaze-r18")
    p.add_argument("--checkpoint")
    p.add_argument("--cache", help="face/gaze cache folder (default $GAZECLIP_HOME/facegaze; 'none' to disable)")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from ..data.manifest import list_dataset
    from ..weights import home
    from .estimators import create_estimator
    from .fid import gaze_fid, plot_report
    from .pipeline import iter_analyze

    data = Path(args.data)
    if not data.is_dir():
        print(f"gazeclip gaze-fid: {data}: not a folder; pass a dataset folder laid out as DIR/<class>/*.png",
              file=sys.stderr)
        return 2
    items = list_dataset(data, args.split)
    if args.max_per_class > 0:
        rng = np.random.default_rng(args.seed)
        by: dict[str, list] = {}
        for it in items:
            by.setdefault(it[1], []).append(it)
        items = [it for c in sorted(by) for it in
                 [by[c][i] for i in sorted(rng.permutation(len(by[c]))[: args.max_per_class])]]
    classes = sorted({c for _, c in items})
    if args.real not in classes:
        print(f"gazeclip gaze-fid: {data}: no images of the real class {args.real!r} (classes: {classes}); "
              "use --real NAME", file=sys.stderr)
        return 2
    try:
        estimator = create_estimator(args.estimator, checkpoint=args.checkpoint)
    except GazeclipError as e:
        print(f"gazeclip gaze-fid: {e}", file=sys.stderr)
        return 2
    cache = None if (args.cache or "").lower() == "none" else (args.cache or str(home() / "facegaze"))
    vectors: dict[str, list] = {c: [] for c in classes}
    feats: dict[str, list] = {c: [] for c in classes}
    errors, no_face = [], {c: 0 for c in classes}
    cls_of = dict(items)
    for imf in iter_analyze([p for p, _ in items], estimator=estimator, cache_dir=cache, progress=True):
        c = cls_of[imf.path]
        if imf.error:
            errors.append(imf.error)
            print(f"gazeclip gaze-fid: {imf.error}", file=sys.stderr)
            continue
        g = imf.faces[0].gaze if imf.faces else None  # the largest face of each image
        if g is None:
            no_face[c] += 1
            continue
        vectors[c].append(np.asarray(g.vector, np.float64))
        feats[c].append(np.asarray(g.features, np.float64))
    v = {c: np.array(x).reshape(-1, 3) for c, x in vectors.items()}
    f = {c: np.array(x).reshape(len(x), -1) if x else np.zeros((0, estimator.feature_dim)) for c, x in feats.items()}
    try:
        rep = gaze_fid(v, f, real=args.real, n_boot=args.bootstrap, feature_dims=args.feature_dims, seed=args.seed,
                       estimator=args.estimator)
    except ValueError as e:
        print(f"gazeclip gaze-fid: {data}: {e}", file=sys.stderr)
        return 1
    rep.errors, rep.no_face = errors, {c: n for c, n in no_face.items() if n}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "gaze_fid.json", safejson.dumps(rep.to_dict(), indent=1))
    plot_report(rep, out / "gaze_fid.png")
    print(f"{'class':24s} {'n':>5s}  {'FID(vector)':>12s} {'95% CI':>19s}  {'FID(features)':>13s} {'95% CI':>19s}")
    for rv, rf in zip(rep.vector, rep.features):
        print(f"{rv.cls:24s} {rv.n:5d}  {rv.fid:12.4f} [{rv.ci_low:8.4f},{rv.ci_high:8.4f}]  "
              f"{rf.fid:13.3f} [{rf.ci_low:8.3f},{rf.ci_high:8.3f}]")
    for c, why in rep.skipped.items():
        print(f"{c:24s} skipped: {why}")
    print(f"wrote {out / 'gaze_fid.json'} and {out / 'gaze_fid.png'}")
    return 1 if errors else 0
