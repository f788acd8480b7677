"""Small helpers every mode shares: atomic writes, seeding, devices, precision, torch.distributed."""
from __future__ import annotations

import io
import os
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import safejson
from ..atomic import atomic_write_bytes, atomic_write_text  # noqa: F401 (the engine's writers)
from .config import PRECISIONS  # the run config's choices of `precision`
from ..errors import GazeclipError, UsageError


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """JSON without NaN/Infinity (they become null; gazeclip.safejson), written atomically."""
    atomic_write_text(path, safejson.dumps(obj, indent=2) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def set_deterministic(device: torch.device) -> None:
    """CPU kernels here are deterministic for a fixed thread count; on CUDA, ask for deterministic
    kernels (warn where there are none). Skipped on CPU: the call imports the compiler stack (~2 s)."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() \
            else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GazeclipError(f"--device {name}: CUDA is not available here; use --device cpu")
    return torch.device(name)


def cpu_bf16_kind() -> str | None:
    """This CPU's bf16 matrix instructions: "amx" (Intel AMX-BF16 tiles; bf16 GEMMs ~7x fp32),
    "avx512_bf16" (AVX512-BF16 dot products, e.g. AMD Zen 4 and Intel Cooper Lake; ~2-3x), or None
    (AVX2 and older: bf16 is emulated and slower than fp32). Asks torch first, then /proc/cpuinfo."""
    try:
        if torch.cpu._is_amx_tile_supported():
            return "amx"
        return "avx512_bf16" if torch.cpu._is_avx512_bf16_supported() else None
    except AttributeError:  # a torch without these probes: read the kernel's flags
        try:
            flags = set(Path("/proc/cpuinfo").read_text().split())
        except OSError:
            return None
        return "amx" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else None


def cpu_native_bf16() -> bool:
    """True when this CPU has bf16 matrix instructions (AMX-BF16 or AVX512-BF16, `cpu_bf16_kind`)."""
    return cpu_bf16_kind() is not None


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device` (None = fp32), for training and inference alike.

    auto: bf16 on CUDA devices with native bf16 (compute capability >= 8) and on CPUs with native
    bf16 (AMX or AVX512-BF16, `cpu_native_bf16`); fp32 elsewhere (an AVX2 CPU emulates bf16, slower
    than fp32). Measured on an AVX512-BF16 CPU without AMX: a GazeCLIP training epoch 1.7-2.1x and
    the model at inference 2.2x faster in bf16 (docs/engine.md#precision); AMX gains more."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    has_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16":
        if device.type == "cpu" or has_bf16:
            return torch.bfloat16
        raise GazeclipError(f"precision bf16: device {device} has no bf16; use --precision fp32")
    if device.type == "cpu":
        return torch.bfloat16 if cpu_native_bf16() else None
    return torch.bfloat16 if has_bf16 else None


@contextmanager
def autocast(dtype: torch.dtype | None, device: torch.device):
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield


# ---------------------------------------------------------------- torch.distributed
def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment, or (0, 1, 0)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(device: torch.device, timeout_s: float | None = None) -> bool:
    """Join torchrun's process group (gloo on CPU, nccl on CUDA, each rank on its own GPU); False
    outside torchrun. `timeout_s`: how long a collective may wait for the slowest rank (torch's
    default, 30 min, when None)."""
    import datetime

    import torch.distributed as dist

    rank, world, _ = dist_env()
    if world <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":  # collectives of objects go through the current device
            torch.cuda.set_device(device)
        kw = {"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s else {}
        dist.init_process_group(backend=backend, **kw)
    return True


def is_main() -> bool:
    return dist_env()[0] == 0


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        lst = [obj]
        dist.broadcast_object_list(lst, src=0)
        return lst[0]
    return obj


def gather_objects(obj: Any) -> list:
    """`obj` of every rank, in rank order, on every rank ([obj] outside torchrun)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def close_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
