"""Baselines in the same interface as GazeCLIP, so one evaluation compares them.

- `clip-linear-probe`: frozen CLIP image embedding + linear heads (as UnivFD). Nothing of the
  image tower is adapted, so `prefix_layer` is the last block: the engine may cache the final
  hidden states and train the heads alone.
- `clip-zeroshot`: cosine to prompt embeddings; nothing is trained (no trainable parameters: the
  engine should evaluate it without a training loop). On a non-aligned backbone
  (`clip-b16-offline`, `tiny-random`) its text projection is a fixed random map, so it runs but its
  numbers are meaningless: use `clip-b16` / `clip-l14` from a user checkpoint.
- `clip-lora` is GazeCLIP with gaze, AWS and the extra prompt levels switched off (its YAML).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone
from .base import DFADModel, TextEmbeddings, attribution_detection_logit
from .config import LinearProbeConfig, ZeroShotConfig
from .gie import GazeAwareImageEncoder
from .interface import Batch, ModelOutput, Taxonomy
from .lre import LanguageRefinementEncoder
from .prompts import build_prompts


class ClipLinearProbe(DFADModel):
    architecture = "clip-linear-probe"

    def __init__(self, backbone: Backbone, taxonomy: Taxonomy, config: LinearProbeConfig | None = None,
                 name: str = "clip-linear-probe"):
        config = config or LinearProbeConfig()
        super().__init__(backbone, taxonomy, config, name)
        self.gie = GazeAwareImageEncoder(backbone.image_tower, [])
        e = backbone.image_embed_dim
        self.head = nn.Linear(e, len(taxonomy.classes))
        self.family_head = nn.Linear(e, len(taxonomy.families))
        self.binary = nn.Linear(e, 1) if config.detection in ("fused", "head") else None

    def forward(self, batch: Batch) -> ModelOutput:
        image, _ = self.gie(self.prefix_states(batch))
        emb = F.normalize(image, dim=-1)  # UnivFD's probe sees the L2-normalised CLIP embedding
        attribution = self.head(emb)
        if self.config.detection == "head":
            z = self.binary(emb).squeeze(-1)
        else:
            z = attribution_detection_logit(attribution)
            if self.binary is not None:
                z = z + self.binary(emb).squeeze(-1)
        return ModelOutput(attribution_logits=attribution, family_logits=self.family_head(emb),
                           p_fake=torch.sigmoid(z), embedding=emb, detection_logit=z)


class ClipZeroShot(DFADModel):
    architecture = "clip-zeroshot"

    def __init__(self, backbone: Backbone, taxonomy: Taxonomy, config: ZeroShotConfig | None = None,
                 name: str = "clip-zeroshot"):
        config = config or ZeroShotConfig()
        super().__init__(backbone, taxonomy, config, name)
        self.gie = GazeAwareImageEncoder(backbone.image_tower, [])
        self.lre = LanguageRefinementEncoder(backbone.text_tower, backbone.image_embed_dim, backbone.aligned,
                                             aws="none", projection="fixed", projection_seed=config.projection_seed)
        self.prompts = build_prompts(config.prompts, taxonomy, config.prompt_levels, regions=False)
        tok = backbone.tokenize(list(self.prompts.texts))
        self.register_buffer("prompt_ids", tok["input_ids"], persistent=False)
        self.register_buffer("prompt_mask", tok["attention_mask"], persistent=False)
        self.register_buffer("class_index", self.prompts.class_index, persistent=False)
        self.register_buffer("family_index", self.prompts.family_index, persistent=False)

    def frozen_modules(self) -> list[nn.Module]:
        return [self.gie.tower, self.lre.text]

    def _text_trainable(self) -> bool:
        return False

    def loss_weights(self) -> tuple[float, float, float, float]:
        return (1.0, 0.0, 1.0, 1.0)  # reported for comparison only: nothing here has a gradient

    @torch.no_grad()
    def _compute_text_embeddings(self) -> TextEmbeddings:
        _, emb = self.lre(self.prompt_ids, self.prompt_mask)
        classes = F.normalize(emb[self.class_index].mean(1), dim=-1)  # prompt ensembling over levels
        return TextEmbeddings(classes, emb[self.family_index])

    def forward(self, batch: Batch) -> ModelOutput:
        image, _ = self.gie(self.prefix_states(batch))
        emb = F.normalize(image, dim=-1)
        text = self.text_embeddings()
        s = self.config.logit_scale
        attribution = s * emb @ text.classes.t()
        z = attribution_detection_logit(attribution)
        return ModelOutput(attribution_logits=attribution, family_logits=s * emb @ text.families.t(),
                           p_fake=torch.sigmoid(z), embedding=emb, detection_logit=z,
                           class_embeddings=text.classes)
