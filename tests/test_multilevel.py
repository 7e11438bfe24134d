"""Paper 1's operators on every family: exact identities, function preservation, errors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from suite.families import FAMILIES, Inputs, family_of, logits
from suite.operators import OperatorError, coalesce, decoalesce, interpolate

TEXT = Inputs(seq_len=16, vocab_size=61)
IMAGES = Inputs(image_size=28, channels=1, num_classes=10)
NAMES = sorted(FAMILIES)


def build(name, hidden=64, layers=4, heads=4, seed=0, eager=True):
    fam = FAMILIES[name]
    size = {"hidden": hidden, "layers": layers, "heads": heads}
    if name == "llama":  # its default FFN (8/3 x hidden, rounded) does not halve with hidden
        size["ffn"] = 3 * hidden
    torch.manual_seed(seed)
    if fam.data_kind == "images":
        return fam.build({**size, "patch": 7}, IMAGES, eager).eval()
    return fam.build(size, TEXT, eager).eval()


def example(name, seed=1):
    g = torch.Generator().manual_seed(seed)
    if FAMILIES[name].data_kind == "images":
        return torch.randn(3, 1, 28, 28, generator=g)
    return torch.randint(0, 61, (3, 16), generator=g)


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


def max_param_rel_err(m1, m2):
    p2 = dict(m2.named_parameters())
    return max(rel_err(p.detach(), p2[n].detach()) for n, p in m1.named_parameters())


def size_of(m):
    return family_of(m).describe(m)[0]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("pairing", ["adjacent", "stacked"])
@pytest.mark.parametrize("scaling", ["reference", "preserving"])
def test_coalesce_of_decoalesce_is_the_identity(name, pairing, scaling):
    big = build(name)
    small = coalesce(build(name, seed=3), depth_pairing=pairing, embedding_scaling=scaling)
    grown = decoalesce(small, like=big, depth_pairing=pairing, embedding_scaling=scaling)
    back = coalesce(grown, depth_pairing=pairing, embedding_scaling=scaling)
    assert max_param_rel_err(back, small) < 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_sizes_and_parameter_counts_per_level(name):
    big = build(name, hidden=64, layers=4, heads=4)
    small = coalesce(big)
    tiny = coalesce(small)
    halved = {k: size_of(big)[k] // 2 for k in ("ffn", *FAMILIES[name].width_keys)}
    assert size_of(small) | {"patch": 0} == size_of(big) | {
        "hidden": 32, "layers": 2, "heads": 2, **halved, "patch": 0}
    assert size_of(tiny)["hidden"] == 16 and size_of(tiny)["layers"] == 1
    assert size_of(tiny)["hidden"] // size_of(tiny)["heads"] == 16  # head size kept
    n = [sum(p.numel() for p in m.parameters()) for m in (big, small, tiny)]
    assert n[0] > n[1] > n[2]
    blocks = [sum(p.numel() for k, p in m.named_parameters()
                  if k.startswith(FAMILIES[name].layout.blocks + "."))
              for m in (big, small)]
    # half width and half depth: block parameters shrink by about 8 (biases and norms by 4)
    assert 7.5 < blocks[0] / blocks[1] <= 8.0


def test_width_pairs_are_j_and_j_plus_half_and_embeddings_are_averaged_or_summed():
    big = build("decoder", hidden=8, layers=2, heads=2)
    w = big.blocks[0].fc_out.weight.detach()  # (d, f): rows are outputs, columns inputs
    small = coalesce(big, depth=False)
    expect = (w[:4] + w[4:]) / 2  # outputs averaged over (j, j + d/2)
    expect = expect[:, :16] + expect[:, 16:]  # inputs summed over (j, j + f/2)
    assert torch.allclose(small.blocks[0].fc_out.weight, expect)
    e = big.wte.weight.detach()
    assert torch.allclose(small.wte.weight, e[:, :4] + e[:, 4:])  # reference: x2 of the average
    pres = coalesce(big, depth=False, embedding_scaling="preserving")
    assert torch.allclose(pres.wte.weight, (e[:, :4] + e[:, 4:]) / 2)
    g = big.ln_f.weight.detach()
    assert torch.allclose(pres.ln_f.weight, g[:4] + g[4:])  # the head's norm sums instead


def test_depth_pairing_adjacent_and_stacked():
    big = build("decoder", hidden=16, layers=4, heads=2)
    w = [b.fc.weight.detach() for b in big.blocks]
    adj = coalesce(big, width=False)
    stk = coalesce(big, width=False, depth_pairing="stacked")
    assert torch.allclose(adj.blocks[1].fc.weight, (w[2] + w[3]) / 2)
    assert torch.allclose(stk.blocks[1].fc.weight, (w[1] + w[3]) / 2)
    grown = decoalesce(stk, like=big, depth_pairing="stacked")
    assert torch.equal(grown.blocks[0].fc.weight, grown.blocks[2].fc.weight)
    assert torch.equal(grown.blocks[1].fc.weight, stk.blocks[1].fc.weight)


@pytest.mark.parametrize("name,scaling", [("bert", "reference"), ("bert", "preserving"),
                                          ("gpt2", "preserving"), ("decoder", "preserving"),
                                          ("vit", "reference"), ("vit", "preserving"),
                                          ("llama", "reference"), ("llama", "preserving")])
def test_width_decoalescing_preserves_the_function(name, scaling):
    """Post-LN BERT is preserved either way; pre-LN tied models need "preserving"; ViT's head
    is untied, so both scalings coincide there."""
    small = coalesce(build(name, seed=5), depth=False, embedding_scaling=scaling)
    big_like = build(name)
    grown = decoalesce(small, like=big_like, embedding_scaling=scaling)
    x = example(name)
    fam = FAMILIES[name]
    with torch.no_grad():
        assert rel_err(logits(fam, grown, x), logits(fam, small, x)) < 1e-4


@pytest.mark.parametrize("name", ["gpt2", "decoder"])
def test_reference_scaling_is_not_function_preserving_for_pre_ln_tied_models(name):
    """docs/methods.md: x2 / x0.5 on the embeddings halves the residual stream of a pre-LN model
    while the blocks' outputs come back at full scale. The drift is large, not rounding."""
    small = coalesce(build(name, seed=5), depth=False)
    grown = decoalesce(small, like=build(name))
    x = example(name)
    fam = FAMILIES[name]
    with torch.no_grad():
        drift = rel_err(logits(fam, grown, x), logits(fam, small, x))
    assert drift > 1e-2


@pytest.mark.parametrize("name", NAMES)
def test_interpolate_ends_are_exact_and_midpoint_is_the_mean(name):
    a, b = build(name, seed=1), build(name, seed=2)
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    for alpha, expect in ((0.0, pa), (1.0, pb)):
        out = interpolate(a, b, alpha)
        assert all(torch.equal(p, expect[k]) for k, p in out.named_parameters())
    mid = dict(interpolate(a, b, 0.25).named_parameters())
    assert all(torch.allclose(mid[k], 0.75 * pa[k] + 0.25 * pb[k], atol=1e-7) for k in pa)
    assert all(torch.equal(p, pa[k]) for k, p in a.named_parameters())  # inputs untouched
    with pytest.raises(OperatorError, match="alpha=1.5; allowed: 0 <= alpha <= 1"):
        interpolate(a, b, 1.5)


def test_errors_name_the_dimension():
    with pytest.raises(OperatorError, match="layers=3 does not halve evenly"):
        coalesce(build("decoder", layers=3))
    with pytest.raises(OperatorError, match="heads=3 does not halve evenly"):
        coalesce(build("decoder", hidden=48, heads=3))
    with pytest.raises(OperatorError, match="depth_pairing='middle'; allowed: adjacent, stacked"):
        coalesce(build("decoder"), depth_pairing="middle")
    with pytest.raises(TypeError, match="Linear is not a supported family"):
        coalesce(torch.nn.Linear(2, 2))
    small = coalesce(build("decoder"))
    with pytest.raises(OperatorError, match="like has hidden=128, small has 32; expected 64"):
        decoalesce(small, like=build("decoder", hidden=128, layers=4, heads=8))


def test_a_parameter_without_a_layout_rule_is_refused():
    m = build("decoder")
    m.blocks[0].register_parameter("gate", torch.nn.Parameter(torch.ones(64)))
    with pytest.raises(OperatorError, match="no layout rule for parameter 'gate'"):
        coalesce(m)


@settings(max_examples=15, deadline=None)
@given(name=st.sampled_from(NAMES), heads=st.sampled_from([2, 4]),
       head_size=st.sampled_from([4, 8]), layers=st.sampled_from([2, 4, 6]),
       seed=st.integers(0, 2**16), pairing=st.sampled_from(["adjacent", "stacked"]))
def test_property_round_trip_over_sizes_and_seeds(name, heads, head_size, layers, seed, pairing):
    small = build(name, hidden=heads * head_size, layers=layers, heads=heads, seed=seed)
    big = build(name, hidden=2 * heads * head_size, layers=2 * layers, heads=2 * heads)
    grown = decoalesce(small, like=big, depth_pairing=pairing)
    assert max_param_rel_err(coalesce(grown, depth_pairing=pairing), small) < 1e-6
