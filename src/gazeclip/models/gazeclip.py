"""GazeCLIP: VPE/AGPM + GIE (LoRA, Gaze Injector) + LRE (AWS, multi-level prompts) + DFAD expert.

    prefix states (frozen CLIP blocks < prefix_layer; cacheable)
        ├─► VPE/AGPM([cls, gaze tokens, region-pooled appearance tokens]) ─► VPE emb, gaze prompts
        └─► GIE blocks >= prefix_layer (LoRA q/v; injector: class token ⟶ gaze prompts) ─► image emb
    LRE(prompts: L1..L4 per class, L3 per family, regions) ─► class / family / region embeddings
    DFAD expert: joint = norm(image emb ⊕ VPE emb); attribution = scale·cos(joint, classes) [+ head];
        family = scale·cos(joint, families); detection = logit(1 − p(real)) + binary head
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone
from .base import DFADModel, TextEmbeddings, attribution_detection_logit, capped_scale
from .config import GazeCLIPConfig
from .gie import GazeAwareImageEncoder
from .interface import REGIONS, Batch, ModelOutput, Taxonomy
from .lre import LanguageRefinementEncoder
from .prompts import build_prompts
from .vpe import VisualPerceptionEncoder


class DFADExpert(nn.Module):
    """Fuses GIE and VPE embeddings and scores them against the prompt embeddings."""

    def __init__(self, embed_dim: int, vpe_dim: int, fusion: str, num_classes: int, linear_head: bool,
                 detection: str, logit_scale_init: float, fusion_gate_scale: float = 1.0):
        super().__init__()
        self.fusion = fusion
        self.detection = detection
        self.vpe_proj = self.fuse = self.fusion_gate = None
        self.fusion_gate_scale = fusion_gate_scale
        if vpe_dim:
            # design choice, not from the paper: the VPE branch starts switched off (zero weights or a
            # zero gate), so at initialisation the joint embedding is the CLIP image embedding
            if fusion == "gated":
                # design choice, not from the paper: a bounded gate on a unit-norm VPE term, so the VPE
                # can never outweigh the (unit-norm) CLIP embedding; the projection keeps its random
                # init, else gate and projection would both start with a zero gradient
                self.vpe_proj = nn.Linear(vpe_dim, embed_dim)
                self.fusion_gate = nn.Parameter(torch.zeros(1))
            elif fusion == "add":
                self.vpe_proj = nn.Linear(vpe_dim, embed_dim)
                nn.init.zeros_(self.vpe_proj.weight)
                nn.init.zeros_(self.vpe_proj.bias)
            else:
                self.fuse = nn.Linear(embed_dim + vpe_dim, embed_dim)
                with torch.no_grad():
                    self.fuse.weight.zero_()
                    self.fuse.weight[:, :embed_dim].copy_(torch.eye(embed_dim))
                    self.fuse.bias.zero_()
        self.log_scale = nn.Parameter(torch.tensor(float(logit_scale_init)).log())
        self.head = nn.Linear(embed_dim, num_classes) if linear_head else None
        self.binary = nn.Linear(embed_dim, 1) if detection in ("fused", "head") else None

    def scale(self) -> torch.Tensor:
        return capped_scale(self.log_scale)

    def gate(self) -> torch.Tensor:
        return torch.tanh(self.fusion_gate_scale * self.fusion_gate)

    def forward(self, image: torch.Tensor, vpe: torch.Tensor | None, text: TextEmbeddings) -> ModelOutput:
        image = F.normalize(image, dim=-1)
        if vpe is not None:
            if self.fusion_gate is not None:
                joint = image + self.gate() * F.normalize(self.vpe_proj(vpe), dim=-1)
            elif self.fuse is None:
                joint = image + self.vpe_proj(vpe)
            else:
                joint = self.fuse(torch.cat([image, vpe], -1))
        else:
            joint = image
        joint = F.normalize(joint, dim=-1)
        s = self.scale()
        attribution = s * joint @ text.classes.t()
        if self.head is not None:
            attribution = attribution + self.head(joint)
        family = s * joint @ text.families.t()
        if self.detection == "head":
            z = self.binary(joint).squeeze(-1)
        else:
            z = attribution_detection_logit(attribution)
            if self.detection == "fused":
                z = z + self.binary(joint).squeeze(-1)
        return ModelOutput(attribution_logits=attribution, family_logits=family, p_fake=torch.sigmoid(z),
                           embedding=joint, detection_logit=z, class_embeddings=text.classes)


class GazeCLIP(DFADModel):
    architecture = "gazeclip"

    def __init__(self, backbone: Backbone, taxonomy: Taxonomy, config: GazeCLIPConfig | None = None,
                 name: str = "gazeclip"):
        config = config or GazeCLIPConfig()
        super().__init__(backbone, taxonomy, config, name)
        c = config
        if len(taxonomy.classes) < 2:
            raise ValueError("the taxonomy needs 'real' and at least one generator class")
        embed_dim = backbone.image_embed_dim
        use_app = c.gaze and c.appearance != "none"
        injector_blocks = (c.lora_blocks if c.injector_blocks is None else c.injector_blocks) if c.gaze else []
        self.gie = GazeAwareImageEncoder(
            backbone.image_tower, c.lora_blocks, c.lora_rank, c.lora_alpha, c.lora_dropout, c.lora_targets,
            injector_blocks, c.agpm_dim, c.injector_heads, c.injector_query, c.injector_position, c.injector_gate,
            c.missing_gaze == "mask", c.injector_gate_scale)
        self.vpe = (VisualPerceptionEncoder(backbone.image_width, c.gaze_feature_dim, c.agpm_dim, c.agpm_layers,
                                            c.agpm_heads, c.gaze_feature_tokens, use_app, c.gaze_prompt_tokens,
                                            c.missing_gaze == "mask")
                    if c.gaze else None)
        use_region_prompts = use_app and c.region_prompts
        self.lre = LanguageRefinementEncoder(backbone.text_tower, embed_dim, backbone.aligned, c.aws, c.aws_hidden,
                                             c.aws_layers, c.aws_scope)
        self.region_prompt_proj = nn.Linear(embed_dim, c.agpm_dim) if use_region_prompts else None
        self.region_embed = (nn.Parameter(torch.randn(len(REGIONS), c.agpm_dim) * 0.02)
                             if use_app and not use_region_prompts else None)
        self.prompts = build_prompts(c.prompts, taxonomy, c.prompt_levels, regions=use_region_prompts)
        tok = backbone.tokenize(list(self.prompts.texts))
        self.register_buffer("prompt_ids", tok["input_ids"], persistent=False)
        self.register_buffer("prompt_mask", tok["attention_mask"], persistent=False)
        self.register_buffer("class_index", self.prompts.class_index, persistent=False)
        self.register_buffer("family_index", self.prompts.family_index, persistent=False)
        self.register_buffer("region_index", self.prompts.region_index, persistent=False)
        n_levels = len(self.prompts.levels)
        self.level_logits = (nn.Parameter(torch.zeros(n_levels))
                             if c.level_fusion == "learned" and n_levels > 1 else None)
        self.expert = DFADExpert(embed_dim, c.agpm_dim if c.gaze else 0, c.fusion, len(taxonomy.classes),
                                 c.linear_head, c.detection, c.logit_scale_init, c.fusion_gate_scale)

    def frozen_modules(self) -> list[nn.Module]:
        return [self.gie.tower, self.lre.text]

    @torch.no_grad()
    def gate_openness(self) -> dict[str, float]:
        """How far the gaze path's gates are open: mean and max |tanh| per injector and the fusion gate."""
        out = {}
        for k, inj in self.gie.injectors.items():
            g = inj.gate_value().abs()
            out[f"injector{k}_mean"], out[f"injector{k}_max"] = float(g.mean()), float(g.max())
        if self.expert.fusion_gate is not None:
            out["fusion"] = float(self.expert.gate().abs())
        return out

    def logit_scale(self) -> torch.Tensor:
        return self.expert.scale()

    def _compute_text_embeddings(self) -> TextEmbeddings:
        _, emb = self.lre(self.prompt_ids, self.prompt_mask)
        per_level = emb[self.class_index]  # (C, L, E)
        if self.level_logits is not None:
            w = torch.softmax(self.level_logits, 0)
            classes = (per_level * w[None, :, None]).sum(1)
        else:
            classes = per_level.mean(1)
        regions = emb[self.region_index] if self.region_index.numel() else None
        return TextEmbeddings(F.normalize(classes, dim=-1), emb[self.family_index], regions)

    def forward(self, batch: Batch) -> ModelOutput:
        states = self.prefix_states(batch)
        text = self.text_embeddings()
        vpe_emb = prompts = valid = None
        if self.vpe is not None:
            dev = states.device
            valid = batch.gaze_valid.to(dev).bool()
            if self.training and self.config.gaze_dropout > 0:
                # design choice, not from the paper: gaze-token dropout (gaze_dropout), so the image path
                # does not come to lean on gaze that is unreliable on many fakes
                valid = valid & (torch.rand(valid.shape, device=dev) >= self.config.gaze_dropout)
            if self.region_prompt_proj is not None:
                region = self.region_prompt_proj(text.regions)
            else:
                region = self.region_embed
            vpe_emb, prompts = self.vpe(states, batch.gaze_vector.to(dev), batch.gaze_pitchyaw.to(dev),
                                        batch.gaze_features.to(dev), valid, batch.region_boxes.to(dev), region)
        image, _ = self.gie(states, prompts, valid)
        return self.expert(image, vpe_emb, text)
