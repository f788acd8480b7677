"""`gazeclip reference pack | show | card`: the reference model packaged with gazeclip.

    gazeclip reference pack --run runs/reference --name gazeclip-ref-v1   # -> src/gazeclip/reference/
    gazeclip reference show                                                # what is packaged, verified
    gazeclip reference card --eval runs/reference/eval --robustness runs/reference/robustness

`pack` writes the run's config, taxonomy, calibration and trainable weights (float16) into the
package's `reference/` folder (`--root` or `$GAZECLIP_REFERENCE_DIR` elsewhere) with the sha256
pin of every file, after checking on a few validation images (and the astronaut photo) that the
packed copy gives the fp32 run's p_fake within `--tolerance`. `card` writes the figures section of
docs/model-card.md from an evaluation folder (see gazeclip.evaluation.card).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    pack = sub.add_parser("pack", help="package a trained run as the reference model (float16, sha256-pinned)")
    pack.add_argument("--run", required=True, help="run folder written by `gazeclip train` (calibrated)")
    pack.add_argument("--name", required=True, help="name of the reference, e.g. gazeclip-ref-v1")
    pack.add_argument("--root", help="reference folder (default: $GAZECLIP_REFERENCE_DIR, else the package's "
                                     "reference/)")
    pack.add_argument("--images", nargs="+", metavar="IMAGE",
                      help="images for the parity check (default: --n validation images of the run's benchmark "
                           "and the astronaut photo)")
    pack.add_argument("--n", type=int, default=8, help="validation images for the parity check (default 8)")
    pack.add_argument("--tolerance", type=float, default=0.01,
                      help="largest |p_fake difference| allowed between the packed and the fp32 run (default 0.01)")
    pack.add_argument("--max-mb", type=float, default=25.0, help="size limit of the packed files (default 25 MB)")
    show = sub.add_parser("show", help="the packaged reference: name, model, size, parity; every file re-hashed")
    show.add_argument("--root", help="reference folder (default: the package's)")
    card = sub.add_parser("card", help="write the figures section of the model card from evaluation outputs")
    card.add_argument("--eval", required=True, action="append", metavar="[NAME=]DIR",
                      help="`gazeclip eval` output folder (metrics.json, predictions.npz) of the reference; "
                           "repeat as NAME=DIR for the models it is compared with (e.g. clip-lora=runs/x/eval)")
    card.add_argument("--robustness", help="`gazeclip robustness` output (robustness.json or its folder)")
    card.add_argument("--card", default="docs/model-card.md", help="model card to update (default docs/model-card.md)")
    card.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for AUC intervals (default 1000)")
    card.add_argument("--print", action="store_true", help="print the section instead of writing the card")


def run(args: argparse.Namespace) -> int:
    try:
        return {"pack": _pack, "show": _show, "card": _card}[args.action](args)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"gazeclip reference {args.action}: {e}", file=sys.stderr)
        return 1


def _pack(args) -> int:
    from .inference.parity import parity, parity_images
    from .run.reference import check_name, install, reference_root, stage

    name = check_name(args.name)
    images = args.images or parity_images(args.run, args.n) + _astronaut()
    if not images:
        raise FileNotFoundError(f"{args.run}: its benchmark folder is not here and the astronaut photo is not pulled; "
                                "give images for the parity check with --images")
    staged = stage(args.run, args.root, args.max_mb)
    try:
        print(f"packed {args.run} in float16; parity check against the fp32 run on {len(images)} image(s)", flush=True)
        par = parity(args.run, staged, images)
        print(f"  {par.describe()}")
        if par.max_abs_diff > args.tolerance:
            raise ValueError(f"the packed copy's p_fake differs from the fp32 run's by up to {par.max_abs_diff:.3g}, "
                             f"over --tolerance {args.tolerance:g}; not packaged")
        pin = install(staged, name, args.run, par.as_dict(), args.root)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    root = reference_root(args.root)
    print(f"reference {pin.name!r} ({pin.model}, {pin.backbone}, {len(pin.classes)} classes): "
          f"{pin.size / 1e6:.1f} MB in {root / pin.name}, pinned in {root / 'reference.json'}")
    for rel, f in pin.files.items():
        print(f"  {f['size']:>10,d}  {f['sha256']}  {rel}")
    return 0


def _astronaut() -> list[str]:
    from .weights import WeightsError, asset_path

    try:
        return [str(asset_path("photo-astronaut"))]
    except WeightsError:
        return []


def _show(args) -> int:
    from .run.reference import reference_dir, read_pin

    folder = reference_dir(args.root)  # every file re-hashed; one line naming a mismatch
    pin = read_pin(args.root)
    par = pin.parity
    print(f"reference {pin.name!r}: {pin.model} on {pin.backbone} (faces: {pin.faces}, protocol {pin.protocol}), "
          f"{len(pin.classes)} classes, {pin.dtype}, {pin.size / 1e6:.1f} MB; every file matches its pinned sha256")
    print(f"  folder {folder}")
    print(f"  packed from run {pin.source_run!r} (model.safetensors sha256 {pin.source_weights_sha256[:16]}…) "
          f"with gazeclip {pin.gazeclip_version or '?'}")
    if par:
        print(f"  parity vs the fp32 run: max |Δp_fake| {par['max_abs_diff']:.2e} over {par['n_faces']} face(s), "
              f"same verdict {par['verdicts_equal']}/{par['n_faces']}")
    return 0


def _card(args) -> int:
    from .atomic import atomic_write_text
    from .evaluation.card import figures_section, replace_section

    evals = []
    for i, spec in enumerate(args.eval):
        name, _, folder = spec.rpartition("=") if "=" in spec else ("", "", spec)
        evals.append((name or ("reference" if i == 0 else Path(folder).parent.name), Path(folder)))
    text = figures_section(evals, args.robustness, n_boot=args.n_boot)
    if args.print:
        print(text)
        return 0
    card = Path(args.card)
    atomic_write_text(card, replace_section(card.read_text(), text, card))
    print(f"wrote the figures section of {card} from {', '.join(str(f) for _, f in evals)}")
    return 0
