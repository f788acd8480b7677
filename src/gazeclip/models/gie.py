"""Gaze-aware Image Encoder (GIE): the frozen CLIP image tower, LoRA (peft) on q/v of selected
blocks, and a Gaze Injector at those blocks.

The backbone's tower is shared, never modified: the adapted blocks are structural copies that
share the frozen weights (no memory cost), and peft injects LoRA into the copies only. So several
models can be built on one `Backbone`.
"""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn


def structural_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` whose parameters and buffers are the original tensors (shared, frozen):
    new module objects we may rewire (LoRA, AWS) without touching the original."""
    memo = {id(p): p for p in module.parameters()}
    memo.update({id(b): b for b in module.buffers()})
    return copy.deepcopy(module, memo)


def resolve_blocks(blocks: list[int] | None, n: int, what: str) -> list[int]:
    out = []
    for b in blocks or []:
        i = b + n if b < 0 else b
        if not 0 <= i < n:
            raise ValueError(f"{what} index {b} is out of range for a tower of {n} blocks")
        out.append(i)
    return sorted(set(out))


class GazeInjector(nn.Module):
    """Cross-attention from image tokens (the class token alone, or all) to the gaze prompts; the
    output is added through a zero-initialised gate, so at initialisation it changes nothing."""

    def __init__(self, width: int, prompt_dim: int, heads: int, query: str, gate: str = "vector",
                 mask_invalid: bool = True, gate_scale: float = 1.0):
        super().__init__()
        self.gate_scale = gate_scale
        if width % heads:
            raise ValueError(f"injector_heads={heads} must divide the image width {width}")
        self.query = query
        self.mask_invalid = mask_invalid
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, kdim=prompt_dim, vdim=prompt_dim, batch_first=True)
        # design choice, not from the paper: a tanh gate (Flamingo-style), per channel or scalar, zero at init
        self.gate = nn.Parameter(torch.zeros(width if gate == "vector" else 1))

    def gate_value(self) -> torch.Tensor:
        # design choice, not from the paper: tanh(gate_scale * g); gate_scale multiplies Adam's step on g
        return torch.tanh(self.gate_scale * self.gate)

    def forward(self, h: torch.Tensor, prompts: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        q = h[:, :1] if self.query == "cls" else h
        delta, _ = self.attn(self.norm(q), prompts, prompts, need_weights=False)
        delta = self.gate_value() * delta
        # design choice, not from the paper: faces without a gaze get no injection (missing_gaze: mask)
        if valid is not None and self.mask_invalid:
            delta = delta * valid.to(delta.dtype).view(-1, 1, 1)
        if self.query == "cls":
            return torch.cat([h[:, :1] + delta, h[:, 1:]], dim=1)
        return h + delta


class _Blocks(nn.Module):
    """Holds the tower's blocks under `layers.N`, the names peft's `layers_to_transform` expects."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)


class GazeAwareImageEncoder(nn.Module):
    """`encode_prefix(pixels)` runs the frozen blocks below `prefix_layer`; `forward(states, ...)`
    runs the rest (LoRA blocks, injectors) and returns the projected class embedding."""

    def __init__(self, image_tower: nn.Module, lora_blocks: list[int], lora_rank: int = 8, lora_alpha: float = 16.0,
                 lora_dropout: float = 0.0, lora_targets: list[str] | None = None,
                 injector_blocks: list[int] | None = None, prompt_dim: int = 0, injector_heads: int = 8,
                 injector_query: str = "cls", injector_position: str = "before", injector_gate: str = "vector",
                 mask_invalid_gaze: bool = True, injector_gate_scale: float = 1.0):
        super().__init__()
        self.tower = image_tower  # shared and frozen
        vm = image_tower.vision_model
        n = len(vm.encoder.layers)
        self.num_layers = n
        self.lora_blocks = resolve_blocks(lora_blocks, n, "lora_blocks")
        self.injector_blocks = resolve_blocks(injector_blocks, n, "injector_blocks")
        adapted = set(self.lora_blocks) | set(self.injector_blocks)
        self.prefix_layer = min(adapted) if adapted else n
        self.injector_position = injector_position
        layers = [structural_copy(b) if i in self.lora_blocks else b for i, b in enumerate(vm.encoder.layers)]
        self.blocks = _Blocks(layers)
        if self.lora_blocks:
            from peft import LoraConfig, inject_adapter_in_model

            cfg = LoraConfig(r=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                             target_modules=list(lora_targets or ["q_proj", "v_proj"]),
                             layers_to_transform=self.lora_blocks, layers_pattern="layers", bias="none")
            inject_adapter_in_model(cfg, self.blocks)
        width = image_tower.config.hidden_size
        self.injectors = nn.ModuleDict({
            str(i): GazeInjector(width, prompt_dim, injector_heads, injector_query, injector_gate, mask_invalid_gaze,
                                 injector_gate_scale)
            for i in self.injector_blocks})
        # inference only (gazeclip.models.inference): run the tower's blocks under autocast to this dtype
        self.compute_dtype: torch.dtype | None = None

    def _autocast(self, device: torch.device):
        """An inference copy's own autocast (`compute_dtype`); otherwise the caller's, untouched
        (a bf16 training step's autocast reaches the tower's blocks)."""
        if self.compute_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.compute_dtype)

    @property
    def vision(self) -> nn.Module:
        return self.tower.vision_model

    @torch.no_grad()
    def encode_prefix(self, pixel_values: torch.Tensor) -> torch.Tensor:
        vm = self.vision
        h = vm.pre_layrnorm(vm.embeddings(pixel_values.to(vm.pre_layrnorm.weight.dtype)))
        with self._autocast(h.device):
            for layer in self.blocks.layers[: self.prefix_layer]:
                h = layer(h, None)
        return h.float() if self.compute_dtype is not None else h

    def forward(self, states: torch.Tensor, gaze_prompts: torch.Tensor | None = None,
                gaze_valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """states entering `prefix_layer` (B, T, W) -> (image embedding (B, E), final states (B, T, W))."""
        h = states
        with self._autocast(h.device):
            for i in range(self.prefix_layer, self.num_layers):
                inj = self.injectors[str(i)] if (gaze_prompts is not None and str(i) in self.injectors) else None
                if inj is not None and self.injector_position == "before":
                    h = inj(h, gaze_prompts, gaze_valid)
                h = self.blocks.layers[i](h, None)
                if inj is not None and self.injector_position == "after":
                    h = inj(h, gaze_prompts, gaze_valid)
            pooled = self.vision.post_layernorm(h[:, 0])
            image = self.tower.visual_projection(pooled)
        if self.compute_dtype is not None:  # the heads after the tower run in fp32
            return image.float(), h.float()
        return image, h
