"""The power analysis: how noisy one seed's saving is at the crossing, how wide its interval is
now, and how many seeds a wanted half-width needs (`python -m suite power`, the report's
"Seeds and noise" tables, the seeds each definition declares)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from suite.judge.analysis import Comparison, Grid, crossing, local_slope
from suite.judge.intervals import CONFIDENCE, _t, band
from suite.spec import BASELINE, CRITERIA

MAX_SEEDS = 200


def seeds_for(sd: float, slope_budget: float, half_width: float, paired: bool,
              sd_base: float = 0.0, max_seeds: int = MAX_SEEDS,
              confidence: float = CONFIDENCE) -> int | None:
    """Smallest n (seeds per arm) whose 95% half-width of a saving, t(n-1) x sd / sqrt(n) /
    (|slope| x B), is at most `half_width`. Paired: sd of the per-seed difference; unpaired: arm
    sd with `sd_base` the baseline's, n seeds a side. None beyond max_seeds."""
    if not slope_budget > 0:
        return None
    for n in range(2, max_seeds + 1):
        s = sd / math.sqrt(n) if paired else math.sqrt((sd**2 + sd_base**2) / n)
        if _t(n - 1, confidence) * s / slope_budget <= half_width:
            return n
    return None


@dataclass(frozen=True)
class Power:
    arm: str
    criterion: str
    n: int
    paired: bool
    noise_nats: float  # SD over seeds at the crossing (paired: of the difference)
    noise_pt: float  # the same in points of saving
    half_width: float  # of the interval at n seeds (fraction); inf when censored or a miss
    seeds_needed: int | None  # for a half-width of `goal`


def power(c: Comparison, arm: Grid, base: Grid, goal: float = 0.05) -> Power:
    """Noise and seeds of one comparison on FLOPs: the observed SD at the crossing (or the run's
    end for a miss), the half-width now, and the seeds a half-width of `goal` needs. Raises
    ValueError with fewer than two seeds a side (no spread to measure)."""
    if min(arm.y.shape[0], base.y.shape[0]) < 2:
        raise ValueError(f"power needs two seeds or more a side, got {arm.y.shape[0]} and "
                         f"{base.y.shape[0]}")
    s = c.flops_saving
    budget = float(base.x_end.mean())
    d, se, _, _ = band(arm.y, base.y[:, -1], c.paired)
    _, i = crossing(arm.x, d, arm.segment)
    i = len(d) - 1 if i < 0 else i
    sd = float(se[i]) * math.sqrt(s.n) if c.paired else float(np.std(arm.y[:, i], ddof=1))
    sd_base = 0.0 if c.paired else float(np.std(base.y[:, -1], ddof=1))
    slope = local_slope(arm.x, arm.y.mean(axis=0), arm.segment, i, budget)
    slope_b = -slope * budget if slope < 0 else math.nan
    noise = math.hypot(sd, sd_base)
    need = seeds_for(sd, slope_b, goal, c.paired, sd_base) if slope_b > 0 else None
    hw = math.inf if s.miss or s.censored else (s.high - s.low) / 2
    return Power(c.arm, c.criterion, s.n, c.paired, noise,
                 noise / slope_b if slope_b > 0 else math.inf, hw, need)


def end_slope(g: Grid) -> float:
    """|slope| x B of a mean curve at its end (nats per whole budget; local_slope); nan when it
    does not fall there."""
    b = float(g.x_end.mean())
    slope = local_slope(g.x, g.y.mean(axis=0), g.segment, len(g.x) - 1, b)
    return -slope * b if slope < 0 else math.nan


def baseline_power(g: Grid, goal: float = 0.05) -> Power:
    """Baseline against baseline on other seeds (unpaired): the noise of its final loss, and the
    seeds per side that give a half-width of `goal` at the slope of its mean curve's end.
    Raises ValueError with fewer than two seeds (no other seed to compare with)."""
    n = g.y.shape[0]
    if n < 2:
        raise ValueError(f"baseline against itself needs two seeds or more, got {n}")
    sd = float(np.std(g.y[:, -1], ddof=1))
    slope_b = end_slope(g)
    need = seeds_for(sd, slope_b, goal, False, sd) if math.isfinite(slope_b) else None
    noise_pt = math.sqrt(2) * sd / slope_b if math.isfinite(slope_b) else math.inf
    return Power(BASELINE, CRITERIA["heldout_loss"], n, False, sd, noise_pt, math.nan, need)

