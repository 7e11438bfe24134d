"""Resume table (issue 13): for a baseline, a 2- and a 3-level V-cycle and the ODE arm (smoke
scale, CPU), stop each run at every kill point of tests/test_resume.py (a SIGTERM sent by the
process itself after that step), resume it, and compare its curve with the uninterrupted run's
field by field (wall time excluded).
`python benchmarks/resume.py --out results/paper-path/resume.md`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_resume import ARMS, kill_points, without_timing  # noqa: E402

from suite.registry import load_benchmarks  # noqa: E402
from suite.results import first_difference, read_run  # noqa: E402
from suite.run import state as ckpt  # noqa: E402
from suite.run.executor import RunOptions, run_one  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for bench, arm in ARMS:
            b = load_benchmarks()[bench]
            full = read_run(run_one(b, "smoke", arm, 0, Path(tmp) / "full",
                                    RunOptions(threads=1, progress=False)))
            for k in kill_points(bench, arm):
                out = Path(tmp) / f"{bench}-{arm}-{k}"
                stop = read_run(run_one(b, "smoke", arm, 0, out,
                                        RunOptions(threads=1, progress=False, policy=ckpt.Policy(
                                            every_minutes=0, signal_at_step=k))))
                done = read_run(run_one(b, "smoke", arm, 0, out,
                                        RunOptions(threads=1, progress=False, resume=True)))
                diff = first_difference(without_timing(done.curve), without_timing(full.curve))
                rows.append(f"| {bench} | {arm} | {k} of {full.summary['steps']} | "
                            f"{stop.status} | {done.status} | "
                            f"{'bit-identical' if diff is None else 'differs at ' + diff} |")
    table = "\n".join(["| benchmark | arm | stopped after step | status then | status after "
                       "--resume | curve against the uninterrupted run |",
                       "|---|---|---|---|---|---|", *rows])
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(f"# Stop and resume at smoke scale (CPU)\n\n`python "
                                  f"benchmarks/resume.py --out {args.out}`\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
