"""The fvcore meter against torch's FlopCounterMode, per family, and its arithmetic."""

import pytest
import torch

from suite import flops
from suite.families import FAMILIES, Inputs

SIZE = {"hidden": 64, "layers": 2, "heads": 2}
TEXT = Inputs(seq_len=32, vocab_size=257)
IMAGES = Inputs(image_size=28, channels=1, num_classes=10)


def _case(name):
    fam = FAMILIES[name]
    if fam.data_kind == "images":
        return fam, {**SIZE, "patch": 7}, IMAGES, torch.randn(4, 1, 28, 28)
    return fam, SIZE, TEXT, torch.randint(0, 256, (4, 32))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_fvcore_train_step_matches_flopcountermode(name):
    """3 x fvcore forward (x2 for MACs) agrees with FlopCounterMode's forward + backward within
    3%. Both count the eager attention path: FlopCounterMode misses the fused CPU kernel too."""
    fam, size, inputs, x = _case(name)
    torch.manual_seed(0)
    model = fam.build(size, inputs, eager_attention=True)
    measured = flops.measured_train_flops(fam, model, x)
    metered = flops.train_step_flops(fam, size, inputs, batch=x.shape[0])
    assert measured > 0
    assert abs(metered / measured - 1) < 0.03, (name, metered, measured)


@pytest.mark.parametrize("name", ["gpt2", "decoder"])
def test_forward_flops_match_the_matmul_arithmetic(name):
    """Per token and block: qkv, proj, fc, fc_out = 2*(3+1+4+4)*h^2 = 24 h^2 FLOPs, attention
    scores and mixing 2*2*T*h, head 2*h*V; embeddings and norms are not matmuls."""
    fam, size, inputs, _ = _case(name)
    h, L, T, V, B = size["hidden"], size["layers"], inputs.seq_len, inputs.vocab_size, 4
    expected = B * T * (L * (24 * h * h + 4 * T * h) + 2 * h * V)
    got = flops.forward_flops(fam, size, inputs, batch=B)
    assert abs(got / expected - 1) < 0.02, (got, expected)
    blocks = flops.forward_flops(fam, size, inputs, batch=B, blocks_only=True)
    assert abs(blocks / (B * T * L * (24 * h * h + 4 * T * h)) - 1) < 0.02


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_fvcore_counts_are_linear_in_batch_so_counting_one_example_suffices(name):
    fam, size, inputs, _ = _case(name)
    key = tuple(sorted(size.items()))
    assert flops._count(fam.name, key, inputs, 3) == tuple(3 * c for c in
                                                           flops._count(fam.name, key, inputs, 1))


def test_counts_are_cached():
    fam, size, inputs, _ = _case("gpt2")
    flops.forward_flops(fam, size, inputs, batch=8)
    hits = flops._count.cache_info().hits
    assert flops.forward_flops(fam, size, inputs, batch=5) > 0
    assert flops._count.cache_info().hits == hits + 1


def test_fused_attention_would_be_undercounted():
    """Why the meter counts on the eager path: fvcore gives SDPA zero FLOPs."""
    from fvcore.nn import FlopCountAnalysis

    fam, size, inputs, x = _case("decoder")
    fused = fam.build(size, inputs, eager_attention=False).eval()
    fa = FlopCountAnalysis(flops._Logits(fam, fused), (x,))
    fa.unsupported_ops_warnings(False)
    fa.uncalled_modules_warnings(False)
    assert 2 * fa.total() < flops.forward_flops(fam, size, inputs, batch=x.shape[0])
