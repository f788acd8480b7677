"""Class-balanced training sampler: equal counts per class, epoch length, determinism, DDP shards,
mid-epoch resume."""
from __future__ import annotations

import numpy as np
import pytest

from gazeclip.data.sampling import BalancedSampler

# like mini's P2 train split: a large real class and 7 generators of 60
LABELS = np.array([0] * 350 + [c for c in range(1, 8) for _ in range(60)])


def test_each_class_counts_equally_and_epoch_is_not_longer():
    s = BalancedSampler(LABELS, seed=0)
    idx = list(s)
    assert len(idx) == len(s) == 8 * 60  # n_classes x median class size
    assert len(idx) <= len(LABELS)
    counts = np.bincount(LABELS[idx], minlength=8)
    assert (counts == 60).all()
    # the big class gives 60 different items per epoch and, over epochs, more of itself
    real = [i for i in idx if LABELS[i] == 0]
    assert len(set(real)) == 60
    s.set_epoch(1)
    assert set(i for i in s if LABELS[i] == 0) != set(real)


def test_small_class_is_cycled_without_repeats_inside_a_cycle():
    labels = np.array([0] * 100 + [1] * 10 + [2] * 40)
    idx = list(BalancedSampler(labels, seed=3))
    small = [i for i in idx if labels[i] == 1]
    assert len(small) == 40 and all(np.bincount(small)[100:110] == 4)


def test_deterministic_per_seed_and_epoch():
    a, b = BalancedSampler(LABELS, seed=1), BalancedSampler(LABELS, seed=1)
    assert list(a) == list(b)
    b.set_epoch(2)
    assert list(a) != list(b)
    assert list(BalancedSampler(LABELS, seed=2)) != list(a)


def test_ddp_shards_are_disjoint_and_resume_skips():
    world = [BalancedSampler(LABELS, num_replicas=3, rank=r, seed=0) for r in range(3)]
    parts = [list(s) for s in world]
    assert len({len(p) for p in parts}) == 1
    full = BalancedSampler(LABELS, seed=0).epoch_indices()
    assert sorted(sum(parts, [])) == sorted(full[: 3 * len(parts[0])].tolist())
    s = BalancedSampler(LABELS, seed=0)
    s.skip = 100
    assert list(s) == full[100:].tolist() and len(s) == len(full) - 100


def test_no_labels_is_a_clear_error():
    with pytest.raises(ValueError, match="no labelled items"):
        BalancedSampler(np.array([-1, -1]))


def test_trainer_switch_defaults_off():
    from gazeclip.run.config import TrainConfig

    assert TrainConfig().balance_classes is False
    assert TrainConfig.from_dict({"balance_classes": True}).balance_classes is True
