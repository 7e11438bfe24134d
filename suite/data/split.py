"""Which items are held out: the one home of the spacing every source uses.

Held-out data is always whole items (files, documents, images of a class, shards), never
windows of a training item, so a model is evaluated on text or images it never trained on. Of a
sorted list, item i is held out when i % HELDOUT_EVERY == HELDOUT_EVERY - 1 (the 10th, 20th,
...): spread over the list, and stable when items are added at its end. A single file (text or
tokens) has no items to hold out: its last 1/TAIL_DIVISOR is. Committed results depend on
these exact selections: change them and every reference run changes. Imports nothing of ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

HELDOUT_EVERY = 10  # item i of a sorted list is held out when i % 10 == 9
TAIL_DIVISOR = 10  # held out of a single file (text or tokens): its last tenth

T = TypeVar("T")


def rule(every: int = HELDOUT_EVERY) -> str:
    """The rule in words, for messages and records: 'i % 10 == 9'."""
    return f"i % {every} == {every - 1}"


def is_heldout(i: int, every: int = HELDOUT_EVERY) -> bool:
    """Whether item i (counting from 0, in the order read) is held out."""
    return i % every == every - 1


def heldout_indices(n: int, every: int = HELDOUT_EVERY, last_if_none: bool = True,
                    ) -> list[int]:
    """Indices held out of n items: every `every`-th; with fewer than `every` items, the last
    one (`last_if_none`: a folder of 3 works still has a held-out work) or none."""
    held = [i for i in range(n) if is_heldout(i, every)]
    return held or ([n - 1] if last_if_none and n else [])


def split_items(items: Sequence[T], every: int = HELDOUT_EVERY, last_if_none: bool = True,
                ) -> tuple[list[T], list[T]]:
    """(training, held-out) items of a list already in its canonical (sorted) order, each in
    that order; see `heldout_indices`."""
    held = set(heldout_indices(len(items), every, last_if_none))
    return ([x for i, x in enumerate(items) if i not in held],
            [x for i, x in enumerate(items) if i in held])


def tail_cut(n: int, divisor: int = TAIL_DIVISOR) -> int:
    """Where the held-out tail of n ids starts: n - n // divisor, in integers (exact at any
    size)."""
    return n - n // divisor
