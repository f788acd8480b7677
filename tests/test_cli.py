"""The commands end to end on a tiny run: train (YAML config + overrides) -> eval -> compare ->
robustness -> tsne -> explain, through `gazeclip.cli.main`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gazeclip.cli import main
from gazeclip.evaluation.metrics import HEADLINE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(synthetic_data, trained_run):
    return synthetic_data, trained_run


def test_resolved_config_saved_and_resume_of_finished_run(trained):
    import yaml

    _, run = trained
    c = yaml.safe_load((run / "config.yaml").read_text())
    assert c["epochs"] == 2 and c["seed"] == 1 and c["hflip"] == 0.25 and c["backbone"] == "tiny-random"
    before = (run / "log.csv").read_text()
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0  # data folder read from the run
    assert (run / "log.csv").read_text() == before  # nothing left to train


def test_eval_compare_robustness_tsne_explain(trained, tmp_path, capsys):
    data, run = trained
    assert main(["eval", "--run", str(run), "--data", str(data), "--quiet"]) == 0
    m = json.loads((run / "eval" / "metrics.json").read_text())
    for k in HEADLINE + ["n_test"]:
        assert k in m
    assert m["n_test"] == 5 * 4
    for k in HEADLINE:
        assert m[k] is None or -1.0 <= m[k] <= 1.0  # fractions (ARI may dip below 0)
    for f in ("report.md", "confusion.png", "roc.png", "predictions.npz"):
        assert (run / "eval" / f).is_file()

    assert main(["compare", str(run), str(run), "--data", str(data), "--n-boot", "50", "--markdown", "--quiet",
                 "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "ACC seen" in out and "[" in out
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["n_boot"] == 50

    assert main(["robustness", "--run", str(run), "--data", str(data), "--out", str(tmp_path / "rob"),
                 "--perturbations", "jpeg,noise", "--max-items", "10", "--quiet"]) == 0
    rob = json.loads((tmp_path / "rob" / "robustness.json").read_text())
    curves = rob["run"]["curves"]
    assert set(curves) == {"jpeg", "noise"} and [p["severity"] for p in curves["jpeg"]] == [0, 1, 2, 3, 4, 5]
    assert (tmp_path / "rob" / "robustness.png").is_file()
    assert main(["robustness", "--run", str(run), "--data", str(data), "--severities", "0,9"]) == 2

    assert main(["tsne", "--run", str(run), "--data", str(data), "--out", str(tmp_path / "tsne.png"),
                 "--quiet"]) == 0
    img = next((data / "gan-a").glob("test-*.png"))
    assert main(["explain", str(img), "--run", str(run), "--out", str(tmp_path / "cam.png")]) == 0
    assert (tmp_path / "tsne.png").is_file() and (tmp_path / "cam.png").is_file()


def test_clear_errors(trained, tmp_path, capsys):
    data, run = trained
    assert main(["eval", "--run", str(tmp_path / "missing"), "--data", str(data)]) == 1
    assert "config.yaml" in capsys.readouterr().err
    tiny = "tiny"
    assert main(["train", "--data", str(data), "--out", str(run), "--config", tiny]) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--config",
                 "tiny"]) == 1
    assert "manifest" in capsys.readouterr().err
