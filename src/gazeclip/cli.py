"""The one `gazeclip` entry point. Each subcommand lives next to the step it runs and is imported
only when used, so `gazeclip --help` stays fast.

A subcommand module provides `add_arguments(parser)` and `run(args) -> int` (the exit code).
An input problem (`gazeclip.errors.GazeclipError`: a damaged or unsafe file, an unreadable image,
a pretrained file that fails its hash) that a subcommand does not handle itself is printed here as
one line naming the file, without a traceback, and the exit code is 1.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Order is the order of the data flow.
COMMANDS: dict[str, tuple[str, str]] = {
    "weights": ("gazeclip.weights.cli", "pull, list and verify the pinned pretrained weights"),
    "gaze": ("gazeclip.gaze.cli_gaze", "faces, head pose and gaze of images (optionally drawn)"),
    "gaze-fid": ("gazeclip.gaze.cli_fid", "Frechet distance between real and generated gaze distributions"),
    "bench": ("gazeclip.bench.cli", "build the offline benchmark, train its forgers, import datasets"),
    "info": ("gazeclip.models.cli_info", "parameters and GFLOPs of a model per module"),
    "train": ("gazeclip.train.cli", "train a model on a benchmark protocol"),
    "eval": ("gazeclip.evaluation.cli_eval", "evaluate a trained run: attribution, open-set, detection"),
    "calibrate": ("gazeclip.evaluation.cli_calibrate", "(re)compute a run's thresholds on its validation split"),
    "compare": ("gazeclip.evaluation.cli_compare", "side-by-side table of several runs with bootstrap intervals"),
    "experiment": ("gazeclip.experiment.cli", "models x seeds on one protocol: mean ± sd, paired differences"),
    "gaze-probe": ("gazeclip.evaluation.cli_probe", "is gaze worth it on this data? probes on frozen gaze and CLIP"),
    "robustness": ("gazeclip.evaluation.cli_robustness", "metrics under JPEG, blur, noise, resize, colour changes"),
    "explain": ("gazeclip.viz.cli_explain", "Grad-CAM of a trained run on an image"),
    "tsne": ("gazeclip.viz.cli_tsne", "t-SNE of a run's joint embeddings, by generator"),
    "export": ("gazeclip.export.cli", "export a trained run to ONNX (fp32, optionally int8) for onnxruntime"),
    "predict": ("gazeclip.inference.cli", "real/fake and generator of each face in files or folders (default: the "
                                          "reference model)"),
    "serve": ("gazeclip.serve.cli", "HTTP service and web page around a trained run (default: the reference model)"),
    "reference": ("gazeclip.cli_reference", "the reference model packaged with gazeclip: pack a run, show it, "
                                            "write its model card's figures"),
    "demo": ("gazeclip.demo", "the end-to-end demo that `make demo` runs"),
}


def key_value(s: str) -> tuple[str, object]:
    """argparse type of `--set KEY=VALUE` / `--model-arg KEY=VALUE`: the value read as YAML."""
    import yaml

    if "=" not in s:
        raise argparse.ArgumentTypeError(f"{s!r}: expected KEY=VALUE")
    k, v = s.split("=", 1)
    return k.strip(), yaml.safe_load(v)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `gazeclip` parser; only the subcommand named in `argv` (default sys.argv[1:]) gets its
    arguments, so that only that command's module is imported."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="gazeclip", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        if name == chosen:  # only the chosen subcommand's module is imported
            importlib.import_module(module).add_arguments(p)
            # `gazeclip predict ... -v` as well as `gazeclip -v predict ...`
            p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser


VERBOSE_HELP = "show native libraries' log lines (MediaPipe/TFLite/absl), hidden by default"


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if getattr(args, "verbose", False):
        from .quiet import set_verbose

        set_verbose(True)
    else:  # transformers' "Loading weights" bars say nothing to a user of a local model
        import os

        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if not getattr(args, "_module", None):
        parser.print_help()
        return 0
    from .errors import GazeclipError

    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except GazeclipError as e:
        print(f"gazeclip {args.command}: {e}", file=sys.stderr)
        return 1
