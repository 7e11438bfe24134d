"""Operator speed at the papers' sizes on this CPU (pytest-benchmark): `nox -s bench-operators`.

Goal from the V-cycle issue: each operator under 2 s for BERT-Large on a 2-core machine. The
models are random-initialised once per size; only the operator is timed.
"""

import functools

import pytest
import torch

from suite import operators as ML
from suite.families import FAMILIES, Inputs

PAPER = {  # name: (family, size, inputs), the papers' configurations
    "bert-base": ("bert", {"hidden": 768, "layers": 12, "heads": 12},
                  Inputs(seq_len=512, vocab_size=30522)),
    "bert-large": ("bert", {"hidden": 1024, "layers": 24, "heads": 16},
                   Inputs(seq_len=512, vocab_size=30522)),
    "gpt-base": ("gpt2", {"hidden": 768, "layers": 12, "heads": 12},
                 Inputs(seq_len=1024, vocab_size=50257)),
    "deit-b": ("vit", {"hidden": 768, "layers": 12, "heads": 12, "patch": 16},
               Inputs(image_size=224, channels=3, num_classes=1000)),
}


@functools.cache
def models(name):
    fam, size, inputs = PAPER[name]
    torch.manual_seed(0)
    big = FAMILIES[fam].build(size, inputs)
    small = ML.coalesce(big)
    return big, small


@pytest.mark.parametrize("name", list(PAPER))
def test_coalesce(benchmark, name):
    big, _ = models(name)
    small = benchmark.pedantic(ML.coalesce, args=(big,), rounds=3, iterations=1)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in big.parameters())


@pytest.mark.parametrize("name", list(PAPER))
def test_decoalesce(benchmark, name):
    big, small = models(name)
    grown = benchmark.pedantic(ML.decoalesce, args=(small,), kwargs={"like": big}, rounds=3,
                               iterations=1)
    assert grown.state_dict().keys() == big.state_dict().keys()


@pytest.mark.parametrize("name", list(PAPER))
def test_interpolate(benchmark, name):
    big, _ = models(name)
    out = benchmark.pedantic(ML.interpolate, args=(big, big, 0.25), rounds=3, iterations=1)
    assert out is not big
