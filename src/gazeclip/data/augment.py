"""Robustness augmentation at training: the perturbations of `gazeclip robustness`
(`gazeclip.data.perturb`: JPEG, blur, noise, resize, colour) at a random kind and severity, so
that a re-saved, resized or recoloured real photo stays real to the detector (and a fake stays
fake). `gazeclip.data.derived` renders them into a cache folder for training.
"""
from __future__ import annotations

import numpy as np

from .perturb import LEVELS, PERTURBATIONS, perturb
from ..errors import UsageError

MAX_SEVERITY = min(len(v) for v in LEVELS.values())


def check_augment(kinds: tuple[str, ...], severity: tuple[int, int]) -> None:
    """ValueError, one line, for unknown kinds or a severity range outside 1..MAX_SEVERITY."""
    bad = [k for k in kinds if k not in PERTURBATIONS]
    if bad or not kinds:
        raise UsageError(f"robust_augment_kinds {list(kinds)}: use one or more of {', '.join(PERTURBATIONS)}")
    if (len(severity) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in severity)
            or not 1 <= severity[0] <= severity[1] <= MAX_SEVERITY):
        raise UsageError(f"robust_augment_severity {list(severity)}: use [lowest, highest] within 1..{MAX_SEVERITY}")


def random_perturbation(img: np.ndarray, rng: np.random.Generator, kinds: tuple[str, ...] = PERTURBATIONS,
                        severity: tuple[int, int] = (1, MAX_SEVERITY)) -> tuple[np.ndarray, str, int]:
    """(perturbed uint8 RGB image, kind, severity): a kind drawn uniformly from `kinds` and a
    severity uniformly from the inclusive range `severity`."""
    check_augment(kinds, severity)
    kind = kinds[int(rng.integers(len(kinds)))]
    sev = int(rng.integers(severity[0], severity[1] + 1))
    return perturb(img, kind, sev, rng), kind, sev
