"""Executes a Plan: builds the models, trains them with the one loop, meters FLOPs and wall time,
and writes the run folder. Every method runs through `run_one`."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
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
from suite import multilevel as ML
from suite.data import Batch
from suite.distributed import World
from suite.families import FAMILIES, Family, Inputs, logits
from suite.registry import USER_SOURCE, inputs_for
from suite.results import COMPLETED, NullWriter, RunWriter, environment, run_dir
from suite.spec import Benchmark, Scale, SpecError
from suite.train import (
    Clock,
    Diverged,
    Optim,
    Parallel,
    evaluate,
    lr_factor,
    make_optimizer,
    train,
)

_DATA_CACHE: dict[tuple[str, str, int], dataio.TextData | dataio.ImageData] = {}


def load_data(family: Family, scale: Scale) -> dataio.TextData | dataio.ImageData:
    key = (family.data_kind, scale.data.source, scale.data.vocab_size)
    if key not in _DATA_CACHE:
        if scale.data.source == USER_SOURCE:
            raise SpecError("(command line)", f"scales.{scale.name}.data.source",
                            "this scale reads data you bring: pass --data PATH",
                            "a text file or folder, a .npy of token ids, or an image folder")
        if family.data_kind == "text":
            _DATA_CACHE[key] = dataio.load_text(scale.data.source, scale.data.vocab_size or None)
        else:
            _DATA_CACHE[key] = dataio.load_images(scale.data.source)
    return _DATA_CACHE[key]


def step_cost(family: Family, scale: Scale, inputs: Inputs) -> methods.StepCost:
    """FLOPs of one training step of a model of a given size at this scale's batch."""
    return lambda size: flops.train_step_flops(family, size, inputs, scale.batch_size)


def apply_transfer(t: methods.Transfer, model: nn.Module,
                   saved: dict[int, nn.Module]) -> tuple[nn.Module, int]:
    """Run one Transfer step of a plan; returns the new model and the operator's FLOPs.
    `saved` keeps each level's model as it was just before it was coalesced: interpolation is
    always with that model, never with another run's result."""
    o = t.options
    ops = {k: o[k] for k in ("depth_pairing", "embedding_scaling") if k in o}
    if t.operator == "coalesce":
        saved[o["from"]] = model
        return ML.coalesce(model, **ops), ML.operator_flops(model, "coalesce")
    if t.operator == "decoalesce+interpolate":
        big = saved.pop(o["to"])
        grown = ML.decoalesce(model, like=big, **ops)
        cost = ML.operator_flops(big, "decoalesce") + ML.operator_flops(big, "interpolate")
        return ML.interpolate(big, grown, o["alpha"]), cost
    if t.operator == "restrict":  # copies only: no arithmetic
        saved[1] = model
        return ML.restrict(model, o["parity"], shared=o["shared"],
                           coarse_step=o["coarse_step"]), 0
    if t.operator == "prolongate":
        fine = saved.pop(1)
        ML.prolongate(fine, model, o["parity"], o["delta"], shared=o["shared"])
        return fine, ML.operator_flops(model, "interpolate")
    raise ValueError(f"unknown transfer operator {t.operator!r}")


# transfers after which the arm's own model changed size: worth an evaluation point
EVAL_AFTER = ("coalesce", "decoalesce+interpolate")


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


def _size(model: dict[str, int]) -> dict[str, int]:
    return {**model, "ffn": model.get("ffn") or 4 * model["hidden"]}


def same_updates(plan: methods.Plan, scale: Scale) -> int:
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
                or _size(s.model) != _size(dict(scale.model)) or (k and not s.keep_optimizer):
            return n
        start, total = s.schedule or (0, s.steps)
        for i in range(s.steps):
            if n >= scale.steps or s.optim.lr * lr_factor(start + i, total, s.optim) != \
                    base.lr * lr_factor(n, scale.steps, base):
                return n
            n += 1
    return n


def pairing(plan: methods.Plan, scale: Scale, seed: int) -> dict[str, Any]:
    """What seed `seed` of this arm shares with seed `seed` of the baseline, for the manifest.

    The initialisation: torch.manual_seed(init_seed) right before the first model is built
    (nothing draws from the global generator in between; the warm-up restores it). The batches:
    one stream, TrainBatches(batch_seed), whose batch i goes to training step i of the run at
    whatever level, coarse helper steps included. `main_step_batches` lists [first, last,
    offset]: the arm's own model's steps first..last draw batches step + offset;
    `same_updates_as_baseline` counts the leading steps whose update is the baseline's."""
    trains = [s for s in plan.steps if isinstance(s, methods.Train)]
    same_init = trains[0].level == 1 and _size(trains[0].model) == _size(dict(scale.model))
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
            "main_step_batches": segments, "same_updates_as_baseline": same_updates(plan, scale)}


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


class _Execution:
    """One run's state while its plan executes: the model, the clock, the costs per level and
    operator, and the curve. `run_one` calls `transfer` or `stage` for each plan step."""

    def __init__(self, family: Family, inputs: Inputs, scale: Scale, plan: methods.Plan,
                 sets: EvalSets, batches: dataio.TrainBatches, writer: RunWriter | NullWriter,
                 bar: tqdm, world: World, dev: torch.device, prec: str, compile: bool,
                 accum: int) -> None:
        self.family, self.inputs, self.scale, self.plan = family, inputs, scale, plan
        self.sets, self.batches, self.writer, self.bar = sets, batches, writer, bar
        self.world, self.dev, self.prec, self.compile, self.accum = (world, dev, prec, compile,
                                                                     accum)
        self.units = scale.batch_size * (scale.seq_len or 1)  # tokens (or images) per step
        self.clock = Clock()
        self.levels: dict[int, dict[str, float]] = {}
        self.operators: dict[str, dict[str, float]] = {}
        self.saved: dict[int, nn.Module] = {}
        self.optimizers: dict[int, torch.optim.Optimizer] = {}  # last optimiser of each level
        self.curve: list[dict[str, Any]] = []
        self.main_steps = 0  # steps of the arm's own model (coarse helpers of paper 2 excluded)
        self.model: nn.Module | None = None
        self.spread = 0.0  # largest parameter difference between ranks seen after a transfer
        self.setup_wall_s = 0.0  # stage set-up inside Clock.wall_s: optimisers, DDP wrapping

    def out(self, m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return logits(self.family, m, x)

    def log_eval(self, level: int, running: float, event: str | None = None,
                 timed_here: bool = False) -> None:
        """Evaluate, then append a curve row; raises Diverged naming the step and every value
        that is not finite (that row is not written: a curve holds measured numbers only).
        `timed_here`: add the time to eval_wall_s (train's on_step hook times its own calls)."""
        t0 = time.perf_counter()
        try:
            values = measure(self.model, self.sets, self.out, self.dev, self.prec)
        finally:
            if timed_here:
                self.clock.eval_wall_s += time.perf_counter() - t0
        if bad := not_finite(values):
            where = f"after {event}" if event else f"level {level}"
            raise Diverged(f"evaluation at step {self.main_steps} ({where}): not finite: "
                           f"{', '.join(bad)}", self.main_steps,
                           tuple(b.split("=")[0] for b in bad))
        c = self.clock
        row = {"step": self.main_steps, "flops": c.flops, "flops_blocks": c.flops_blocks,
               "wall_s": round(c.wall_s, 4), "level": level, **values}
        if math.isfinite(running):  # none yet at the start and right after a transfer
            row["train_loss_running"] = running
        if event:
            row["event"] = event
        self.curve.append(row)
        self.writer.log(row)
        self.bar.set_postfix(loss=f"{values['train_loss']:.3f}",
                             heldout=f"{values['heldout_loss']:.3f}",
                             tok_s=f"{c.step * self.units / max(c.wall_s, 1e-9):.0f}")

    def transfer(self, step: methods.Transfer) -> None:
        t0 = time.perf_counter()
        self.model, op_flops = apply_transfer(step, self.model, self.saved)
        if self.world.active:  # identical on every rank by construction; measured, then made so
            self.spread = max(self.spread,
                              distributed.max_parameter_spread(self.model, self.world))
            distributed.broadcast_parameters(self.model, self.world)
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        dt = time.perf_counter() - t0
        self.clock.flops += op_flops
        self.clock.wall_s += dt
        op = self.operators.setdefault(step.operator, {"count": 0, "flops": 0, "wall_s": 0.0})
        op["count"] += 1
        op["flops"] += op_flops
        op["wall_s"] += dt
        if step.operator in EVAL_AFTER:
            level = step.options.get("to", step.options.get("from", 0) + 1)
            self.log_eval(level, math.nan, event=step.operator, timed_here=True)

    def _setup(self, step: methods.Train) -> Parallel:
        """The stage's optimiser and forward (DDP, torch.compile): a cost the method pays at
        every stage, so inside the clock (`setup_wall_s` says how much of it)."""
        t0 = time.perf_counter()
        if not step.keep_optimizer:
            self.optimizers[step.level] = make_optimizer(self.model, step.optim)
        par = Parallel(self.world, forward_of(self.model, self.world, self.compile), self.accum)
        dt = time.perf_counter() - t0
        self.clock.wall_s += dt
        self.setup_wall_s += dt
        return par

    def stage(self, step: methods.Train) -> None:
        fam, scale, clock = self.family, self.scale, self.clock
        if self.model is None:
            self.model = fam.build(step.model, self.inputs).to(self.dev)
        per_step = flops.train_step_flops(fam, step.model, self.inputs, scale.batch_size)
        per_step_blocks = flops.train_step_flops(fam, step.model, self.inputs, scale.batch_size,
                                                 blocks_only=True)
        lv = self.levels.setdefault(step.level, {"steps": 0, "flops": 0, "flops_blocks": 0,
                                                 "wall_s": 0.0})
        before = dataclasses.replace(clock)
        try:  # a level that diverged or was interrupted still counts what it ran
            if clock.step == 0:
                self.log_eval(step.level, math.nan, timed_here=True)  # the curve's start

            def on_step(c: Clock, last: float, s: methods.Train = step) -> None:
                if s.auxiliary:  # a coarse helper model: the arm's model is not this one
                    return
                self.main_steps += 1
                if self.main_steps % scale.eval.every == 0 or \
                        self.main_steps == self.plan.main_steps:
                    self.log_eval(s.level, last)

            par = self._setup(step)
            train(self.model, self.batches, step.steps, step.optim, per_step, clock, self.out,
                  on_step, self.dev, self.prec, check_every=math.gcd(scale.eval.every, 10),
                  progress=lambda n, _loss: self.bar.update(n),
                  step_flops_blocks=per_step_blocks, schedule=step.schedule,
                  optimizer=self.optimizers[step.level], parallel=par)
        finally:
            lv["steps"] += clock.step - before.step
            lv["flops"] += clock.flops - before.flops
            lv["flops_blocks"] += clock.flops_blocks - before.flops_blocks
            lv["wall_s"] += clock.wall_s - before.wall_s


def _manifest(bench: Benchmark, scale_name: str, arm_name: str, seed: int, plan: methods.Plan,
              data: dataio.TextData | dataio.ImageData, inputs: Inputs, sets: EvalSets,
              prec: str, device: str, threads: int) -> dict[str, Any]:
    return {
        "benchmark": bench.name, "scale_name": scale_name, "arm_name": arm_name, "seed": seed,
        "definition": bench.resolved(scale_name, arm_name),
        "method": {"name": plan.method, "options": plan.options},
        "plan": [dataclasses.asdict(s) | {"kind": type(s).__name__} for s in plan.steps],
        "data": {"source": data.source, "heldout": list(getattr(data, "heldout_names", ())),
                 "inputs": dataclasses.asdict(inputs)},
        "evaluation": sets.describe(),
        "pairing": pairing(plan, bench.scale(scale_name), seed),
        "precision": prec, "flop_convention": flops.CONVENTION,
        "environment": environment(device, threads),
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _summary(ex: _Execution, world: World, device_name: str, error: str | None,
             divergence: dict[str, Any] | None, t_start: float, warmup_s: float) -> dict:
    """The run's totals. `final_*` are those of the last curve row: the last evaluation whose
    values were all finite (a diverged run's non-finite one is in `error` and `divergence`);
    None where no evaluation was recorded."""
    clock, curve = ex.clock, ex.curve
    final, first = (curve[-1], curve[0]) if curve else ({}, {})
    return {
        "steps": clock.step, "planned_steps": ex.plan.train_steps, "flops": clock.flops,
        "flops_blocks": clock.flops_blocks,
        "wall_s": clock.wall_s, "setup_wall_s": ex.setup_wall_s,
        "eval_wall_s": clock.eval_wall_s, "warmup_s": warmup_s,
        "total_wall_s": time.perf_counter() - t_start,
        **{f"final_{k}": final.get(k) for k in (
            "heldout_loss", "heldout_loss_a", "heldout_loss_b", "train_loss",
            "train_loss_running", "heldout_top1", "heldout_bpb", "train_bpb")},
        "start_heldout_loss": first.get("heldout_loss"),
        "start_train_loss": first.get("train_loss"),
        "levels": {str(k): v for k, v in ex.levels.items()},
        "operators": ex.operators,
        "world_size": world.size,
        "max_rank_spread_after_transfers": ex.spread,
        "throughput_per_s": clock.step * ex.units / clock.wall_s if clock.wall_s else None,
        "achieved_flops_per_s": clock.flops / clock.wall_s if clock.wall_s else None,
        "mfu": mfu(clock, device_name, world, ex.prec),
        "error": error,
        "divergence": divergence,
    }


def run_one(bench: Benchmark, scale_name: str, arm_name: str, seed: int, out: Path,
            device: str = "cpu", threads: int | None = None, precision: str = "auto",
            progress: bool = True, world: World | None = None, accum: int = 1,
            compile: bool = False) -> Path:
    """Train one arm of one benchmark at one scale with one seed; returns the run folder.

    The folder is a result only if its summary says "completed"; divergence (a NaN or infinite
    training loss or evaluated value) and interruption are written down as such, and a
    diverged run returns normally (an outcome, not a crash; an interruption is re-raised after
    the write, a crash raised). Under torchrun (`world`, from suite.distributed.setup) every
    rank trains its slice of each global batch and only rank 0 writes."""
    world = world or World()
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
    plan = methods.plan(bench.arms[arm_name], scale, step_cost(family, scale, inputs))
    sets = EvalSets.of(data, family, scale)
    batches = dataio.TrainBatches(data, family.task, scale.batch_size, scale.seq_len, seed)
    manifest = _manifest(bench, scale_name, arm_name, seed, plan, data, inputs, sets, prec,
                         device, threads)
    manifest["world_size"], manifest["accum"], manifest["compile"] = world.size, accum, compile
    path = run_dir(out, scale_name, bench.name, arm_name, seed)
    writer = RunWriter(path, manifest) if world.main else NullWriter(path)
    bar = tqdm(total=plan.train_steps, desc=f"{bench.name}/{arm_name}/seed-{seed}",
               disable=not (progress and world.main), file=sys.stderr,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)  # a log: a line now and then
    ex = _Execution(family, inputs, scale, plan, sets, batches, writer, bar, world, dev, prec,
                    compile, accum)
    status, error, crash, divergence, warmup_s = COMPLETED, None, None, None, 0.0
    t_start = time.perf_counter()
    try:
        warmup_s = warm_up(family, inputs, plan, dev, prec)  # before the seed and any clock
        torch.manual_seed(seed)
        for step in plan.steps:
            if isinstance(step, methods.Transfer):
                ex.transfer(step)
            else:
                ex.stage(step)
    except Diverged as e:
        status, error = "diverged", str(e)
        divergence = {"step": e.step, "quantities": list(e.quantities)}
    except KeyboardInterrupt:
        status, error = "interrupted", "KeyboardInterrupt"
    except Exception as e:  # recorded, then re-raised: a crash is never a result
        status, error, crash = "failed", f"{type(e).__name__}: {e}", e
    finally:
        bar.close()
    summary = _summary(ex, world, manifest["environment"]["device_name"], error, divergence,
                       t_start, warmup_s)
    if status == COMPLETED and ex.clock.step != plan.train_steps:
        status, summary["error"] = "failed", f"ran {ex.clock.step} of {plan.train_steps} steps"
    writer.finish(status, summary)
    if status == "interrupted":
        raise KeyboardInterrupt
    if crash is not None:
        raise crash
    if status == "failed":
        raise RuntimeError(f"{writer.path}: run failed: {summary['error']}")
    return writer.path


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
