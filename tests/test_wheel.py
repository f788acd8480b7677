"""The package installs as a plain (non-editable) wheel and works from there: configs and the web
page are package data, nothing looks for the source tree."""
from __future__ import annotations

import json
import os
import re
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "gazeclip"


def test_no_code_looks_for_the_repository():
    offenders = [str(p.relative_to(ROOT)) for p in SRC.rglob("*.py")
                 if re.search(r"__file__\)?(\.resolve\(\))?\.parents\[", p.read_text())]
    assert offenders == []


def test_every_config_is_package_data():
    from gazeclip.configs import packaged

    assert not (ROOT / "configs").exists(), "configs/ belongs inside the package: src/gazeclip/configs/"
    for kind in ("models", "runs"):
        on_disk = sorted(p.stem for p in (SRC / "configs" / kind).glob("*.yaml"))
        assert on_disk and sorted(packaged(kind)) == on_disk
    extra = [p for p in (SRC / "configs").iterdir() if p.is_dir() and p.name not in ("models", "runs", "__pycache__")]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"gazeclip.configs" = ["*/*.yaml"]' in pyproject  # any new folder of YAMLs is shipped too
    for d in extra:
        assert list(d.glob("*.yaml")), d


def _reference_in(tree: Path, tmp_path: Path, request) -> Path:
    """An image for `gazeclip predict` with the reference packaged in `tree`: the astronaut photo
    for the committed reference (real weights needed); without one, a tiny run is packed into the
    copy (never into the checkout) so that the wheel still proves the mechanism."""
    from PIL import Image

    from gazeclip.cli import main

    ref = tree / "src" / "gazeclip" / "reference"
    if (ref / "reference.json").is_file():
        request.getfixturevalue("real_weights")
        from gazeclip.weights import asset_path

        return asset_path("photo-astronaut")
    from helpers import make_run

    make_run(tmp_path / "tiny-run", faces="none")
    img = tmp_path / "a.png"
    Image.new("RGB", (40, 30), (120, 30, 200)).save(img)
    assert main(["reference", "pack", "--run", str(tmp_path / "tiny-run"), "--name", "tiny-wheel", "--root", str(ref),
                 "--images", str(img)]) == 0
    return img


@pytest.mark.slow
def test_wheel_install_into_a_fresh_venv(tmp_path, request):
    """Build the wheel, `pip install --no-deps` it into a new venv, run the `gazeclip` script there;
    the packaged reference model travels in the wheel and `gazeclip predict PHOTO` uses it."""
    import shutil

    # the build runs without isolation (no network): this environment's setuptools must read PEP 639
    pytest.importorskip("setuptools", minversion="77", reason="wheel test skipped: setuptools >= 77 needed")

    tree = tmp_path / "tree"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info",
                                                                              ".staging-*"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, tree / f)
    photo = _reference_in(tree, tmp_path, request)
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                        "-w", str(dist), str(tree)], capture_output=True, text=True, cwd=tmp_path, env=clean)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = dist.glob("gazeclip-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                       capture_output=True, text=True, cwd=tmp_path, env=clean)
    assert r.returncode == 0, r.stderr[-2000:]
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    assert (Path(purelib) / "gazeclip" / "configs" / "models" / "gazeclip.yaml").is_file()
    assert (Path(purelib) / "gazeclip" / "serve" / "static" / "index.html").is_file()
    # the venv's own gazeclip comes first; this environment's third-party packages after it
    # (PYTHONPATH entries are not site dirs, so an editable install of gazeclip there stays inactive)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([purelib, *site.getsitepackages()])}
    env.pop("GAZECLIP_MODEL_CONFIGS", None)
    env.pop("GAZECLIP_REFERENCE_DIR", None)
    code = ("import gazeclip, gazeclip.configs as c; print(gazeclip.__file__); "
            "print(sorted(c.packaged('runs'))); from gazeclip.serve.app import page_html; print(len(page_html()))")
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    where, runs, page = r.stdout.split("\n")[:3]
    assert where.startswith(purelib) and runs == "['default', 'smoke', 'tiny']" and int(page) > 1000
    r = subprocess.run([str(venv / "bin" / "gazeclip"), "info", "--model", "gazeclip", "--backbone", "tiny-random"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "total" in r.stdout.lower()
    # the reference model: every pinned file is in the install, and predict without --run uses it
    from gazeclip.common import sha256_of
    from gazeclip.run.reference import read_pin

    installed = Path(purelib) / "gazeclip" / "reference"
    pin = read_pin(installed)
    assert pin is not None and pin == read_pin(tree / "src" / "gazeclip" / "reference")
    for rel, f in pin.files.items():
        assert sha256_of(installed / pin.name / rel) == f["sha256"], rel
    r = subprocess.run([str(venv / "bin" / "gazeclip"), "predict", str(photo), "--json"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert recs and all(rec["verdict"] in ("real", "fake", "uncertain") for rec in recs)


def test_run_configs_by_name_or_path_and_user_model_configs(tmp_path, monkeypatch):
    from gazeclip.run.config import TrainConfig
    from gazeclip.models import add_model_config, list_models, model_config, registry

    assert TrainConfig.from_yaml("smoke").epochs == 4
    assert TrainConfig.from_yaml("tiny.yaml").backbone == "tiny-random"
    assert TrainConfig.from_yaml("configs/runs/tiny.yaml").backbone == "tiny-random"  # the old layout's path
    own = tmp_path / "mine.yaml"
    own.write_text("epochs: 2\nbackbone: tiny-random\n")
    assert TrainConfig.from_yaml(own).epochs == 2
    with pytest.raises(FileNotFoundError, match="packaged: default, smoke, tiny"):
        TrainConfig.from_yaml("nope")
    monkeypatch.setattr(registry, "_EXTRA_CONFIGS", [])
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "gazeclip-mine.yaml").write_text(
        "name: gazeclip-mine\narchitecture: gazeclip\ndescription: a user's model\nconfig:\n  lora_rank: 2\n")
    add_model_config(tmp_path / "models")
    assert "gazeclip-mine" in list_models() and model_config("gazeclip-mine").lora_rank == 2
    with pytest.raises(FileNotFoundError):
        add_model_config(tmp_path / "missing")
