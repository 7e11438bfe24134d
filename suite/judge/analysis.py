"""Savings of an arm against the baseline, over seeds, from run curves.

The estimator, written down before the reference runs it judges (issue 12; the study behind it is
docs/statistics.md). "pt" = percentage points of saving; B = the baseline's budget.

Target quality
    T = the baseline's final value of the criterion (held-out loss, or training loss evaluated on
    a fixed subset of the training split), mean over its seeds.

Saving to reach the target: the mean-curve crossing
    - The arm's seeds share one evaluation grid (the same plan evaluates at the same steps). Its
      mean curve is the mean over seeds at each evaluation; on the wall-time axis x is the mean
      wall time at each evaluation.
    - Only evaluations of the target model count (level 1). A crossing is interpolated linearly
      between two consecutive level-1 evaluations only: never across a coarse phase of a
      V-cycle, where the level-1 model does not exist; a segment that starts below the target
      (right after a transfer) crosses at its first point.
    - The arm's cost C is the first x where its mean curve reaches T. The baseline's cost is its
      budget B: its mean curve ends at T by the definition of T, so no baseline seed is ever
      extrapolated. Saving = 1 - C / B.
    - An arm is extrapolated by at most EXTRAPOLATION (10%) of B past its end, along the
      least-squares slope of its mean curve over its last SLOPE_WINDOW (10%) of B, each seed
      shifted parallel to it, and only where that slope falls. Every estimate or interval end read
      off that stretch is flagged (†) and counted. An arm whose mean curve does not reach T within
      its run and that stretch is a *miss*: "not reached within X% more FLOPs than the baseline"
      (X = (the arm's budget + the stretch) / B - 1), verdict "no saving". The estimator never
      returns n/a.
    - 95% interval by test inversion: the compute values c at which the arm's mean loss is not
      significantly different from T (two-sided t at 5% per evaluation, linear between them).
      Paired where arm and baseline share their seeds (seed n of both has the same
      initialisation and batch stream, as every manifest's `pairing` records): per seed
      d_s(c) = y_arm,s(c) - y_base,s(end), t with n - 1 df. Otherwise Welch (unpaired, Welch-
      Satterthwaite df); the tables say which. The interval's upper end in saving is where the
      lower band first reaches T; its lower end where the upper band does. Between evaluations
      each seed is interpolated linearly (DENSE points per interval), so the band at any compute
      is the exact t band of the interpolated seeds. When the upper band does not reach T
      within the run and its extrapolation, the lower end is *censored* (‡): flagged in every
      table and counted; verdicts read it as -inf.
    - Standard error for the gate (delta method): se(saving) = se(d at C) / (|slope at C| x B),
      slope of the arm's mean curve in nats per unit x; df as above.
    - Wall time: the same crossing on the mean wall-time axis, widened in quadrature by the
      seed-to-seed noise of the arm's and the baseline's total wall time.

Quality at equal FLOPs (co-primary)
    The criterion interpolated at the baseline's budget (or where the shortest run ends if
    earlier), arm minus baseline, paired per seed where seeds pair (else Welch): nats, and bits
    per byte where the data has a byte count.

Matched budget (issue 23; suite/judge/matched.py), declared before the tuned re-runs
    A saving says the arm reaches T at C < B. The counter-question: does the baseline reach it
    too when it is given C and a schedule that ends at C? For an arm whose verdict below is
    `saves` or `meets claim` (FLOPs axis, each criterion):
    - f = the smallest of the benchmark's [gate] matched_budgets at or above C / B = 1 - the
      saving's mean; 1.0 (the baseline itself) when none is. The matched baseline is the arm
      `baseline@budget=f`: the baseline's whole plan and schedule made for f x its steps;
    - on the seeds the arm and it share (at least 5), per seed d = the arm's criterion at
      f x B (interpolated on its curve) - the matched baseline's final value: both at the same
      FLOPs, the baseline with its schedule ended there;
    - the verdict stands when the one-sided 95% upper bound of mean d (paired t, n - 1 df: the
      gate's confidence) is below 0: the arm beats a baseline given its compute. Otherwise the
      verdict is "no saving against a matched baseline". With fewer than 5 shared seeds, the
      verdict is kept and marked "unchecked", naming the runs that are missing.

Verdicts (each benchmark's [gate] table holds tolerance, max_interval, min_seeds)
    - fewer completed seeds than min_seeds: inconclusive;
    - a miss, or the interval's upper end at or below 0: no saving;
    - lower end >= claim - tolerance: meets claim;
    - lower end > 0: saves; with a claim, "claim excluded" when the upper end is below
      claim - tolerance, else "claim not excluded";
    - the interval holds 0: inconclusive when wider than max_interval (or censored), else
      "no saving shown" (any saving is below the interval's upper end, which is stated).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from suite.judge.intervals import (  # re-exported: the estimator's vocabulary
    CONFIDENCE,
    Interval,
    _t,  # noqa: F401
    band,
    difference,  # noqa: F401
    mean_ci,  # noqa: F401
)
from suite.results import ResultsError, Run

AXES = ("flops", "flops_blocks", "wall_s")


# ------------------------------------------------------------------ curves on their grid

def value_at(curve: list[dict], at: float, x: str = "flops", y: str = "heldout_loss") -> float:
    """`y` linearly interpolated at `x = at`; nan beyond the curve's end (beyond by < 0.1% is the
    end itself, since budgets are compared across runs whose step costs round differently)."""
    pts = [(float(r[x]), float(r[y])) for r in curve if _num(r.get(y))]
    if not pts or at > pts[-1][0] * 1.001:
        return math.nan
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        if x0 <= at <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (at - x0) / (x1 - x0)
    return pts[-1][1] if at >= pts[-1][0] else pts[0][1]


def _num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def tail_drop(curve: list[dict], fraction: float = 0.2, y: str = "heldout_loss") -> float:
    """How far `y` fell over the last `fraction` of the run's FLOPs (level-1 points): above 0
    while the model still learns at the end; 0 or below once it has plateaued or overfits, which
    at a scale with too little data is what a too-long run shows."""
    pts = [r for r in curve if r.get("level", 1) == 1 and _num(r.get(y))]
    if len(pts) < 2:
        return math.nan
    return value_at(pts, pts[-1]["flops"] * (1 - fraction), y=y) - float(pts[-1][y])


@dataclass(frozen=True)
class Grid:
    """One arm's seeds on their shared evaluation grid (level-1 evaluations only).

    x: (m,) mean x per evaluation; y: (n, m) per seed; segment: (m,) id of the contiguous
    level-1 stretch each evaluation belongs to (a coarse phase starts a new one)."""

    x: np.ndarray
    y: np.ndarray
    segment: np.ndarray
    seeds: tuple[int, ...]
    x_end: np.ndarray  # (n,) each seed's last x (the arm's budget on this axis)


def grid(runs: list[Run], x: str, y: str) -> Grid:
    """The runs' curves on their shared grid; ResultsError when the seeds do not share one."""
    runs = sorted(runs, key=lambda r: r.seed)
    shape = [(p.get("step"), p.get("level", 1)) for p in runs[0].curve]
    for r in runs[1:]:
        if [(p.get("step"), p.get("level", 1)) for p in r.curve] != shape:
            raise ResultsError(f"{r.path}: its evaluations (step, level) differ from those of "
                               f"{runs[0].path}; the seeds of one arm must share a grid")
    keep, seg, s = [], [], 0
    for i, (_, level) in enumerate(shape):
        if level != 1:
            s += 1
            continue
        have = [x in r.curve[i] and _num(r.curve[i].get(y)) for r in runs]
        if not any(have):  # not logged there (e.g. a running training loss at step 0)
            continue
        if not all(have):
            bad = runs[have.index(False)]
            raise ResultsError(f"{bad.path}: curve.jsonl line {i + 1} lacks a finite {x!r} or "
                               f"{y!r} that the other seeds have")
        keep.append(i)
        seg.append(s)
    if not keep:
        raise ResultsError(f"{runs[0].path}: no level-1 evaluation has a finite {y!r}")
    xs = np.array([[float(r.curve[i][x]) for i in keep] for r in runs])
    ys = np.array([[float(r.curve[i][y]) for i in keep] for r in runs])
    return Grid(xs.mean(axis=0), ys, np.array(seg), tuple(r.seed for r in runs), xs[:, -1])


def crossing(x: np.ndarray, g: np.ndarray, segment: np.ndarray) -> tuple[float, int]:
    """First x where g <= 0, linear between consecutive points of one segment; a segment that
    starts at or below 0 crosses at its first point. Returns (x, index of the point at or after
    the crossing), or (inf, -1) when g never reaches 0."""
    for i in range(len(g)):
        if g[i] <= 0:
            if i == 0 or segment[i] != segment[i - 1] or g[i - 1] <= 0:
                return float(x[i]), i
            return float(x[i - 1] + (x[i] - x[i - 1]) * g[i - 1] / (g[i - 1] - g[i])), i
    return math.inf, -1


# ------------------------------------------------------------------ the estimator

@dataclass(frozen=True)
class Saving:
    """1 - C / B with its 95% interval (test inversion) and delta-method se/df (the gate).

    miss: the arm's mean curve does not reach the target within its run and the bounded
    extrapolation (mean and high are then bounds: 1 - reach / B, an upper bound on the saving).
    extrapolated: how many of mean, low, high come from the extrapolated stretch (flag †).
    censored: the lower end lies past that stretch too (low is then only an upper bound on it)."""

    mean: float
    low: float
    high: float
    n: int
    se: float
    df: float
    paired: bool
    miss: bool = False
    censored: bool = False
    over_budget: float = 0.0  # (the arm's budget + extrapolation) / B - 1: a miss's "X% more"
    extrapolated: int = 0

    @property
    def width(self) -> float:
        return math.inf if self.censored or self.miss else self.high - self.low

    def fmt(self, axis: str = "FLOPs") -> str:
        if math.isnan(self.mean):
            return "not logged"
        if self.miss:
            if abs(self.over_budget) < 0.005:
                within = f"the baseline's {axis}"
            else:
                more = "more" if self.over_budget > 0 else "less"
                within = f"{abs(self.over_budget):.0%} {more} {axis} than the baseline"
            return f"miss: not reached within {within} (n={self.n})"
        lo = f"<{100 * self.low:.1f}‡" if self.censored else f"{100 * self.low:.1f}"
        flag = "†" if self.extrapolated else ""
        return f"{100 * self.mean:.1f}%{flag} [{lo}, {100 * self.high:.1f}] (n={self.n})"


NOT_LOGGED = Saving(math.nan, math.nan, math.nan, 0, math.inf, math.nan, False)
DENSE = 16  # points per evaluation interval: per-seed linear interpolation between evaluations
EXTRAPOLATION = 0.10  # of B past the arm's end, along its mean curve's end slope, at most


def dense(g: Grid, budget: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The grid with DENSE points per interval inside each segment (each seed interpolated
    linearly), and a tail of EXTRAPOLATION x budget past the end along the mean curve's end slope
    (each seed shifted parallel to it) when that slope falls. Returns x, y (n, M), segment ids
    and the last x that was measured."""
    xs, ys, seg = [g.x[:1]], [g.y[:, :1]], [g.segment[:1]]
    lam = np.arange(1, DENSE + 1) / DENSE
    for i in range(1, len(g.x)):
        if g.segment[i] == g.segment[i - 1]:
            xs.append(g.x[i - 1] + lam * (g.x[i] - g.x[i - 1]))
            ys.append(g.y[:, i - 1:i] + lam * (g.y[:, i:i + 1] - g.y[:, i - 1:i]))
            seg.append(np.full(DENSE, g.segment[i]))
        else:
            xs.append(g.x[i:i + 1])
            ys.append(g.y[:, i:i + 1])
            seg.append(g.segment[i:i + 1])
    slope = local_slope(g.x, g.y.mean(axis=0), g.segment, len(g.x) - 1, budget)
    if slope < 0:
        step = EXTRAPOLATION * budget * lam
        xs.append(g.x[-1] + step)
        ys.append(g.y[:, -1:] + slope * step)
        seg.append(np.full(DENSE, g.segment[-1]))
    return np.concatenate(xs), np.concatenate(ys, axis=1), np.concatenate(seg), float(g.x[-1])


def saving(arm: Grid, base: Grid, paired: bool, budget: float,
           confidence: float = CONFIDENCE) -> Saving:
    """The mean-curve crossing of `arm` at the baseline's mean final value (see the module
    docstring). `budget` is B on this axis. Intervals need >= 2 seeds a side."""
    x, y, seg, measured = dense(arm, budget)
    d, se, df, half = band(y, base.y[:, -1], paired, confidence)
    n = arm.y.shape[0] if paired else min(arm.y.shape[0], base.y.shape[0])
    c, i = crossing(x, d, seg)
    reach = float(x[-1])
    over = reach / budget - 1
    c_first, _ = crossing(x, d - half, seg)  # the earliest compute consistent with T
    c_last, _ = crossing(x, d + half, seg)  # by then surely at T
    high = 1 - c_first / budget if math.isfinite(c_first) else -over
    if not math.isfinite(c):
        j = len(d) - 1
        return Saving(-over, -math.inf, high, n, _delta_se(arm, se[j], reach, budget),
                      float(df[j]), paired, miss=True, censored=True, over_budget=over)
    censored = not math.isfinite(c_last)
    low = -over if censored else 1 - c_last / budget
    extra = sum(v > measured for v in (c, c_first, c_last) if math.isfinite(v))
    return Saving(1 - c / budget, low, high, n, _delta_se(arm, se[i], c, budget), float(df[i]),
                  paired, censored=censored, over_budget=over, extrapolated=extra)


SLOPE_WINDOW = 0.1  # of B on each side: the slope of a mean curve is fitted over this much


def local_slope(x: np.ndarray, y: np.ndarray, segment: np.ndarray, i: int,
                budget: float) -> float:
    """Least-squares slope of y over the points of i's segment within SLOPE_WINDOW x budget of
    x[i] (at least i's neighbours in the segment): one interval's slope is as noisy as two
    evaluations; nan when the segment has a single point."""
    same = np.flatnonzero(segment == segment[i])
    near = same[np.abs(x[same] - x[i]) <= SLOPE_WINDOW * budget]
    pos = int(np.searchsorted(same, i))
    near = np.union1d(near, same[max(0, pos - 1): pos + 2])
    if len(near) < 2 or np.ptp(x[near]) <= 0:
        return math.nan
    slope = float(np.polyfit(x[near] - x[i], y[near], 1)[0])
    # a change over the window below float noise is no change: FLOP axes reach 1e15 and more
    if abs(slope) * float(np.ptp(x[near])) <= 1e-9 * max(1.0, float(np.abs(y[near]).max())):
        return 0.0
    return slope


def _delta_se(arm: Grid, se: float, c: float, budget: float) -> float:
    """se of the difference at the crossing c over the local slope of the arm's mean curve
    there (at the evaluation nearest c), in saving units; inf when the curve does not fall there
    (no test is possible)."""
    i = int(np.argmin(np.abs(arm.x - min(c, arm.x[-1]))))
    slope = local_slope(arm.x, arm.y.mean(axis=0), arm.segment, i, budget)
    if not slope < 0 or not math.isfinite(se):
        return math.inf
    return float(se) / (-slope * budget)


def _widen_by_wall_noise(s: Saving, arm: Grid, base: Grid,
                         confidence: float = CONFIDENCE) -> Saving:
    """Wall time: add the seed-to-seed noise of total wall time (arm and baseline) to the
    interval and se, in quadrature (relative noise of a ratio of means)."""
    a, b = arm.x_end, base.x_end
    if len(a) < 2 or len(b) < 2 or s.miss:
        return s
    rel = math.sqrt(a.var(ddof=1) / (len(a) * a.mean() ** 2)
                    + b.var(ddof=1) / (len(b) * b.mean() ** 2)) * (1 - s.mean)
    half = _t(max(1, min(len(a), len(b)) - 1), confidence) * rel
    low = s.mean - math.hypot(s.mean - s.low, half) if not s.censored else s.low
    high = s.mean + math.hypot(s.high - s.mean, half)
    return Saving(s.mean, low, high, s.n, math.hypot(s.se, rel), s.df, s.paired, s.miss,
                  s.censored, s.over_budget)


@dataclass
class Comparison:
    arm: str
    criterion: str  # the curve field judged: heldout_loss or train_loss
    target: float
    arm_seeds: list[int]
    base_seeds: list[int]
    paired: bool
    flops_saving: Saving
    flops_blocks_saving: Saving  # paper 2's convention: residual blocks only
    wall_saving: Saving
    loss_at_equal_flops: Interval  # arm minus baseline, nats; negative is better
    bpb_at_equal_flops: Interval | None  # the same in bits per byte, where the data has bytes
    arm_final: Interval
    base_final: Interval

    @property
    def savings(self) -> tuple[Saving, Saving, Saving]:
        return (self.flops_saving, self.flops_blocks_saving, self.wall_saving)

    @property
    def censored(self) -> int:
        """Interval ends censored past the extrapolated stretch (flagged ‡ in tables)."""
        return sum(s.censored and not s.miss for s in self.savings)

    @property
    def extrapolated(self) -> int:
        """Estimates and interval ends read off the bounded extrapolation (flagged †)."""
        return sum(s.extrapolated for s in self.savings)


def pairs(arm_runs: list[Run], base_runs: list[Run]) -> bool:
    """Whether seed n of the arm and of the baseline share initialisation and batch stream for
    every n: the same seed set, and manifests that say so (`pairing`; a manifest from before
    that field was written used its seed for both, as the runner always has)."""
    def key(r: Run) -> tuple:
        p = r.manifest.get("pairing") or {"init_seed": r.seed, "batch_seed": r.seed}
        return (p.get("init_seed"), p.get("batch_seed"))

    a = sorted(key(r) for r in arm_runs)
    b = sorted(key(r) for r in base_runs)
    return len(a) > 1 and a == b and None not in {k for t in a for k in t}


def compare(arm_runs: list[Run], base_runs: list[Run], target: float | None = None,
            y: str = "heldout_loss") -> Comparison:
    """Savings of `arm_runs` against `base_runs` (completed runs of one benchmark and scale) on
    criterion `y`. Raises ValueError for incomplete runs or an empty side, ResultsError for
    curves that lack the criterion."""
    for r in arm_runs + base_runs:
        if not r.complete:
            raise ValueError(f"{r.path}: status {r.status!r}; only completed runs are compared")
    if not arm_runs or not base_runs:
        raise ValueError("compare needs at least one completed run on each side")
    arm_runs = sorted(arm_runs, key=lambda r: r.seed)
    base_runs = sorted(base_runs, key=lambda r: r.seed)
    paired = pairs(arm_runs, base_runs)
    out = {}
    for x in AXES:
        if not all(x in row for r in arm_runs + base_runs for row in r.curve):
            out[x] = NOT_LOGGED  # runs from before that axis was logged
            continue
        a, b = grid(arm_runs, x, y), grid(base_runs, x, y)
        if target is not None:  # a declared target: the baseline's end is replaced by it
            b = Grid(b.x, np.full_like(b.y, target), b.segment, b.seeds, b.x_end)
        s = saving(a, b, paired, float(b.x_end.mean()))
        out[x] = _widen_by_wall_noise(s, a, b) if x == "wall_s" else s
    base_final = [float(r.curve[-1][y]) for r in base_runs]
    budget = min(float(np.mean([r.curve[-1]["flops"] for r in base_runs])),
                 *(float(r.curve[-1]["flops"]) for r in arm_runs + base_runs))
    la = [value_at(r.curve, budget, "flops", y) for r in arm_runs]
    lb = [value_at(r.curve, budget, "flops", y) for r in base_runs]
    bpb = None
    field = {"heldout_loss": "heldout_bpb", "train_loss": "train_bpb"}.get(y)
    last = base_runs[0].curve[-1]
    if field and _num(last.get(field)) and _num(last.get(y)) and last[y]:
        k = float(last[field]) / float(last[y])  # bits per byte per nat: fixed by the data
        bpb = difference([k * v for v in la], [k * v for v in lb], paired)[0]
    return Comparison(
        arm=arm_runs[0].manifest["arm_name"], criterion=y,
        target=float(np.mean(base_final)) if target is None else target,
        arm_seeds=[r.seed for r in arm_runs], base_seeds=[r.seed for r in base_runs],
        paired=paired, flops_saving=out["flops"], flops_blocks_saving=out["flops_blocks"],
        wall_saving=out["wall_s"], loss_at_equal_flops=difference(la, lb, paired)[0],
        bpb_at_equal_flops=bpb,
        arm_final=mean_ci([r.curve[-1].get(y) for r in arm_runs]),
        base_final=mean_ci(base_final),
    )


# ------------------------------------------------------------------ verdicts

def is_saving(verdict_text: str) -> bool:
    """Whether a verdict (as `verdict` gives it, or qualified after it: "saves (unchecked:
    ...)", "meets claim (not the paper's setting)") says the arm saves: `saves ...` or
    `meets claim`. The one test of it: the matched-budget check and the report ask it."""
    return verdict_text.startswith(("saves", "meets claim"))


def verdict(s: Saving, claim: float | None, tolerance: float, min_seeds: int,
            max_interval: float) -> str:
    """The rule of the module docstring, declared in each benchmark's [gate] table."""
    if s.n < min_seeds:
        return f"inconclusive (n={s.n} < {min_seeds} seeds)"
    if s.miss:
        return "no saving (miss)"
    if s.high <= 0:
        return "no saving"
    low = -math.inf if s.censored else s.low
    if claim is not None and low >= claim - tolerance:
        return "meets claim"
    if low > 0:
        if claim is None:
            return "saves"
        return ("saves, claim excluded" if s.high < claim - tolerance
                else "saves, claim not excluded")
    if s.width > max_interval:
        return "inconclusive"
    return f"no saving shown (< {100 * s.high:.1f} pt)"
