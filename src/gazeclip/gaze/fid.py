"""Gaze statistics (the paper's Figure 1): Fréchet distance between the gaze distribution of
real faces and that of each generator, with bootstrap confidence intervals."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import linalg

from ..atomic import atomic_path
from ..errors import UsageError


def frechet_distance(x: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> float:
    """||mu_x - mu_y||^2 + Tr(S_x + S_y - 2 (S_x S_y)^(1/2)) of two (N, D) samples."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    if len(x) < 2 or len(y) < 2:
        raise UsageError("the Fréchet distance needs at least 2 samples on each side")
    mu1, mu2 = x.mean(0), y.mean(0)
    s1 = np.atleast_2d(np.cov(x, rowvar=False))
    s2 = np.atleast_2d(np.cov(y, rowvar=False))
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # near-singular product: regularise (as pytorch-fid does)
        off = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean), 0.0))


@dataclass
class FIDResult:
    cls: str
    n: int
    fid: float
    ci_low: float
    ci_high: float
    bootstrap: int


def bootstrap_fid(real: np.ndarray, fake: np.ndarray, n_boot: int = 200, ci: float = 0.95,
                  seed: int = 0) -> tuple[float, float, float]:
    """The distance and a percentile bootstrap interval (both sets resampled with replacement)."""
    fid = frechet_distance(real, fake)
    if n_boot <= 0:
        return fid, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        a = real[rng.integers(0, len(real), len(real))]
        b = fake[rng.integers(0, len(fake), len(fake))]
        vals.append(frechet_distance(a, b))
    lo, hi = np.percentile(vals, [(1 - ci) / 2 * 100, (1 + ci) / 2 * 100])
    return fid, float(lo), float(hi)


def pca_project(features: dict[str, np.ndarray], dims: int) -> dict[str, np.ndarray]:
    """Project every class's features on the top `dims` principal axes of all of them pooled."""
    allf = np.concatenate([f for f in features.values() if len(f)], 0).astype(np.float64)
    mean = allf.mean(0)
    k = min(dims, allf.shape[1], max(1, allf.shape[0] - 1))
    _, _, vt = np.linalg.svd(allf - mean, full_matrices=False)
    basis = vt[:k].T
    return {c: (np.asarray(f, np.float64) - mean) @ basis if len(f) else f for c, f in features.items()}


@dataclass
class GazeFIDReport:
    real: str
    n_real: int
    estimator: str
    feature_dims: int
    bootstrap: int
    vector: list[FIDResult] = field(default_factory=list)
    features: list[FIDResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    no_face: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def gaze_fid(vectors: dict[str, np.ndarray], features: dict[str, np.ndarray], real: str = "real",
             n_boot: int = 200, feature_dims: int = 64, seed: int = 0, estimator: str = "") -> GazeFIDReport:
    """FID of each class against `real`, on 3-D gaze vectors and on (PCA-reduced) features."""
    if real not in vectors or len(vectors[real]) < 2:
        raise UsageError(f"need at least 2 faces of the real class {real!r}; found {len(vectors.get(real, []))}")
    # design choice, not from the paper: features are PCA-reduced (default 64 dims) so that the
    # covariances are estimable from a few hundred faces and the bootstrap stays fast
    feats = pca_project(features, feature_dims) if feature_dims > 0 else features
    rep = GazeFIDReport(real=real, n_real=len(vectors[real]), estimator=estimator,
                        feature_dims=int(next(iter(feats.values())).shape[1]) if feats else 0, bootstrap=n_boot)
    for k, cls in enumerate(sorted(c for c in vectors if c != real)):
        n = len(vectors[cls])
        if n < 2:
            rep.skipped[cls] = f"only {n} face(s) with gaze; need 2"
            continue
        for target, data in ((rep.vector, vectors), (rep.features, feats)):
            fid, lo, hi = bootstrap_fid(data[real], data[cls], n_boot, seed=seed + k)
            target.append(FIDResult(cls=cls, n=n, fid=fid, ci_low=lo, ci_high=hi, bootstrap=n_boot))
    return rep


def plot_report(rep: GazeFIDReport, path) -> None:
    """Bar chart (two panels: gaze vectors, features) with bootstrap intervals; atomic write."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, axes = plt.subplots(1, 2, figsize=(max(6, 1.2 + 0.6 * max(1, len(rep.vector))) * 2, 4.2))
    for ax, rows, title in ((axes[0], rep.vector, "3-D gaze vectors"),
                            (axes[1], rep.features, f"estimator features (PCA {rep.feature_dims})")):
        names = [r.cls for r in rows]
        vals = np.array([r.fid for r in rows])
        err = np.array([[max(r.fid - r.ci_low, 0), max(r.ci_high - r.fid, 0)] for r in rows]).T if rows else None
        if rows and np.isfinite(err).all():
            ax.bar(names, vals, yerr=err, capsize=3, color="tab:blue")
        else:
            ax.bar(names, vals, color="tab:blue")
        ax.set_title(f"Gaze FID vs {rep.real!r} (n_real={rep.n_real}): {title}", fontsize=9)
        ax.set_ylabel("Fréchet distance")
        ax.tick_params(axis="x", rotation=45, labelsize=8)
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
