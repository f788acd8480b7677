"""Scoring many files into one result folder, in one process or many (torchrun), resumable.

    gazeclip predict INPUTS... [--files-from LIST] --out DIR [--resume]
    torchrun --nproc-per-node N -m gazeclip predict INPUTS... --out DIR        (gloo on CPU, nccl on GPUs)

A platform dump or a seized disk holds 10^5..10^6 images and videos: one process printing to
stdout is too slow and a kill at 90 % starts again from zero. Here the inputs are listed once (by
rank 0), each rank takes the inputs whose path hashes to it (a stable hash: adding files moves no
other file to another rank), predicts them with the same code as `gazeclip predict`
(`Detector.iter_records`) and writes its results in chunks, each chunk file written atomically.
When every rank is done, rank 0 merges them into one file in input order. A job killed anywhere
(kill -9 of one rank or of all) is continued with `--resume`: an input whose path, size and
modification time match a stored result is not predicted again, so the merged result equals that
of an uninterrupted run. The number of processes may change between runs.

DIR/
    job.json                    what the job computes (model, its sha256, thresholds, video options)
                                and its generation (one more each time it is started); a resume must match
    inputs.list                 every input once, NUL-separated file names (bytes), written by rank 0
    shards/gGGGG-rRRRRR/NNNNNN.jsonl   chunk files of rank R in generation G, while it works
    shards/gGGGG-rRRRRR-of-WWWWW.jsonl the shard of rank R: its chunks joined once it is done
                                (each line: {"path", "size", "mtime_ns", "gen", "records": [...]})
    predictions.jsonl           the `predict --json` records of every input, in input order
    summary.json                counts per verdict and generator, errors, throughput, the model and its sha256

Design choice, not from the paper: no Parquet. The records are nested (gaze arrows, video tracks),
JSON lines is what `predict --json` already prints, and pandas (`read_json(lines=True)`), DuckDB
and polars read it directly; pyarrow would add ~100 MB to the install for one conversion that
`pandas.read_json(...).to_parquet(...)` does where it is wanted.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from .. import safejson
from ..atomic import atomic_path, atomic_write_bytes, atomic_write_text
from ..common import IMAGE_EXTS, sha256_of
from ..errors import DamagedFileError, GazeclipError
from ..faces.video import VIDEO_EXTS
from .files import input_error, printable_record, walk
from .video import VideoOptions

JOB_VERSION = 1
# design choice, not from the paper: how long a rank may wait at the end for the slowest one
# (torch's default of 30 min is shorter than the spread of a long job's shards)
DIST_TIMEOUT_S = 7 * 24 * 3600.0


class BatchError(GazeclipError, ValueError):
    """The result folder cannot take this job (it holds another one, or its options differ)."""


@dataclass(frozen=True)
class BatchOptions:
    out: Path
    video: VideoOptions = VideoOptions()
    per_frame: bool = False
    resume: bool = False
    chunk: int = 128                  # inputs per chunk file (a kill loses at most one chunk per rank)
    progress: bool = True


@dataclass
class RankStats:
    """What one rank did in this generation (gathered by rank 0 for the summary)."""

    rank: int
    host: str
    assigned: int = 0                 # inputs whose path hashes to this rank
    skipped: int = 0                  # ... already done (same path, size and mtime)
    predicted: int = 0
    seconds: float = 0.0              # predicting and writing chunks
    chunks: int = 0


@dataclass
class BatchResult:
    out: Path
    summary: dict
    stats: list[RankStats] = field(default_factory=list)


# ---------------------------------------------------------------- inputs
def read_files_from(path: str | os.PathLike) -> list[str]:
    """One path per line (bytes as the file system has them: any name, UTF-8 or not); blank lines
    skipped, a Windows line end tolerated. Nothing is opened or checked here, so a list of millions
    is read in seconds; what is missing is reported per input."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BatchError(f"--files-from {path}: cannot read it ({e.strerror or type(e).__name__}); "
                         "give a text file with one path per line") from None
    return [os.fsdecode(line[:-1] if line.endswith(b"\r") else line) for line in data.split(b"\n") if line.strip()]


def list_inputs(paths: Iterable[str], files_from: str | None = None) -> tuple[list[str], int]:
    """(inputs, duplicates dropped): folders walked for images and videos, `--files-from` entries
    taken as they are; each path once, in the order first given."""
    listed = walk(paths, IMAGE_EXTS | VIDEO_EXTS)
    if files_from:
        listed += [str(Path(p)) for p in read_files_from(files_from)]
    unique = list(dict.fromkeys(listed))
    return unique, len(listed) - len(unique)


def shard_of(path: str, world: int) -> int:
    """The rank that predicts `path`: a stable hash of its bytes (not Python's salted hash), so
    every rank and every run agree, and adding inputs moves none of the others."""
    digest = hashlib.blake2b(os.fsencode(path), digest_size=8).digest()
    return int.from_bytes(digest, "big") % world


def file_key(path: str) -> tuple[int | None, int | None]:
    """(size, mtime in ns) of what `path` names now; (None, None) when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns


def _write_inputs(path: Path, inputs: list[str]) -> None:
    atomic_write_bytes(path, b"\0".join(os.fsencode(p) for p in inputs))


def _read_inputs(path: Path) -> list[str]:
    data = path.read_bytes()
    return [os.fsdecode(p) for p in data.split(b"\0")] if data else []


# ---------------------------------------------------------------- the job file
def model_identity(run) -> dict:
    """What decides the records: the model file and its sha256, runtime, precision, thresholds."""
    f = Path(run.model.path) if run.runtime == "onnx" else Path(run.run_dir) / "model" / "model.safetensors"
    return {"run": str(Path(run.run_dir).resolve()), "model": run.cfg.model, "backbone": run.cfg.backbone,
            "faces": run.cfg.faces, "runtime": run.runtime, "precision": run.precision,
            "file": f.name, "sha256": sha256_of(f) if f.is_file() else None,
            "detection_threshold": getattr(run, "detection_threshold", None),
            "unknown_threshold": run.unknown_threshold}


def _job_options(opts: BatchOptions) -> dict:
    return {"fps": opts.video.fps, "frames": opts.video.frames, "per_frame": opts.per_frame}


def open_job(out: Path, model: dict, opts: BatchOptions) -> int:
    """The generation this start of the job in `out` gets (rank 0; nothing is written). Refuses a
    folder that holds something else, another job without --resume, or a resume with other settings."""
    job_path = out / "job.json"
    if not job_path.is_file():
        if out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
            raise BatchError(f"--out {out}: the folder is not empty and holds no batch job; give a new or empty folder")
        return 1
    try:
        job = json.loads(job_path.read_text())
        old_gen, old_model, old_options = int(job["generation"]), job["model"], job["options"]
    except (ValueError, KeyError, TypeError) as e:
        raise DamagedFileError(job_path, f"not a gazeclip batch job file ({e})",
                               "give a new --out folder (or delete this one)") from None
    if not opts.resume:
        raise BatchError(f"--out {out}: already holds a batch job (job.json, {old_gen} run(s)); add --resume to "
                         "continue it, or give a new --out folder")
    settings = lambda d: {k: v for k, v in d.items() if k != "run"}  # the run folder may have moved
    old, new = {**settings(old_model), **old_options}, {**settings(model), **_job_options(opts)}
    if old != new:
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise BatchError(f"--out {out}: made with other settings ({', '.join(diff)} differ; see job.json); "
                         "resume with the same run and options, or give a new --out folder")
    return old_gen + 1


def write_job(out: Path, gen: int, model: dict, opts: BatchOptions) -> None:
    atomic_write_text(out / "job.json", json.dumps({"version": JOB_VERSION, "generation": gen, "model": model,
                                                    "options": _job_options(opts)}, indent=2) + "\n")


# ---------------------------------------------------------------- stored results
def _shard_files(out: Path) -> list[Path]:
    """Every finished chunk and shard file (temp files of a killed write are hidden, never read)."""
    root = out / "shards"
    if not root.is_dir():
        return []
    return sorted(p for p in [*root.glob("*.jsonl"), *root.glob("*/*.jsonl")] if not p.name.startswith("."))


def iter_entries(out: Path) -> Iterator[tuple[int, int, dict]]:
    """(file index in `_shard_files`, byte offset, entry) of every stored result."""
    for i, f in enumerate(_shard_files(out)):
        with open(f, "rb") as fh:
            offset = 0
            for n, line in enumerate(fh, 1):
                try:
                    e = json.loads(line)
                    e["path"], e["gen"]  # both must be there
                except (ValueError, KeyError, TypeError):
                    raise DamagedFileError(f, f"line {n} is not a stored result",
                                           "delete the file: its inputs are predicted again by --resume") from None
                yield i, offset, e
                offset += len(line)


def latest_entries(out: Path, wanted: set[str] | None = None) -> dict[str, tuple]:
    """path -> (gen, size, mtime_ns, file index, offset) of its newest stored result."""
    best: dict[str, tuple] = {}
    for i, offset, e in iter_entries(out):
        p = e["path"]
        if (wanted is None or p in wanted) and (p not in best or e["gen"] >= best[p][0]):
            best[p] = (e["gen"], e.get("size"), e.get("mtime_ns"), i, offset)
    return best


# ---------------------------------------------------------------- predicting one rank's share
def predict_items(det, paths: list[str], video: VideoOptions, per_frame: bool) -> dict[str, list[dict]]:
    """path -> its `predict --json` records. Only regular files are opened (anything else is one
    error record, unread); should the batch raise anyway, its files are redone one by one so that
    only the file that raises becomes an error record."""
    out: dict[str, list[dict]] = {p: [] for p in paths}
    ok = []
    for p in paths:
        err = input_error(p)
        if err is None:
            ok.append(p)
        else:
            out[p].append({"path": p, "error": err})
    try:
        for _, rec in det.iter_records(ok, video, per_frame=per_frame):
            out[rec["path"]].append(rec)
    except Exception:  # noqa: BLE001 - find the one file that raised, keep the others
        for p in ok:
            out[p] = []
            try:
                out[p] = [rec for _, rec in det.iter_records([p], video, per_frame=per_frame)]
            except Exception as e:  # noqa: BLE001 - a bad file is one error record, the job goes on
                out[p] = [{"path": p, "error": f"{p}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}]
    return out


def run_shard(det, todo: list[str], out: Path, gen: int, rank: int, world: int, opts: BatchOptions,
              stats: RankStats) -> None:
    """Predict this rank's inputs in chunks (each chunk file written atomically), then join the
    chunks into the rank's shard file."""
    from tqdm import tqdm

    chunk_dir = out / "shards" / f"g{gen:04d}-r{rank:05d}"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(todo), desc=f"predict (rank 0 of {world})" if world > 1 else "predict", unit="file",
               disable=not opts.progress or rank != 0, leave=False)
    t0 = time.perf_counter()
    for s in range(0, len(todo), opts.chunk):
        part = todo[s:s + opts.chunk]
        keys = [file_key(p) for p in part]  # before reading: a file changed meanwhile is redone by --resume
        recs = predict_items(det, part, opts.video, opts.per_frame)
        lines = [safejson.dumps({"path": p, "size": k[0], "mtime_ns": k[1], "gen": gen,
                                 "records": [printable_record(r) for r in recs[p]]}) + "\n"
                 for p, k in zip(part, keys)]
        atomic_write_text(chunk_dir / f"{stats.chunks:06d}.jsonl", "".join(lines))
        stats.chunks += 1
        stats.predicted += len(part)
        bar.update(len(part))
    bar.close()
    stats.seconds = time.perf_counter() - t0
    chunks = sorted(chunk_dir.glob("[0-9]*.jsonl"))
    if chunks:  # the rank's shard: its chunks joined (a kill in between leaves duplicates, merged away)
        atomic_write_bytes(out / "shards" / f"g{gen:04d}-r{rank:05d}-of-{world:05d}.jsonl",
                           b"".join(c.read_bytes() for c in chunks))
        for c in chunks:
            c.unlink()
    chunk_dir.rmdir()


# ---------------------------------------------------------------- merging and the summary
class _Handles:
    """Open shard files for reading at offsets, at most `limit` at a time."""

    def __init__(self, files: list[Path], limit: int = 64):
        self.files, self.limit, self.open = files, limit, {}

    def line(self, i: int, offset: int) -> bytes:
        fh = self.open.pop(i, None) or open(self.files[i], "rb")
        self.open[i] = fh  # most recently used last
        if len(self.open) > self.limit:
            self.open.pop(next(iter(self.open))).close()
        fh.seek(offset)
        return fh.readline()

    def close(self) -> None:
        for fh in self.open.values():
            fh.close()


class Tally:
    """Counts for summary.json over the merged records."""

    def __init__(self, examples: int = 20):
        self.images = Counter()
        self.image_verdicts, self.image_generators, self.families = Counter(), Counter(), Counter()
        self.videos = Counter()
        self.video_verdicts, self.video_generators = Counter(), Counter()
        self.errors = Counter()
        self.examples: list[dict] = []
        self.max_examples = examples

    def add(self, path: str, recs: list[dict]) -> None:
        video = next((r for r in recs if "tracks" in r), None)
        if len(recs) == 1 and "error" in recs[0] and "face" not in recs[0]:
            self.errors["files"] += 1
            if len(self.examples) < self.max_examples:
                self.examples.append(recs[0])
        elif video is not None:
            self.videos["files"] += 1
            self.video_verdicts[video["verdict"] or "no face"] += 1
            top = next((t for t in video["tracks"] if t["p_fake"] == video["p_fake"]), None)
            if video["verdict"] == "fake" and top and top["generator"]:
                self.video_generators[top["generator"]] += 1
        else:
            self.images["files"] += 1
            for r in recs:
                if "error" in r:
                    self.errors["faces"] += 1
                elif r.get("faces") == 0:
                    self.images["no face"] += 1
                elif "p_fake" in r:
                    self.images["faces"] += 1
                    self.image_verdicts[r["verdict"]] += 1
                    if r["verdict"] == "fake":
                        self.image_generators[r["generator"]] += 1
                        self.families[r["family"]] += 1
                        self.images["unknown generator"] += bool(r["unknown_generator"])

    def as_dict(self) -> dict:
        top = lambda c: dict(c.most_common())
        return {"images": {"files": self.images["files"], "faces": self.images["faces"],
                           "no_face": self.images["no face"], "verdicts": top(self.image_verdicts),
                           "generators": top(self.image_generators), "families": top(self.families),
                           "unknown_generator": self.images["unknown generator"]},
                "videos": {"files": self.videos["files"], "verdicts": top(self.video_verdicts),
                           "generators": top(self.video_generators)},
                "errors": {"files": self.errors["files"], "faces": self.errors["faces"], "examples": self.examples}}


def merge(out: Path, inputs: list[str]) -> Tally:
    """DIR/predictions.jsonl: the newest stored records of every input, in input order (rank 0)."""
    files = _shard_files(out)
    best = latest_entries(out, set(inputs))
    missing = [p for p in inputs if p not in best]
    if missing:
        raise BatchError(f"--out {out}: {len(missing)} input(s) have no stored result (e.g. {missing[0]!r}): a rank "
                         "did not finish; run the same command again with --resume")
    tally = Tally()
    handles = _Handles(files)
    try:
        with atomic_path(out / "predictions.jsonl") as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for p in inputs:
                _, _, _, i, offset = best[p]
                recs = json.loads(handles.line(i, offset))["records"]
                tally.add(p, recs)
                fh.writelines(json.dumps(r) + "\n" for r in recs)  # stored finite and printable
    finally:
        handles.close()
    return tally


# ---------------------------------------------------------------- the job
def run_batch(det, paths: Iterable[str], files_from: str | None, opts: BatchOptions) -> BatchResult | None:
    """The whole job on this rank (under torchrun every rank calls it; outside, the one process).
    Returns the result on rank 0, None on the others. The process group must be initialised by the
    caller (`run.utils.init_distributed`) before the model is loaded."""
    from ..run import utils as U

    t_start = time.perf_counter()
    rank, world, _ = U.dist_env()
    out = Path(opts.out)
    model = model_identity(det.run) if rank == 0 else {}
    # rank 0 opens the folder and lists the inputs once; the others wait for its word
    word: dict = {}
    failed: Exception | None = None
    if rank == 0:
        try:
            out.mkdir(parents=True, exist_ok=True)
            gen = open_job(out, model, opts)
            t0 = time.perf_counter()
            inputs, dups = list_inputs(paths, files_from)
            if not inputs:
                raise BatchError(f"no image or video files in {', '.join(map(str, paths)) or files_from}; give files, "
                                 "folders holding .jpg/.png/.mp4/... files, or --files-from LIST")
            write_job(out, gen, model, opts)
            _write_inputs(out / "inputs.list", inputs)
            word = {"gen": gen, "n": len(inputs), "dups": dups, "list_s": time.perf_counter() - t0}
        except Exception as e:  # noqa: BLE001 - said to the other ranks (they would wait), then raised
            failed, word = e, {"error": str(e)}
    word = U.broadcast_object(word)
    if failed is not None:
        raise failed
    if "error" in word:  # rank 0 says why
        return None
    gen = word["gen"]
    inputs = _read_inputs(out / "inputs.list")
    if len(inputs) != word["n"]:
        raise BatchError(f"--out {out}: inputs.list has {len(inputs)} entries, rank 0 wrote {word['n']}: the folder "
                         "must be the same shared folder on every machine")
    mine = [p for p in inputs if shard_of(p, world) == rank]
    done = latest_entries(out, set(mine))
    todo = [p for p in mine if p not in done or done[p][1:3] != file_key(p)]
    stats = RankStats(rank, socket.gethostname(), assigned=len(mine), skipped=len(mine) - len(todo))
    run_shard(det, todo, out, gen, rank, world, opts, stats)
    all_stats = U.gather_objects(stats)
    if rank != 0:
        return None
    t0 = time.perf_counter()
    tally = merge(out, inputs)
    timing = {"listing": word["list_s"], "merge": time.perf_counter() - t0, "rank0_wall": time.perf_counter() - t_start}
    summary = _summary(gen, len(inputs), word["dups"], tally, all_stats, timing, model, opts)
    U.atomic_write_json(out / "summary.json", summary)
    return BatchResult(out, summary, all_stats)


def _summary(gen: int, n_inputs: int, dups: int, tally: Tally, stats: list[RankStats], timing: dict, model: dict,
             opts: BatchOptions) -> dict:
    predicted = sum(s.predicted for s in stats)
    busy = max((s.seconds for s in stats), default=0.0)  # the slowest rank sets the pace
    return {
        "version": JOB_VERSION, "generation": gen, "inputs": n_inputs, "duplicates_dropped": dups, **tally.as_dict(),
        "this_run": {"processes": len(stats), "predicted": predicted, "skipped_done": sum(s.skipped for s in stats),
                     "seconds": round(busy, 3), "files_per_s": round(predicted / busy, 3) if busy > 0 and predicted else None,
                     "ranks": [asdict(s) | {"seconds": round(s.seconds, 3)} for s in stats],
                     "timing_s": {k: round(v, 3) for k, v in timing.items()}},
        "model": model, "options": _job_options(opts),
    }
