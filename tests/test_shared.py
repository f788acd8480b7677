"""The shared bottom layer: atomic writes, file hashing, the one registry pattern."""
from __future__ import annotations

import hashlib
import os

import pytest

from gazeclip.atomic import atomic_dir, atomic_path, atomic_write_text
from gazeclip.common import sha256_of
from gazeclip.registry import Registry, UnknownNameError


def test_atomic_path_renames_on_success_and_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "sub" / "out.png"
    with atomic_path(target, suffix=".png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == target.parent
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"new"                      # the old file is untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.png"]  # no temp file left


def test_atomic_dir_replaces_the_folder_on_success_and_leaves_it_on_error(tmp_path):
    target = tmp_path / "export" / "int8"
    with atomic_dir(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        (tmp / "a.bin").write_bytes(b"new")
    assert [p.name for p in target.iterdir()] == ["a.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0o700
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "b.bin").write_bytes(b"half")
            raise RuntimeError("killed")
    assert [p.name for p in target.iterdir()] == ["a.bin"]     # the old folder is untouched
    assert [p.name for p in target.parent.iterdir()] == ["int8"]  # no temp folder left
    with atomic_dir(target) as tmp:
        (tmp / "c.bin").write_bytes(b"again")
    assert [p.name for p in target.iterdir()] == ["c.bin"]     # a finished one replaces the old


def test_sha256_of_matches_hashlib(tmp_path):
    p = tmp_path / "f.bin"
    data = bytes(range(256)) * 5000
    p.write_bytes(data)
    assert sha256_of(p) == hashlib.sha256(data).hexdigest()
    atomic_write_text(tmp_path / "t.txt", "abc")
    assert sha256_of(tmp_path / "t.txt") == hashlib.sha256(b"abc").hexdigest()


def test_registry_decorator_lookup_and_one_error():
    reg: Registry = Registry("widget")

    @reg.register("b", help="the b one")
    def _b():
        return "B"

    reg.add("a", lambda: "A")
    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"] and "a" in reg and len(reg) == 2
    assert reg["b"]() == "B" and reg.help["b"] == "the b one"
    with pytest.raises(UnknownNameError, match=r"unknown widget 'c'; known widgets: a, b") as e:
        reg["c"]
    assert isinstance(e.value, KeyError) and isinstance(e.value, ValueError)
    assert str(e.value).startswith("unknown widget")  # not KeyError's quoted repr
    ordered = Registry("step", sort=False)
    ordered.add("z", 1)
    ordered.add("y", 2)
    assert ordered.names() == ["z", "y"]


def test_every_registry_raises_the_same_error():
    from gazeclip.bench.forgers import create_forger
    from gazeclip.gaze.estimators import create_estimator
    from gazeclip.models import model_config
    from gazeclip.models.backbones import create_backbone

    for make, kind in ((create_backbone, "backbone"), (create_estimator, "gaze estimator"),
                       (create_forger, "generator"), (model_config, "model")):
        with pytest.raises(UnknownNameError, match=f"unknown {kind} 'nope'; known {kind}s: "):
            make("nope")
