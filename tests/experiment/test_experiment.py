"""The experiment runner on the tiny config: grid order, outputs, --resume, clear errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gazeclip.experiment.runner import grid, load_experiment, run_experiment

CONFIG = Path(__file__).resolve().parents[2] / "src" / "gazeclip" / "configs" / "experiments" / "tiny.yaml"


def test_config_checks_and_seed_major_grid(tmp_path):
    cfg = load_experiment(CONFIG, data=str(tmp_path / "d"), out=str(tmp_path / "o"), seeds=[0, 1, 2])
    cells = grid(cfg, tmp_path / "o")
    assert [c.key for c in cells] == ["gazeclip-s0", "clip-lora-s0", "gazeclip-s1", "clip-lora-s1",
                                      "gazeclip-s2", "clip-lora-s2"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: d\nmodels: [gazeclip]\nepochs: 3\n")
    with pytest.raises(ValueError, match="unknown keys \\['epochs'\\]"):
        load_experiment(bad)
    bad.write_text("name: x\ndata: d\nmodels: [gazeclip, clip-lora]\ntrain: {epoch: 3}\n")
    with pytest.raises(ValueError, match="unknown keys \\['epoch'\\]"):  # a TrainConfig typo fails before training
        load_experiment(bad)
    bad.write_text("name: x\ndata: d\nmodels: [gazeclip, gazeclip]\n")
    with pytest.raises(ValueError, match="unique"):
        load_experiment(bad)
    bad.write_text("name: x\ndata: d\nmodels: [gazeclip]\nreference: clip-lora\n")
    with pytest.raises(ValueError, match="reference 'clip-lora'"):
        load_experiment(bad)
    with pytest.raises(FileNotFoundError, match="no such experiment config"):
        load_experiment(tmp_path / "nope.yaml")


@pytest.mark.slow  # ~20 s on 2 idle cores (3 tiny trainings, 4 evaluations)
def test_runner_builds_data_writes_tables_and_resumes(tmp_path, capsys):
    import shutil

    from gazeclip.cli import main

    data, out = tmp_path / "syn", tmp_path / "res"
    one_seed = tmp_path / "tiny-s0.yaml"
    one_seed.write_text(CONFIG.read_text().replace("seeds: [0, 1]", "seeds: [0]"))
    # seed 0, through the CLI: the dataset is built because it is absent
    rc = main(["experiment", "run", str(one_seed), "--data", str(data), "--out", str(out), "--quiet", "--n-boot", "20"])
    assert rc == 0, capsys.readouterr().err
    assert (data / "manifest.csv").is_file()
    for f in ("experiment.yaml", "table.md", "table.csv", "diffs.md", "diffs.csv", "per_generator.md",
              "per_generator.csv", "per_generator.png", "results.json", "summary.md", "headline.md"):
        assert (out / f).is_file(), f
    res = json.loads((out / "results.json").read_text())
    assert res["n_runs_finished"] == res["n_runs"] == 2 and not res["failures"]
    t = res["table"]["gazeclip"]
    assert t["n_seeds"] == 1 and 0 <= t["attribution_acc_seen"]["mean"] <= 1
    d = res["diffs"]["gazeclip"]["attribution_acc_seen"]
    r = res["runs"]
    assert d["diff"] == pytest.approx(r["gazeclip-s0"]["metrics"]["attribution_acc_seen"]
                                      - r["clip-lora-s0"]["metrics"]["attribution_acc_seen"])
    assert d["ci95"][0] <= d["diff"] + 1e-9 <= d["ci95"][1] + 2e-9
    assert set(res["per_generator"]["gazeclip"]) == {"gan-a", "diff-a", "gan-b", "flow-a"}
    assert "| **gazeclip** | 1 |" in (out / "table.md").read_text()
    # the headline table: the validation column (from each run's summary.json) and the short test columns
    headline = (out / "headline.md").read_text()
    assert headline.startswith("| model | seeds | val ACC | ACC seen gen. | AUC |") and "FPR real @thr" in headline
    assert "cluster ACC unseen (est. k)" not in headline
    assert t["val_acc"]["mean"] == pytest.approx(json.loads((out / "runs" / "gazeclip-s0" / "summary.json")
                                                            .read_text())["best_val"]["val_acc"])
    # the same out without --resume: refused
    assert main(["experiment", "run", str(one_seed), "--data", str(data), "--out", str(out), "--quiet"]) == 1
    assert "--resume" in capsys.readouterr().err
    # --resume with a second seed: finished runs are skipped (a run whose evaluation is missing is only
    # evaluated again); a failing run is reported and the grid goes on
    model_mtime = {p.name: (p / "model" / "model.safetensors").stat().st_mtime_ns for p in (out / "runs").iterdir()}
    shutil.rmtree(out / "runs" / "clip-lora-s0" / "eval")
    cfg = load_experiment(CONFIG, data=str(data), out=str(out), n_boot=20)
    cfg.models[1].model_overrides["lora_blocks"] = [99]  # out of range for the tiny tower: seed 1 of it fails
    res2 = run_experiment(cfg, resume=True, quiet=True)
    assert set(res2["failures"]) == {"clip-lora-s1"} and "lora_blocks" in res2["failures"]["clip-lora-s1"]
    assert res2["n_runs_finished"] == 3 and res2["table"]["gazeclip"]["n_seeds"] == 2
    assert (out / "runs" / "clip-lora-s0" / "eval" / "metrics.json").is_file()
    for name, mtime in model_mtime.items():  # nothing retrained
        assert (out / "runs" / name / "model" / "model.safetensors").stat().st_mtime_ns == mtime
    assert res2["diffs"]["gazeclip"]["seeds"] == [0]  # only seeds where both models finished are paired
    assert "clip-lora-s1" in (out / "summary.md").read_text()
