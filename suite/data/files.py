"""Which files of a folder are data: the one home of that choice for text, token and image
folders.

Dot-files and dot-folders are never data: `.DS_Store`, a `.git/` folder, an editor's swap file,
macOS's `._x.png` AppleDouble copies (vision#109, fastai#488). Read as text they trained as
noise, and since they sort first they shifted the sorted order that picks held-out documents.
A file found in a folder (not one the user named) is text only when its first TEXT_PROBE bytes
hold no NUL byte and decode as UTF-8: a suffix-less binary (a compiled program, a database)
is skipped, and counted, not trained on. Imports nothing of ours.
"""

from __future__ import annotations

import glob as globlib
import os
from pathlib import Path
from typing import Any

TEXT_PROBE = 8192  # bytes read to tell text from binary: what git and grep read
LISTED = 20  # skipped files named in a record; the counts are always exact
HIDDEN = "(hidden)"
NOT_TEXT = "(not text)"


def hidden(name: str) -> bool:
    """A dot-file or dot-folder name: never data, whatever its suffix."""
    return name.startswith(".")


def walk(folder: Path) -> tuple[list[Path], int]:
    """Every file under `folder` that is not hidden and not inside a hidden folder, sorted, and
    how many dot-files and dot-folders were passed over (a folder counts once: .git's
    thousands of objects are never listed)."""
    found, passed = [], 0
    for root, dirs, names in os.walk(folder, followlinks=True):
        passed += sum(hidden(d) for d in dirs) + sum(hidden(n) for n in names)
        dirs[:] = [d for d in dirs if not hidden(d)]  # os.walk does not descend into these
        found += [Path(root) / n for n in names if not hidden(n)
                  and (Path(root) / n).is_file()]
    return sorted(found), passed


def globbed(pattern: str) -> list[Path]:
    """The files a glob matches, sorted. Python's glob matches no dot-file or dot-folder unless
    the pattern's own part starts with '.': the user named those."""
    return sorted(Path(p) for p in globlib.glob(str(Path(pattern).expanduser()), recursive=True)
                  if Path(p).is_file())


def is_glob(source: str) -> bool:
    """Whether a source is a glob pattern rather than a path."""
    return any(c in source for c in "*?[")


def not_text(path: Path) -> str | None:
    """Why `path` is not text, from its first TEXT_PROBE bytes ('a NUL byte at byte 12', 'not
    UTF-8 at byte 3'), or None for text. A multi-byte character cut at the end of the probe is
    not held against it."""
    with open(path, "rb") as f:
        head = f.read(TEXT_PROBE)
    if (nul := head.find(b"\0")) >= 0:
        return f"a NUL byte at byte {nul}"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.reason != "unexpected end of data" or len(head) < TEXT_PROBE:
            return f"not UTF-8 at byte {e.start}"
    return None


def keep_text(files: list[Path], record: dict[str, Any]) -> list[Path]:
    """`files` that are text (`not_text`); the others are counted under NOT_TEXT in
    record["skipped"] and named (the first LISTED) in record["not_text"]."""
    kept = []
    for p in files:
        try:
            why = not_text(p)
        except OSError as e:
            why = f"unreadable: {e.strerror or e}"
        if why is None:
            kept.append(p)
            continue
        record["skipped"][NOT_TEXT] = record["skipped"].get(NOT_TEXT, 0) + 1
        if len(record.setdefault("not_text", [])) < LISTED:
            record["not_text"].append(f"{p} ({why})")
    return kept


def skipped_line(where: str, record: dict[str, Any]) -> str | None:
    """One line saying what a folder or glob gave and what it passed over, or None when it
    passed over nothing."""
    skipped = record.get("skipped", {})
    if not skipped:
        return None
    counts = ", ".join(f"{n} {s}" for s, n in sorted(skipped.items()))
    named = record.get("not_text", [])
    return (f"{where}: read {record['read']} file(s); skipped {counts}"
            + (f"; not text: {', '.join(named[:3])}" + (", ..." if len(named) > 3 else "")
               if named else ""))
