"""Class-balanced sampling for training: real faces (now the largest class) and each generator
count equally, without making an epoch longer than a plain pass over a typical dataset."""
from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler

from ..errors import UsageError


class BalancedSampler(Sampler[int]):
    """Every class is drawn equally often. An epoch holds n_classes x median(class size) items
    (so about as many as a plain epoch when classes are near the median), `quota` per class: a
    smaller class cycles through fresh permutations of itself, a larger one gives a fresh random
    subset each epoch, so over epochs all its items are seen. Deterministic per (seed, epoch);
    each of `num_replicas` processes takes every num_replicas-th index (the epoch is cut to a
    multiple of num_replicas); `skip` starts part-way through the epoch (mid-epoch resume), as the
    trainer's DistributedSampler does."""

    def __init__(self, labels, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        labels = np.asarray(labels)
        self.classes = [c for c in np.unique(labels) if c >= 0]
        if not self.classes:
            raise UsageError("BalancedSampler: no labelled items to sample")
        self.members = [np.flatnonzero(labels == c) for c in self.classes]
        self.quota = int(np.median([len(m) for m in self.members]))
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.epoch = 0
        self.skip = 0
        self.total = (len(self.classes) * self.quota // num_replicas) * num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_indices(self) -> np.ndarray:
        """All processes' indices of the current epoch, in order."""
        rng = np.random.default_rng([self.seed, self.epoch])
        parts = []
        for m in self.members:
            reps = -(-self.quota // len(m))
            parts.append(np.concatenate([rng.permutation(m) for _ in range(reps)])[:self.quota])
        return rng.permutation(np.concatenate(parts))[:self.total]

    def __iter__(self):
        mine = self.epoch_indices()[self.rank::self.num_replicas]
        return iter(mine[self.skip:].tolist())

    def __len__(self) -> int:
        return self.total // self.num_replicas - self.skip
