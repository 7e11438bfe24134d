"""The matched-budget check of a saving (suite/judge/analysis.py, "Matched budget"): does the
baseline, given the arm's compute and a schedule that ends there, reach the arm's quality too?
Imports no torch."""

from __future__ import annotations

import math
from dataclasses import dataclass

from suite.judge.analysis import is_saving, value_at
from suite.judge.intervals import CONFIDENCE, Interval, difference, mean_ci
from suite.protocol import fmt_value, variant_name
from suite.results import Run
from suite.spec import BASELINE

MIN_SEEDS = 5  # seeds the arm and its matched baseline must share (issue 23)


def matched_fraction(saving: float, fractions: tuple[float, ...]) -> float:
    """f: the smallest declared fraction at or above the arm's cost C / B = 1 - saving; 1.0
    (the baseline itself) when none is."""
    need = 1 - saving
    return min((f for f in fractions if f >= need - 1e-12), default=1.0)


def matched_arm(fraction: float) -> str:
    """The arm that is the baseline given `fraction` of its budget: `baseline@budget=0.7`."""
    return BASELINE if fraction >= 1 else variant_name(BASELINE, {"budget": fraction})


@dataclass(frozen=True)
class Matched:
    """The arm's criterion at f x B against the final value of the baseline trained to f x B,
    per shared seed. `difference`: arm - matched baseline (negative: the arm is better);
    `upper`: its one-sided 95% upper bound; `target`: the arm's target T (the full baseline's
    mean final value)."""

    fraction: float
    arm: str
    n: int
    arm_at: Interval
    base_final: Interval
    difference: Interval
    upper: float
    target: float

    @property
    def better(self) -> bool:
        """The rule: at least MIN_SEEDS shared seeds and the one-sided upper bound below 0."""
        return self.n >= MIN_SEEDS and self.upper < 0

    def fmt(self) -> str:
        return (f"{self.arm}: {self.base_final.fmt(digits=4)} vs target {self.target:.4f}; "
                f"arm at {fmt_value(self.fraction)}B {self.arm_at.mean:.4f}, arm - it "
                f"{self.difference.mean:+.4f} (one-sided 95% upper {self.upper:+.4f}, "
                f"n={self.n})")


def check(arm_runs: list[Run], matched_runs: list[Run], fraction: float, budget: float,
          target: float, y: str = "heldout_loss") -> Matched | None:
    """The check on the seeds both sides completed; None when no seed is shared. `budget`: B,
    the full baseline's mean final FLOPs."""
    base = {r.seed: r for r in matched_runs if r.complete}
    pairs = [(r, base[r.seed]) for r in sorted(arm_runs, key=lambda r: r.seed)
             if r.complete and r.seed in base]
    if not pairs:
        return None
    at = [value_at(a.curve, fraction * budget, "flops", y) for a, _ in pairs]
    final = [float(b.curve[-1].get(y, math.nan)) for _, b in pairs]
    d = difference(at, final, paired=True)[0]
    one_sided = difference(at, final, paired=True, confidence=1 - 2 * (1 - CONFIDENCE))[0]
    return Matched(fraction, matched_arm(fraction), d.n, mean_ci(at), mean_ci(final), d,
                   one_sided.high, target)


def verdict(v: str, m: Matched | None, fraction: float) -> str:
    """A verdict of `saves` or `meets claim` after the check: it stands when the arm beats the
    matched baseline; else 'no saving against a matched baseline'; unchecked (and said so)
    when the matched baseline has not run on enough shared seeds. Other verdicts pass as
    they are."""
    if not is_saving(v):
        return v
    name = matched_arm(fraction)
    if m is None or m.n < MIN_SEEDS:
        have = 0 if m is None else m.n
        return f"{v} (unchecked: {name} on {have} of the arm's seeds, {MIN_SEEDS} needed)"
    return v if m.better else "no saving against a matched baseline"


__all__ = ["MIN_SEEDS", "Matched", "check", "matched_arm", "matched_fraction", "verdict"]
