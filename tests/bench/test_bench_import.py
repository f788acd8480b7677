"""Importers: folder tree + YAML, OW-DFA protocol CSVs, GenFace-style nested trees."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from gazeclip.bench.importers import import_dataset
from gazeclip.data.manifest import REAL, read_manifest


def _png(path: Path, value: int) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))


def test_folder_with_mapping(tmp_path):
    for i in range(10):
        _png(tmp_path / "real" / f"{i}.png", i)
        _png(tmp_path / "stylegan2" / f"{i}.png", 100 + i)
    _png(tmp_path / "simswap" / "test" / "a.png", 200)
    m = tmp_path / "map.yaml"
    m.write_text(yaml.safe_dump({"stylegan2": {"family": "gan", "forgery_type": "entire-synthesis",
                                               "licence": "x"},
                                 "simswap": {"family": "identity-swap", "forgery_type": "identity-swap"}}))
    rows = import_dataset("folder", tmp_path, mapping=m, seed=1)
    again = read_manifest(tmp_path)
    assert rows == again and len(rows) == 21
    by = {r.path: r for r in rows}
    assert by["simswap/test/a.png"].split == "test" and by["simswap/test/a.png"].family == "identity-swap"
    assert {r.family for r in rows if r.cls == REAL} == {"real"}
    sg = [r for r in rows if r.cls == "stylegan2"]
    assert [sum(r.split == s for r in sg) for s in ("train", "val", "test")] == [6, 1, 3]
    assert all(r.forgery_type == "entire-synthesis" and r.licence == "x" for r in sg)
    # deterministic splits
    assert import_dataset("folder", tmp_path, mapping=m, seed=1) == rows


def test_owdfa_csv(tmp_path):
    for i in range(4):
        _png(tmp_path / "imgs" / f"{i}.png", i)
    (tmp_path / "train.csv").write_text("path,label\nimgs/0.png,0\nimgs/1.png,1\n")
    (tmp_path / "test.csv").write_text("imgs/2.png,1\nimgs/3.png,2\n")
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump({"0": {"class": "real", "family": "real"},
                                 "1": {"class": "styleswin", "family": "gan", "forgery_type": "entire-synthesis"}}))
    out = tmp_path / "out"
    rows = import_dataset("owdfa-csv", tmp_path, out=out, mapping=m, csvs=[tmp_path / "train.csv", tmp_path / "test.csv"])
    by = {Path(r.path).name: r for r in rows}
    assert by["0.png"].cls == REAL and by["0.png"].split == "train"
    assert by["1.png"].cls == "styleswin" and by["2.png"].split == "test"
    assert by["3.png"].cls == "label-2"
    assert all((out / r.path).is_file() for r in read_manifest(out))


def test_owdfa_missing_file(tmp_path):
    (tmp_path / "test.csv").write_text("nope.png,1\n")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        import_dataset("owdfa-csv", tmp_path, csvs=[tmp_path / "test.csv"])


def test_genface_tree(tmp_path):
    _png(tmp_path / "train" / "real" / "ffhq" / "a.png", 1)
    _png(tmp_path / "train" / "fake" / "diffusion" / "ddpm" / "x" / "b.png", 2)
    _png(tmp_path / "test" / "fake" / "gan" / "stylegan3" / "c.png", 3)
    rows = import_dataset("genface", tmp_path)
    by = {Path(r.path).name: r for r in rows}
    assert by["a.png"].cls == REAL and by["a.png"].split == "train"
    assert by["b.png"].cls == "ddpm" and by["b.png"].family == "diffusion"
    assert by["c.png"].cls == "stylegan3" and by["c.png"].split == "test"


def test_bad_tree_names_the_file(tmp_path):
    _png(tmp_path / "weird" / "a.png", 1)
    with pytest.raises(ValueError, match="a.png"):
        import_dataset("genface", tmp_path)
