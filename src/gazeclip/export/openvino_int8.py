"""OpenVINO int8 of an ONNX export: NNCF post-training quantisation of the export's `model.onnx`,
calibrated on the run's validation split (never on test), for `--runtime openvino --precision int8`.

    gazeclip export --run RUN --openvino-int8 [--data DIR] [--calibration-items N]

writes, next to the export's files,

    OUT/openvino-int8/model.xml, model.bin   the quantised OpenVINO model (int8 weights and
                                             activations of the MatMuls; SmoothQuant, as NNCF's
                                             transformer preset does)
    OUT/openvino-int8/quantization.json      what it was calibrated on (split, items, data folder),
                                             sha256 of both files, versions, and p_fake / argmax
                                             agreement with the fp32 graph on those items

Unlike onnxruntime's dynamic int8 (`--int8`), activations are quantised with ranges measured on
real validation faces, so no per-call quantisation pass is needed: measured here (AVX512-VNNI,
no AMX, bench_predict.py) 1.6x faster than onnxruntime int8 and 1.75x faster than OpenVINO bf16 for
the model.
NNCF is optional: `pip install nncf==3.4.0` (it installs within the pinned torch).
"""
from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir
from ..common import sha256_of
from ..errors import MissingFileError, UsageError
from ..run.openvino_runtime import INT8_DIR, INT8_FORMAT, compile_cpu, input_names


def calibration_feeds(export_dir: Path, data_dir: str | Path | None, n: int) -> tuple[list[dict], Path]:
    """Up to `n` validation faces of the run (its protocol, faces and gaze settings) as one-item
    input dicts of the export's graph, and the data folder they came from."""
    from ..data.dataset import manifest_samples
    from ..data.manifest import load_protocol, read_manifest, select_rows
    from ..models.backbones import ImagePreprocess
    from ..run.folder import load_run_config, read_run_yaml
    from ..run.onnx_runtime import read_export_meta

    cfg = load_run_config(export_dir)
    data = Path(data_dir or read_run_yaml(export_dir).get("data") or "")
    if not (data / "manifest.csv").is_file():
        raise MissingFileError(f"{data}: no manifest.csv to calibrate int8 on; pass --data DIR (the run's data "
                                "folder)")
    rows = read_manifest(data)
    val = select_rows(rows, load_protocol(data, cfg.protocol, rows), "val")
    meta = read_export_meta(export_dir)
    s = manifest_samples(val, data, mode=cfg.faces, estimator=cfg.gaze_estimator, size=int(meta["image_size"]),
                         gaze_dim=int(meta["gaze_feature_dim"]), face_cache_dir=cfg.face_cache_dir)
    if not len(s):
        raise UsageError(f"{data}: protocol {cfg.protocol} has no validation items to calibrate int8 on")
    pick = np.sort(np.random.default_rng(0).permutation(len(s))[:n])
    pre = ImagePreprocess(int(meta["image_size"]), tuple(meta["mean"]), tuple(meta["std"]))
    feeds = [{"pixel_values": pre(s.crops[i:i + 1]).numpy(), "gaze_vector": s.gaze_vector[i:i + 1],
              "gaze_pitchyaw": s.gaze_pitchyaw[i:i + 1], "gaze_features": s.gaze_features[i:i + 1],
              "gaze_valid": s.gaze_valid[i:i + 1].astype(bool), "region_boxes": s.region_boxes[i:i + 1]}
             for i in pick]
    return feeds, data


def quantize_openvino_int8(export_dir: str | Path, data_dir: str | Path | None = None, n: int = 300) -> dict:
    """NNCF int8 of `export_dir`'s model.onnx into export_dir/openvino-int8/ (replacing an older
    one), calibrated on up to `n` validation faces. Returns the written quantization.json."""
    try:
        import nncf
    except ImportError:
        raise UsageError("OpenVINO int8 needs NNCF: pip install nncf==3.4.0 (or the openvino-int8 extra)") from None
    import openvino as ov

    from ..run.onnx_runtime import FILES, find_export

    export_dir = find_export(export_dir)
    feeds, data = calibration_feeds(export_dir, data_dir, n)
    model = ov.Core().read_model(str(export_dir / FILES["fp32"]))
    names = input_names(model)
    quantized = nncf.quantize(model, nncf.Dataset(feeds, lambda d: {name: d[name] for name in names.values()}),
                              model_type=nncf.ModelType.TRANSFORMER, subset_size=len(feeds))
    with atomic_dir(export_dir / INT8_DIR) as tmp:
        ov.save_model(quantized, str(tmp / "model.xml"), compress_to_fp16=False)
        # agreement with the fp32 graph on the calibration items (the test split is `gazeclip eval`'s)
        ref, got = compile_cpu(export_dir / FILES["fp32"], "fp32"), compile_cpu(tmp / "model.xml", "fp32")
        ref_in, got_in = input_names(ref), input_names(got)
        outs = {"ref": [], "got": []}
        for f in feeds:
            for key, c, names_in in (("ref", ref, ref_in), ("got", got, got_in)):
                r = c({port: f[name] for port, name in names_in.items()})
                outs[key].append((r[c.output("p_fake")], r[c.output("attribution_logits")].argmax(1)))
        (p_ref, c_ref), (p_got, c_got) = ([np.concatenate(v) for v in zip(*outs[k])] for k in ("ref", "got"))
        meta = {"format": INT8_FORMAT, "source": FILES["fp32"],
                "files": {f: sha256_of(tmp / f) for f in ("model.xml", "model.bin")},
                "calibration": {"split": "val", "items": len(feeds), "data": str(data.resolve()),
                                "method": "nncf.quantize, ModelType.TRANSFORMER"},
                "parity_on_calibration_items": {"max_abs_p_fake_diff_vs_fp32": float(np.abs(p_got - p_ref).max()),
                                                "argmax_agreement": float((c_got == c_ref).mean())},
                "versions": {k: version(k) for k in ("nncf", "openvino")}}
        (tmp / "quantization.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
