"""The figures section of the model card (docs/model-card.md), written from evaluation outputs so
that no number in the card is typed by hand: `gazeclip reference card --eval RUN/eval
[--eval clip-lora=OTHER/eval ...] [--robustness RUN/robustness]`.

Inputs: `gazeclip eval`'s metrics.json (and predictions.npz for the AUC intervals) of the
reference and of the models it is compared with, and `gazeclip robustness`'s robustness.json.
Every rate is given with its count and n and a 95 % Wilson interval; detection AUC with a 95 %
percentile bootstrap interval over test items. The section replaces what lies between the
card's BEGIN and END markers; the rest of the card is left as written.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BEGIN = "<!-- figures:begin: written by `gazeclip reference card`; edit outside these markers -->"
END = "<!-- figures:end -->"
# The benchmark's classes that edit a real photo (issue 19's targets: each caught >= 80 %, clean and
# after JPEG quality 70); fully synthetic classes are judged by the AUC target.
EDIT_CLASSES = ("faceswap-poisson", "region-transplant", "gaze-redirect", "delaunay-morph")
TARGETS = {"fpr_real": 0.02, "tpr_edit": 0.80, "auc": 0.98}
JPEG70 = ("jpeg", 70)


@dataclass
class EvalFigures:
    name: str
    folder: Path
    metrics: dict
    classes: np.ndarray | None   # per test item, from predictions.npz (None when absent)
    p_fake: np.ndarray | None


def load_eval(name: str, folder: str | Path) -> EvalFigures:
    from ..errors import DamagedFileError

    folder = Path(folder)
    path = folder / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run `gazeclip eval --run RUN --data DIR` first")
    try:
        m = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DamagedFileError(path, f"damaged JSON ({str(e)[:80]})", "run `gazeclip eval` again") from None
    classes = p = None
    if (folder / "predictions.npz").is_file():
        with np.load(folder / "predictions.npz", allow_pickle=False) as z:
            if "classes" in z.files:
                classes, p = z["classes"].astype(str), z["p_fake"].astype(np.float64)
    return EvalFigures(name, folder, m, classes, p)


def wilson(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of k successes in n (scipy's)."""
    from scipy.stats import binomtest

    if n == 0:
        return math.nan, math.nan
    ci = binomtest(int(k), int(n)).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


def auc_interval(classes: np.ndarray, p_fake: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the detection AUC (all fakes vs real) over test items."""
    from .bootstrap import percentile_interval
    from .metrics import binary_auc

    y = classes != "real"
    rng = np.random.default_rng(seed)
    vals = np.full(n_boot, np.nan)
    for b in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if y[i].any() and (~y[i]).any():
            vals[b] = binary_auc(y[i], p_fake[i])
    return percentile_interval(vals)


def _pct(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.1f}"


def _rate(k: int, n: int) -> str:
    if not n:
        return "n/a"
    lo, hi = wilson(k, n)
    return f"{100 * k / n:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] ({k}/{n})"


def _count(rate, n: int) -> int:
    return int(round(rate * n)) if rate is not None and math.isfinite(rate) else 0


def _headline(e: EvalFigures, n_boot: int) -> dict[str, str]:
    m = e.metrics
    n_real, n = m.get("n_real", 0), m.get("n_test", 0)
    n_fake = n - n_real
    gen_n = sum(r["n"] for r in m.get("per_generator", {}).values() if r.get("seen"))
    auc = m.get("detection_auc")
    auc_cell = _pct(auc)
    if e.classes is not None and auc is not None:
        lo, hi = auc_interval(e.classes, e.p_fake, n_boot)
        auc_cell += f" [{_pct(lo)}, {_pct(hi)}]"
    auc_cell += f" (n = {n_real} real + {n_fake} fake)" + ("" if e.classes is not None else ", no interval: "
                                                                                        "no predictions.npz")
    unc = m.get("uncertain")
    return {
        "attribution ACC, seen classes (real included)": _rate(_count(m.get("attribution_acc_seen"), m.get("n_seen", 0)),
                                                               m.get("n_seen", 0)),
        "attribution ACC, seen generators": _rate(_count(m.get("attribution_acc_seen_generators"), gen_n), gen_n),
        "detection AUC, all fakes vs real": auc_cell,
        "FPR on real faces @ shipped threshold": _rate(_count(m.get("fpr_real_at_threshold"), n_real), n_real),
        "TPR on all fakes @ shipped threshold": _rate(_count(m.get("tpr_fake_at_threshold"), n_fake), n_fake),
        "uncertain rate (all test images)": (_rate(int(unc["uncertain"]), int(unc["n"])) if isinstance(unc, dict)
                                             else "not in metrics.json (needs the `uncertain` verdict)"),
        "shipped detection threshold (p_fake >=)": "n/a" if m.get("detection_threshold") is None
        else f"{m['detection_threshold']:.3f}",
    }


def _per_class_rows(evals: list[EvalFigures]) -> list[str]:
    """Per class: the share called fake at the shipped threshold for every model (the real row is
    the FPR), the reference's AUC against the real faces, and its uncertain rate when measured."""
    ref = evals[0].metrics
    unc = ref["uncertain"].get("per_class") if isinstance(ref.get("uncertain"), dict) else None
    head = ["class", "seen", "n", *(f"called fake @thr, {e.name}" for e in evals), f"AUC vs real, {evals[0].name}"]
    head += [f"uncertain, {evals[0].name}"] if unc is not None else []

    def row(cells: list[str], c: str) -> str:
        u = (unc or {}).get(c)
        cells += [] if unc is None else [_rate(int(u["uncertain"]), int(u["n"])) if u else "n/a"]
        return "| " + " | ".join(cells) + " |"

    rows = ["| " + " | ".join(head) + " |", "| --- | --- |" + " ---: |" * (len(head) - 2)]
    rows.append(row(["real (FPR)", "yes", str(ref.get("n_real", 0)),
                     *(_rate(_count(e.metrics.get("fpr_real_at_threshold"), e.metrics.get("n_real", 0)),
                             e.metrics.get("n_real", 0)) for e in evals), ""], "real"))
    for g, r in sorted(ref.get("per_generator", {}).items(), key=lambda kv: (not kv[1].get("seen"), kv[0])):
        called = []
        for e in evals:
            o = e.metrics.get("per_generator", {}).get(g)
            called.append(_rate(_count(o["called_fake"], o["n"]), o["n"]) if o else "n/a")
        rows.append(row([g + (" (edits a real photo)" if g in EDIT_CLASSES else ""), "yes" if r.get("seen") else "no",
                         str(r["n"]), *called, _pct(r.get("detection_auc"))], g))
    return rows


def _robustness(path: str | Path | None) -> tuple[list[str], dict | None]:
    """The robustness table, and the first run's per-class called-fake share after JPEG 70."""
    if not path:
        return ["TODO: run `gazeclip robustness --run RUN --data DIR --out DIR` and pass --robustness DIR."], None
    path = Path(path)
    path = path / "robustness.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run `gazeclip robustness` first")
    res = json.loads(path.read_text())
    name, first = next(iter(res.items()))
    n = first.get("n_items", 0)
    rows = [f"Run `{name}`, n = {n} test items (stratified by class). ACC and AUC as above, without intervals "
            "(robustness.json keeps no per-item scores); FPR and TPR at the shipped threshold.", "",
            "| perturbation | level | ACC seen | detection AUC | FPR real @thr | TPR fake @thr |",
            "| --- | --- | ---: | ---: | ---: | ---: |"]
    jpeg70 = None
    for kind, pts in first.get("curves", {}).items():
        for p in pts:
            level = "clean" if p["severity"] == 0 else p["level"]
            n_real = p.get("n_real")
            if n_real is None:  # written before robustness.json kept the counts
                rates = [_pct(p.get("fpr_real_at_threshold")), _pct(p.get("tpr_fake_at_threshold"))]
            else:
                n_fake = p["n_test"] - n_real
                rates = [_rate(_count(p.get("fpr_real_at_threshold"), n_real), n_real),
                         _rate(_count(p.get("tpr_fake_at_threshold"), n_fake), n_fake)]
            rows.append(f"| {kind} | {level} | {_pct(p.get('attribution_acc_seen'))} | {_pct(p.get('detection_auc'))} "
                        f"| {rates[0]} | {rates[1]} |")
            if (kind, p.get("level")) == JPEG70:
                jpeg70 = p.get("called_fake")
    return rows, jpeg70


def _targets(e: EvalFigures, jpeg70: dict | None) -> list[str]:
    """Issue 19's acceptance targets, each met or missed with the measured figure."""
    m = e.metrics

    def verdict(ok: bool | None, text: str) -> str:
        return f"| {text} | {'not measured' if ok is None else 'met' if ok else '**missed**'} |"

    def measured(v, unit: str = " %") -> str:
        return "not measured" if v is None else f"measured {_pct(v)}{unit}"

    fpr, auc = m.get("fpr_real_at_threshold"), m.get("detection_auc")
    rows = ["| target (full test split, shipped threshold) | |", "| --- | --- |",
            verdict(None if fpr is None else fpr <= TARGETS["fpr_real"],
                    f"FPR on real faces <= {100 * TARGETS['fpr_real']:.0f} %: {measured(fpr)}"),
            verdict(None if auc is None else auc >= TARGETS["auc"],
                    f"detection AUC over all fakes >= {100 * TARGETS['auc']:.0f}: {measured(auc, '')}")]
    per = m.get("per_generator", {})
    for g in EDIT_CLASSES:
        clean = per.get(g, {}).get("called_fake")
        rows.append(verdict(None if clean is None else clean >= TARGETS["tpr_edit"],
                            f"{g} caught >= {100 * TARGETS['tpr_edit']:.0f} %, clean: {measured(clean)}"))
        after = (jpeg70 or {}).get(g)
        rows.append(verdict(None if after is None else after >= TARGETS["tpr_edit"],
                            f"{g} caught >= {100 * TARGETS['tpr_edit']:.0f} % after JPEG quality 70: {measured(after)}"
                            + ("" if jpeg70 else " (needs --robustness with jpeg)")))
    return rows


def figures_section(evals: list[tuple[str, str | Path]], robustness: str | Path | None = None,
                    n_boot: int = 1000) -> str:
    """The markdown between the card's markers. `evals`: (name, eval folder), the reference first."""
    figs = [load_eval(n, f) for n, f in evals]
    ref = figs[0].metrics
    heads = {e.name: _headline(e, n_boot) for e in figs}
    rob_rows, jpeg70 = _robustness(robustness)
    lines = [BEGIN, "",
             f"Measured by `gazeclip eval` on the test split of `{Path(str(ref.get('data', '?'))).name}` "
             f"(protocol {ref.get('protocol', '?')}; n = {ref.get('n_test')} test faces, {ref.get('n_real')} real), "
             f"run `{Path(str(ref.get('run', '?'))).name}` ({ref.get('model')}, {ref.get('backbone')}). "
             "Rates in %, [95 % interval] (count/n): Wilson intervals for rates, percentile bootstrap over test "
             f"items ({n_boot} resamples) for AUC.", "",
             "| figure | " + " | ".join(heads) + " |", "| --- |" + " ---: |" * len(heads)]
    for key in next(iter(heads.values())):
        lines.append(f"| {key} | " + " | ".join(h[key] for h in heads.values()) + " |")
    lines += ["", "### Per class", ""] + _per_class_rows(figs)
    lines += ["", "### Robustness (per perturbation)", ""] + rob_rows
    lines += ["", "### Targets", ""] + _targets(figs[0], jpeg70)
    lines += ["", END]
    return "\n".join(lines)


def replace_section(card: str, section: str, path: str | Path = "model card") -> str:
    """`card` with the text between its BEGIN and END markers replaced by `section`."""
    start, end = card.find(BEGIN), card.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{path}: no figures markers ({BEGIN!r} ... {END!r}); add them where the figures go")
    return card[:start] + section + card[end + len(END):]
