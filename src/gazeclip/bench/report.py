"""README-ready tables and sample grids of a built benchmark."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

from gazeclip.data.manifest import REAL, read_manifest
from gazeclip.faces.io import load_image


def write_grids(data_dir: Path, out_dir: Path, n: int = 8, thumb: int = 96, include_real: bool = False) -> list[Path]:
    """One grid per class (`bench-<class>.jpg`, its first n images in a row) and an overview
    (`bench-overview.jpg`, one row per class). JPEG (quality 90) keeps the docs small; these are
    illustrations, not benchmark data. By default only fully synthetic classes are drawn: real
    photos and every image made from them (rows naming a real identity) are left out, because
    the real-face packages' photos must never be committed or redistributed."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows_all = read_manifest(data_dir)
    from_real = {r.cls for r in rows_all if r.cls == REAL or r.identity}
    by_cls: dict[str, list[str]] = defaultdict(list)
    for r in rows_all:
        if include_real or r.cls not in from_real:
            by_cls[r.cls].append(r.path)
    rows, written = [], []
    for cls, paths in by_cls.items():
        ims = [cv2.resize(load_image(data_dir / p)[:, :, ::-1], (thumb, thumb), interpolation=cv2.INTER_AREA)
               for p in sorted(paths)[:n]]
        ims += [np.full((thumb, thumb, 3), 255, np.uint8)] * (n - len(ims))
        row = np.concatenate(ims, 1)
        label = np.full((thumb, 150, 3), 255, np.uint8)
        cv2.putText(label, cls, (4, thumb // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([label, row], 1))
        p = out_dir / f"bench-{cls}.jpg"
        cv2.imwrite(str(p), row, [cv2.IMWRITE_JPEG_QUALITY, 90])
        written.append(p)
    p = out_dir / "bench-overview.jpg"
    cv2.imwrite(str(p), np.concatenate(rows, 0), [cv2.IMWRITE_JPEG_QUALITY, 90])
    written.append(p)
    return written


def counts_table(data_dir: Path) -> str:
    rows = read_manifest(data_dir)
    c = Counter((r.cls, r.split) for r in rows)
    classes = list(dict.fromkeys(r.cls for r in rows))
    fam = {r.cls: r.family for r in rows}
    lines = ["| class | family | train | val | test | total |", "|---|---|---:|---:|---:|---:|"]
    for cls in classes:
        t = [c[(cls, s)] for s in ("train", "val", "test")]
        lines.append(f"| {cls} | {fam[cls]} | {t[0]} | {t[1]} | {t[2]} | {sum(t)} |")
    tot = [sum(c[(k, s)] for k in classes) for s in ("train", "val", "test")]
    lines.append(f"| **all** | | {tot[0]} | {tot[1]} | {tot[2]} | {sum(tot)} |")
    return "\n".join(lines)


def generator_table() -> str:
    from .forgers import REGISTRY
    from .train import checkpoint_path

    lines = ["| generator | family | forgery type | how it is made | training CPU min | checkpoint | licence |",
             "|---|---|---|---|---:|---:|---|"]
    for name, cls in REGISTRY.items():
        i = cls.info
        mins, size = "pretrained" if not i.trained_here else "", "-"
        if i.trained_here:
            p = checkpoint_path(name)
            if p.is_file():
                from safetensors import safe_open

                with safe_open(str(p), "pt") as fh:
                    meta = json.loads((fh.metadata() or {}).get("gazeclip", "{}"))
                mins = f"{meta.get('cpu_minutes', '?')} ({meta.get('steps_done', '?')} steps)"
                size = f"{p.stat().st_size / 1e6:.1f} MB"
            else:
                mins = "not trained"
        elif i.family in ("identity-swap", "manipulation", "morph"):
            mins = "none (algorithm)"
        lines.append(f"| {name} | {i.family} | {i.forgery_type} | {i.how} | {mins} | {size} | {i.licence} |")
    return "\n".join(lines)


def real_table(data_dir: Path) -> str:
    """Real faces of a build by source set: photos and distinct people per split, and their rights."""
    rows = [r for r in read_manifest(data_dir) if r.cls == REAL]
    by: dict[str, list] = defaultdict(list)
    for r in rows:
        by[r.source.split(":")[0]].append(r)
    lines = ["| source package | photos | people | train (people) | val (people) | test (people) | rights |",
             "|---|---:|---:|---:|---:|---:|---|"]

    def cell(rs, split):
        sel = [r for r in rs if r.split == split]
        return f"{len(sel)} ({len({r.identity for r in sel})})"

    for src in sorted(by, key=lambda k: -len(by[k])):
        rs = by[src]
        rights = "; ".join(sorted({r.licence for r in rs}))
        lines.append(f"| `{src}` | {len(rs)} | {len({r.identity for r in rs})} | {cell(rs, 'train')} | "
                     f"{cell(rs, 'val')} | {cell(rs, 'test')} | {rights} |")
    lines.append(f"| **all** | {len(rows)} | {len({r.identity for r in rows})} | {cell(rows, 'train')} | "
                 f"{cell(rows, 'val')} | {cell(rows, 'test')} | |")
    return "\n".join(lines)


def identity_summary(data_dir: Path) -> str:
    """One line: people on two sides of the split (counting the manipulations made from them)."""
    from .checks import identities_across_splits

    rows = read_manifest(data_dir)
    bad = identities_across_splits(rows)
    made = [r for r in rows if r.cls != REAL and r.identity]
    return (f"Real people on two sides of the split (real photos and the {len(made)} manipulations made "
            f"from them): {len(bad)}" + (f" ({', '.join(sorted(bad)[:5])})" if bad else ""))


def checks_report(data_dir: Path) -> str:
    """Format-level shortcut (the asserted test), pixel statistics per class (reported), near-duplicates."""
    from .checks import NEAR_DUP_CORR, near_duplicates, pixel_stats_report, shortcut_report

    sc = shortcut_report(data_dir)
    px = pixel_stats_report(data_dir)
    nd = near_duplicates(data_dir)
    return "\n".join([
        "Format-level shortcut: " + sc.summary(), "",
        f"Pixel statistics (blur / high-frequency energy; random forest, 5-fold CV, balanced accuracy "
        f"mean ± sd over 5 folds, n = {px.n}): real vs fake {px.real_fake_balanced_acc:.2f} ± {px.real_fake_sd:.2f}, "
        f"all {len(px.per_class)} classes {px.class_balanced_acc:.2f} ± {px.class_sd:.2f} (chance "
        f"{px.class_chance:.2f}); per class, that class vs real:", "",
        px.table(), "",
        f"Near-duplicates between train and test (32x32 thumbnails correlating >= {NEAR_DUP_CORR}): {len(nd)}"])


def full_report(data_dir: Path, checks: bool = False) -> str:
    data_dir = Path(data_dir)
    parts = ["## Generators", generator_table(), "", "## Real faces", real_table(data_dir), "",
             identity_summary(data_dir), "", "## Counts", counts_table(data_dir)]
    info = data_dir / "build_info.json"
    if info.is_file():
        rep = json.loads(info.read_text())["report"]
        parts += ["", f"Build time: {rep['total_seconds'] / 60:.1f} min (preset {rep['preset']}, seed {rep['seed']}); "
                  "per class (s): " + ", ".join(f"{k} {v}" for k, v in rep["seconds"].items()),
                  "Face found by the canonical crop (share): " +
                  ", ".join(f"{k} {v:.2f}" for k, v in rep["face_found"].items())]
        if rep.get("skipped"):
            parts += [f"Real photos left out ({len(rep['skipped'])}): " + "; ".join(rep["skipped"].values())]
    if checks:
        parts += ["", "## Checks", checks_report(data_dir)]
    return "\n".join(parts)


__all__ = ["write_grids", "counts_table", "generator_table", "real_table", "identity_summary", "checks_report",
           "full_report", "REAL"]
