"""Error rates of the estimator and the gate, by simulation from committed curves.

The noise model is drawn from the curves themselves: an arm's seeds on their shared grid give a
mean curve m and residual vectors r_k = y_k - m (k = 1..K seeds). A simulated seed is
m + sum_k w_k r_k with w_k ~ N(0, 1 / (K - 1)): a Gaussian with the sample covariance of the
committed seeds, so the correlation between evaluations of one seed (seed effects) is kept. Where
arm and baseline pair, one draw of w serves both, which keeps their correlation too. The truth is
the crossing of the noise-free mean curves (suite/judge/analysis.py's rule, same grid).

    python benchmarks/simulation.py results/tiny   # coverage, bias, gate false FAIL, detection
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from suite.judge import analysis
from suite.judge.analysis import Grid
from suite.judge.gate import fell_below
from suite.results import Run


@dataclass(frozen=True)
class Model:
    """Mean curves and residuals of an arm and its baseline (FLOPs axis, one criterion)."""

    arm: Grid
    base: Grid
    paired: bool

    @property
    def budget(self) -> float:
        return float(self.base.x_end.mean())

    def truth(self, stretch: float = 1.0) -> float:
        """Saving of the noise-free mean curves; `stretch` multiplies the arm's x axis."""
        d = self.arm.y.mean(axis=0) - self.base.y[:, -1].mean()
        c, _ = analysis.crossing(self.arm.x * stretch, d, self.arm.segment)
        return 1 - c / self.budget if math.isfinite(c) else -math.inf

    def draw(self, n: int, rng: np.random.Generator,
             stretch: float = 1.0) -> tuple[Grid, Grid]:
        """n simulated seeds of arm and baseline (the arm's x axis multiplied by `stretch`)."""
        ra = self.arm.y - self.arm.y.mean(axis=0)
        rb = self.base.y - self.base.y.mean(axis=0)
        wa = rng.normal(0, 1 / math.sqrt(len(ra) - 1), (n, len(ra)))
        wb = wa if self.paired else rng.normal(0, 1 / math.sqrt(len(rb) - 1), (n, len(rb)))
        arm = Grid(self.arm.x * stretch, self.arm.y.mean(axis=0) + wa @ ra, self.arm.segment,
                   tuple(range(n)), np.full(n, self.arm.x[-1] * stretch))
        base = Grid(self.base.x, self.base.y.mean(axis=0) + wb @ rb, self.base.segment,
                    tuple(range(n)), np.full(n, self.base.x[-1]))
        return arm, base


def model(arm_runs: list[Run], base_runs: list[Run], y: str = "heldout_loss") -> Model:
    """The noise model of one comparison (>= 2 completed seeds a side)."""
    return Model(analysis.grid(arm_runs, "flops", y), analysis.grid(base_runs, "flops", y),
                 analysis.pairs(arm_runs, base_runs))


def baseline_model(base_runs: list[Run], y: str = "heldout_loss") -> Model:
    """Baseline against baseline on other seeds: unpaired, the truth is a saving of 0."""
    g = analysis.grid(base_runs, "flops", y)
    return Model(g, g, paired=False)


@dataclass(frozen=True)
class Coverage:
    coverage: float  # share of draws whose interval holds the truth
    bias: float  # mean estimate - truth over draws that reached the target
    misses: float  # share of draws that were misses
    median_width: float  # of intervals (inf when censored or a miss)
    truth: float


def _check_draws(draws: int) -> None:
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}: a rate over no draw is none")


def coverage(m: Model, n: int, draws: int, rng: np.random.Generator) -> Coverage:
    """How often the 95% interval of `n` simulated seeds holds the true saving. Raises
    ValueError for fewer than one draw (a rate of nothing is no rate)."""
    _check_draws(draws)
    truth = m.truth()
    hit, est, miss, widths = 0, [], 0, []
    for _ in range(draws):
        a, b = m.draw(n, rng)
        s = analysis.saving(a, b, m.paired, m.budget)
        low = -math.inf if s.censored else s.low
        hit += low <= truth <= s.high
        widths.append(s.width)
        if s.miss:
            miss += 1
        else:
            est.append(s.mean)
    bias = float(np.mean(est) - truth) if est and math.isfinite(truth) else math.nan
    return Coverage(hit / draws, bias, miss / draws, float(np.median(widths)), truth)


def gate_fail_rate(m: Model, n: int, drop: float, tolerance: float, draws: int,
                   rng: np.random.Generator) -> float:
    """Share of gate checks that FAIL when the fresh saving is `drop` below the reference's
    (0: no regression): reference and fresh are independent draws of n seeds; the regression
    stretches the fresh arm's FLOPs axis so that its true saving falls by exactly `drop`.
    Raises ValueError for fewer than one draw."""
    _check_draws(draws)
    truth = m.truth()
    stretch = 1 + drop / (1 - truth)
    fails = 0
    for _ in range(draws):
        ra, rb = m.draw(n, rng)
        fa, fb = m.draw(n, rng, stretch)
        ref = analysis.saving(ra, rb, m.paired, m.budget)
        new = analysis.saving(fa, fb, m.paired, m.budget)
        fails += fell_below(new, ref, tolerance) is True
    return fails / draws
