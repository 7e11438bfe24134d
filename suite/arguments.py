"""What the command line accepts, checked where it is parsed: argparse types that refuse a
value in one line naming the option and what is allowed, and a parser whose errors are one
line too (argparse would print its whole usage first)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn


def at_least(low: float, kind: type = int, high: int | None = None) -> Callable[[str], float]:
    """An argparse type: an int >= `low` (and <= `high`, when given), or (kind=float) a number
    strictly > `low`; anything else is one line naming the option and what is allowed
    (argparse adds "argument --NAME"), never a traceback later."""
    what = f"an integer >= {low}" if kind is int else f"a number > {low}"
    what += f" and <= {high}" if high is not None else ""

    def parse(text: str) -> float:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}; allowed: {what}") from None
        if (kind is int and v < low) or (kind is not int and not v > low) or \
                (high is not None and v > high):
            raise argparse.ArgumentTypeError(f"got {text!r}; allowed: {what}")
        return v

    return parse


def device_arg(text: str) -> str:
    """An argparse type for --device: cpu, cuda or cuda:N, and only a CUDA device this machine
    has (otherwise one line, not a driver error from deep inside torch at the first tensor)."""
    import torch

    allowed = "cpu, cuda, cuda:N"
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: {allowed}") from None
    if dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: {allowed}")
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise argparse.ArgumentTypeError(f"got {text!r}, but torch sees no CUDA device on "
                                             "this machine; allowed here: cpu")
        if dev.index is not None and dev.index >= n:
            raise argparse.ArgumentTypeError(f"got {text!r}; this machine has cuda:0 to "
                                             f"cuda:{n - 1}")
    return text


class OneLineParser(argparse.ArgumentParser):
    """An argument error is one line naming the option and what is allowed, exit 2 (argparse
    would print the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")
