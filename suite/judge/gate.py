"""The regression gate: fresh runs against the committed reference runs of the same scale.

Two tiers (issue 12; error rates by simulation in suite/judge/simulate.py):

- Exact: where the fresh and reference runs of seed n share definition, library versions and
  device class (device name, threads, precision, processes, accumulation), their curves are
  compared evaluation by evaluation (every field but wall time). All identical: "numerics
  unchanged", and nothing more is needed. Otherwise the first evaluation that differs is named
  with the size of the difference, and the statistical tier decides.
- Statistical, for every arm including the baseline (each benchmark's [gate] table declares the
  tolerances):
  - non-baseline arms: "FLOPs saved to target" (held-out loss; suite/judge/analysis.py's estimator,
    its own se and df) must not have fallen by more than `tolerance`: one-sided Welch test at 5%
    of fresh - reference < -tolerance;
  - every arm: held-out loss at the baseline's budget must not have risen by more than the loss
    worth `budget_tolerance` of the budget on the reference baseline's mean curve (nats), paired
    by seed (fresh seed n against reference seed n): one-sided t at 5%;
  - the baseline: its cost to reach the reference baseline's final loss, as a saving against the
    reference baseline, must not have fallen below -tolerance (same test).

Exit 0: every reference run has a completed fresh run and nothing regressed. Exit 1: a
regression, or a fresh run that is missing, incomplete or diverged. Exit 2: unusable input (no
runs, unreadable files, fresh and reference runs of different definitions): raised as
ResultsError by the caller.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from suite.judge import analysis
from suite.judge.savings import is_matched_baseline
from suite.resolved import definition_difference
from suite.results import ResultsError, Run, find_runs, first_difference
from suite.spec import BASELINE, baseline_first

HEADERS = ["benchmark", "arm", "tier", "check", "reference", "fresh", "tolerance", "result"]
ALPHA = 0.05  # one-sided level of every statistical check
IGNORED_IN_EXACT = {"wall_s"}  # timing is never bit-identical


def _index(root: Path) -> dict[tuple[str, str], dict[int, Run]]:
    out: dict[tuple[str, str], dict[int, Run]] = {}
    for r in find_runs(root):
        out.setdefault((r.manifest["benchmark"], r.manifest["arm_name"]), {})[r.seed] = r
    return out


def check_definitions(fresh: Run, ref: Run) -> None:
    """Raise ResultsError (exit 2) naming the key where the resolved definitions differ. A key
    the schema gained after a run was recorded counts as its default there (resolved.defaults)."""
    if (key := definition_difference(fresh.manifest["definition"],
                                     ref.manifest["definition"])) is not None:
        raise ResultsError(f"{fresh.path}: its resolved definition differs from the reference "
                           f"{ref.path} at key {key!r}; a gate compares like with like")
    got, want = fresh.manifest.get("data", {}), ref.manifest.get("data", {})
    if got.get("source") != want.get("source"):  # e.g. a fallback data set where one is missing
        raise ResultsError(f"{fresh.path}: it read data {got.get('source')!r}, the reference "
                           f"{ref.path} read {want.get('source')!r} (key data.source); a gate "
                           "compares like with like")


def _device_class(r: Run) -> tuple:
    e, m = r.manifest["environment"], r.manifest
    return (tuple(sorted(e["versions"].items())), e["device_name"], e["threads"],
            m.get("precision"), m.get("world_size", 1), m.get("accum", 1))


def exact(fresh: Run, ref: Run) -> tuple[str, bool]:
    """(what the exact tier found, whether the curves are identical). Not comparable runs say
    why and count as not identical."""
    if _device_class(fresh) != _device_class(ref):
        diff = first_difference(dict(zip(("versions", "device", "threads", "precision",
                                          "processes", "accum"), _device_class(fresh),
                                         strict=True)),
                                dict(zip(("versions", "device", "threads", "precision",
                                          "processes", "accum"), _device_class(ref),
                                         strict=True)))
        return f"not comparable: {diff} differs", False
    if len(fresh.curve) != len(ref.curve):
        return f"{len(fresh.curve)} evaluations against {len(ref.curve)}", False
    for i, (f, r) in enumerate(zip(fresh.curve, ref.curve, strict=True)):
        for k in sorted((set(f) | set(r)) - IGNORED_IN_EXACT):
            if f.get(k) != r.get(k):
                a, b = f.get(k), r.get(k)
                size = (f" ({a - b:+.3g})" if isinstance(a, (int, float))
                        and isinstance(b, (int, float)) else "")
                return (f"first difference at evaluation {i + 1} (step {r.get('step')}): {k} "
                        f"{a!r} against {b!r}{size}"), False
    return "numerics unchanged", True


def fell_below(fresh: analysis.Saving, ref: analysis.Saving, tolerance: float,
               alpha: float = ALPHA) -> bool | None:
    """One-sided Welch test that the saving fell by more than `tolerance`: t = (fresh - ref +
    tolerance) / sqrt(se_f^2 + se_r^2) below -t(1 - alpha, Welch-Satterthwaite df).

    A fresh miss (its mean curve never reaches the target) has no standard error, but its mean
    is an upper bound on the saving (analysis.Saving): it is tested as a point at that bound
    against the reference's own noise, so a bound that fell by more than `tolerance` FAILs and
    one that did not passes. A reference miss is tested the same way, as a point at its bound
    against the fresh runs' noise (its true saving is at most the bound: the test can only
    err towards FAIL). None when no finite standard error is left (both misses, or one seed a
    side): no test is possible, and the gate says so (`_statistical`)."""
    if fresh.miss and math.isfinite(ref.se):
        fresh = dataclasses.replace(fresh, se=0.0, df=math.inf)
    elif ref.miss and math.isfinite(fresh.se):
        ref = dataclasses.replace(ref, se=0.0, df=math.inf)
    se2 = fresh.se**2 + ref.se**2
    if not math.isfinite(se2):
        return None
    margin = fresh.mean - ref.mean + tolerance
    if se2 == 0:
        return margin < 0
    parts = [(s.se**2, s.df) for s in (fresh, ref) if s.se > 0]
    df = se2**2 / sum(v**2 / max(d, 1.0) for v, d in parts)
    return margin / math.sqrt(se2) < -float(stats.t.ppf(1 - alpha, df))


def rose_above(fresh: list[float], ref: list[float], tolerance: float, paired: bool,
               alpha: float = ALPHA) -> bool:
    """One-sided test that mean(fresh) - mean(ref) > tolerance (paired t or Welch)."""
    iv, se, df = analysis.difference(fresh, ref, paired)
    if not math.isfinite(iv.mean):
        return True  # nothing finite to compare: the fresh runs did not produce a loss
    if not math.isfinite(se) or se == 0:
        return iv.mean > tolerance
    return (iv.mean - tolerance) / se > float(stats.t.ppf(1 - alpha, df))


def loss_tolerance(base: list[Run], fraction: float, y: str = "heldout_loss") -> float:
    """Nats that the last `fraction` of the budget is worth on the baseline's mean curve: how
    much its loss falls between (1 - fraction) x B and B (0 if it no longer falls)."""
    end = float(np.mean([r.curve[-1]["flops"] for r in base]))
    at = [analysis.value_at(r.curve, end * (1 - fraction), "flops", y) for r in base]
    fin = [float(r.curve[-1][y]) for r in base]
    return max(0.0, float(np.nanmean(at) - np.mean(fin)))


def _statistical(bench: str, arm: str, ref: list[Run], new: list[Run], ref_base: list[Run],
                 new_base: list[Run], rule: Any) -> tuple[list[list], bool, list[str]]:
    """Rows of the statistical tier for one arm, whether all passed, and what it could not
    test (a saving whose standard error is not finite, unless both are misses): never a pass."""
    rows, ok, untested = [], True, []
    # the baseline's budget, or where the shortest run ends if earlier (a V-cycle fitted to the
    # budget ends up to one step short of it), as analysis.compare does
    budget = min(float(np.mean([r.curve[-1]["flops"] for r in ref_base])),
                 *(float(r.curve[-1]["flops"]) for r in ref + new))
    tol_nats = loss_tolerance(ref_base, rule.budget_tolerance)
    by_seed = sorted({r.seed for r in ref} & {r.seed for r in new})
    paired = len(by_seed) == len(ref) == len(new) and len(by_seed) > 1
    lr = [analysis.value_at(r.curve, budget) for r in sorted(ref, key=lambda r: r.seed)]
    ln = [analysis.value_at(r.curve, budget) for r in sorted(new, key=lambda r: r.seed)]
    bad = rose_above(ln, lr, tol_nats, paired)
    ok &= not bad
    rows.append([bench, arm, "statistical", "held-out loss at the baseline's budget",
                 analysis.mean_ci(lr).fmt(digits=4), analysis.mean_ci(ln).fmt(digits=4),
                 f"+{tol_nats:.4f} nats ({rule.budget_tolerance:.0%} of B)",
                 "FAIL" if bad else "pass"])
    if is_matched_baseline(arm):  # a control given less budget: no saving of its own
        checks = []
    elif arm == BASELINE:
        checks = [("cost to reach the reference baseline's loss, as a saving",
                   ZERO,
                   analysis.compare(new, ref_base).flops_saving)]
    else:
        checks = [("FLOPs saved to target (held-out loss)",
                   analysis.compare(ref, ref_base).flops_saving,
                   analysis.compare(new, new_base).flops_saving)]
    for name, r_s, n_s in checks:
        fell = fell_below(n_s, r_s, rule.tolerance)
        if fell is None and r_s.miss and n_s.miss:
            result = "pass (both miss: no saving to lose; the loss is checked above)"
        elif fell is None:
            result = "not compared (no test: se not finite)"
            untested.append(f"{bench}/{arm} ({name}: no test, se not finite)")
        else:
            result = "FAIL" if fell else "pass"
        ok &= fell is not True
        rows.append([bench, arm, "statistical", name, r_s.fmt(), n_s.fmt(),
                     f"-{rule.tolerance:.0%}", result])
    return rows, ok, untested


# The reference baseline against its own target: a saving of 0 by definition. The fresh
# baseline's se (paired against the reference seeds) already holds the target's noise.
ZERO = analysis.Saving(0.0, 0.0, 0.0, 0, 0.0, math.inf, True)


def select(ref: dict[tuple[str, str], dict[int, Run]], benchmarks: list[str] | None,
           arms: list[str] | None, where: Path,
           seeds: list[int] | None = None) -> dict[tuple[str, str], dict[int, Run]]:
    """The reference runs a gate requires fresh runs for: all, or those of `benchmarks`,
    `arms` and `seeds` (a researcher re-runs what a change touched; one seed is enough for the
    exact tier). The baseline is required with any other arm: the statistical tier measures
    savings against it. Raises ResultsError naming a benchmark or arm the references do not
    hold."""
    for name, have in (("benchmark", {b for b, _ in ref}), ("arm", {a for _, a in ref})):
        asked = benchmarks if name == "benchmark" else arms
        if unknown := sorted(set(asked or ()) - have):
            raise ResultsError(f"{where}: no reference runs of {name} {', '.join(unknown)}; "
                               f"it holds {', '.join(sorted(have))}")
    if arms and BASELINE not in arms:
        raise ResultsError("--arms must include baseline: every other arm's saving is "
                           "measured against the fresh baseline")
    out = {(b, a): {n: r for n, r in s.items() if seeds is None or n in seeds}
           for (b, a), s in ref.items()
           if (not benchmarks or b in benchmarks) and (not arms or a in arms)}
    for (b, a), s in sorted(out.items()):
        if seeds is not None and (missing := sorted(set(seeds) - set(s))):
            held = ", ".join(str(n) for n in sorted(ref[(b, a)]))
            raise ResultsError(f"{where}: no reference run of {b}/{a} seed "
                               f"{', '.join(map(str, missing))}; it holds seeds {held}")
    return out


class NothingToCompare(ResultsError):
    """A gate that could not compare what it was asked to: an arm whose reference runs all
    ended otherwise than completed, or a statistical check without a completed baseline. Never
    a pass (exit 2); `rows` holds the table, with what was not compared named."""

    def __init__(self, message: str, rows: list[list]) -> None:
        super().__init__(message)
        self.rows = rows


def _incomplete_rows(bench: str, arm: str, seeds: dict[int, Run],
                     fresh: dict[int, Run]) -> list[list]:
    """A row per reference seed that did not complete: its status in the reference column,
    the fresh run's (or 'missing') in the fresh column."""
    return [[bench, arm, "runs", f"reference seed {n}", r.status,
             fresh[n].status if n in fresh else "missing", "-", "not compared"]
            for n, r in sorted(seeds.items()) if not r.complete]


def check(fresh_root: Path, reference_root: Path, rules: dict[str, Any],
          benchmarks: list[str] | None = None, arms: list[str] | None = None,
          seeds: list[int] | None = None) -> tuple[list, bool]:
    """Rows of what was checked, and whether everything passed: every reference run (or those
    of `benchmarks` and `arms`, see `select`) needs a completed fresh run. Raises ResultsError
    (exit 2) for unusable input, including fresh and reference runs of different
    definitions, and NothingToCompare when an arm, or its statistical check, had nothing to
    compare: a gate with zero checks is no pass (bats-core#1211). A reference seed that did not
    complete is named in the table as not compared."""
    ref, new = _index(reference_root), _index(fresh_root)
    if not ref:
        raise ResultsError(f"{reference_root}: no reference runs to gate against")
    ref = select(ref, benchmarks, arms, reference_root, seeds)
    if seeds is not None:  # both sides on the same seeds, not the fresh folder's all
        new = {k: {n: r for n, r in v.items() if n in seeds} for k, v in new.items()}
    if not new:
        raise ResultsError(f"{fresh_root}: no fresh runs")
    rows, ok, unusable = [], True, []
    for (bench, arm), seeds in sorted(ref.items(),
                                      key=lambda kv: (kv[0][0], *baseline_first(kv[0][1]))):
        fresh = new.get((bench, arm), {})
        rows += _incomplete_rows(bench, arm, seeds, fresh)
        found: list[tuple[int, str, bool]] = []
        for seed, r in sorted(seeds.items()):
            f = fresh.get(seed)
            if not r.complete:
                continue  # a reference that never completed is no reference
            if f is None or not f.complete:
                rows.append([bench, arm, "runs", f"seed {seed} ran", "completed",
                             "missing" if f is None else f.status, "-", "FAIL"])
                ok = False
                found.append((seed, "not run", False))
                continue
            check_definitions(f, r)
            found.append((seed, *exact(f, r)))
        if not found:  # no reference run of this arm completed: nothing to hold it to
            unusable.append(f"{bench}/{arm} (no completed reference run)")
            continue
        identical = all(same for _, _, same in found)
        differs = [(s, w) for s, w, same in found if not same and w != "not run"]
        seeds_txt = ",".join(str(s) for s, _, _ in found)
        if identical:
            rows.append([bench, arm, "exact", f"seeds {seeds_txt}", "-", "numerics unchanged",
                         "-", "pass"])
        elif differs:
            rows.append([bench, arm, "exact", f"seeds {seeds_txt}", "-",
                         f"seed {differs[0][0]}: {differs[0][1]}", "-",
                         "differs: statistical tier"])
        if identical or bench not in rules:
            continue
        done_ref = [r for r in seeds.values() if r.complete]
        done_new = [r for r in fresh.values() if r.complete]
        base_ref = [r for r in ref.get((bench, BASELINE), {}).values() if r.complete]
        base_new = [r for r in new.get((bench, BASELINE), {}).values() if r.complete]
        if not base_ref:  # a saving is against the baseline: no reference one, nothing to hold
            rows.append([bench, arm, "statistical", "against the baseline", "-",
                         "no completed reference baseline", "-", "not compared"])
            unusable.append(f"{bench}/{arm} (no completed reference baseline)")
            continue
        if not (done_ref and done_new and base_new):  # a fresh run missing: a FAIL row above
            continue
        got, good, untested = _statistical(bench, arm, done_ref, done_new, base_ref,
                                           base_new, rules[bench])
        rows += got
        ok &= good
        unusable += untested
    if unusable:
        raise NothingToCompare(f"{reference_root}: nothing to compare for "
                               f"{'; '.join(unusable)}", rows)
    return rows, ok
