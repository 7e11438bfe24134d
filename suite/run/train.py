"""The one training loop, for every family and every method. Reads top to bottom.

A method's plan calls `train` once per Train step; the `Clock` carries the run's cumulative steps,
FLOPs and wall time across those calls, so a curve is one line however many levels it visits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from suite.data.batches import IGNORE_INDEX, Batch, RankBatch
from suite.run.distributed import World, shard
from suite.spec import Optim, lr_factor


@dataclass
class Clock:
    """Cumulative progress of a run. `wall_s` (seconds) is what the method costs: training
    steps, transfers and each stage's set-up (optimiser, DDP wrapping), never evaluation, which
    goes to `eval_wall_s`, nor the once-per-process warm-up (suite.run.executor.warm_up)."""

    step: int = 0
    flops: int = 0
    flops_blocks: int = 0  # the same, counting only the residual blocks (paper 2's convention)
    wall_s: float = 0.0
    eval_wall_s: float = 0.0


@dataclass
class Window:
    """Training losses not yet read back from the device, and the mean of the last window
    read: part of a run's state, so that a resumed run logs the very running mean."""

    pending: list[torch.Tensor] = field(default_factory=list)
    last: float = math.nan


@dataclass(frozen=True)
class Parallel:
    """How one step is spread: this rank's slice of the global batch, in `accum` micro-batches,
    through `forward` (the DDP-wrapped model, which averages gradients over ranks)."""

    world: World = World()
    forward: nn.Module | None = None
    accum: int = 1


class Diverged(RuntimeError):
    """The training loss, or a value an evaluation measured, became NaN or infinite. `step` is
    the step it was seen at and `quantities` what was not finite, for the run's summary."""

    def __init__(self, message: str, step: int | None = None,
                 quantities: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.step, self.quantities = step, quantities


def make_optimizer(model: nn.Module, o: Optim) -> torch.optim.Optimizer:
    # no weight decay on biases, norms and other 1-D parameters (nanoGPT, BERT practice)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": o.weight_decay},
              {"params": rest, "weight_decay": 0.0}]
    if o.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas)
    if o.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)
    raise ValueError(f"optimizer {o.optimizer!r}; allowed: adamw, sgd")


def loss_of(model: nn.Module, batch: Batch, out: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over labelled positions (IGNORE_INDEX is ignored) and the logits.
    One loss for causal LM, masked LM and classification: the data module shapes the labels."""
    x, y = batch
    z = out(model, x)
    return F.cross_entropy(z.reshape(-1, z.size(-1)).float(), y.reshape(-1),
                           ignore_index=IGNORE_INDEX), z


def autocast(device: torch.device, precision: str):  # noqa: ANN201
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def eval_sums(model: nn.Module, batches: list[Batch], out: Callable, device: torch.device,
              precision: str) -> list[tuple[float, int, int]]:
    """Per batch: (cross-entropy summed over its labelled positions in nats, labelled positions,
    correct top-1 predictions). The model is left in the mode it was in."""
    was_training = model.training
    model.eval()
    sums = []
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with autocast(device, precision):
            loss, z = loss_of(model, (x, y), out)
        n = int((y != IGNORE_INDEX).sum())
        sums.append((float(loss) * n, n, int((z.argmax(-1) == y).sum())))
    model.train(was_training)
    return sums


def _pooled(sums: list[tuple[float, int, int]]) -> tuple[float, int, int]:
    total, count, correct = 0.0, 0, 0
    for s, n, c in sums:  # in batch order: the same float sum as a single pass
        total, count, correct = total + s, count + n, correct + c
    return total, count, correct


def evaluate(model: nn.Module, batches: list[Batch], out: Callable, device: torch.device,
             precision: str, top1: bool, halves: bool = False) -> dict[str, float]:
    """Token-weighted mean cross-entropy over every labelled position of `batches` ("loss",
    nats per token or image) and, with `top1`, the fraction predicted right ("top1").

    With `halves`, also "loss_a" and "loss_b": the same over the first floor(n/2) and the last
    ceil(n/2) batches, from the same per-batch sums, so that "loss" is their token-weighted mean
    (weights "tokens_a", "tokens_b"); a half without a labelled position (one batch: the first
    half is empty) has no loss key. Raises ValueError when no batch has a labelled position."""
    sums = eval_sums(model, batches, out, device, precision)
    total, count, correct = _pooled(sums)
    if count == 0:
        raise ValueError(f"evaluation over {len(batches)} batch(es) without a labelled "
                         "position: the mean loss is undefined (more or larger eval batches)")
    res = {"loss": total / count}
    if top1:
        res["top1"] = correct / count
    if halves:
        cut = len(sums) // 2
        for name, part in (("a", sums[:cut]), ("b", sums[cut:])):
            s, n, _ = _pooled(part)
            res[f"tokens_{name}"] = n
            if n:
                res[f"loss_{name}"] = s / n
    return res


def labelled(y: torch.Tensor) -> int:
    """Positions that carry a label (not IGNORE_INDEX): tokens for LM, images for classification."""
    return int((y != IGNORE_INDEX).sum())


def backward(fwd: nn.Module, batch: Batch | RankBatch, out: Callable, par: Parallel,
             device: torch.device, precision: str) -> torch.Tensor:
    """Accumulate into `.grad` the gradient of the global batch's mean loss over its labelled
    positions, from this rank's slice in `par.accum` micro-batches; returns this rank's share
    of that mean (a 0-d tensor on `device`; the shares of all ranks sum to it).

    Every micro-batch's mean loss is weighted by its labelled positions over the global
    batch's (a masked-LM micro-batch holds as many masked tokens as its draw gave it), times
    the number of ranks, which DDP's gradient averaging divides out again. The equal-weight
    average of micro-batch means is the gradient-accumulation normalisation bug (transformers,
    October 2024): with BERT it moved one step's gradient 7.7% at accum 2. Weights are exact
    powers of two where every micro-batch is labelled alike (causal LM, images), so those
    steps are bit-identical to a plain mean. `batch` is either the global one, which every
    rank counts and then slices, or (`RankBatch`, what `TrainBatches` yields under torchrun)
    this rank's rows with the global count: no extra all-reduce either way."""
    if isinstance(batch, RankBatch):
        x, y, total = batch
    else:
        x, y = batch
        total = labelled(y)
        if par.world.active:
            x, y = shard(x, par.world), shard(y, par.world)
    loss = torch.zeros((), device=device)
    for j, (xm, ym) in enumerate(zip(x.chunk(par.accum), y.chunk(par.accum), strict=True)):
        n = labelled(ym)
        if device.type == "cuda":  # pinned host memory: the copy overlaps the step
            xm, ym = xm.pin_memory(), ym.pin_memory()
        xm, ym = xm.to(device, non_blocking=True), ym.to(device, non_blocking=True)
        last_micro = j == par.accum - 1
        sync = nullcontext() if last_micro or not hasattr(fwd, "no_sync") else fwd.no_sync()
        with sync:
            with autocast(device, precision):
                mean, z = loss_of(fwd, (xm, ym), out)
            # no label in this slice: a zero that still reaches every parameter (DDP syncs)
            share = mean * (n / total) if n else z.float().sum() * 0.0
            (share * par.world.size).backward()
        loss = loss + share.detach()
    return loss


@dataclass(frozen=True)
class Stage:
    """One Train step of a plan as the loop runs it: `steps` steps at `optim`, each costing
    `step_flops` (`step_flops_blocks` counting the residual blocks only). The learning rate
    follows the schedule over this stage alone, or, with `schedule = (offset, total)`, over
    steps offset .. offset + steps - 1 of a schedule `total` steps long (paper 2 trains its fine
    model one step at a time along one cosine). `start`: steps of this stage already done (a
    resumed stage)."""

    steps: int
    optim: Optim
    step_flops: int = 0
    step_flops_blocks: int = 0
    schedule: tuple[int, int] | None = None
    start: int = 0


@dataclass(frozen=True)
class Loop:
    """Where and how the loop runs, the same for every stage of a run: `out(model, x)` gives the
    logits; losses are read back from the device every `check_every` steps; `parallel` spreads
    a step over ranks and micro-batches; `on_step(clock, loss)` runs after every step, outside
    the wall time (the executor evaluates and checkpoints there); `progress(n, loss)` after
    every step (a progress bar)."""

    out: Callable
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    check_every: int = 10
    parallel: Parallel = Parallel()
    on_step: Callable[[Clock, float], None] | None = None
    progress: Callable[[int, float], None] | None = None


def train(model: nn.Module, batches: Iterator[Batch], stage: Stage, clock: Clock, loop: Loop,
          optimizer: torch.optim.Optimizer | None = None, window: Window | None = None) -> float:
    """Train `model` for `stage.steps` steps with `optimizer` (its state carried over from
    earlier stages) or a fresh one; returns the last loss. `clock` carries the run's
    cumulative steps, FLOPs and wall time.

    Losses are read back from the device only every `loop.check_every` steps (the only host
    synchronisation), where a NaN or infinite loss raises `Diverged`; the loss passed on is
    the mean over that window (over all ranks).

    With `loop.parallel`, each step trains on this rank's slice of the global batch in `accum`
    micro-batches (gradients are synchronised on the last one only), weighted by what each
    holds (`backward`): the step is the same for any number of processes and any
    accumulation, up to the order of float sums.

    A resumed stage passes `stage.start` and the run's `window` (losses not yet read back);
    the loop then goes on exactly as it would have.
    """
    steps, optim, device, precision, out = (stage.steps, stage.optim, loop.device,
                                            loop.precision, loop.out)
    check_every, on_step, progress = loop.check_every, loop.on_step, loop.progress
    step_flops, step_flops_blocks, start = stage.step_flops, stage.step_flops_blocks, stage.start
    offset, total = stage.schedule or (0, steps)  # where this stage sits in its lr schedule
    opt = optimizer or make_optimizer(model, optim)
    par = loop.parallel
    fwd = par.forward if par.forward is not None else model
    model.train()
    win = window if window is not None else Window()
    pending = win.pending
    for i in range(start, steps):
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = optim.lr * lr_factor(offset + i, total, optim)
        loss = backward(fwd, next(batches), out, par, device, precision)
        if optim.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        pending.append(loss.detach())
        if len(pending) >= check_every or i == steps - 1:
            losses = torch.stack(pending).float()
            if par.world.active:  # each rank holds its share of the global batch's mean
                torch.distributed.all_reduce(losses)
            values = losses.cpu()
            pending.clear()
            win.last = float(values.mean())  # mean over the window: a steadier training loss
            if not torch.isfinite(values).all():
                raise Diverged(f"training loss {win.last} at step {clock.step + 1}",
                               clock.step + 1, ("minibatch training loss",))
        if device.type == "cuda" and i == steps - 1:
            torch.cuda.synchronize(device)
        clock.step += 1
        clock.flops += step_flops
        clock.flops_blocks += step_flops_blocks
        clock.wall_s += time.perf_counter() - t0
        if progress is not None:
            progress(1, win.last)
        if on_step is not None:
            t1 = time.perf_counter()
            try:  # an evaluation that raises (Diverged) still counts the time it took
                on_step(clock, win.last)
            finally:
                clock.eval_wall_s += time.perf_counter() - t1
    return win.last
