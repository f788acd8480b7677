"""The two pretrained generators that registry packages carry: MobileStyleGAN (FFHQ, OpenVINO IR)
and the PyTorch-tutorial DCGAN trained on DigiFace-1M."""
from __future__ import annotations

import threading

import numpy as np
import torch
from torch import nn

from ..errors import GazeclipError

# design choice, not from the paper: StyleGAN truncation psi=0.7 around a mean style estimated
# from 2048 fixed-seed latents; keeps faces photorealistic and detectable.
TRUNCATION = 0.7


class MobileStyleGAN:
    """MobileStyleGAN distilled from StyleGAN2-FFHQ, run with the `openvino` runtime (f32, CPU)."""

    _lock = threading.Lock()
    _inst: "MobileStyleGAN | None" = None

    def __init__(self) -> None:
        import openvino as ov

        from gazeclip.weights import asset_path

        core = ov.Core()
        cfg = {"INFERENCE_PRECISION_HINT": "f32"}
        m = core.read_model(asset_path("mobilestylegan-mappingnetwork-xml"),
                            asset_path("mobilestylegan-mappingnetwork-bin"))
        s = core.read_model(asset_path("mobilestylegan-synthesisnetwork-xml"),
                            asset_path("mobilestylegan-synthesisnetwork-bin"))
        self.mapping = core.compile_model(m, "CPU", cfg)
        self.synthesis = core.compile_model(s, "CPU", cfg)
        rng = np.random.default_rng(20210721)
        z = rng.standard_normal((2048, 512)).astype(np.float32)
        self.w_avg = np.mean([self._map(z[i:i + 1]) for i in range(len(z))], axis=0)

    @classmethod
    def get(cls) -> "MobileStyleGAN":
        with cls._lock:
            if cls._inst is None:
                cls._inst = MobileStyleGAN()
            return cls._inst

    def _map(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(self.mapping(z)[0], dtype=np.float32)

    def style(self, seed: int) -> np.ndarray:
        z = np.random.default_rng(seed).standard_normal((1, 512)).astype(np.float32)
        w = self._map(z)
        return (self.w_avg + TRUNCATION * (w - self.w_avg)).astype(np.float32)

    def synth(self, style: np.ndarray) -> np.ndarray:
        """1024x1024 RGB uint8."""
        img = np.asarray(self.synthesis(style.reshape(1, 512))[0])[0]
        img = np.clip((img.transpose(1, 2, 0) + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
        return img

    def __call__(self, seed: int) -> np.ndarray:
        return self.synth(self.style(seed))


class DCGANGenerator(nn.Module):
    """The PyTorch DCGAN tutorial generator (nz -> 64x64 RGB in [-1, 1])."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3) -> None:
        super().__init__()
        self.nz = nz
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        return self.main(z)


def load_dcgan_digiface() -> DCGANGenerator:
    from gazeclip.weights import asset_path

    path = asset_path("dcgan-digiface")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["netG_state_dict"]
    except Exception as e:  # noqa: BLE001
        raise GazeclipError(f"{path}: cannot read the DCGAN-DigiFace weights ({e}); "
                           "re-pull with `gazeclip weights pull`") from e
    g = DCGANGenerator()
    g.load_state_dict(state)
    return g.eval()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[-1,1] NCHW tensor -> list-like N x H x W x 3 uint8."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()
