"""`gazeclip tsne --run RUN --data DIR --out PNG`: t-SNE of the joint image embeddings of the test
split, coloured by generator; seen classes as dots, unseen generators as triangles, real as squares
(the paper's Figure 7)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder written by `gazeclip train`")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--protocol", help="protocol (default: the run's)")
    p.add_argument("--perplexity", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")


def tsne_png(emb: np.ndarray, classes: list[str], seen: set[str], out, perplexity: float = 30.0, seed: int = 0,
             title: str = "") -> np.ndarray:
    from sklearn.manifold import TSNE

    from .plots import _plt, save_fig

    n = len(classes)
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 items, got {n}")
    x = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    xy = TSNE(n_components=2, perplexity=min(perplexity, (n - 1) / 3), init="pca", random_state=seed).fit_transform(
        x.astype(np.float64))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 6))
    names = sorted(set(classes), key=lambda c: (c != "real", c not in seen, c))
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    cls = np.array(classes)
    for i, c in enumerate(names):
        m = cls == c
        marker = "s" if c == "real" else ("o" if c in seen else "^")
        label = c if c == "real" else f"{c} ({'seen' if c in seen else 'unseen'})"
        ax.scatter(xy[m, 0], xy[m, 1], s=18 if marker == "o" else 26, marker=marker, color=cmap(i % cmap.N),
                   label=label, alpha=0.8, edgecolors="k" if c not in seen and c != "real" else "none",
                   linewidths=0.4)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), title="o seen, ^ unseen, s real")
    ax.set_title(title or "t-SNE of joint embeddings")
    save_fig(fig, out)
    return xy


def run(args: argparse.Namespace) -> int:
    from ..evaluation.compare import run_eval_data

    d, meta, _ = run_eval_data(Path(args.run), Path(args.data), args.protocol, args.device, not args.quiet)
    tsne_png(d.embedding, d.classes, set(d.train_classes), args.out, args.perplexity, args.seed,
             title=f"{Path(args.run).name}: {meta.get('model')} on {meta.get('protocol')} test "
                   f"(n = {len(d.classes)})")
    print(f"wrote {args.out}")
    return 0
