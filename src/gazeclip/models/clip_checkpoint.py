"""Load a full CLIP checkpoint the user brings (`--backbone clip-b16 --clip PATH`).

Accepted: an OpenAI `.pt` (TorchScript archive or plain state dict), an open_clip checkpoint
(`.pt`/`.bin`/`.safetensors`, optionally under `state_dict`, optionally `module.`-prefixed), or a
transformers folder (`config.json` + weights + tokenizer files). OpenAI and open_clip share one
key layout, which we map onto transformers' `CLIPModel`; the tokenizer is open_clip's CLIP BPE.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from .towers import Backbone, ImagePreprocess, TextTower
from ..errors import MissingFileError

EXPECTED = {"ViT-B/16": (768, 16), "ViT-L/14": (1024, 14)}  # (vision width, patch size)


class CheckpointError(ValueError):
    pass


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception:  # OpenAI's releases are TorchScript archives, which torch.load refuses
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                sd = torch.jit.load(str(path), map_location="cpu").state_dict()
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: not a CLIP state dict; give an OpenAI .pt, an open_clip checkpoint "
                              "or a transformers folder")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _count_blocks(sd: dict, prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})


def openai_to_hf(sd: dict[str, torch.Tensor]):
    """Map the OpenAI/open_clip layout onto a transformers `CLIPModel` (config, state dict)."""
    from transformers import CLIPConfig

    if "visual.conv1.weight" not in sd or "token_embedding.weight" not in sd:
        raise CheckpointError("not an OpenAI/open_clip ViT CLIP state dict (no visual.conv1 / token_embedding)")
    v_width, _, patch, _ = sd["visual.conv1.weight"].shape
    n_pos = sd["visual.positional_embedding"].shape[0]
    grid = int(round((n_pos - 1) ** 0.5))
    t_width = sd["ln_final.weight"].shape[0]
    vision = dict(hidden_size=v_width, intermediate_size=4 * v_width, patch_size=patch, image_size=grid * patch,
                  num_hidden_layers=_count_blocks(sd, "visual.transformer.resblocks."),
                  num_attention_heads=v_width // 64, projection_dim=sd["visual.proj"].shape[1],
                  hidden_act="quick_gelu", layer_norm_eps=1e-5)
    text = dict(hidden_size=t_width, intermediate_size=4 * t_width, num_attention_heads=t_width // 64,
                num_hidden_layers=_count_blocks(sd, "transformer.resblocks."),
                max_position_embeddings=sd["positional_embedding"].shape[0],
                vocab_size=sd["token_embedding.weight"].shape[0], projection_dim=sd["text_projection"].shape[1],
                hidden_act="quick_gelu", layer_norm_eps=1e-5, bos_token_id=49406, eos_token_id=49407,
                pad_token_id=49407)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=sd["visual.proj"].shape[1])

    out = {}

    def block(src: str, dst: str, n: int):
        for i in range(n):
            s, d = f"{src}{i}.", f"{dst}{i}."
            for kind in ("weight", "bias"):
                q, k, v = sd[f"{s}attn.in_proj_{kind}"].chunk(3)
                out[f"{d}self_attn.q_proj.{kind}"], out[f"{d}self_attn.k_proj.{kind}"] = q, k
                out[f"{d}self_attn.v_proj.{kind}"] = v
                out[f"{d}self_attn.out_proj.{kind}"] = sd[f"{s}attn.out_proj.{kind}"]
                out[f"{d}layer_norm1.{kind}"] = sd[f"{s}ln_1.{kind}"]
                out[f"{d}layer_norm2.{kind}"] = sd[f"{s}ln_2.{kind}"]
                out[f"{d}mlp.fc1.{kind}"] = sd[f"{s}mlp.c_fc.{kind}"]
                out[f"{d}mlp.fc2.{kind}"] = sd[f"{s}mlp.c_proj.{kind}"]

    block("visual.transformer.resblocks.", "vision_model.encoder.layers.", vision["num_hidden_layers"])
    block("transformer.resblocks.", "text_model.encoder.layers.", text["num_hidden_layers"])
    out["vision_model.embeddings.patch_embedding.weight"] = sd["visual.conv1.weight"]
    out["vision_model.embeddings.class_embedding"] = sd["visual.class_embedding"]
    out["vision_model.embeddings.position_embedding.weight"] = sd["visual.positional_embedding"]
    for kind in ("weight", "bias"):
        out[f"vision_model.pre_layrnorm.{kind}"] = sd[f"visual.ln_pre.{kind}"]
        out[f"vision_model.post_layernorm.{kind}"] = sd[f"visual.ln_post.{kind}"]
        out[f"text_model.final_layer_norm.{kind}"] = sd[f"ln_final.{kind}"]
    out["visual_projection.weight"] = sd["visual.proj"].T
    out["text_model.embeddings.token_embedding.weight"] = sd["token_embedding.weight"]
    out["text_model.embeddings.position_embedding.weight"] = sd["positional_embedding"]
    out["text_projection.weight"] = sd["text_projection"].T
    out["logit_scale"] = sd.get("logit_scale", torch.tensor(4.6052))
    return config, {k: v.float().contiguous() for k, v in out.items()}


class OpenClipTokenizer:
    """open_clip's CLIP BPE tokenizer behind the transformers call signature that `Backbone` uses."""

    def __init__(self, context_length: int = 77):
        from open_clip.tokenizer import SimpleTokenizer

        self._tok = SimpleTokenizer(context_length=context_length)
        self.context_length = context_length

    def __call__(self, texts, padding=True, truncation=True, max_length=None, return_tensors="pt", **_):
        ids = self._tok(list(texts), context_length=max_length or self.context_length)
        mask = (ids != 0).long()
        if padding is True:  # pad to the longest text, not to the full context
            n = int(mask.sum(1).max())
            ids, mask = ids[:, :n], mask[:, :n]
        eos = self._tok.eot_token_id
        ids = torch.where(mask.bool(), ids, torch.full_like(ids, eos))  # pad with <|endoftext|>, as transformers' CLIP
        return {"input_ids": ids, "attention_mask": mask}


@lru_cache(maxsize=1)
def clip_bpe_tokenizer() -> OpenClipTokenizer:
    return OpenClipTokenizer()


def _split_towers(model, name: str, tokenizer) -> Backbone:
    from transformers import CLIPVisionModelWithProjection

    vision = CLIPVisionModelWithProjection(model.config.vision_config)
    vision.vision_model = model.vision_model
    vision.visual_projection = model.visual_projection
    text = TextTower(model.text_model, "eos", model.config.text_config.hidden_size, model.config.projection_dim,
                     model.text_model.encoder.layers, "self_attn", projection=model.text_projection)
    return Backbone(name, vision.eval(), text.eval(), tokenizer,
                    ImagePreprocess(model.config.vision_config.image_size), aligned=True,
                    context_length=model.config.text_config.max_position_embeddings)


def load_clip_checkpoint(path: str | Path | None, expect: str | None, name: str) -> Backbone:
    """`expect` (e.g. "ViT-B/16") checks the architecture; None accepts any ViT CLIP."""
    from transformers import CLIPModel

    if path is None:
        raise ValueError(f"backbone {name} needs a CLIP checkpoint: pass --clip PATH (an OpenAI .pt, an "
                         "open_clip checkpoint or a transformers folder)")
    path = Path(path).expanduser()
    if not path.exists():
        raise MissingFileError(f"{path}: no such CLIP checkpoint; pass --clip with an existing file or folder")
    if path.is_dir():
        from transformers import AutoTokenizer

        model = CLIPModel.from_pretrained(str(path), local_files_only=True)
        has_tokenizer = any((path / f).is_file() for f in ("tokenizer.json", "vocab.json"))
        tokenizer = (AutoTokenizer.from_pretrained(str(path), local_files_only=True) if has_tokenizer
                     else clip_bpe_tokenizer())
    else:
        config, sd = openai_to_hf(_read_state_dict(path))
        model = CLIPModel(config)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise CheckpointError(f"{path}: does not map onto CLIP: missing={missing[:5]} unexpected={unexpected[:5]}")
        tokenizer = clip_bpe_tokenizer()
    width, patch = model.config.vision_config.hidden_size, model.config.vision_config.patch_size
    if expect is not None and (width, patch) != EXPECTED[expect]:
        raise CheckpointError(f"{path}: is a ViT of width {width} and patch {patch}, not {expect}; "
                              f"use the backbone that matches it (clip-b16 or clip-l14)")
    return _split_towers(model.eval(), name, tokenizer)
