"""Executes a Plan: builds the models, trains them with the one loop, meters FLOPs and wall time,
and writes the run folder. Every method runs through `run_one`."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from suite import data as dataio
from suite import distributed, flops, methods
from suite import multilevel as ML
from suite.distributed import World
from suite.families import FAMILIES, Family, Inputs, logits
from suite.registry import USER_SOURCE, inputs_for
from suite.results import COMPLETED, NullWriter, RunWriter, environment, run_dir
from suite.spec import Benchmark, Scale, SpecError
from suite.train import Clock, Diverged, Parallel, evaluate, make_optimizer, train

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


def run_one(bench: Benchmark, scale_name: str, arm_name: str, seed: int, out: Path,
            device: str = "cpu", threads: int | None = None, precision: str = "auto",
            progress: bool = True, world: World | None = None, accum: int = 1,
            compile: bool = False) -> Path:
    """Train one arm of one benchmark at one scale with one seed; returns the run folder.

    The folder is a result only if its summary says "completed"; divergence and interruption
    are written down as such (and an interruption is re-raised after the write). Under torchrun
    (`world`, from suite.distributed.setup) every rank trains its slice of each global batch and
    only rank 0 writes."""
    world = world or World()
    scale = bench.scale(scale_name)
    arm = bench.arms[arm_name]
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
    plan = methods.plan(arm, scale, step_cost(family, scale, inputs))
    heldout = dataio.heldout_batches(data, family.task, scale.batch_size, scale.seq_len,
                                scale.eval.batches)
    batches = dataio.TrainBatches(data, family.task, scale.batch_size, scale.seq_len, seed)
    top1 = "top1" in scale.eval.metrics
    units = scale.batch_size * (scale.seq_len or 1)  # tokens (or images) per step

    manifest: dict[str, Any] = {
        "benchmark": bench.name, "scale_name": scale_name, "arm_name": arm_name, "seed": seed,
        "definition": bench.resolved(scale_name, arm_name),
        "method": {"name": plan.method, "options": plan.options},
        "plan": [dataclasses.asdict(s) | {"kind": type(s).__name__} for s in plan.steps],
        "data": {"source": data.source, "heldout": list(getattr(data, "heldout_names", ())),
                 "inputs": dataclasses.asdict(inputs)},
        "precision": prec, "flop_convention": flops.CONVENTION,
        "environment": environment(device, threads),
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    manifest["world_size"], manifest["accum"], manifest["compile"] = world.size, accum, compile
    path = run_dir(out, scale_name, bench.name, arm_name, seed)
    writer = RunWriter(path, manifest) if world.main else NullWriter(path)
    spread = 0.0  # largest parameter difference between ranks seen after a transfer
    clock = Clock()
    levels: dict[int, dict[str, float]] = {}
    operators: dict[str, dict[str, float]] = {}
    saved: dict[int, nn.Module] = {}
    optimizers: dict[int, torch.optim.Optimizer] = {}  # last optimiser of each level
    curve: list[dict[str, Any]] = []
    main_steps = 0  # steps of the arm's own model (coarse helpers of paper 2 excluded)
    model = None
    bar = tqdm(total=plan.train_steps, desc=f"{bench.name}/{arm_name}/seed-{seed}",
               disable=not (progress and world.main), file=sys.stderr,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)  # a log: a line now and then

    def log_eval(level: int, last_train: float, event: str | None = None) -> None:
        t0 = time.perf_counter()
        ev = evaluate(model, heldout, out_fn, dev, prec, top1)
        clock.eval_wall_s += time.perf_counter() - t0 if event else 0.0
        row = {"step": main_steps, "flops": clock.flops, "flops_blocks": clock.flops_blocks,
               "wall_s": round(clock.wall_s, 4), "level": level, "train_loss": last_train,
               "heldout_loss": ev["loss"]}
        if event:
            row["event"] = event
        if data_bpb := getattr(data, "bytes_per_token", None):
            row["heldout_bpb"] = ev["loss"] / math.log(2) / data_bpb
        if top1:
            row["heldout_top1"] = ev["top1"]
        curve.append(row)
        writer.log(row)
        bar.set_postfix(loss="-" if math.isnan(last_train) else f"{last_train:.3f}",
                        heldout=f"{ev['loss']:.3f}",
                        tok_s=f"{clock.step * units / max(clock.wall_s, 1e-9):.0f}")

    def out_fn(m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return logits(family, m, x)

    status, error, crash = COMPLETED, None, None
    t_start = time.perf_counter()
    try:
        torch.manual_seed(seed)
        for step in plan.steps:
            if isinstance(step, methods.Transfer):
                t0 = time.perf_counter()
                model, op_flops = apply_transfer(step, model, saved)
                if world.active:  # identical on every rank by construction; measured, then made so
                    spread = max(spread, distributed.max_parameter_spread(model, world))
                    distributed.broadcast_parameters(model, world)
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                dt = time.perf_counter() - t0
                clock.flops += op_flops
                clock.wall_s += dt
                op = operators.setdefault(step.operator, {"count": 0, "flops": 0, "wall_s": 0.0})
                op["count"] += 1
                op["flops"] += op_flops
                op["wall_s"] += dt
                if step.operator in EVAL_AFTER:
                    level = step.options.get("to", step.options.get("from", 0) + 1)
                    log_eval(level, float("nan"), event=step.operator)
                continue
            if model is None:
                model = family.build(step.model, inputs).to(dev)
            per_step = flops.train_step_flops(family, step.model, inputs, scale.batch_size)
            per_step_blocks = flops.train_step_flops(family, step.model, inputs,
                                                     scale.batch_size, blocks_only=True)
            lv = levels.setdefault(step.level, {"steps": 0, "flops": 0, "flops_blocks": 0,
                                                "wall_s": 0.0})
            before = dataclasses.replace(clock)
            if clock.step == 0:
                log_eval(step.level, float("nan"))  # the starting point of the curve

            def on_step(c: Clock, last: float, s: methods.Train = step) -> None:
                nonlocal main_steps
                if s.auxiliary:  # a coarse helper model: the arm's model is not this one
                    return
                main_steps += 1
                if main_steps % scale.eval.every == 0 or main_steps == plan.main_steps:
                    log_eval(s.level, last)

            if not step.keep_optimizer:
                optimizers[step.level] = make_optimizer(model, step.optim)
            try:
                train(model, batches, step.steps, step.optim, per_step, clock, out_fn, on_step,
                      dev, prec, check_every=math.gcd(scale.eval.every, 10),
                      progress=lambda n, _loss: bar.update(n),
                      step_flops_blocks=per_step_blocks, schedule=step.schedule,
                      optimizer=optimizers[step.level],
                      parallel=Parallel(world, forward_of(model, world, compile), accum))
            finally:  # a level that diverged or was interrupted still counts what it ran
                lv["steps"] += clock.step - before.step
                lv["flops"] += clock.flops - before.flops
                lv["flops_blocks"] += clock.flops_blocks - before.flops_blocks
                lv["wall_s"] += clock.wall_s - before.wall_s
    except Diverged as e:
        status, error = "diverged", str(e)
    except KeyboardInterrupt:
        status, error = "interrupted", "KeyboardInterrupt"
    except Exception as e:  # recorded, then re-raised: a crash is never a result
        status, error, crash = "failed", f"{type(e).__name__}: {e}", e
    finally:
        bar.close()
    final = curve[-1] if curve else {}
    summary = {
        "steps": clock.step, "planned_steps": plan.train_steps, "flops": clock.flops,
        "flops_blocks": clock.flops_blocks,
        "wall_s": clock.wall_s, "eval_wall_s": clock.eval_wall_s,
        "total_wall_s": time.perf_counter() - t_start,
        "final_heldout_loss": final.get("heldout_loss"),
        "final_train_loss": final.get("train_loss"),
        "final_heldout_top1": final.get("heldout_top1"),
        "final_heldout_bpb": final.get("heldout_bpb"),
        "start_heldout_loss": curve[0]["heldout_loss"] if curve else None,
        "levels": {str(k): v for k, v in levels.items()},
        "operators": operators,
        "world_size": world.size,
        "max_rank_spread_after_transfers": spread,
        "throughput_per_s": clock.step * units / clock.wall_s if clock.wall_s else None,
        "achieved_flops_per_s": clock.flops / clock.wall_s if clock.wall_s else None,
        "mfu": mfu(clock, manifest["environment"]["device_name"], world, prec),
        "error": error,
    }
    if status == COMPLETED and clock.step != plan.train_steps:
        status, summary["error"] = "failed", f"ran {clock.step} of {plan.train_steps} steps"
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
