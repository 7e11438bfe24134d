"""What a run is at a step boundary, as one object (issue 13): written atomically as a checkpoint
and read back by `run --resume`, so that a preempted run goes on where it stopped with the very
curve it would have drawn (bit-identical on CPU).

A run's state: the position in its plan (plan step, steps done in it), every live model (the
model in training, the V-cycle's saved pre-coalescing models, paper 2's fine model while a
coarse one trains), every optimiser that a later step will use, the batch stream and the torch
RNG, the clock, the loss read-back window, the curve so far and the cost tables. Models are not
pickled: a resume rebuilds their structure by replaying the plan's transfers on a fresh model
(so shared tensors are shared again) and loads the saved weights into it.

    <run folder>/checkpoints/step-00001234.pt   torch.save of `RunState.payload`, keep the last K
"""

from __future__ import annotations

import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from suite.results import CheckpointError, atomic_write
from suite.run.train import Clock, Window

FORMAT = 1
FOLDER = "checkpoints"
SIGNALS = ("SIGTERM", "SIGUSR1", "SIGINT")  # what cluster schedulers send before preempting


@dataclass
class RunState:
    """One run between two training steps. `optimizers[level] = (stage, optimiser)`: the plan
    index of the Train step that created it (its Optim) and the optimiser."""

    position: int = 0  # index of the plan step under way
    stage_step: int = 0  # steps done in plan.steps[position] (a Train)
    clock: Clock = field(default_factory=Clock)
    main_steps: int = 0  # steps of the arm's own model (coarse helpers excluded)
    model: nn.Module | None = None
    saved: dict[int, nn.Module] = field(default_factory=dict)
    optimizers: dict[int, tuple[int, torch.optim.Optimizer]] = field(default_factory=dict)
    window: Window = field(default_factory=Window)
    curve: list[dict[str, Any]] = field(default_factory=list)
    levels: dict[int, dict[str, float]] = field(default_factory=dict)
    operators: dict[str, dict[str, float]] = field(default_factory=dict)
    spread: float = 0.0  # largest parameter difference between ranks after a transfer
    setup_wall_s: float = 0.0  # stage set-up inside clock.wall_s: optimisers, DDP wrapping
    tracker_id: str | None = None  # the tracked run a resume continues (suite/run/tracking.py)

    def owner(self, opt: torch.optim.Optimizer) -> str:
        """'model' or 'saved:<level>': the live model whose trainable parameters are exactly
        those `opt` updates (paper 2's coarse and fine models share tensors, so one tensor
        does not tell them apart), or 'dead' for a model that is gone."""
        ids = {id(p) for g in opt.param_groups for p in g["params"]}
        live = ([("model", self.model)] if self.model is not None else []) + \
            [(f"saved:{k}", m) for k, m in self.saved.items()]
        for name, m in live:
            if {id(p) for p in m.parameters() if p.requires_grad} == ids:
                return name
        return "dead"  # a coarse model that is gone: its optimiser is never used again

    def payload(self, batches: Any) -> dict[str, Any]:
        """Everything `restore` needs, as tensors and plain values (torch.save-able)."""
        if self.model is None:
            raise CheckpointError("no model yet: a run is checkpointed after a training step")
        opts = {}
        for level, (stage, opt) in self.optimizers.items():
            if (owner := self.owner(opt)) != "dead":
                opts[level] = {"stage": stage, "owner": owner, "state": opt.state_dict()}
        return {
            "format": FORMAT, "position": self.position, "stage_step": self.stage_step,
            "clock": asdict(self.clock), "main_steps": self.main_steps,
            "model": self.model.state_dict(),
            "saved": {k: m.state_dict() for k, m in self.saved.items()},
            "optimizers": opts,
            "window": {"pending": [t.detach().cpu() for t in self.window.pending],
                       "last": self.window.last},
            "curve": self.curve, "levels": self.levels, "operators": self.operators,
            "spread": self.spread, "setup_wall_s": self.setup_wall_s,
            "tracker_id": self.tracker_id,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available()
                    else None,
                    "batches": batches.state_dict()},
        }


def path_for(run: Path, step: int) -> Path:
    return Path(run) / FOLDER / f"step-{step:08d}.pt"


def latest(run: Path) -> Path | None:
    """The newest checkpoint of a run folder, or None."""
    found = sorted((Path(run) / FOLDER).glob("step-*.pt"))
    return found[-1] if found else None


def _bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_bytes(v) for v in obj)
    return 64


def write(run: Path, payload: dict[str, Any], keep: int) -> Path:
    """Write `payload` atomically (temporary file, fsync, rename) as the checkpoint of its step,
    then delete all but the newest `keep`. Raises CheckpointError, writing nothing, when the
    disk holds less than twice the payload's size free."""
    path = path_for(run, payload["clock"]["step"])
    path.parent.mkdir(parents=True, exist_ok=True)
    need, free = 2 * _bytes(payload), shutil.disk_usage(path.parent).free
    if free < need:
        raise CheckpointError(f"{path.parent}: {free / 1e9:.2f} GB free, a checkpoint needs "
                              f"about {need / 2e9:.2f} GB (twice that to write it safely)")
    atomic_write(path, lambda f: torch.save(payload, f), mode="wb")
    for old in sorted(path.parent.glob("step-*.pt"))[:-keep]:
        old.unlink()
    return path


def read(path: Path) -> dict[str, Any]:
    """A checkpoint written by `write`. Raises CheckpointError naming the file when it is not
    one, or of another format."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file: say which, not torch's traceback
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") \
            from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a checkpoint of format {FORMAT}")
    return payload


class Preemption:
    """Turns SIGTERM, SIGUSR1 and SIGINT into a request that the run checkpoints at its next
    step boundary and stops as `preempted` (installed in the main thread only; the previous
    handlers come back on `restore`). `requested` is the signal's name, or None. Installed
    over another Preemption (the `run` command's, which covers the gaps between runs), it
    takes over a request that came before it: a signal during a run's setup stops that run
    at its first step boundary."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._old: dict[int, Any] = {}

    def install(self) -> Preemption:
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in SIGNALS:
                sig = getattr(signal, name)
                self._old[sig] = signal.signal(sig, self._handle)
                outer = getattr(self._old[sig], "__self__", None)
                if isinstance(outer, Preemption) and outer.requested and not self.requested:
                    self.requested = outer.requested
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


@dataclass
class Policy:
    """When to write: every `every_steps` training steps, else every `every_minutes` of wall
    time (0: only when preempted); keep the newest `keep`. `signal_at_step` is for tests (and
    SUITE_SIGNAL_AT_STEP on the command line): the process sends itself SIGTERM after that
    training step, as a scheduler would."""

    every_steps: int = 0
    every_minutes: float = 30.0
    keep: int = 2
    signal_at_step: int | None = None
    _last: float = field(default_factory=time.monotonic)

    def due_by_time(self) -> bool:
        """With every_steps = 0: every_minutes of wall time since the last write."""
        return not self.every_steps and bool(self.every_minutes) and \
            time.monotonic() - self._last >= 60 * self.every_minutes

    def written(self) -> None:
        self._last = time.monotonic()


def restore_rng(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
