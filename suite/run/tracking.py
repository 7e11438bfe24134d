"""Experiment tracking, optional and off by default (`run --track tensorboard|wandb|mlflow`, each an
optional extra): every evaluation's values (losses, FLOPs, wall time, learning rate, level, and
the transfer that preceded it) go to the tracker, and the manifest is the tracked run's config.
The tracker's run id is kept in the checkpoint, so a resumed or requeued run continues the same
tracked run. The run folder stays the record; a tracker is a window on it."""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

from suite.errors import SuiteError

KINDS = ("tensorboard", "wandb", "mlflow")
EXTRA = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow-skinny"}


class TrackingError(SuiteError, RuntimeError):
    """A tracker that cannot be used: not installed, or it refused the run; one line."""


def _metrics(row: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(v)}


class Tracker:
    """One tracked run. `id` names it for a resumed run (saved in the checkpoint)."""

    kind = ""

    def __init__(self, folder: Path, name: str, config: dict[str, Any],
                 run_id: str | None, step: int) -> None:
        self.id = run_id

    def log(self, row: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self, status: str) -> None:
        raise NotImplementedError


class TensorBoard(Tracker):
    """Event files in <run folder>/tensorboard (the id); a resume purges what was logged after
    its checkpoint's step, so the tracked curve is the run folder's."""

    kind = "tensorboard"

    def __init__(self, folder: Path, name: str, config: dict[str, Any],
                 run_id: str | None, step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.id = run_id or str(folder / "tensorboard")
        self.w = SummaryWriter(self.id, purge_step=step if run_id else None)
        if run_id is None:
            self.w.add_text("manifest", f"```\n{json.dumps(config, indent=1)}\n```", 0)

    def log(self, row: dict[str, Any]) -> None:
        for k, v in _metrics(row).items():
            self.w.add_scalar(k, v, int(row["step"]))
        if row.get("event"):
            self.w.add_text("event", str(row["event"]), int(row["step"]))

    def close(self, status: str) -> None:
        self.w.add_text("status", status)
        self.w.close()


class Wandb(Tracker):
    """Weights & Biases, offline unless WANDB_MODE says otherwise (files in the run folder)."""

    kind = "wandb"

    def __init__(self, folder: Path, name: str, config: dict[str, Any],
                 run_id: str | None, step: int) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=config.get("benchmark", "multilevel-suite"), name=name,
                              id=run_id or uuid.uuid4().hex[:12], resume="allow",
                              dir=str(folder), config=config,
                              mode=os.environ.get("WANDB_MODE", "offline"))
        self.id = self.run.id

    def log(self, row: dict[str, Any]) -> None:
        data: dict[str, Any] = _metrics(row)
        if row.get("event"):
            data["event"] = str(row["event"])
        self.run.log(data, step=int(row["step"]))

    def close(self, status: str) -> None:
        self.run.summary["status"] = status
        self.run.finish(exit_code=0 if status == "completed" else 1)


class MLflow(Tracker):
    """MLflow: MLFLOW_TRACKING_URI, else a file store beside the results (<out>/.mlruns: a
    hidden folder, which readers of run folders skip)."""

    kind = "mlflow"

    def __init__(self, folder: Path, name: str, config: dict[str, Any],
                 run_id: str | None, step: int) -> None:
        import mlflow

        self.mlflow = mlflow
        root = folder.parents[3] if len(folder.parents) > 3 else folder
        # a local file store is what a results folder beside its runs needs; MLflow 3 asks
        # for this opt-in before it writes one
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI",
                                               (root / ".mlruns").resolve().as_uri()))
        if run_id is None:
            mlflow.set_experiment(config.get("benchmark", "multilevel-suite"))
        self.run = mlflow.start_run(run_id=run_id, run_name=None if run_id else name)
        self.id = self.run.info.run_id
        if run_id is None:
            mlflow.log_dict(config, "manifest.json")

    def log(self, row: dict[str, Any]) -> None:
        self.mlflow.log_metrics(_metrics(row), step=int(row["step"]))
        if row.get("event"):
            self.mlflow.set_tag(f"event.step-{int(row['step'])}", str(row["event"]))

    def close(self, status: str) -> None:
        self.mlflow.set_tag("status", status)
        self.mlflow.end_run(status="FINISHED" if status == "completed" else
                            "KILLED" if status in ("preempted", "interrupted") else "FAILED")


def open_tracker(kind: str, folder: Path, name: str, config: dict[str, Any],
                 run_id: str | None = None, step: int = 0) -> Tracker:
    """The tracker `kind` for the run folder `folder`, continuing `run_id` (from a checkpoint)
    from `step`. Raises TrackingError naming the extra to install, or what the tracker said."""
    cls = {"tensorboard": TensorBoard, "wandb": Wandb, "mlflow": MLflow}.get(kind)
    if cls is None:
        raise TrackingError(f"--track {kind!r}: unknown; allowed: {', '.join(KINDS)}")
    try:
        return cls(Path(folder), name, config, run_id, step)
    except ImportError as e:
        raise TrackingError(f"--track {kind}: {e.name or kind} is not installed; pip install "
                            f"'multilevel-suite[track]' (or {EXTRA[kind]})") from None
    except Exception as e:  # noqa: BLE001 - a third party's failure, named in one line
        raise TrackingError(f"--track {kind}: {type(e).__name__}: {e}") from None


__all__ = ["KINDS", "Tracker", "TrackingError", "open_tracker"]
