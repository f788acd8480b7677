"""Multi-level prompts: the texts of every class at each level (L1 real/fake, L2 forgery type,
L3 family, L4 generator name), of every family, and of every facial region, built once from the
taxonomy and the templates in the model config.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import PromptConfig
from .interface import REGIONS, Taxonomy

LEVELS = (1, 2, 3, 4)


def _words(name: str) -> str:
    return name.replace("_", " ")


@dataclass(frozen=True)
class PromptSet:
    """All prompt texts, deduplicated, with indices into them.

    `class_index[c, k]` is the text of class c at the k-th level of `levels`; `family_index[f]`
    the L3 prompt of family f; `region_index[r]` the prompt of REGIONS[r].
    """

    texts: tuple[str, ...]
    levels: tuple[int, ...]
    class_index: torch.Tensor   # (C, len(levels)) long
    family_index: torch.Tensor  # (F,) long
    region_index: torch.Tensor  # (R,) long


def class_prompt(t: PromptConfig, taxonomy: Taxonomy, cls: str, level: int) -> str:
    real = cls == "real"
    if level == 1:
        return t.l1.format(authenticity="real" if real else "fake")
    if level == 2:
        return t.l2_real if real else t.l2.format(forgery_type=_words(taxonomy.class_forgery_type[cls]))
    if level == 3:
        return family_prompt(t, taxonomy.class_family[cls])
    if level == 4:
        return t.l4_real if real else t.l4.format(name=_words(cls))
    raise ValueError(f"unknown prompt level {level}; levels are {', '.join(map(str, LEVELS))}")


def family_prompt(t: PromptConfig, family: str) -> str:
    return t.l3_real if family == "real" else t.l3.format(family=_words(family))


def build_prompts(t: PromptConfig, taxonomy: Taxonomy, levels: list[int] | tuple[int, ...],
                  regions: bool = True) -> PromptSet:
    levels = tuple(levels)
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad or not levels or len(set(levels)) != len(levels):
        raise ValueError(f"prompt_levels {list(levels)} must be distinct values from {list(LEVELS)}, at least one")
    texts: list[str] = []
    where: dict[str, int] = {}

    def add(text: str) -> int:
        if text not in where:
            where[text] = len(texts)
            texts.append(text)
        return where[text]

    cls_idx = [[add(class_prompt(t, taxonomy, c, lv)) for lv in levels] for c in taxonomy.classes]
    fam_idx = [add(family_prompt(t, f)) for f in taxonomy.families]
    reg_idx = [add(t.region.format(region=_words(r))) for r in REGIONS] if regions else []
    return PromptSet(tuple(texts), levels, torch.tensor(cls_idx, dtype=torch.long),
                     torch.tensor(fam_idx, dtype=torch.long), torch.tensor(reg_idx, dtype=torch.long))
