"""`run --executor slurm`: the grid as one Slurm job array through submitit (an optional extra:
multilevel-suite[slurm]). Each array task is the same command as a local job (suite/run/pool.py)
for one arm and one seed, always with --resume: a task that is preempted, times out or is
requeued stops its run at a step boundary with its state written, and the requeued task goes on
from the run folder's newest checkpoint, drawing the curve an uninterrupted run draws. A run that
needs several GPUs itself runs torchrun inside its task, never torchrun around submitit."""

from __future__ import annotations

import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from suite.errors import SuiteError


class SlurmError(SuiteError, RuntimeError):
    """A Slurm submission that cannot be made; names the option, the file or what sbatch said."""


@dataclass
class SlurmSettings:
    """What the array asks Slurm for: a `[slurm]` table of a user config file (--slurm-config),
    each key overridden by its --slurm-<key> option."""

    partition: str | None = None
    time: int = 60  # minutes per task
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    array_parallelism: int = 256
    options: dict[str, str] = field(default_factory=dict)  # extra sbatch options: key -> value


def settings(config: str | None, given: dict[str, Any]) -> SlurmSettings:
    """SlurmSettings from `config`'s [slurm] table, then the command line's `given` (None: not
    given). Raises SlurmError naming the file and key that are not allowed."""
    table: dict[str, Any] = {}
    if config:
        try:
            doc = tomllib.loads(Path(config).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SlurmError(f"{config}: cannot read a [slurm] table: {e}") from None
        table = doc.get("slurm")
        if not isinstance(table, dict):
            raise SlurmError(f"{config}: slurm: no [slurm] table; allowed: "
                             f"{', '.join(f.name for f in fields(SlurmSettings))}")
    names = {f.name: f for f in fields(SlurmSettings)}
    for k, v in table.items():
        if k not in names:
            raise SlurmError(f"{config}: slurm.{k}: unknown key; allowed: {', '.join(names)}")
        want = dict if k == "options" else (str if k == "partition" else int)
        if not isinstance(v, want) or isinstance(v, bool):
            raise SlurmError(f"{config}: slurm.{k}: must be {want.__name__}, got {v!r}")
    out = SlurmSettings(**table)
    for k, v in given.items():
        if v is not None:
            setattr(out, k, {**out.options, **v} if k == "options" else v)
    return out


class RunTask:
    """One array task: the suite command of one run, in a child process. On the signal Slurm
    sends before a time-out or a preemption, submitit calls `checkpoint`: the child gets SIGTERM
    (it writes its state and stops as preempted) and the task is requeued to resume."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc: subprocess.Popen | None = None

    def __call__(self) -> int:
        self.proc = subprocess.Popen(self.argv)
        code = self.proc.wait()
        if code not in (0, 1):  # 1: the run stopped (preempted, diverged): recorded as such
            raise RuntimeError(f"{' '.join(self.argv)} exited with {code}")
        return code

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait()
        return DelayedSubmission(RunTask(self.argv))

    def __getstate__(self) -> dict[str, Any]:  # a live child is no part of what is pickled
        return {"argv": self.argv, "proc": None}


def submit(argvs: list[list[str]], folder: Path, s: SlurmSettings, name: str) -> list[Any]:
    """One job array of `argvs` (one run each); returns submitit's jobs. Raises SlurmError
    naming submitit's extra, or what sbatch said."""
    try:
        import submitit
    except ImportError:
        raise SlurmError("--executor slurm: submitit is not installed; pip install "
                         "'multilevel-suite[slurm]'") from None
    ex = submitit.SlurmExecutor(folder=str(folder / "%j"), max_num_timeout=100)
    params: dict[str, Any] = {"time": s.time, "cpus_per_task": s.cpus_per_task,
                              "array_parallelism": s.array_parallelism, "job_name": name,
                              "additional_parameters": {"requeue": True, **s.options},
                              "stderr_to_stdout": True}
    if s.partition:
        params["partition"] = s.partition
    if s.gpus_per_task:
        params["gpus_per_task"] = s.gpus_per_task
    ex.update_parameters(**params)
    try:
        with ex.batch():
            jobs = [ex.submit(RunTask([sys.executable, *a[1:]])) for a in argvs]
    except Exception as e:  # noqa: BLE001 - sbatch's own words, one line
        raise SlurmError(f"--executor slurm: submission failed: {type(e).__name__}: "
                         f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''}") \
            from None
    return jobs


__all__ = ["RunTask", "SlurmError", "SlurmSettings", "settings", "submit"]
