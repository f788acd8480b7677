"""Small generative networks trained here on MobileStyleGAN faces (64x64, CPU-sized).

Each architecture is deliberately different so that each leaves its own fingerprint:
transposed-conv DCGAN, resize-conv SN-GAN with hinge loss, a conv VAE with a vector latent
(`VecVAE`), a latent diffusion model (`MLPDenoiser`, DDPM training, DDIM sampling) on that VAE's
latents, and a RealNVP flow at 32x32 with a per-pixel actnorm (`PixRealNVP`).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import spectral_norm as SN

from .pretrained import DCGANGenerator  # noqa: F401  (re-exported: the dcgan-msg generator)

# ---------------------------------------------------------------- DCGAN (tutorial, narrower)


class DCGANDiscriminator(nn.Module):
    def __init__(self, ndf: int = 32) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()


def dcgan_init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


# ---------------------------------------------------------------- SN-GAN, resize-conv, hinge


class ResizeConvGenerator(nn.Module):
    """Linear -> 4x4, then 4 x (nearest upsample, 3x3 conv, BN, ReLU) -> 64x64."""

    def __init__(self, nz: int = 128, ch: int = 256) -> None:
        super().__init__()
        self.nz, self.ch = nz, ch
        self.fc = nn.Linear(nz, ch * 16)
        chans = [ch, ch // 2, ch // 4, ch // 8, ch // 8]
        blocks = []
        for a, b in zip(chans[:-1], chans[1:]):
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(a, b, 3, 1, 1),
                       nn.BatchNorm2d(b), nn.ReLU(True)]
        self.blocks = nn.Sequential(nn.BatchNorm2d(ch), nn.ReLU(True), *blocks)
        self.out = nn.Conv2d(chans[-1], 3, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(-1, self.ch, 4, 4)
        return torch.tanh(self.out(self.blocks(x)))


class SNDiscriminator(nn.Module):
    """Spectral-norm discriminator: four stride-2 4x4 convs (no batch norm), linear head."""

    def __init__(self, ch: int = 32) -> None:
        super().__init__()
        layers, c = [], 3
        for b in (ch, ch * 2, ch * 4, ch * 8):                                      # 32, 16, 8, 4
            layers += [SN(nn.Conv2d(c, b, 4, 2, 1)), nn.LeakyReLU(0.1, True)]
            c = b
        self.main = nn.Sequential(*layers)
        self.fc = SN(nn.Linear(c * 16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.main(x).flatten(1)).flatten()


# ---------------------------------------------------------------- diffusion helpers


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([a.sin(), a.cos()], dim=1)


def ddpm_schedule(T: int = 400) -> dict[str, torch.Tensor]:
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64) * (1000 / T)
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    return {"betas": betas.float(), "alphas": alphas.float(), "abar": abar.float()}


# ---------------------------------------------------------------- RealNVP (multi-scale-free, 32x32)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * 4, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    x = x.view(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // 4, h * 2, w * 2)


class ActNorm(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.register_buffer("inited", torch.tensor(0, dtype=torch.uint8))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not bool(self.inited) and self.training:
            with torch.no_grad():
                self.loc.copy_(-x.mean((0, 2, 3), keepdim=True))
                self.logs.copy_(-torch.log(x.std((0, 2, 3), keepdim=True) + 1e-6))
                self.inited.fill_(1)
        y = (x + self.loc) * self.logs.exp()
        return y, self.logs.sum() * x.shape[2] * x.shape[3]

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * (-self.logs).exp() - self.loc


class Coupling(nn.Module):
    """Affine coupling on channel halves; the net sees the first half, transforms the second."""

    def __init__(self, c: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c // 2, hidden, 3, 1, 1), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
                                 nn.Conv2d(hidden, c, 3, 1, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _st(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(a).chunk(2, 1)
        return 2.0 * torch.tanh(s / 2.0), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = x.chunk(2, 1)
        s, t = self._st(a)
        return torch.cat([a, b * s.exp() + t], 1), s.flatten(1).sum(1)

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        a, b = y.chunk(2, 1)
        s, t = self._st(a)
        return torch.cat([a, (b - t) * (-s).exp()], 1)


class RealNVP(nn.Module):
    """x (3x32x32, logit space) -> squeeze x2 -> 48x8x8; K (actnorm, fixed permutation, coupling)."""

    def __init__(self, k: int = 8, hidden: int = 128, res: int = 32) -> None:
        super().__init__()
        self.res = res
        c = 48
        self.norms = nn.ModuleList([ActNorm(c) for _ in range(k)])
        self.couplings = nn.ModuleList([Coupling(c, hidden) for _ in range(k)])
        g = torch.Generator().manual_seed(0)
        self.register_buffer("perms", torch.stack([torch.randperm(c, generator=g) for _ in range(k)]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = squeeze(squeeze(x))
        logdet = torch.zeros(x.shape[0])
        for n, cpl, p in zip(self.norms, self.couplings, self.perms):
            z, ld = n(z)
            logdet = logdet + ld
            z = z[:, p]
            z, ld = cpl(z)
            logdet = logdet + ld
        return z, logdet

    def reverse(self, z: torch.Tensor) -> torch.Tensor:
        for n, cpl, p in reversed(list(zip(self.norms, self.couplings, self.perms))):
            z = cpl.reverse(z)
            z = z[:, torch.argsort(p)]
            z = n.reverse(z)
        return unsqueeze(unsqueeze(z))


LOGIT_ALPHA = 0.05


def to_logit(x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[0,1] -> logit space, with the log-det of the transform per sample."""
    p = LOGIT_ALPHA + (1 - 2 * LOGIT_ALPHA) * x01
    y = torch.log(p) - torch.log1p(-p)
    ld = (math.log(1 - 2 * LOGIT_ALPHA) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
    return y, ld


def from_logit(y: torch.Tensor) -> torch.Tensor:
    return ((torch.sigmoid(y) - LOGIT_ALPHA) / (1 - 2 * LOGIT_ALPHA)).clamp(0, 1)


@torch.no_grad()
def ddim_sample(model: nn.Module, z: torch.Tensor, T: int = 400, steps: int = 50,
                clip: float | None = 3.0) -> torch.Tensor:
    """Deterministic DDIM (eta=0) from the initial noise z, `steps` evenly spaced timesteps.
    design choice, not from the paper: the predicted clean latent is clipped to +-3 standard
    deviations at each step (as DDPM clips predicted images to [-1, 1])."""
    abar = ddpm_schedule(T)["abar"]
    ts = torch.linspace(T - 1, 0, steps).round().long().tolist()
    x = z
    for i, t in enumerate(ts):
        eps = model(x, torch.full((x.shape[0],), t, dtype=torch.long))
        ab = abar[t]
        x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        ab_prev = abar[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
        x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
    return x


# ---------------------------------------------------------------- VAE with a vector latent + MLP denoiser


class VecVAE(nn.Module):
    """64x64x3 <-> zdim vector latent (Gaussian posterior, N(0, I) prior): conv encoder, FC
    bottleneck, transposed-conv decoder. A vector latent makes prior samples look like faces
    after a few hundred steps, which a spatial latent does not."""

    def __init__(self, ch: int = 48, zdim: int = 64) -> None:
        super().__init__()
        self.zdim, self.ch = zdim, ch
        self.enc = nn.Sequential(
            nn.Conv2d(3, ch, 4, 2, 1), nn.SiLU(),            # 32
            nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.SiLU(),       # 16
            nn.Conv2d(ch * 2, ch * 2, 4, 2, 1), nn.SiLU(),   # 8
        )
        self.fc_enc = nn.Linear(ch * 2 * 64, 2 * zdim)
        self.fc_dec = nn.Linear(zdim, ch * 2 * 64)
        self.dec = nn.Sequential(
            nn.SiLU(),
            nn.ConvTranspose2d(ch * 2, ch * 2, 4, 2, 1), nn.SiLU(),   # 16
            nn.ConvTranspose2d(ch * 2, ch, 4, 2, 1), nn.SiLU(),       # 32
            nn.ConvTranspose2d(ch, ch, 4, 2, 1), nn.SiLU(),           # 64
            nn.Conv2d(ch, 3, 3, 1, 1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.fc_enc(self.enc(x).flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dec(self.fc_dec(z).view(-1, self.ch * 2, 8, 8)))


class MLPDenoiser(nn.Module):
    """Noise prediction for a vector latent: residual MLP with a sinusoidal time embedding."""

    def __init__(self, zdim: int = 64, width: int = 256, nblocks: int = 3) -> None:
        super().__init__()
        self.width = width
        self.temb = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.inp = nn.Linear(zdim, width)
        self.blocks = nn.ModuleList([nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, width),
                                                   nn.SiLU(), nn.Linear(width, width)) for _ in range(nblocks)])
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, zdim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        e = self.temb(timestep_embedding(t, self.width))
        h = self.inp(x)
        for blk in self.blocks:
            h = h + blk(h + e)
        return self.out(h)


class PixelNorm(nn.Module):
    """Per-pixel affine (an ActNorm with one scale and shift per pixel and channel), initialised
    from the training data's per-pixel mean and std in logit space."""

    def __init__(self, c: int = 3, res: int = 32) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, c, res, res))
        self.logs = nn.Parameter(torch.zeros(1, c, res, res))

    @torch.no_grad()
    def init_from(self, y: torch.Tensor) -> None:
        self.loc.copy_(-y.mean(0, keepdim=True))
        self.logs.copy_(-torch.log(y.std(0, keepdim=True) + 1e-3))

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (y + self.loc) * self.logs.exp(), self.logs.sum().expand(y.shape[0])

    def reverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * (-self.logs).exp() - self.loc


class PixRealNVP(RealNVP):
    """RealNVP preceded by a per-pixel ActNorm (PixelNorm)."""

    def __init__(self, k: int = 8, hidden: int = 96, res: int = 32) -> None:
        super().__init__(k, hidden, res)
        self.pix = PixelNorm(3, res)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, ld0 = self.pix(x)
        z, ld = super().forward(y)
        return z, ld + ld0

    def reverse(self, z: torch.Tensor) -> torch.Tensor:
        return self.pix.reverse(super().reverse(z))
