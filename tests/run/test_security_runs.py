"""Run folders and ONNX exports under tampering (issue 23, items 2, 3, 8, 9, 13, 15 and the minor
one): the weights digest cannot be removed to skip the check; a missing or version-1 calibration
is refused with `gazeclip calibrate --run RUN`, which fixes it; `faces:` is tied to the model; an
export pins every file by sha256, keeps its paths inside its folder and bounds every number; the
int8 file's measured error is stated truthfully and decides whether `--runtime onnx` uses it.

Each refusal is one line naming the file and the fix (exit code 1, no traceback).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from gazeclip.cli import main
from gazeclip.data.synthetic import make_synthetic_dataset
from helpers import predict_json  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny whole-image run trained by `gazeclip train` (so its model records its run settings)."""
    tmp = tmp_path_factory.mktemp("sec-runs")
    data = make_synthetic_dataset(tmp / "data", n_train=6, n_val=3, n_test=3)
    run = tmp / "run"
    assert main(["train", "--config", "tiny", "--data", str(data), "--out", str(run), "--epochs", "1", "--quiet"]) == 0
    return data, run


def copy_run(run: Path, tmp_path: Path, name: str = "run") -> Path:
    dst = tmp_path / name
    shutil.copytree(run, dst)
    return dst


def refused_one_line(capsys, args, *words) -> str:
    rc, recs, err = predict_json(capsys, args)
    assert rc == 1 and recs == [], err
    line = err.strip()
    assert "\n" not in line and "Traceback" not in line, err
    for w in words:
        assert w in line, (w, line)
    return line


# ---------------------------------------------------------------- 3. the weights digest cannot be removed
@pytest.mark.parametrize("drop", ["weights_sha256", "config_sha256"])
def test_weights_without_their_digest_refused(trained, tmp_path, images, capsys, drop):  # noqa: F811
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    run = copy_run(trained[1], tmp_path)
    w = run / "model" / "model.safetensors"
    with safe_open(str(w), "pt") as f:
        meta = f.metadata()
    state = load_file(str(w))
    if drop == "weights_sha256":
        first = sorted(state)[0]
        state[first] = state[first] + 1  # a changed weight, and the record that would catch it removed
    save_file(state, str(w), metadata={k: v for k, v in meta.items() if k != drop})
    line = refused_one_line(capsys, [images[0], "--run", run], "model.safetensors", "records no sha256")
    assert "retrain" in line


# ---------------------------------------------------------------- 9. calibration: refused, and the command that fixes it
@pytest.mark.parametrize("state", ["missing", "version-1"])
def test_uncalibrated_run_refused_with_the_command_that_fixes_it(trained, tmp_path, images, capsys, state):  # noqa: F811
    data, src = trained
    run = copy_run(src, tmp_path)
    good = json.loads((run / "calibration.json").read_text())
    if state == "missing":
        (run / "calibration.json").unlink()
    else:
        (run / "calibration.json").write_text(json.dumps({"unknown_threshold": 0.5, "quantile": 0.05}))
    line = refused_one_line(capsys, [images[0], "--run", run], "calibration.json", f"gazeclip calibrate --run {run}")
    assert "delete" not in line  # the old advice, which turned the thresholds off
    # the fix, exactly as printed: the data folder comes from the run's config.yaml
    assert main(["calibrate", "--run", str(run), "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out
    redone = json.loads((run / "calibration.json").read_text())
    assert redone["version"] == 3 and redone["detection_threshold"] == pytest.approx(good["detection_threshold"])
    rc, recs, _ = predict_json(capsys, [images[0], "--run", run])
    assert rc == 0 and recs[0]["p_fake"] is not None


def test_calibrate_without_a_data_folder_says_so(trained, tmp_path, capsys):
    run = copy_run(trained[1], tmp_path)
    c = yaml.safe_load((run / "config.yaml").read_text())
    c.pop("data")
    (run / "config.yaml").write_text(yaml.safe_dump(c))
    assert main(["calibrate", "--run", str(run)]) == 1
    err = capsys.readouterr().err
    assert "--data" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("content", [
    '{"version": 2, "unknown_threshold": {"a": [1]}, "detection_threshold": 0.5}',
    '{"version": [2], "unknown_threshold": 0.5}',
    '[{"version": 2}]',
    '{"version": 2, "unknown_threshold": 0.5, "detection_threshold": null}',
])
def test_nested_damaged_calibration_named(trained, tmp_path, images, capsys, content):  # noqa: F811
    run = copy_run(trained[1], tmp_path)
    (run / "calibration.json").write_text(content)
    refused_one_line(capsys, [images[0], "--run", run], "calibration.json", "gazeclip calibrate")


# ---------------------------------------------------------------- 15. faces: tied to the model
def test_edited_faces_setting_refused(trained, tmp_path, images, capsys):  # noqa: F811
    run = copy_run(trained[1], tmp_path)
    stored = json.loads((run / "model" / "config.json").read_text())["run"]
    assert stored["faces"] == "none"
    c = yaml.safe_load((run / "config.yaml").read_text())
    c["faces"] = "detect"
    (run / "config.yaml").write_text(yaml.safe_dump(c))
    refused_one_line(capsys, [images[0], "--run", run], "config.yaml", "faces", "'none'")
    # editing the record with it is caught by the weights' digest of config.json
    meta = json.loads((run / "model" / "config.json").read_text())
    meta["run"]["faces"] = "detect"
    (run / "model" / "config.json").write_text(json.dumps(meta))
    refused_one_line(capsys, [images[0], "--run", run], "config.json", "edited after saving")


# ---------------------------------------------------------------- 2 / 8. exports: pinned files, inside paths, bounded numbers
@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    data, run = trained
    out = tmp_path_factory.mktemp("sec-export") / "export"
    assert main(["export", "--run", str(run), "--out", str(out), "--int8"]) == 0
    return out


def onnx_args(folder: Path, image: Path, precision: str = "fp32") -> list:
    return [image, "--run", folder, "--runtime", "onnx", "--precision", precision]


def test_export_pins_every_file(exported):
    meta = json.loads((exported / "export.json").read_text())
    files = sorted(p.name for p in exported.iterdir() if p.name != "export.json")
    assert sorted(meta["sha256"]) == files


@pytest.mark.parametrize("name,precision", [("model.int8.onnx", "int8"), ("model.onnx", "fp32"),
                                            ("taxonomy.json", "fp32"), ("calibration.json", "fp32"),
                                            ("config.yaml", "fp32")])
def test_one_changed_byte_of_an_export_file_refused(exported, tmp_path, images, capsys, name, precision):  # noqa: F811
    folder = copy_run(exported, tmp_path, "export")
    p = folder / name
    b = bytearray(p.read_bytes())
    if name == "taxonomy.json":  # two generators swapped: would rename them
        tx = json.loads(b)
        tx["classes"][1], tx["classes"][2] = tx["classes"][2], tx["classes"][1]
        b = bytearray(json.dumps(tx).encode())
    elif name == "calibration.json":
        cal = json.loads(b)
        cal["detection_threshold"] = 0.999
        b = bytearray(json.dumps(cal).encode())
    elif name == "config.yaml":
        b += b"\n# edited\n"
    else:
        b[len(b) // 2] ^= 0x01
    p.write_bytes(bytes(b))
    refused_one_line(capsys, onnx_args(folder, images[0], precision), name, "sha256", "gazeclip export")


@pytest.mark.parametrize("field,value,words", [
    ("files", {"fp32": "../other/model.onnx"}, "files"),
    ("files", {"fp32": "/etc/passwd"}, "files"),
    ("files", ["model.onnx"], "files"),
    ("image_size", 40000, "image_size"),
    ("image_size", 0, "image_size"),
    ("image_size", None, "image_size"),
    ("image_size", "224", "image_size"),
    ("gaze_feature_dim", 10 ** 9, "gaze_feature_dim"),
    ("mean", [0.5, "x", {"a": 1}], "mean"),
    ("std", [0.0, 0.2, 0.2], "std"),
    ("sha256", None, "sha256"),
    ("sha256", {"model.onnx": "0" * 64}, "sha256"),
    ("default_precision", "int4", "default_precision"),
    ("format", {"nested": ["gazeclip-onnx/1"]}, "format"),
])
def test_damaged_export_json_named(exported, tmp_path, images, capsys, field, value, words):  # noqa: F811
    folder = copy_run(exported, tmp_path, "export")
    meta = json.loads((folder / "export.json").read_text())
    if value is None:
        meta.pop(field)
    else:
        meta[field] = value
    (folder / "export.json").write_text(json.dumps(meta))
    refused_one_line(capsys, onnx_args(folder, images[0]), "export.json", words)


@pytest.mark.parametrize("content", ["", "{", "[1, 2]", "\x00\xff"])
def test_unreadable_export_json_named(exported, tmp_path, images, capsys, content):  # noqa: F811
    folder = copy_run(exported, tmp_path, "export")
    (folder / "export.json").write_text(content, errors="surrogateescape")
    refused_one_line(capsys, onnx_args(folder, images[0]), "export.json")


@pytest.mark.parametrize("damage", ["empty", "truncated", "text"])
def test_damaged_onnx_file_named(exported, tmp_path, images, capsys, damage):  # noqa: F811
    """Even with export.json re-pinned to the damaged file, onnxruntime's refusal is one line."""
    from gazeclip.common import sha256_of

    folder = copy_run(exported, tmp_path, "export")
    p = folder / "model.onnx"
    data = p.read_bytes()
    p.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "text": b"not a model\n"}[damage])
    meta = json.loads((folder / "export.json").read_text())
    meta["sha256"]["model.onnx"] = sha256_of(p)
    (folder / "export.json").write_text(json.dumps(meta))
    refused_one_line(capsys, onnx_args(folder, images[0]), "model.onnx")


def test_intact_export_still_predicts(exported, images, capsys):  # noqa: F811
    for precision in ("fp32", "int8"):
        rc, recs, _ = predict_json(capsys, onnx_args(exported, images[0], precision))
        assert rc == 0 and len(recs) == 1 and "p_fake" in recs[0]


# ---------------------------------------------------------------- 13. the int8 file's stated error is the measured one
def val_predictions(run_dir: Path, data: Path, runtime: str, precision: str):
    from gazeclip.data.dataset import FaceDataset, manifest_samples
    from gazeclip.data.manifest import load_protocol, read_manifest, select_rows
    from gazeclip.run.loader import load_run
    from gazeclip.run.modeling import run_model

    run = load_run(run_dir, "cpu", precision=precision, runtime=runtime)
    rows = read_manifest(data)
    val = select_rows(rows, load_protocol(data, run.cfg.protocol, rows), "val")
    s = manifest_samples(val, data, run.cfg.faces, run.cfg.gaze_estimator, run.preprocess.size, run.gaze_dim)
    return run, run_model(run.model, FaceDataset(s, run.taxonomy, run.preprocess, None))


def test_int8_error_stated_is_measured_and_decides_the_default(trained, exported, tmp_path, capsys):
    import numpy as np

    data, src = trained
    meta = json.loads((exported / "export.json").read_text())
    q = meta["quality"]
    assert q["measured"] and q["n_faces"] > 0 and q["n_real"] + q["n_fake"] == q["n_faces"]
    _, ref = val_predictions(src, data, "torch", "fp32")
    _, got = val_predictions(exported, data, "onnx", "int8")
    assert q["int8"]["max_abs_p_fake_vs_torch"] == pytest.approx(float(np.abs(got.p_fake - ref.p_fake).max()),
                                                                 rel=1e-6, abs=1e-9)
    clean = q["int8"]["verdicts_changed"] == q["int8"]["generators_changed"] == 0
    assert meta["default_precision"] == ("int8" if clean else "fp32")
    # a threshold between a face's torch and int8 scores: int8 now flips that verdict, so
    # `--runtime onnx` must not pick it by default
    i = int(np.argmax(np.abs(got.p_fake - ref.p_fake)))
    assert got.p_fake[i] != ref.p_fake[i]
    run = copy_run(src, tmp_path)
    cal = json.loads((run / "calibration.json").read_text())
    cal["detection_threshold"] = float((got.p_fake[i] + ref.p_fake[i]) / 2)
    (run / "calibration.json").write_text(json.dumps(cal))
    assert main(["export", "--run", str(run), "--int8"]) == 0
    out = capsys.readouterr().out
    flipped = json.loads((run / "export" / "export.json").read_text())
    assert flipped["quality"]["int8"]["verdicts_changed"] >= 1 and flipped["default_precision"] == "fp32"
    assert "--runtime onnx uses fp32" in out
    from gazeclip.run.loader import load_run

    assert load_run(run, "cpu", runtime="onnx").precision == "fp32"
    assert load_run(run, "cpu", runtime="onnx", precision="int8").precision == "int8"  # still there when asked


def test_export_without_data_does_not_default_to_int8(trained, tmp_path, capsys):
    run = copy_run(trained[1], tmp_path)
    c = yaml.safe_load((run / "config.yaml").read_text())
    c["data"] = str(tmp_path / "gone")
    (run / "config.yaml").write_text(yaml.safe_dump(c))
    assert main(["export", "--run", str(run), "--int8"]) == 0
    meta = json.loads((run / "export" / "export.json").read_text())
    assert meta["quality"]["measured"] is False and meta["default_precision"] == "fp32"
    assert "not measured" in capsys.readouterr().out
