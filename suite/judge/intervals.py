"""Means and differences of means over seeds with their t intervals: the arithmetic every
saving, every table cell "mean [95% interval] (n=...)" and the gate's statistical tier share."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

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
        if not math.isfinite(self.low) or not math.isfinite(self.high):
            return f"{k * self.mean:.{digits}f}{unit} (n={self.n})"
        return (f"{k * self.mean:.{digits}f}{unit} [{k * self.low:.{digits}f}, "
                f"{k * self.high:.{digits}f}] (n={self.n})")


def _t(df: float, confidence: float = CONFIDENCE) -> float:
    return float(stats.t.ppf(0.5 + confidence / 2, df))


def mean_ci(values: list[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean with a Student-t interval; non-finite and missing values are left out; the interval
    is (-inf, inf) with fewer than two values."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    m = float(x.mean())
    if len(x) < 2:
        return Interval(m, -math.inf, math.inf, 1)
    half = _t(len(x) - 1, confidence) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return Interval(m, m - half, m + half, len(x))


def band(y: np.ndarray, base_end: np.ndarray, paired: bool,
         confidence: float = CONFIDENCE) -> tuple[np.ndarray, ...]:
    """Per point: mean difference to the target (arm y (n, M) against the baseline's final
    values (n_b,)), its se, df and half-width (inf with fewer than two seeds a side)."""
    n, nb = y.shape[0], len(base_end)
    d = y.mean(axis=0) - base_end.mean()
    if paired:
        se = (y - base_end[:, None]).std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else None
        df = np.full(d.shape, float(n - 1))
    elif n > 1 and nb > 1:
        va, vb = y.var(axis=0, ddof=1) / n, base_end.var(ddof=1) / nb
        se = np.sqrt(va + vb)
        with np.errstate(invalid="ignore", divide="ignore"):
            df = np.where(se > 0, (va + vb) ** 2 / (va**2 / (n - 1) + vb**2 / (nb - 1)),
                          float(min(n, nb) - 1))
    else:
        se = None
    if se is None:
        inf = np.full(d.shape, math.inf)
        return d, inf, np.full(d.shape, math.nan), inf
    return d, se, df, stats.t.ppf(0.5 + confidence / 2, df) * se


def difference(a: list[float], b: list[float], paired: bool,
               confidence: float = CONFIDENCE) -> tuple[Interval, float, float]:
    """mean(a) - mean(b): paired t (a[i] and b[i] share seed i) or Welch. Returns the interval,
    its standard error and degrees of freedom (inf se with fewer than two values a side)."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    if paired:
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
    else:
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    n = len(x) if paired else min(len(x), len(y))
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0), math.inf, math.nan
    d, se, df, half = (float(v[0]) for v in band(x[:, None], y, paired, confidence))
    if not math.isfinite(se):
        return Interval(d, -math.inf, math.inf, n), math.inf, math.nan
    return Interval(d, d - half, d + half, n), se, df


def welch_difference(a: list[float], b: list[float], confidence: float = CONFIDENCE) -> Interval:
    """mean(a) - mean(b) with a Welch t interval."""
    return difference(a, b, paired=False, confidence=confidence)[0]

