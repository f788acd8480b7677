"""What every model (GazeCLIP and the baselines) has in common: the frozen-prefix cache, the
trainable-weights-only state, train/eval handling of the frozen towers, and the DFAD losses."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone
from .interface import Batch, ModelOutput, Taxonomy
from .saving import save_pretrained


@dataclass
class TextEmbeddings:
    """Prompt embeddings of one step, L2-normalised, in the joint space."""

    classes: torch.Tensor               # (C, E)
    families: torch.Tensor              # (F, E)
    regions: torch.Tensor | None = None  # (R, E)


class DFADModel(nn.Module):
    """Base class. Subclasses set `self.gie` (a GazeAwareImageEncoder) and implement `forward`.

    - `prefix_layer`: index of the first adapted image block; the blocks below are frozen.
    - `encode_prefix(pixel_values)`: the frozen hidden states entering `prefix_layer` (no grad),
      which the engine may cache on disk and pass back as `Batch.prefix_states`.
    - `losses(output, batch)`: a dict of named loss terms with "total".
    """

    architecture: str = ""

    def __init__(self, backbone: Backbone, taxonomy: Taxonomy, config, name: str):
        super().__init__()
        self.model_name = name
        self.backbone_name = backbone.name
        self.aligned = backbone.aligned
        self.preprocess = backbone.preprocess  # the engine turns images into pixel_values with it
        self.taxonomy = taxonomy
        self.config = config
        self._text_cache: TextEmbeddings | None = None

    # ----- capabilities (models/interface.py)
    supports_prefix_cache = True

    @property
    def gaze_feature_dim(self) -> int | None:
        return getattr(self.config, "gaze_feature_dim", None)

    @property
    def image_tower(self) -> nn.Module:
        return self.gie.tower

    # ----- frozen prefix
    @property
    def prefix_layer(self) -> int:
        return self.gie.prefix_layer

    def encode_prefix(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Frozen hidden states (B, T, W) entering block `prefix_layer`; no gradient."""
        return self.gie.encode_prefix(pixel_values)

    def prefix_states(self, batch: Batch) -> torch.Tensor:
        ref = self.gie.vision.pre_layrnorm.weight
        if batch.prefix_states is not None:
            return batch.prefix_states.to(device=ref.device, dtype=ref.dtype)
        if batch.pixel_values is None:
            raise ValueError("Batch needs pixel_values or prefix_states")
        return self.encode_prefix(batch.pixel_values.to(device=ref.device))

    # ----- frozen vs trainable
    def frozen_modules(self) -> list[nn.Module]:
        """Modules kept in eval mode whatever train() says (frozen towers: no dropout)."""
        return [self.gie.tower]

    def train(self, mode: bool = True):
        if mode and getattr(self, "inference_only", False):
            raise RuntimeError(f"{self.model_name}: this copy was prepared for inference (LoRA merged); "
                               "load the saved model again to train it")
        leaving_training = self.training and not mode
        super().train(mode)
        for m in self.frozen_modules():
            m.eval()
        # eval() -> eval() keeps the cached prompt embeddings (nothing can have changed them)
        if mode or leaving_training:
            self._text_cache = None
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._text_cache = None  # new weights: the cached prompt embeddings are stale
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _apply(self, fn, *args, **kwargs):
        self._text_cache = None  # device/dtype moves invalidate cached prompt embeddings
        return super()._apply(fn, *args, **kwargs)

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.trainable_parameters().items()}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        own = self.trainable_parameters()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"trainable weights do not match the model: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
        with torch.no_grad():
            for n, p in own.items():
                if p.shape != state[n].shape:
                    raise ValueError(f"weight {n} has shape {tuple(state[n].shape)}, model expects {tuple(p.shape)}")
                p.copy_(state[n])
        self._text_cache = None

    def save_pretrained(self, path: str | Path, run_settings: dict | None = None) -> Path:
        return save_pretrained(self, path, run_settings)

    # ----- prompt embeddings, once per step
    def text_embeddings(self) -> TextEmbeddings:
        """Computed once per forward in training; cached in eval mode (and when nothing is trained)."""
        if self._text_cache is not None and (not self.training or not self._text_trainable()):
            return self._text_cache
        emb = self._compute_text_embeddings()
        if not self.training or not self._text_trainable():
            self._text_cache = TextEmbeddings(*(t.detach() if t is not None else None
                                                for t in (emb.classes, emb.families, emb.regions)))
        return emb

    def _text_trainable(self) -> bool:
        return True

    def _compute_text_embeddings(self) -> TextEmbeddings:
        raise NotImplementedError

    # ----- losses
    def loss_weights(self) -> tuple[float, float, float, float]:
        """(attribution, contrastive, family, detection)."""
        c = self.config
        return (c.loss_attribution, getattr(c, "loss_contrastive", 0.0), c.loss_family, c.loss_detection)

    def logit_scale(self) -> torch.Tensor | None:
        return None

    def losses(self, output: ModelOutput, batch: Batch) -> dict[str, torch.Tensor]:
        return dfad_losses(output, batch, *self.loss_weights(), logit_scale=self.logit_scale())


def attribution_detection_logit(attribution_logits: torch.Tensor) -> torch.Tensor:
    """logit(1 - p(real)) = logsumexp(fake-class logits) - real logit, stable."""
    return torch.logsumexp(attribution_logits[:, 1:], dim=1) - attribution_logits[:, 0]


def _zero(t: torch.Tensor) -> torch.Tensor:
    return t.sum() * 0.0  # keeps every parameter in the graph (DDP) when a term has no targets


def contrastive_loss(image: torch.Tensor, class_text: torch.Tensor, labels: torch.Tensor,
                     scale: torch.Tensor) -> torch.Tensor:
    """Symmetric image-text InfoNCE over the batch; images of the same class are all positives.

    design choice, not from the paper: the texts of a batch are the class prompts of its labels,
    with multi-positive (soft) targets where classes repeat.
    """
    text = class_text[labels]
    logits = scale * image @ text.t()
    pos = (labels[:, None] == labels[None, :]).to(logits.dtype)
    target = pos / pos.sum(1, keepdim=True)
    i2t = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    t2i = -(target * F.log_softmax(logits.t(), dim=1)).sum(1).mean()
    return (i2t + t2i) / 2


def dfad_losses(out: ModelOutput, batch: Batch, w_attr: float, w_con: float, w_fam: float, w_det: float,
                logit_scale: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Attribution CE, image-text contrastive, family CE and detection BCE; each term only where
    the batch has its targets (labels -1 = not a training class)."""
    terms: dict[str, torch.Tensor] = {}
    logits = out.attribution_logits
    if batch.labels is not None:
        labels = batch.labels.to(logits.device)
        keep = labels >= 0
        if keep.any():
            terms["attribution"] = F.cross_entropy(logits[keep], labels[keep])
            if w_con and out.class_embeddings is not None and logit_scale is not None:
                terms["contrastive"] = contrastive_loss(out.embedding[keep], out.class_embeddings, labels[keep],
                                                        logit_scale)
        else:
            terms["attribution"] = _zero(logits)
    if batch.family is not None:
        fam = batch.family.to(logits.device)
        keep = fam >= 0
        terms["family"] = (F.cross_entropy(out.family_logits[keep], fam[keep]) if keep.any()
                           else _zero(out.family_logits))
    if batch.is_fake is not None:
        z = out.detection_logit if out.detection_logit is not None else torch.logit(out.p_fake, eps=1e-6)
        terms["detection"] = F.binary_cross_entropy_with_logits(z, batch.is_fake.to(z.device, z.dtype))
    weights = {"attribution": w_attr, "contrastive": w_con, "family": w_fam, "detection": w_det}
    total = _zero(logits)
    for k, v in terms.items():
        if weights[k]:
            total = total + weights[k] * v
    terms["total"] = total
    return terms


def capped_scale(log_scale: torch.Tensor) -> torch.Tensor:
    return log_scale.clamp(max=math.log(100.0)).exp()
