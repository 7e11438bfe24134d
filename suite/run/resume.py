"""Going on where a run stopped: the RunState a checkpoint holds rebuilt (suite/run/state.py),
the run folder's checkpoint to resume from, and the command line that resumes this process's
runs."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from suite import data as dataio
from suite import methods
from suite.resolved import definition_difference
from suite.results import CheckpointError, read_run
from suite.run import state as ckpt
from suite.run.context import Context, apply_transfer
from suite.run.state import RunState
from suite.run.train import Clock, Window, make_optimizer


def restore(ctx: Context, payload: dict[str, Any], batches: dataio.TrainBatches) -> RunState:
    """The RunState a checkpoint holds: the models' structure rebuilt by replaying the plan's
    transfers up to its position on a fresh model (tied tensors tied again), then every
    weight, optimiser, the batch stream and the RNG loaded."""
    plan, s = ctx.plan, RunState()
    first = next(t for t in plan.steps if isinstance(t, methods.Train))
    model = ctx.family.build(first.model, ctx.inputs).to(ctx.dev)
    for t in plan.steps[: payload["position"]]:
        if isinstance(t, methods.Transfer):
            model, _ = apply_transfer(t, model, s.saved)
    s.model = model
    model.load_state_dict(payload["model"])
    for level, m in s.saved.items():
        m.load_state_dict(payload["saved"][level])
    for level, o in payload["optimizers"].items():
        owner = model if o["owner"] == "model" else s.saved[int(o["owner"].split(":")[1])]
        opt = make_optimizer(owner, plan.steps[o["stage"]].optim)
        opt.load_state_dict(o["state"])
        s.optimizers[int(level)] = (o["stage"], opt)
    s.position, s.stage_step = payload["position"], payload["stage_step"]
    s.clock = Clock(**payload["clock"])
    s.main_steps, s.curve = payload["main_steps"], payload["curve"]
    s.levels = {int(k): v for k, v in payload["levels"].items()}
    s.operators, s.spread = payload["operators"], payload["spread"]
    s.setup_wall_s = payload["setup_wall_s"]
    s.tracker_id = payload.get("tracker_id")  # None in a checkpoint from before tracking
    s.window = Window([t.to(ctx.dev) for t in payload["window"]["pending"]],
                      payload["window"]["last"])
    batches.load_state_dict(payload["rng"]["batches"])
    ckpt.restore_rng(payload["rng"])
    return s


# What a resumed leg must share with the run it continues, or its curve mixes two runs: the
# manifest's key and what sets it. Threads and host do not change what is computed: each leg
# records its own in `resumes`.
SAME = (("precision", "--precision"), ("accum", "--accum"),
        ("world_size", "the number of processes (torchrun --nproc-per-node)"),
        ("compile", "--compile"), ("device_type", "--device (cpu or cuda)"),
        ("data.source", "--data"), ("data.inputs", "--data"), ("data.fingerprint", "--data"),
        ("pairing", "the seed"))


def _get(manifest: dict[str, Any], key: str) -> Any:
    if key == "device_type":
        return str(manifest.get("environment", {}).get("device", "")).split(":")[0]
    value: Any = manifest
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def mismatch(old: dict[str, Any], manifest: dict[str, Any]) -> tuple[str, str] | None:
    """What makes `manifest` another run than the one a run folder's manifest `old` records:
    (what differs, what would make it the same), or None when it is the same run. Compared:
    the resolved definition (the first key that differs), then everything in SAME (precision,
    accumulation, processes, compile, device type, data, pairing); a key the old manifest
    lacks (written before the key existed) is not compared."""
    ours = json.loads(json.dumps(manifest["definition"]))  # as written: tuples are lists
    if (key := definition_difference(ours, old["definition"])) is not None:
        return f"definition differs at {key!r}", "the definition it started with"
    new = json.loads(json.dumps(manifest, default=str))
    for key, what in SAME:
        before, now = _get(old, key), _get(new, key)
        if before is not None and before != now:
            return f"{key} was {before!r}, this one has {now!r}", f"the same {what}"
    return None


def resume_point(path: Path, manifest: dict[str, Any]) -> tuple[Path | None, dict | None]:
    """(checkpoint, its run's manifest) to resume from, or (None, None) to start afresh.
    Raises CheckpointError naming the key when the run folder's run is another one than
    `manifest`'s (`mismatch`): half fp32 and half bf16 is no run of either."""
    found = ckpt.latest(path)
    if found is None or not (path / "manifest.json").exists():
        return None, None
    old = read_run(path).manifest
    if (differs := mismatch(old, manifest)) is not None:
        raise CheckpointError(f"{found}: was written by a run whose {differs[0]}; resume it "
                              f"with {differs[1]}")
    return found, old


def keeps_completed(path: Path, manifest: dict[str, Any]) -> bool:
    """Whether --resume keeps the run folder `path` as it is: it holds a completed run, of the
    very run `manifest` describes. Raises CheckpointError naming the folder, the key that
    differs and what to do when the completed run is another one (`mismatch`, as a checkpoint
    is checked by `resume_point`): kept, it would be reported as a result of this one."""
    if not (path / "summary.json").exists():
        return False
    run = read_run(path)
    if not run.complete:
        return False
    if (differs := mismatch(run.manifest, manifest)) is not None:
        raise CheckpointError(f"{path}: a completed run that --resume would keep, but its "
                              f"{differs[0]}; to train this one use another --out, or delete "
                              "the folder (to keep it, run with " + differs[1] + ")")
    return True


def resume_command(argv: list[str] | None = None) -> str:
    """The shell-quoted command line that continues this process's runs: this interpreter (a
    bare `python` may not be the environment the suite is installed in), the same arguments
    (`argv`, default sys.argv[1:]) and --resume; under torchrun (WORLD_SIZE > 1) through
    `-m torch.distributed.run` with the same number of processes on one node."""
    args = list(sys.argv[1:] if argv is None else argv)
    args += [] if "--resume" in args else ["--resume"]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", str(world)] if world > 1 \
        else []
    return shlex.join([sys.executable, *launcher, "-m", "suite", *args])

