"""One coherent decision per face, from a model's outputs and the run's validation-calibrated thresholds.

The rule (docs/engine.md, "Predict"):
1. verdict = "fake" when p_fake >= the detection threshold, else "real".
2. A "real" verdict names no generator (generator, generator_prob and family are null, and the face
   is never flagged unknown).
3. A "fake" verdict names the most probable *fake* class: the argmax of the attribution logits over
   the generator classes only (the real class cannot be named), with `generator_prob` its
   probability conditional on the face being fake (softmax over the generator classes); the family
   is the argmax of the family logits over the non-real families. The face is flagged
   `unknown_generator` when that conditional probability is below the unknown threshold.

Separating "is it fake" (p_fake) from "which generator, given that it is fake" (the conditional
softmax) is what makes the record consistent: an argmax over all classes could say "real" next
to p_fake 0.75 (design choice, not from the paper).

numpy/scipy only: metrics, calibration and predict share these functions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import softmax

DEFAULT_DETECTION_THRESHOLD = 0.5  # used only for runs calibrated before the detection threshold existed


def fake_conditional_probs(attribution_logits: np.ndarray) -> np.ndarray:
    """(N, C) logits with column 0 = real -> (N, C-1) softmax over the generator classes only:
    p(generator | fake)."""
    logits = np.asarray(attribution_logits)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"attribution logits must be (N, C>=2) with column 0 = real, got {logits.shape}")
    return softmax(np.asarray(logits[:, 1:], dtype=np.float64), axis=1)


def top_fake(attribution_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class index in the full taxonomy (>= 1), its fake-conditional probability) per row."""
    p = fake_conditional_probs(attribution_logits)
    j = p.argmax(1)
    return j + 1, p[np.arange(len(j)), j]


def unknown_score(attribution_logits: np.ndarray) -> np.ndarray:
    """Higher = less like any known generator: 1 - max_g p(g | fake)."""
    return 1.0 - top_fake(attribution_logits)[1]


def unknown_flag(attribution_logits: np.ndarray, threshold: float | None) -> np.ndarray:
    """The attribution stage's flag: top fake-conditional probability below the threshold."""
    n = len(attribution_logits)
    if threshold is None:
        return np.zeros(n, bool)
    return top_fake(attribution_logits)[1] < threshold


def fake_verdict(p_fake: np.ndarray, threshold: float | None) -> np.ndarray:
    t = DEFAULT_DETECTION_THRESHOLD if threshold is None else threshold
    return np.asarray(p_fake) >= t


@dataclass
class Verdict:
    """The decision for one face (fields of a predict record)."""

    verdict: str                   # "real" | "fake"
    generator: str | None          # a generator class of the run's taxonomy; None for a real verdict
    generator_prob: float | None   # p(generator | fake)
    family: str | None             # None for a real verdict
    unknown_generator: bool        # only ever True with a fake verdict

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "generator": self.generator,
                "generator_prob": None if self.generator_prob is None else round(self.generator_prob, 6),
                "family": self.family, "unknown_generator": self.unknown_generator}


def decide(p_fake: np.ndarray, attribution_logits: np.ndarray, family_logits: np.ndarray,
           classes: list[str] | tuple[str, ...], families: list[str] | tuple[str, ...],
           detection_threshold: float | None, unknown_threshold: float | None) -> list[Verdict]:
    """The rule of the module docstring, for a batch of faces. `classes[0]` must be "real"; the
    family "real", if present, is never named for a fake verdict."""
    if not classes or classes[0] != "real":
        raise ValueError(f"the taxonomy's first class must be 'real', got {list(classes)[:3]}")
    is_fake = fake_verdict(p_fake, detection_threshold)
    gen_idx, gen_p = top_fake(attribution_logits)
    flag = unknown_flag(attribution_logits, unknown_threshold)
    fam = np.asarray(family_logits, dtype=np.float64).copy()
    if "real" in families:
        fam[:, list(families).index("real")] = -np.inf
    fam_idx = fam.argmax(1)
    out = []
    for i in range(len(is_fake)):
        if not is_fake[i]:
            out.append(Verdict("real", None, None, None, False))
        else:
            out.append(Verdict("fake", classes[int(gen_idx[i])], float(gen_p[i]), families[int(fam_idx[i])],
                               bool(flag[i])))
    return out
