"""`python -m suite status OUT`: where the runs of a results folder stand, whoever is running them
(one process, `run --jobs`, a Slurm array): per benchmark and scale, how many completed, are
running (a live lock), stopped (preempted or interrupted: `--resume` goes on from their
checkpoint), diverged or failed; each running run's progress; and an ETA from the FLOPs left
and the FLOP/s the completed runs achieved. Imports no torch."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path

from tabulate import tabulate

from suite.results import LOCK_FILE as LOCK
from suite.results import LOCK_STALE_S as STALE_S
from suite.results import ResultsError, Run, find_runs

HEADERS = ["scale", "benchmark", "runs", "completed", "running", "stopped (resumable)",
           "diverged", "failed", "other"]


def _planned_steps(r: Run) -> int:
    return sum(int(s.get("steps", 0)) for s in r.manifest.get("plan", [])
               if s.get("kind") == "Train")


def _live(folder: Path, now: float) -> bool:
    """A live lock, or (a run started before locks) a curve appended to within STALE_S."""
    for name in (LOCK, "curve.jsonl"):
        try:
            if now - (folder / name).stat().st_mtime <= STALE_S:
                return True
        except OSError:
            pass
    return False


def _state(r: Run, now: float | None = None) -> str:
    s = r.status
    if s == "running":
        return "running" if _live(r.path, now or time.time()) else "stopped (resumable)"
    if s in ("preempted", "interrupted"):
        return "stopped (resumable)"
    return s if s in ("completed", "diverged", "failed") else "other"


def status(root: Path) -> str:
    """The status tables of every run folder under `root`. Raises ResultsError when there is
    none."""
    runs = find_runs(root, trials=True)  # a tune's progress too
    if not runs:  # an empty table would read as a grid with nothing to do
        raise ResultsError(f"{root}: no run folders (<scale>/<benchmark>/<arm>/seed-<n>/)")
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for r in runs:
        groups[(r.manifest.get("scale_name", "?"), r.manifest.get("benchmark", "?"))].append(r)
    rows, progress = [], []
    flops_done = wall_done = left = speed = 0.0
    for (scale, bench), rs in sorted(groups.items()):
        c = Counter(_state(r) for r in rs)
        rows.append([scale, bench, len(rs), *(c.get(h, 0) for h in HEADERS[3:])])
        for r in rs:
            last = r.curve[-1] if r.curve else {}
            if r.complete:
                flops_done += float(r.summary.get("flops") or 0)
                wall_done += float(r.summary.get("train_s") or r.summary.get("wall_s") or 0)
            elif _state(r) == "running":
                total, step = _planned_steps(r), int(last.get("step", 0) or 0)
                done = float(last.get("flops", 0) or 0)
                left += done * (total / step - 1) if step else 0.0
                if last.get("wall_s"):  # before any run completes, the running ones' pace
                    speed = max(speed, done / float(last["wall_s"]))
                progress.append([f"{bench}/{r.manifest.get('arm_name')}/seed-{r.seed}",
                                 f"{step}/{total}", _holder(r.path)])
    out = [tabulate(rows, HEADERS, tablefmt="github")]
    if progress:
        out += ["", tabulate(progress, ["running", "step", "held by"], tablefmt="github")]
    rate, whose = (flops_done / wall_done, "the completed runs") if wall_done else \
        (speed, "the running runs")
    if left and rate:
        out += ["", f"ETA of the running runs: about {left / rate / 60:.0f} min at the "
                f"{rate:.2e} FLOP/s {whose} achieved"]
    return "\n".join(out)


def _holder(folder: Path) -> str:
    try:
        h = json.loads((folder / LOCK).read_text())
        return f"pid {h.get('pid')} on {h.get('host')}"
    except (OSError, ValueError):
        return "-"


__all__ = ["HEADERS", "status"]
