"""Do two runs answer the same? `gazeclip reference pack` checks that the packed reference (its
weights stored in float16) gives the p_fake, verdict and generator of the fp32 run it came from,
on the same images, through the same predict path a user runs (`Detector.iter_records`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Parity:
    n_images: int
    n_faces: int
    max_abs_diff: float       # largest |p_fake(b) - p_fake(a)| over the faces
    mean_abs_diff: float
    verdicts_equal: int       # faces with the same verdict
    generators_equal: int     # faces with the same generator (None for real verdicts)
    precision: str            # what both models computed in

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.n_faces} face(s) on {self.n_images} image(s), {self.precision}: max |Δp_fake| "
                f"{self.max_abs_diff:.2e}, mean {self.mean_abs_diff:.2e}; same verdict {self.verdicts_equal}/"
                f"{self.n_faces}, same generator {self.generators_equal}/{self.n_faces}")


def parity(run_a: str | Path, run_b: str | Path, images: list[str], precision: str = "fp32",
           device: str = "cpu") -> Parity:
    """Predict `images` with both runs (each loaded like `gazeclip.load`, in `precision`) and
    compare their face records one by one."""
    from .detector import Detector

    recs = []
    for run in (run_a, run_b):
        det = Detector(run, device=device, precision=precision)
        recs.append([r for _, r in det.iter_records(images) if "p_fake" in r])
    a, b = recs
    if len(a) != len(b) or not a:
        raise ValueError(f"parity: the two runs found {len(a)} and {len(b)} face(s) in {len(images)} image(s); "
                         "give images with faces (--images)")
    diffs = [abs(x["p_fake"] - y["p_fake"]) for x, y in zip(a, b)]
    return Parity(len(images), len(a), max(diffs), sum(diffs) / len(diffs),
                  sum(x["verdict"] == y["verdict"] for x, y in zip(a, b)),
                  sum(x["generator"] == y["generator"] for x, y in zip(a, b)), precision)


def parity_images(run_dir: str | Path, n: int = 8, split: str = "val") -> list[str]:
    """Up to `n` images of the run's own benchmark (config.yaml `data`), from `split` (validation:
    never the test split), taken in turn from each class so that real faces and fakes both count;
    [] when the run's data folder is not here."""
    from ..data.manifest import read_manifest
    from ..run.folder import read_run_yaml

    data = read_run_yaml(run_dir).get("data")
    if not data or not (Path(data) / "manifest.csv").is_file():
        return []
    by_class: dict[str, list[str]] = {}
    for row in read_manifest(Path(data)):
        if row.split == split:
            by_class.setdefault(row.cls, []).append(str(Path(data) / row.path))
    out, i = [], 0
    while len(out) < n and any(i < len(v) for v in by_class.values()):
        out += [v[i] for _, v in sorted(by_class.items()) if i < len(v)]
        i += 1
    return out[:n]
