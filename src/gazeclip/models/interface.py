"""The common detector interface (as DeepfakeBench's, but typed): every model, GazeCLIP and the
baselines alike, takes a `Batch` and returns a `ModelOutput`, so one engine trains, evaluates and
compares them all.

What a model declares so that the modes need not probe it (DFADModel, the ONNX/OpenVINO runtimes):
    preprocess              ImagePreprocess: image -> pixel_values (size, mean, std)
    gaze_feature_dim        int | None: width of the gaze features it reads (None: it reads none)
    supports_prefix_cache   bool: it accepts `Batch.prefix_states` from the frozen-prefix cache
                            (then also `prefix_layer`, `encode_prefix(pixels)` and `image_tower`)
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

from ..records import REGIONS  # noqa: F401 (the region order, one definition)


@dataclass(frozen=True)
class Taxonomy:
    """The label space a model is built for.

    `classes[0]` is always "real"; the rest are the generators seen in training. `families` spans
    every family the benchmark knows (including families of generators never seen), so an unseen
    generator can still be given its family through the family prompts.
    """

    classes: tuple[str, ...]
    class_family: dict[str, str]          # class -> family ("real" -> "real")
    class_forgery_type: dict[str, str]    # class -> forgery type ("real" -> "real")
    families: tuple[str, ...]             # families[0] == "real"

    def __post_init__(self):
        if not self.classes or self.classes[0] != "real":
            raise ValueError("Taxonomy.classes must start with 'real'")
        if not self.families or self.families[0] != "real":
            raise ValueError("Taxonomy.families must start with 'real'")

    def family_index(self, cls: str) -> int:
        return self.families.index(self.class_family[cls])

    def to_dict(self) -> dict:
        """The JSON form saved with a model and a run (`taxonomy.json`, `config.json`)."""
        return {"classes": list(self.classes), "class_family": dict(self.class_family),
                "class_forgery_type": dict(self.class_forgery_type), "families": list(self.families)}

    @classmethod
    def from_dict(cls, d: dict) -> "Taxonomy":
        return cls(tuple(d["classes"]), dict(d["class_family"]), dict(d["class_forgery_type"]), tuple(d["families"]))


@dataclass
class Batch:
    """One mini-batch. Tensors are batch-first; B may be any size, including 1.

    `prefix_states` (optional) are the frozen image tower's hidden states entering the first
    adapted block, from the engine's feature cache; when given, `pixel_values` may be None.
    """

    pixel_values: torch.Tensor | None      # (B, 3, S, S), CLIP-normalised face crops
    gaze_vector: torch.Tensor              # (B, 3) unit gaze in the camera frame
    gaze_pitchyaw: torch.Tensor            # (B, 2) radians, normalised frame
    gaze_features: torch.Tensor            # (B, Dg) penultimate features of the gaze estimator
    gaze_valid: torch.Tensor               # (B,) bool: False where no face/gaze was found (zeros above)
    region_boxes: torch.Tensor             # (B, len(REGIONS), 4) x0, y0, x1, y1 in [0, 1] of the crop
    labels: torch.Tensor | None = None     # (B,) long class index into Taxonomy.classes; -1 = not a train class
    family: torch.Tensor | None = None     # (B,) long index into Taxonomy.families
    is_fake: torch.Tensor | None = None    # (B,) float 0/1
    prefix_states: torch.Tensor | None = None  # (B, T, W) cached hidden states

    def __len__(self) -> int:
        return self.gaze_vector.shape[0]

    def to(self, device: torch.device | str) -> "Batch":
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = v.to(device) if isinstance(v, torch.Tensor) else v
        return Batch(**kw)


@dataclass
class ModelOutput:
    attribution_logits: torch.Tensor       # (B, C) over Taxonomy.classes
    family_logits: torch.Tensor            # (B, F) over Taxonomy.families
    p_fake: torch.Tensor                   # (B,) in [0, 1]
    embedding: torch.Tensor                # (B, E) joint image embedding (L2-normalised), for t-SNE/clustering
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    # Added by the models issue (optional, so older code keeps working):
    detection_logit: torch.Tensor | None = None    # (B,) logit of p_fake; use it for BCE (stable)
    class_embeddings: torch.Tensor | None = None   # (C, E) L2-normalised class prompt embeddings of this step
