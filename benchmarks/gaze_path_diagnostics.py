"""How much the gaze path of a trained GazeCLIP run acts, measured on the validation split.

    .venv/bin/python benchmarks/gaze_path_diagnostics.py --run RUN --data DATA [--split val] [--json]

Prints, over the split's faces (median and max):
- fusion: the norm of the VPE term in the joint embedding relative to the unit-norm CLIP image
  embedding (`fusion: add`: ||vpe_proj(vpe)||; `gated`: |tanh(gate)|);
- each Gaze Injector: ||gated delta|| / ||h_cls|| (how much it moves the class token), the same
  without the gate (what it would add fully open), and mean / max |tanh(gate)|.
and the split's figures used to choose between gaze-path variants: attribution ACC, detection AUC,
and the cluster ACC of k-means (k = number of generators) on the seen-generator fakes' joint
embeddings (a validation proxy for how well the embedding separates generators; the unseen ones
are in the test split only). A model without a gaze path gets the figures only.
No pass/fail; the test split is never read unless asked for with --split test.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def diagnose(run_dir: str | Path, data_dir: str | Path, split: str = "val", device: str = "cpu") -> dict:
    from gazeclip.data.dataset import FaceDataset, manifest_samples
    from gazeclip.data.feature_cache import FeatureCache
    from gazeclip.data.manifest import load_protocol, read_manifest, select_rows
    from gazeclip.run.loader import load_run
    from gazeclip.run.modeling import prefix_id, run_model

    from gazeclip.evaluation.metrics import binary_auc, cluster_metrics

    run = load_run(run_dir, device)
    model = run.model
    gaze = getattr(model, "vpe", None) is not None
    rows = read_manifest(data_dir)
    proto = load_protocol(data_dir, run.cfg.protocol)
    s = manifest_samples(select_rows(rows, proto, split), data_dir, run.cfg.faces, run.cfg.gaze_estimator,
                         run.preprocess.size, run.gaze_dim, face_cache_dir=run.cfg.face_cache_dir)
    cache = FeatureCache(run.cfg.cache_dir or Path(data_dir) / ".cache" / "features", prefix_id(model),
                         run.cfg.cache_dtype)
    cache.fill(s.keys, lambda idx: run.preprocess(list(s.crops[idx])), lambda x: model.encode_prefix(x).cpu())
    rec: dict[str, list] = {"fusion_ratio": []}
    hooks = []

    def expert_hook(mod, args, _out):
        image, vpe = args[0], args[1]
        img = torch.nn.functional.normalize(image, dim=-1)
        if mod.fusion_gate is not None:
            term = mod.gate().abs().expand(len(img))
        elif mod.vpe_proj is not None:
            term = mod.vpe_proj(vpe).norm(dim=-1)
        else:
            term = (mod.fuse(torch.cat([img, vpe], -1)) - img).norm(dim=-1)
        rec["fusion_ratio"] += term.tolist()

    if gaze:
        hooks.append(model.expert.register_forward_hook(expert_hook))
    for k, inj in (model.gie.injectors.items() if gaze else ()):
        rec[f"injector{k}_gated"], rec[f"injector{k}_open"] = [], []

        def inj_hook(mod, args, out, k=k):
            h = args[0][:, 0]
            delta = out[:, 0] - h
            g = mod.gate_value().abs().clamp_min(1e-12)
            rec[f"injector{k}_gated"] += (delta.norm(dim=-1) / h.norm(dim=-1)).tolist()
            rec[f"injector{k}_open"] += ((delta / g).norm(dim=-1) / h.norm(dim=-1)).tolist()

        hooks.append(inj.register_forward_hook(inj_hook))
    ds = FaceDataset(s, run.taxonomy, run.preprocess, cache)
    try:
        preds = run_model(model, ds, batch_size=32, device=run.device)
    finally:
        for h in hooks:
            h.remove()
    cls = np.array(s.classes)
    gen = np.isin(cls, run.taxonomy.classes[1:])
    out = {"run": str(run_dir), "split": split, "n": len(s), "gates": model.gate_openness() if gaze else {},
           "attribution_acc": float((preds.attribution_logits.argmax(1) == ds.labels).mean()),
           "detection_auc": binary_auc(ds.is_fake, preds.p_fake),
           "cluster_acc_generators": cluster_metrics(preds.embedding[gen], cls[gen])["cluster_acc"]}
    for k, v in rec.items():
        a = np.asarray(v, dtype=np.float64)
        out[k] = {"median": float(np.median(a)), "max": float(a.max())} if a.size else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val", choices=["train", "val", "test"])
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    r = diagnose(a.run, a.data, a.split)
    if a.json:
        print(json.dumps(r))
        return
    print(f"{r['run']} ({r['split']}, n = {r['n']}): attribution ACC {r['attribution_acc']:.3f}, detection AUC "
          f"{r['detection_auc']:.3f}, cluster ACC of the generators' fakes {r['cluster_acc_generators']:.3f}")
    for k, v in r.items():
        if isinstance(v, dict) and "median" in v:
            print(f"  {k}: median {v['median']:.4f}  max {v['max']:.4f}")
    print("  gates: " + ", ".join(f"{k} {v:.4f}" for k, v in r["gates"].items()))


if __name__ == "__main__":
    main()
