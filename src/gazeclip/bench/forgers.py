"""Every generator of the benchmark behind one interface, `Forger.generate(n, seed)`, and a registry.

Each item has its own seed derived from (seed, index), so an item never depends on how many others
were made with it. The landmark forgers edit real photos of one split (the builder hands them that
split's faces), so a manipulated face and a real one share their photographic style and nothing
crosses a split.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Iterator

import cv2
import numpy as np
import torch

from ..registry import Registry
from .faceops import FaceLM, detect_face
from .pretrained import to_uint8
from ..errors import GazeclipError

MSG_LICENCE = "weights derive from StyleGAN2/FFHQ: non-commercial research use only"


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (stable across runs, platforms and Python versions)."""
    h = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


@dataclass(frozen=True)
class ForgerInfo:
    name: str
    family: str         # gan, vae, diffusion, flow, identity-swap, manipulation, morph
    forgery_type: str   # entire-synthesis, identity-swap, attribute-manipulation, gaze-manipulation
    how: str            # one line: how the images are made
    source: str         # package / checkpoint it comes from
    licence: str
    native_res: int
    trained_here: bool = False


@dataclass
class Forged:
    image: np.ndarray            # H x W x 3 uint8 RGB, any size; the builder crops and resizes
    meta: dict = field(default_factory=dict)
    identities: tuple[str, ...] = ()  # real people the image was made from (target first)


class Forger(ABC):
    info: ForgerInfo

    @property
    def name(self) -> str:
        return self.info.name

    def generate(self, n: int, seed: int, progress: Callable[[int], None] | None = None) -> list[Forged]:
        """n images; item i is made from derive_seed(seed, i) alone."""
        out: list[Forged] = []
        for f in self.iter_generate(n, seed):
            out.append(f)
            if progress:
                progress(1)
        return out

    def iter_generate(self, n: int, seed: int) -> Iterator[Forged]:
        for i in range(n):
            yield self.one(derive_seed(seed, i))

    @abstractmethod
    def one(self, item_seed: int) -> Forged: ...


# ------------------------------------------------------------------ pretrained GANs


class MobileStyleGANForger(Forger):
    info = ForgerInfo("mobilestylegan", "gan", "entire-synthesis",
                      "MobileStyleGAN distilled from StyleGAN2-FFHQ, OpenVINO IR, truncation 0.7",
                      "random-face==2021.7.21.1", "code Apache-2.0; " + MSG_LICENCE, 1024)

    def one(self, item_seed: int) -> Forged:
        from .pretrained import MobileStyleGAN

        return Forged(MobileStyleGAN.get()(item_seed), {"msg_seed": item_seed})


class DCGANDigiFaceForger(Forger):
    info = ForgerInfo("dcgan-digiface", "gan", "entire-synthesis",
                      "PyTorch-tutorial DCGAN trained on DigiFace-1M (pretrained, as shipped)",
                      "gan-face-generate==1.1.1", "MIT; DigiFace-1M research use only", 64)
    _g = None

    def one(self, item_seed: int) -> Forged:
        from .pretrained import load_dcgan_digiface

        if DCGANDigiFaceForger._g is None:
            DCGANDigiFaceForger._g = load_dcgan_digiface()
        z = torch.randn(1, 100, generator=torch.Generator().manual_seed(item_seed))
        with torch.no_grad():
            return Forged(to_uint8(DCGANDigiFaceForger._g(z))[0])


# ------------------------------------------------------------------ trained here


class TrainedForger(Forger):
    """A generator trained by `gazeclip bench train-forgers`; loaded from its committed checkpoint."""

    ckpt = ""
    _cache: dict[str, object] = {}

    def model(self):
        if self.ckpt not in TrainedForger._cache:
            TrainedForger._cache[self.ckpt] = self.load()
        return TrainedForger._cache[self.ckpt]

    @staticmethod
    def build(nets, arch: dict) -> torch.nn.Module:
        """The network of the checkpoint's `arch` metadata (its state dict loads into it as is)."""
        raise NotImplementedError

    def load(self):
        from . import nets
        from .train import load_generator_checkpoint

        state, meta = load_generator_checkpoint(self.ckpt)
        net = self.build(nets, meta["arch"])
        net.load_state_dict(state)
        return net.eval()


TRAINED_LICENCE = "MIT (trained here); training faces from MobileStyleGAN: " + MSG_LICENCE
TRAINED_SOURCE = "gazeclip bench train-forgers (checkpoints/{}.safetensors)"


class _LatentGANForger(TrainedForger):
    """A GAN trained here: one generator from a checkpoint, one N(0, I) latent per item."""

    def one(self, item_seed: int) -> Forged:
        g = self.model()
        z = torch.randn(1, g.nz, generator=torch.Generator().manual_seed(item_seed))
        with torch.no_grad():
            return Forged(to_uint8(g(z))[0])


class DCGANMSGForger(_LatentGANForger):
    ckpt = "dcgan-msg"
    info = ForgerInfo("dcgan-msg", "gan", "entire-synthesis",
                      "DCGAN (transposed convs, BCE loss) trained here on 600 MobileStyleGAN faces, 64 px",
                      TRAINED_SOURCE.format("dcgan-msg"), TRAINED_LICENCE, 64, True)

    @staticmethod
    def build(nets, arch: dict) -> torch.nn.Module:
        return nets.DCGANGenerator(nz=arch["nz"], ngf=arch["ngf"])


class SNGANMSGForger(_LatentGANForger):
    ckpt = "sngan-msg"
    info = ForgerInfo("sngan-msg", "gan", "entire-synthesis",
                      "resize-conv generator + spectral-norm discriminator, hinge loss, trained here, 64 px",
                      TRAINED_SOURCE.format("sngan-msg"), TRAINED_LICENCE, 64, True)

    @staticmethod
    def build(nets, arch: dict) -> torch.nn.Module:
        return nets.ResizeConvGenerator(nz=arch["nz"], ch=arch["ch"])


class VAEMSGForger(TrainedForger):
    ckpt = "vae-msg"
    # design choice, not from the paper: prior sampling temperature 0.8 (reduced-temperature
    # sampling is common for VAEs; this undertrained one gives more face-like images with it).
    temperature = 0.8
    info = ForgerInfo("vae-msg", "vae", "entire-synthesis",
                      "convolutional VAE (64-d latent) trained here; decoder of prior samples at temperature 0.8, 64 px",
                      TRAINED_SOURCE.format("vae-msg"), TRAINED_LICENCE, 64, True)

    @staticmethod
    def build(nets, arch: dict) -> torch.nn.Module:
        return nets.VecVAE(ch=arch["ch"], zdim=arch["zdim"])

    def one(self, item_seed: int) -> Forged:
        v = self.model()
        z = torch.randn(1, v.zdim, generator=torch.Generator().manual_seed(item_seed)) * self.temperature
        with torch.no_grad():
            return Forged(to_uint8(v.decode(z))[0])


class LDMMSGForger(TrainedForger):
    ckpt = "ldm-msg"
    # design choice, not from the paper: 50 deterministic DDIM steps at sampling time.
    sample_steps = 50
    info = ForgerInfo("ldm-msg", "diffusion", "entire-synthesis",
                      "latent diffusion: DDPM-trained residual-MLP denoiser (T=400) on the vae-msg 64-d "
                      "latents, 50-step DDIM sampling, decoded by vae-msg, trained here",
                      TRAINED_SOURCE.format("ldm-msg"), TRAINED_LICENCE, 64, True)

    def load(self):
        from . import nets
        from .train import load_generator_checkpoint

        state, meta = load_generator_checkpoint(self.ckpt)
        a = meta["arch"]
        m = nets.MLPDenoiser(zdim=a["zdim"], width=a["width"], nblocks=a["nblocks"])
        m.load_state_dict({k[len("denoiser."):]: v for k, v in state.items() if k.startswith("denoiser.")})
        return m.eval(), VAEMSGForger().model(), state["latent_mean"], state["latent_std"], a["T"]

    def one(self, item_seed: int) -> Forged:
        from . import nets

        m, v, mean, std, T = self.model()
        noise = torch.randn(1, m.inp.in_features, generator=torch.Generator().manual_seed(item_seed))
        z = nets.ddim_sample(m, noise, T=T, steps=self.sample_steps)
        with torch.no_grad():
            return Forged(to_uint8(v.decode(z * std + mean))[0])


class RealNVPMSGForger(TrainedForger):
    ckpt = "realnvp-msg"
    # design choice, not from the paper: sampling temperature 0.7 (standard for flows).
    temperature = 0.7
    info = ForgerInfo("realnvp-msg", "flow", "entire-synthesis",
                      "RealNVP (per-pixel actnorm, 8 affine couplings on 48x8x8 after two squeezes) trained here, 32 px, T=0.7",
                      TRAINED_SOURCE.format("realnvp-msg"), TRAINED_LICENCE, 32, True)

    @staticmethod
    def build(nets, arch: dict) -> torch.nn.Module:
        return (nets.PixRealNVP if arch.get("pixnorm") else nets.RealNVP)(k=arch["k"], hidden=arch["hidden"],
                                                                          res=arch["res"])

    def one(self, item_seed: int) -> Forged:
        from . import nets

        m = self.model()
        z = torch.randn(1, 48, 8, 8, generator=torch.Generator().manual_seed(item_seed)) * self.temperature
        with torch.no_grad():
            x = nets.from_logit(m.reverse(z))
        return Forged((x[0].permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8))


# ------------------------------------------------------------------ landmark forgers on real photos

WORK_RES = 256  # landmark forgers operate on faces of this size (real work crops or downscaled MSG faces)
REAL_LICENCE = "MIT (code); made from the benchmark's real photos: research use only, never redistributed"
REAL_SOURCE = "gazeclip.bench.landmark_ops on real photos of the same split"


def source_face(seed: int) -> tuple[np.ndarray, FaceLM]:
    """A MobileStyleGAN face (WORK_RES px) with landmarks; tries successive seeds until a face is found."""
    from .pretrained import MobileStyleGAN

    for k in range(20):
        img = MobileStyleGAN.get()(derive_seed("source", seed, k))
        img = cv2.resize(img, (WORK_RES, WORK_RES), interpolation=cv2.INTER_AREA)
        lm = detect_face(img)
        if lm is not None:
            return img, lm
    raise GazeclipError(f"no face found in 20 MobileStyleGAN samples for seed {seed}")


class LandmarkForger(Forger):
    """Edits faces with their 478 landmarks. The builder hands it the real faces of one split
    (`use_pool`): targets are taken in a seeded permutation of that split, donors are other people
    of the same split, so nothing crosses a split. Without a pool (`--landmark-source msg`) every
    item draws fresh MobileStyleGAN faces, as in benchmark v1."""

    pool = None  # gazeclip.bench.realfaces.FacePool of one split, or None

    def use_pool(self, pool) -> None:
        self.pool = pool

    @property
    def row_source(self) -> str:
        return REAL_SOURCE if self.pool is not None else "gazeclip.bench.landmark_ops + MobileStyleGAN"

    @property
    def row_licence(self) -> str:
        return REAL_LICENCE if self.pool is not None else "MIT (code); " + MSG_LICENCE

    def iter_generate(self, n: int, seed: int) -> Iterator[Forged]:
        if self.pool is None:
            yield from super().iter_generate(n, seed)
            return
        order = np.random.default_rng(derive_seed(seed, "targets")).permutation(len(self.pool))
        for i in range(n):
            yield self.one(derive_seed(seed, i), target=int(order[i % len(order)]))

    def faces(self, item_seed: int, k: int, target: int | None = None):
        """k faces of different people: [(image, landmarks, identity, photo asset)]; the first is
        the target. Identity and asset are "" for MobileStyleGAN faces."""
        if self.pool is None:
            return [(*source_face(derive_seed(item_seed, tag)), "", "") for tag in "ab"[:k]]
        rng = np.random.default_rng(derive_seed(item_seed, "donor"))
        t = self.pool.usable(int(rng.integers(len(self.pool))) if target is None else target)
        out = [(t.image, t.landmarks, t.face.identity, t.face.asset)]
        if k == 2:
            d = self.pool.usable(int(rng.integers(len(self.pool))), {t.face.identity})
            out.append((d.image, d.landmarks, d.face.identity, d.face.asset))
        return out

    @staticmethod
    def forged(image: np.ndarray, faces, **meta) -> Forged:
        """The result, with the real people and photos it was made from (target first)."""
        photos = [f[3] for f in faces if f[3]]
        return Forged(image, {**meta, **({"photos": photos} if photos else {})}, tuple(f[2] for f in faces if f[2]))

    @abstractmethod
    def one(self, item_seed: int, target: int | None = None) -> Forged: ...


class FaceSwapForger(LandmarkForger):
    info = ForgerInfo("faceswap-poisson", "identity-swap", "identity-swap",
                      "inner face of one real photo, Delaunay-warped onto another person's 478 landmarks, "
                      "Poisson-blended (cv2.seamlessClone)", REAL_SOURCE, REAL_LICENCE, WORK_RES)

    def one(self, item_seed: int, target: int | None = None) -> Forged:
        from .landmark_ops import identity_swap

        faces = self.faces(item_seed, 2, target)
        (t, lt, *_), (s, ls, *_) = faces
        return self.forged(identity_swap(t, lt, s, ls), faces)


class GazeRedirectForger(LandmarkForger):
    info = ForgerInfo("gaze-redirect", "manipulation", "gaze-manipulation",
                      "both irises of a real photo displaced inside the eye openings (smooth warp under a "
                      "feathered eye mask)", REAL_SOURCE, REAL_LICENCE, WORK_RES)

    def one(self, item_seed: int, target: int | None = None) -> Forged:
        from .landmark_ops import gaze_redirect

        faces = self.faces(item_seed, 1, target)
        img, lm = faces[0][:2]
        rng = np.random.default_rng(derive_seed(item_seed, "shift"))
        # design choice, not from the paper: horizontal shift 0.12-0.22 eye widths, either side;
        # vertical -0.08..0.08.
        dx = float(rng.uniform(0.12, 0.22) * rng.choice([-1, 1]))
        dy = float(rng.uniform(-0.08, 0.08))
        return self.forged(gaze_redirect(img, lm, dx, dy), faces, dx=round(dx, 4), dy=round(dy, 4))


class RegionTransplantForger(LandmarkForger):
    info = ForgerInfo("region-transplant", "manipulation", "attribute-manipulation",
                      "eyes or mouth of another real photo, similarity-aligned on their landmarks, Poisson-blended",
                      REAL_SOURCE, REAL_LICENCE, WORK_RES)

    def one(self, item_seed: int, target: int | None = None) -> Forged:
        from .landmark_ops import region_transplant

        faces = self.faces(item_seed, 2, target)
        (t, lt, *_), (d, ld, *_) = faces
        region = "eyes" if derive_seed(item_seed, "region") % 2 == 0 else "mouth"
        return self.forged(region_transplant(t, lt, d, ld, region), faces, region=region)


class MorphForger(LandmarkForger):
    info = ForgerInfo("delaunay-morph", "morph", "entire-synthesis",
                      "two real photos of different people warped to interpolated landmarks (Delaunay) and "
                      "cross-dissolved", REAL_SOURCE, REAL_LICENCE, WORK_RES)

    def one(self, item_seed: int, target: int | None = None) -> Forged:
        from .landmark_ops import morph

        faces = self.faces(item_seed, 2, target)
        (a, la, *_), (b, lb, *_) = faces
        alpha = float(np.random.default_rng(derive_seed(item_seed, "alpha")).uniform(0.35, 0.65))
        return self.forged(morph(a, la, b, lb, alpha), faces, alpha=round(alpha, 4))


# ------------------------------------------------------------------ registry

REGISTRY: Registry[type[Forger]] = Registry("generator", sort=False)  # build order


def register(cls: type[Forger]) -> type[Forger]:
    REGISTRY.add(cls.info.name, cls)
    return cls


for _cls in (MobileStyleGANForger, DCGANDigiFaceForger, DCGANMSGForger, SNGANMSGForger, VAEMSGForger,
             LDMMSGForger, RealNVPMSGForger, FaceSwapForger, GazeRedirectForger, RegionTransplantForger,
             MorphForger):
    register(_cls)


def list_forgers() -> list[str]:
    return REGISTRY.names()


def create_forger(name: str) -> Forger:
    return REGISTRY[name]()
