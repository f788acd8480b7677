"""Is gaze worth it on this data? Simple probes answer before any GPU-day is spent on GazeCLIP.

Per face (the best face of each image, as training uses it) the probe gathers, from the frozen
networks only:
- `gaze`: 10 numbers: the estimator's gaze pitch/yaw (normalised frame), the 3-D gaze vector
  (camera frame), the head pitch/yaw/roll, and gaze minus head (camera-frame pitch/yaw of the
  gaze vector minus those of the head);
- `features`: the estimator's 512-d penultimate features (what GazeCLIP's VPE consumes);
- `clip`: the frozen CLIP image embedding of the face crop (L2-normalised, as clip-linear-probe);
- gaze-consistency cues (`cues=True`): `head` the 3-D angle between gaze and head direction,
  `flip` the estimator's disagreement with itself on the mirrored face (yaw mirrored back),
  `shift` its instability under small shifts and a small zoom of the normalised face.

A feature set is `+`-joined blocks ("clip+gaze"). Each set gets two scikit-learn logistic
regressions (standardised; C chosen by stratified CV on the train split only, or fixed): a binary
real-vs-fake detector and a multinomial attributor over the protocol's train classes. Both are
trained on the train split and read once on the evaluation split (test by default). Per class:
detection AUC against real, attribution ACC (seen classes), 95% percentile bootstrap intervals
over the evaluation items; and for every set whose prefix set is also probed ("clip+gaze" and
"clip"), the paired gain of its last block over the same resamples.

Faces, gaze, CLIP embeddings and the cue passes are cached (the face/gaze cache of
`gazeclip.gaze.cache` under DATA/.cache/faces, the rest in `FeatureCache`s under
DATA/.cache/features), so a second run only refits the probes.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.manifest import REAL, ManifestRow, load_protocol, read_manifest, select_rows
from .bootstrap import paired_resamples, percentile_interval
from .metrics import binary_auc
from ..errors import UsageError

BLOCKS = ("gaze", "features", "clip", "head", "flip", "shift")
DEFAULT_SETS = ("gaze", "gaze+features", "clip", "clip+gaze", "clip+gaze+features")
CUE_SETS = ("gaze+head", "gaze+flip", "gaze+shift", "clip+gaze+head", "clip+gaze+flip", "clip+gaze+shift")
# design choice, not from the paper: the C grid of the probes' cross-validation (inverse L2 strength)
C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
# design choice, not from the paper: shifts of the 224-px normalised face, in pixels (about 3.6 %)
SHIFT_PX = 8
CUE_VARIANTS = ("flip", "left", "right", "up", "down", "zoom")  # the estimator passes per face


@dataclass
class ProbeItems:
    """One row per image with a face and gaze, of the train and evaluation splits."""

    paths: list[str]
    classes: list[str]
    splits: list[str]
    gaze_pitchyaw: np.ndarray    # (N, 2) radians, normalised frame
    gaze_vector: np.ndarray      # (N, 3) camera frame
    head: np.ndarray             # (N, 3) head pitch, yaw, roll, radians (zeros without a head pose)
    gaze_features: np.ndarray    # (N, D)
    clip: np.ndarray             # (N, E) frozen CLIP image embedding
    variants: np.ndarray | None = None  # (N, len(CUE_VARIANTS), 2) pitch/yaw of the cue passes (flip mirrored back)
    no_gaze: dict[str, int] = field(default_factory=dict)  # images without a face/gaze, per "split/class"

    def __len__(self) -> int:
        return len(self.paths)


def _dirs(pitchyaw: np.ndarray) -> np.ndarray:
    """(..., 2) pitch/yaw -> (..., 3) unit directions (gazeclip.faces.geometry's convention)."""
    p, y = pitchyaw[..., 0], pitchyaw[..., 1]
    return np.stack([-np.cos(p) * np.sin(y), -np.sin(p), -np.cos(p) * np.cos(y)], -1)


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (radians) between unit vectors along the last axis."""
    return np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0))


def feature_blocks(it: ProbeItems) -> dict[str, np.ndarray]:
    """Each block's (N, d) matrix; the cue blocks only when the cue passes were run."""
    v = it.gaze_vector / np.maximum(np.linalg.norm(it.gaze_vector, axis=1, keepdims=True), 1e-12)
    cam = np.stack([np.arcsin(np.clip(-v[:, 1], -1, 1)), np.arctan2(-v[:, 0], -v[:, 2])], 1)
    clip = it.clip / np.maximum(np.linalg.norm(it.clip, axis=1, keepdims=True), 1e-12)
    out = {"gaze": np.concatenate([it.gaze_pitchyaw, v, it.head, cam - it.head[:, :2]], 1),
           "features": it.gaze_features, "clip": clip}
    out["head"] = _angle(v, _dirs(it.head[:, :2]))[:, None]
    if it.variants is not None:
        ref = it.gaze_pitchyaw
        flip = it.variants[:, 0]
        out["flip"] = np.concatenate([flip - ref, _angle(_dirs(flip), _dirs(ref))[:, None]], 1)
        moved = it.variants[:, 1:]
        out["shift"] = np.concatenate([moved.std(1), _angle(_dirs(moved), _dirs(ref)[:, None]).mean(1)[:, None]], 1)
    return out


def parse_sets(sets: Sequence[str]) -> list[tuple[str, ...]]:
    out = []
    for s in sets:
        blocks = tuple(b.strip() for b in s.split("+") if b.strip())
        bad = [b for b in blocks if b not in BLOCKS]
        if not blocks or bad:
            raise UsageError(f"feature set {s!r}: blocks are {', '.join(BLOCKS)} joined by '+' (e.g. clip+gaze)")
        out.append(blocks)
    return out


# ---------------------------------------------------------------- collecting the items
def _cue_variants(estimator, norm_faces: np.ndarray, shift: int) -> np.ndarray:
    """(n, 224, 224, 3) normalised faces -> (n, len(CUE_VARIANTS), 2) pitch/yaw, the flip's yaw negated
    back (mirroring a face mirrors its yaw; pitch is unchanged)."""
    import cv2

    n, h, w = norm_faces.shape[:3]
    pad = np.pad(norm_faces, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
    s = shift
    zoom = np.stack([cv2.resize(np.ascontiguousarray(f[s:h - s, s:w - s]), (w, h), interpolation=cv2.INTER_AREA)
                     for f in norm_faces])
    views = [norm_faces[:, :, ::-1], pad[:, s:s + h, 2 * s:], pad[:, s:s + h, :w],  # content moved left / right
             pad[:, 2 * s:, s:s + w], pad[:, :h, s:s + w], zoom]                  # up / down, zoom in
    out = np.zeros((n, len(views), 2), np.float32)
    for j, view in enumerate(views):
        py, _ = estimator.forward_crops(estimator.preprocess(np.ascontiguousarray(view)))
        out[:, j] = py
    out[:, 0, 1] *= -1
    return out


def collect_items(data_dir: str | Path, protocol: str = "P2", split: str = "test", backbone: str = "clip-b16-offline",
                  clip: str | None = None, estimator: str = "ethxgaze-r18", cues: bool = False,
                  face_cache_dir: str | Path | None = None, feature_cache_dir: str | Path | None = None,
                  batch_size: int = 32, progress: bool = False) -> tuple[ProbeItems, list[str], list[str]]:
    """The probe's items of the protocol's train split and `split`, with (train classes, unseen)."""
    import torch

    from ..data.dataset import FaceGazeSource, best_face_index, build_taxonomy, crop_key, face_arrays
    from ..data.feature_cache import FeatureCache
    from ..gaze.cache import config_hash
    from ..models import create_model
    from ..run.modeling import prefix_id

    data_dir = Path(data_dir)
    rows = read_manifest(data_dir)
    proto = load_protocol(data_dir, protocol, rows)
    if split not in ("val", "test"):
        raise UsageError(f"evaluation split {split!r}: use val or test (the probes train on train)")
    sel: list[ManifestRow] = select_rows(rows, proto, "train") + select_rows(rows, proto, split)
    if not any(r.split == "train" for r in sel) or not any(r.split == split for r in sel):
        raise UsageError(f"{data_dir}/manifest.csv: protocol {proto.name} needs train and {split} rows")
    taxonomy = build_taxonomy(rows, proto)
    encoder = create_model("clip-linear-probe", backbone=backbone, taxonomy=taxonomy, clip=clip).eval()
    size = encoder.preprocess.size
    source = FaceGazeSource("detect", estimator, face_cache_dir or data_dir / ".cache" / "faces")
    fdir = Path(feature_cache_dir) if feature_cache_dir else data_dir / ".cache" / "features"
    emb_cache = FeatureCache(fdir, f"{prefix_id(encoder)}-image-embeds", "float32")
    cue_cache = FeatureCache(fdir, f"gaze-cues-v1-{config_hash(source.estimator.config())}-s{SHIFT_PX}",
                             "float32") if cues else None

    keep: list[int] = []
    cols: dict[str, list] = {k: [] for k in ("py", "vec", "head", "feat", "clip", "var")}
    no_gaze: dict[str, int] = {}
    chunk: list[tuple[int, np.ndarray, np.ndarray]] = []  # (row index, CLIP crop, normalised face)

    def flush() -> None:
        if not chunk:
            return
        crops = np.stack([c for _, c, _ in chunk])
        keys = [crop_key(c) for c in crops]
        with torch.no_grad():
            emb_cache.fill(keys, lambda idx: encoder.preprocess(crops[idx]),
                           lambda x: encoder.gie(encoder.gie.encode_prefix(x))[0][:, None], batch_size)
        cols["clip"] += [emb_cache.get(k).numpy()[0] for k in keys]
        if cue_cache is not None:
            faces = np.stack([f for _, _, f in chunk])
            fkeys = [crop_key(f) for f in faces]
            cue_cache.fill(fkeys, lambda idx: faces[idx],
                           lambda x: torch.from_numpy(_cue_variants(source.estimator, x, SHIFT_PX)), batch_size)
            cols["var"] += [cue_cache.get(k).numpy() for k in fkeys]
        chunk.clear()

    paths = [str(data_dir / r.path) for r in sel]
    for i, (r, res) in enumerate(zip(sel, source.iter(paths, progress=progress))):
        fg = res.faces[best_face_index(res.faces)] if (not res.error and res.faces) else None
        if fg is None or fg.gaze is None or fg.face.norm_face is None:
            key = f"{r.split}/{r.cls}"
            no_gaze[key] = no_gaze.get(key, 0) + 1
            continue
        crop, vec, py, feat = face_arrays(fg, size, source.gaze_dim)[:4]
        h = fg.face.head
        keep.append(i)
        cols["py"].append(py)
        cols["vec"].append(vec)
        cols["head"].append(np.zeros(3, np.float32) if h is None else np.array([h.pitch, h.yaw, h.roll], np.float32))
        cols["feat"].append(feat)
        chunk.append((i, crop, fg.face.norm_face))
        if len(chunk) >= 4 * batch_size:
            flush()
    flush()
    if not keep:
        raise UsageError(f"{data_dir}: no face with gaze found in protocol {proto.name}'s train/{split} images")
    items = ProbeItems([sel[i].path for i in keep], [sel[i].cls for i in keep], [sel[i].split for i in keep],
                       np.stack(cols["py"]), np.stack(cols["vec"]), np.stack(cols["head"]), np.stack(cols["feat"]),
                       np.stack(cols["clip"]), np.stack(cols["var"]) if cues else None, no_gaze)
    return items, list(taxonomy.classes), list(proto.unseen)


# ---------------------------------------------------------------- the probes
def _fit(x: np.ndarray, y: np.ndarray, c: float | None, scoring: str, seed: int):
    """Standardise + logistic regression; C by stratified CV on (x, y) when `c` is None.
    Returns (fitted pipeline, chosen C)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0 if c is None else c, max_iter=2000))
    folds = min(5, int(np.bincount(np.unique(y, return_inverse=True)[1]).min()))
    if c is not None or folds < 2:
        return pipe.fit(x, y), (1.0 if c is None else c)
    grid = GridSearchCV(pipe, {"logisticregression__C": list(C_GRID)}, scoring=scoring,
                        cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    with warnings.catch_warnings():  # lbfgs at the weakest penalties may stop early: a probe, not a model
        warnings.simplefilter("ignore")
        grid.fit(x, y)
    return grid.best_estimator_, float(grid.best_params_["logisticregression__C"])


@dataclass
class SetScores:
    """One feature set's outputs on the evaluation items."""

    name: str
    p_fake: np.ndarray     # (n,) binary probe
    pred: np.ndarray       # (n,) index into train_classes (multinomial probe)
    c_detect: float
    c_attrib: float


def fit_sets(items: ProbeItems, train_classes: list[str], sets: Sequence[str], split: str = "test",
             c: float | None = None, seed: int = 0) -> tuple[list[SetScores], np.ndarray]:
    """Train both probes of every set on the train items; scores on the `split` items (and their index)."""
    blocks = feature_blocks(items)
    split_of = np.array(items.splits)
    tr, ev = np.flatnonzero(split_of == "train"), np.flatnonzero(split_of == split)
    cls = np.array(items.classes)
    cidx = {k: i for i, k in enumerate(train_classes)}
    y_attr = np.array([cidx[k] for k in cls[tr]])
    y_fake = (cls[tr] != REAL).astype(int)
    out = []
    for name, parts in zip(sets, parse_sets(sets)):
        missing = [b for b in parts if b not in blocks]
        if missing:
            raise UsageError(f"feature set {name!r} needs {missing}: run the probe with cues (--cues)")
        x = np.concatenate([blocks[b] for b in parts], 1).astype(np.float64)
        det, cd = _fit(x[tr], y_fake, c, "roc_auc", seed)
        att, ca = _fit(x[tr], y_attr, c, "accuracy", seed)
        p_fake = det.predict_proba(x[ev])[:, list(det.classes_).index(1)]
        pred = np.asarray(att.classes_)[att.predict_proba(x[ev]).argmax(1)]
        out.append(SetScores(name, p_fake, pred, cd, ca))
    return out, ev


def _stats(cls: np.ndarray, s: SetScores, fakes: list[str], seen: list[str], cidx: dict[str, int]) -> dict[str, float]:
    """Per-class AUC vs real (`auc/<g>`, `auc/all`), ACC (`acc/<c>`, `acc/seen`, `acc/seen_generators`)."""
    real = cls == REAL
    out = {f"auc/{g}": binary_auc((cls == g)[real | (cls == g)], s.p_fake[real | (cls == g)]) for g in fakes}
    out["auc/all"] = binary_auc(~real, s.p_fake)
    y = np.array([cidx.get(k, -1) for k in cls])
    ok = s.pred == y
    for k in seen:
        m = cls == k
        out[f"acc/{k}"] = float(ok[m].mean()) if m.any() else math.nan
    m = y >= 0
    out["acc/seen"] = float(ok[m].mean()) if m.any() else math.nan
    m = (y >= 0) & ~real
    out["acc/seen_generators"] = float(ok[m].mean()) if m.any() else math.nan
    return out


def gain_pairs(sets: Sequence[str]) -> list[tuple[str, str]]:
    """(set, its prefix set) for every probed set whose blocks minus the last one are also probed."""
    names = {"+".join(p): s for s, p in zip(sets, parse_sets(sets))}
    return [(s, names["+".join(p[:-1])]) for s, p in zip(sets, parse_sets(sets))
            if len(p) > 1 and "+".join(p[:-1]) in names]


def probe_report(items: ProbeItems, train_classes: list[str], unseen: list[str], sets: Sequence[str] = DEFAULT_SETS,
                 split: str = "test", c: float | None = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Fit every set, score it on `split`, bootstrap the per-class figures and the paired gains."""
    scores, ev = fit_sets(items, train_classes, sets, split, c, seed)
    cls = np.array(items.classes)[ev]
    fakes = sorted(set(cls) - {REAL}, key=lambda g: (g in unseen, g))
    seen = [k for k in train_classes if (cls == k).any()]
    cidx = {k: i for i, k in enumerate(train_classes)}
    point = {s.name: _stats(cls, s, fakes, seen, cidx) for s in scores}
    keys = list(next(iter(point.values())))
    boot = {s.name: {k: np.full(n_boot, np.nan) for k in keys} for s in scores}
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b, idx in enumerate(paired_resamples(len(cls), n_boot, seed)):  # paired: one resample for all sets
            sub = cls[idx]
            for s in scores:
                st = _stats(sub, SetScores(s.name, s.p_fake[idx], s.pred[idx], 0, 0), fakes, seen, cidx)
                for k in keys:
                    boot[s.name][k][b] = st[k]
    ci = lambda v: list(percentile_interval(v))  # noqa: E731
    n_eval = {k: int((cls == k).sum()) for k in [REAL, *fakes]}
    n_train = {k: int(((np.array(items.splits) == "train") & (np.array(items.classes) == k)).sum())
               for k in train_classes}
    rep: dict = {"protocol": None, "split": split, "train_classes": train_classes, "unseen": unseen,
                 "fakes": fakes, "n_eval": n_eval, "n_train": n_train, "no_gaze": items.no_gaze,
                 "n_boot": n_boot, "seed": seed, "c_grid": None if c is not None else list(C_GRID), "sets": {},
                 "gains": []}
    for s in scores:
        rep["sets"][s.name] = {"c_detect": s.c_detect, "c_attrib": s.c_attrib,
                               **{k: {"value": point[s.name][k], "ci": ci(boot[s.name][k])} for k in keys}}
    for a, b in gain_pairs(sets):
        rep["gains"].append({"set": a, "base": b, **{
            k: {"value": point[a][k] - point[b][k], "ci": ci(boot[a][k] - boot[b][k])} for k in keys}})
    return rep


# ---------------------------------------------------------------- report
def _pct(v) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.1f}"


def _cell(d: dict, signed: bool = False) -> str:
    v, (lo, hi) = d["value"], d["ci"]
    if v is None or not math.isfinite(v):
        return "n/a"
    f = (lambda x: f"{100 * x:+.1f}") if signed else (lambda x: f"{100 * x:.1f}")
    return f"{f(v)} [{f(lo)}, {f(hi)}]" if lo is not None and math.isfinite(lo) else f(v)


def probe_markdown(rep: dict) -> str:
    sets = list(rep["sets"])
    head = "| class | n | " + " | ".join(f"`{s}`" for s in sets) + " |"
    rule = "| --- | ---: | " + " | ".join("---:" for _ in sets) + " |"
    tag = lambda g: f"{g} (unseen)" if g in rep["unseen"] else g  # noqa: E731
    lines = [f"# Gaze information probe: protocol {rep['protocol']}, read on {rep['split']}", "",
             f"Logistic-regression probes (standardised; C by {'stratified CV on the train split' if rep['c_grid'] else 'hand'}) "
             f"trained on the train split, read once on the {rep['split']} split; in %, with 95% bootstrap intervals "
             f"over the {sum(rep['n_eval'].values())} {rep['split']} faces ({rep['n_boot']} resamples). "
             f"Data: `{rep.get('data', '')}`.", "",
             "## Detection AUC against real", "", head, rule]
    lines += [f"| {tag(g)} | {rep['n_eval'][g]} | " + " | ".join(_cell(rep["sets"][s][f"auc/{g}"]) for s in sets) + " |"
              for g in rep["fakes"]]
    lines += [f"| all fakes | {sum(v for k, v in rep['n_eval'].items() if k != REAL)} | "
              + " | ".join(_cell(rep["sets"][s]["auc/all"]) for s in sets) + " |"]
    lines += ["", "## Attribution ACC (seen classes, argmax over the train classes)", "", head, rule]
    seen = [k[4:] for k in rep["sets"][sets[0]] if k.startswith("acc/") and k[4:] not in ("seen", "seen_generators")]
    lines += [f"| {k} | {rep['n_eval'].get(k, 0)} | " + " | ".join(_cell(rep["sets"][s][f"acc/{k}"]) for s in sets)
              + " |" for k in seen]
    for k, label in (("seen", "all seen (real included)"), ("seen_generators", "seen generators")):
        lines += [f"| {label} | | " + " | ".join(_cell(rep["sets"][s][f"acc/{k}"]) for s in sets) + " |"]
    if rep["gains"]:
        gh = [f"`{g['set']}` − `{g['base']}`" for g in rep["gains"]]
        lines += ["", "## Paired gain of the last block (points; same bootstrap resamples)", "",
                  "| class | " + " | ".join(gh) + " |", "| --- | " + " | ".join("---:" for _ in gh) + " |"]
        lines += [f"| AUC {tag(g)} | " + " | ".join(_cell(x[f"auc/{g}"], True) for x in rep["gains"]) + " |"
                  for g in rep["fakes"]]
        lines += ["| AUC all fakes | " + " | ".join(_cell(x["auc/all"], True) for x in rep["gains"]) + " |",
                  "| ACC seen generators | " + " | ".join(_cell(x["acc/seen_generators"], True)
                                                       for x in rep["gains"]) + " |"]
    lines += ["", "Chosen C (detector / attributor): " + "; ".join(
        f"`{s}` {rep['sets'][s]['c_detect']:g} / {rep['sets'][s]['c_attrib']:g}" for s in sets) + "."]
    if rep["no_gaze"]:
        lines += ["", "Left out (no face or no gaze): " + ", ".join(f"{k} {v}" for k, v in sorted(rep["no_gaze"].items()))
                  + "."]
    lines += ["", "![probe](probe.png)", ""]
    return "\n".join(lines)


def gaze_probe(data_dir: str | Path, protocol: str = "P2", out: str | Path = "gaze-probe", sets: Sequence[str] | None = None,
               cues: bool = False, split: str = "test", c: float | None = None, n_boot: int = 1000, seed: int = 0,
               backbone: str = "clip-b16-offline", clip: str | None = None, estimator: str = "ethxgaze-r18",
               face_cache_dir: str | Path | None = None, feature_cache_dir: str | Path | None = None,
               progress: bool = False) -> dict:
    """Collect, probe, and write probe.json, probe.md and probe.png into `out`."""
    from ..atomic import atomic_write_text
    from ..safejson import dumps
    from ..viz.plots import probe_png

    sets = list(sets) if sets else list(DEFAULT_SETS) + (list(CUE_SETS) if cues else [])
    parse_sets(sets)  # fail before the slow part
    cues = cues or any(b in ("flip", "shift") for p in parse_sets(sets) for b in p)
    items, train_classes, unseen = collect_items(data_dir, protocol, split, backbone, clip, estimator, cues,
                                                 face_cache_dir, feature_cache_dir, progress=progress)
    rep = probe_report(items, train_classes, unseen, sets, split, c, n_boot, seed)
    rep.update(protocol=protocol, data=str(Path(data_dir).resolve()), backbone=backbone, estimator=estimator)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "probe.json", dumps(rep, indent=1))
    atomic_write_text(out / "probe.md", probe_markdown(rep))
    probe_png(rep, out / "probe.png")
    return rep
