"""The estimator's and the gate's error rates, per arm, by simulation from the committed tiny
curves (suite/judge/simulate.py; the tests hold the thresholds, this prints the figures): coverage
and
bias of the 95% interval, its median width, the gate's false-FAIL rate with no regression and
its detection of a saving that fell by 5, 10 and 20 points, all at each benchmark's declared
seeds. `python benchmarks/simulation.py results/tiny --out results/tiny/SIMULATION.md`.
"""

from __future__ import annotations

import argparse
import math
import sys
import zlib
from pathlib import Path

import numpy as np

from suite.judge import simulate
from suite.judge.report import group_runs
from suite.judge.savings import is_matched_baseline
from suite.registry import load_benchmarks

DRAWS = 300
DROPS = (0.05, 0.10, 0.15, 0.20)  # the bar: >= 80% detection somewhere in 10-18 points


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", default="results/tiny")
    p.add_argument("--out")
    args = p.parse_args()
    benches = load_benchmarks()
    rows, pooled = [], [0, 0]
    for bench, arms in group_runs(Path(args.results)).items():
        base = [r for r in arms.get("baseline", []) if r.complete]
        seeds, tol = benches[bench].scale("tiny").seeds, benches[bench].gate.tolerance
        for arm, runs in sorted(arms.items()):
            ok = [r for r in runs if r.complete]
            # a matched baseline is the matched-budget check's control, not an arm with a saving
            if len(ok) < 2 or len(base) < 2 or is_matched_baseline(arm):
                continue
            m = (simulate.baseline_model(base) if arm == "baseline"
                 else simulate.model(ok, base))
            # draws of their own per arm: re-made curves of one benchmark move no other's rows
            rng = np.random.default_rng([2026, zlib.crc32(f"{bench}/{arm}".encode())])
            c = simulate.coverage(m, seeds, DRAWS, rng)
            cells = [f"{100 * c.truth:.1f}" if math.isfinite(c.truth) else "miss",
                     f"{100 * c.coverage:.1f}", f"{100 * c.bias:+.2f}" if
                     math.isfinite(c.bias) else "-", f"{100 * c.median_width:.1f}"]
            if arm != "baseline" and math.isfinite(c.truth):
                pooled[0] += round(c.coverage * DRAWS)
                pooled[1] += DRAWS
                cells += [f"{100 * simulate.gate_fail_rate(m, seeds, d, tol, DRAWS, rng):.1f}"
                          for d in (0.0, *DROPS)]
            else:
                cells += ["-"] * (1 + len(DROPS))
            rows.append(f"| {bench} | {arm} | {seeds} | " + " | ".join(cells) + " |")
    head = ("| benchmark | arm | seeds | true saving % | coverage % | bias pt | median width pt "
            "| gate FAIL %, no regression | " + " | ".join(f"detection %, {100 * d:.0f} pt fall"
                                                         for d in DROPS) + " |")
    table = "\n".join([head, "|" + "---|" * (8 + len(DROPS)), *rows])
    summary = (f"Pooled coverage over the arms with a finite true saving: "
               f"{100 * pooled[0] / max(pooled[1], 1):.1f}% ({pooled[1]} draws). {DRAWS} draws "
               "per cell; the baseline rows are other baseline seeds, unpaired (truth 0).")
    print(table + "\n\n" + summary)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(f"# Error rates by simulation\n\n`python benchmarks/"
                                  f"simulation.py {args.results} --out {args.out}`\n\n{table}"
                                  f"\n\n{summary}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
