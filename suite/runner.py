"""Executes a Plan: builds the models, trains them with the one loop, meters FLOPs and wall time,
and writes the run folder. Every method runs through `run_one`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from suite import data as dataio
from suite import distributed, flops, methods
from suite import operators as ML
from suite import state as ckpt
from suite.data import Batch
from suite.distributed import World
from suite.families import FAMILIES, Family, Inputs, logits
from suite.registry import USER_SOURCE, inputs_for
from suite.results import (
    COMPLETED,
    CheckpointError,
    NullWriter,
    RunWriter,
    environment,
    read_run,
    run_dir,
)
from suite.spec import Benchmark, Scale, SpecError, definition_difference
from suite.state import RunState
from suite.train import (
    Clock,
    Diverged,
    Optim,
    Parallel,
    Window,
    evaluate,
    lr_factor,
    make_optimizer,
    train,
)

_DATA_CACHE: dict[tuple, Any] = {}


def load_data(family: Family, scale: Scale) -> dataio.TextData | dataio.ImageData:
    key = (family.data_kind, scale.data.source, scale.data.vocab_size, scale.data.image_size,
           scale.data.augment)
    if key not in _DATA_CACHE:
        if scale.data.source == USER_SOURCE:
            raise SpecError("(command line)", f"scales.{scale.name}.data.source",
                            "this scale reads data you bring: pass --data PATH",
                            "a text file or folder, a .npy of token ids, or an image folder")
        if family.data_kind == "text":
            _DATA_CACHE[key] = dataio.load_text(scale.data.source, scale.data.vocab_size or None)
        else:
            _DATA_CACHE[key] = dataio.load_images(scale.data.source, scale.data.image_size,
                                                  scale.data.augment)
    return _DATA_CACHE[key]


def step_cost(family: Family, scale: Scale, inputs: Inputs) -> methods.StepCost:
    """FLOPs of one training step of a model of a given size at this scale's batch."""
    return lambda size: flops.train_step_flops(family, size, inputs, scale.batch_size)


def apply_transfer(t: methods.Transfer, model: nn.Module,
                   saved: dict[int, nn.Module]) -> tuple[nn.Module, int]:
    """Run one Transfer step of a plan (suite/operators: OPERATORS); returns the new model and
    the operator's FLOPs. `saved` keeps models a later transfer needs, e.g. each level's model
    as it was just before it was coalesced: interpolation is always with that model."""
    return ML.apply(t.operator, t.options, model, saved)


def forward_of(model: nn.Module, world: World, compile: bool) -> nn.Module | None:
    """What a training step calls: the model, DDP-wrapped under torchrun, compiled on request
    (FLOPs are still counted by fvcore on the eager model)."""
    fwd = DDP(model) if world.active else model
    return torch.compile(fwd) if compile else (fwd if world.active else None)


def mfu(clock: Clock, device_name: str, world: World, precision: str) -> float | None:
    """Model FLOP utilisation against the device's bf16 peak; None for an unknown device or a
    run not in bf16 (a peak of another precision would make the figure meaningless)."""
    peak = flops.bf16_peak(device_name)
    if peak is None or precision != "bf16" or not clock.wall_s:
        return None
    return clock.flops / clock.wall_s / (peak * world.size)


def pick_precision(device: torch.device, precision: str) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def prepare_device(device: str, threads: int | None,
                   precision: str) -> tuple[torch.device, int, str]:
    """The device, the CPU thread count (pinned so that CPU runs are bit-reproducible) and the
    precision a run trains in; TF32 on CUDA for what autocast leaves in fp32."""
    dev = torch.device(device)
    threads = threads or int(os.environ.get("SUITE_THREADS", 0)) or (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return dev, threads, pick_precision(dev, precision)


@dataclass(frozen=True)
class EvalSets:
    """The fixed evaluation sets of a run, independent of its seed and the same for every arm:
    `heldout` batches and `train`, as many batches from the training split (the "training loss"
    of paper 2, measured on a fixed subset rather than the last minibatches)."""

    heldout: list[Batch]
    train: list[Batch]
    top1: bool
    bytes_per_token: float | None  # bits per byte need it; None when the data has no bytes

    @classmethod
    def of(cls, data: dataio.TextData | dataio.ImageData, family: Family,
           scale: Scale) -> EvalSets:
        args = (data, family.task, scale.batch_size, scale.seq_len, scale.eval.batches)
        return cls(dataio.heldout_batches(*args), dataio.heldout_batches(*args, split="train"),
                   "top1" in scale.eval.metrics, getattr(data, "bytes_per_token", None))

    def describe(self) -> dict[str, Any]:
        """What the manifest records: batches and labelled positions (tokens or images) of each
        set, and of the two halves of the held-out set that heldout_loss_a / _b are over."""
        def labelled(batches: list[Batch]) -> int:
            return sum(int((y != -100).sum()) for _, y in batches)

        cut = len(self.heldout) // 2
        return {
            "heldout_batches": len(self.heldout), "train_batches": len(self.train),
            "heldout_labelled": labelled(self.heldout), "train_labelled": labelled(self.train),
            "heldout_halves_batches": [cut, len(self.heldout) - cut],
            "heldout_halves_labelled": [labelled(self.heldout[:cut]),
                                        labelled(self.heldout[cut:])],
            "train_loss": "token-weighted mean cross-entropy (nats) on a fixed subset of the "
                          "training split, the same for every seed and arm",
            "train_loss_running": "mean minibatch loss over the last loss read-back window",
            "heldout_loss_a/b": "the held-out loss over the first floor(n/2) and the last "
                                "ceil(n/2) held-out batches; heldout_loss is their "
                                "token-weighted mean (an empty half has no value)",
        }


def measure(model: nn.Module, sets: EvalSets, out: Any, dev: torch.device,
            prec: str) -> dict[str, float]:
    """The values one evaluation records (losses in nats per token or image; bpb in bits per
    byte where the data has bytes; top1 a fraction). Not counted in FLOPs or `Clock.wall_s`."""
    held = evaluate(model, sets.heldout, out, dev, prec, sets.top1, halves=True)
    row = {"heldout_loss": held["loss"],
           "train_loss": evaluate(model, sets.train, out, dev, prec, False)["loss"]}
    row |= {f"heldout_loss_{h}": held[f"loss_{h}"] for h in "ab" if f"loss_{h}" in held}
    if sets.bytes_per_token:
        row |= {k.replace("loss", "bpb"): v / math.log(2) / sets.bytes_per_token
                for k, v in list(row.items())}
    if sets.top1:
        row["heldout_top1"] = held["top1"]
    return row


def not_finite(values: dict[str, float]) -> list[str]:
    """'name=value' for every NaN or infinite value."""
    return [f"{k}={v}" for k, v in values.items() if not math.isfinite(v)]


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


def _dummy_batch(family: Family, inputs: Inputs) -> Batch:
    if family.data_kind == "images":
        return (torch.zeros(2, inputs.channels, inputs.image_size, inputs.image_size),
                torch.zeros(2, dtype=torch.long))
    return torch.zeros(2, inputs.seq_len, dtype=torch.long), torch.zeros(2, inputs.seq_len,
                                                                           dtype=torch.long)


def warm_up(family: Family, inputs: Inputs, plan: methods.Plan, dev: torch.device,
            prec: str) -> float:
    """Pay, outside every clock, the first-call costs a run would otherwise time once per
    process: every family's model class (suite.families.family_of, called by every operator,
    imports transformers and timm: 1-2 s), and one training step, one evaluation and each
    transfer operator of `plan` on a throwaway model of the family a few units wide. The global
    RNG (CPU, and CUDA on a GPU) is restored, so a seed's curve is bit-identical with or without
    it. Returns the seconds it took."""
    t0 = time.perf_counter()
    for fam in FAMILIES.values():
        fam.model_class()
    trains = [s for s in plan.steps if isinstance(s, methods.Train)]
    k = 2 ** (max(s.level for s in trains) - 1)  # halvable that many times, head size 2
    size = {**trains[0].model, "hidden": 4 * k, "heads": 2 * k, "ffn": 8 * k, "layers": 2 * k}
    # keys that halve with the width (llama's kv_heads) follow heads: the definition's value
    # need not divide the throwaway's heads
    size |= {key: 2 * k for key in family.width_keys if key in size}
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        model = family.build(size, inputs).to(dev)
        batch = _dummy_batch(family, inputs)
        optim = dataclasses.replace(trains[0].optim, lr=0.0)  # a throwaway: learn nothing

        def out(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
            return logits(family, m, x)

        with contextlib.suppress(Diverged):  # a throwaway's loss means nothing
            train(model, iter([batch]), 1, optim, 0, Clock(), out, device=dev, precision=prec,
                  check_every=1)
        evaluate(model, [batch], out, dev, prec, top1=True, halves=True)
        transfers = [s for s in plan.steps if isinstance(s, methods.Transfer)]
        names, seen, saved = {t.operator for t in transfers}, set(), {}
        for t in transfers:  # until each operator ran once and every coarsening was undone
            model, _ = apply_transfer(t, model, saved)
            seen.add(t.operator)
            if seen == names and not saved:
                break
    return time.perf_counter() - t0


class Preempted(Exception):  # noqa: N818 - an outcome, like KeyboardInterrupt
    """A signal asked the run to stop; its state was written to `checkpoint` (None: it could
    not be, see the message)."""

    def __init__(self, message: str, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


@dataclass
class Context:
    """What a run reads but never changes: the workload, the plan, the evaluation sets, where
    it trains and where it writes."""

    family: Family
    inputs: Inputs
    scale: Scale
    plan: methods.Plan
    sets: EvalSets
    world: World
    dev: torch.device
    prec: str
    compile: bool
    accum: int

    @property
    def units(self) -> int:  # tokens (or images) per step
        return self.scale.batch_size * (self.scale.seq_len or 1)

    def out(self, m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return logits(self.family, m, x)


class _Execution:
    """Executes a plan over a RunState (suite/state.py): `execute` runs every plan step from
    the state's position, so that a fresh run and a resumed one take the same path. Writes the
    curve, and the state whenever the checkpoint policy or a signal asks for it."""

    def __init__(self, ctx: Context, state: RunState, batches: dataio.TrainBatches,
                 writer: RunWriter | NullWriter, bar: tqdm, policy: ckpt.Policy,
                 signals: ckpt.Preemption) -> None:
        self.ctx, self.s, self.batches, self.writer, self.bar = ctx, state, batches, writer, bar
        self.policy, self.signals = policy, signals

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
            par = self._setup(step)
            train(s.model, self.batches, step.steps, step.optim,
                  flops.train_step_flops(ctx.family, step.model, ctx.inputs,
                                         ctx.scale.batch_size), clock, ctx.out,
                  lambda c, last: self.after_step(c, last, step, base), ctx.dev, ctx.prec,
                  check_every=check_every(ctx.scale), progress=lambda n, _l: self.bar.update(n),
                  step_flops_blocks=flops.train_step_flops(ctx.family, step.model, ctx.inputs,
                                                           ctx.scale.batch_size,
                                                           blocks_only=True),
                  schedule=step.schedule, optimizer=s.optimizers[step.level][1], parallel=par,
                  start=s.stage_step, window=s.window)
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


def check_every(scale: Scale) -> int:
    """Steps between loss read-backs: divides the evaluation interval (and 10)."""
    return math.gcd(scale.eval.every, 10)


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
    s.window = Window([t.to(ctx.dev) for t in payload["window"]["pending"]],
                      payload["window"]["last"])
    batches.load_state_dict(payload["rng"]["batches"])
    ckpt.restore_rng(payload["rng"])
    return s


def _manifest(bench: Benchmark, scale_name: str, arm_name: str, seed: int, ctx: Context,
              data: dataio.TextData | dataio.ImageData, device: str,
              threads: int) -> dict[str, Any]:
    return {
        "benchmark": bench.name, "scale_name": scale_name, "arm_name": arm_name, "seed": seed,
        "definition": bench.resolved(scale_name, arm_name),
        "method": {"name": ctx.plan.method, "options": ctx.plan.options},
        "plan": [dataclasses.asdict(s) | {"kind": type(s).__name__} for s in ctx.plan.steps],
        "data": {"source": data.source, "heldout": list(getattr(data, "heldout_names", ())),
                 "inputs": dataclasses.asdict(ctx.inputs),
                 **({"files": data.files} if getattr(data, "files", None) else {})},
        "evaluation": ctx.sets.describe(),
        "pairing": pairing(ctx.plan, ctx.scale, seed, ctx.family),
        "precision": ctx.prec, "flop_convention": flops.CONVENTION,
        "environment": environment(device, threads),
        "world_size": ctx.world.size, "accum": ctx.accum, "compile": ctx.compile,
        "checkpoint": dataclasses.asdict(bench.checkpoint),
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _summary(ctx: Context, s: RunState, device_name: str, error: str | None,
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
        "mfu": mfu(clock, device_name, ctx.world, ctx.prec),
        "error": error,
        "divergence": divergence,
    }


def _context(bench: Benchmark, scale_name: str, arm_name: str, device: str,
             threads: int | None, precision: str, world: World, accum: int,
             compile: bool) -> tuple[Context, dataio.TextData | dataio.ImageData, int]:
    """Everything checked and built before a run trains: raises SpecError naming the key for
    a batch that does not split over processes x micro-batches or a model the data cannot
    feed. Returns the context, the data and the CPU threads."""
    scale = bench.scale(scale_name)
    family = FAMILIES[bench.family]
    # Unequal micro-batches would weight samples unequally, and too few would never sync DDP.
    if accum < 1 or scale.batch_size % (world.size * accum):
        raise SpecError(bench.path, f"scales.{scale_name}.batch_size",
                        f"a global batch of {scale.batch_size} does not split evenly over "
                        f"{world.size} process(es) x --accum {accum} micro-batch(es)",
                        "--accum >= 1 and a batch size divisible by processes x --accum")
    dev, threads, prec = prepare_device(device, threads, precision)
    data = load_data(family, scale)
    inputs = inputs_for(family, scale, data)
    for key, msg in family.check(scale.model, inputs):
        raise SpecError(bench.path, f"scales.{scale_name}.model.{key}", msg)
    plan = methods.plan(bench.arms[arm_name], scale, step_cost(family, scale, inputs), family)
    ctx = Context(family, inputs, scale, plan, EvalSets.of(data, family, scale), world, dev,
                  prec, compile, accum)
    return ctx, data, threads


def _resume_point(path: Path, manifest: dict[str, Any]) -> tuple[Path | None, dict | None]:
    """(checkpoint, its run's manifest) to resume from, or (None, None) to start afresh.
    Raises CheckpointError when the run folder's definition differs from this run's."""
    found = ckpt.latest(path)
    if found is None or not (path / "manifest.json").exists():
        return None, None
    old = read_run(path).manifest
    ours = json.loads(json.dumps(manifest["definition"]))  # as written: tuples are lists
    if (key := definition_difference(ours, old["definition"])) is not None:
        raise CheckpointError(f"{found}: was written by a run whose definition differs at "
                              f"{key!r}; resume it with the definition it started with")
    return found, old


def run_one(bench: Benchmark, scale_name: str, arm_name: str, seed: int, out: Path,
            device: str = "cpu", threads: int | None = None, precision: str = "auto",
            progress: bool = True, world: World | None = None, accum: int = 1,
            compile: bool = False, resume: bool = False,
            policy: ckpt.Policy | None = None) -> Path:
    """Train one arm of one benchmark at one scale with one seed; returns the run folder.

    The folder is a result only if its summary says "completed"; divergence (a NaN or infinite
    training loss or evaluated value), preemption (SIGTERM, SIGUSR1, SIGINT: the state is
    written, the run stops as "preempted") and interruption are written down as such; a
    diverged or preempted run returns normally (an outcome, not a crash; a crash is raised
    after the write). With `resume`, a completed run is left as it is and one with a
    checkpoint goes on from its newest (suite/state.py); the manifest lists each resume.
    Under torchrun (`world`) every rank trains its slice of each global batch; rank 0 writes
    and every rank reads a checkpoint."""
    world = world or World()
    ctx, data, threads = _context(bench, scale_name, arm_name, device, threads, precision,
                                  world, accum, compile)
    path = run_dir(out, scale_name, bench.name, arm_name, seed)
    if resume and (path / "summary.json").exists() and read_run(path).complete:
        return path
    manifest = _manifest(bench, scale_name, arm_name, seed, ctx, data, device, threads)
    batches = dataio.TrainBatches(data, ctx.family.task, ctx.scale.batch_size,
                                  ctx.scale.seq_len, seed, world.rank, world.size)
    found, old = _resume_point(path, manifest) if resume else (None, None)
    policy = policy or ckpt.Policy(bench.checkpoint.every_steps,
                                   bench.checkpoint.every_minutes, bench.checkpoint.keep)
    t_start, warmup_s = time.perf_counter(), 0.0
    warmup_s = warm_up(ctx.family, ctx.inputs, ctx.plan, ctx.dev, ctx.prec)  # outside clocks
    if found is not None:
        state = restore(ctx, ckpt.read(found), batches)
        manifest = {**old, "resumes": [*old.get("resumes", []), {
            "checkpoint": found.name, "step": state.clock.step,
            "git": manifest["environment"]["git"], "command": manifest["command"],
            "started": manifest["started"]}]}
    else:
        torch.manual_seed(seed)
        state = RunState()
    writer: RunWriter | NullWriter = (RunWriter(path, manifest, resume_curve=state.curve
                                                if found is not None else None)
                                      if world.main else NullWriter(path))
    return _execute(ctx, state, batches, writer, policy, progress, bench.name, t_start,
                    warmup_s, manifest["environment"]["device_name"])


def _execute(ctx: Context, state: RunState, batches: dataio.TrainBatches,
             writer: RunWriter | NullWriter, policy: ckpt.Policy, progress: bool, name: str,
             t_start: float, warmup_s: float, device_name: str) -> Path:
    """Run the plan from the state's position and write the outcome (see run_one)."""
    bar = tqdm(total=ctx.plan.train_steps, initial=state.clock.step,
               desc=f"{name}/{writer.path.parent.name}/{writer.path.name}",
               disable=not (progress and ctx.world.main), file=sys.stderr,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)  # a log: a line now and then
    signals = ckpt.Preemption().install()
    ex = _Execution(ctx, state, batches, writer, bar, policy, signals)
    status, error, crash, divergence = COMPLETED, None, None, None
    try:
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
        bar.close()
        signals.restore()
    summary = _summary(ctx, state, device_name, error, divergence, t_start, warmup_s)
    if status == COMPLETED and state.clock.step != ctx.plan.train_steps:
        status, summary["error"] = "failed", f"ran {state.clock.step} of " \
            f"{ctx.plan.train_steps} steps"
    writer.finish(status, summary)
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


def measure_throughput(bench: Benchmark, scale_name: str, device: str = "cpu",
                       precision: str = "auto", compile: bool = False, steps: int = 30,
                       warmup: int = 10, threads: int | None = None) -> dict[str, Any]:
    """Speed of the baseline's training step at a scale: `warmup` untimed steps (compilation,
    allocator, cuDNN autotuning), then `steps` timed ones between two device synchronisations.
    FLOPs are the meter's count, so TFLOP/s and MFU are comparable with a run's summary. Not a
    result: nothing is learnt in so few steps; `python -m suite throughput` writes it to its own
    file with the environment."""
    if steps < 1 or warmup < 0:
        raise SpecError("(command line)", "steps" if steps < 1 else "warmup",
                        f"got {steps if steps < 1 else warmup}", "steps >= 1, warmup >= 0")
    scale = bench.scale(scale_name)
    family = FAMILIES[bench.family]
    dev, threads, prec = prepare_device(device, threads, precision)
    data = load_data(family, scale)
    inputs = inputs_for(family, scale, data)
    torch.manual_seed(0)
    model = family.build(scale.model, inputs).to(dev)
    batches = dataio.TrainBatches(data, family.task, scale.batch_size, scale.seq_len, 0)
    per_step = flops.train_step_flops(family, scale.model, inputs, scale.batch_size)
    optim = methods.optim_of(scale)
    opt = make_optimizer(model, optim)
    par = Parallel(World(), forward_of(model, World(), compile), 1)

    def out_fn(m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return logits(family, m, x)

    def run(n: int) -> Clock:
        clock = Clock()
        if n:
            train(model, batches, n, optim, per_step, clock, out_fn, device=dev, precision=prec,
                  check_every=n, optimizer=opt, parallel=par)
        return clock

    t0 = time.perf_counter()
    run(warmup)
    warm_s = time.perf_counter() - t0
    clock = run(steps)  # `train` synchronises the device after its last step
    units = scale.batch_size * (scale.seq_len or 1)
    env = environment(device, threads)
    return {
        "benchmark": bench.name, "scale": scale_name, "model": scale.model,
        "batch_size": scale.batch_size, "seq_len": scale.seq_len, "precision": prec,
        "compile": compile, "warmup_steps": warmup, "warmup_s": warm_s, "steps": steps,
        "wall_s": clock.wall_s, "step_flops": per_step,
        "step_ms": 1000 * clock.wall_s / steps,
        "throughput_per_s": steps * units / clock.wall_s,
        "unit": "tokens" if scale.seq_len else "images",
        "achieved_flops_per_s": clock.flops / clock.wall_s,
        "mfu": mfu(clock, env["device_name"], World(), prec),
        "flop_convention": flops.CONVENTION, "environment": env,
        "command": " ".join(sys.argv),
    }
