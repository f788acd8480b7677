"""`gazeclip weights pull | list | verify`."""
from __future__ import annotations

import argparse
import sys

from . import store

GROUP_ABOVE = 12  # `weights list` shows a source with more files than this as one line


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
        rows = store.status()
        by_source: dict[str, list] = {}
        for row in rows:
            by_source.setdefault(row.source, []).append(row)
        for source_rows in by_source.values():
            if len(source_rows) > GROUP_ABOVE:  # e.g. 609 face photos: one line for the set
                n_ok = sum(r.present for r in source_rows)
                first = source_rows[0]
                table.add_row(f"{len(source_rows)} files ({first.description.split(' of ')[0]})",
                              "present" if n_ok == len(source_rows) else f"[red]{len(source_rows) - n_ok} missing[/red]",
                              f"{sum(r.size for r in source_rows) / 1e6:.1f}", first.source, first.licence)
                continue
            for row in source_rows:
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
