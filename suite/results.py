"""Run folders: manifest.json, curve.jsonl, summary.json: the contract between the running
wing, which writes them, and the judging wing, which reads them. Imports no torch.

    results/<scale>/<benchmark>/<arm>/seed-<n>/
        manifest.json   written first (status "running"): resolved definition, seed, provenance
        curve.jsonl     one line per evaluation, appended and flushed as the run goes
        summary.json    written last and atomically; only status "completed" counts as a result

A run killed half way therefore has a manifest that says "running" and no summary, and a run that
diverged or was interrupted has a summary whose status says so: readers skip both.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite.errors import SuiteError

COMPLETED = "completed"
MISSING_SUMMARY = "incomplete: summary.json missing"
STATUSES = ("running", COMPLETED, "diverged", "preempted", "interrupted", "failed")
# A live job's lock in its run folder (suite/run/lock.py holds it, `status` reads it): a lock
# untouched for LOCK_STALE_S seconds belongs to a dead job
LOCK_FILE, LOCK_STALE_S = ".lock", 300.0


def finite(obj: Any) -> Any:
    """NaN and infinities as null, so that the files are strict JSON (jq, browsers)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def atomic_write(path: Path, write: Any, mode: str = "w") -> None:
    """`write(file)` into a temporary file in the same folder, fsync, then rename over `path`:
    a reader sees the old file or the new one, never half of one. The file gets the
    permissions an ordinary `open` would give it (mkstemp's are owner-only: 0600 manifests
    that no one else on a shared cluster could read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, obj: Any) -> None:
    """`obj` as strict JSON (NaN as null), written atomically."""
    def write(f: Any) -> None:
        json.dump(finite(obj), f, indent=2, sort_keys=True, default=str, allow_nan=False)
        f.write("\n")

    atomic_write(path, write)


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The first key path where two JSON-like values differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}{k} (only in {'fresh' if k in a else 'reference'})"
            if (d := first_difference(a[k], b[k], f"{path}{k}.")) is not None:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if (d := first_difference(x, y, f"{path}{i}.")) is not None:
                return d
        return None
    return None if a == b else path.rstrip(".")


def run_dir(root: Path, scale: str, benchmark: str, arm: str, seed: int) -> Path:
    return Path(root) / scale / benchmark / arm / f"seed-{seed}"


class RunWriter:
    """Writes one run folder. Use `finish` exactly once; until then the run is not a result."""

    def __init__(self, path: Path, manifest: dict[str, Any],
                 resume_curve: list[dict[str, Any]] | None = None) -> None:
        """A fresh run folder, or (`resume_curve`: the curve a checkpoint holds) one that goes
        on: its curve is rewritten to those rows, dropping any logged after the checkpoint."""
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in ("summary.json", "curve.jsonl"):  # a rerun must not inherit a verdict
            (self.path / stale).unlink(missing_ok=True)
        self.manifest = {**manifest, "status": "running"}
        atomic_write_json(self.path / "manifest.json", self.manifest)
        self._curve = open(self.path / "curve.jsonl", "a")
        for row in resume_curve or []:
            self.log(row)

    def log(self, row: dict[str, Any]) -> None:
        self._curve.write(json.dumps(finite(row), sort_keys=True, allow_nan=False) + "\n")
        self._curve.flush()

    def finish(self, status: str, summary: dict[str, Any]) -> None:
        if status not in STATUSES[1:]:
            raise ValueError(f"finish status {status!r}; allowed: {', '.join(STATUSES[1:])}")
        self._curve.close()
        # The summary first: a kill at any later point leaves a completed run, which --resume
        # keeps (and clears of its checkpoints); deleting them first left neither, and a whole
        # run to retrain
        atomic_write_json(self.path / "summary.json", {**summary, "status": status})
        self.manifest["status"] = status
        atomic_write_json(self.path / "manifest.json", self.manifest)
        if status == COMPLETED:  # a result needs no state to go on from
            shutil.rmtree(self.path / "checkpoints", ignore_errors=True)


class NullWriter:
    """What ranks other than 0 write: nothing."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def log(self, row: dict[str, Any]) -> None:
        pass

    def finish(self, status: str, summary: dict[str, Any]) -> None:
        pass


# Curve fields that may be null: no running mean yet (the start, right after a transfer), and the
# old running-mean train_loss of runs written before the training subset was evaluated.
NULLABLE = ("train_loss_running",)
OLD_NULLABLE = ("train_loss",)


def _bad(v: Any) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


@dataclass
class Run:
    path: Path
    manifest: dict[str, Any]
    summary: dict[str, Any] | None
    curve: list[dict[str, Any]] = field(default_factory=list)

    @property
    def problem(self) -> tuple[str, str] | None:
        """(status, why) for a run whose summary says completed but whose values are not a
        result: a null or non-finite evaluated value (written by code from before such a run was
        marked diverged) -> "diverged"; an empty curve or one without heldout_loss -> "failed".
        None when there is nothing wrong, or the summary does not claim completion."""
        s = self.summary
        if s is None or s.get("status") != COMPLETED:
            return None
        if not self.curve:
            return "failed", "completed, but its curve is empty"
        new = "evaluation" in self.manifest  # train_loss evaluated on a training subset
        required = ("heldout_loss", "train_loss") if new else ("heldout_loss",)
        nullable = NULLABLE if new else NULLABLE + OLD_NULLABLE
        for i, row in enumerate(self.curve, 1):
            where = f"curve row {i} (step {row.get('step')})"
            for k in required:
                if k not in row:
                    return "failed", f"{where} has no {k}"
            for k, v in row.items():
                if k not in nullable and _bad(v):
                    return "diverged", f"{where}: {k} is {v} (null: not finite when written)"
        if "final_heldout_loss" in s and _bad(s["final_heldout_loss"]):
            return "diverged", f"final_heldout_loss is {s['final_heldout_loss']}"
        return None

    @property
    def status(self) -> str:
        """The summary's status (the manifest's while there is none), except that a
        "completed" run with a `problem` has the problem's status, and a manifest that says
        "completed" with no summary.json is MISSING_SUMMARY (deleted or never written)."""
        if self.problem is not None:
            return self.problem[0]
        if self.summary is None:  # the manifest's "completed" without its summary is no result
            said = self.manifest.get("status", "running")
            return MISSING_SUMMARY if said == COMPLETED else said
        return self.summary.get("status", "running")

    @property
    def complete(self) -> bool:
        """A result: the summary says completed and every recorded value is a finite number."""
        return (self.summary is not None and self.summary.get("status") == COMPLETED
                and self.problem is None)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.manifest["scale_name"], self.manifest["benchmark"], self.manifest["arm_name"])

    @property
    def seed(self) -> int:
        return int(self.manifest["seed"])


class CheckpointError(SuiteError, RuntimeError):
    """A checkpoint that cannot be written or used (suite/run/state.py); names the file."""


class ResultsError(SuiteError, ValueError):
    """A results folder that cannot be read; the message names the file."""


def _object(text: str) -> Any:
    # NaN and Infinity (this suite writes null, another tool may not) read as null, the one
    # representation of "not a finite number" every reader checks for
    return json.loads(text, parse_constant=lambda _: None)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        obj = _object(path.read_text())
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ResultsError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    return obj


def read_run(path: Path) -> Run:
    """The run folder at `path`. Raises ResultsError naming the file (and line) that is not
    valid JSON, not an object, or a manifest without its benchmark, scale, arm or integer seed;
    the cut-off last line of a run without a summary (killed while appending) is left out.
    NaN and infinities in the files read as None."""
    path = Path(path)
    manifest = _read_json(path / "manifest.json")
    for key in ("benchmark", "scale_name", "arm_name", "seed"):
        ok = isinstance(manifest.get(key), int if key == "seed" else str)
        if not ok or isinstance(manifest.get(key), bool):
            raise ResultsError(f"{path / 'manifest.json'}: {key} is {manifest.get(key)!r}; "
                               f"expected {'an integer' if key == 'seed' else 'a name'}")
    summary = _read_json(path / "summary.json") if (path / "summary.json").exists() else None
    curve = []
    cfile = path / "curve.jsonl"
    if cfile.exists():
        lines = cfile.read_text().splitlines()
        last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
        for i, line in enumerate(lines):
            if line.strip():
                try:
                    row = _object(line)
                except json.JSONDecodeError:
                    if summary is None and i == last:  # a kill mid-append, in a run that
                        break  # never finished: incomplete, never counted, still readable
                    raise ResultsError(f"{cfile}:{i + 1}: not valid JSON") from None
                if not isinstance(row, dict):
                    raise ResultsError(f"{cfile}:{i + 1}: expected a JSON object")
                curve.append(row)
    return Run(path, manifest, summary, curve)


def is_run_folder(manifest: Path, root: Path) -> bool:
    """A run folder's manifest: in a folder named seed-<n>, under no hidden folder (job logs,
    a tracker's store, a lock's temporary files). A tracker's copy of a manifest (MLflow keeps
    one as an artifact) is no run."""
    rel = manifest.relative_to(root).parts
    return manifest.parent.name.startswith("seed-") and not any(p.startswith(".")
                                                                 for p in rel[:-1])


def find_runs(root: Path, trials: bool = False) -> list[Run]:
    """Every run folder (one with a manifest.json, in a seed-<n> folder) under `root`, complete
    or not. Raises ResultsError for a `root` that is not a folder, and, unless `trials` (where
    the runs stand, not what they found: `suite status`), for a `root` holding a tuning trial
    (`is_trial`): pilot-seed runs are never reported, compared or gated."""
    root = Path(root)
    if not root.is_dir():
        raise ResultsError(f"{root}: no such results folder" if not root.exists() else
                           f"{root}: not a folder (a results folder holds <scale>/<benchmark>/"
                           "<arm>/seed-<n>/ run folders)")
    runs = [read_run(m.parent) for m in sorted(root.rglob("manifest.json"))
            if is_run_folder(m, root)]
    if not trials and (trial := next((r for r in runs if is_trial(r)), None)) is not None:
        raise ResultsError(f"{root}: holds tuning trials ({trial.path}: tuning.status "
                           "'trial'), pilot-seed runs that are never reported; pass a folder "
                           "of `suite run` results (such as results/<scale>), not tune's --out")
    return runs


def is_trial(run: Run) -> bool:
    """A tuning trial: a run `suite tune` (or `run --trial`) trained on a pilot seed; its
    manifest says tuning.status "trial"."""
    t = run.manifest.get("tuning")
    return isinstance(t, dict) and t.get("status") == "trial"


RUN_ROW_HEADERS = ["arm", "seed", "status", "held-out start", "held-out end", "top1", "FLOPs",
                   "train s", "folder"]


def fmt_flops(x: float) -> str:
    """A FLOP count in three significant figures, as every table shows it."""
    return f"{x:.3g}"


def _loss(v: float | None) -> str:
    """A loss for a table; '-' where a run has none (it diverged at its first evaluation)."""
    return "-" if v is None else f"{v:.4f}"


def run_row(run: Run, folder: str | None = None) -> list[Any]:
    """One RUN_ROW_HEADERS row: what `python -m suite run` prints for each run it made (the
    README's sample is made with it too). `folder`: shown instead of the run's own path."""
    s = run.summary
    top1 = s.get("final_heldout_top1")
    return [run.manifest["arm_name"], run.seed, run.status, _loss(s.get("start_heldout_loss")),
            _loss(s.get("final_heldout_loss") if run.complete else None),
            f"{top1:.3f}" if top1 is not None else "-", fmt_flops(s["flops"]),
            f"{s['wall_s']:.1f}", folder or str(run.path)]

