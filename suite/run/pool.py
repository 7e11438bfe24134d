"""`run --jobs N`: the grid of one command (arms x seeds) as independent jobs, one run folder each,
N at a time as separate processes on this machine. Each job is the same command for one arm and
one seed, so its numbers are those of a run alone; on CPU the cores are split between the jobs
(one job using every core beside another runs 16 to 40 times slower: OpenMP oversubscription),
on CUDA each job gets its own device, round robin over the visible ones."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from suite.results import read_run, run_dir

# Options of `run` that the pool sets per job: (flag, takes a value)
PER_JOB = {"--jobs": True, "--arms": True, "--seeds": True, "--first-seed": True,
           "--sweep": True, "--threads": True, "--device": True, "--matched": False,
           "--dry-run": False, "--executor": True, "--wait": False}
SLURM = "--slurm-"  # every --slurm-* option takes a value and is the submitter's alone
REFUSED = 2  # the exit code of a command that refused its input (suite/cli.py: a SuiteError)


def strip(argv: list[str]) -> list[str]:
    """`argv` without the options the pool sets for each job (`--flag value`, `--flag=value`)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in PER_JOB or name.startswith(SLURM):
            skip = PER_JOB.get(name, True) and "=" not in a
            continue
        out.append(a)
    return out


@dataclass
class Job:
    arm: str
    seed: int
    folder: Path
    log: Path
    argv: list[str]
    proc: subprocess.Popen | None = None
    returncode: int | None = None
    started: float = 0.0
    ended: float = 0.0

    @property
    def stopped(self) -> bool:
        """Its run stopped with its state written (preempted, interrupted): --resume goes on."""
        try:
            return read_run(self.folder).status in ("preempted", "interrupted")
        except Exception:  # noqa: BLE001 - no readable run folder: not stopped, failed
            return False


@dataclass
class Pool:
    """Runs `jobs` N at a time; `progress` prints one line for the whole grid."""

    jobs: list[Job]
    n: int
    env: dict[str, str] = field(default_factory=dict)

    def run(self) -> bool:
        """Start, wait, start the next; a signal is passed on to the running jobs (each writes
        its state and stops as preempted) and no further job starts. True when every job
        exited 0 (its run completed)."""
        queue, running, stop = list(self.jobs), [], []
        old = {s: signal.signal(s, lambda n, _f: stop.append(n))
               for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
        try:
            ended = False
            while queue or running:
                while queue and len(running) < self.n and not stop:
                    running.append(self._start(queue.pop(0)))
                if ended:  # after the next job started: the line counts what really runs
                    self._progress(queue, running)
                time.sleep(0.2)
                ended = False
                for j in [j for j in running if j.proc.poll() is not None]:
                    j.returncode, j.ended = j.proc.returncode, time.time()
                    running.remove(j)
                    ended = True
                if stop:
                    for j in running:
                        j.proc.send_signal(stop[0])
                    queue.clear()
                    stop[:] = stop[:1]
            if ended:
                self._progress(queue, running)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return all(j.returncode == 0 for j in self.jobs)

    def _start(self, job: Job) -> Job:
        job.log.parent.mkdir(parents=True, exist_ok=True)
        with open(job.log, "w") as log:  # the child keeps its own descriptor
            # its own session: a terminal's Ctrl-C reaches the pool alone, which passes it on
            # once (a job that got it twice would stop as interrupted, not preempted)
            job.proc = subprocess.Popen(job.argv, stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **self.env}, start_new_session=True)
        job.started = time.time()
        return job

    def _progress(self, queue: list[Job], running: list[Job]) -> None:
        done = [j for j in self.jobs if j.returncode == 0]
        stopped = [j for j in self.jobs if j.returncode is not None and j.stopped]
        failed = [j for j in self.jobs if j.returncode not in (None, 0) and not j.stopped]
        spent = [j.ended - j.started for j in done]
        eta = ""
        if spent and (queue or running):
            left = (len(queue) + len(running)) * (sum(spent) / len(spent)) / self.n
            eta = f", about {left / 60:.0f} min left"
        last = failed[-1] if failed and failed[-1].ended == max(j.ended for j in failed) \
            else None
        print(f"grid: {len(done)} done, {len(running)} running, {len(stopped)} stopped, "
              f"{len(failed)} failed, {len(queue)} left{eta}" + (
                  f" (failed: {last.arm} seed {last.seed}, see {last.log})" if last else ""),
              file=sys.stderr, flush=True)


def grid_jobs(argv: list[str], out: Path, scale: str, bench: str, arms: list[str],
              seeds: list[int], n: int, device: str, threads: int | None) -> list[Job]:
    """One job per (arm, seed), arm-major: this command (`argv`, as given) for that arm and
    seed alone; CPU threads per job = `threads`, or the cores / n; CUDA devices round robin."""
    import torch

    base = [sys.executable, "-m", "suite", *strip(argv)]
    per = threads or max(1, (os.cpu_count() or 1) // n)
    gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
    jobs = []
    for i, (arm, seed) in enumerate((a, s) for a in arms for s in seeds):
        dev = f"cuda:{i % gpus}" if gpus and device == "cuda" else device
        folder = run_dir(out, scale, bench, arm, seed)
        jobs.append(Job(arm, seed, folder, out / ".jobs" / scale / bench / f"{arm}.seed-{seed}.log",
                        [*base, "--arms", arm, "--first-seed", str(seed), "--seeds", "1",
                         "--threads", str(per), "--device", dev, "--no-progress"]))
    return jobs


def refused(jobs: list[Job]) -> str | None:
    """The one-line error of the first job that refused its run (exit 2: a SuiteError, such as
    a completed run of another definition that --resume would keep, suite/run/resume.py), as
    its log ends with it, or None when no job refused."""
    for j in jobs:
        if j.returncode == REFUSED:
            lines = j.log.read_text(errors="replace").splitlines() if j.log.exists() else []
            said = next((ln for ln in reversed(lines) if ln.startswith("error: ")), None)
            return f"{j.arm} seed {j.seed}: " + (said[len("error: "):] if said else
                                                  f"exit {REFUSED}; see {j.log}")
    return None


def rows_of(jobs: list[Job]) -> list[list]:
    """What `run` prints for the runs the jobs wrote (a job that wrote none: its exit code)."""
    from suite.results import run_row

    out = []
    for j in jobs:
        if j.returncode == REFUSED:  # its folder, if any, is not this command's run
            out.append([j.arm, j.seed, f"no run (exit {REFUSED}; see {j.log})"])
        elif (j.folder / "manifest.json").exists():
            out.append(run_row(read_run(j.folder)))
        elif j.returncode is None:
            out.append([j.arm, j.seed, "not started"])
        else:
            out.append([j.arm, j.seed, f"no run (exit {j.returncode}; see {j.log})"])
    return out


__all__ = ["REFUSED", "Job", "Pool", "grid_jobs", "refused", "rows_of", "strip"]
