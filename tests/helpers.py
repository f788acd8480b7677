"""Helpers shared by the test modules (tests/ is on sys.path through conftest.py): hand-made run
folders, strict JSON, predict's JSON lines, synthetic videos and images, a model batch."""
from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from PIL import Image

from gazeclip.cli import main
from gazeclip.models.interface import REGIONS, Batch, Taxonomy
from gazeclip.run.config import TrainConfig
from gazeclip.run.utils import atomic_write_json
from gazeclip.train.trainer import taxonomy_to_dict


def calibration(detection_threshold: float = 0.5, unknown_threshold: float = 0.99, **abstain) -> dict:
    """A hand-made calibration.json record (version 3); abstain limits off unless given."""
    return {"version": 3, "unknown_threshold": unknown_threshold, "quantile": 0.05,
            "detection_threshold": detection_threshold, "abstain": abstain}


def make_run(run: Path, faces: str = "detect", nan_weights: bool = False, **abstain) -> Taxonomy:
    """A run folder holding an (untrained) tiny model: what `gazeclip train` leaves, minus training
    (abstain limits off unless given, e.g. min_face_px=64); `nan_weights`: every trainable weight NaN."""
    from gazeclip.models import create_model

    tx = Taxonomy(("real", "gan-a", "diff-a"), {"real": "real", "gan-a": "gan", "diff-a": "diffusion"},
                  {"real": "real", "gan-a": "entire-synthesis", "diff-a": "entire-synthesis"},
                  ("real", "diffusion", "gan"))
    model = create_model("gazeclip", backbone="tiny-random", taxonomy=tx)
    if nan_weights:
        with torch.no_grad():
            for p in model.trainable_parameters().values():
                p.fill_(float("nan"))
    model.save_pretrained(run / "model")
    c = TrainConfig(model="gazeclip", backbone="tiny-random", faces=faces)
    (run / "config.yaml").write_text(yaml.safe_dump(c.to_dict()))
    atomic_write_json(run / "taxonomy.json", taxonomy_to_dict(tx))
    atomic_write_json(run / "calibration.json", calibration(**abstain))
    return tx


def strict_json(line: str):
    """json.loads that refuses NaN/Infinity, as strict JSON parsers do."""
    def bad(c):
        raise AssertionError(f"not JSON: {c} in {line[:200]}")
    return json.loads(line, parse_constant=bad)


def predict_json(capsys, args) -> tuple[int, list[dict], str]:
    rc = main(["predict", *map(str, args), "--json", "--quiet"])
    cap = capsys.readouterr()
    return rc, [strict_json(line) for line in cap.out.splitlines() if line.strip()], cap.err


TAX = Taxonomy(
    classes=("real", "stylegan2", "ddpm", "simswap"),
    class_family={"real": "real", "stylegan2": "gan", "ddpm": "diffusion", "simswap": "identity_swap"},
    class_forgery_type={"real": "real", "stylegan2": "entire_synthesis", "ddpm": "entire_synthesis",
                        "simswap": "identity_swap"},
    families=("real", "gan", "diffusion", "identity_swap", "flow"),
)


def make_batch(b: int, seed: int = 0, gaze_dim: int = 512) -> Batch:
    g = torch.Generator().manual_seed(seed)
    lo = torch.rand(b, len(REGIONS), 2, generator=g) * 0.6
    boxes = torch.cat([lo, lo + 0.05 + torch.rand(b, len(REGIONS), 2, generator=g) * 0.35], -1)
    labels = torch.arange(b) % len(TAX.classes)
    valid = torch.ones(b, dtype=torch.bool)
    if b > 1:
        valid[-1] = False  # a face without gaze: zeros, and the model must cope
    vec = torch.nn.functional.normalize(torch.randn(b, 3, generator=g), dim=-1) * valid[:, None]
    return Batch(pixel_values=torch.randn(b, 3, 32, 32, generator=g), gaze_vector=vec,
                 gaze_pitchyaw=torch.randn(b, 2, generator=g) * 0.3 * valid[:, None],
                 gaze_features=torch.randn(b, gaze_dim, generator=g) * valid[:, None],
                 gaze_valid=valid, region_boxes=boxes, labels=labels,
                 family=torch.tensor([TAX.family_index(TAX.classes[i]) for i in labels]),
                 is_fake=(labels > 0).float())


def write_video(path, n: int = 20, fps: float = 10.0, size=(64, 48), seed: int = 0):
    """A small mp4 (OpenCV's mp4v encoder): frame k is a flat colour that changes with k."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert w.isOpened()
    rng = np.random.default_rng(seed)
    for k in range(n):
        frame = np.full((size[1], size[0], 3), (10 * k % 255, 80, 200 - 5 * k % 200), np.uint8)
        frame[:8, :8] = rng.integers(0, 255, (8, 8, 3))
        w.write(frame)
    w.release()
    return path


def encode(arr: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


def eps_bytes() -> bytes:
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n"


def scan_bomb(side: int = 1024, scans: int = 2000) -> bytes:
    """A progressive JPEG whose first (DC) scan is repeated `scans` times with no data: each costs
    libjpeg a pass over every block."""
    p = encode(np.full((side, side, 3), 120, np.uint8), "JPEG", progressive=True, quality=80)
    s = p.find(b"\xff\xda")
    sos = p[s:s + 2 + struct.unpack(">H", p[s + 2:s + 4])[0]]
    return p[:p.rfind(b"\xff\xd9")] + (sos + b"\x00") * scans + b"\xff\xd9"


def png_bytes(arr: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def png_header_only(w: int, h: int, depth: int = 16, colour: int = 2) -> bytes:
    """A tiny PNG file whose header declares w x h pixels (its pixel data is a few zero rows)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + \
        chunk(b"IEND", b"")


TAXONOMY = dict(classes=("real", "gan-a", "diff-a"), class_family={"real": "real", "gan-a": "gan", "diff-a": "diffusion"},
                class_forgery_type={"real": "real", "gan-a": "entire-synthesis", "diff-a": "entire-synthesis"},
                families=("real", "diffusion", "gan"))


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(model="clip-linear-probe", backbone="tiny-random", protocol="P2", epochs=1, batch_size=8, lr=3e-3,
                faces="none", progress=False, patience=0, warmup_epochs=0.0)
    base.update(kw)
    return TrainConfig(**base)
