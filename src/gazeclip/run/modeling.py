"""The engine's view of models: create one for a run, load a trained run, and run it over data.

Models come from the registry (`gazeclip.models.create_model`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models.interface import Taxonomy
from .config import TrainConfig
from ..errors import MissingFileError, UsageError


def create_run_model(cfg: TrainConfig, taxonomy: Taxonomy) -> nn.Module:
    from ..models import create_model as registry_create

    kw = dict(cfg.model_overrides)
    if cfg.clip:
        kw["clip"] = cfg.clip
    return registry_create(cfg.model, backbone=cfg.backbone, taxonomy=taxonomy, **kw)


def load_pretrained(model_dir: str | Path, clip: str | None = None) -> nn.Module:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise MissingFileError(f"{model_dir}: no trained model; train first with `gazeclip train --out RUN`")
    from ..models import from_pretrained

    return from_pretrained(model_dir, clip=clip)


def load_model_weights(model: nn.Module, model_dir: str | Path) -> None:
    """Load the trainable weights a `save_pretrained` folder holds into an existing model (no rebuild)."""
    model_dir = Path(model_dir)
    if not (model_dir / "model.safetensors").is_file():
        raise MissingFileError(f"{model_dir}: no saved weights (model.safetensors)")
    from ..models.registry import read_pretrained_weights

    model.load_trainable_state_dict(read_pretrained_weights(model_dir))  # checked against its digest


def trainable_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    names = trainable_names(model)
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in names}


def prefix_id(model: nn.Module) -> str:
    """Names the frozen prefix: same id <=> same hidden states for the same pixels."""
    import hashlib

    name = getattr(model, "backbone_name", None) or getattr(getattr(model, "backbone", None), "name", "unknown")
    # a user checkpoint (clip-b16 / clip-l14) is identified by its frozen weights, not its name
    tower = model.image_tower
    probe = tower.vision_model.embeddings.patch_embedding.weight.detach().float().cpu().numpy().tobytes()[:65536]
    digest = hashlib.sha256(probe).hexdigest()[:12]
    # states computed in bf16 (an inference copy, gazeclip.models.inference) never mix with fp32 ones
    dt = getattr(getattr(model, "gie", None), "compute_dtype", None)
    suffix = f"-{str(dt).removeprefix('torch.')}" if dt is not None else ""
    return f"{name}-{digest}-L{model.prefix_layer}-S{model.preprocess.size}{suffix}"


@dataclass
class Predictions:
    """Per-item model outputs over a SampleSet, as numpy arrays (saved as predictions.npz)."""

    attribution_logits: np.ndarray
    family_logits: np.ndarray
    p_fake: np.ndarray
    embedding: np.ndarray

    def save(self, path: Path, **extra) -> None:
        import io

        from .utils import atomic_write_bytes

        buf = io.BytesIO()
        np.savez_compressed(buf, attribution_logits=self.attribution_logits, family_logits=self.family_logits,
                            p_fake=self.p_fake, embedding=self.embedding, **extra)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> tuple["Predictions", dict]:
        from ..errors import DamagedFileError

        try:
            with np.load(path, allow_pickle=False) as z:
                p = cls(z["attribution_logits"], z["family_logits"], z["p_fake"], z["embedding"])
                extra = {k: z[k] for k in z.files
                         if k not in ("attribution_logits", "family_logits", "p_fake", "embedding")}
        except Exception as e:  # noqa: BLE001 - zip, CRC, pickle and missing-key errors all mean "damaged"
            raise DamagedFileError(path, f"damaged predictions ({type(e).__name__}: {str(e)[:80]})",
                                   "delete it and run `gazeclip eval` again") from None
        return p, extra


def fill_pending(model: nn.Module, batch, pending) -> None:
    if pending is not None:
        with torch.no_grad():
            states = model.encode_prefix(pending.pixels.to(batch.prefix_states.device))
        batch.prefix_states[pending.rows] = states.to(batch.prefix_states.dtype)


@torch.no_grad()
def run_model(model: nn.Module, dataset, batch_size: int = 32, device: torch.device | str = "cpu",
              with_loss: bool = False, progress: bool = False, desc: str = "predict"):
    """Model outputs over a FaceDataset, in order. Returns Predictions (and the mean loss)."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from ..data.dataset import collate

    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    outs = {k: [] for k in ("attribution_logits", "family_logits", "p_fake", "embedding")}
    loss_sum, n = 0.0, 0
    for batch, pending, _ in tqdm(loader, desc=desc, disable=not progress, leave=False):
        batch = batch.to(device)
        fill_pending(model, batch, pending)
        out = model(batch)
        for k in outs:
            outs[k].append(getattr(out, k).float().cpu())
        if with_loss:
            loss_sum += float(model.losses(out, batch)["total"]) * len(batch)
            n += len(batch)
    model.train(was_training)
    if not outs["p_fake"]:
        raise UsageError("no items to run the model on")
    preds = Predictions(**{k: torch.cat(v).numpy() for k, v in outs.items()})
    return (preds, loss_sum / max(n, 1)) if with_loss else preds


@torch.no_grad()
def run_samples(model, samples, preprocess, batch_size: int = 32, device: torch.device | str = "cpu") -> Predictions:
    """Model outputs over a SampleSet (predict): whole batches preprocessed at once, no DataLoader,
    no labels, no feature cache. `model` is a torch model or an `OnnxModel`."""
    from ..models.interface import Batch

    if getattr(model, "training", False):
        model.eval()
    outs = {k: [] for k in ("attribution_logits", "family_logits", "p_fake", "embedding")}
    t = torch.from_numpy
    for s in range(0, len(samples), batch_size):
        sl = slice(s, s + batch_size)
        batch = Batch(pixel_values=preprocess(samples.crops[sl]), gaze_vector=t(samples.gaze_vector[sl]),
                      gaze_pitchyaw=t(samples.gaze_pitchyaw[sl]), gaze_features=t(samples.gaze_features[sl]),
                      gaze_valid=t(samples.gaze_valid[sl]), region_boxes=t(samples.region_boxes[sl])).to(device)
        out = model(batch)
        for k in outs:
            outs[k].append(getattr(out, k).float().cpu())
    if not outs["p_fake"]:
        raise UsageError("no items to run the model on")
    return Predictions(**{k: torch.cat(v).numpy() for k, v in outs.items()})

