"""One coherent decision per face, from a model's outputs and the run's validation-calibrated thresholds.

The rule (docs/engine.md, "Predict"):
0. verdict = "uncertain" when the face is outside what the run's validation faces cover (smaller in
   the source image, less colourful, a lower detector score, or a head turned further than all
   but `quantile` of them: `AbstainLimits`), with a `reason` naming each limit it crosses; it names
   no generator, and `p_fake` (still reported) decides nothing.
1. Otherwise verdict = "fake" when p_fake >= the detection threshold, else "real".
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

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy.special import softmax

from ..records import GREYSCALE_CHROMA, QUALITY_FIELDS

DEFAULT_DETECTION_THRESHOLD = 0.5  # used only for runs calibrated before the detection threshold existed

# The abstain rules, by name (TrainConfig.abstain_rules); each reads columns of records.QUALITY_FIELDS.
ABSTAIN_RULES = ("small-face", "greyscale", "low-confidence", "head-pose")


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


@dataclass(frozen=True)
class AbstainLimits:
    """Where a verdict would be a guess: the limits of rule 0, from the run's validation faces
    (run.calibrate.abstain_limits_from; stored in RUN/calibration.json, "abstain"). A limit that is
    None is not checked (its rule is off, or the validation faces had no such value)."""

    min_face_px: float | None = None    # small-face: face box's longer side, source-image pixels
    min_chroma: float | None = None     # greyscale: colourfulness (records.FaceQuality.chroma)
    min_score: float | None = None      # low-confidence: the face detector's score
    max_pitch: float | None = None      # head-pose: |pitch|, |yaw|, |roll| in degrees
    max_yaw: float | None = None
    max_roll: float | None = None
    quantile: float | None = None       # provenance: the quantile each limit is at ...
    n: int = 0                          # ... of how many validation faces
    split: str = "val"

    @classmethod
    def from_dict(cls, d: dict) -> "AbstainLimits":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def as_dict(self) -> dict:
        return asdict(self)

    def check(self, q) -> list[tuple[str, str]]:
        """(rule of ABSTAIN_RULES, clause) per limit the quality row `q` (records.QUALITY_FIELDS)
        crosses; [] when none. A NaN value (not measured) crosses no limit."""
        v = dict(zip(QUALITY_FIELDS, (float(x) for x in q)))
        out = []
        if _crosses(v["face_px"], self.min_face_px):
            out.append(("small-face", f"small face: {v['face_px']:.0f} px in the source image, under the "
                                      f"{self.min_face_px:.0f} px limit"))
        if _crosses(v["chroma"], self.min_chroma):
            what = "greyscale" if v["chroma"] < GREYSCALE_CHROMA else "almost no colour"
            out.append(("greyscale", f"{what}: colour {v['chroma']:.1f}, under the {self.min_chroma:.1f} limit"))
        if _crosses(v["score"], self.min_score):
            out.append(("low-confidence", f"low detector confidence: {v['score']:.2f}, under the "
                                          f"{self.min_score:.2f} limit"))
        pose = (("pitch", self.max_pitch), ("yaw", self.max_yaw), ("roll", self.max_roll))
        turned = [f"{k} {v[k]:+.0f} deg beyond +-{lim:.0f}" for k, lim in pose if _crosses(abs(v[k]), lim, above=True)]
        if turned:
            out.append(("head-pose", f"extreme head pose: {', '.join(turned)}"))
        return out

    def reasons(self, q) -> list[str]:
        """The clauses of `check`: why a face with quality row `q` is uncertain ([] when it is not)."""
        return [text for _, text in self.check(q)]


def _crosses(x: float, limit: float | None, above: bool = False) -> bool:
    """x < limit (x > limit with `above`); False for a missing limit or an unmeasured (NaN) value."""
    return limit is not None and not math.isnan(x) and (x > limit if above else x < limit)


@dataclass
class Verdict:
    """The decision for one face (fields of a predict record)."""

    verdict: str                   # "real" | "fake" | "uncertain"
    generator: str | None          # a generator class of the run's taxonomy; None unless fake
    generator_prob: float | None   # p(generator | fake)
    family: str | None             # None unless fake
    unknown_generator: bool        # only ever True with a fake verdict
    reason: str | None = None      # why the verdict is uncertain ("; " between clauses); None otherwise

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "reason": self.reason, "generator": self.generator,
                "generator_prob": None if self.generator_prob is None else round(self.generator_prob, 6),
                "family": self.family, "unknown_generator": self.unknown_generator}


def decide(p_fake: np.ndarray, attribution_logits: np.ndarray, family_logits: np.ndarray,
           classes: list[str] | tuple[str, ...], families: list[str] | tuple[str, ...],
           detection_threshold: float | None, unknown_threshold: float | None,
           quality: np.ndarray | None = None, abstain: AbstainLimits | None = None) -> list[Verdict]:
    """The rule of the module docstring, for a batch of faces. `classes[0]` must be "real"; the
    family "real", if present, is never named for a fake verdict. `quality`: (N, QUALITY_FIELDS)
    rows, checked against `abstain` (rule 0) when both are given."""
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
        why = abstain.reasons(quality[i]) if abstain is not None and quality is not None else []
        if why:
            out.append(Verdict("uncertain", None, None, None, False, "; ".join(why)))
        elif not is_fake[i]:
            out.append(Verdict("real", None, None, None, False))
        else:
            out.append(Verdict("fake", classes[int(gen_idx[i])], float(gen_p[i]), families[int(fam_idx[i])],
                               bool(flag[i])))
    return out
