"""Language Refinement Encoder (LRE): the frozen text tower with the Adaptive-Enhanced Word
Selector (AWS) inserted before (or, as an ablation, after) the self-attention of its layers, and a
learned projection into the joint image-text space.

The backbone's text tower is never modified: the LRE rewires a structural copy that shares its
frozen weights.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import TextTower
from .gie import resolve_blocks, structural_copy


class AdaptiveWordSelector(nn.Module):
    """AWS(x) = x * g(x): one input-dependent weight per word (a diagonal attention over words).

    g(x) = 2 * sigmoid(MLP(x)) with the MLP's last layer zero-initialised, so g == 1 and AWS is
    exactly the identity at initialisation; g stays in (0, 2), so a word can be muted or doubled.
    """

    def __init__(self, width: int, hidden: int):
        super().__init__()
        # design choice, not from the paper: the weight depends on the word's own embedding only,
        # through a 2-layer MLP, bounded by 2*sigmoid
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, 1)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * torch.sigmoid(self.fc2(F.gelu(self.fc1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


class _WithAWS(nn.Module):
    """Wraps a self-attention module: AWS on its input ('before') or on its output ('after')."""

    def __init__(self, attention: nn.Module, aws: AdaptiveWordSelector, where: str):
        super().__init__()
        self.attention = attention
        self.aws = aws
        self.where = where

    def forward(self, *args, **kwargs):
        if self.where == "before":
            if args:
                args = (self.aws(args[0]),) + args[1:]
            else:
                kwargs["hidden_states"] = self.aws(kwargs["hidden_states"])
            return self.attention(*args, **kwargs)
        out = self.attention(*args, **kwargs)
        if isinstance(out, tuple):
            return (self.aws(out[0]),) + tuple(out[1:])
        return self.aws(out)


class LanguageRefinementEncoder(nn.Module):
    """Encodes prompt texts into the joint space: `forward(input_ids, attention_mask)` -> (token
    states, L2-normalised embeddings (N, embed_dim))."""

    def __init__(self, text_tower: TextTower, embed_dim: int, aligned: bool, aws: str = "before",
                 aws_hidden: int = 0, aws_layers: list[int] | None = None, aws_scope: str = "attention",
                 projection: str = "learned",
                 projection_seed: int = 0):
        super().__init__()
        self.aws_mode = aws
        self.aws = nn.ModuleList()  # registered first, so AWS parameters are named lre.aws.N
        if aws != "none":
            text_tower = structural_copy(text_tower)
            idx = resolve_blocks(list(range(len(text_tower.layers))) if aws_layers is None else aws_layers,
                                 len(text_tower.layers), "aws_layers")
            hidden = aws_hidden or max(1, text_tower.width // 4)
            for i in idx:
                owner, attr = text_tower.layers[i], text_tower.attention_attr
                attn = getattr(owner, attr)
                # design choice, not from the paper: where a tower's attention module also holds the
                # residual and LayerNorm (BERT's `attention` = `.self` + `.output`), AWS wraps the
                # self-attention proper, so only keys/values/queries see the weighted words and the
                # residual keeps them unweighted (aws_scope: attention); 'sublayer' wraps the whole module
                if aws_scope == "attention" and isinstance(getattr(attn, "self", None), nn.Module):
                    owner, attr = attn, "self"
                sel = AdaptiveWordSelector(text_tower.width, hidden)
                self.aws.append(sel)
                setattr(owner, attr, _WithAWS(getattr(owner, attr), sel, aws))
        self.text = text_tower
        d_in = text_tower.embed_dim
        if projection == "learned":
            self.proj = nn.Linear(d_in, embed_dim, bias=False)
            # design choice, not from the paper: on an aligned backbone the projection starts as the
            # identity, so the text embeddings start as CLIP's own
            if aligned and d_in == embed_dim:
                with torch.no_grad():
                    self.proj.weight.copy_(torch.eye(embed_dim))
        elif projection == "fixed":
            self.proj = None
            if aligned and d_in == embed_dim:
                self.register_buffer("fixed", torch.eye(embed_dim), persistent=False)
            else:  # a non-aligned tower has no meaningful fixed map: a seeded random one, so it runs
                g = torch.Generator().manual_seed(projection_seed)
                self.register_buffer("fixed", torch.randn(embed_dim, d_in, generator=g) / d_in ** 0.5,
                                     persistent=False)
        else:
            raise ValueError(f"unknown projection {projection!r}; valid: learned, fixed")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states, pooled = self.text(input_ids, attention_mask)
        emb = self.proj(pooled) if self.proj is not None else pooled @ self.fixed.t().to(pooled.dtype)
        return states, F.normalize(emb, dim=-1)
