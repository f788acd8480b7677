"""`gazeclip weights pull | list | verify`."""
from __future__ import annotations

import argparse
import sys

from . import store


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    pull = sub.add_parser("pull", help="fetch, check and convert every pinned weight (idempotent)")
    pull.add_argument("--force", action="store_true", help="fetch and convert again even if present")
    pull.add_argument("--only", nargs="+", metavar="SOURCE", help="only these sources (see `weights list`)")
    sub.add_parser("list", help="each asset: present or missing, size, source, licence")
    sub.add_parser("verify", help="re-hash every file; non-zero exit naming any mismatch")


def run(args: argparse.Namespace) -> int:
    if args.action == "pull":
        print(f"gazeclip weights -> {store.home()}")
        try:
            store.pull(force=args.force, only=args.only)
        except store.WeightsError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    if args.action == "list":
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"pretrained assets in {store.home()}")
        for col in ("asset", "status", "MB", "source", "licence"):
            table.add_column(col, overflow="fold")
        for row in store.status():
            table.add_row(row.name, "present" if row.present else "[red]missing[/red]",
                          f"{row.size / 1e6:.1f}" if row.present else "-", row.source, row.licence)
        Console(width=160).print(table)
        return 0
    problems = store.verify()
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if not problems:
        print(f"all {len(store.status())} files match their pinned sha256")
    return 1 if problems else 0
