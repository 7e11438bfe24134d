"""The tables of `python -m suite compare` (every run of a results folder and every arm's
saving against its baseline) and `python -m suite power` (the noise per seed and the seeds a
wanted interval needs), as text."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from suite.judge.claims import load_claims
from suite.judge.report import RUN_HEADERS, flop_conventions, run_rows
from suite.judge.savings import (
    POWER_HEADERS,
    group_runs,
    is_matched_baseline,
    power_rows,
    saving_cells,
    savings,
)
from suite.results import ResultsError, Run, find_runs
from suite.spec import CRITERIA

SAVING_HEADERS = ["scale", "benchmark", "arm", "criterion", "target", "pairing",
                  "FLOPs saved to target", "FLOPs saved, blocks only", "wall time saved to target",
                  "criterion at equal FLOPs (arm - baseline)"]


def comparison_tables(runs: list[Run]) -> tuple[list[list], list[list], list[str]]:
    """Rows of runs, of savings against the baseline, and notes, for every scale and benchmark
    of `runs`. Only completed runs count; the others are named in the notes."""
    groups: dict[tuple[str, str], dict[str, list]] = {}
    for r in runs:
        scale, bench, arm = r.key
        groups.setdefault((scale, bench), {}).setdefault(arm, []).append(r)
    run_table, saving_rows, notes = [], [], []
    for (scale, bench), arms in sorted(groups.items()):
        run_table += [[scale, bench, *row] for row in run_rows(arms)]
        found, n = savings(bench, arms, load_claims())
        notes += n
        for a in found:
            if is_matched_baseline(a.arm):  # the matched-budget check's, not a saving's
                continue
            for y, c in a.by_criterion.items():
                saving_rows.append([scale, bench, a.arm, CRITERIA[y], f"{c.target:.4f}",
                                    *saving_cells(c)])
    return run_table, saving_rows, notes


def render_comparison(root: Path) -> str:
    """`python -m suite compare`: the runs and savings tables of every run under `root`, their
    notes and how to read them. Raises ResultsError when there is no run."""
    runs = find_runs(root)
    runs_rows, saving_rows, notes = comparison_tables(runs)
    if not runs_rows:
        raise ResultsError(f"{root}: no runs found")
    out = [tabulate(runs_rows, ["scale", "benchmark", *RUN_HEADERS], tablefmt="github")]
    if saving_rows:
        out += ["", "Savings against the baseline (mean [95% interval] over seeds):", "",
                tabulate(saving_rows, SAVING_HEADERS, tablefmt="github")]
    out += [""] + [f"- {n}" for n in notes] + ([""] if notes else [])
    out += [*flop_conventions(runs),
            "Savings: where the arm's mean curve reaches the baseline's mean final value; 95% "
            "intervals by test inversion, paired by seed where seeds pair "
            "(suite/judge/analysis.py). "
            "A miss did not reach the target within its run; ‡: a lower end censored at the "
            "run's end. A fall over the last 20% of FLOPs at or below 0 means held-out loss had "
            "stopped falling."]
    return "\n".join(out)


def power_report(results: Path, goal: float) -> str:
    """`python -m suite power`: per benchmark of a scale folder (or of every scale folder under
    a results root), the noise per seed at the crossing and the seeds a 95% half-width of
    `goal` (a fraction of the baseline's budget) needs. Raises ResultsError when no runs are
    found."""
    folders = [results] if any(results.glob("*/*/seed-*/manifest.json")) else sorted(
        p for p in results.iterdir() if p.is_dir() and any(p.glob("*/*/seed-*/manifest.json"))
    ) if results.is_dir() else []
    if not folders:
        raise ResultsError(f"{results}: no runs found (a scale folder such as results/tiny, or "
                           "a results root that holds one)")
    out = []
    for folder in folders:
        for bench, arms in group_runs(folder).items():
            found, _ = savings(bench, arms, load_claims())
            out += [f"\n## {folder.name}/{bench}\n",
                    tabulate(power_rows(found, goal), POWER_HEADERS, tablefmt="github")]
    out.append(f"\nNoise: SD over seeds at the crossing of the arm's mean curve with the target "
               f"(paired: of the arm - baseline difference). Seeds for a 95% half-width of "
               f"±{100 * goal:.0f} pt of FLOPs saved: t(n-1) x noise / sqrt(n) / (|slope| x B) "
               "(suite/judge/analysis.py: seeds_for).")
    return "\n".join(out)
