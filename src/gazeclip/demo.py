"""`gazeclip demo`: what `make demo` runs (grows into train -> evaluate -> predict)."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("demo: not yet implemented")
    return 0
