"""What a run reads but never changes, built and checked before it trains: the data (read once
per process), the device and precision, the fixed evaluation sets, the plan, and the warm-up
that pays first-call costs outside every clock. `RunOptions` is how and where a run executes."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from suite import data as dataio
from suite import flops, methods
from suite import operators as ML
from suite.data.batches import IGNORE_INDEX, Batch
from suite.families import FAMILIES, Family, Inputs, logits
from suite.registry import USER_SOURCE, inputs_for
from suite.run.distributed import World
from suite.run.state import Policy
from suite.run.train import Clock, Diverged, Loop, Stage, evaluate, train
from suite.spec import Benchmark, Scale, SpecError

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
            return sum(int((y != IGNORE_INDEX).sum()) for _, y in batches)

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


def check_every(scale: Scale) -> int:
    """Steps between loss read-backs: divides the evaluation interval (and 10)."""
    return math.gcd(scale.eval.every, 10)


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
            train(model, iter([batch]), Stage(1, optim, 0), Clock(),
                  Loop(out, device=dev, precision=prec, check_every=1))
        evaluate(model, [batch], out, dev, prec, top1=True, halves=True)
        transfers = [s for s in plan.steps if isinstance(s, methods.Transfer)]
        names, seen, saved = {t.operator for t in transfers}, set(), {}
        for t in transfers:  # until each operator ran once and every coarsening was undone
            model, _ = apply_transfer(t, model, saved)
            seen.add(t.operator)
            if seen == names and not saved:
                break
    return time.perf_counter() - t0


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
    device: str  # as asked for (cpu, cuda, cuda:N): the manifest's environment names it

    @property
    def units(self) -> int:  # tokens (or images) per step
        return self.scale.batch_size * (self.scale.seq_len or 1)

    def out(self, m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return logits(self.family, m, x)

    @property
    def loop(self) -> Loop:
        """How every stage's training loop runs (the executor adds the stage's hooks)."""
        return Loop(self.out, device=self.dev, precision=self.prec,
                    check_every=check_every(self.scale))


@dataclass(frozen=True)
class RunOptions:
    """How and where a run executes, apart from what it is (benchmark, scale, arm, seed):
    `device` (cpu, cuda, cuda:N), CPU `threads` (None: SUITE_THREADS, else every core),
    `precision` (auto: bf16 on CUDA, fp32 on CPU), a `progress` bar, the torchrun `world`,
    `accum` micro-batches per step, `compile` (torch.compile), `resume` from the run folder's
    newest checkpoint, the checkpoint `policy` (None: the definition's [checkpoint]), and what
    each arm's manifest records of its `tuning`."""

    device: str = "cpu"
    threads: int | None = None
    precision: str = "auto"
    progress: bool = True
    world: World = World()
    accum: int = 1
    compile: bool = False
    resume: bool = False
    policy: Policy | None = None
    # arm -> what its manifest says of its tuning (suite/protocol.py: provenance); an arm not
    # in it is recorded as untuned
    tuning: dict[str, dict] = dataclasses.field(default_factory=dict)
    track: str | None = None  # tensorboard, wandb or mlflow (suite/run/tracking.py)


def build_context(bench: Benchmark, scale_name: str, arm_name: str,
                  options: RunOptions) -> tuple[Context, dataio.TextData | dataio.ImageData, int]:
    """Everything checked and built before a run trains: raises SpecError naming the key for
    a batch that does not split over processes x micro-batches or a model the data cannot
    feed. Returns the context, the data and the CPU threads."""
    scale = bench.scale(scale_name)
    family = FAMILIES[bench.family]
    world, accum = options.world, options.accum
    # Unequal micro-batches would weight samples unequally, and too few would never sync DDP.
    if accum < 1 or scale.batch_size % (world.size * accum):
        raise SpecError(bench.path, f"scales.{scale_name}.batch_size",
                        f"a global batch of {scale.batch_size} does not split evenly over "
                        f"{world.size} process(es) x --accum {accum} micro-batch(es)",
                        "--accum >= 1 and a batch size divisible by processes x --accum")
    dev, threads, prec = prepare_device(options.device, options.threads, options.precision)
    data = load_data(family, scale)
    inputs = inputs_for(family, scale, data)
    for key, msg in family.check(scale.model, inputs):
        raise SpecError(bench.path, f"scales.{scale_name}.model.{key}", msg)
    plan = methods.plan(bench.arms[arm_name], scale, step_cost(family, scale, inputs), family)
    ctx = Context(family=family, inputs=inputs, scale=scale, plan=plan,
                  sets=EvalSets.of(data, family, scale), world=world, dev=dev, prec=prec,
                  compile=options.compile, accum=accum, device=options.device)
    return ctx, data, threads
