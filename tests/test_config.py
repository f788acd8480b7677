"""The one config validator (gazeclip.configfields) and the `gazeclip train` flags generated from
TrainConfig: every field has a flag, flags override the YAML, choices and bad values fail at once."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from gazeclip.cli import build_parser, main
from gazeclip.configfields import config_from_dict, option
from gazeclip.train.cli import resolve_config
from gazeclip.run.config import TrainConfig
from gazeclip.registry import UnknownNameError

# fields without a flag, on purpose: a mapping and lists (YAML / --set only), a testing switch
NO_FLAG = {"model_overrides", "betas", "interrupt_after_steps", "self_blend_regions", "robust_augment_kinds",
           "robust_augment_severity", "abstain_rules"}


@dataclass
class Inner:
    word: str = option("a", "a template")


@dataclass
class Outer:
    mode: str = option("fast", "speed", choices=("fast", "slow"))
    n: int = option(2, "a count")
    rate: float = option(0.5, "a rate")
    on: bool = option(True, "a switch")
    path: str | None = option(None, "a path")
    blocks: list[int] | None = option(None, "blocks; None = all")
    pair: tuple = option((1, 2), "a pair")
    inner: Inner = option(Inner, "nested", factory=True)


def test_validator_normalises_yaml_values():
    c = config_from_dict(Outer, {"rate": "1e-3", "n": 3.0, "path": "x.pt", "blocks": (1, 2), "pair": [3, 4],
                                 "inner": {"word": "b"}, "mode": "slow"})
    assert c.rate == 1e-3 and c.n == 3 and isinstance(c.n, int) and c.path == "x.pt"
    assert c.blocks == [1, 2] and c.pair == (3, 4) and c.inner == Inner("b") and c.mode == "slow"
    assert config_from_dict(Outer, {"path": None, "blocks": None}) == Outer()


def test_validator_errors_are_one_line_naming_every_bad_field():
    with pytest.raises(ValueError, match=r"^f.yaml: unknown keys \['nn'\]; known keys: mode, n, rate"):
        config_from_dict(Outer, {"nn": 1}, "f.yaml")
    with pytest.raises(ValueError) as e:
        config_from_dict(Outer, {"mode": "medium", "n": 2.5, "rate": "fast", "on": 1, "path": 3, "blocks": 4},
                         "f.yaml")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("f.yaml: ")
    for part in ("mode='medium' is not one of: fast, slow", "n=2.5 must be an integer", "rate='fast' must be a number",
                 "on=1 must be true or false", "path=3 must be a path or null", "blocks=4 must be a list"):
        assert part in msg, (part, msg)
    with pytest.raises(ValueError, match=r"f.yaml \(in inner\): unknown keys \['wrd'\]"):
        config_from_dict(Outer, {"inner": {"wrd": "x"}}, "f.yaml")


def test_train_config_choices_checked_when_built():
    assert TrainConfig.from_dict({"select_metric": "val_loss", "lr": "1e-3", "betas": [0.9, 0.99]}).betas == (0.9, 0.99)
    with pytest.raises(ValueError, match="select_metric='val_f1' is not one of: val_score, val_acc, val_auc, val_loss"):
        TrainConfig.from_dict({"select_metric": "val_f1"}, "run.yaml")
    with pytest.raises(ValueError, match="precision='fp16' is not one of"):
        TrainConfig(precision="fp16")
    with pytest.raises(ValueError, match="cache_dtype"):
        TrainConfig().replace(cache_dtype="int8")



def test_model_configs_check_themselves_when_built_directly():
    """As peft's LoraConfig: building a config from Python checks it like YAML does."""
    from gazeclip.models.config import GazeCLIPConfig, LinearProbeConfig, PromptConfig, ZeroShotConfig

    with pytest.raises(ValueError, match="GazeCLIPConfig: fusion='bogus' is not one of: gated, add, concat"):
        GazeCLIPConfig(fusion="bogus")
    with pytest.raises(ValueError, match="lora_rank='eight' must be an integer"):
        GazeCLIPConfig(lora_rank="eight")
    with pytest.raises(ValueError, match="PromptConfig"):
        PromptConfig(l1=3)
    for cls in (GazeCLIPConfig, LinearProbeConfig, ZeroShotConfig, PromptConfig):
        assert cls() == cls()  # the defaults pass their own check

def _train_args(*argv: str):
    return build_parser(["train", *argv]).parse_args(["train", *argv])


def test_every_train_config_field_has_a_flag():
    parser = build_parser(["train"])
    train = parser._subparsers._group_actions[0].choices["train"]
    flags = {s for a in train._actions for s in a.option_strings}
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert (flag in flags) == (f.name not in NO_FLAG), f.name
    for old in ("--model", "--backbone", "--clip", "--epochs", "--batch-size", "--lr", "--seed", "--device", "--faces",
                "--protocol", "--no-cache", "--quiet", "--set", "--model-arg", "--config", "--data", "--out",
                "--resume", "--no-feature-cache", "--select-metric", "--balance-classes"):
        assert old in flags, old


def test_flags_override_yaml_and_set(tmp_path):
    y = tmp_path / "run.yaml"
    y.write_text("epochs: 7\nlr: 1e-3\nseed: 5\nfaces: none\nbalance_classes: true\n")
    cfg = resolve_config(_train_args("--config", str(y), "--out", "o"))
    assert (cfg.epochs, cfg.lr, cfg.seed, cfg.faces, cfg.balance_classes, cfg.feature_cache) == (7, 1e-3, 5, "none",
                                                                                                 True, True)
    cfg = resolve_config(_train_args("--config", str(y), "--out", "o", "--set", "epochs=5", "--set", "seed=9",
                                     "--epochs", "3", "--no-balance-classes", "--select-metric", "val_auc",
                                     "--hflip", "0.25", "--cache-dir", "c", "--model-arg", "lora_rank=4"))
    assert (cfg.epochs, cfg.seed, cfg.balance_classes, cfg.select_metric, cfg.hflip, cfg.cache_dir) == (
        3, 9, False, "val_auc", 0.25, "c")  # flag > --set > YAML
    assert cfg.model_overrides == {"lora_rank": 4} and cfg.lr == 1e-3 and cfg.faces == "none"
    cfg = resolve_config(_train_args("--out", "o", "--no-cache", "--quiet"))
    assert cfg.feature_cache is False and cfg.progress is False
    cfg = resolve_config(_train_args("--out", "o", "--feature-cache", "--set", "feature_cache=false"))
    assert cfg.feature_cache is True


def test_choices_rejected_by_argparse_listing_them(capsys):
    for flag, bad, listed in (("--select-metric", "val_f1", "val_score"), ("--precision", "fp16", "bf16"),
                              ("--faces", "crop", "detect"), ("--detection-threshold-rule", "f1", "balanced"),
                              ("--cache-dtype", "int8", "float32")):
        with pytest.raises(SystemExit) as e:
            main(["train", "--out", "o", flag, bad])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "invalid choice" in err and repr(bad) in err and listed in err, err
    with pytest.raises(SystemExit):
        main(["train", "--out", "o", "--interrupt-after-steps", "3"])  # testing only: no flag
    capsys.readouterr()


def test_bad_values_fail_before_any_data_work(tmp_path, capsys):
    missing, out = tmp_path / "no-data", tmp_path / "run"
    assert main(["train", "--data", str(missing), "--out", str(out), "--set", "select_metric=val_f1"]) == 1
    err = capsys.readouterr().err.strip()
    assert "select_metric='val_f1' is not one of" in err and len(err.splitlines()) == 1
    assert main(["train", "--data", str(missing), "--out", str(out), "--set", "lora_rank=4"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--model-arg lora_rank=VALUE" in err and len(err.splitlines()) == 1
    from gazeclip.train.trainer import train

    base = TrainConfig(backbone="tiny-random", faces="none", progress=False)
    with pytest.raises(UnknownNameError, match="unknown model 'gazeclop'; known models: .*gazeclip"):
        train(base.replace(model="gazeclop"), missing, out)
    with pytest.raises(UnknownNameError, match="unknown backbone 'tiny'; known backbones: .*tiny-random"):
        train(base.replace(backbone="tiny"), missing, out)
    with pytest.raises(ValueError, match="unknown keys \\['lora_rnk'\\]"):
        train(base.replace(model_overrides={"lora_rnk": 4}), missing, out)
    assert not out.exists()  # nothing was made: no run folder, no face analysis
