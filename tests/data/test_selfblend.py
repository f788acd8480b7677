"""Self-blended pseudo-fakes (SBI) and robustness augmentation at training (issue 19, items 1-2):
the transforms on real benchmark faces (their 478 MediaPipe landmarks), the rendering into the
data folder's cache, the dataset's stand-ins, and a tiny-random training run with the switches on.

The data is a small benchmark built here like `gazeclip bench build` (real photos and two
generators), so the blends are made from real faces after the benchmark's own post-processing.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gazeclip.data.augment import MAX_SEVERITY, random_perturbation
from gazeclip.data.derived import DerivedSpec, best_landmarks, derive_training_rows
from gazeclip.data.manifest import REAL, read_manifest
from gazeclip.data.perturb import PERTURBATIONS
from gazeclip.data.selfblend import BLEND_CLASS, BLEND_REGIONS, face_hull, region_masks, self_blend
from gazeclip.faces.io import load_image



@pytest.fixture(scope="module")
def bench(real_weights, tmp_path_factory) -> Path:
    """Real photos (8 train, 3 val, 1 test) and two generators, through the benchmark's finalize."""
    from gazeclip.bench.build import BuildConfig, Preset, build

    out = tmp_path_factory.mktemp("sbi-bench")
    build(out, BuildConfig(Preset("sbi-test", (4, 2, 1), (8, 3, 1)), generators=("dcgan-msg", "vae-msg")), quiet=True)
    return out


@pytest.fixture(scope="module")
def faces(bench) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, 478 landmarks) of the real train photos, from the face records training uses."""
    rows = [r for r in read_manifest(bench) if r.cls == REAL and r.split == "train"]
    lms = best_landmarks([str(bench / r.path) for r in rows], cache_dir=bench / ".cache" / "faces")
    out = [(load_image(bench / r.path), lm) for r, lm in zip(rows, lms) if lm is not None]
    assert len(out) >= 6, "the landmarker should find most benchmark faces"
    return out


@pytest.mark.real
def test_blend_is_deterministic_by_seed(faces):
    img, lm = faces[0]
    for region in BLEND_REGIONS:
        a = self_blend(img, lm, region, np.random.default_rng(5))
        b = self_blend(img, lm, region, np.random.default_rng(5))
        c = self_blend(img, lm, region, np.random.default_rng(6))
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
        assert not np.array_equal(a.image, c.image)


@pytest.mark.real
def test_mask_inside_the_face_hull_and_feathered(faces):
    for i, (img, lm) in enumerate(faces[:4]):
        hull = face_hull(lm, img.shape[:2])
        for region in BLEND_REGIONS:
            for s in range(3):
                b = self_blend(img, lm, region, np.random.default_rng([i, s]))
                assert b.mask.min() >= 0 and 0.2 <= b.mask.max() <= 1.0
                assert not b.mask[~hull].any(), f"{region}: the mask leaves the face hull"
                assert not b.mask[~b.limit].any()
                m = b.mask / b.mask.max()
                # feathered: no hard edge (a binary mask steps by 1 between neighbours) and a band of
                # intermediate weights around the core
                step = max(np.abs(np.diff(m, axis=0)).max(), np.abs(np.diff(m, axis=1)).max())
                assert step < 0.5, f"{region}: mask edge not feathered (step {step:.2f})"
                assert ((m > 0.02) & (m < 0.98)).sum() >= 0.2 * (m > 0.02).sum()


@pytest.mark.real
def test_region_variants_change_only_their_region(faces):
    img, lm = faces[1]
    shape = img.shape[:2]
    for region in ("eyes", "mouth", "nose"):
        for s in range(4):
            b = self_blend(img, lm, region, np.random.default_rng(s))
            changed = np.any(b.image != img, axis=2)
            assert changed.any()
            assert np.array_equal(b.image[b.mask == 0], img[b.mask == 0]), "pixels outside the mask changed"
            assert not changed[~b.limit].any()
            for other in {"eyes", "mouth", "nose"} - {region}:  # other regions' hulls stay untouched
                hull, _ = region_masks(lm, shape, other)
                assert not (changed & hull & ~b.limit).any()
    # the face variant stays inside the face; the region variants are much smaller
    areas = {r: (self_blend(img, lm, r, np.random.default_rng(0)).mask > 0).sum() for r in BLEND_REGIONS}
    assert all(areas[r] < 0.5 * areas["face"] for r in ("eyes", "mouth", "nose"))


@pytest.mark.real
def test_only_real_train_photos_are_blended_and_stored_like_the_benchmark(bench, tmp_path):
    from gazeclip.bench.checks import format_features

    rows = read_manifest(bench)  # every split and class: the renderer itself must keep real train only
    spec = DerivedSpec(self_blend=2, seed=3)
    got = derive_training_rows(bench, rows, spec)
    real_train = {r.path: r for r in rows if r.cls == REAL and r.split == "train"}
    assert len(got.blends) + 2 * len(set(got.skipped)) == 2 * len(real_train)
    assert len(got.blends) >= 12
    sources = {b.source.rsplit(" of ", 1)[1] for b in got.blends}
    assert sources <= set(real_train)
    for b in got.blends:
        src = real_train[b.source.rsplit(" of ", 1)[1]]
        assert (b.cls, b.split, b.identity, b.licence) == (BLEND_CLASS, "train", src.identity, src.licence)
        assert b.path.startswith(".cache/selfblend/")
        assert hashlib.sha256((bench / b.path).read_bytes()).hexdigest() == b.sha256
    # the same file format as every benchmark image (size, PNG, no metadata): format checks see nothing new
    ref = format_features(bench / next(iter(real_train)))[0]
    assert all(format_features(bench / b.path)[0] == ref for b in got.blends)
    # deterministic by seed and image: a copy of the data folder renders the same bytes; another seed others
    other = tmp_path / "copy"
    shutil.copytree(bench, other, ignore=shutil.ignore_patterns(".cache"))
    again = derive_training_rows(other, rows, spec)
    assert [(b.path, b.sha256) for b in again.blends] == [(b.path, b.sha256) for b in got.blends]
    seed4 = derive_training_rows(other, rows, DerivedSpec(self_blend=2, seed=4))
    assert not {b.sha256 for b in seed4.blends} & {b.sha256 for b in got.blends}
    # an existing file is reused (no landmarks needed), a damaged one is made again
    (other / got.blends[0].path).write_bytes(b"broken")
    calls = []
    again2 = derive_training_rows(other, rows, spec, landmarks_of=lambda p: calls.append(p) or
                                  best_landmarks(p, cache_dir=bench / ".cache" / "faces"))
    assert [b.sha256 for b in again2.blends] == [b.sha256 for b in got.blends]
    assert len(calls) == 1 and len(calls[0]) == 1 + len(got.skipped)


def test_augmentation_severities_in_range():
    img = (np.random.default_rng(0).uniform(0, 255, (64, 64, 3))).astype(np.uint8)
    for lo, hi in ((1, MAX_SEVERITY), (2, 3), (4, 4)):
        seen_kinds, seen_sev = set(), set()
        rng = np.random.default_rng(1)
        for _ in range(60):
            out, kind, sev = random_perturbation(img, rng, PERTURBATIONS, (lo, hi))
            assert out.shape == img.shape and out.dtype == np.uint8
            assert lo <= sev <= hi
            seen_kinds.add(kind)
            seen_sev.add(sev)
        assert seen_kinds == set(PERTURBATIONS) and seen_sev == set(range(lo, hi + 1))
    rng = np.random.default_rng(2)
    assert {random_perturbation(img, rng, ("jpeg", "blur"), (1, 2))[1] for _ in range(20)} == {"jpeg", "blur"}
    for bad in ((0, 3), (3, 2), (1, 6), (1.5, 2)):
        with pytest.raises(ValueError, match="robust_augment_severity"):
            random_perturbation(img, rng, PERTURBATIONS, bad)
    with pytest.raises(ValueError, match="robust_augment_kinds"):
        random_perturbation(img, rng, ("jpg",), (1, 2))


def test_config_switches_are_checked():
    from gazeclip.run.config import TrainConfig

    c = TrainConfig.from_dict({"self_blend": 2, "self_blend_regions": ["face", "mouth"], "robust_augment": 1,
                               "robust_augment_severity": [1, 3]})
    assert c.derived_spec() == DerivedSpec(2, ("face", "mouth"), 1, PERTURBATIONS, (1, 3), 0)
    assert c.to_dict()["self_blend_regions"] == ["face", "mouth"]  # YAML-safe
    for bad, word in (({"self_blend_regions": ["ear"]}, "self_blend_regions"),
                      ({"robust_augment_kinds": ["jpg"]}, "robust_augment_kinds"),
                      ({"robust_augment_p": 1.5}, "robust_augment_p"), ({"self_blend": -1}, "self_blend")):
        with pytest.raises(ValueError, match=word):
            TrainConfig.from_dict(bad)


@pytest.mark.real
def test_perturbed_copies_stand_in_for_their_item(bench):
    from gazeclip.data.dataset import FaceDataset, FaceGazeSource, build_samples, variants_for

    rows = [r for r in read_manifest(bench) if r.split == "train"][:6]
    got = derive_training_rows(bench, rows, DerivedSpec(perturbed=2, severity=(3, 5), seed=1))
    assert len(got.copies) == 12 and got.copy_of == [r.path for r in rows for _ in range(2)]
    for c in got.copies:
        src = load_image(bench / c.source.rsplit(" of ", 1)[1])
        assert load_image(bench / c.path).shape == src.shape
        assert c.cls == next(r.cls for r in rows if r.path == c.source.rsplit(" of ", 1)[1])
    source = FaceGazeSource("none")
    items, _ = build_samples([str(bench / r.path) for r in rows], [r.cls for r in rows], source, 32)
    items.paths = [r.path for r in rows]
    copies, _ = build_samples([str(bench / r.path) for r in got.copies], [r.cls for r in got.copies], source, 32)
    def crops(p, epoch=0):
        ds = FaceDataset(items, None, lambda c: np.asarray(c)[None], variants=variants_for(items, copies,
                                                                                             got.copy_of, p))
        ds.set_epoch(epoch)
        return [ds[i]["pixels"] for i in range(len(ds))]
    orig = list(items.crops)
    assert all(np.array_equal(a, b) for a, b in zip(crops(0.0), orig))
    for epoch in (0, 1):
        swapped = crops(1.0, epoch)
        for i, x in enumerate(swapped):  # each item became one of its own two copies
            js = [j for j in range(len(copies)) if np.array_equal(copies.crops[j], x)]
            assert js and all(got.copy_of[j] == rows[i].path for j in js)
        assert all(np.array_equal(a, b) for a, b in zip(swapped, crops(1.0, epoch)))  # deterministic
    n_orig = sum(np.array_equal(a, b) for e in range(4) for a, b in zip(crops(0.5, e), orig))
    assert 0 < n_orig < 4 * len(orig)  # p = 0.5: some items replaced, some not


@pytest.mark.real
def test_training_with_self_blends_and_robust_augment(bench, tmp_path):
    """A short tiny-random run with both switches on: blends are detection-only items, the copies
    come from the feature cache, the run finishes and its config records the switches."""
    import yaml

    from gazeclip.run.config import TrainConfig
    from gazeclip.train.trainer import train

    cfg = TrainConfig.from_yaml("tiny").replace(protocol="P1", epochs=2, self_blend=1, robust_augment=1,
                                                robust_augment_p=0.5, seed=2)
    res = train(cfg, bench, tmp_path / "run")
    n_train_rows = sum(r.split == "train" and r.cls in ("real", "dcgan-msg", "vae-msg") for r in read_manifest(bench))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    n_blends = len(list((bench / ".cache" / "selfblend" / cfg.derived_spec().tag("selfblend")).glob("*.png")))
    assert n_blends >= 6 and summary["n_train"] >= n_train_rows + 6
    assert all(np.isfinite(h["train_loss"]) for h in res.history)
    run_cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert run_cfg["self_blend"] == 1 and run_cfg["robust_augment"] == 1
    taxonomy = json.loads((tmp_path / "run" / "taxonomy.json").read_text())
    assert BLEND_CLASS not in taxonomy["classes"]  # detection-only: the label space is the benchmark's

    from gazeclip.data.dataset import FaceDataset, manifest_samples

    rows = derive_training_rows(bench, read_manifest(bench), cfg.derived_spec())
    s = manifest_samples(rows.blends, bench, "none", "ethxgaze-r18", 32, None)
    from gazeclip.run.folder import read_taxonomy

    ds = FaceDataset(s, read_taxonomy(tmp_path / "run" / "taxonomy.json"), lambda c: c)
    assert (ds.labels == -1).all() and (ds.is_fake == 1).all()
    assert (ds.sample_groups == len(ds.taxonomy.classes)).all()  # their own group when classes are balanced


def test_reference_experiment_is_closed_set_with_both_switches():
    """The packaged reference recipe (issue 19, item 4): P1 on the full preset, where P1 sees all 11
    generators; GazeCLIP and clip-lora with self-blends and robustness copies, the ablation without
    self-blends and otherwise the same."""
    from gazeclip.bench.build import PRESETS, default_protocols
    from gazeclip.bench.forgers import REGISTRY
    from gazeclip.experiment.runner import load_experiment, run_config

    cfg = load_experiment("reference")
    assert cfg.protocol == "P1" and cfg.build == "full" and "full" in PRESETS
    p1 = next(p for p in default_protocols(tuple(REGISTRY)) if p.name == "P1")
    assert len(p1.seen) == 11 and p1.unseen == ()
    runs = {m.label: run_config(cfg, m, cfg.seeds[0]) for m in cfg.models}
    assert {c.model for c in runs.values()} == {"gazeclip", "clip-lora"}
    assert runs["gazeclip"].self_blend > 0 and runs["clip-lora"].self_blend == runs["gazeclip"].self_blend
    assert all(c.robust_augment > 0 for c in runs.values())
    ablation = runs["gazeclip-no-self-blend"]
    assert ablation.self_blend == 0 and ablation.model == "gazeclip"
    assert ablation.replace(self_blend=runs["gazeclip"].self_blend) == runs["gazeclip"]
