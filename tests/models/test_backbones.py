"""Every registered backbone builds and runs forward on CPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gazeclip.models.backbones import create_backbone, list_backbones


def _forward(bb):
    img = np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)
    x = bb.preprocess([img, img[:, ::-1]])
    assert x.shape == (2, 3, bb.preprocess.size, bb.preprocess.size)
    with torch.no_grad():
        out = bb.image_tower(pixel_values=x)
        states, pooled = bb.text_tower(**bb.tokenize(["a real face", "a face made by a diffusion model"]))
    assert out.image_embeds.shape == (2, bb.image_embed_dim)
    assert out.last_hidden_state.shape[-1] == bb.image_width
    assert pooled.shape == (2, bb.text_tower.embed_dim) and states.shape[-1] == bb.text_tower.width
    assert torch.isfinite(out.image_embeds).all() and torch.isfinite(pooled).all()
    assert not any(p.requires_grad for p in bb.image_tower.parameters())
    assert not any(p.requires_grad for p in bb.text_tower.parameters())


def test_registry_lists_and_rejects_unknown():
    assert {"clip-b16-offline", "clip-b16", "clip-l14", "tiny-random"} <= set(list_backbones())
    with pytest.raises(ValueError, match="known backbones: .*tiny-random"):
        create_backbone("clip-b99")


def test_tiny_random_is_deterministic():
    a, b = create_backbone("tiny-random"), create_backbone("tiny-random")
    for (k, v), (_, w) in zip(a.image_tower.state_dict().items(), b.image_tower.state_dict().items()):
        assert torch.equal(v, w), k
    _forward(a)


def test_user_checkpoint_backbones_need_a_path():
    for name in ("clip-b16", "clip-l14"):
        with pytest.raises(ValueError, match="--clip"):
            create_backbone(name)


@pytest.mark.real
def test_clip_b16_offline_forward(real_weights):
    _forward(create_backbone("clip-b16-offline"))
