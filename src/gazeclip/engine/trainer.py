"""Training: single process or torchrun/DDP, from cached frozen-prefix features when possible.

RUN/ layout:
    config.yaml        the resolved TrainConfig plus data folder (what made this run)
    taxonomy.json      classes, families (the label space)
    model/             the best model by validation (save_pretrained: trainable weights + config)
    checkpoint.pt      last state for --resume (model, optimiser, scheduler, sampler position, RNG):
                       tensors and plain data only, loaded with weights_only=True (runfolder.py)
    log.csv, tb/       per-epoch metrics; TensorBoard scalars
    calibration.json   the unknown-generator threshold calibrated on the validation split
    summary.json       best epoch, its validation metrics, wall time
"""
from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ..data.dataset import Augment, FaceDataset, build_taxonomy, collate, manifest_samples
from ..data.manifest import select_rows
from ..data.feature_cache import FeatureCache
from ..data.manifest import load_protocol, read_manifest
from ..data.sampling import BalancedSampler
from ..models.interface import Taxonomy
from . import utils as U
from .config import TrainConfig
from .modeling import (create_model, fill_pending, gaze_dim_of, load_model_weights, preprocess_of, prefix_id, run_model,
                       supports_prefix, trainable_names, trainable_state)
from .runfolder import (CHECKPOINT_FIX, clean_stale, load_checkpoint, read_taxonomy, rng_state, same_taxonomy,
                        save_model, set_rng_state)


class Interrupted(SystemExit):
    """Raised by `interrupt_after_steps` (tests): behaves like a kill after the last checkpoint."""


taxonomy_to_dict = Taxonomy.to_dict  # the one JSON form (models.interface)


class _Step(nn.Module):
    """forward + losses in one module call, so DDP sees every parameter the loss uses."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        out = self.model(batch)
        return out, self.model.losses(out, batch)


class _ResumableSampler(DistributedSampler):
    """DistributedSampler that can start part-way through an epoch (mid-epoch resume)."""

    skip = 0

    def __iter__(self):
        idx = list(super().__iter__())
        return iter(idx[self.skip:])

    def __len__(self):
        return super().__len__() - self.skip


def lr_lambda(step: int, warmup: int, total: int, min_ratio: float) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def binary_auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else float("nan")


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    best_metrics: dict
    history: list[dict]
    stopped_early: bool


def train(cfg: TrainConfig, data_dir: str | Path, run_dir: str | Path, resume: bool = False) -> TrainResult:
    t0 = time.time()
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    device = U.resolve_device(cfg.device)
    distributed = U.init_distributed(device)
    rank, world, _ = U.dist_env()
    main = rank == 0
    if cfg.batch_size % world:
        raise ValueError(f"--batch-size {cfg.batch_size} is not divisible by {world} processes; "
                         "use a multiple of --nproc_per_node")
    ckpt_path = run_dir / "checkpoint.pt"
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume and (run_dir / "config.yaml").exists():
            raise FileExistsError(f"{run_dir}: already holds a run; pass --resume to continue it or choose "
                                  "another --out")
        stale = clean_stale(run_dir)  # temp files and half-saved models of a killed run
        if stale:
            print(f"{run_dir}: removed {len(stale)} stale file(s) of an interrupted run: {', '.join(stale[:3])}",
                  flush=True)
    U.barrier()
    # a run killed before its first checkpoint has none: --resume then starts it from the beginning
    resuming = resume and ckpt_path.is_file()
    ck = load_checkpoint(ckpt_path) if resuming else None  # checked before any work: nothing in it can run code
    if resume and (run_dir / "config.yaml").is_file():
        # the run's own config; only the process-level switches come from this call
        cfg = load_run_config(run_dir).replace(progress=cfg.progress, interrupt_after_steps=cfg.interrupt_after_steps,
                                               device=cfg.device)

    U.seed_everything(cfg.seed)
    U.set_deterministic(device)
    amp = U.autocast_dtype(cfg.precision, device)

    # ---- data and label space
    rows = read_manifest(data_dir)
    protocol = load_protocol(data_dir, cfg.protocol, rows)
    taxonomy = build_taxonomy(rows, protocol)
    tx_path = run_dir / "taxonomy.json"
    if resume and tx_path.is_file() and not same_taxonomy(read_taxonomy(tx_path), taxonomy):
        from ..errors import DamagedFileError

        raise DamagedFileError(tx_path, f"differs from the classes of {data_dir} protocol {protocol.name} (the data "
                               "or protocols.yaml changed since the run started)",
                               "resume with the data folder the run started with, or start a new run")
    class_family = {r.cls: r.family for r in rows}
    train_rows = select_rows(rows, protocol, "train")
    val_rows = select_rows(rows, protocol, "val")
    if not train_rows or not val_rows:
        raise ValueError(f"{data_dir}/manifest.csv: protocol {protocol.name} has {len(train_rows)} train and "
                         f"{len(val_rows)} val rows; both must be non-empty")

    model = create_model(cfg, taxonomy).to(device)
    preprocess = preprocess_of(model)
    gd = gaze_dim_of(model)

    def samples(rs):
        kw = dict(mode=cfg.faces, estimator=cfg.gaze_estimator, size=preprocess.size, gaze_dim=gd,
                  face_cache_dir=cfg.face_cache_dir, progress=cfg.progress and main)
        s = manifest_samples(rs, data_dir, build=main, **kw) if main else None
        U.barrier()  # rank 0 analyses faces once; the others read its result
        return s if s is not None else manifest_samples(rs, data_dir, **kw)

    train_s, val_s = samples(train_rows), samples(val_rows)
    if cfg.max_train_items and len(train_s) > cfg.max_train_items:
        pick = np.random.default_rng(cfg.seed).choice(len(train_s), cfg.max_train_items, replace=False)
        train_s = train_s.subset(np.sort(pick))

    cache = None
    if cfg.feature_cache and supports_prefix(model):
        cache = FeatureCache(cfg.cache_dir or data_dir / ".cache" / "features", prefix_id(model), cfg.cache_dtype)
        keys = train_s.keys + val_s.keys
        crops = np.concatenate([train_s.crops, val_s.crops])
        model.eval()
        n_new = cache.fill(keys, lambda idx: preprocess(list(crops[idx])).to(device),
                           lambda x: model.encode_prefix(x).cpu(), rank=rank, world=world,
                           progress=cfg.progress and main)
        U.barrier()
    if main:
        n_faces = int((train_s.n_faces > 0).sum() + (val_s.n_faces > 0).sum())
        print(f"{cfg.model} on {cfg.backbone}, protocol {protocol.name}: {len(train_s)} train / {len(val_s)} val "
              f"items ({n_faces} with a face), {len(taxonomy.classes)} classes; "
              + (f"feature cache {cache.dir} ({n_new} computed here)" if cache else "no feature cache")
              + (f"; {world} processes" if world > 1 else ""), flush=True)
    augment = Augment(cfg.hflip, cfg.color_jitter)
    train_ds = FaceDataset(train_s, taxonomy, preprocess, cache, augment, cfg.seed)
    val_ds = FaceDataset(val_s, taxonomy, preprocess, cache)
    for ds in (train_ds, val_ds):
        ds.set_families(class_family)

    per_rank = cfg.batch_size // world
    if cfg.balance_classes:  # real and each seen generator count equally (see data/sampling.py)
        sampler = BalancedSampler(train_ds.labels, num_replicas=world, rank=rank, seed=cfg.seed)
    else:
        sampler = _ResumableSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
    loader = DataLoader(train_ds, batch_size=per_rank, sampler=sampler, collate_fn=collate,
                        num_workers=cfg.num_workers)
    steps_per_epoch = math.ceil(len(sampler) / per_rank)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:  # e.g. clip-zeroshot: an evaluation-only run (validated once, saved, calibrated)
        if main:
            print(f"model {cfg.model} has no trainable parameters: validating once, no training", flush=True)
        cfg = cfg.replace(epochs=1)
    # a dummy parameter keeps the optimiser/scheduler/checkpoint code uniform when there is nothing to train
    opt = torch.optim.AdamW(params or [nn.Parameter(torch.zeros(1))], lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=tuple(cfg.betas))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, warmup, total_steps, cfg.min_lr_ratio))
    step_fn = _Step(model)
    if distributed and params:
        import warnings

        # an expanded (1, 1, W) token parameter trips this performance note; it is harmless here
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        step_fn = nn.parallel.DistributedDataParallel(step_fn, find_unused_parameters=cfg.find_unused_parameters)

    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best": -math.inf, "best_epoch": -1,
             "bad_epochs": 0, "history": [], "stopped_early": False, "train_loss_sum": 0.0, "train_n": 0}
    if ck is not None:
        from ..errors import DamagedFileError

        if set(ck["model"]) != trainable_names(model) or not set(state) <= set(ck["state"]):
            raise DamagedFileError(ckpt_path, "does not fit this run's model (other weights or fields)", CHECKPOINT_FIX)
        try:
            model.load_state_dict(ck["model"], strict=False)
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            set_rng_state(ck["rng"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise DamagedFileError(ckpt_path, f"does not fit this run's model ({str(e).splitlines()[0][:120]})",
                                   CHECKPOINT_FIX) from None
        state.update({k: ck["state"][k] for k in state})
    elif main:
        import yaml

        if resume:
            print(f"{run_dir}: no checkpoint yet (killed before the first one): starting the run from the beginning",
                  flush=True)
        if not (resume and (run_dir / "config.yaml").is_file()):
            resolved = {**cfg.to_dict(), "data": str(data_dir.resolve()), "world_size": world}
            U.atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
        U.atomic_write_json(tx_path, taxonomy_to_dict(taxonomy))

    writer = None
    if main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=state["global_step"] if resume else None)

    def save_checkpoint():
        if main:
            U.atomic_torch_save({"model": trainable_state(model), "optimizer": opt.state_dict(),
                                 "scheduler": sched.state_dict(), "state": dict(state), "rng": rng_state()},
                                ckpt_path)
        U.barrier()

    select = cfg.select_metric
    if select not in ("val_score", "val_acc", "val_auc", "val_loss"):
        raise ValueError(f"select_metric {select!r}: use val_score, val_acc, val_auc or val_loss")

    model.train()
    from tqdm import tqdm

    while state["epoch"] < cfg.epochs and not state["stopped_early"]:
        epoch = state["epoch"]
        sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        sampler.skip = state["step_in_epoch"] * per_rank
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and main),
                   initial=state["step_in_epoch"], total=steps_per_epoch, leave=False)
        for batch, pending, _ in (bar if params else ()):
            batch = batch.to(device)
            fill_pending(model, batch, pending)
            with U.autocast(amp, device):
                _, losses = step_fn(batch)
            loss = losses["total"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            state["global_step"] += 1
            state["step_in_epoch"] += 1
            state["train_loss_sum"] += float(loss.detach())
            state["train_n"] += 1
            if writer is not None:
                writer.add_scalar("train/loss", float(loss.detach()), state["global_step"])
                writer.add_scalar("train/lr", sched.get_last_lr()[0], state["global_step"])
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            if cfg.checkpoint_every and state["global_step"] % cfg.checkpoint_every == 0:
                save_checkpoint()
            if cfg.interrupt_after_steps and state["global_step"] >= cfg.interrupt_after_steps:
                raise Interrupted(f"interrupted after {state['global_step']} steps (testing)")
        bar.close()

        # ---- validation (every rank evaluates the whole val split: the same decision everywhere)
        preds, val_loss = run_model(model, val_ds, batch_size=max(per_rank, 16), device=device, with_loss=True)
        labels = val_ds.labels
        val_acc = float((preds.attribution_logits.argmax(1) == labels).mean())
        val_auc = binary_auc(val_ds.is_fake, preds.p_fake)
        val_score = float(np.nanmean([val_acc, val_auc]))
        row = {"epoch": epoch + 1, "step": state["global_step"], "lr": sched.get_last_lr()[0],
               "train_loss": state["train_loss_sum"] / max(1, state["train_n"]), "val_loss": val_loss,
               "val_acc": val_acc, "val_auc": val_auc, "val_score": val_score,
               "time_s": round(time.time() - t0, 2)}
        state["history"].append(row)
        cur = -val_loss if select == "val_loss" else row[select]
        cur = cur if math.isfinite(cur) else -math.inf  # e.g. AUC undefined on a one-class val split
        improved = state["best_epoch"] < 0 or cur > state["best"]
        if improved:
            state["best"], state["best_epoch"], state["bad_epochs"] = cur, epoch + 1, 0
            if main:
                save_model(model, run_dir / "model")
        else:
            state["bad_epochs"] += 1
            if cfg.patience and state["bad_epochs"] >= cfg.patience:
                state["stopped_early"] = True
        state["epoch"] += 1
        state["step_in_epoch"] = 0
        state["train_loss_sum"], state["train_n"] = 0.0, 0
        if main:
            _write_log(run_dir / "log.csv", state["history"])
            for k in ("train_loss", "val_loss", "val_acc", "val_auc", "val_score"):
                writer.add_scalar(f"epoch/{k}", row[k], epoch + 1)
            writer.flush()
            print(f"epoch {epoch + 1}: train_loss {row['train_loss']:.4f} val_loss {val_loss:.4f} "
                  f"val_acc {val_acc:.3f} val_auc {val_auc:.3f}{' *' if improved else ''}", flush=True)
        save_checkpoint()

    if writer is not None:
        writer.close()
    best = next(h for h in state["history"] if h["epoch"] == state["best_epoch"])
    if main:
        from .calibrate import calibrate_run

        load_model_weights(model, run_dir / "model")  # the best epoch's weights
        calibrate_run(run_dir, val_ds, cfg, device, model=model)
        U.atomic_write_json(run_dir / "summary.json", {
            "model": cfg.model, "backbone": cfg.backbone, "protocol": cfg.protocol, "best_epoch": state["best_epoch"],
            "best_val": best, "epochs_run": state["epoch"], "stopped_early": state["stopped_early"],
            "n_train": len(train_ds), "n_val": len(val_ds), "world_size": world,
            "feature_cache": cache is not None, "wall_s": round(time.time() - t0, 1)})
    U.barrier()
    return TrainResult(run_dir, state["best_epoch"], best, state["history"], state["stopped_early"])


def read_run_yaml(run_dir: str | Path) -> dict:
    """`RUN/config.yaml` as a mapping; `DamagedFileError` naming it when it is not one."""
    import yaml

    from ..errors import DamagedFileError

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a training run folder (no config.yaml); pass the --out of "
                                "`gazeclip train`")
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DamagedFileError(path, f"damaged YAML ({str(e).splitlines()[0][:100]})") from None
    if not isinstance(d, dict):
        raise DamagedFileError(path, "not a mapping of TrainConfig fields")
    return d


def load_run_config(run_dir: str | Path) -> TrainConfig:
    from ..errors import DamagedFileError

    path = Path(run_dir) / "config.yaml"
    d = read_run_yaml(run_dir)
    d.pop("data", None)
    d.pop("world_size", None)
    try:
        return TrainConfig.from_dict(d, source=str(path))
    except (TypeError, ValueError) as e:
        raise DamagedFileError(path, str(e).removeprefix(f"{path}: ")) from None


def _write_log(path: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[0]))
    w.writeheader()
    w.writerows(history)
    U.atomic_write_text(path, buf.getvalue())
