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

`train()` tells the loop's story in steps: check the names, start the processes, prepare the run
folder (or reopen it), read the labels, build the model, load the data (faces, feature cache,
datasets), build the loader and the optimiser, restore a checkpoint or start fresh, then per epoch
`_train_epoch` -> `_validate_epoch` -> `_log_epoch` -> checkpoint, and `_finish` (calibration,
summary).
"""
from __future__ import annotations

import csv
import functools
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ..data.dataset import Augment, FaceDataset, build_taxonomy, collate, manifest_samples, variants_for
from ..data.derived import best_landmarks, derive_training_rows
from ..data.feature_cache import FeatureCache
from ..data.manifest import load_protocol, read_manifest, select_rows
from ..data.sampling import BalancedSampler
from ..models.interface import Taxonomy
from ..run import utils as U
from ..run.config import TrainConfig
from ..run.scores import binary_auc
from ..run.modeling import (create_run_model, fill_pending, load_model_weights, prefix_id, run_model,
                       trainable_names, trainable_state)
from ..run.folder import (CHECKPOINT_FIX, load_run_config, clean_stale, load_checkpoint, model_bound_settings,
                        read_taxonomy, rng_state, same_taxonomy, save_model, set_rng_state)
from ..errors import OutputExistsError, UsageError


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


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    best_metrics: dict
    history: list[dict]
    stopped_early: bool


def train(cfg: TrainConfig, data_dir: str | Path, run_dir: str | Path, resume: bool = False) -> TrainResult:
    """Train `cfg.model` on `data_dir`'s protocol into `run_dir` (or continue it, `resume`); every
    process of a torchrun job calls this, rank 0 writes the files."""
    t0 = time.time()
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    check_names(cfg)  # a misspelt model, backbone or --model-arg fails before any folder or data work
    procs = _start_processes(cfg)
    cfg, ck = _prepare_run_dir(cfg, run_dir, resume, procs)
    U.seed_everything(cfg.seed)
    U.set_deterministic(procs.device)
    amp = U.autocast_dtype(cfg.precision, procs.device)

    labels = _read_labels(cfg, data_dir, run_dir, resume)
    model = create_run_model(cfg, labels.taxonomy).to(procs.device)
    data = _load_data(cfg, labels, model, data_dir, procs)
    batches = _build_loader(cfg, data, procs)
    cfg, optim = _build_optimiser(cfg, model, batches, procs)
    state, writer = _restore_or_start(cfg, ck, model, optim, data, data_dir, run_dir, resume, procs)
    save = functools.partial(_save_checkpoint, run_dir / "checkpoint.pt", model, optim, state, procs)

    model.train()
    while state["epoch"] < cfg.epochs and not state["stopped_early"]:
        _train_epoch(cfg, model, optim, batches, state, writer, amp, procs, save)
        row, improved = _validate_epoch(cfg, model, data, batches, optim, state, run_dir, t0, procs)
        state["epoch"] += 1
        state["step_in_epoch"] = 0
        state["train_loss_sum"], state["train_n"] = 0.0, 0
        if procs.main:
            _log_epoch(run_dir, state["history"], row, improved, writer)
        save()
    return _finish(cfg, model, data, state, run_dir, writer, t0, procs, amp)


def check_names(cfg: TrainConfig) -> None:
    """The model and backbone names against their registries, and the model options against the
    model's config: `UnknownNameError` / `ValueError`, one line naming the valid ones."""
    from ..models.backbones import BACKBONES
    from ..models.registry import model_config

    BACKBONES[cfg.backbone]
    model_config(cfg.model, **cfg.model_overrides)


@dataclass
class _Procs:
    """This process's place in the job (one process: rank 0 of 1)."""

    device: torch.device
    distributed: bool
    rank: int
    world: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def _start_processes(cfg: TrainConfig) -> _Procs:
    device = U.resolve_device(cfg.device)
    distributed = U.init_distributed(device)
    rank, world, _ = U.dist_env()
    if cfg.batch_size % world:
        raise UsageError(f"--batch-size {cfg.batch_size} is not divisible by {world} processes; "
                         "use a multiple of --nproc_per_node")
    return _Procs(device, distributed, rank, world)


def _prepare_run_dir(cfg: TrainConfig, run_dir: Path, resume: bool, procs: _Procs) -> tuple[TrainConfig, dict | None]:
    """Create (or reopen) the run folder; on resume, the run's own config and its checkpoint (None
    when it was killed before the first one: it then starts from the beginning)."""
    ckpt_path = run_dir / "checkpoint.pt"
    if procs.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume and (run_dir / "config.yaml").exists():
            raise OutputExistsError(f"{run_dir}: already holds a run; pass --resume to continue it or choose "
                                  "another --out")
        stale = clean_stale(run_dir)  # temp files and half-saved models of a killed run
        if stale:
            print(f"{run_dir}: removed {len(stale)} stale file(s) of an interrupted run: {', '.join(stale[:3])}",
                  flush=True)
    U.barrier()
    ck = load_checkpoint(ckpt_path) if resume and ckpt_path.is_file() else None  # nothing in it can run code
    if resume and (run_dir / "config.yaml").is_file():
        # the run's own config; only the process-level switches come from this call
        cfg = load_run_config(run_dir).replace(progress=cfg.progress, interrupt_after_steps=cfg.interrupt_after_steps,
                                               device=cfg.device)
        check_names(cfg)
    return cfg, ck


@dataclass
class _Labels:
    """The protocol's label space and its train / val rows of the manifest."""

    taxonomy: Taxonomy
    protocol: str
    class_family: dict
    train_rows: list
    val_rows: list


def _read_labels(cfg: TrainConfig, data_dir: Path, run_dir: Path, resume: bool) -> _Labels:
    rows = read_manifest(data_dir)
    protocol = load_protocol(data_dir, cfg.protocol, rows)
    taxonomy = build_taxonomy(rows, protocol)
    tx_path = run_dir / "taxonomy.json"
    if resume and tx_path.is_file() and not same_taxonomy(read_taxonomy(tx_path), taxonomy):
        from ..errors import DamagedFileError

        raise DamagedFileError(tx_path, f"differs from the classes of {data_dir} protocol {protocol.name} (the data "
                               "or protocols.yaml changed since the run started)",
                               "resume with the data folder the run started with, or start a new run")
    train_rows = select_rows(rows, protocol, "train")
    val_rows = select_rows(rows, protocol, "val")
    if not train_rows or not val_rows:
        raise UsageError(f"{data_dir}/manifest.csv: protocol {protocol.name} has {len(train_rows)} train and "
                         f"{len(val_rows)} val rows; both must be non-empty")
    return _Labels(taxonomy, protocol.name, {r.cls: r.family for r in rows}, train_rows, val_rows)


@dataclass
class _Data:
    """The train and val datasets of a run and the feature cache they read (None: pixels only)."""

    taxonomy: Taxonomy
    train: FaceDataset
    val: FaceDataset
    cache: FeatureCache | None


def _load_data(cfg: TrainConfig, labels: _Labels, model: nn.Module, data_dir: Path, procs: _Procs) -> _Data:
    """Faces (and gaze) of every item, analysed once by rank 0; the frozen-prefix features of every
    crop, cached; the datasets."""
    preprocess = model.preprocess
    gd = model.gaze_feature_dim

    def samples(rs):
        kw = dict(mode=cfg.faces, estimator=cfg.gaze_estimator, size=preprocess.size, gaze_dim=gd,
                  face_cache_dir=cfg.face_cache_dir, progress=cfg.progress and procs.main)
        s = manifest_samples(rs, data_dir, build=procs.main, **kw) if procs.main else None
        U.barrier()  # rank 0 analyses faces once; the others read its result
        return s if s is not None else manifest_samples(rs, data_dir, **kw)

    # self-blends (extra items) and perturbed copies (stand-ins), rendered once by rank 0 (data/derived.py)
    derive = functools.partial(derive_training_rows, data_dir, labels.train_rows, cfg.derived_spec(),
                               lambda paths: best_landmarks(paths, cfg.gaze_estimator, cfg.face_cache_dir
                                                            or data_dir / ".cache" / "faces"), progress=cfg.progress and procs.main)
    extra = derive() if procs.main else None
    U.barrier()
    extra = extra or derive()
    train_s, val_s = samples(labels.train_rows + extra.blends), samples(labels.val_rows)
    if cfg.max_train_items and len(train_s) > cfg.max_train_items:
        pick = np.random.default_rng(cfg.seed).choice(len(train_s), cfg.max_train_items, replace=False)
        train_s = train_s.subset(np.sort(pick))
    variants = (variants_for(train_s, samples(extra.copies), extra.copy_of, cfg.robust_augment_p)
                if extra.copies else None)
    extra_s = [variants.samples] if variants else []

    cache = None
    if cfg.feature_cache and model.supports_prefix_cache:
        cache = FeatureCache(cfg.cache_dir or data_dir / ".cache" / "features", prefix_id(model), cfg.cache_dtype)
        crops = np.concatenate([train_s.crops, val_s.crops, *(x.crops for x in extra_s)])
        model.eval()
        n_new = cache.fill(train_s.keys + val_s.keys + [k for x in extra_s for k in x.keys],
                           lambda idx: preprocess(list(crops[idx])).to(procs.device),
                           lambda x: model.encode_prefix(x).cpu(), rank=procs.rank, world=procs.world,
                           progress=cfg.progress and procs.main)
        U.barrier()
    if procs.main:
        n_faces = int((train_s.n_faces > 0).sum() + (val_s.n_faces > 0).sum())
        print(f"{cfg.model} on {cfg.backbone}, protocol {labels.protocol}: {len(train_s)} train / {len(val_s)} val "
              f"items ({n_faces} with a face), {len(labels.taxonomy.classes)} classes; "
              + (f"feature cache {cache.dir} ({n_new} computed here)" if cache else "no feature cache")
              + (f"; {procs.world} processes" if procs.world > 1 else "")
              + (f"; {len(extra.blends)} self-blends" if cfg.self_blend else "")
              + (f" ({len(extra.skipped)} real photos without one)" if extra.skipped else "")
              + (f"; {len(extra.copies)} perturbed copies (p {cfg.robust_augment_p})" if extra.copies else ""),
              flush=True)
    train_ds = FaceDataset(train_s, labels.taxonomy, preprocess, cache, Augment(cfg.hflip, cfg.color_jitter), cfg.seed,
                           variants)
    val_ds = FaceDataset(val_s, labels.taxonomy, preprocess, cache)
    for ds in (train_ds, val_ds):
        ds.set_families(labels.class_family)
    return _Data(labels.taxonomy, train_ds, val_ds, cache)


@dataclass
class _Batches:
    """This process's share of each epoch's training batches, and the schedule's length in steps."""

    sampler: BalancedSampler | _ResumableSampler
    loader: DataLoader
    per_rank: int
    steps_per_epoch: int
    total_steps: int
    warmup: int


def _build_loader(cfg: TrainConfig, data: _Data, procs: _Procs) -> _Batches:
    per_rank = cfg.batch_size // procs.world
    if cfg.balance_classes:  # real and each seen generator count equally (see data/sampling.py)
        sampler = BalancedSampler(data.train.sample_groups, num_replicas=procs.world, rank=procs.rank, seed=cfg.seed)
    else:
        sampler = _ResumableSampler(data.train, num_replicas=procs.world, rank=procs.rank, shuffle=True, seed=cfg.seed)
    loader = DataLoader(data.train, batch_size=per_rank, sampler=sampler, collate_fn=collate,
                        num_workers=cfg.num_workers)
    steps_per_epoch = math.ceil(len(sampler) / per_rank)
    return _Batches(sampler, loader, per_rank, steps_per_epoch, steps_per_epoch * cfg.epochs,
                    int(round(cfg.warmup_epochs * steps_per_epoch)))


@dataclass
class _Optim:
    params: list  # the trainable parameters (empty: an evaluation-only model)
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    step_fn: nn.Module  # _Step, wrapped in DDP when distributed


def _build_optimiser(cfg: TrainConfig, model: nn.Module, batches: _Batches,
                     procs: _Procs) -> tuple[TrainConfig, _Optim]:
    """AdamW over the trainable parameters, linear warm-up then cosine decay per step."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:  # e.g. clip-zeroshot: an evaluation-only run (validated once, saved, calibrated)
        if procs.main:
            print(f"model {cfg.model} has no trainable parameters: validating once, no training", flush=True)
        cfg = cfg.replace(epochs=1)
    # a dummy parameter keeps the optimiser/scheduler/checkpoint code uniform when there is nothing to train
    opt = torch.optim.AdamW(params or [nn.Parameter(torch.zeros(1))], lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=tuple(cfg.betas))
    warmup, total = batches.warmup, batches.total_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, warmup, total, cfg.min_lr_ratio))
    step_fn = _Step(model)
    if procs.distributed and params:
        import warnings

        # an expanded (1, 1, W) token parameter trips this performance note; it is harmless here
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        step_fn = nn.parallel.DistributedDataParallel(step_fn, find_unused_parameters=cfg.find_unused_parameters)
    return cfg, _Optim(params, opt, sched, step_fn)


def _restore_or_start(cfg: TrainConfig, ck: dict | None, model: nn.Module, optim: _Optim, data: _Data, data_dir: Path,
                      run_dir: Path, resume: bool, procs: _Procs):
    """The loop's state: from the checkpoint (model, optimiser, scheduler, RNG restored), or fresh
    (rank 0 writes config.yaml and taxonomy.json); and rank 0's TensorBoard writer."""
    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best": -math.inf, "best_epoch": -1,
             "bad_epochs": 0, "history": [], "stopped_early": False, "train_loss_sum": 0.0, "train_n": 0}
    if ck is not None:
        from ..errors import DamagedFileError

        ckpt_path = run_dir / "checkpoint.pt"
        if set(ck["model"]) != trainable_names(model) or not set(state) <= set(ck["state"]):
            raise DamagedFileError(ckpt_path, "does not fit this run's model (other weights or fields)", CHECKPOINT_FIX)
        try:
            model.load_state_dict(ck["model"], strict=False)
            optim.opt.load_state_dict(ck["optimizer"])
            optim.sched.load_state_dict(ck["scheduler"])
            set_rng_state(ck["rng"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise DamagedFileError(ckpt_path, f"does not fit this run's model ({str(e).splitlines()[0][:120]})",
                                   CHECKPOINT_FIX) from None
        state.update({k: ck["state"][k] for k in state})
    elif procs.main:
        import yaml

        if resume:
            print(f"{run_dir}: no checkpoint yet (killed before the first one): starting the run from the beginning",
                  flush=True)
        if not (resume and (run_dir / "config.yaml").is_file()):
            resolved = {**cfg.to_dict(), "data": str(data_dir.resolve()), "world_size": procs.world}
            U.atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
        U.atomic_write_json(run_dir / "taxonomy.json", taxonomy_to_dict(data.taxonomy))

    writer = None
    if procs.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=state["global_step"] if resume else None)
    return state, writer


def _save_checkpoint(path: Path, model: nn.Module, optim: _Optim, state: dict, procs: _Procs) -> None:
    if procs.main:
        U.atomic_torch_save({"model": trainable_state(model), "optimizer": optim.opt.state_dict(),
                             "scheduler": optim.sched.state_dict(), "state": dict(state), "rng": rng_state()}, path)
    U.barrier()


def step_loss(model: nn.Module, step_fn: nn.Module, batch, pending, amp: torch.dtype | None,
              device: torch.device) -> torch.Tensor:
    """One training step's total loss (not yet backpropagated), under autocast to `amp` (None:
    fp32). The weights stay fp32 (autocast casts per op: fp32 master weights). Prefix states of
    items the feature cache does not hold (augmented ones) are computed under the same autocast:
    they are never stored, so the cache itself keeps fp32 states whatever the training precision."""
    batch = batch.to(device)
    with U.autocast(amp, device):
        fill_pending(model, batch, pending)
        _, losses = step_fn(batch)
    return losses["total"]


def _train_epoch(cfg: TrainConfig, model: nn.Module, optim: _Optim, batches: _Batches, state: dict, writer,
                 amp, procs: _Procs, save) -> None:
    """The optimiser steps of one epoch, from `state["step_in_epoch"]` on (a mid-epoch resume)."""
    from tqdm import tqdm

    epoch = state["epoch"]
    batches.sampler.set_epoch(epoch)
    batches.loader.dataset.set_epoch(epoch)
    batches.sampler.skip = state["step_in_epoch"] * batches.per_rank
    bar = tqdm(batches.loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and procs.main),
               initial=state["step_in_epoch"], total=batches.steps_per_epoch, leave=False)
    opt, sched = optim.opt, optim.sched
    for batch, pending, _ in (bar if optim.params else ()):
        loss = step_loss(model, optim.step_fn, batch, pending, amp, procs.device)
        loss_value = float(loss.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(optim.params, cfg.grad_clip)
        opt.step()
        sched.step()
        state["global_step"] += 1
        state["step_in_epoch"] += 1
        state["train_loss_sum"] += loss_value
        state["train_n"] += 1
        if writer is not None:
            writer.add_scalar("train/loss", loss_value, state["global_step"])
            writer.add_scalar("train/lr", sched.get_last_lr()[0], state["global_step"])
            bar.set_postfix(loss=f"{loss_value:.4f}")
        if cfg.checkpoint_every and state["global_step"] % cfg.checkpoint_every == 0:
            save()
        if cfg.interrupt_after_steps and state["global_step"] >= cfg.interrupt_after_steps:
            raise Interrupted(f"interrupted after {state['global_step']} steps (testing)")
    bar.close()


def _validate_epoch(cfg: TrainConfig, model: nn.Module, data: _Data, batches: _Batches, optim: _Optim, state: dict,
                    run_dir: Path, t0: float, procs: _Procs) -> tuple[dict, bool]:
    """The epoch's log row, from the whole val split on every rank (the same decision everywhere);
    keeps the best model (rank 0 saves it) and counts the epochs without improvement."""
    preds, val_loss = run_model(model, data.val, batch_size=max(batches.per_rank, 16), device=procs.device,
                                with_loss=True)
    val_acc = float((preds.attribution_logits.argmax(1) == data.val.labels).mean())
    val_auc = binary_auc(data.val.is_fake, preds.p_fake)
    val_score = float(np.nanmean([val_acc, val_auc]))
    row = {"epoch": state["epoch"] + 1, "step": state["global_step"], "lr": optim.sched.get_last_lr()[0],
           "train_loss": state["train_loss_sum"] / max(1, state["train_n"]), "val_loss": val_loss,
           "val_acc": val_acc, "val_auc": val_auc, "val_score": val_score,
           "time_s": round(time.time() - t0, 2)}
    state["history"].append(row)
    cur = -val_loss if cfg.select_metric == "val_loss" else row[cfg.select_metric]
    cur = cur if math.isfinite(cur) else -math.inf  # e.g. AUC undefined on a one-class val split
    improved = state["best_epoch"] < 0 or cur > state["best"]
    if improved:
        state["best"], state["best_epoch"], state["bad_epochs"] = cur, row["epoch"], 0
        if procs.main:
            save_model(model, run_dir / "model", model_bound_settings(cfg))
    else:
        state["bad_epochs"] += 1
        if cfg.patience and state["bad_epochs"] >= cfg.patience:
            state["stopped_early"] = True
    return row, improved


def _log_epoch(run_dir: Path, history: list[dict], row: dict, improved: bool, writer) -> None:
    """log.csv, TensorBoard and one printed line (rank 0)."""
    _write_log(run_dir / "log.csv", history)
    for k in ("train_loss", "val_loss", "val_acc", "val_auc", "val_score"):
        writer.add_scalar(f"epoch/{k}", row[k], row["epoch"])
    writer.flush()
    print(f"epoch {row['epoch']}: train_loss {row['train_loss']:.4f} val_loss {row['val_loss']:.4f} "
          f"val_acc {row['val_acc']:.3f} val_auc {row['val_auc']:.3f}{' *' if improved else ''}", flush=True)


def _finish(cfg: TrainConfig, model: nn.Module, data: _Data, state: dict, run_dir: Path, writer, t0: float,
            procs: _Procs, amp: torch.dtype | None = None) -> TrainResult:
    """The best epoch's weights calibrated on the validation split, and summary.json (rank 0)."""
    if writer is not None:
        writer.close()
    best = next(h for h in state["history"] if h["epoch"] == state["best_epoch"])
    if procs.main:
        from ..run.calibrate import calibrate_run

        load_model_weights(model, run_dir / "model")  # the best epoch's weights
        calibrate_run(run_dir, data.val, cfg, procs.device, model=model)
        U.atomic_write_json(run_dir / "summary.json", {
            "model": cfg.model, "backbone": cfg.backbone, "protocol": cfg.protocol, "best_epoch": state["best_epoch"],
            "best_val": best, "epochs_run": state["epoch"], "stopped_early": state["stopped_early"],
            "n_train": len(data.train), "n_val": len(data.val), "world_size": procs.world,
            "feature_cache": data.cache is not None, "precision": "bf16" if amp is not None else "fp32",
            "wall_s": round(time.time() - t0, 1)})
    U.barrier()
    return TrainResult(run_dir, state["best_epoch"], best, state["history"], state["stopped_early"])


def _write_log(path: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[0]))
    w.writeheader()
    w.writerows(history)
    U.atomic_write_text(path, buf.getvalue())
