"""Acceptance of the int8 ONNX -> transformers conversion of the CLIP ViT-B/16 image tower."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.real

PHOTOS = ["photo-astronaut", "photo-grace-hopper", "photo-obama-fak", "photo-trump-fak", "photo-biden-fr",
          "photo-obama2-fr"]


@pytest.fixture(scope="module")
def onnx_model(real_weights):
    import onnx

    from gazeclip.weights import asset_path

    return onnx.load(str(asset_path("clip-b16-onnx-int8")))


def test_each_linear_matches_its_matmulinteger(onnx_model):
    """Layer by layer: the torch Linear fed the same (quantised) input as the ONNX MatMulInteger
    subgraph gives the same output (relative error <= 1e-5)."""
    import onnx
    import onnxruntime as ort

    from gazeclip.weights.convert_clip import read_quant_linears

    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    linears = read_quant_linears(model)
    assert len(linears) == 73  # 12 blocks x (q, k, v, out, fc1, fc2) + projection
    producer = {o: n for n in model.graph.node for o in n.output}
    node_by_name = {n.name: n for n in model.graph.node}
    taps = []
    for lin in linears:
        dql = producer[node_by_name[lin.node].input[0]]
        taps.append((lin, dql.output[0], dql.output[1], dql.output[2]))
    existing = {o.name for o in model.graph.output}
    for name in dict.fromkeys(n for t in taps for n in (*t[1:], t[0].output_name)):
        if name not in existing:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"pixel_values": x})))
    errors = []
    for lin, xq, xs, xz in taps:
        x_deq = (outs[xq].astype(np.float64) - float(outs[xz])) * float(outs[xs])
        y = torch.nn.functional.linear(torch.from_numpy(x_deq).float(), torch.from_numpy(lin.weight)).numpy()
        ref = outs[lin.output_name]
        errors.append(np.linalg.norm(y - ref) / np.linalg.norm(ref))
    print(f"layer-wise relative error: max {max(errors):.2e}, mean {np.mean(errors):.2e} over {len(errors)}")
    assert max(errors) <= 1e-5


def test_end_to_end_image_embeds_match_onnxruntime(real_weights):
    import onnxruntime as ort

    from gazeclip.faces import load_image
    from gazeclip.models.backbones import create_backbone
    from gazeclip.weights import asset_path

    bb = create_backbone("clip-b16-offline")
    sess = ort.InferenceSession(str(asset_path("clip-b16-onnx-int8")), providers=["CPUExecutionProvider"])
    x = bb.preprocess([load_image(asset_path(p)) for p in PHOTOS])
    ref = sess.run(["image_embeds"], {"pixel_values": x.numpy()})[0]
    with torch.no_grad():
        ours = bb.image_tower(pixel_values=x).image_embeds.numpy()
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    print(f"image_embeds cosine to onnxruntime int8: mean {cos.mean():.4f}, min {cos.min():.4f}, n={len(cos)}")
    assert cos.mean() >= 0.97
    # the tower is a real CLIP: a photo and its mirror image agree far more than two people do
    with torch.no_grad():
        e = bb.image_tower(pixel_values=torch.cat([x[:2], x[:1].flip(-1)])).image_embeds
    e = torch.nn.functional.normalize(e, dim=-1)
    assert float(e[0] @ e[2]) > float(e[0] @ e[1]) + 0.1
