"""Executes a Plan: trains its models with the one loop, applies its transfers, meters FLOPs and
wall time, evaluates when due, writes the state when asked, and writes the run folder. Every
method runs through `run_one`; what a run reads is built in `context`, what it records about
itself in `provenance`, how it goes on after a stop in `resume`."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from suite import data as dataio
from suite import flops, methods
from suite import operators as ML
from suite.results import COMPLETED, CheckpointError, NullWriter, RunWriter, run_dir
from suite.run import distributed
from suite.run import state as ckpt
from suite.run.context import (
    Context,
    RunOptions,
    apply_transfer,
    build_context,
    check_every,
    forward_of,
    measure,
    not_finite,
    warm_up,
)
from suite.run.lock import RunLock
from suite.run.provenance import manifest_of, summary_of
from suite.run.resume import keeps_completed, restore, resume_command, resume_point
from suite.run.state import RunState
from suite.run.tracking import Tracker, open_tracker
from suite.run.train import Clock, Diverged, Parallel, Stage, Window, make_optimizer, train
from suite.spec import Benchmark
from suite.tuning_record import untuned

DEFAULT_OPTIONS = RunOptions()


class Preempted(Exception):  # noqa: N818 - an outcome, like KeyboardInterrupt
    """A signal asked the run to stop; its state was written to `checkpoint` (None: it could
    not be, see the message)."""

    def __init__(self, message: str, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


class _Execution:
    """Executes a plan over a RunState (suite/run/state.py): `execute` runs every plan step from
    the state's position, so that a fresh run and a resumed one take the same path. Writes the
    curve, and the state whenever the checkpoint policy or a signal asks for it."""

    def __init__(self, ctx: Context, state: RunState, batches: dataio.TrainBatches,
                 writer: RunWriter | NullWriter, bar: tqdm, policy: ckpt.Policy) -> None:
        self.ctx, self.s, self.batches, self.writer, self.bar = ctx, state, batches, writer, bar
        self.policy, self.signals = policy, ckpt.Preemption()
        self.tracker: Tracker | None = None

    def execute(self) -> None:
        for k in range(self.s.position, len(self.ctx.plan.steps)):
            step = self.ctx.plan.steps[k]
            if k != self.s.position:
                self.s.position, self.s.stage_step = k, 0
            if isinstance(step, methods.Transfer):
                self.transfer(step)
            else:
                self.stage(step)

    def log_eval(self, level: int, running: float, event: str | None = None,
                 timed_here: bool = False) -> None:
        """Evaluate, then append a curve row; raises Diverged naming the step and every value
        that is not finite (that row is not written: a curve holds measured numbers only).
        `timed_here`: add the time to eval_wall_s (train's on_step hook times its own calls)."""
        c, ctx, t0 = self.s.clock, self.ctx, time.perf_counter()
        try:
            values = measure(self.s.model, ctx.sets, ctx.out, ctx.dev, ctx.prec)
        finally:
            if timed_here:
                c.eval_wall_s += time.perf_counter() - t0
        if bad := not_finite(values):
            where = f"after {event}" if event else f"level {level}"
            raise Diverged(f"evaluation at step {self.s.main_steps} ({where}): not finite: "
                           f"{', '.join(bad)}", self.s.main_steps,
                           tuple(b.split("=")[0] for b in bad))
        row = {"step": self.s.main_steps, "flops": c.flops, "flops_blocks": c.flops_blocks,
               "wall_s": round(c.wall_s, 4), "level": level, **values}
        if math.isfinite(running):  # none yet at the start and right after a transfer
            row["train_loss_running"] = running
        if event:
            row["event"] = event
        self.s.curve.append(row)
        self.writer.log(row)
        if self.tracker is not None:
            opt = self.s.optimizers.get(level)
            self.tracker.log(row | ({"lr": opt[1].param_groups[0]["lr"]} if opt else {}))
        self.bar.set_postfix(loss=f"{values['train_loss']:.3f}",
                             heldout=f"{values['heldout_loss']:.3f}",
                             tok_s=f"{c.step * ctx.units / max(c.wall_s, 1e-9):.0f}")

    def transfer(self, step: methods.Transfer) -> None:
        s, ctx, t0 = self.s, self.ctx, time.perf_counter()
        s.model, op_flops = apply_transfer(step, s.model, s.saved)
        check_size(ctx, s.model, step, s.position)
        if ctx.world.active:  # identical on every rank by construction; measured, then made so
            s.spread = max(s.spread, distributed.max_parameter_spread(s.model, ctx.world))
            distributed.broadcast_parameters(s.model, ctx.world)
        if ctx.dev.type == "cuda":
            torch.cuda.synchronize(ctx.dev)
        dt = time.perf_counter() - t0
        s.clock.flops += op_flops
        s.clock.wall_s += dt
        op = s.operators.setdefault(step.operator, {"count": 0, "flops": 0, "wall_s": 0.0})
        op["count"] += 1
        op["flops"] += op_flops
        op["wall_s"] += dt
        if ML.OPERATORS[step.operator].evaluate_after:
            level = step.options.get("to", step.options.get("from", 0) + 1)
            self.log_eval(level, math.nan, event=step.operator, timed_here=True)

    def _setup(self, step: methods.Train) -> Parallel:
        """The stage's optimiser (unless it goes on with one, or a resume restored it) and
        forward (DDP, torch.compile): a cost the method pays at every stage, so inside the
        clock (`setup_wall_s` says how much of it)."""
        s, ctx, t0 = self.s, self.ctx, time.perf_counter()
        if s.stage_step == 0 and not step.keep_optimizer:
            s.optimizers[step.level] = (s.position, make_optimizer(s.model, step.optim))
        par = Parallel(ctx.world, forward_of(s.model, ctx.world, ctx.compile), ctx.accum)
        dt = time.perf_counter() - t0
        s.clock.wall_s += dt
        s.setup_wall_s += dt
        return par

    def stage(self, step: methods.Train) -> None:
        s, ctx, clock = self.s, self.ctx, self.s.clock
        if s.model is None:
            s.model = ctx.family.build(step.model, ctx.inputs).to(ctx.dev)
        if s.stage_step == 0:  # a stage reads back its own losses from its first step
            s.window = Window()
        lv = s.levels.setdefault(step.level, {"steps": 0, "flops": 0, "flops_blocks": 0,
                                             "wall_s": 0.0})
        before, base = dataclasses.replace(clock), clock.step - s.stage_step
        try:  # a level that diverged or was interrupted still counts what it ran
            if clock.step == 0:
                self.log_eval(step.level, math.nan, timed_here=True)  # the curve's start
            size, batch = step.model, ctx.scale.batch_size
            stage = Stage(step.steps, step.optim,
                          flops.train_step_flops(ctx.family, size, ctx.inputs, batch),
                          flops.train_step_flops(ctx.family, size, ctx.inputs, batch,
                                                 blocks_only=True),
                          schedule=step.schedule, start=s.stage_step)
            loop = dataclasses.replace(
                ctx.loop, parallel=self._setup(step),
                on_step=lambda c, last: self.after_step(c, last, step, base),
                progress=lambda n, _l: self.bar.update(n))
            train(s.model, self.batches, stage, clock, loop,
                  optimizer=s.optimizers[step.level][1], window=s.window)
        finally:
            for key in ("steps", "flops", "flops_blocks", "wall_s"):
                field_ = "step" if key == "steps" else key
                lv[key] += getattr(clock, field_) - getattr(before, field_)

    def after_step(self, c: Clock, last: float, step: methods.Train, base: int) -> None:
        """After every training step (outside the clock): evaluate when due, then write the
        run's state when the policy or a signal asks; raises Preempted after a signal."""
        s, scale = self.s, self.ctx.scale
        s.stage_step = c.step - base
        if not step.auxiliary:  # a coarse helper model: the arm's model is not this one
            s.main_steps += 1
            if s.main_steps % scale.eval.every == 0 or \
                    s.main_steps == self.ctx.plan.main_steps:
                self.log_eval(step.level, last)
        stop, write = self._decide(c.step)
        if stop or write:
            written = self.checkpoint(required=stop is not None)
            if stop:
                raise Preempted(f"{stop} after step {c.step}", written)

    def _decide(self, step: int) -> tuple[str | None, bool]:
        """(the signal that asks to stop, whether to write the state) after `step`, the same
        on every rank: under torchrun a signal and wall time are agreed on where the loop
        reads losses back (an all-reduce there), so that all ranks act after the same step."""
        if self.policy.signal_at_step == step:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
        asked, world, p = self.signals.requested, self.ctx.world, self.policy
        by_steps = bool(p.every_steps) and step % p.every_steps == 0
        if not world.active:
            return asked, by_steps or p.due_by_time()
        if step % check_every(self.ctx.scale):
            return None, by_steps
        flag = torch.tensor([1.0 if asked else 0.0, 1.0 if p.due_by_time() else 0.0],
                            device=self.ctx.dev)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        stop = (asked or "a signal on another rank") if flag[0].item() else None
        return stop, by_steps or bool(flag[1].item())

    def checkpoint(self, required: bool) -> Path | None:
        """Rank 0 writes the state and tells every rank whether it could; a failure (disk
        full) is printed and leaves None. `required`: asked by a signal (the caller stops)."""
        path, ok = ckpt.path_for(self.writer.path, self.s.clock.step), True
        if self.ctx.world.main:
            try:
                ckpt.write(self.writer.path, self.s.payload(self.batches), self.policy.keep)
            except CheckpointError as e:
                ok = False
                print(f"checkpoint not written{' (stopping anyway)' if required else ''}: {e}",
                      file=sys.stderr)
        if self.ctx.world.active:
            flag = torch.tensor([1.0 if ok else 0.0], device=self.ctx.dev)
            torch.distributed.broadcast(flag, src=0)
            ok = bool(flag.item())
        self.policy.written()
        return path if ok else None


def check_size(ctx: Context, model: nn.Module, step: methods.Transfer, position: int) -> None:
    """The plan's size table for the stage right after a transfer against the model the
    operator built: two rules (the plan's halving, the operator's) must agree, and a plug-in's
    plan must say what its operators do. Raises OperatorError naming both."""
    steps = ctx.plan.steps
    nxt = steps[position + 1] if position + 1 < len(steps) else None
    if not isinstance(nxt, methods.Train):
        return
    built, _, _ = ctx.family.describe(model)
    want = ctx.family.resolved(nxt.model)
    got = {k: built.get(k) for k in want}
    if any(want[k] and got[k] != want[k] for k in want):  # 0: "as the family defaults"
        raise ML.OperatorError(f"transfer {step.operator!r} (plan step {position}) built "
                               f"{got}, the plan's next stage is {want}")


def run_one(bench: Benchmark, scale_name: str, arm_name: str, seed: int, out: Path,
            options: RunOptions = DEFAULT_OPTIONS) -> Path:
    """Train one arm of one benchmark at one scale with one seed; returns the run folder
    `out/<scale>/<benchmark>/<arm>/seed-<n>`.

    The folder is a result only if its summary says "completed"; divergence (a NaN or infinite
    training loss or evaluated value), preemption (SIGTERM, SIGUSR1, SIGINT: the state is
    written, the run stops as "preempted") and interruption are written down as such; a
    diverged or preempted run returns normally (an outcome, not a crash; a crash is raised
    after the write). With `options.resume`, a completed run of the same definition and settings
    is left as it is and one with a checkpoint goes on from its newest (suite/run/state.py);
    the manifest lists each resume.
    Under torchrun (`options.world`) every rank trains its slice of each global batch; rank 0
    writes and every rank reads a checkpoint. Raises SpecError for a definition this run
    cannot execute (see `build_context`), CheckpointError for a checkpoint or a completed run
    of another definition or settings (suite/run/resume.py: `mismatch`)."""
    ctx, data, threads = build_context(bench, scale_name, arm_name, options)
    path = run_dir(out, scale_name, bench.name, arm_name, seed)
    with RunLock(path, ctx.world.main):  # one live job per run folder (suite/run/lock.py)
        return _run_held(bench, scale_name, arm_name, seed, path, options, ctx, data, threads)


def _run_held(bench: Benchmark, scale_name: str, arm_name: str, seed: int, path: Path,
              options: RunOptions, ctx: Context, data: Any, threads: int) -> Path:
    """run_one, once its folder's lock is held."""
    world = ctx.world
    manifest = manifest_of(bench, scale_name, arm_name, seed, ctx, data, threads) | {
        "tuning": options.tuning.get(arm_name, untuned("run without a tuning record"))}
    if options.resume and keeps_completed(path, manifest):  # the same run, completed: kept
        # killed after its summary, before its checkpoints went: its state goes
        shutil.rmtree(path / ckpt.FOLDER, ignore_errors=True)
        return path
    batches = dataio.TrainBatches(data, ctx.family.task, ctx.scale.batch_size,
                                  ctx.scale.seq_len, seed, world.rank, world.size)
    found, old = resume_point(path, manifest) if options.resume else (None, None)
    policy = options.policy or ckpt.Policy(bench.checkpoint.every_steps,
                                           bench.checkpoint.every_minutes, bench.checkpoint.keep)
    t_start = time.perf_counter()
    warmup_s = warm_up(ctx.family, ctx.inputs, ctx.plan, ctx.dev, ctx.prec)  # outside clocks
    if found is not None:
        state = restore(ctx, ckpt.read(found), batches)
        manifest = {**old, "resumes": [*old.get("resumes", []), {
            "checkpoint": found.name, "step": state.clock.step,
            "git": manifest["environment"]["git"], "command": manifest["command"],
            "started": manifest["started"], "threads": threads, "host": socket.gethostname(),
            "device_name": manifest["environment"]["device_name"]}]}
    else:
        torch.manual_seed(seed)
        state = RunState()
    tracker = None  # opened before the folder is written: a tracker that fails leaves no run
    if options.track and world.main:
        tracker = open_tracker(options.track, path, f"{bench.name}/{arm_name}/seed-{seed}",
                               manifest, state.tracker_id, state.main_steps)
        state.tracker_id = tracker.id
    writer: RunWriter | NullWriter = (RunWriter(path, manifest, resume_curve=state.curve
                                                if found is not None else None)
                                      if world.main else NullWriter(path))
    bar = tqdm(total=ctx.plan.train_steps, initial=state.clock.step,
               desc=f"{bench.name}/{path.parent.name}/{path.name}",
               disable=not (options.progress and world.main), file=sys.stderr,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)  # a log: a line now and then
    ex = _Execution(ctx, state, batches, writer, bar, policy)
    ex.tracker = tracker
    return _execute(ex, t_start, warmup_s, manifest["environment"]["device_name"])


def _execute(ex: _Execution, t_start: float, warmup_s: float, device_name: str) -> Path:
    """Run the plan from the state's position and write the outcome (see run_one)."""
    ctx, state, writer = ex.ctx, ex.s, ex.writer
    status, error, crash, divergence = COMPLETED, None, None, None
    try:
        ex.signals.install()
        ex.execute()
    except Diverged as e:
        status, error = "diverged", str(e)
        divergence = {"step": e.step, "quantities": list(e.quantities)}
    except Preempted as e:
        status, error = ("preempted", f"{e}; state in {e.checkpoint.name}") if e.checkpoint \
            else ("interrupted", f"{e}; no checkpoint could be written")
    except KeyboardInterrupt:
        status, error = "interrupted", "KeyboardInterrupt"
    except Exception as e:  # recorded, then re-raised: a crash is never a result
        status, error, crash = "failed", f"{type(e).__name__}: {e}", e
    finally:
        ex.bar.close()
        ex.signals.restore()
    summary = summary_of(ctx, state, device_name, error, divergence, t_start, warmup_s)
    if status == COMPLETED and state.clock.step != ctx.plan.train_steps:
        status, summary["error"] = "failed", f"ran {state.clock.step} of " \
            f"{ctx.plan.train_steps} steps"
    writer.finish(status, summary)
    if ex.tracker is not None:
        ex.tracker.close(status)
    if status == "preempted" and ctx.world.main:
        print(f"{writer.path}: preempted ({error}); continue with:\n  {resume_command()}",
              file=sys.stderr)
    if status == "interrupted":
        raise KeyboardInterrupt
    if crash is not None:
        raise crash
    if status == "failed":
        raise RuntimeError(f"{writer.path}: run failed: {summary['error']}")
    return writer.path

