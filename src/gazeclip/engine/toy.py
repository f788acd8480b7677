"""A tiny model that honours the model interface (`Batch` -> `ModelOutput`, `losses`,
`prefix_layer`/`encode_prefix`, `save_pretrained`/`from_pretrained`). The engine's tests use it to
exercise training, caching, DDP and resume independently of the real models; it is registered
nowhere and never used by the commands.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..models.interface import Batch, ModelOutput, Taxonomy


def _tower_layers(tower):
    return tower.vision_model.encoder.layers


class ToyModel(nn.Module):
    def __init__(self, taxonomy: Taxonomy, backbone: str = "tiny-random", prefix_layer: int = 8,
                 gaze_dim: int = 512):
        super().__init__()
        from ..models.backbones import create_backbone

        self.taxonomy = taxonomy
        self.backbone_name = backbone
        self.backbone = create_backbone(backbone)
        self.prefix_layer = prefix_layer
        self.gaze_dim = gaze_dim
        w = self.backbone.image_width
        # trainable: a residual adapter in each upper block's output and the heads
        n_up = self.backbone.num_image_layers - prefix_layer
        self.adapters = nn.ModuleList(nn.Linear(w, w) for _ in range(n_up))
        for a in self.adapters:
            nn.init.zeros_(a.weight)
            nn.init.zeros_(a.bias)
        self.gaze_proj = nn.Linear(3 + 2 + gaze_dim, w)
        self.embed = nn.Linear(2 * w, 16)
        self.attr_head = nn.Linear(16, len(taxonomy.classes))
        self.family_head = nn.Linear(16, len(taxonomy.families))
        self.det_head = nn.Linear(16, 1)

    @property
    def image_tower(self):
        return self.backbone.image_tower

    def encode_prefix(self, pixel_values: torch.Tensor) -> torch.Tensor:
        vm = self.backbone.image_tower.vision_model
        h = vm.pre_layrnorm(vm.embeddings(pixel_values))
        for layer in _tower_layers(self.backbone.image_tower)[: self.prefix_layer]:
            h = _run_layer(layer, h)
        return h

    def forward(self, batch: Batch) -> ModelOutput:
        h = batch.prefix_states if batch.prefix_states is not None else self.encode_prefix(batch.pixel_values)
        vm = self.backbone.image_tower.vision_model
        for layer, ad in zip(_tower_layers(self.backbone.image_tower)[self.prefix_layer:], self.adapters):
            h = _run_layer(layer, h)
            h = h + ad(h)
        cls = vm.post_layernorm(h[:, 0])
        g = torch.cat([batch.gaze_vector, batch.gaze_pitchyaw, batch.gaze_features], 1)
        g = self.gaze_proj(g) * batch.gaze_valid.unsqueeze(1).to(g.dtype)
        z = self.embed(torch.cat([cls, g], 1))
        logits = self.attr_head(z)
        p_fake = 0.5 * (1 - logits.softmax(-1)[:, 0]) + 0.5 * torch.sigmoid(self.det_head(z)[:, 0])
        return ModelOutput(logits, self.family_head(z), p_fake, F.normalize(z, dim=-1))

    def losses(self, out: ModelOutput, batch: Batch) -> dict:
        ce = F.cross_entropy(out.attribution_logits, batch.labels, ignore_index=-1)
        fam = F.cross_entropy(out.family_logits, batch.family, ignore_index=-1)
        det = F.binary_cross_entropy(out.p_fake.clamp(1e-6, 1 - 1e-6), batch.is_fake)
        return {"total": ce + 0.5 * fam + 0.5 * det, "attribution": ce, "family": fam, "detection": det}

    def trainable_state_dict(self) -> dict:
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names}

    def save_pretrained(self, d: str | Path) -> None:
        d = Path(d)
        d.mkdir(parents=True, exist_ok=True)
        torch.save(self.trainable_state_dict(), d / "trainable.pt")
        tx = self.taxonomy
        (d / "config.json").write_text(json.dumps({
            "model": "toy", "backbone": self.backbone_name, "prefix_layer": self.prefix_layer,
            "gaze_dim": self.gaze_dim, "taxonomy": {"classes": tx.classes, "class_family": tx.class_family,
                                                    "class_forgery_type": tx.class_forgery_type,
                                                    "families": tx.families}}))

    @classmethod
    def from_pretrained(cls, d: str | Path) -> "ToyModel":
        d = Path(d)
        cfg = json.loads((d / "config.json").read_text())
        t = cfg["taxonomy"]
        tx = Taxonomy(tuple(t["classes"]), t["class_family"], t["class_forgery_type"], tuple(t["families"]))
        m = cls(tx, cfg["backbone"], cfg["prefix_layer"], cfg["gaze_dim"])
        m.load_state_dict(torch.load(d / "trainable.pt"), strict=False)
        return m


def _run_layer(layer, h):
    out = layer(h, None)  # transformers 5: (hidden_states, attention_mask) -> hidden_states
    return out[0] if isinstance(out, tuple) else out
