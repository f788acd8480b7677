"""GazeCLIP on the real pulled towers (CLIP ViT-B/16 image tower + MiniLM-L6 text tower)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from gazeclip.models import create_model
from helpers import TAX, make_batch


@pytest.mark.real
def test_gazeclip_on_clip_b16_offline(real_weights):
    from gazeclip.models.backbones import create_backbone

    bb = create_backbone("clip-b16-offline")
    torch.manual_seed(0)
    model = create_model("gazeclip", backbone=bb, taxonomy=TAX).eval()
    assert model.prefix_layer == 8 and len(model.gie.lora_blocks) == 4
    small = make_batch(2)
    batch = dataclasses.replace(small, pixel_values=torch.randn(2, 3, 224, 224))
    with torch.no_grad():
        states = model.encode_prefix(batch.pixel_values)
        assert states.shape == (2, 197, 768)
        ref = bb.image_tower(pixel_values=batch.pixel_values).image_embeds
        _, prompts = model.vpe(states, batch.gaze_vector, batch.gaze_pitchyaw, batch.gaze_features,
                               batch.gaze_valid, batch.region_boxes,
                               model.region_prompt_proj(model.text_embeddings().regions))
        ours, _ = model.gie(states, prompts, batch.gaze_valid)
        assert torch.equal(ours, ref)  # zero gates + zero LoRA B: the frozen CLIP exactly
        text = model.lre.text(model.prompt_ids, model.prompt_mask)
        text_ref = bb.text_tower(model.prompt_ids, model.prompt_mask)
        assert torch.equal(text[1], text_ref[1])  # identity AWS: the MiniLM tower exactly
        cached = model(dataclasses.replace(batch, pixel_values=None, prefix_states=states))
    model.train()
    frozen = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    out = model(dataclasses.replace(batch, pixel_values=None, prefix_states=states))
    model.losses(out, batch)["total"].backward()
    assert all(p.grad is not None for p in model.trainable_parameters().values())
    assert all(p.grad is None for p in frozen.values())
    assert torch.isfinite(cached.attribution_logits).all() and cached.p_fake.shape == (2,)
