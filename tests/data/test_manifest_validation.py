"""Manifests and protocols: paths stay inside the data folder, splits and protocols checked.

Split from the hardening suite (one file per subsystem); each test reproduces one way gazeclip could
be attacked or hurt by an unlucky file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import gazeclip

from helpers import png_bytes

SRC = Path(gazeclip.__file__).resolve().parent  # the package under test (main or this branch)


# ---------------------------------------------------------------- 5. manifests and protocols
def _manifest(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    from gazeclip.data.manifest import ManifestRow, write_manifest

    write_manifest([ManifestRow(p, c, "real" if c == "real" else "gan", "x", s, "t", "", "")
                    for p, c, s in rows], tmp_path / "manifest.csv")
    return tmp_path


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "real/../../x.png"])
def test_manifest_paths_must_stay_inside(tmp_path, bad):
    from gazeclip.data.manifest import read_manifest

    _manifest(tmp_path, [("real/a.png", "real", "train"), (bad, "real", "train")])
    with pytest.raises(ValueError, match=r"manifest\.csv:3"):
        read_manifest(tmp_path)


def test_manifest_split_spelling_and_duplicates(tmp_path):
    from gazeclip.data.manifest import read_manifest

    _manifest(tmp_path, [("real/a.png", "real", "train"), ("real/b.png", "real", "Train ")])
    with pytest.raises(ValueError, match="'Train '"):
        read_manifest(tmp_path)
    _manifest(tmp_path, [("real/a.png", "real", "train"), ("real/a.png", "real", "test")])
    with pytest.raises(ValueError, match="listed again"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("proto,why", [
    ({"seen": ["real", "gan-a"], "unseen": []}, "real"),
    ({"seen": ["gan-a", "gan-a"], "unseen": []}, "twice"),
    ({"seen": ["gan-a"], "unseen": ["gan-a"]}, "both seen and unseen"),
    ({"seen": "gan-a", "unseen": []}, "lists"),
])
def test_protocols_validated_on_load(tmp_path, proto, why):
    from gazeclip.data.manifest import load_protocol

    (tmp_path / "protocols.yaml").write_text(yaml.safe_dump({"P": proto}))
    with pytest.raises(ValueError, match=why):
        load_protocol(tmp_path, "P")


def test_owdfa_csv_outside_paths_refused(tmp_path):
    from gazeclip.bench.importers import import_dataset

    root = tmp_path / "root"
    (root / "imgs").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(png_bytes(np.zeros((4, 4, 3), np.uint8)))
    (root / "imgs" / "a.png").write_bytes(png_bytes(np.zeros((4, 4, 3), np.uint8)))
    for bad in ("../secret.png", str(tmp_path / "secret.png")):
        (root / "test.csv").write_text(f"imgs/a.png,0\n{bad},1\n")
        with pytest.raises(ValueError, match=r"test\.csv:2"):
            import_dataset("owdfa-csv", root, csvs=[root / "test.csv"])


def test_import_with_out_elsewhere_keeps_paths_inside(tmp_path):
    from gazeclip.bench.importers import import_dataset
    from gazeclip.data.manifest import read_manifest

    root = tmp_path / "faces"
    for c in ("real", "gan-x"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            (root / c / f"{i}.png").write_bytes(png_bytes(np.full((4, 4, 3), i, np.uint8)))
    out = tmp_path / "data"
    import_dataset("folder", root, out=out)
    rows = read_manifest(out)
    assert len(rows) == 6 and all(".." not in r.path for r in rows)
    assert all((out / r.path).is_file() for r in rows)
