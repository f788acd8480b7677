"""GazeCLIP and the baselines on the tiny-random backbone (CPU, seconds)."""
from __future__ import annotations

import dataclasses
import io
import json
from contextlib import redirect_stdout

import pytest
import torch

from gazeclip.models import create_model, from_pretrained, list_models, model_config
from gazeclip.models.config import GazeCLIPConfig, LinearProbeConfig, PromptConfig, ZeroShotConfig
from gazeclip.models.interface import Batch, ModelOutput
from gazeclip.models.vpe import region_weights
from helpers import TAX, make_batch


def _count(model, pred) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if pred(n))


# ---------------------------------------------------------------- registry and configs

def test_registry_lists_every_yaml_and_builds_typed_configs():
    names = list_models()
    for required in ("gazeclip", "clip-linear-probe", "clip-zeroshot", "clip-lora", "gazeclip-no-gaze",
                     "gazeclip-no-aws", "gazeclip-aws-after", "gazeclip-injector-all", "gazeclip-l4-only"):
        assert required in names
    for n in names:
        assert isinstance(model_config(n), (GazeCLIPConfig, LinearProbeConfig, ZeroShotConfig))
    for cls in (GazeCLIPConfig, LinearProbeConfig, ZeroShotConfig, PromptConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"


def test_clear_errors_for_bad_names_and_overrides(tiny_backbone):
    with pytest.raises(ValueError, match="known models: .*gazeclip"):
        create_model("gazeclop", backbone=tiny_backbone, taxonomy=TAX)
    with pytest.raises(ValueError, match="unknown keys.*lora_rnk.*known keys: .*lora_rank"):
        create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, lora_rnk=4)
    with pytest.raises(ValueError, match="aws='sideways'.*before, after, none"):
        create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, aws="sideways")
    with pytest.raises(ValueError, match=r"in prompts.*unknown keys \[.l9.\]"):
        create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, prompts={"l9": "x"})
    with pytest.raises(ValueError, match="out of range"):
        create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, lora_blocks=[12])
    with pytest.raises(ValueError, match="known backbones"):
        create_model("gazeclip", backbone="nope", taxonomy=TAX)
    with pytest.raises(ValueError, match="prompt_levels"):
        create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, prompt_levels=[5])


# ---------------------------------------------------------------- every model trains correctly

@pytest.mark.parametrize("name", list_models())
def test_forward_backward_grads_and_frozen_weights(name, tiny_backbone):
    torch.manual_seed(0)
    model = create_model(name, backbone=tiny_backbone, taxonomy=TAX).train()
    trainable = model.trainable_parameters()
    frozen = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen, "the towers must be frozen"
    snapshot = {n: p.detach().clone() for n, p in frozen.items()}
    # zero-initialised parts (gates, LoRA B, AWS output, VPE projection) pass no gradient to what
    # lies behind them at step 0 by design; nudge every trainable weight so all of them must
    with torch.no_grad():
        for p in trainable.values():
            p.add_(torch.randn_like(p) * 0.02)
    batch = make_batch(3)
    out = model(batch)
    assert isinstance(out, ModelOutput)
    assert out.attribution_logits.shape == (3, len(TAX.classes))
    assert out.family_logits.shape == (3, len(TAX.families))
    assert out.p_fake.shape == (3,) and bool(((out.p_fake >= 0) & (out.p_fake <= 1)).all())
    assert torch.allclose(out.embedding.norm(dim=-1), torch.ones(3), atol=1e-5)
    losses = model.losses(out, batch)
    assert "total" in losses and torch.isfinite(losses["total"])
    if not trainable:  # clip-zeroshot: nothing to train
        assert name == "clip-zeroshot" and not losses["total"].requires_grad
        return
    losses["total"].backward()
    for n, p in trainable.items():
        assert p.grad is not None, f"{n} got no gradient"
        assert p.grad.abs().sum() > 0, f"{n} got an all-zero gradient"
    for n, p in frozen.items():
        assert p.grad is None, f"frozen {n} got a gradient"
    opt = torch.optim.AdamW(trainable.values(), lr=1e-3, weight_decay=0.1)
    before = {n: p.detach().clone() for n, p in trainable.items()}
    opt.step()
    for n, p in frozen.items():
        assert torch.equal(p, snapshot[n]), f"frozen {n} changed"
    assert any(not torch.equal(p, before[n]) for n, p in trainable.items())


# ---------------------------------------------------------------- identity at initialisation

@pytest.mark.parametrize("query,position", [("cls", "before"), ("all", "after")])
def test_gie_equals_frozen_tower_at_init(tiny_backbone, query, position):
    model = create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, injector_query=query,
                         injector_position=position).eval()
    batch = make_batch(3)
    with torch.no_grad():
        states = model.encode_prefix(batch.pixel_values)
        _, prompts = model.vpe(states, batch.gaze_vector, batch.gaze_pitchyaw, batch.gaze_features,
                               batch.gaze_valid, batch.region_boxes, model.region_prompt_proj(
                                   model.text_embeddings().regions))
        ours, _ = model.gie(states, prompts, batch.gaze_valid)
        ref = tiny_backbone.image_tower(pixel_values=batch.pixel_values).image_embeds
    assert len(model.gie.injectors) == 4 and prompts.abs().sum() > 0
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("aws", ["before", "after"])
def test_lre_equals_text_tower_at_init(tiny_backbone, aws):
    model = create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, aws=aws).eval()
    assert len(model.lre.aws) == len(tiny_backbone.text_tower.layers)
    with torch.no_grad():
        ours = model.lre.text(model.prompt_ids, model.prompt_mask)
        ref = tiny_backbone.text_tower(model.prompt_ids, model.prompt_mask)
    assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1])
    # and once AWS is trained it does change the text (so it is really in the path)
    with torch.no_grad():
        for sel in model.lre.aws:
            sel.fc2.weight.normal_()
        changed = model.lre.text(model.prompt_ids, model.prompt_mask)
    assert not torch.allclose(changed[0], ref[0])


def test_backbone_is_shared_not_modified(tiny_backbone):
    before = {n: type(m) for n, m in tiny_backbone.image_tower.named_modules()}
    text_before = {n: type(m) for n, m in tiny_backbone.text_tower.named_modules()}
    create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX)
    assert {n: type(m) for n, m in tiny_backbone.image_tower.named_modules()} == before
    assert {n: type(m) for n, m in tiny_backbone.text_tower.named_modules()} == text_before
    m = create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX)
    q = tiny_backbone.image_tower.vision_model.encoder.layers[11].self_attn.q_proj.weight
    assert m.gie.blocks.layers[11].self_attn.q_proj.base_layer.weight is q  # shared, no copy in memory


# ---------------------------------------------------------------- ablation switches

def test_each_ablation_removes_exactly_its_modules(tiny_backbone):
    def build(**kw):
        return create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, **kw)

    full = build()
    n_full = full.num_parameters()
    gaze_parts = (_count(full, lambda n: n.startswith(("vpe.", "gie.injectors.", "region_prompt_proj.",
                                                         "expert.vpe_proj.", "expert.fusion_gate"))))
    no_gaze = build(gaze=False)
    assert no_gaze.vpe is None and len(no_gaze.gie.injectors) == 0 and no_gaze.region_prompt_proj is None
    assert n_full - no_gaze.num_parameters() == gaze_parts

    aws_parts = _count(full, lambda n: n.startswith("lre.aws."))
    no_aws = build(aws="none")
    assert aws_parts > 0 and len(no_aws.lre.aws) == 0
    assert n_full - no_aws.num_parameters() == aws_parts
    assert no_aws.lre.text is tiny_backbone.text_tower  # the unmodified tower itself

    after = build(aws="after")
    assert after.num_parameters() == n_full and after.lre.text.layers[0].attention.self.where == "after"

    all_q = build(injector_query="all")
    assert all_q.num_parameters() == n_full and all(i.query == "all" for i in all_q.gie.injectors.values())

    lora = _count(full, lambda n: "lora_" in n)
    half = build(lora_blocks=[-2, -1], injector_blocks=[-4, -3, -2, -1])
    assert n_full - half.num_parameters() == lora // 2
    assert half.prefix_layer == 8 and half.gie.lora_blocks == [10, 11]
    none = build(lora_blocks=[], injector_blocks=[-4, -3, -2, -1])
    assert n_full - none.num_parameters() == lora

    l4 = build(prompt_levels=[4])
    assert n_full - l4.num_parameters() == full.level_logits.numel() == 4
    assert l4.class_index.shape == (len(TAX.classes), 1)

    clip_lora = create_model("clip-lora", backbone=tiny_backbone, taxonomy=TAX)
    assert n_full - clip_lora.num_parameters() == gaze_parts + aws_parts + 4


def test_prefix_layer_follows_adapted_blocks(tiny_backbone):
    assert create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX).prefix_layer == 8
    assert create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, lora_blocks=[5, 11]).prefix_layer == 5
    assert create_model("clip-linear-probe", backbone=tiny_backbone, taxonomy=TAX).prefix_layer == 12
    assert create_model("clip-zeroshot", backbone=tiny_backbone, taxonomy=TAX).prefix_layer == 12


# ---------------------------------------------------------------- prefix cache, batch sizes

@pytest.mark.parametrize("name", ["gazeclip", "clip-linear-probe", "clip-zeroshot"])
def test_prefix_states_path_equals_pixel_path(name, tiny_backbone):
    model = create_model(name, backbone=tiny_backbone, taxonomy=TAX).eval()
    batch = make_batch(3)
    states = model.encode_prefix(batch.pixel_values)
    assert states.shape == (3, 1 + 16, 32) and not states.requires_grad
    cached = dataclasses.replace(batch, pixel_values=None, prefix_states=states)
    with torch.no_grad():
        a, b = model(batch), model(cached)
    for f in ("attribution_logits", "family_logits", "p_fake", "embedding"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f


def test_batch_sizes_1_3_5_and_rows_independent(tiny_backbone):
    model = create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX).eval()
    with torch.no_grad():
        big = model(make_batch(5, seed=1))
        for b in (1, 3, 5):
            out = model(make_batch(b, seed=b))
            assert out.attribution_logits.shape == (b, len(TAX.classes)) and out.p_fake.shape == (b,)
        full = make_batch(5, seed=1)
        for i in (0, 4):  # row 4 has no gaze
            one = Batch(**{f.name: (getattr(full, f.name)[i:i + 1] if getattr(full, f.name) is not None else None)
                           for f in dataclasses.fields(Batch)})
            assert torch.allclose(model(one).attribution_logits[0], big.attribution_logits[i], atol=1e-5)
    loss = model.losses(model(make_batch(1)), make_batch(1))["total"]
    assert torch.isfinite(loss)


def test_prompts_encoded_once_per_step_and_cached_in_eval(tiny_backbone):
    model = create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX)
    calls = []
    model.lre.register_forward_hook(lambda *a: calls.append(1))
    model.train()
    model(make_batch(3))
    model(make_batch(5))
    assert len(calls) == 2  # once per step, not per image
    model.eval()
    with torch.no_grad():
        model(make_batch(3))
        model(make_batch(1))
    assert len(calls) == 3  # cached in eval
    model.train()
    model(make_batch(2))
    assert len(calls) == 4
    model.eval()
    with torch.no_grad():
        model(make_batch(1))
        state = {k: v + 0.1 for k, v in model.state_dict().items() if k.startswith("lre.aws.")}
        model.load_state_dict(state, strict=False)  # as the engine restores its best weights
        model(make_batch(1))
    assert len(calls) == 6  # loading weights drops the cache


# ---------------------------------------------------------------- save / load

@pytest.mark.parametrize("name", ["gazeclip", "clip-linear-probe", "clip-zeroshot"])
def test_save_pretrained_round_trip(name, tiny_backbone, tmp_path):
    torch.manual_seed(1)
    model = create_model(name, backbone=tiny_backbone, taxonomy=TAX)
    with torch.no_grad():  # as if trained: no zero-initialised weight left
        for p in model.trainable_parameters().values():
            p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    batch = make_batch(3)
    with torch.no_grad():
        ref = model(batch)
    model.save_pretrained(tmp_path / "m")
    from safetensors.torch import load_file

    stored = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert set(stored) == set(model.trainable_parameters())  # trainable weights only
    for again in (from_pretrained(tmp_path / "m", backbone=tiny_backbone), from_pretrained(tmp_path / "m")):
        again.eval()
        assert again.model_name == name and again.taxonomy == TAX
        with torch.no_grad():
            out = again(batch)
        assert torch.equal(out.attribution_logits, ref.attribution_logits)
        assert torch.equal(out.p_fake, ref.p_fake)
        assert torch.equal(out.embedding, ref.embedding)


def test_overrides_survive_save_load(tiny_backbone, tmp_path):
    m = create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, lora_rank=4, gaze_feature_dim=2048,
                     prompts={"l4": "a face by {name}."})
    m.save_pretrained(tmp_path)
    again = from_pretrained(tmp_path, backbone=tiny_backbone)
    assert again.config == m.config and again.config.prompts.l4 == "a face by {name}."
    assert "a face by stylegan2." in again.prompts.texts
    with torch.no_grad():
        again.eval()(make_batch(2, gaze_dim=2048))
    with pytest.raises(ValueError, match="gaze_feature_dim=2048"):
        again(make_batch(2, gaze_dim=512))


# ---------------------------------------------------------------- pieces

def test_region_weights_cover_boxes():
    boxes = torch.tensor([[[0.25, 0.0, 0.5, 0.25],      # exactly patch (row 0, col 1) of a 4x4 grid
                           [0.3, 0.3, 0.31, 0.31],      # inside one patch
                           [0.0, 0.0, 0.0, 0.0],        # degenerate: no face
                           [0.0, 0.0, 1.0, 1.0]]])
    w = region_weights(boxes, 4)
    assert torch.allclose(w.sum(-1), torch.ones(1, 4))
    assert w[0, 0, 1] == 1.0
    assert w[0, 1, 5] == 1.0
    assert torch.allclose(w[0, 2], torch.full((16,), 1 / 16)) and torch.allclose(w[0, 3], torch.full((16,), 1 / 16))


def test_info_cli_json_schema(capsys):
    from gazeclip.cli import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["info", "--model", "gazeclip", "--backbone", "tiny-random", "--json"])
    assert rc == 0
    r = json.loads(buf.getvalue())
    assert r["model"] == "gazeclip" and r["backbone"] == "tiny-random"
    assert isinstance(r["total_params"], int) and isinstance(r["trainable_params"], int)
    assert r["gflops_per_image"] > r["clip_image_tower"]["gflops_per_image"] > 0
    assert sum(v["params"] for v in r["modules"].values()) == r["total_params"]
    assert sum(v["trainable"] for v in r["modules"].values()) == r["trainable_params"]
    assert {"gie.lora", "gie.gaze_injectors", "vpe", "lre.aws", "gie.clip_image_tower"} <= set(r["modules"])
    assert main(["info", "--model", "nope", "--backbone", "tiny-random"]) == 2


@pytest.mark.parametrize("overrides", [
    {"fusion": "concat"}, {"detection": "head"}, {"detection": "attribution", "linear_head": True},
    {"level_fusion": "mean"}, {"region_prompts": False}, {"appearance": "none"}, {"gaze_prompt_tokens": "all"},
    {"missing_gaze": "ignore", "injector_gate": "scalar"}, {"aws_layers": [1], "aws_hidden": 3},
    {"aws_scope": "sublayer"}, {"aws": "after", "aws_scope": "sublayer"},
    {"fusion": "add", "fusion_gate_scale": 1.0}, {"injector_gate_scale": 10.0, "gaze_dropout": 0.5},
])
def test_design_switches_run_and_train(tiny_backbone, overrides):
    model = create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, **overrides).train()
    with torch.no_grad():
        for p in model.trainable_parameters().values():
            p.add_(torch.randn_like(p) * 0.02)
    batch = make_batch(3)
    model.losses(model(batch), batch)["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.trainable_parameters().values())


def test_switch_param_counts(tiny_backbone):
    full = create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX)
    ignore = create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, missing_gaze="ignore")
    assert full.num_parameters() - ignore.num_parameters() == full.vpe.missing_gaze.numel()
    scalar = create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, injector_gate="scalar")
    assert full.num_parameters() - scalar.num_parameters() == 4 * (32 - 1)
    head = create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, linear_head=True)
    assert head.num_parameters() - full.num_parameters() == (16 + 1) * len(TAX.classes)


@pytest.fixture(scope="module")
def tiny_aligned_backbone(tiny_backbone):
    """tiny-random's image tower with a tiny CLIP text tower (eos pooling + projection): the shape
    of a user's full CLIP checkpoint (`clip-b16`), where the towers are aligned."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from gazeclip.models.backbones import Backbone, TextTower

    tok = tiny_backbone.tokenizer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        text = CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=tok.vocab_size, hidden_size=24, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=128, projection_dim=16,
            eos_token_id=tok.sep_token_id)).eval()
    tower = TextTower(text.text_model, "eos", 24, 16, text.text_model.encoder.layers, "self_attn",
                      projection=text.text_projection).requires_grad_(False).eval()
    return Backbone("tiny-aligned", tiny_backbone.image_tower, tower, tok, tiny_backbone.preprocess,
                    aligned=True, context_length=64)


@pytest.mark.parametrize("aws", ["before", "after"])
def test_clip_text_tower_path(tiny_aligned_backbone, aws):
    bb = tiny_aligned_backbone
    model = create_model("gazeclip", backbone=bb, taxonomy=TAX, aws=aws).eval()
    assert len(model.lre.aws) == 2 and model.lre.text.layers[0].self_attn.where == aws
    with torch.no_grad():
        ours = model.lre.text(model.prompt_ids, model.prompt_mask)
        ref = bb.text_tower(model.prompt_ids, model.prompt_mask)
        assert torch.equal(ours[1], ref[1])  # identity AWS
        # aligned: the text projection starts as the identity, so the prompts are CLIP's own
        _, emb = model.lre(model.prompt_ids, model.prompt_mask)
        assert torch.allclose(emb, torch.nn.functional.normalize(ref[1], dim=-1), atol=1e-6)
    model.train()
    batch = make_batch(3)
    model.losses(model(batch), batch)["total"].backward()
    assert all(p.grad is not None for p in model.trainable_parameters().values())


def test_zeroshot_on_aligned_backbone_is_clip_cosine(tiny_aligned_backbone):
    bb = tiny_aligned_backbone
    model = create_model("clip-zeroshot", backbone=bb, taxonomy=TAX).eval()
    batch = make_batch(2)
    with torch.no_grad():
        out = model(batch)
        img = torch.nn.functional.normalize(bb.image_tower(pixel_values=batch.pixel_values).image_embeds, dim=-1)
        txt = torch.nn.functional.normalize(bb.text_tower(model.prompt_ids, model.prompt_mask)[1], dim=-1)
        expected = 100.0 * img @ txt[model.class_index[:, 0]].t()
    assert torch.allclose(out.attribution_logits, expected, atol=1e-4)


def test_gated_fusion_is_identity_at_init_and_bounded(tiny_backbone):
    """fusion 'gated': the CLIP embedding alone at init; the VPE term never outweighs it, however
    large the projected VPE embedding grows."""
    model = create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, fusion="gated").eval()
    ref = create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, gaze=False).eval()
    ex = model.expert
    assert ex.fusion_gate is not None and float(ex.gate().detach()) == 0.0 and ex.vpe_proj.weight.abs().sum() > 0
    text = model.text_embeddings()
    image, vpe = torch.randn(5, 16), torch.randn(5, model.config.agpm_dim)
    with torch.no_grad():
        out0 = ex(image, vpe, text)
        assert torch.allclose(out0.embedding, torch.nn.functional.normalize(image, dim=-1), atol=1e-6)
        ex.vpe_proj.weight.mul_(1e4)   # a VPE projection that grew huge
        ex.fusion_gate.fill_(50.0)     # a gate fully open
        out = ex(image, vpe, text)
    img = torch.nn.functional.normalize(image, dim=-1)
    # joint = normalize(img + u), |u| = 1: the image keeps a cosine >= 0 with the joint embedding, and the
    # joint embedding is exactly the mid-point direction of img and u
    u = torch.nn.functional.normalize(ex.vpe_proj(vpe), dim=-1)
    assert torch.allclose(out.embedding, torch.nn.functional.normalize(img + u, dim=-1), atol=1e-5)
    assert bool(((out.embedding * img).sum(-1) >= -1e-6).all())
    assert len(ref.trainable_parameters()) < len(model.trainable_parameters())


def test_gate_scale_multiplies_the_adam_step(tiny_backbone):
    """injector_gate_scale s: one Adam step moves tanh(s * g) about s times as far as with s = 1."""
    moved = {}
    for s in (1.0, 10.0):
        torch.manual_seed(0)
        model = create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, injector_gate_scale=s).train()
        with torch.no_grad():
            for p in model.trainable_parameters().values():
                p.add_(torch.randn_like(p) * 0.02)
            for inj in model.gie.injectors.values():
                inj.gate.zero_()
        batch = make_batch(3)
        model.losses(model(batch), batch)["total"].backward()
        opt = torch.optim.Adam(model.trainable_parameters().values(), lr=1e-3)
        opt.step()
        moved[s] = sum(inj.gate_value().abs().mean().item() for inj in model.gie.injectors.values())
        assert model.gate_openness()["injector8_mean"] > 0
    assert moved[10.0] == pytest.approx(10 * moved[1.0], rel=0.05)


def test_gaze_dropout_only_in_training(tiny_backbone):
    torch.manual_seed(0)
    model = create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX, gaze_dropout=1.0)
    with torch.no_grad():
        for inj in model.gie.injectors.values():
            inj.gate.fill_(1.0)
    batch = make_batch(3)
    dropped = create_model("gazeclip", backbone=tiny_backbone, taxonomy=TAX)
    dropped.load_trainable_state_dict(model.trainable_state_dict())
    no_gaze = make_batch(3)
    no_gaze.gaze_valid = torch.zeros(3, dtype=torch.bool)
    with torch.no_grad():
        train_out = model.train()(batch).embedding          # every face's gaze dropped
        ref = dropped.train()(no_gaze).embedding             # the same faces without gaze
        eval_out = model.eval()(batch).embedding             # eval: gaze used
    assert torch.allclose(train_out, ref, atol=1e-6) and not torch.allclose(eval_out, train_out, atol=1e-4)
