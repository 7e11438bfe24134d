"""Speed of a training step and the model FLOP utilisation (MFU) a run achieved: what
`python -m suite throughput` measures and what every run's summary reports."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import torch

from suite import data as dataio
from suite import flops, methods
from suite.families import FAMILIES, logits
from suite.registry import inputs_for
from suite.results import atomic_write_json
from suite.run.context import forward_of, load_data, prepare_device
from suite.run.distributed import World
from suite.run.provenance import command_line, environment
from suite.run.train import Clock, Loop, Parallel, Stage, make_optimizer, train
from suite.spec import Benchmark, SpecError


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
            train(model, batches, Stage(n, optim, per_step), clock,
                  Loop(out_fn, device=dev, precision=prec, check_every=n, parallel=par),
                  optimizer=opt)
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
        "mfu": flops.mfu(clock.flops, clock.wall_s, env["device_name"], 1, prec),
        "flop_convention": flops.CONVENTION, "environment": env,
        "command": command_line(),
    }



def record_throughput(bench: Benchmark, scale_name: str, out: Path, compiled: tuple[bool, ...],
                      **how: Any) -> list[Path]:
    """`measure_throughput` once per entry of `compiled` (eager, torch.compile), each written
    atomically to out/throughput/<benchmark>-<scale>-<eager|compiled>-<device>.json; returns
    the files. `how`: measure_throughput's device, precision, steps, warmup and threads."""
    written = []
    for c in compiled:
        r = measure_throughput(bench, scale_name, compile=c, **how)
        device = re.sub(r"[^a-z0-9]+", "-", r["environment"]["device_name"].lower()).strip("-")
        path = out / "throughput" / (f"{bench.name}-{scale_name}-"
                                     f"{'compiled' if c else 'eager'}-{device}.json")
        atomic_write_json(path, r)
        written.append(path)
    return written
