"""RetinaFace with a MobileNet-0.25 backbone (Deng et al. 2020), the fallback face detector.

The network is written to match the state-dict keys of the widely used `mobilenet0.25_Final.pth`
(biubug6/Pytorch_Retinaface layout): `body.stage{1,2,3}`, `fpn.*`, `ssh{1,2,3}.*`,
`{Class,Bbox,Landmark}Head.{0,1,2}.conv1x1`. Input BGR minus (104, 117, 123), no scaling.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms

MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCE = (0.1, 0.2)
BGR_MEAN = (104.0, 117.0, 123.0)


def _conv_bn(inp, oup, stride=1, leaky=0.0):
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup),
                         nn.LeakyReLU(negative_slope=leaky, inplace=True))


def _conv_bn_no_relu(inp, oup, stride=1):
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup))


def _conv_bn1x1(inp, oup, stride=1, leaky=0.0):
    return nn.Sequential(nn.Conv2d(inp, oup, 1, stride, 0, bias=False), nn.BatchNorm2d(oup),
                         nn.LeakyReLU(negative_slope=leaky, inplace=True))


def _conv_dw(inp, oup, stride, leaky=0.1):
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


class MobileNetV1(nn.Module):
    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(_conv_bn(3, 8, 2, leaky=0.1), _conv_dw(8, 16, 1), _conv_dw(16, 32, 2),
                                    _conv_dw(32, 32, 1), _conv_dw(32, 64, 2), _conv_dw(64, 64, 1))
        self.stage2 = nn.Sequential(_conv_dw(64, 128, 2), *[_conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(_conv_dw(128, 256, 2), _conv_dw(256, 256, 1))

    def forward(self, x):
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        return c1, c2, self.stage3(c2)


class SSH(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        leaky = 0.1 if cout <= 64 else 0.0
        self.conv3X3 = _conv_bn_no_relu(cin, cout // 2)
        self.conv5X5_1 = _conv_bn(cin, cout // 4, leaky=leaky)
        self.conv5X5_2 = _conv_bn_no_relu(cout // 4, cout // 4)
        self.conv7X7_2 = _conv_bn(cout // 4, cout // 4, leaky=leaky)
        self.conv7x7_3 = _conv_bn_no_relu(cout // 4, cout // 4)

    def forward(self, x):
        a = self.conv3X3(x)
        b1 = self.conv5X5_1(x)
        b = self.conv5X5_2(b1)
        c = self.conv7x7_3(self.conv7X7_2(b1))
        return F.relu(torch.cat([a, b, c], dim=1))


class FPN(nn.Module):
    def __init__(self, cins=(64, 128, 256), cout=64):
        super().__init__()
        leaky = 0.1 if cout <= 64 else 0.0
        self.output1 = _conv_bn1x1(cins[0], cout, leaky=leaky)
        self.output2 = _conv_bn1x1(cins[1], cout, leaky=leaky)
        self.output3 = _conv_bn1x1(cins[2], cout, leaky=leaky)
        self.merge1 = _conv_bn(cout, cout, leaky=leaky)
        self.merge2 = _conv_bn(cout, cout, leaky=leaky)

    def forward(self, feats):
        o1, o2, o3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[2:], mode="nearest"))
        return o1, o2, o3


class _Head(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1x1 = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.conv1x1(x).permute(0, 2, 3, 1).contiguous()


class RetinaFaceNet(nn.Module):
    def __init__(self, anchors: int = 2, width: int = 64):
        super().__init__()
        self.body = MobileNetV1()
        self.fpn = FPN((64, 128, 256), width)
        self.ssh1, self.ssh2, self.ssh3 = SSH(width, width), SSH(width, width), SSH(width, width)
        self.ClassHead = nn.ModuleList([_Head(width, anchors * 2) for _ in range(3)])
        self.BboxHead = nn.ModuleList([_Head(width, anchors * 4) for _ in range(3)])
        self.LandmarkHead = nn.ModuleList([_Head(width, anchors * 10) for _ in range(3)])

    def forward(self, x):
        feats = self.fpn(self.body(x))
        feats = [self.ssh1(feats[0]), self.ssh2(feats[1]), self.ssh3(feats[2])]
        n = x.shape[0]
        loc = torch.cat([h(f).view(n, -1, 4) for h, f in zip(self.BboxHead, feats)], 1)
        conf = torch.cat([h(f).view(n, -1, 2) for h, f in zip(self.ClassHead, feats)], 1)
        landm = torch.cat([h(f).view(n, -1, 10) for h, f in zip(self.LandmarkHead, feats)], 1)
        return loc, F.softmax(conf, dim=-1), landm


def priors(height: int, width: int) -> torch.Tensor:
    """Anchor centres and sizes (normalised), in the network's output order."""
    out = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        cy, cx = torch.meshgrid((torch.arange(fh) + 0.5) * step / height, (torch.arange(fw) + 0.5) * step / width,
                                indexing="ij")
        per = [torch.stack([cx, cy, torch.full_like(cx, s / width), torch.full_like(cx, s / height)], -1)
               for s in sizes]
        out.append(torch.stack(per, 2).reshape(-1, 4))
    return torch.cat(out).float()


@dataclass
class Detection:
    box: np.ndarray        # (4,) x0, y0, x1, y1 pixels
    score: float
    landmarks: np.ndarray  # (5, 2) pixels: image-left eye, image-right eye, nose, mouth left, mouth right


class RetinaFace:
    """`detect(rgb) -> list[Detection]`, best first."""

    def __init__(self, weights: str | None = None, score_threshold: float = 0.7, nms_threshold: float = 0.4,
                 max_side: int = 960, device: str = "cpu"):
        if weights is None:
            from ..weights import asset_path

            weights = str(asset_path("retinaface-mnet025"))
        self.net = RetinaFaceNet()
        sd = torch.load(weights, map_location="cpu", weights_only=True)
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
        self.net.load_state_dict(sd, strict=True)
        self.net.eval().to(device)
        self.device = device
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        # design choice, not from the paper: detect on a copy whose longer side is at most max_side
        self.max_side = max_side
        self._priors: dict[tuple[int, int], torch.Tensor] = {}

    @torch.inference_mode()
    def detect(self, rgb: np.ndarray) -> list[Detection]:
        import cv2

        h0, w0 = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(h0, w0))
        img = rgb if scale == 1.0 else cv2.resize(rgb, (max(1, round(w0 * scale)), max(1, round(h0 * scale))),
                                                  interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
        if min(h, w) < 16:
            return []
        x = torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1])).float() - torch.tensor(BGR_MEAN)
        x = x.permute(2, 0, 1)[None].to(self.device)
        loc, conf, landm = self.net(x)
        pri = self._priors.get((h, w))
        if pri is None:
            pri = self._priors[(h, w)] = priors(h, w).to(self.device)
        loc, scores, landm = loc[0], conf[0, :, 1], landm[0]
        keep = scores > self.score_threshold
        if not keep.any():
            return []
        loc, scores, landm, pri = loc[keep], scores[keep], landm[keep], pri[keep]
        v0, v1 = VARIANCE
        centers = pri[:, :2] + loc[:, :2] * v0 * pri[:, 2:]
        sizes = pri[:, 2:] * torch.exp(loc[:, 2:] * v1)
        boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], 1)
        pts = pri[:, None, :2] + landm.view(-1, 5, 2) * v0 * pri[:, None, 2:]
        wh = torch.tensor([w, h], dtype=torch.float32, device=boxes.device)
        boxes = boxes * wh.repeat(2) / scale
        pts = pts * wh / scale
        order = nms(boxes, scores, self.nms_threshold)
        return [Detection(boxes[i].cpu().numpy().astype(np.float64), float(scores[i]),
                          pts[i].cpu().numpy().astype(np.float64)) for i in order.tolist()]
