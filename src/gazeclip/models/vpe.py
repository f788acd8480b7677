"""Visual Perception Encoder (VPE) and its appearance-gaze transformer (AGPM).

Tokens: [VPE class token, gaze geometry token (gaze vector + pitch/yaw), gaze feature tokens
(the estimator's penultimate features), one appearance token per facial region]. A small
transformer over them gives the VPE embedding (class-token output) and the gaze prompts that the
Gaze Injectors attend to.
"""
from __future__ import annotations

import torch
from torch import nn

from .interface import REGIONS


def region_weights(boxes: torch.Tensor, grid: int) -> torch.Tensor:
    """Region boxes (B, R, 4) in [0, 1] -> pooling weights over the patch grid (B, R, grid*grid).

    design choice, not from the paper: each patch is weighted by the fraction of it the box covers
    (so a box smaller than a patch still gets that patch); a degenerate box (no face) pools all patches.
    """
    edges = torch.arange(grid + 1, device=boxes.device, dtype=boxes.dtype) / grid
    lo, hi = edges[:-1], edges[1:]
    x0, y0, x1, y1 = (boxes[..., k, None] for k in range(4))
    ox = (torch.minimum(x1, hi) - torch.maximum(x0, lo)).clamp_min(0) * grid  # (B, R, g)
    oy = (torch.minimum(y1, hi) - torch.maximum(y0, lo)).clamp_min(0) * grid
    w = (oy[..., :, None] * ox[..., None, :]).flatten(-2)  # row-major like CLIP's patch order
    s = w.sum(-1, keepdim=True)
    uniform = torch.full_like(w, 1.0 / w.shape[-1])
    return torch.where(s > 0, w / s.clamp_min(1e-12), uniform)


def pool_regions(states: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Hidden states (B, 1 + g*g, W) with a class token first -> region tokens (B, R, W)."""
    patches = states[:, 1:]
    n = int(patches.shape[1])  # a Python int also under ONNX tracing (the grid is fixed by the image size)
    grid = int(round(n ** 0.5))
    if grid * grid != n:
        raise ValueError(f"expected a square patch grid, got {n} patch tokens")
    w = region_weights(boxes.to(patches.dtype), grid)
    return torch.bmm(w, patches)


class VisualPerceptionEncoder(nn.Module):
    def __init__(self, image_width: int, gaze_feature_dim: int, dim: int = 256, layers: int = 2, heads: int = 4,
                 feature_tokens: int = 4, appearance: bool = True, prompt_tokens: str = "gaze",
                 mask_invalid: bool = True):
        super().__init__()
        self.dim = dim
        self.feature_tokens = feature_tokens
        self.appearance = appearance
        self.prompt_tokens = prompt_tokens
        self.gaze_feature_dim = gaze_feature_dim
        n_gaze = 1 + feature_tokens
        self.n_gaze = n_gaze
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.geometry = nn.Linear(5, dim)  # gaze vector (3) + pitch/yaw (2)
        self.feature_norm = nn.LayerNorm(gaze_feature_dim)
        self.features = nn.Linear(gaze_feature_dim, feature_tokens * dim)
        # design choice, not from the paper: a face without gaze gets learned "no gaze" tokens
        self.missing_gaze = nn.Parameter(torch.zeros(1, n_gaze, dim)) if mask_invalid else None
        n_tokens = 1 + n_gaze
        if appearance:
            self.appearance_norm = nn.LayerNorm(image_width)
            self.appearance_proj = nn.Linear(image_width, dim)
            n_tokens += len(REGIONS)
        self.pos = nn.Parameter(torch.randn(1, n_tokens, dim) * 0.02)  # slot/type embeddings
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, states: torch.Tensor | None, gaze_vector: torch.Tensor, gaze_pitchyaw: torch.Tensor,
                gaze_features: torch.Tensor, gaze_valid: torch.Tensor, region_boxes: torch.Tensor,
                region_embed: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (VPE embedding (B, dim), gaze prompts (B, P, dim)). `region_embed` (R, dim) is added
        to the appearance tokens (region prompts or learned embeddings)."""
        b = gaze_vector.shape[0]
        dtype = self.cls.dtype
        if gaze_features.shape[-1] != self.gaze_feature_dim:
            raise ValueError(f"gaze_features have width {gaze_features.shape[-1]} but the model was built with "
                             f"gaze_feature_dim={self.gaze_feature_dim}")
        geo = self.geometry(torch.cat([gaze_vector, gaze_pitchyaw], -1).to(dtype)).unsqueeze(1)
        feats = self.features(self.feature_norm(gaze_features.to(dtype))).view(b, self.feature_tokens, self.dim)
        gaze = torch.cat([geo, feats], 1)
        if self.missing_gaze is not None:
            gaze = torch.where(gaze_valid.view(-1, 1, 1), gaze, self.missing_gaze.expand(b, -1, -1))
        tokens = [self.cls.expand(b, -1, -1), gaze]
        if self.appearance:
            app = self.appearance_proj(self.appearance_norm(pool_regions(states.to(dtype), region_boxes)))
            if region_embed is not None:
                app = app + region_embed.unsqueeze(0)
            tokens.append(app)
        x = self.transformer(torch.cat(tokens, 1) + self.pos)
        x = self.norm(x)
        prompts = x[:, 1:1 + self.n_gaze] if self.prompt_tokens == "gaze" else x
        return x[:, 0], prompts
