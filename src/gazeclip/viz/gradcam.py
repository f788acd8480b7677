"""Grad-CAM on the image tower (the paper's Figure 6): gradient of the predicted class's
attribution logit with respect to the patch tokens leaving an image block (default: the one before
the last: the last block's patch outputs never reach the class token, so their gradient is zero),
channel weights = mean gradient over patches, map = ReLU(sum of weighted activations), on the
patch grid, upsampled and overlaid on the face crop."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def image_blocks(model: nn.Module) -> list[nn.Module]:
    """The image tower's transformer blocks as the model runs them (LoRA copies included)."""
    gie = getattr(model, "gie", None)
    if gie is not None and hasattr(gie, "blocks"):
        return list(gie.blocks.layers)
    return list(model.image_tower.vision_model.encoder.layers)


@dataclass
class CamResult:
    cam: np.ndarray           # (g, g) in [0, 1]
    target: int               # class index explained
    probs: np.ndarray         # (C,) attribution probabilities
    p_fake: float


def gradcam(model: nn.Module, batch, block: int = -2, target: int | None = None) -> CamResult:
    """`batch`: a one-item Batch with pixel_values (no cached prefix: the map needs the pixels' path)."""
    blocks = image_blocks(model)
    store: dict = {}

    def hook(_mod, _inp, out):
        h = out[0] if isinstance(out, tuple) else out
        h = h.detach().requires_grad_(True)  # a leaf we can read the gradient of, frozen block or not
        store["h"] = h
        # the block may run inside the frozen prefix's no_grad: record the blocks after it anyway
        # (the enclosing no_grad restores the outer grad mode when it exits)
        torch.set_grad_enabled(True)
        return (h, *out[1:]) if isinstance(out, tuple) else h

    handle = blocks[block].register_forward_hook(hook)
    was = model.training
    model.eval()
    try:
        with torch.enable_grad():
            out = model(batch)
            logits = out.attribution_logits[0]
            t = int(logits.argmax()) if target is None else int(target)
            model.zero_grad(set_to_none=True)
            grad = torch.autograd.grad(logits[t], store["h"], allow_unused=True)[0]
    finally:
        handle.remove()
        model.train(was)
    act = store["h"].detach()[0, 1:]  # patch tokens (drop the class token)
    if grad is None:  # the logit does not depend on this block (should not happen): an empty map
        grad = torch.zeros_like(store["h"])
    g = grad[0, 1:]
    w = g.mean(0)
    cam = torch.relu((act * w).sum(-1)).float().cpu().numpy()
    side = int(round(np.sqrt(cam.size)))
    cam = cam[: side * side].reshape(side, side)
    cam = cam / cam.max() if cam.max() > 0 else cam
    probs = out.attribution_logits[0].detach().softmax(-1).float().cpu().numpy()
    return CamResult(cam, t, probs, float(out.p_fake[0].detach()))


def overlay_png(face: np.ndarray, res: CamResult, classes: list[str], path, title: str = "") -> None:
    from PIL import Image

    from .plots import _plt, save_fig

    plt = _plt()
    h, w = face.shape[:2]
    cam = np.asarray(Image.fromarray((res.cam * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)) / 255.0
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.8))
    axes[0].imshow(face)
    axes[0].set_title("face")
    axes[1].imshow(face)
    axes[1].imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    axes[1].set_title(f"Grad-CAM: {classes[res.target]} ({res.probs[res.target]:.2f})")
    for a in axes:
        a.axis("off")
    fig.suptitle(title or f"p_fake {res.p_fake:.3f}", fontsize=10)
    save_fig(fig, path)


def heatmap_png(res: CamResult, size: int = 224) -> bytes:
    """The map as a PNG for a web page to lay over the face crop: jet colours, transparent where
    the model did not look (alpha = 0.6 x the map)."""
    import cv2

    cam = cv2.resize(res.cam.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    bgr = cv2.applyColorMap((cam * 255).astype(np.uint8), cv2.COLORMAP_JET)
    bgra = np.dstack([bgr, (cam * 0.6 * 255).astype(np.uint8)])
    ok, buf = cv2.imencode(".png", bgra)
    if not ok:
        raise RuntimeError("PNG encoding of the Grad-CAM map failed")
    return buf.tobytes()
