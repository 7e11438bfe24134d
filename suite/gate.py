"""The regression gate: fresh runs against the committed reference runs of the same scale.

Exit 0: every reference (benchmark, arm, seed) has a completed fresh run and no saving fell
significantly below the committed one by more than the benchmark's declared tolerance.
Exit 1: a regression, or a fresh run that is missing, incomplete or diverged.
Exit 2: unusable input (no runs, unreadable files): raised as ResultsError by the caller.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from suite import analysis
from suite.results import ResultsError, Run, find_runs

HEADERS = ["benchmark", "arm", "check", "reference", "fresh", "tolerance", "result"]


def _index(root: Path) -> dict[tuple[str, str], dict[int, Run]]:
    out: dict[tuple[str, str], dict[int, Run]] = {}
    for r in find_runs(root):
        out.setdefault((r.manifest["benchmark"], r.manifest["arm_name"]), {})[r.seed] = r
    return out


def check(fresh_root: Path, reference_root: Path, rules: dict[str, Any]) -> tuple[list, bool]:
    """Rows of what was checked, and whether everything passed."""
    ref, new = _index(reference_root), _index(fresh_root)
    if not ref:
        raise ResultsError(f"{reference_root}: no reference runs to gate against")
    if not new:
        raise ResultsError(f"{fresh_root}: no fresh runs")
    rows, ok = [], True
    for (bench, arm), seeds in sorted(ref.items()):
        fresh = new.get((bench, arm), {})
        for seed, r in sorted(seeds.items()):
            f = fresh.get(seed)
            if not r.complete:
                continue  # a reference that never completed is no reference
            status = "missing" if f is None else f.status
            if status != "completed":
                rows.append([bench, arm, f"seed {seed} ran", "completed", status, "-", "FAIL"])
                ok = False
        if arm == "baseline" or bench not in rules:
            continue
        rule = rules[bench]

        def done(index: dict, a: str, b: str = bench) -> list[Run]:
            return [r for r in index.get((b, a), {}).values() if r.complete]

        if not (done(ref, arm) and done(ref, "baseline") and done(new, arm)
                and done(new, "baseline")):
            continue
        c_ref = analysis.compare(done(ref, arm), done(ref, "baseline"))
        c_new = analysis.compare(done(new, arm), done(new, "baseline"))
        for name, r_iv, n_iv, tol, better in (
            ("FLOPs saved to target", c_ref.flops_saving, c_new.flops_saving, rule.tolerance,
             True),
            ("held-out loss at equal FLOPs", c_ref.loss_at_equal_flops,
             c_new.loss_at_equal_flops, rule.loss_tolerance, False),
        ):
            pct = name.startswith("FLOPs")
            if math.isnan(r_iv.mean):  # the reference never reached the target either
                result = "pass (no reference value)"
            elif math.isnan(n_iv.mean):  # the reference did, the fresh runs do not
                result, ok = "FAIL", False
            else:
                fell = analysis.fell_below(n_iv, r_iv, tol, better)
                result = "FAIL" if fell else "pass"
                ok &= not fell
            rows.append([bench, arm, name, r_iv.fmt(pct=pct, digits=1 if pct else 4),
                         n_iv.fmt(pct=pct, digits=1 if pct else 4),
                         f"{tol:.0%}" if pct else f"{tol} nats", result])
    return rows, ok
