"""`python -m suite run`: the runs one command asks for (arms x seeds of one benchmark at one
scale), one after another in this process, under one signal handler that also covers the gaps
between runs; under torchrun every rank runs each of them together."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from suite import data as dataio
from suite.families import FAMILIES
from suite.results import read_run, run_row
from suite.run import state as ckpt
from suite.run.context import RunOptions, load_data
from suite.run.resume import resume_command
from suite.spec import Benchmark, Scale, SpecError


def checkpoint_policy(bench: Benchmark, every_steps: int | None,
                      every_minutes: float | None) -> ckpt.Policy:
    """The checkpoint policy of a command: the definition's [checkpoint] table, each value the
    command line gives first. Raises SpecError for a negative one."""
    c = bench.checkpoint
    every = every_steps if every_steps is not None else c.every_steps
    minutes = every_minutes if every_minutes is not None else c.every_minutes
    if every < 0 or minutes < 0:
        raise SpecError("(command line)", "--checkpoint-every" if every < 0 else
                        "--checkpoint-minutes", "negative", "0 (off) or more")
    at = os.environ.get("SUITE_SIGNAL_AT_STEP")  # tests: a scheduler's SIGTERM, on cue
    return ckpt.Policy(every, minutes, c.keep, int(at) if at else None)


def check_data(bench: Benchmark, scale: Scale, from_command_line: bool) -> None:
    """Read the data once before any run (load_data caches it), so that a bad source is one
    DataError naming where it was given: --data, or the definition's key."""
    try:
        load_data(FAMILIES[bench.family], scale)
    except dataio.DataError as e:
        where = "(command line): --data" if from_command_line else \
            f"{bench.path}: scales.{scale.name}.data.source"
        raise dataio.DataError(f"{where}: {e}") from None


def run_grid(bench: Benchmark, scale_name: str, arms: list[str], seeds: list[int], out: Path,
             options: RunOptions, show: Callable[[list[list[Any]]], None]) -> bool:
    """Run every (arm, seed), arm-major, into `out`; then `show` one row per run rank 0 wrote
    (suite.results.run_row) (on rank 0, while the signal handler still holds: a signal while
    printing must not kill the process). Returns whether every run asked for completed. A run
    that is preempted, or a signal between two runs, stops the grid there (the runs done are
    kept; `--resume` goes on); a second Ctrl-C raises KeyboardInterrupt."""
    from suite.run.distributed import rank0_says, teardown
    from suite.run.executor import run_one

    world, rows = options.world, []
    completed = preempted = stopped = False
    between = ckpt.Preemption().install()  # a signal between runs, or in a run's setup
    try:
        for arm, seed in ((a, s) for a in arms for s in seeds):
            if stopped := rank0_says(between.requested is not None, world, options.device):
                _stopped_between_runs(between.requested, world.main)
                break
            path = run_one(bench, scale_name, arm, seed, out, options)
            status = read_run(path).status if world.main else None  # only rank 0 wrote it
            preempted = rank0_says(status == "preempted", world, options.device)
            if world.main:
                rows.append(run_row(read_run(path)))
            if preempted:  # the job is being stopped: no further arm or seed starts
                break
        completed = not preempted and not stopped
        if completed and rank0_says(between.requested is not None, world, options.device) \
                and world.main:
            print(f"{between.requested or 'a signal on another rank'} after the last run: every "
                  "run was finished, nothing is left to resume", file=sys.stderr)
        if world.main:
            show(rows)
    finally:
        between.restore()
        teardown(completed)
    return completed and all(r[2] == "completed" for r in rows)


def _stopped_between_runs(signal_name: str | None, main: bool) -> None:
    if main:
        print(f"{signal_name or 'a signal on another rank'} between runs: the runs above are "
              f"kept, no further run starts; continue with:\n  {resume_command()}",
              file=sys.stderr)
