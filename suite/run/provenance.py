"""What a run writes down about itself besides its curve: the manifest (the resolved definition,
the plan, the data, the evaluation sets, what it shares with the baseline, the environment)
and the summary (totals per level and operator, throughput, MFU). Every figure of a report is
traced back to these two files."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from suite import data as dataio
from suite import flops, methods
from suite.families import Family
from suite.run.context import Context
from suite.run.state import RunState
from suite.spec import Benchmark, Optim, Scale, lr_factor


def same_updates(plan: methods.Plan, scale: Scale, family: Family) -> int:
    """Leading training steps in which the arm makes the baseline's very update: the target
    model, the same optimiser settings and state, and the same learning rate at every step,
    before any transfer. Together with the shared initialisation and batches, the two models
    are identical through that step."""
    base = methods.optim_of(scale)

    def shape(o: Optim) -> Optim:  # all but the schedule, compared step by step below
        return dataclasses.replace(o, lr=0.0, warmup=0.0, decay="constant", min_lr_ratio=0.0)

    n = 0
    for k, s in enumerate(plan.steps):
        if isinstance(s, methods.Transfer) or s.level != 1 or shape(s.optim) != shape(base) \
                or family.resolved(s.model) != family.resolved(dict(scale.model)) \
                or (k and not s.keep_optimizer):
            return n
        start, total = s.schedule or (0, s.steps)
        for i in range(s.steps):
            if n >= scale.steps or s.optim.lr * lr_factor(start + i, total, s.optim) != \
                    base.lr * lr_factor(n, scale.steps, base):
                return n
            n += 1
    return n


def pairing(plan: methods.Plan, scale: Scale, seed: int, family: Family) -> dict[str, Any]:
    """What seed `seed` of this arm shares with seed `seed` of the baseline, for the manifest.

    The initialisation: torch.manual_seed(init_seed) right before the first model is built
    (nothing draws from the global generator in between; the warm-up restores it). The batches:
    one stream, TrainBatches(batch_seed), whose batch i goes to training step i of the run at
    whatever level, coarse helper steps included. `main_step_batches` lists [first, last,
    offset]: the arm's own model's steps first..last draw batches step + offset;
    `same_updates_as_baseline` counts the leading steps whose update is the baseline's."""
    trains = [s for s in plan.steps if isinstance(s, methods.Train)]
    same_init = trains[0].level == 1 and \
        family.resolved(trains[0].model) == family.resolved(dict(scale.model))
    segments: list[list[int]] = []
    drawn = main = 0
    for s in trains:
        if not s.auxiliary:
            if segments and segments[-1][2] == drawn - main:
                segments[-1][1] += s.steps
            else:
                segments.append([main + 1, main + s.steps, drawn - main])
            main += s.steps
        drawn += s.steps
    first_transfer = next((i for i, s in enumerate(plan.steps)
                           if isinstance(s, methods.Transfer)), len(plan.steps))
    before = sum(s.steps for s in plan.steps[:first_transfer] if isinstance(s, methods.Train))
    same = min(segments[0][1] if segments[0][2] == 0 else 0, scale.steps)
    if first_transfer == len(plan.steps):
        text = "yes: no transfer; training step i draws batch i, as the baseline's step i does"
    elif len(segments) == 1:
        text = (f"yes, batches only: every training step i, at any level, draws batch i as the "
                f"baseline's step i does; the models part at the first transfer (after step "
                f"{before}) or earlier (same_updates_as_baseline)")
        if plan.train_steps > scale.steps:
            text += f"; steps past the baseline's {scale.steps} draw batches it never drew"
    else:
        text = (f"until the first transfer (after step {before}): then coarse helper steps draw "
                f"from the same stream, so the arm's own step t draws batch t + offset "
                f"(main_step_batches), and the baseline's batches in between go to coarse steps")
    return {"init_seed": seed, "batch_seed": seed, "eval_sets": "fixed: the same for every "
            "seed and arm", "shares_init_with_baseline": same_init,
            "shares_batch_stream_with_baseline": text, "main_steps_on_baseline_batches": same,
            "main_step_batches": segments,
            "same_updates_as_baseline": same_updates(plan, scale, family)}


def manifest_of(bench: Benchmark, scale_name: str, arm_name: str, seed: int, ctx: Context,
                data: dataio.TextData | dataio.ImageData, threads: int) -> dict[str, Any]:
    """manifest.json of a run: what it is (the resolved definition, method and plan), what it
    read (data, evaluation sets), what it shares with the baseline's run of the same seed, and
    where it ran (precision, FLOP convention, environment, processes, command)."""
    return {
        "benchmark": bench.name, "scale_name": scale_name, "arm_name": arm_name, "seed": seed,
        "definition": bench.resolved(scale_name, arm_name),
        "method": {"name": ctx.plan.method, "options": ctx.plan.options,
                   "criteria": list(ctx.plan.criteria)},
        "plan": [dataclasses.asdict(s) | {"kind": type(s).__name__} for s in ctx.plan.steps],
        "data": {"source": data.source, "heldout": list(getattr(data, "heldout_names", ())),
                 "inputs": dataclasses.asdict(ctx.inputs), "fingerprint": fingerprint(data),
                 **({"files": data.files} if getattr(data, "files", None) else {})},
        "evaluation": ctx.sets.describe(),
        "pairing": pairing(ctx.plan, ctx.scale, seed, ctx.family),
        "precision": ctx.prec, "flop_convention": flops.CONVENTION,
        "environment": environment(ctx.device, threads),
        "world_size": ctx.world.size, "accum": ctx.accum, "compile": ctx.compile,
        "checkpoint": dataclasses.asdict(bench.checkpoint),
        "command": command_line(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


SAMPLE = 1 << 16  # ids (or images) hashed from each end of each shard


def fingerprint(data: Any) -> dict[str, Any]:
    """What identifies the data a run reads, cheaply: sizes, and a sha256 over the first and
    last SAMPLE ids of every shard (tensors: images and labels; an image tree: its file list).
    A resumed run must read the same (suite/run/resume.py)."""
    h = hashlib.sha256()
    if isinstance(data, dataio.TextData):
        for split in (data.train, data.heldout):
            for k, n in enumerate(split.lengths.tolist()):
                for start in sorted({0, max(0, n - SAMPLE)}):
                    h.update(np.ascontiguousarray(split._read(k, start, min(n, SAMPLE)),
                                                  dtype=np.int64).tobytes())
        return {"train_tokens": len(data.train), "heldout_tokens": len(data.heldout),
                "vocab_size": data.vocab_size, "sha256": h.hexdigest()}
    if hasattr(data, "train_x"):  # images in tensors
        for t in (data.train_x, data.train_y, data.heldout_x, data.heldout_y):
            h.update(t[:SAMPLE].numpy().tobytes() + t[-SAMPLE:].numpy().tobytes())
        return {"train": len(data.train_x), "heldout": len(data.heldout_x),
                "sha256": h.hexdigest()}
    h.update(repr((data.train, data.heldout, data.classes)).encode())  # an image tree
    return {"train": len(data.train), "heldout": len(data.heldout), "sha256": h.hexdigest()}


def summary_of(ctx: Context, s: RunState, device_name: str, error: str | None,
             divergence: dict[str, Any] | None, t_start: float, warmup_s: float) -> dict:
    """The run's totals. `final_*` are those of the last curve row: the last evaluation whose
    values were all finite (a diverged run's non-finite one is in `error` and `divergence`);
    None where no evaluation was recorded."""
    clock, curve = s.clock, s.curve
    final, first = (curve[-1], curve[0]) if curve else ({}, {})
    return {
        "steps": clock.step, "planned_steps": ctx.plan.train_steps, "flops": clock.flops,
        "flops_blocks": clock.flops_blocks,
        "wall_s": clock.wall_s, "setup_wall_s": s.setup_wall_s,
        "eval_wall_s": clock.eval_wall_s, "warmup_s": warmup_s,
        "total_wall_s": time.perf_counter() - t_start,
        **{f"final_{k}": final.get(k) for k in (
            "heldout_loss", "heldout_loss_a", "heldout_loss_b", "train_loss",
            "train_loss_running", "heldout_top1", "heldout_bpb", "train_bpb")},
        "start_heldout_loss": first.get("heldout_loss"),
        "start_train_loss": first.get("train_loss"),
        "levels": {str(k): v for k, v in s.levels.items()},
        "operators": s.operators,
        "world_size": ctx.world.size,
        "max_rank_spread_after_transfers": s.spread,
        "throughput_per_s": clock.step * ctx.units / clock.wall_s if clock.wall_s else None,
        "achieved_flops_per_s": clock.flops / clock.wall_s if clock.wall_s else None,
        "mfu": flops.mfu(clock.flops, clock.wall_s, device_name, ctx.world.size, ctx.prec),
        "error": error,
        "divergence": divergence,
    }



def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the code that ran (None outside a git checkout): read once per
    process and kept, since the process runs the code it loaded. (Read at each run's start, a
    grid of hours recorded the commits made while it ran, not the code it was running.)"""
    return dict(_git_state(cwd or Path(__file__).resolve().parent))


@functools.cache
def _git_state(cwd: Path) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True, timeout=10).stdout
        return {"commit": commit, "dirty": bool(dirty.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str, threads: int) -> dict[str, Any]:
    import torch

    name = _cpu_name()
    if device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
    return {
        "git": git_state(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {p: _version(p) for p in ("torch", "transformers", "timm", "fvcore", "numpy")},
        "device": device,
        "device_name": name,
        "threads": threads,
    }


def command_line() -> str:
    """This process's command as a user would type it again: `python -m suite ...` where it
    runs as the module (sys.argv[0] is then the path of suite/__main__.py)."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name == "__main__.py" and Path(argv[0]).parent.name == "suite":
        argv[0:1] = ["python", "-m", "suite"]
    return " ".join(argv)


def shown_path(path: str | Path) -> str:
    """`path` as a committed record names it: relative to the suite's repository when it lies
    inside it (a record made in one clone reads the same in every other), else as given (a
    user's own definition elsewhere)."""
    root = Path(__file__).resolve().parents[2]
    p = Path(path).resolve()
    return str(p.relative_to(root)) if p.is_relative_to(root) else str(path)
