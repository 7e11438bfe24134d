"""`python -m suite tune BENCH --scale S`: a definition's [tuning] protocol run (suite/protocol.py):
every tuned arm's trials on the pilot seeds, one edge step where a choice sits on the edge, then
tuning.json and tuning.md (suite/judge/tuning.py). Resumable like `run`: the trials are runs."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from suite import protocol, tuning_record
from suite.judge import tuning as judged
from suite.results import ResultsError, read_run, run_dir
from suite.run.context import RunOptions
from suite.run.grid import run_grid
from suite.run.provenance import command_line, shown_path
from suite.spec import Benchmark, SpecError


def _trials(arm: str, points: list[dict[str, Any]],
            extension: bool = False) -> list[judged.Trial]:
    return [judged.Trial(arm, protocol.variant_name(arm, p), p, extension=extension)
            for p in points]


def _read(trials: list[judged.Trial], out: Path, bench: str, scale: str,
          seeds: tuple[int, ...]) -> None:
    for t in trials:
        paths = [run_dir(out, scale, bench, t.name, s) for s in seeds]
        t.runs = [read_run(p) if (p / "manifest.json").exists() else None for p in paths]


def _edge_trials(bench: Benchmark, trials: dict[str, list[judged.Trial]],
                 scale: str) -> tuple[dict[str, list[judged.Trial]], dict[str, list[str]]]:
    """EDGE_RULE: per arm whose choice sits on the edge of a knob's list, the trial one step
    beyond it (when the list is numeric and the method allows that value), and what the report
    says about each edge: extended, or why not."""
    from suite import methods  # a value beyond the edge must be one the method accepts

    extra: dict[str, list[judged.Trial]] = {}
    edges: dict[str, list[str]] = {}
    for arm, ts in trials.items():
        best = judged.select(ts)
        if best is None:
            continue
        for key, beyond, why in protocol.edges(bench.tuning.spaces[arm], best.values):
            at = f"{key}={protocol.fmt_value(best.values[key])}"
            values = {**best.values, key: beyond}
            if beyond is None:  # a category, or one value: nothing lies beyond it
                why = f"no step beyond it exists ({why})"
            else:
                try:
                    methods.plan(protocol.resolve_arm(bench, protocol.variant_name(arm, values)),
                                 bench.scale(scale))
                except (SpecError, methods.MethodError) as e:
                    why = f"one step beyond ({protocol.fmt_value(beyond)}) is not allowed ({e})"
            if why:
                edges.setdefault(arm, []).append(f"{at} is on the edge; {why}")
                continue
            extra.setdefault(arm, []).extend(_trials(arm, [values], extension=True))
            edges.setdefault(arm, []).append(
                f"{at} was on the edge of its list; extended once to "
                f"{key}={protocol.fmt_value(beyond)}")
    return extra, edges


def tune(bench: Benchmark, scale: str, out: Path, options: RunOptions,
         show: Callable[[list[list[Any]]], None],
         arms: list[str] | None = None,
         runner: Callable[[list[str], list[int]], None] | None = None) -> dict[str, Any] | None:
    """Run the [tuning] protocol of `bench` at `scale` into `out` (trial runs, tuning.json,
    tuning.md); returns the record, or None when a run was stopped (preempted, a signal):
    `--resume` goes on. `arms`: run only these arms' trials (jobs side by side); the record is
    written once every arm's trials are on disk (until then: an empty dict, a job done).
    Raises SpecError when the definition declares no tuning at `scale` or `arms` names an arm
    without a space, ResultsError when an arm has no usable trial (none completed and trained
    on every pilot seed: judged.record; an earlier record there is removed).
    `runner(trial names, pilot seeds)`: trains them another way than one after another in this
    process (`tune --jobs`: a pool of processes)."""
    t = bench.tuning
    if t is None or scale not in t.scales:
        raise SpecError(bench.path, "tuning.scales" if t else "tuning",
                        f"the definition declares no tuning at {scale}" if t else "missing",
                        f"{list(t.scales)}" if t else "a [tuning] table (docs/tuning.md)")
    if bad := [a for a in arms or [] if a not in t.spaces]:
        raise SpecError("(command line)", "--arms", f"{bad} have no tuning space",
                        ", ".join(t.spaces))
    mine = arms or list(t.spaces)
    trials = {a: _trials(a, t.trials_of(a)) for a in t.spaces}
    if not _run(bench, scale, out, options, show, {a: trials[a] for a in mine}, runner):
        return None
    _read([tr for ts in trials.values() for tr in ts], out, bench.name, scale, t.pilot_seeds)
    extra, edges = _edge_trials(bench, trials, scale)  # of every arm whose trials are on disk
    if (ours := {a: ts for a, ts in extra.items() if a in mine}) and \
            not _run(bench, scale, out, options, show, ours, runner):
        return None
    _read([tr for ts in [*trials.values(), *extra.values()] for tr in ts], out, bench.name,
          scale, t.pilot_seeds)
    if left := [tr.name for ts in [*trials.values(), *extra.values()] for tr in ts
                if any(r is None for r in tr.runs)]:
        print(f"the trials of --arms {','.join(mine)} are done; {len(left)} trial(s) of other "
              f"arms are not ({left[0]}, ...): the record is written by tune without --arms, "
              "with --resume, once they are", file=sys.stderr)
        return {}  # this job's part is done: not a failure
    for arm, ts in extra.items():
        trials[arm] += ts
        best = judged.select(trials[arm])
        if best is not None and best.extension:
            edges[arm].append(f"the step beyond ({best.name}) was chosen, so the best value "
                              "may lie further out (not extended again)")
    folder = tuning_record.tuning_path(out, scale, bench.name).parent
    rec = _record(bench, scale, folder, trials, edges)
    judged.write(folder, rec, trials)
    print(f"wrote {folder / tuning_record.FILE} and {folder / 'tuning.md'}", file=sys.stderr)
    return rec


def _record(bench: Benchmark, scale: str, folder: Path, trials: dict[str, list[judged.Trial]],
            edges: dict[str, list[str]]) -> dict[str, Any]:
    """judged.record for these trials. When it refuses (an arm with no trial that completed and
    trained), an earlier tuning.json and tuning.md in `folder` are removed: a choice the
    rule no longer makes must not be what `suite run` trains with."""
    t = bench.tuning
    try:
        rec = judged.record(t, bench.name, shown_path(bench.path), scale,
                            judged.trial_commits(trials), trials,
                            {a: "; ".join(e) for a, e in edges.items()},
                            tuning_record.snapshot(bench, scale), command_line())
    except ResultsError as e:
        stale = [f for f in (folder / tuning_record.FILE, folder / "tuning.md") if f.exists()]
        for f in stale:
            f.unlink()
        if stale:
            raise ResultsError(f"{e} (removed the earlier {stale[0]})") from None
        raise
    rec["kept"] = tuning_record.kept(bench, rec["chosen"])
    return rec


def _run(bench: Benchmark, scale: str, out: Path, options: RunOptions,
         show: Callable[[list[list[Any]]], None],
         trials: dict[str, list[judged.Trial]],
         runner: Callable[[list[str], list[int]], None] | None = None) -> bool:
    """Train every trial on every pilot seed (a diverged trial is an outcome: it ranks last);
    False when a run was stopped."""
    names = [tr.name for ts in trials.values() for tr in ts]
    if runner is not None:
        runner(names, list(bench.tuning.pilot_seeds))
    else:
        b = protocol.with_arms(bench, names)
        said = {tr.name: {"status": "trial", "values": tr.values} for ts in trials.values()
                for tr in ts}
        run_grid(b, scale, names, list(bench.tuning.pilot_seeds), out,
                 dataclasses.replace(options, tuning=said), show)
    flat = [tr for ts in trials.values() for tr in ts]
    _read(flat, out, bench.name, scale, bench.tuning.pilot_seeds)
    stopped = [tr.name for tr in flat for r in tr.runs if r is None or r.status == "preempted"]
    if stopped:
        print(f"tuning stopped before every trial ran ({stopped[0]} and {len(stopped) - 1} "
              "more); continue with the same command and --resume", file=sys.stderr)
    return not stopped


__all__ = ["ResultsError", "tune"]
