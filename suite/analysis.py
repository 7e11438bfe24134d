"""Savings of an arm against the baseline, over seeds, from run curves.

Decision rules, written down before any run:
- Target quality: the baseline's final held-out loss, mean over its seeds (or a declared value).
- Cost to reach the target: first evaluation of the target model (level 1; a coarse level of a
  V-cycle does not count) at or below it, linearly interpolated between the
  two evaluations that bracket it (FLOPs or training wall time on the x axis). A run that ends
  above the target is extrapolated along the least-squares slope of its last quarter of
  evaluations and flagged; a run whose tail is not improving never reaches it (cost = inf).
- Saving = 1 - mean(arm cost) / mean(baseline cost), both costs to the same target. Its 95%
  interval: delta method on the ratio of means, Welch-Satterthwaite degrees of freedom, Student t.
  Unpaired, so valid whether or not the two arms share seeds.
- Quality at equal cost: held-out loss of the arm minus the baseline's, both interpolated at the
  baseline's mean total FLOPs (or where the shortest run ends, if earlier), Welch t interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from suite.results import Run

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def fmt(self, pct: bool = False, digits: int = 1) -> str:
        k = 100.0 if pct else 1.0
        unit = "%" if pct else ""
        if not math.isfinite(self.mean):
            return "n/a"
        if not math.isfinite(self.low):
            return f"{k * self.mean:.{digits}f}{unit} (n={self.n})"
        return (f"{k * self.mean:.{digits}f}{unit} [{k * self.low:.{digits}f}, "
                f"{k * self.high:.{digits}f}] (n={self.n})")


def mean_ci(values: list[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean with a Student-t interval; the interval is (-inf, inf) with fewer than two values."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    m = float(x.mean())
    if len(x) < 2:
        return Interval(m, -math.inf, math.inf, 1)
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return Interval(m, m - half, m + half, len(x))


@dataclass(frozen=True)
class Cost:
    value: float  # inf when never reached
    extrapolated: bool


def cost_to_reach(curve: list[dict], target: float, x: str = "flops",
                  y: str = "heldout_loss") -> Cost:
    if any(x not in r for r in curve):  # a run from before that axis was logged
        return Cost(math.nan, False)
    # only the target model counts: a coarse level of a V-cycle reaching the loss is not it
    pts = [(float(r[x]), float(r[y])) for r in curve
           if r.get(y) is not None and r.get("level", 1) == 1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        if y1 <= target:
            if y0 <= target:
                return Cost(x0, False)
            return Cost(x0 + (x1 - x0) * (y0 - target) / (y0 - y1), False)
    if pts and pts[0][1] <= target:
        return Cost(pts[0][0], False)
    tail = pts[-max(3, len(pts) // 4):]
    if len(tail) < 2:
        return Cost(math.inf, False)
    xs, ys = np.array([p[0] for p in tail]), np.array([p[1] for p in tail])
    span = float(np.ptp(xs))
    slope = float(np.polyfit(xs - xs[0], ys, 1)[0]) if span > 0 else 0.0
    # a fall over the whole tail below float noise is no fall: FLOP axes reach 1e15 and more
    if slope * span >= -1e-9 * max(1.0, float(np.abs(ys).max())):
        return Cost(math.inf, True)
    return Cost(pts[-1][0] + (target - pts[-1][1]) / slope, True)


def value_at(curve: list[dict], at: float, x: str = "flops", y: str = "heldout_loss") -> float:
    """`y` linearly interpolated at `x = at`; nan beyond the curve's end (beyond by < 0.1% is the
    end itself, since budgets are compared across runs whose step costs round differently)."""
    pts = [(float(r[x]), float(r[y])) for r in curve if r.get(y) is not None]
    if not pts or at > pts[-1][0] * 1.001:
        return math.nan
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        if x0 <= at <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (at - x0) / (x1 - x0)
    return pts[-1][1] if at >= pts[-1][0] else pts[0][1]


def tail_drop(curve: list[dict], fraction: float = 0.2, y: str = "heldout_loss") -> float:
    """How far `y` fell over the last `fraction` of the run's FLOPs (level-1 points): above 0
    while the model still learns at the end; 0 or below once it has plateaued or overfits, which
    at a scale with too little data is what a too-long run shows."""
    pts = [r for r in curve if r.get("level", 1) == 1 and r.get(y) is not None]
    if len(pts) < 2:
        return math.nan
    return value_at(pts, pts[-1]["flops"] * (1 - fraction), y=y) - float(pts[-1][y])


def ratio_saving(arm: list[float], base: list[float], confidence: float = CONFIDENCE) -> Interval:
    """1 - mean(arm)/mean(base) with a delta-method, Welch-df interval."""
    a, b = np.asarray(arm, float), np.asarray(base, float)
    if len(a) == 0 or len(b) == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        # a cost that is never reached (inf) or was not logged (nan): no saving can be stated
        return Interval(math.nan, math.nan, math.nan, min(len(a), len(b)))
    ma, mb = float(a.mean()), float(b.mean())
    if mb == 0:  # the target was met before training: no saving is defined
        return Interval(math.nan, math.nan, math.nan, min(len(a), len(b)))
    r = ma / mb
    if len(a) < 2 or len(b) < 2:
        return Interval(1 - r, -math.inf, math.inf, min(len(a), len(b)))
    va, vb = a.var(ddof=1) / (len(a) * ma**2), b.var(ddof=1) / (len(b) * mb**2)
    if va + vb == 0:
        return Interval(1 - r, 1 - r, 1 - r, min(len(a), len(b)))
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * r * math.sqrt(va + vb)
    return Interval(1 - r, 1 - r - half, 1 - r + half, min(len(a), len(b)))


def welch_difference(a: list[float], b: list[float], confidence: float = CONFIDENCE) -> Interval:
    """mean(a) - mean(b) with a Welch t interval."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if len(x) == 0 or len(y) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    d = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return Interval(d, -math.inf, math.inf, min(len(x), len(y)))
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    if vx + vy == 0:
        return Interval(d, d, d, min(len(x), len(y)))
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(vx + vy)
    return Interval(d, d - half, d + half, min(len(x), len(y)))


@dataclass
class Comparison:
    arm: str
    target: float
    arm_seeds: list[int]
    base_seeds: list[int]
    flops_saving: Interval
    flops_blocks_saving: Interval  # paper 2's convention: residual blocks only
    wall_saving: Interval
    loss_at_equal_flops: Interval  # arm minus baseline; negative is better
    arm_final: Interval
    base_final: Interval
    arm_cost_flops: list[Cost] = field(default_factory=list)

    @property
    def extrapolated(self) -> int:
        return sum(c.extrapolated for c in self.arm_cost_flops)


def compare(arm_runs: list[Run], base_runs: list[Run], target: float | None = None,
            y: str = "heldout_loss") -> Comparison:
    """Savings of `arm_runs` against `base_runs` (completed runs of one benchmark and scale)."""
    for r in arm_runs + base_runs:
        if not r.complete:
            raise ValueError(f"{r.path}: status {r.status!r}; only completed runs are compared")
    if not arm_runs or not base_runs:
        raise ValueError("compare needs at least one completed run on each side")
    base_final = [r.curve[-1][y] for r in base_runs]
    target = float(np.mean(base_final)) if target is None else target
    costs = {}
    for side, runs in (("arm", arm_runs), ("base", base_runs)):
        costs[side] = {x: [cost_to_reach(r.curve, target, x, y) for r in runs]
                       for x in ("flops", "flops_blocks", "wall_s")}
    # equal FLOPs: the baseline's budget, or where the shortest run ends if that is earlier (a
    # plan fitted to the budget ends up to one step short of it)
    budget = min(float(np.mean([r.curve[-1]["flops"] for r in base_runs])),
                 *(float(r.curve[-1]["flops"]) for r in arm_runs + base_runs))
    return Comparison(
        arm=arm_runs[0].manifest["arm_name"],
        target=target,
        arm_seeds=[r.seed for r in arm_runs],
        base_seeds=[r.seed for r in base_runs],
        flops_saving=ratio_saving([c.value for c in costs["arm"]["flops"]],
                                  [c.value for c in costs["base"]["flops"]]),
        flops_blocks_saving=ratio_saving([c.value for c in costs["arm"]["flops_blocks"]],
                                         [c.value for c in costs["base"]["flops_blocks"]]),
        wall_saving=ratio_saving([c.value for c in costs["arm"]["wall_s"]],
                                 [c.value for c in costs["base"]["wall_s"]]),
        loss_at_equal_flops=welch_difference(
            [value_at(r.curve, budget, "flops", y) for r in arm_runs],
            [value_at(r.curve, budget, "flops", y) for r in base_runs]),
        arm_final=mean_ci([r.curve[-1][y] for r in arm_runs]),
        base_final=mean_ci(base_final),
        arm_cost_flops=costs["arm"]["flops"],
    )


# ------------------------------------------------------------------ verdicts and the gate

def verdict(saving: Interval, claim: float | None, tolerance: float, min_seeds: int,
            max_interval: float) -> str:
    """The rule every benchmark declares in its [gate] table, applied to one saving's 95%
    interval: inconclusive (too few seeds, no interval, one wider than max_interval, or one that
    holds both 0 and the claim less the tolerance: the data cannot tell them apart), no saving
    (the whole interval below 0), below claim (the whole interval below claim - tolerance), meets
    claim (above 0 and reaching claim - tolerance). Without a claim: "saves (no claim)" when the
    whole interval lies above 0."""
    if (saving.n < min_seeds or not math.isfinite(saving.low) or not math.isfinite(saving.high)
            or saving.high - saving.low > max_interval):
        return "inconclusive"
    if saving.high < 0:
        return "no saving"
    if claim is None:
        return "saves (no claim)" if saving.low > 0 else "inconclusive"
    if saving.high < claim - tolerance:
        return "below claim"
    return "meets claim" if saving.low > 0 else "inconclusive"


def _se(iv: Interval) -> float:
    """Standard error behind a 95% t interval (approximate df = n - 1)."""
    if iv.n < 2 or not math.isfinite(iv.high):
        return math.inf
    return (iv.high - iv.mean) / float(stats.t.ppf(0.5 + CONFIDENCE / 2, iv.n - 1))


def fell_below(fresh: Interval, reference: Interval, tolerance: float,
               higher_is_better: bool = True) -> bool:
    """One-sided test at 5%: is the fresh estimate significantly worse than the reference by
    more than `tolerance`? z = (fresh - (reference -/+ tol)) / sqrt(se_f^2 + se_r^2) against the
    one-sided t quantile with the smaller df. Not a bare difference of means: with wide
    intervals it does not fire; with identical runs it cannot."""
    sign = 1.0 if higher_is_better else -1.0
    margin = sign * (fresh.mean - reference.mean) + tolerance
    se = math.hypot(_se(fresh), _se(reference))
    if not math.isfinite(se):  # a single seed: no test, only the tolerance
        return margin < 0
    df = max(1, min(fresh.n, reference.n) - 1)
    return margin / se < -float(stats.t.ppf(0.95, df)) if se > 0 else margin < 0
