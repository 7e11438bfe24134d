"""The old and the new estimator of "saved to reach the baseline's quality" on the same committed
curves (issue 12): per benchmark, arm and criterion, 563e08b's per-seed crossing with a
delta-method Welch interval beside suite/judge/analysis.py's mean-curve crossing with its paired
test-inversion interval, and the widths. `python benchmarks/estimators.py results/tiny --out
results/estimators.md`. The old module is read from git (commit OLD), not copied.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

from suite.judge import analysis
from suite.judge.report import group_runs
from suite.judge.savings import is_matched_baseline

OLD = "563e08b"
CRITERIA = {"heldout_loss": "held-out loss", "train_loss": "training loss (fixed subset)"}


def old_analysis():  # noqa: ANN201
    """suite/analysis.py as it was at OLD, as a module of its own."""
    root = Path(__file__).resolve().parents[1]
    text = subprocess.run(["git", "show", f"{OLD}:suite/analysis.py"], cwd=root, check=True,
                          capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("analysis_old", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules["analysis_old"] = module  # dataclasses look their module up by name
    exec(compile(text, f"{OLD}:suite/analysis.py", "exec"), module.__dict__)
    return module


def width(low: float, high: float) -> str:
    return f"{100 * (high - low):.1f}" if all(map(_finite, (low, high))) else "n/a"


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", default="results/tiny")
    p.add_argument("--out")
    args = p.parse_args()
    old = old_analysis()
    rows = []
    for bench, arms in sorted(group_runs(Path(args.results)).items()):
        base = [r for r in arms.get("baseline", []) if r.complete]
        for arm, runs in sorted(arms.items()):
            runs = [r for r in runs if r.complete]
            if arm == "baseline" or is_matched_baseline(arm) or not runs or not base:
                continue
            for y, label in CRITERIA.items():
                o = old.compare(runs, base, y=y).flops_saving
                n = analysis.compare(runs, base, y=y).flops_saving
                rows.append(f"| {bench} | {arm} | {label} | {len(runs)}/{len(base)} | "
                            f"{o.fmt(pct=True)} | {width(o.low, o.high)} | {n.fmt()} | "
                            f"{width(n.low, n.high)} |")
    table = "\n".join([
        "| benchmark | arm | criterion | seeds arm/baseline | old: FLOPs saved [95%] "
        "(per-seed crossing, Welch) | old width, pt | new: FLOPs saved [95%] (mean-curve "
        "crossing) | new width, pt |", "|---|---|---|---|---|---|---|---|", *rows])
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            f"# Old and new estimator on the same curves\n\n`python benchmarks/estimators.py "
            f"{args.results} --out {args.out}`; old = suite/analysis.py at {OLD}, new = "
            "this commit's suite/judge/analysis.py.\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
