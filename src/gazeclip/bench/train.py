"""`gazeclip bench train-forgers`: train the here-trained generators on MobileStyleGAN faces, with
fixed seeds and fixed step counts, and write fp16 safetensors checkpoints (package data).

The checkpoints are committed, so `bench build` never retrains. CPU time is measured with
`time.process_time()` (all threads of this process) and stored in each checkpoint's metadata.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..atomic import atomic_path
from . import nets
from ..errors import MissingFileError, UsageError

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"


@dataclass(frozen=True)
class TrainSpec:
    name: str
    steps: int
    batch: int = 64
    seed: int = 0
    lr: float = 2e-4


# design choice, not from the paper: step counts sized to a few CPU minutes each on the shared
# 2-core development machine (the committed checkpoints were trained with 1 thread per model, a
# wall-clock cap, and the number of steps reached is what is recorded here, so rerunning
# `gazeclip bench train-forgers --threads 1` repeats the same steps).
SPECS: dict[str, TrainSpec] = {
    "dcgan-msg": TrainSpec("dcgan-msg", steps=623, batch=32, seed=101),
    "sngan-msg": TrainSpec("sngan-msg", steps=848, batch=32, seed=102),
    "vae-msg": TrainSpec("vae-msg", steps=1790, batch=32, seed=103, lr=1e-3),
    "ldm-msg": TrainSpec("ldm-msg", steps=4000, batch=64, seed=104, lr=5e-4),
    "realnvp-msg": TrainSpec("realnvp-msg", steps=1288, batch=32, seed=105, lr=1e-3),
}
# the latent diffusion model needs the VAE first
ORDER = ["dcgan-msg", "sngan-msg", "vae-msg", "ldm-msg", "realnvp-msg"]


def checkpoint_path(name: str, root: Path | None = None) -> Path:
    return (root or CHECKPOINT_DIR) / f"{name}.safetensors"


def save_checkpoint(state: dict[str, torch.Tensor], meta: dict, path: Path) -> None:
    """fp16 for float tensors (halves the size), atomic write."""
    from safetensors.torch import save_file

    st = {k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous().cpu()
          for k, v in state.items()}
    with atomic_path(path, suffix=".safetensors.tmp") as tmp:
        save_file(st, str(tmp), metadata={"gazeclip": json.dumps(meta, sort_keys=True)})
        os.chmod(tmp, 0o644)


def load_generator_checkpoint(name: str, root: Path | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = checkpoint_path(name, root)
    if not path.is_file():
        raise MissingFileError(f"{path}: forger checkpoint missing; run `gazeclip bench train-forgers "
                                f"--only {name}` (or reinstall gazeclip with its package data)")
    with safe_open(str(path), "pt") as fh:
        meta = json.loads((fh.metadata() or {}).get("gazeclip", "{}"))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}
    return state, meta


def _batches(data: torch.Tensor, spec: TrainSpec, gen: torch.Generator):
    n = data.shape[0]
    while True:
        idx = torch.randperm(n, generator=gen)
        for i in range(0, n - spec.batch + 1, spec.batch):
            x = data[idx[i:i + spec.batch]]
            flip = torch.rand(x.shape[0], generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            yield x


_DEADLINE: list[float] = [float("inf")]
_STEPS_DONE: dict[str, int] = {}


def _bar(spec: TrainSpec):
    """Step iterator with a progress bar; stops early (recorded in the metadata) past the wall cap."""
    for i in tqdm(range(spec.steps), desc=f"train {spec.name}", unit="step", mininterval=5.0):
        if time.perf_counter() > _DEADLINE[0]:
            break
        _STEPS_DONE[spec.name] = i + 1
        yield i


def train_dcgan(data: torch.Tensor, spec: TrainSpec, gen: torch.Generator, **_) -> dict:
    G, D = nets.DCGANGenerator(nz=100, ngf=40), nets.DCGANDiscriminator(ndf=32)
    G.apply(nets.dcgan_init)
    D.apply(nets.dcgan_init)
    og = torch.optim.Adam(G.parameters(), spec.lr, betas=(0.5, 0.999))
    od = torch.optim.Adam(D.parameters(), spec.lr, betas=(0.5, 0.999))
    it = _batches(data, spec, gen)
    for _ in _bar(spec):
        x = next(it)
        z = torch.randn(x.shape[0], 100, generator=gen)
        fake = G(z)
        ones, zeros = torch.ones(x.shape[0]), torch.zeros(x.shape[0])
        ld = F.binary_cross_entropy_with_logits(D(x), ones * 0.9) + \
            F.binary_cross_entropy_with_logits(D(fake.detach()), zeros)
        od.zero_grad()
        ld.backward()
        od.step()
        lg = F.binary_cross_entropy_with_logits(D(fake), ones)
        og.zero_grad()
        lg.backward()
        og.step()
    return {"state": G.state_dict(), "arch": {"nz": 100, "ngf": 40}, "final_loss": [float(ld.detach()), float(lg.detach())]}


def train_sngan(data: torch.Tensor, spec: TrainSpec, gen: torch.Generator, **_) -> dict:
    G, D = nets.ResizeConvGenerator(nz=128, ch=128), nets.SNDiscriminator(ch=32)
    # design choice, not from the paper: two-time-scale rule, D at 2x and G at 0.5x the base rate
    og = torch.optim.Adam(G.parameters(), spec.lr / 2, betas=(0.0, 0.9))
    od = torch.optim.Adam(D.parameters(), spec.lr * 2, betas=(0.0, 0.9))
    it = _batches(data, spec, gen)
    for _ in _bar(spec):
        x = next(it)
        fake = G(torch.randn(x.shape[0], 128, generator=gen))
        ld = F.relu(1 - D(x)).mean() + F.relu(1 + D(fake.detach())).mean()
        od.zero_grad()
        ld.backward()
        od.step()
        lg = -D(fake).mean()
        og.zero_grad()
        lg.backward()
        og.step()
    return {"state": G.state_dict(), "arch": {"nz": 128, "ch": 128}, "final_loss": [float(ld.detach()), float(lg.detach())]}


def train_vae(data: torch.Tensor, spec: TrainSpec, gen: torch.Generator, **_) -> dict:
    V = nets.VecVAE(ch=48, zdim=64)
    opt = torch.optim.Adam(V.parameters(), spec.lr)
    it = _batches(data, spec, gen)
    beta = 1.0
    for _ in _bar(spec):
        x = next(it)
        mu, logvar = V.encode(x)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=gen)
        rec = V.decode(z)
        # Gaussian likelihood with sigma = 0.5 in [-1, 1] units, summed per image (design choice,
        # not from the paper: a sharper likelihood lets the posterior drift from the prior, and
        # prior samples stop looking like faces)
        lrec = ((rec - x) ** 2).flatten(1).sum(1).mean() / (2 * 0.5 ** 2)
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean()
        loss = lrec + beta * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"state": V.state_dict(), "arch": {"ch": 48, "zdim": 64}, "final_loss": [float(lrec.detach()), float(kl.detach())]}


def train_ldm(data: torch.Tensor, spec: TrainSpec, gen: torch.Generator, root: Path | None = None, **_) -> dict:
    vstate, vmeta = load_generator_checkpoint("vae-msg", root)
    V = nets.VecVAE(ch=vmeta["arch"]["ch"], zdim=vmeta["arch"]["zdim"])
    V.load_state_dict(vstate)
    V.eval()
    with torch.no_grad():  # latents of the training faces and their mirror images
        lat = torch.cat([V.encode(data[i:i + 128])[0] for i in range(0, len(data), 128)] +
                        [V.encode(data[i:i + 128].flip(3))[0] for i in range(0, len(data), 128)])
    mean = lat.mean(0, keepdim=True)
    std = lat.std(0, keepdim=True)
    lat = (lat - mean) / std
    M = nets.MLPDenoiser(zdim=lat.shape[1], width=256, nblocks=3)
    opt = torch.optim.Adam(M.parameters(), spec.lr)
    sched = nets.ddpm_schedule()
    T = len(sched["abar"])
    for _ in _bar(spec):
        idx = torch.randint(0, len(lat), (spec.batch,), generator=gen)
        z0 = lat[idx]
        t = torch.randint(0, T, (spec.batch,), generator=gen)
        eps = torch.randn(z0.shape, generator=gen)
        ab = sched["abar"][t][:, None]
        loss = F.mse_loss(M(ab.sqrt() * z0 + (1 - ab).sqrt() * eps, t), eps)
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = {f"denoiser.{k}": v for k, v in M.state_dict().items()}
    state["latent_mean"], state["latent_std"] = mean, std
    return {"state": state, "arch": {"zdim": int(lat.shape[1]), "width": 256, "nblocks": 3, "T": T, "vae": "vae-msg"},
            "final_loss": [float(loss.detach())]}


def train_realnvp(data: torch.Tensor, spec: TrainSpec, gen: torch.Generator, **_) -> dict:
    x32 = F.interpolate(data, size=(32, 32), mode="area")
    M = nets.PixRealNVP(k=8, hidden=96, res=32)
    with torch.no_grad():  # per-pixel ActNorm from all training faces (and mirrors), logit space
        x01 = (torch.cat([x32, x32.flip(3)]) + 1) / 2 * (255 / 256) + 0.5 / 256
        M.pix.init_from(nets.to_logit(x01)[0])
    opt = torch.optim.Adam(M.parameters(), spec.lr)
    it = _batches(x32, spec, gen)
    ndim = 3 * 32 * 32
    for _ in _bar(spec):
        x = next(it)
        x01 = ((x + 1) / 2 * 255 + torch.rand(x.shape, generator=gen)) / 256  # dequantised
        y, ld0 = nets.to_logit(x01)
        z, ld = M(y)
        nll = 0.5 * (z ** 2).flatten(1).sum(1) + 0.5 * ndim * np.log(2 * np.pi) - ld - ld0
        bpd = (nll.mean() / ndim + np.log(256)) / np.log(2)
        opt.zero_grad()
        bpd.backward()
        torch.nn.utils.clip_grad_norm_(M.parameters(), 50.0)
        opt.step()
    return {"state": M.state_dict(), "arch": {"k": 8, "hidden": 96, "res": 32, "pixnorm": True}, "final_loss": [float(bpd.detach())]}


TRAINERS: dict[str, Callable[..., dict]] = {
    "dcgan-msg": train_dcgan, "sngan-msg": train_sngan, "vae-msg": train_vae,
    "ldm-msg": train_ldm, "realnvp-msg": train_realnvp,
}


def train_one(name: str, data_u8: np.ndarray, root: Path | None = None, steps: int | None = None,
              threads: int = 1, max_minutes: float | None = None) -> dict:
    spec = SPECS[name]
    if steps is not None:
        spec = TrainSpec(spec.name, steps, spec.batch, spec.seed, spec.lr)
    torch.set_num_threads(threads)
    torch.manual_seed(spec.seed)
    gen = torch.Generator().manual_seed(spec.seed)
    data = torch.from_numpy(data_u8).permute(0, 3, 1, 2).float() / 127.5 - 1
    c0, w0 = time.process_time(), time.perf_counter()
    _DEADLINE[0] = w0 + 60 * max_minutes if max_minutes else float("inf")
    out = TRAINERS[name](data, spec, gen, root=root)
    cpu_min, wall_min = (time.process_time() - c0) / 60, (time.perf_counter() - w0) / 60
    meta = {"name": name, "spec": asdict(spec), "arch": out["arch"], "final_loss": out["final_loss"],
            "steps_done": _STEPS_DONE.get(name, 0), "cpu_minutes": round(cpu_min, 2), "wall_minutes": round(wall_min, 2), "threads": threads,
            "train_images": int(len(data_u8)), "torch": torch.__version__}
    path = checkpoint_path(name, root)
    save_checkpoint(out["state"], meta, path)
    meta["bytes"] = path.stat().st_size
    return meta


def train_forgers(only: list[str] | None = None, n_train: int = 600, root: Path | None = None,
                  steps: int | None = None, threads: int = 1, max_minutes: float | None = None,
                  data: np.ndarray | None = None) -> list[dict]:
    from .trainset import build_trainset

    names = [n for n in ORDER if not only or n in only]
    unknown = set(only or []) - set(ORDER)
    if unknown:
        raise UsageError(f"unknown trained forger(s) {sorted(unknown)}; known: {', '.join(ORDER)}")
    data = build_trainset(n_train) if data is None else data
    results = []
    for name in names:
        meta = train_one(name, data, root=root, steps=steps, threads=threads, max_minutes=max_minutes)
        print(f"{name}: {meta['cpu_minutes']:.2f} CPU min ({meta['wall_minutes']:.2f} wall min), "
              f"{meta['bytes'] / 1e6:.2f} MB, final loss {meta['final_loss']}", flush=True)
        results.append(meta)
    return results
