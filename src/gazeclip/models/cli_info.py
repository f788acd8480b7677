"""`gazeclip info --model NAME [--backbone B] [--json]`: parameters per module (total and
trainable) and GFLOPs per image, measured with `torch.utils.flop_counter.FlopCounterMode`.

FLOPs count a multiply-add as 2 (FlopCounterMode's convention). "Per image" is the image path at
inference (batch 1) with the class prompt embeddings already cached; encoding the prompts once
per step is reported apart. The gaze estimator is not part of the model object (its features
arrive in the Batch) and is reported as an external module, with the pipeline totals.

`--backbone clip-b16-random` is a randomly initialised full CLIP ViT-B/16 (image and CLIP text
tower, transformers' CLIPConfig defaults with patch 16) used only to count, with
`--gaze-estimator ethxgaze-r50` by default: the paper's configuration.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import GazeclipError
from .. import safejson
from ..cli import key_value

from .measure import ESTIMATORS, REFERENCE_BACKBONE, measure


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="registered model name (see --list)")
    p.add_argument("--backbone", default="clip-b16-offline",
                   help=f"backbone name, or {REFERENCE_BACKBONE} (random full CLIP ViT-B/16, for counting only)")
    p.add_argument("--clip", default=None, help="CLIP checkpoint for --backbone clip-b16 / clip-l14")
    p.add_argument("--gaze-estimator", choices=sorted(ESTIMATORS), default=None,
                   help="gaze estimator counted with the pipeline (default: r50 for clip-b16-random, else r18)")
    p.add_argument("--model-arg", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="model config field (YAML value), as `gazeclip train --model-arg`, e.g. lora_rank=4; "
                        "repeatable")
    p.add_argument("--list", action="store_true", help="list the registered models and exit")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


def _fmt_table(r: dict) -> str:
    lines = [f"model {r['model']} on backbone {r['backbone']} (prefix_layer {r['prefix_layer']})", "",
             "| module | params | trainable |", "|---|---:|---:|"]
    for k, v in r["modules"].items():
        lines.append(f"| {k} | {v['params']:,} | {v['trainable']:,} |")
    lines.append(f"| **model total** | **{r['total_params']:,}** | **{r['trainable_params']:,}** |")
    ge = r["external"]["gaze_estimator"]
    if ge["used"]:
        lines.append(f"| gaze estimator {ge['name']} (external, frozen) | {ge['params']:,} | 0 |")
    lines.append(f"| **pipeline total** | **{r['pipeline_total_params']:,}** | |")
    o = r["overhead_vs_clip_image_tower"]
    lines += ["", "| cost per image | GFLOPs |", "|---|---:|",
              f"| model (image path, prompts cached) | {r['gflops_per_image']:.3f} |"]
    if ge["used"]:
        lines.append(f"| gaze estimator {ge['name']} | {ge['gflops_per_image']:.3f} |")
    lines += [f"| pipeline | {r['pipeline_gflops_per_image']:.3f} |",
              f"| bare CLIP image tower | {r['clip_image_tower']['gflops_per_image']:.3f} |",
              f"| prompt encoding, once per step ({r['num_prompts']} prompts) | {r['text_gflops_per_step']:.3f} |",
              "", f"overhead over the bare CLIP image tower ({r['clip_image_tower']['params']:,} params): "
              f"params x{o['params']:.2f}, GFLOPs x{o['gflops']:.2f}", f"({r['flops_convention']})"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from .registry import list_models

    if args.list:
        print("\n".join(list_models()))
        return 0
    if not args.model:
        print("gazeclip info: --model is required; models: " + ", ".join(list_models()), file=sys.stderr)
        return 2
    overrides = dict(args.model_arg)
    try:
        r = measure(args.model, args.backbone, args.clip, args.gaze_estimator, overrides)
    except GazeclipError as e:
        print(f"gazeclip info: {e}", file=sys.stderr)
        return 2
    print(safejson.dumps(r, indent=2) if args.json else _fmt_table(r))
    return 0
