"""`gazeclip demo`: what `make demo` runs.

1. encode a shipped real photo with the three pretrained networks (image tower, text tower, gaze
   estimator) and print what came out;
2. build the smoke benchmark and predict with the reference model packaged with gazeclip on real
   photos and on the benchmark's fakes (`predict_with_reference`);
3. with `--train`, or when no reference model is packaged yet: train GazeCLIP and
   `clip-linear-probe` on protocol P2 of the smoke benchmark, evaluate and compare them, and
   predict on a real photo and a generated face with the smoke model (`run_demo` below).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import GazeclipError

MODELS = ("gazeclip", "clip-linear-probe")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--data", default=None, help="use this benchmark folder instead of building one")
    p.add_argument("--preset", default="smoke", help="benchmark preset to build (default: smoke)")
    p.add_argument("--backbone", default="clip-b16-offline", help="backbone (default: clip-b16-offline)")
    p.add_argument("--epochs", type=int, default=4, help="training epochs per model (default: 4)")
    p.add_argument("--encode-only", action="store_true", help="only step 1: encode a real photo and stop")
    p.add_argument("--train", action="store_true",
                   help="also train and compare smoke models (always done when no reference model is packaged)")


def encode_real_photo(backbone_name: str = "clip-b16-offline") -> None:
    """Step 1: the pretrained networks on a real photo (public-domain NASA portrait)."""
    import torch

    from .faces import FaceAnalyzer, load_image
    from .gaze import create_estimator
    from .models.backbones import create_backbone
    from .weights import asset_path

    t0 = time.time()
    path = asset_path("photo-astronaut")
    image = load_image(path)
    faces = FaceAnalyzer().detect(image)
    print(f"== 1. encoding {path.name} ({image.shape[1]}x{image.shape[0]}): {len(faces)} face(s)")
    if not faces:
        raise GazeclipError(f"{path}: no face found in the shipped photo; run `gazeclip weights verify`")
    face = faces[0]
    gaze = create_estimator("ethxgaze-r18").estimate([face])[0]
    bb = create_backbone(backbone_name)
    with torch.no_grad():
        img = bb.image_tower(pixel_values=bb.preprocess([face.clip_crop])).image_embeds[0]
        prompts = ["a photo of a real human face", "a face synthesised by a generative adversarial network"]
        _, txt = bb.text_tower(**bb.tokenize(prompts))
    x0, y0, x1, y1 = face.box
    head = face.head
    print(f"   face box ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}), score {face.score:.2f}, "
          f"{len(face.landmarks)} landmarks ({face.detector})")
    if head is not None:
        print(f"   head pose  pitch {head.pitch * 57.2958:+.1f}°  yaw {head.yaw * 57.2958:+.1f}°  "
              f"roll {head.roll * 57.2958:+.1f}°")
    if gaze is not None:
        v = gaze.vector
        print(f"   gaze (ETH-XGaze ResNet-18)  pitch {gaze.pitch * 57.2958:+.1f}°  yaw {gaze.yaw * 57.2958:+.1f}°  "
              f"vector ({v[0]:+.2f}, {v[1]:+.2f}, {v[2]:+.2f}), {gaze.features.shape[0]} features")
    print(f"   CLIP ViT-B/16 image embedding: {tuple(img.shape)}, norm {img.norm():.2f}, "
          f"first values {[round(float(a), 3) for a in img[:4]]}")
    for p, t in zip(prompts, txt):
        print(f"   MiniLM text embedding of {p!r}: {tuple(t.shape)}, norm {t.norm():.2f}")
    print(f"   ({time.time() - t0:.1f} s)")


def run(args: argparse.Namespace) -> int:
    encode_real_photo(args.backbone)
    if args.encode_only:
        return 0
    return run_demo(out=args.out, data=args.data, preset=args.preset, backbone=args.backbone, epochs=args.epochs,
                    train=args.train)

def _step(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def run_demo(out: str | Path = "demo-out", data: str | Path | None = None, preset: str = "smoke",
             backbone: str = "clip-b16-offline", epochs: int = 4, protocol: str = "P2", n_boot: int = 500,
             train: bool = False) -> int:
    from .run.reference import NoReferenceError, reference_dir
    from .weights import status

    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    missing = [r for r in status() if not r.present]
    if missing:
        print("demo: pretrained weights missing: run `gazeclip weights pull` (or `make weights`) first")
        return 1
    try:
        try:
            reference = reference_dir()  # checked against its pinned sha256; a damaged one is an error
        except NoReferenceError:
            reference = None
            print("\ndemo: no reference model is packaged with this gazeclip yet (`gazeclip reference show`), so "
                  "the demo trains smoke models instead (the `--train` steps; their scores mean little)", flush=True)
        data = Path(data) if data else out / f"bench-{preset}"
        if not (data / "manifest.csv").is_file():
            _step(f"building the {preset} benchmark into {data}")
            _build_benchmark(data, preset)
        if reference is not None:
            predict_with_reference(reference, data)
        if reference is None or train:
            _train_and_compare(out, data, backbone, epochs, protocol, n_boot)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError, RuntimeError) as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    print(f"\ndemo done in {(time.time() - t0) / 60:.1f} min; outputs under {out}/", flush=True)
    return 0


REAL_PHOTOS = ("photo-astronaut", "photo-grace-hopper")  # public domain (NASA, US Navy)


def predict_with_reference(reference: Path, data: Path) -> None:
    """The packaged reference on public-domain real photos, the benchmark's first real test faces
    and the first test image of each fake class, with a count of what it called fake."""
    from .inference.detector import load
    from .inference.results import describe_record
    from .weights import asset_path

    rows = [r for r in _manifest(data) if r.split == "test"]
    fakes = {}
    for r in rows:
        if r.cls != "real":
            fakes.setdefault(r.cls, str(data / r.path))
    real = [str(asset_path(a)) for a in REAL_PHOTOS] + [str(data / r.path) for r in rows if r.cls == "real"][:2]
    det = load()
    thr = det.run.detection_threshold
    _step(f"predicting with the packaged reference model {reference.name!r} ({det.run.cfg.model}, "
          f"threshold {thr if thr is None else round(thr, 3)}) on {len(real)} real photos and "
          f"{len(fakes)} benchmark fakes (one per class)")
    for group, paths in (("real photos", real), ("benchmark fakes", list(fakes.values()))):
        recs = [rec for _, rec in det.iter_records(paths, progress=True)]
        for rec in recs:
            print(describe_record(rec), flush=True)
        faces = [r for r in recs if "verdict" in r]
        n_fake = sum(r["verdict"] == "fake" for r in faces)
        n_unsure = sum(r["verdict"] == "uncertain" for r in faces)
        print(f"   -> {group}: {n_fake} of {len(faces)} face(s) called fake"
              + (f", {n_unsure} uncertain" if n_unsure else "") + "\n", flush=True)


def _train_and_compare(out: Path, data: Path, backbone: str, epochs: int, protocol: str, n_boot: int) -> None:
    """The smoke training: GazeCLIP and clip-linear-probe on the smoke benchmark, compared, then
    the smoke GazeCLIP on a real photo and a generated face."""
    from .weights import asset_path

    runs = []
    for name in MODELS:
        run = out / "runs" / f"{name}-{protocol.lower()}"
        runs.append(str(run))
        if (run / "summary.json").is_file():
            continue
        _step(f"training {name} on {protocol} ({backbone}, {epochs} epochs)")
        _train(name, backbone, data, protocol, run, epochs)
    _step("evaluating and comparing on the test split")
    _compare(runs, data, n_boot, out / "compare")
    _step("predicting on a real photo and a generated face with the smoke model")
    rows = [r for r in _manifest(data) if r.split == "test" and r.cls != "real"]
    photos = [str(asset_path("photo-astronaut"))] + ([str(data / rows[0].path)] if rows else [])
    _predict(photos, runs[0])


def _build_benchmark(data: Path, preset: str) -> None:
    """What `gazeclip bench build --preset PRESET --out DATA` does, with its defaults."""
    import torch

    from .bench.build import PRESETS, BuildConfig, build
    from .bench.report import counts_table

    torch.set_num_threads(2)
    rep = build(data, BuildConfig(PRESETS[preset]))
    print(counts_table(data))
    print(f"built {data} (preset {preset}, seed 0) in {rep.total_seconds / 60:.1f} min")


def _train(name: str, backbone: str, data: Path, protocol: str, run: Path, epochs: int) -> None:
    """The packaged `smoke` run config with this model, backbone, protocol and epoch count; an
    interrupted run (config.yaml but no summary) is continued, or restarted if it has no checkpoint yet."""
    from .run.config import TrainConfig
    from .train.trainer import train

    cfg = TrainConfig.from_yaml("smoke").replace(model=name, backbone=backbone, protocol=protocol, epochs=epochs)
    res = train(cfg, data, run, resume=(run / "config.yaml").is_file())
    b = res.best_metrics
    print(f"done: best epoch {res.best_epoch} val_acc {b['val_acc']:.3f} val_auc {b['val_auc']:.3f} "
          f"-> {res.run_dir}/model")


def _compare(runs: list[str], data: Path, n_boot: int, out: Path) -> None:
    from .evaluation.compare import compare_runs, print_table, comparison_markdown
    from .run.utils import atomic_write_json, atomic_write_text

    res = compare_runs(runs, data, None, n_boot, 0, "auto", progress=True)
    print_table(res)
    atomic_write_json(out / "compare.json", res)
    atomic_write_text(out / "compare.md", comparison_markdown(res) + "\n")
    print(f"wrote {out}/compare.json, compare.md")


def _predict(photos: list[str], run: str) -> None:
    from .inference.detector import load
    from .inference.results import describe_record

    for _, rec in load(run).iter_records(photos, progress=True):
        print(describe_record(rec), flush=True)


def _manifest(data: Path):
    from .data.manifest import read_manifest

    return read_manifest(data)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run_demo())
