"""Every reduction weighted by what it averages over (issue 13, the gradient-accumulation
normalisation bug): one step's gradient of every family is the same for --accum 1, 2, 4 (here)
and for two processes (tests/test_distributed.py), to 1e-6 relative."""

import pytest
import torch
import torch.nn.functional as F

from suite.data import TrainBatches
from suite.families import FAMILIES, logits
from suite.registry import inputs_for, load_benchmarks
from suite.run.context import load_data
from suite.run.distributed import World
from suite.run.train import Parallel, backward, evaluate

BENCH_OF = {"bert": "bert", "gpt2": "gpt", "vit": "deit", "decoder": "ode"}  # one per family
RELATIVE = 1e-6


def setup_family(family_name: str):
    """The family's smoke model (seed 0) and the first global batch of seed 0's stream."""
    bench = load_benchmarks()[BENCH_OF[family_name]]
    scale, family = bench.scale("smoke"), FAMILIES[family_name]
    data = load_data(family, scale)
    torch.manual_seed(0)
    model = family.build(scale.model, inputs_for(family, scale, data))
    batch = next(TrainBatches(data, family.task, scale.batch_size, scale.seq_len, 0))
    return family, model, batch


def gradient(family, model, batch, accum, world=None, forward=None) -> torch.Tensor:
    """The flat gradient that suite.run.train.backward accumulates for one global batch."""
    model.zero_grad(set_to_none=True)
    backward(forward or model, batch, lambda m, x: logits(family, m, x),
             Parallel(world or World(), forward, accum), torch.device("cpu"), "fp32")
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("name", sorted(BENCH_OF))
def test_one_step_gradient_is_the_same_for_any_accumulation(name):
    family, model, batch = setup_family(name)
    g1 = gradient(family, model, batch, 1)
    x, y = batch
    model.zero_grad(set_to_none=True)  # by definition: the mean over every labelled position
    z = logits(family, model, x)
    F.cross_entropy(z.reshape(-1, z.size(-1)), y.reshape(-1), ignore_index=-100).backward()
    assert torch.equal(g1, torch.cat([p.grad.flatten() for p in model.parameters()]))
    for accum in (2, 4):
        assert relative(gradient(family, model, batch, accum), g1) < RELATIVE, accum


def test_masked_lm_micro_batches_hold_different_counts_and_the_weighting_matters():
    """The check can fail: BERT's micro-batches hold unequal masked counts, and the equal-weight
    mean of their means (the bug) moves the gradient by far more than the tolerance."""
    family, model, batch = setup_family("bert")
    x, y = batch
    counts = [int((part != -100).sum()) for part in y.chunk(2)]
    assert counts[0] != counts[1], counts
    model.zero_grad(set_to_none=True)
    for xm, ym in zip(x.chunk(2), y.chunk(2), strict=True):
        z = logits(family, model, xm)
        (F.cross_entropy(z.reshape(-1, z.size(-1)), ym.reshape(-1), ignore_index=-100)
         / 2).backward()
    naive = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert relative(naive, gradient(family, model, batch, 1)) > 1e-3


def test_a_micro_batch_without_a_label_adds_nothing():
    family, model, (x, y) = setup_family("bert")
    y = y.clone()
    y[: len(y) // 2] = -100  # the first micro-batch of two has nothing to predict
    g1 = gradient(family, model, (x, y), 1)
    assert torch.isfinite(g1).all()
    assert relative(gradient(family, model, (x, y), 2), g1) < RELATIVE


def test_evaluation_weights_batches_by_their_labelled_positions():
    """Two batches, 1 and 3 labelled positions: the mean is over the 4 positions, not of the
    two batch means."""
    family, model, (x, y) = setup_family("gpt2")
    a, b = torch.full_like(y[:1], -100), torch.full_like(y[1:2], -100)
    a[0, 0], b[0, :3] = y[0, 0], y[1, :3]
    batches = [(x[:1], a), (x[1:2], b)]
    got = evaluate(model, batches, lambda m, t: logits(family, m, t), torch.device("cpu"),
                   "fp32", top1=True)
    with torch.no_grad():
        z = torch.cat([logits(family, model, x[:1])[0, :1], logits(family, model, x[1:2])[0, :3]])
        want = F.cross_entropy(z, torch.cat([a[0, :1], b[0, :3]]))
    assert got["loss"] == pytest.approx(float(want), rel=1e-6)
    assert got["top1"] * 4 == pytest.approx(round(got["top1"] * 4))  # a count out of 4
