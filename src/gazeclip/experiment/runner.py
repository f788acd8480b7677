"""Multi-seed experiments: a grid of models x seeds on one benchmark protocol.

`run_experiment(config)` trains every (seed, model) run, evaluates each once on the test split,
and writes OUT/ (default results/NAME/):

    experiment.yaml       the resolved experiment config (what made these results)
    runs/LABEL-sSEED/     each run folder (`gazeclip train` layout) with eval/ (`gazeclip eval`)
    table.md / .csv       mean ± sd over seeds per model
    diffs.md / .csv       paired bootstrap 95% intervals of (model − reference), averaged over seeds
    per_generator.md/.csv per-generator deltas (model − reference), mean ± sd over seeds
    per_generator.png     the focus model's per-generator deltas
    results.json          all of the above, the per-run metrics and timings
    summary.md            the tables in one page, with the command that made them

The grid runs seed-major (all models for seed 0, then seed 1, ...), so a partial grid already holds
complete comparisons for its first seeds; the tables are rewritten after every run (intervals at
the end of each seed). `resume=True` skips finished runs, continues a killed one from its
checkpoint and evaluates trained ones that lack an evaluation. A run that fails is reported and
the grid goes on.

Paired bootstrap: every run of the experiment is evaluated on the same test items; one set of
`n_boot` resamples of those items is drawn once and applied to every run, so the difference of
two runs is computed on the same items each time. The interval is that of the seed-averaged
difference (test-item sampling); the seed-to-seed spread is reported apart, as the sd.
"""
from __future__ import annotations

import csv
import io
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..evaluation.metrics import METRIC_LABELS
from ..run import utils as U
from ..run.config import TrainConfig
from ..run.folder import read_json_file
from ..errors import MissingFileError, OutputExistsError, UsageError

# mean ± sd table columns (headers: evaluation.metrics.METRIC_LABELS); val_* come from the run's summary.json
# (the kept epoch's validation figures: the only ones a choice between models may rest on)
TABLE_KEYS = ["val_acc", "val_auc", "attribution_acc_seen_generators", "attribution_acc_seen", "family_acc_unseen",
              "cluster_acc_unseen", "cluster_acc_unseen_estk", "n_clusters_estimated", "nmi_unseen", "detection_auc",
              "detection_auc_unseen", "detection_eer", "fpr_real_at_threshold", "tpr_fake_at_threshold",
              "unknown_auroc", "unknown_tpr_unseen", "unknown_fpr_seen"]
NOT_PERCENT = {"n_clusters_estimated"}
# the short table (headline.md, and the README's): model choice on validation, attribution, detection
# with its false-positive rate on real faces at the shipped threshold, the open-set figures
HEADLINE_KEYS = ["val_acc", "attribution_acc_seen_generators", "detection_auc", "detection_auc_unseen",
                 "fpr_real_at_threshold", "tpr_fake_at_threshold", "cluster_acc_unseen", "unknown_auroc"]
# paired bootstrap differences to the reference
DIFF_KEYS = ["attribution_acc_seen_generators", "attribution_acc_seen", "detection_auc", "detection_auc_unseen",
             "cluster_acc_unseen", "cluster_acc_unseen_estk", "family_acc_unseen", "unknown_auroc"]
PER_GEN_KEYS = ["attribution_acc", "cluster_recall", "detection_auc", "called_fake"]


@dataclass
class ExperimentModel:
    """One row of the grid: a registered model, with optional switches and training overrides."""

    label: str
    model: str
    model_overrides: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)


@dataclass
class ExperimentConfig:
    name: str
    data: str
    models: list[ExperimentModel]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    protocol: str = "P2"
    reference: str | None = None     # label of the reference model (default: the second model)
    focus: str | None = None         # label whose per-generator deltas are plotted (default: the first)
    build: str | None = None         # build the data folder when absent: a bench preset or "synthetic"
    build_seed: int = 0
    train: dict = field(default_factory=dict)  # TrainConfig fields for every run
    out: str | None = None           # default results/NAME
    n_boot: int = 1000
    device: str = "auto"

    def labels(self) -> list[str]:
        return [m.label for m in self.models]

    def out_dir(self) -> Path:
        return Path(self.out or Path("results") / self.name)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["models"] = [asdict(m) for m in self.models]
        return d


_TOP_KEYS = {"name", "data", "models", "seeds", "protocol", "reference", "focus", "build", "build_seed", "train", "out",
             "n_boot", "device"}
_MODEL_KEYS = {"label", "model", "model_overrides", "train"}


def load_experiment(path: str | Path, **overrides: Any) -> ExperimentConfig:
    """Read and check an experiment YAML: a path, or the name of a packaged one (tiny, p2-main; see
    src/gazeclip/configs/experiments/). `overrides` (data, out, ...) replace the file's values when not None."""
    from ..configs import find_config, packaged

    try:
        path = find_config("experiments", path)
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no such experiment config; packaged: {', '.join(packaged('experiments'))} "
                                "(src/gazeclip/configs/experiments/)") from None
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: an experiment config must be a YAML mapping")
    raw.setdefault("name", Path(path.name).stem)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return experiment_from_dict(raw, str(path))


def experiment_from_dict(raw: dict, source: str = "experiment") -> ExperimentConfig:
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise UsageError(f"{source}: unknown keys {unknown}; known: {', '.join(sorted(_TOP_KEYS))}")
    for k in ("name", "data", "models"):
        if not raw.get(k):
            raise UsageError(f"{source}: '{k}' is required")
    models = []
    for i, m in enumerate(raw["models"]):
        if isinstance(m, str):
            m = {"model": m}
        if not isinstance(m, dict) or "model" not in m:
            raise UsageError(f"{source}: models[{i}] must be a model name or a mapping with 'model'")
        bad = sorted(set(m) - _MODEL_KEYS)
        if bad:
            raise UsageError(f"{source}: models[{i}] has unknown keys {bad}; known: {', '.join(sorted(_MODEL_KEYS))}")
        models.append(ExperimentModel(str(m.get("label", m["model"])), str(m["model"]), dict(m.get("model_overrides") or {}),
                                dict(m.get("train") or {})))
    labels = [m.label for m in models]
    if len(set(labels)) != len(labels):
        raise UsageError(f"{source}: model labels must be unique, got {labels}; give repeated models a 'label'")
    cfg = ExperimentConfig(**{**{k: v for k, v in raw.items() if k != "models"}, "models": models})
    cfg.seeds = [int(s) for s in cfg.seeds]
    if not cfg.seeds:
        raise UsageError(f"{source}: 'seeds' must list at least one seed")
    cfg.reference = cfg.reference or (labels[1] if len(labels) > 1 else labels[0])
    cfg.focus = cfg.focus or labels[0]
    for k in ("reference", "focus"):
        if getattr(cfg, k) not in labels:
            raise UsageError(f"{source}: {k} '{getattr(cfg, k)}' is not one of the model labels {labels}")
    for spec in models:  # fail now, not after an hour of training
        run_config(cfg, spec, cfg.seeds[0])
    return cfg


def run_config(cfg: ExperimentConfig, spec: ExperimentModel, seed: int) -> TrainConfig:
    """The TrainConfig of one grid cell: defaults < experiment `train` < the model's `train` <
    model, its switches, protocol and seed."""
    d = {**TrainConfig().to_dict(), **cfg.train, **spec.train}
    d.update(model=spec.model, protocol=cfg.protocol, seed=seed, device=cfg.device, progress=False,
             model_overrides={**d.get("model_overrides", {}), **spec.model_overrides})
    return TrainConfig.from_dict(d, source=f"experiment {cfg.name}, model {spec.label}")


def ensure_data(cfg: ExperimentConfig, quiet: bool = False) -> Path:
    """The data folder; built from `build` (a bench preset, or "synthetic") when it is absent."""
    data = Path(cfg.data)
    if (data / "manifest.csv").is_file():
        return data
    if not cfg.build:
        raise MissingFileError(f"{data}/manifest.csv: no benchmark there; build one (gazeclip bench build --preset "
                                f"mini --out {data}) or set 'build: mini' in the experiment config")
    if data.exists() and any(data.iterdir()):
        raise OutputExistsError(f"{data}: exists without a manifest.csv (an interrupted build?); remove it or point "
                              "'data' elsewhere")
    if not quiet:
        print(f"building the {cfg.build} benchmark into {data} (seed {cfg.build_seed}) ...", flush=True)
    if cfg.build == "synthetic":
        from ..data.synthetic import make_synthetic_dataset

        make_synthetic_dataset(data, seed=cfg.build_seed)
    else:
        from ..bench.build import PRESETS, BuildConfig, build

        if cfg.build not in PRESETS:
            raise UsageError(f"build '{cfg.build}': use one of {', '.join(PRESETS)} or synthetic")
        build(data, BuildConfig(PRESETS[cfg.build], seed=cfg.build_seed), quiet=quiet)
    return data


@dataclass
class Cell:
    seed: int
    spec: ExperimentModel
    run_dir: Path

    @property
    def key(self) -> str:
        return f"{self.spec.label}-s{self.seed}"

    def finished(self) -> bool:
        return (self.run_dir / "summary.json").is_file() and (self.run_dir / "eval" / "metrics.json").is_file()


def grid(cfg: ExperimentConfig, out: Path) -> list[Cell]:
    """Seed-major: every model for the first seed, then the next seed."""
    return [Cell(s, m, out / "runs" / f"{m.label}-s{s}") for s in cfg.seeds for m in cfg.models]


def _run_cell(cell: Cell, cfg: ExperimentConfig, data: Path) -> dict:
    from ..evaluation.evaluate import evaluate
    from ..train.trainer import train

    rd = cell.run_dir
    t0 = time.time()
    if not (rd / "summary.json").is_file():
        if (rd / "checkpoint.pt").is_file():
            train(run_config(cfg, cell.spec, cell.seed), data, rd, resume=True)
        else:
            if rd.exists():  # killed before its first checkpoint: nothing to keep
                shutil.rmtree(rd)
            train(run_config(cfg, cell.spec, cell.seed), data, rd)
    t1 = time.time()
    m = evaluate(rd, data, cfg.protocol, out=rd / "eval", device=cfg.device)
    t2 = time.time()
    summary = read_json_file(rd / "summary.json")
    timing = {"train_wall_s": summary.get("wall_s"), "this_call_train_s": round(t1 - t0, 1),
              "eval_s": round(t2 - t1, 1)}
    U.atomic_write_json(rd / "eval" / "timing.json", timing)
    return m


def run_experiment(cfg: ExperimentConfig, resume: bool = False, quiet: bool = False,
                   command: str | None = None) -> dict:
    """Train and evaluate the grid, then aggregate. Returns the results dict (results.json)."""
    from tqdm import tqdm

    out = cfg.out_dir()
    state = out / "experiment.yaml"
    if state.is_file() and not resume:
        raise OutputExistsError(f"{out}: already holds an experiment; pass --resume to continue it or choose "
                              "another --out")
    if state.is_file():
        old = yaml.safe_load(state.read_text()) or {}
        if old.get("data") and Path(old["data"]).resolve() != Path(cfg.data).resolve():
            raise UsageError(f"{out}: was run on {old['data']}, not {cfg.data}; use another --out")
    data = ensure_data(cfg, quiet)
    out.mkdir(parents=True, exist_ok=True)
    U.atomic_write_text(state, yaml.safe_dump({**cfg.to_dict(), "command": command}, sort_keys=False))
    cells = grid(cfg, out)
    failures: dict[str, str] = {}
    t0 = time.time()
    bar = tqdm(total=len(cells), desc=f"experiment {cfg.name}", unit="run", disable=quiet, file=sys.stderr)
    for i, cell in enumerate(cells):
        bar.set_postfix_str(cell.key)
        if cell.finished():
            bar.update(1)
            continue
        try:
            _run_cell(cell, cfg, data)
        except Exception as e:  # noqa: BLE001 - a batch job reports the bad item and goes on
            failures[cell.key] = f"{type(e).__name__}: {e}"
            tqdm.write(f"gazeclip experiment: run {cell.key} failed: {failures[cell.key]}", file=sys.stderr)
        bar.update(1)
        end_of_seed = i + 1 == len(cells) or cells[i + 1].seed != cell.seed
        aggregate(cfg, data, n_boot=cfg.n_boot if end_of_seed else 0, failures=failures,
                  grid_wall_s=time.time() - t0, command=command)
    bar.close()
    return aggregate(cfg, data, n_boot=cfg.n_boot, failures=failures, grid_wall_s=time.time() - t0, command=command)


# ------------------------------------------------------------------ aggregation
def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and v is not None else math.nan


def _mean_sd(vals: list[float]) -> tuple[float, float, int]:
    v = np.array([x for x in vals if math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan, int(v.size)


def _fmt(key: str, mean: float, sd: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    scale, nd = (1, 1) if key in NOT_PERCENT else (100, 1)
    s = f"{scale * mean:.{nd}f}"
    return s + (f" ± {scale * sd:.{nd}f}" if math.isfinite(sd) else "")


def aggregate(cfg: ExperimentConfig, data: Path, n_boot: int | None = None, failures: dict | None = None,
              grid_wall_s: float | None = None, command: str | None = None) -> dict:
    """Tables over the finished runs of the grid (see the module docstring); n_boot 0 skips the
    bootstrap intervals."""
    from ..evaluation.compare import run_eval_data
    from ..evaluation.bootstrap import bootstrap_values, check_same_test_items, paired_difference, paired_resamples
    from ..evaluation.metrics import compute_metrics

    out = cfg.out_dir()
    n_boot = cfg.n_boot if n_boot is None else n_boot
    cells = [c for c in grid(cfg, out) if c.finished()]
    metrics, timing = {}, {}
    for c in cells:
        best_val = read_json_file(c.run_dir / "summary.json").get("best_val") or {}
        metrics[c.key] = {**read_json_file(c.run_dir / "eval" / "metrics.json"),
                          "val_acc": best_val.get("val_acc"), "val_auc": best_val.get("val_auc")}
        t = c.run_dir / "eval" / "timing.json"
        timing[c.key] = read_json_file(t) if t.is_file() else {}
    res: dict = {"name": cfg.name, "data": str(Path(data).resolve()), "protocol": cfg.protocol, "seeds": cfg.seeds,
                 "models": cfg.labels(), "reference": cfg.reference, "focus": cfg.focus, "command": command,
                 "n_runs_finished": len(cells), "n_runs": len(cfg.seeds) * len(cfg.models),
                 "failures": failures or {}, "grid_wall_s": None if grid_wall_s is None else round(grid_wall_s, 1),
                 "n_boot": n_boot, "runs": {}, "table": {}, "diffs": {}, "per_generator": {}}
    for c in cells:
        m = metrics[c.key]
        res["runs"][c.key] = {"label": c.spec.label, "model": c.spec.model, "seed": c.seed,
                              "metrics": {k: m.get(k) for k in TABLE_KEYS}, "timing": timing[c.key],
                              "n_test": m.get("n_test")}
    # ---- mean ± sd over seeds
    for spec in cfg.models:
        runs = [c for c in cells if c.spec.label == spec.label]
        row = {}
        for k in TABLE_KEYS:
            mean, sd, n = _mean_sd([_num(metrics[c.key].get(k)) for c in runs])
            row[k] = {"mean": mean, "sd": sd, "n": n}
        tw = _mean_sd([_num(timing[c.key].get("train_wall_s")) for c in runs])
        row["train_wall_s"] = {"mean": tw[0], "sd": tw[1], "n": tw[2]}
        row["n_seeds"] = len(runs)
        res["table"][spec.label] = row
    # ---- paired bootstrap of differences to the reference
    if n_boot and cells:
        loaded = {c.key: run_eval_data(c.run_dir, Path(data), cfg.protocol, cfg.device, False) for c in cells}
        check_same_test_items({f"{out}/runs/{key}": paths for key, (_, _, paths) in loaded.items()},
                              "an experiment compares runs on one test split")
        idx_sets = paired_resamples(len(next(iter(loaded.values()))[2]), n_boot, seed=0)
        boot, point = {}, {}
        for key, (d, _, _) in loaded.items():
            base = compute_metrics(d)
            point[key] = base
            boot[key] = bootstrap_values(d, DIFF_KEYS, n_boot, idx_sets=idx_sets, base=base)
        for spec in cfg.models:
            if spec.label == cfg.reference:
                continue
            seeds = [s for s in cfg.seeds if f"{spec.label}-s{s}" in loaded and f"{cfg.reference}-s{s}" in loaded]
            if not seeds:
                continue
            row = {"seeds": seeds}
            for k in DIFF_KEYS:
                a = [f"{spec.label}-s{s}" for s in seeds]
                b = [f"{cfg.reference}-s{s}" for s in seeds]
                per_seed = [_num(point[x].get(k)) - _num(point[y].get(k)) for x, y in zip(a, b)]
                ci95, p_le_0 = paired_difference([boot[x][k] for x in a], [boot[y][k] for y in b])
                row[k] = {"diff": float(np.mean(per_seed)) if per_seed else math.nan, "per_seed": per_seed,
                          "ci95": ci95, "p_le_0": p_le_0}
            res["diffs"][spec.label] = row
    # ---- per-generator deltas to the reference
    for spec in cfg.models:
        if spec.label == cfg.reference:
            continue
        gens: dict[str, dict] = {}
        for s in cfg.seeds:
            a, b = metrics.get(f"{spec.label}-s{s}"), metrics.get(f"{cfg.reference}-s{s}")
            if not a or not b:
                continue
            for g, ra in (a.get("per_generator") or {}).items():
                rb = (b.get("per_generator") or {}).get(g)
                if rb is None:
                    continue
                e = gens.setdefault(g, {"seen": ra["seen"], "n": ra["n"], **{k: [] for k in PER_GEN_KEYS}})
                for k in PER_GEN_KEYS:
                    e[k].append(_num(ra.get(k)) - _num(rb.get(k)))
        res["per_generator"][spec.label] = {
            g: {"seen": e["seen"], "n": e["n"],
                **{k: dict(zip(("mean", "sd", "n"), _mean_sd(e[k]))) for k in PER_GEN_KEYS}}
            for g, e in sorted(gens.items(), key=lambda kv: (not kv[1]["seen"], kv[0]))}
    _write_outputs(res, cfg, out)
    return res


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def means_markdown(res: dict, keys: list[str] | None = None) -> str:
    """Mean ± sd per model: every TABLE_KEYS column, or those of `keys` (e.g. HEADLINE_KEYS)."""
    cols = [(k, METRIC_LABELS[k]) for k in (TABLE_KEYS if keys is None else keys)]
    head = "| model | seeds | " + " | ".join(h for _, h in cols) + " | train time |"
    lines = [head, "|" + " --- |" * 2 + " ---: |" * (len(cols) + 1)]
    for label, row in res["table"].items():
        tw = row["train_wall_s"]
        t = f"{tw['mean'] / 60:.1f} min" if math.isfinite(tw["mean"]) else "n/a"
        cells = [_fmt(k, row[k]["mean"], row[k]["sd"]) for k, _ in cols]
        name = f"**{label}**" if label == res["focus"] else label
        lines.append(f"| {name} | {row['n_seeds']} | " + " | ".join(cells) + f" | {t} |")
    return "\n".join(lines)


def diffs_markdown(res: dict) -> str:
    if not res["diffs"]:
        return "(no bootstrap intervals yet)"
    lines = [f"| model − {res['reference']} | seeds | " + " | ".join(DIFF_KEYS) + " |",
             "|" + " --- |" * 2 + " ---: |" * len(DIFF_KEYS)]
    for label, row in res["diffs"].items():
        cells = []
        for k in DIFF_KEYS:
            r = row[k]
            if not math.isfinite(r["diff"]):
                cells.append("n/a")
                continue
            lo, hi = r["ci95"]
            cells.append(f"{100 * r['diff']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]")
        lines.append(f"| {label} | {len(row['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_generator_markdown(res: dict, label: str) -> str:
    rows = res["per_generator"].get(label) or {}
    lines = [f"| generator | seen | n test | " + " | ".join(f"Δ {k}" for k in PER_GEN_KEYS) + " |",
             "| --- | --- | ---: |" + " ---: |" * len(PER_GEN_KEYS)]
    for g, r in rows.items():
        cells = [_fmt(k, r[k]["mean"], r[k]["sd"]) for k in PER_GEN_KEYS]
        lines.append(f"| {g} | {'yes' if r['seen'] else 'no'} | {r['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_outputs(res: dict, cfg: ExperimentConfig, out: Path) -> None:
    U.atomic_write_json(out / "results.json", res)  # NaN/Infinity (undefined metrics) written as null
    trows = []
    for label, row in res["table"].items():
        r = {"model": label, "n_seeds": row["n_seeds"]}
        for k in TABLE_KEYS:
            r[f"{k}_mean"], r[f"{k}_sd"] = row[k]["mean"], row[k]["sd"]
        r["train_wall_s_mean"] = row["train_wall_s"]["mean"]
        trows.append(r)
    U.atomic_write_text(out / "table.csv", _csv(trows))
    U.atomic_write_text(out / "table.md", means_markdown(res) + "\n")
    U.atomic_write_text(out / "headline.md", means_markdown(res, HEADLINE_KEYS) + "\n")
    drows = [{"model": label, "reference": res["reference"], "metric": k, "diff": row[k]["diff"],
              "ci95_lo": row[k]["ci95"][0], "ci95_hi": row[k]["ci95"][1], "p_le_0": row[k]["p_le_0"],
              "per_seed": " ".join(f"{x:.4f}" for x in row[k]["per_seed"]), "n_seeds": len(row["seeds"])}
             for label, row in res["diffs"].items() for k in DIFF_KEYS]
    U.atomic_write_text(out / "diffs.csv", _csv(drows))
    U.atomic_write_text(out / "diffs.md", diffs_markdown(res) + "\n")
    grows = [{"model": label, "reference": res["reference"], "generator": g, "seen": r["seen"], "n_test": r["n"],
              **{f"delta_{k}_{s}": r[k][s] for k in PER_GEN_KEYS for s in ("mean", "sd")}}
             for label, gens in res["per_generator"].items() for g, r in gens.items()]
    U.atomic_write_text(out / "per_generator.csv", _csv(grows))
    U.atomic_write_text(out / "per_generator.md",
                        "\n\n".join(f"### {label} − {res['reference']}\n\n" + per_generator_markdown(res, label)
                                    for label in res["per_generator"]) + "\n")
    focus = res["per_generator"].get(res["focus"])
    if focus:
        from ..viz.plots import per_generator_delta_png

        per_generator_delta_png(focus, res["focus"], res["reference"], out / "per_generator.png")
    U.atomic_write_text(out / "summary.md", summary_markdown(res))


def summary_markdown(res: dict) -> str:
    n = next(iter(res["runs"].values()), {}).get("n_test")
    lines = [f"# Experiment `{res['name']}`", "",
             f"data `{res['data']}`, protocol {res['protocol']}, seeds {res['seeds']}, "
             f"{res['n_runs_finished']} of {res['n_runs']} runs finished; test items n = {n}.",
             f"Made by: `{res['command'] or 'gazeclip experiment run'}`"
             + (f"; grid wall time {res['grid_wall_s'] / 60:.1f} min (this call)." if res["grid_wall_s"] else "."),
             "", "## Headline (mean ± sd over seeds, %)", "", means_markdown(res, HEADLINE_KEYS), "",
             "## Every metric (mean ± sd over seeds, %; est. k is a count)", "", means_markdown(res), "",
             f"## Difference to `{res['reference']}` (points; seed-averaged; [95% paired bootstrap interval over "
             f"test items, {res['n_boot']} resamples])", "", diffs_markdown(res), ""]
    if res["focus"] in res["per_generator"]:
        lines += [f"## Per generator: {res['focus']} − {res['reference']} (points, mean ± sd over seeds)", "",
                  per_generator_markdown(res, res["focus"]), "", "![per-generator deltas](per_generator.png)", ""]
    if res["failures"]:
        lines += ["## Failed runs", ""] + [f"- {k}: {v}" for k, v in res["failures"].items()] + [""]
    lines += ["Each run: trained on the train split, the epoch kept chosen on the validation split, evaluated once "
              "on the test split. Metric definitions: docs/engine.md.", ""]
    return "\n".join(lines)
