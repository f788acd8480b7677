"""What a backbone is made of: an image tower, a text tower with its tokenizer, and the image
preprocessing. The backbone registry (`backbones`) and the user-checkpoint loader
(`clip_checkpoint`) both build these; keeping the types here lets both import them without
importing each other."""
from __future__ import annotations

from dataclasses import dataclass
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
        if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[1:3] == (self.size, self.size):
            # a batch of crops already at the input size (predict): one vectorised pass, same values
            x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
            return self.normalise(x)
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
        return self.normalise(x)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) floats in [0, 1] -> CLIP-normalised."""
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
