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

import torch

from .. import safejson

REFERENCE_BACKBONE = "clip-b16-random"
ESTIMATORS = {"ethxgaze-r18": ("resnet18", 512), "ethxgaze-r50": ("resnet50", 2048)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="registered model name (see --list)")
    p.add_argument("--backbone", default="clip-b16-offline",
                   help=f"backbone name, or {REFERENCE_BACKBONE} (random full CLIP ViT-B/16, for counting only)")
    p.add_argument("--clip", default=None, help="CLIP checkpoint for --backbone clip-b16 / clip-l14")
    p.add_argument("--gaze-estimator", choices=sorted(ESTIMATORS), default=None,
                   help="gaze estimator counted with the pipeline (default: r50 for clip-b16-random, else r18)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override (YAML value), e.g. --set lora_rank=4; repeatable")
    p.add_argument("--list", action="store_true", help="list the registered models and exit")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


def example_taxonomy():
    """A benchmark-like label space (real + 9 generators, 8 families) for counting."""
    from .interface import Taxonomy

    gens = {"stylegan2": ("gan", "entire synthesis"), "stylegan3": ("gan", "entire synthesis"),
            "progan": ("gan", "entire synthesis"), "ddpm": ("diffusion", "entire synthesis"),
            "ldm": ("diffusion", "entire synthesis"), "glow": ("flow", "entire synthesis"),
            "vqvae": ("vae", "entire synthesis"), "simswap": ("identity_swap", "identity swap"),
            "stargan": ("manipulation", "attribute manipulation")}
    classes = ("real", *gens)
    return Taxonomy(classes, {"real": "real", **{k: v[0] for k, v in gens.items()}},
                    {"real": "real", **{k: v[1] for k, v in gens.items()}},
                    ("real", "gan", "diffusion", "flow", "vae", "identity_swap", "manipulation", "graphics"))


def reference_backbone():
    """Full CLIP ViT-B/16 structure (image + text towers), random weights: counting only."""
    from transformers import CLIPConfig, CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    from .backbones import Backbone, ImagePreprocess, TextTower, _char_vocab_tokenizer

    cfg = CLIPConfig()
    cfg.vision_config.patch_size = 16
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vision = CLIPVisionModelWithProjection(cfg.vision_config).eval()
        text = CLIPTextModelWithProjection(cfg.text_config).eval()
    tm = text.text_model
    tower = TextTower(tm, "eos", cfg.text_config.hidden_size, cfg.text_config.projection_dim,
                      tm.encoder.layers, "self_attn", projection=text.text_projection)
    for m in (vision, tower):
        m.requires_grad_(False)
    return Backbone(REFERENCE_BACKBONE, vision, tower, _char_vocab_tokenizer(), ImagePreprocess(224),
                    aligned=True, context_length=77)


def group_of(name: str) -> str:
    """Parameter name -> the module row it is counted under."""
    if "lora_" in name:
        return "gie.lora"
    parts = name.split(".")
    if parts[0] in ("gie", "lre") and len(parts) > 1:
        return {"gie.tower": "gie.clip_image_tower", "gie.injectors": "gie.gaze_injectors",
                "lre.text": "lre.text_tower", "lre.aws": "lre.aws", "lre.proj": "lre.projection"}.get(
                    f"{parts[0]}.{parts[1]}", f"{parts[0]}.{parts[1]}")
    if parts[0] in ("level_logits", "region_prompt_proj", "region_embed"):
        return "prompts"
    if parts[0] in ("head", "family_head", "binary"):
        return "heads"
    return parts[0]


ROW_ORDER = ("gie.clip_image_tower", "gie.lora", "gie.gaze_injectors", "vpe", "lre.text_tower", "lre.aws",
             "lre.projection", "prompts", "expert", "heads")


def module_table(model) -> dict[str, dict[str, int]]:
    rows: dict[str, dict[str, int]] = {}
    for n, p in model.named_parameters():
        r = rows.setdefault(group_of(n), {"params": 0, "trainable": 0})
        r["params"] += p.numel()
        r["trainable"] += p.numel() if p.requires_grad else 0
    rank = {k: i for i, k in enumerate(ROW_ORDER)}
    return dict(sorted(rows.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def count_flops(fn) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    # the math SDPA kernel is made of counted matmuls (the fused CPU kernel is not counted);
    # grad enabled keeps nn.TransformerEncoder off its fused (uncounted) inference fast path
    with sdpa_kernel(SDPBackend.MATH), torch.enable_grad(), FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def example_batch(backbone, gaze_dim: int, b: int = 1):
    from .interface import REGIONS, Batch

    s = backbone.preprocess.size
    g = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[0.3, 0.35, 0.45, 0.45], [0.55, 0.35, 0.7, 0.45], [0.3, 0.28, 0.7, 0.35],
                          [0.42, 0.4, 0.58, 0.6], [0.35, 0.62, 0.65, 0.75], [0.2, 0.15, 0.8, 0.9]])
    assert len(boxes) == len(REGIONS)
    return Batch(pixel_values=torch.randn(b, 3, s, s, generator=g),
                 gaze_vector=torch.nn.functional.normalize(torch.randn(b, 3, generator=g), dim=-1),
                 gaze_pitchyaw=torch.randn(b, 2, generator=g) * 0.2,
                 gaze_features=torch.randn(b, gaze_dim, generator=g),
                 gaze_valid=torch.ones(b, dtype=torch.bool), region_boxes=boxes.expand(b, -1, -1).clone())


def measure(model_name: str, backbone_name: str, clip=None, estimator: str | None = None,
            overrides: dict | None = None) -> dict:
    import torchvision

    from .backbones import create_backbone
    from .registry import create_model, model_config

    estimator = estimator or ("ethxgaze-r50" if backbone_name == REFERENCE_BACKBONE else "ethxgaze-r18")
    arch, gaze_dim = ESTIMATORS[estimator]
    overrides = dict(overrides or {})
    if hasattr(model_config(model_name), "gaze_feature_dim"):  # the features the counted estimator gives
        overrides.setdefault("gaze_feature_dim", gaze_dim)
    bb = reference_backbone() if backbone_name == REFERENCE_BACKBONE else create_backbone(backbone_name, clip=clip)
    model = create_model(model_name, backbone=bb, taxonomy=example_taxonomy(), **overrides).eval()
    batch = example_batch(bb, gaze_dim)
    with torch.no_grad():
        model(batch)  # fills the prompt-embedding cache: per-image cost excludes the prompts
    image_flops = count_flops(lambda: model(batch))
    text_flops = count_flops(model._compute_text_embeddings) if hasattr(model, "prompt_ids") else 0
    clip_flops = count_flops(lambda: bb.image_tower(pixel_values=batch.pixel_values))
    clip_params = sum(p.numel() for p in bb.image_tower.parameters())
    est = getattr(torchvision.models, arch)(num_classes=2).eval()
    est_params = sum(p.numel() for p in est.parameters())
    est_flops = count_flops(lambda: est(torch.randn(1, 3, 224, 224)))
    modules = module_table(model)
    total = model.num_parameters()
    trainable = model.num_parameters(trainable_only=True)
    uses_gaze = getattr(model.config, "gaze", False)
    pipe_params = total + (est_params if uses_gaze else 0)
    pipe_flops = image_flops + (est_flops if uses_gaze else 0)
    return {
        "model": model_name, "backbone": backbone_name, "total_params": total, "trainable_params": trainable,
        "gflops_per_image": image_flops / 1e9, "modules": modules,
        "prefix_layer": model.prefix_layer,
        "text_gflops_per_step": text_flops / 1e9,
        "num_prompts": len(model.prompts.texts) if hasattr(model, "prompts") else 0,
        "external": {"gaze_estimator": {"name": estimator, "params": est_params, "trainable": 0,
                                        "gflops_per_image": est_flops / 1e9, "used": bool(uses_gaze)}},
        "pipeline_total_params": pipe_params, "pipeline_gflops_per_image": pipe_flops / 1e9,
        "clip_image_tower": {"params": clip_params, "gflops_per_image": clip_flops / 1e9},
        "overhead_vs_clip_image_tower": {"params": pipe_params / clip_params, "gflops": pipe_flops / clip_flops},
        "flops_convention": "FlopCounterMode, multiply-add = 2 FLOPs, batch 1, prompts cached",
    }


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
    import yaml

    from .registry import list_models

    if args.list:
        print("\n".join(list_models()))
        return 0
    if not args.model:
        print("gazeclip info: --model is required; models: " + ", ".join(list_models()), file=sys.stderr)
        return 2
    overrides = {}
    for kv in args.set:
        if "=" not in kv:
            print(f"gazeclip info: --set expects KEY=VALUE, got {kv!r}", file=sys.stderr)
            return 2
        k, v = kv.split("=", 1)
        overrides[k] = yaml.safe_load(v)
    try:
        r = measure(args.model, args.backbone, args.clip, args.gaze_estimator, overrides)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"gazeclip info: {e}", file=sys.stderr)
        return 2
    print(safejson.dumps(r, indent=2) if args.json else _fmt_table(r))
    return 0
