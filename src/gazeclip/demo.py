"""`gazeclip demo`: what `make demo` runs.

1. encode a shipped real photo with the three pretrained networks (image tower, text tower, gaze
   estimator) and print what came out;
2. build the smoke benchmark, train GazeCLIP and `clip-linear-probe` on protocol P2, evaluate and
   compare them, and predict on a real photo and a generated face (`gazeclip.engine.demo`).
"""
from __future__ import annotations

import argparse
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--data", default=None, help="use this benchmark folder instead of building one")
    p.add_argument("--preset", default="smoke", help="benchmark preset to build (default: smoke)")
    p.add_argument("--backbone", default="clip-b16-offline", help="backbone (default: clip-b16-offline)")
    p.add_argument("--epochs", type=int, default=4, help="training epochs per model (default: 4)")
    p.add_argument("--encode-only", action="store_true", help="only step 1: encode a real photo and stop")


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
        raise RuntimeError(f"{path}: no face found in the shipped photo; run `gazeclip weights verify`")
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
    encode_real_photo()
    if args.encode_only:
        return 0
    from .engine.demo import run_demo

    return run_demo(out=args.out, data=args.data, preset=args.preset, backbone=args.backbone, epochs=args.epochs)
