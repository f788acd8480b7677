"""The reference model that ships inside the package, so that `gazeclip.load()`, `gazeclip predict
PHOTO` and `gazeclip serve` work without training.

It is a minimal run folder (what `load_run` reads, nothing else) under the package's `reference/`
folder, read with importlib.resources so that a wheel install finds it:

    reference/reference.json          the pin: the reference's name and every file's sha256 and size
    reference/NAME/config.yaml        the run's TrainConfig (without its local data path)
    reference/NAME/taxonomy.json      classes and families
    reference/NAME/calibration.json   the thresholds chosen on validation
    reference/NAME/model/config.json  model, backbone, config, taxonomy (as `save_pretrained` writes it)
    reference/NAME/model/model.safetensors   the trainable weights only, in float16

Every file is checked against its pinned sha256 before the model is used, like every pulled
weight (`gazeclip.weights`); the frozen towers (CLIP, gaze network, MediaPipe) still come from
`gazeclip weights pull`. `$GAZECLIP_REFERENCE_DIR` (or `root=`) points elsewhere (tests, a user's
own reference). `stage` + `install` write one from a trained run (`gazeclip reference pack`);
only one reference is packaged at a time, since each committed version adds its size to git.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..atomic import atomic_write_text
from ..common import sha256_of
from ..errors import DamagedFileError, GazeclipError, UsageError

PIN_FILE = "reference.json"
FORMAT = "gazeclip-reference/1"
FILES = ("config.yaml", "taxonomy.json", "calibration.json", "model/config.json", "model/model.safetensors")
MAX_MB = 25.0  # the limit on what the package may carry
ENV = "GAZECLIP_REFERENCE_DIR"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PACK_HINT = "give a trained run with --run RUN, or pack one with `gazeclip reference pack --run RUN --name NAME`"


class NoReferenceError(GazeclipError, FileNotFoundError):
    """No reference model is packaged (yet) where gazeclip looks for one."""


@dataclass
class ReferencePin:
    """`reference.json`: which reference is packaged and the sha256 and size of each of its files."""

    name: str
    files: dict[str, dict]              # relative path -> {"sha256", "size"}
    dtype: str = "float16"
    model: str = ""
    backbone: str = ""
    faces: str = ""
    protocol: str = ""
    classes: list[str] = field(default_factory=list)
    source_run: str = ""                # the run folder's name (no local path)
    source_weights_sha256: str = ""     # sha256 of the fp32 model.safetensors it was packed from
    parity: dict = field(default_factory=dict)  # p_fake of the packed vs the fp32 run (gazeclip reference pack)
    gazeclip_version: str = ""
    format: str = FORMAT

    @property
    def size(self) -> int:
        return sum(int(f["size"]) for f in self.files.values())


def reference_root(root: str | Path | None = None) -> Path:
    """Where the reference lives: `root`, else `$GAZECLIP_REFERENCE_DIR`, else the package's
    `reference/` folder."""
    if root is not None:
        return Path(root)
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    from importlib import resources

    return Path(str(resources.files("gazeclip"))) / "reference"


def read_pin(root: str | Path | None = None) -> ReferencePin | None:
    """The pin of the packaged reference, checked field by field; None when none is packaged."""
    path = reference_root(root) / PIN_FILE
    if not path.is_file():
        return None
    fix = "restore it (reinstall gazeclip, or `git checkout` it in a clone), or pack the reference again"
    try:
        d = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DamagedFileError(path, f"damaged JSON ({str(e)[:100]})", fix) from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise DamagedFileError(path, f"not a gazeclip reference pin (format {FORMAT!r} expected)", fix)
    files = d.get("files")
    ok = (isinstance(d.get("name"), str) and _NAME.match(d["name"]) and isinstance(files, dict)
          and sorted(files) == sorted(FILES)
          and all(isinstance(f, dict) and isinstance(f.get("sha256"), str) and len(f["sha256"]) == 64
                  and isinstance(f.get("size"), int) for f in files.values()))
    if not ok:
        raise DamagedFileError(path, f"malformed: needs a name and the sha256 and size of {', '.join(FILES)}", fix)
    known = set(ReferencePin.__dataclass_fields__)
    return ReferencePin(**{k: v for k, v in d.items() if k in known})


def reference_dir(root: str | Path | None = None) -> Path:
    """The packaged reference's folder, every file checked against its pinned sha256 (a run
    folder for `load_run`). `NoReferenceError` when none is packaged; `DamagedFileError` naming
    the file whose bytes do not match."""
    root = reference_root(root)
    pin = read_pin(root)
    if pin is None:
        raise NoReferenceError(f"no reference model is packaged with this gazeclip (no {root / PIN_FILE}); "
                               + PACK_HINT)
    folder = root / pin.name
    fix = (f"the packaged reference {pin.name!r} is damaged or was changed: reinstall gazeclip (in a clone: "
           f"`git checkout -- {root.name}/`), or {PACK_HINT}")
    for rel, want in pin.files.items():
        path = folder / rel
        if not path.is_file():
            raise DamagedFileError(path, f"missing (pinned in {root / PIN_FILE})", fix)
        got = sha256_of(path)
        if got != want["sha256"]:
            raise DamagedFileError(path, f"sha256 {got[:16]}… does not match the pinned {want['sha256'][:16]}… "
                                   f"of {root / PIN_FILE}", fix)
    return folder


# ---------------------------------------------------------------- writing one (gazeclip reference pack)
def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(f"reference name {name!r}: use letters, digits, '.', '_' and '-' (up to 64 characters)")
    return name


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("gazeclip")
    except metadata.PackageNotFoundError:
        return ""


def stage(run_dir: str | Path, root: str | Path | None = None, max_mb: float = MAX_MB) -> Path:
    """Write the packable copy of a trained run into a temporary folder under the reference root:
    its config (local data path removed), taxonomy, calibration, and its model with the weights in
    float16. Refused (one line naming the fix) without calibrated thresholds, with a user CLIP
    checkpoint (the package cannot carry it), or when the copy is over `max_mb`."""
    import torch
    import yaml

    from ..models.saving import copy_pretrained
    from .calibrate import load_calibration
    from .folder import load_run_config, read_run_yaml

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if cfg.clip:
        raise UsageError(f"{run_dir}: trained on the CLIP checkpoint {cfg.clip}, which the package cannot carry; "
                         "pack a run of a pulled backbone (clip-b16-offline)")
    if not (run_dir / "model").is_dir() or not (run_dir / "taxonomy.json").is_file():
        raise FileNotFoundError(f"{run_dir}: not a finished run (no model/ or taxonomy.json); "
                                "finish it with `gazeclip train --out RUN --resume`")
    cal = load_calibration(run_dir)
    if not cal or cal.get("detection_threshold") is None:
        raise UsageError(f"{run_dir}/calibration.json: no calibrated detection threshold; "
                         "run `gazeclip eval --run RUN --data DIR` first (it calibrates on validation)")
    root = reference_root(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
    try:
        d = read_run_yaml(run_dir)
        for key in ("data", "world_size"):  # a local path and a launch detail: not part of the model
            d.pop(key, None)
        atomic_write_text(tmp / "config.yaml", yaml.safe_dump(d, sort_keys=False))
        for name in ("taxonomy.json", "calibration.json"):
            shutil.copyfile(run_dir / name, tmp / name)
        copy_pretrained(run_dir / "model", tmp / "model", torch.float16)
        size = sum((tmp / f).stat().st_size for f in FILES)
        if size > max_mb * 1e6:
            raise UsageError(f"{run_dir}: the packed reference would be {size / 1e6:.1f} MB, over the "
                             f"{max_mb:g} MB the package may carry; pack a smaller model (fewer trainable weights)")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def install(staged: Path, name: str, source_run: str | Path, parity: dict | None = None,
            root: str | Path | None = None) -> ReferencePin:
    """Make a staged copy the packaged reference `name`: move it into place, then write the pin
    with every file's sha256; the previously packaged reference (if another) is removed last."""
    from .folder import load_run_config, read_taxonomy

    check_name(name)
    root = reference_root(root)
    try:
        old = read_pin(root)
    except DamagedFileError:
        old = None  # a damaged pin is replaced
    final = root / name
    if final.exists():  # packing the same name again: the old copy goes first
        shutil.rmtree(final)
    for p in (staged, *staged.rglob("*")):  # readable by everyone, like the rest of the package
        p.chmod(0o755 if p.is_dir() else 0o644)
    os.replace(staged, final)
    cfg = load_run_config(final)
    files = {f: {"sha256": sha256_of(final / f), "size": (final / f).stat().st_size} for f in FILES}
    pin = ReferencePin(name=name, files=files, model=cfg.model, backbone=cfg.backbone, faces=cfg.faces,
                       protocol=cfg.protocol, classes=list(read_taxonomy(final / "taxonomy.json").classes),
                       source_run=Path(source_run).name,
                       source_weights_sha256=sha256_of(Path(source_run) / "model" / "model.safetensors"),
                       parity=parity or {}, gazeclip_version=_version())
    atomic_write_text(root / PIN_FILE, json.dumps(asdict(pin), indent=1) + "\n")
    if old is not None and old.name != name and (root / old.name).is_dir():
        shutil.rmtree(root / old.name)
    return pin

