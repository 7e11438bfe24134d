"""A declared sweep in the report: one knob of one arm over its values (the arm itself and its
variants `arm@knob=value`, found by their names), as a table and one plot of the FLOPs saved and
the final held-out loss against the swept value, each with its 95% interval. Imports no torch."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from suite.judge.analysis import Comparison, mean_ci
from suite.judge.savings import ArmSavings, is_matched_baseline
from suite.protocol import DEFAULTS, fmt_value, split_name
from suite.results import Run, atomic_write

HEADERS = ["sweep", "value", "arm", "tuning", "seeds", "FLOPs saved to target",
           "final held-out loss"]


def _own_value(runs: list[Run], key: str) -> Any:
    """The value of `key` the parent arm ran with: its [train] value, its method's option, or
    what it runs without one (protocol.DEFAULTS: budget 1.0, as protocol.own_value says)."""
    m = runs[0].manifest
    train = m.get("definition", {}).get("arm", {}).get("train") or {}
    if key in train:
        return train[key]
    if key in m.get("definition", {}).get("scale", {}).get("train", {}):
        return m["definition"]["scale"]["train"][key]
    return m.get("method", {}).get("options", {}).get(key, DEFAULTS.get(key))


def sweeps_of(found: list[ArmSavings]) -> dict[tuple[str, str], list[tuple[Any, ArmSavings]]]:
    """(parent arm, knob) -> [(value, its arm's savings)], sorted by value, for every knob that
    at least two variants of one key vary (matched baselines are the check's, not a sweep)."""
    by_name = {a.arm: a for a in found}
    groups: dict[tuple[str, str], list[tuple[Any, ArmSavings]]] = defaultdict(list)
    for a in found:
        if is_matched_baseline(a.arm):
            continue
        parent, values = split_name(a.arm)
        if len(values) == 1 and parent in by_name:
            (key, value), = values.items()
            groups[(parent, key)].append((value, a))
    out = {}
    for (parent, key), pts in groups.items():
        if len(pts) < 2:  # one variant is a run by name, not a sweep
            continue
        own = _own_value(by_name[parent].runs, key)
        if own is not None and all(v != own for v, _ in pts):
            pts.append((own, by_name[parent]))
        out[(parent, key)] = sorted(pts, key=lambda p: (isinstance(p[0], str), p[0]))
    return out


def _flops(a: ArmSavings) -> Comparison | None:
    return a.by_criterion.get("heldout_loss")


def rows(sweeps: dict, tuning_of: Any) -> list[list]:
    """HEADERS rows, one per value of every sweep."""
    out = []
    for (parent, key), pts in sweeps.items():
        for value, a in pts:
            c = _flops(a)
            final = mean_ci([r.curve[-1].get("heldout_loss") for r in a.runs])
            out.append([f"{parent}: {key}", fmt_value(value), a.arm, tuning_of(a.runs),
                        len(a.runs), c.flops_saving.fmt() if c else "-",
                        final.fmt(digits=4)])
    return out


def plot(bench: str, sweeps: dict, out: Path) -> list[str]:
    """One PNG per sweep: FLOPs saved (left) and final held-out loss (right) against the value,
    mean with its 95% interval; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for (parent, key), pts in sweeps.items():
        numeric = [(v, a) for v, a in pts if isinstance(v, (int, float))]
        if len(numeric) < 2:
            continue
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
        xs = [v for v, _ in numeric]
        for ax, what in ((left, "saving"), (right, "loss")):
            means, lows, highs = [], [], []
            for _, a in numeric:
                if what == "saving":  # a miss has no saving to draw: the table says so
                    c = _flops(a)
                    s = c.flops_saving if c and not c.flops_saving.miss else None
                    iv = (100 * s.mean, 100 * s.low, 100 * s.high) if s else (math.nan,) * 3
                else:
                    f = mean_ci([r.curve[-1].get("heldout_loss") for r in a.runs])
                    iv = (f.mean, f.low, f.high)
                means.append(iv[0])
                lows.append(iv[0] - iv[1] if math.isfinite(iv[1]) else 0.0)
                highs.append(iv[2] - iv[0] if math.isfinite(iv[2]) else 0.0)
            ax.errorbar(xs, means, yerr=[lows, highs], marker="o", capsize=4)
            ax.set_xlabel(key)
            ax.set_ylabel("FLOPs saved to target (%)" if what == "saving" else
                          "final held-out loss")
            ax.grid(alpha=0.3)
        left.axhline(0, color="grey", lw=0.8)
        left.set_xlim(right.get_xlim())  # all misses leave no point to set the axis by
        missed = [v for v, a in numeric if not ((c := _flops(a)) and not c.flops_saving.miss)]
        for v in missed:  # a miss drawn as nothing would read as "no data"
            left.annotate("miss", (v, 0.04), xycoords=("data", "axes fraction"), ha="center",
                          color="C3")
        if len(missed) == len(numeric):
            left.text(0.5, 0.5, "no value reached the target\n(every point a miss)",
                      transform=left.transAxes, ha="center", va="center", color="C3")
        fig.suptitle(f"{bench}: {parent} over {key} (mean, 95% interval)")
        fig.tight_layout()
        name = f"{bench}-sweep-{parent}-{key}.png"
        atomic_write(out / name, lambda f, fig=fig: fig.savefig(f, format="png", dpi=110),
                     mode="wb")
        plt.close(fig)
        names.append(name)
    return names


__all__ = ["HEADERS", "plot", "rows", "sweeps_of"]
