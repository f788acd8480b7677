"""The one bootstrap of evaluation: test items resampled with replacement, the same resamples for
every run that is compared (paired), 95% percentile intervals. `compare` and the experiment runner
both use it."""
from __future__ import annotations

import math
import warnings

import numpy as np

from .metrics import EvalData, compute_metrics
from ..errors import UsageError


def paired_resamples(n: int, n_boot: int, seed: int = 0) -> list[np.ndarray]:
    """`n_boot` index sets of n test items drawn with replacement: pass the same list to every run."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, n) for _ in range(n_boot)]


def check_same_test_items(paths_by_run: dict[str, np.ndarray], what: str) -> None:
    """Paired intervals need every run scored on the same items in the same order."""
    names = list(paths_by_run)
    ref = paths_by_run[names[0]]
    for name in names[1:]:
        paths = paths_by_run[name]
        if len(paths) != len(ref) or not np.array_equal(paths, ref):
            raise UsageError(f"{name}: evaluated on other test items than {names[0]}; {what}")


def bootstrap_values(d: EvalData, keys: list[str], n_boot: int = 1000, seed: int = 0,
                     idx_sets: list[np.ndarray] | None = None, base: dict | None = None) -> dict[str, np.ndarray]:
    """Each key's value on `n_boot` resamples of the test items (with replacement). Clustering is
    not refit: the full-test k-means assignments (oracle k and estimated k) are resampled with
    their items (cheap, and the spread then reflects sampling of items, not k-means restarts)."""

    base = base if base is not None else compute_metrics(d, seed=seed)
    assign_full, assign_est, k_est = base.get("_cluster_assign"), base.get("_cluster_assign_estk"), base.get("_k_est")
    cls = np.array(d.classes)
    unseen_pos = np.cumsum(np.isin(cls, d.unseen)) - 1
    rng = np.random.default_rng(seed)
    vals = {k: np.full(n_boot, np.nan) for k in keys}
    for b in range(n_boot):
        idx = idx_sets[b] if idx_sets is not None else rng.integers(0, len(cls), len(cls))
        sel = unseen_pos[idx[np.isin(cls[idx], d.unseen)]]
        ca = assign_full[sel] if assign_full is not None else None
        ce = assign_est[sel] if assign_est is not None else None
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mb = compute_metrics(d.subset(idx), cluster_assign=ca, cluster_assign_estk=ce, k_est=k_est or 0)
        for k in keys:
            v = mb.get(k, math.nan)
            vals[k][b] = v if isinstance(v, (int, float)) else math.nan
    return vals


def percentile_interval(v: np.ndarray) -> tuple[float, float]:
    v = np.asarray(v, dtype=np.float64)
    if not np.isfinite(v).any():
        return math.nan, math.nan
    return float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))


def bootstrap(d: EvalData, keys: list[str], n_boot: int = 1000, seed: int = 0,
              idx_sets: list[np.ndarray] | None = None) -> dict[str, tuple[float, float]]:
    """95% percentile intervals over test items resampled with replacement (see bootstrap_values)."""
    vals = bootstrap_values(d, keys, n_boot, seed, idx_sets)
    return {k: percentile_interval(v) for k, v in vals.items()}


def paired_difference(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[list[float], float]:
    """Bootstrap distribution of mean(a_i - b_i) over paired runs (e.g. seeds): its 95% interval and
    the share of resamples where the difference is <= 0."""
    dist = np.mean([x - y for x, y in zip(a, b)], axis=0)
    fin = dist[np.isfinite(dist)]
    return list(percentile_interval(fin)), float((fin <= 0).mean()) if fin.size else math.nan
