"""Parameters per module (total and trainable) and GFLOPs per image of a registered model, measured
with `torch.utils.flop_counter.FlopCounterMode` on an example batch; `gazeclip info` prints what
`measure` returns. Conventions are in the docstring of `gazeclip.models.cli_info`."""
from __future__ import annotations

import torch

REFERENCE_BACKBONE = "clip-b16-random"
ESTIMATORS = {"ethxgaze-r18": ("resnet18", 512), "ethxgaze-r50": ("resnet50", 2048)}


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
