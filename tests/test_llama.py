"""The llama family (issue 14): a Llama-style decoder with grouped-query attention through every
operator, exactly as the other families (tests/test_multilevel.py covers what all share)."""

import pytest
import torch

from suite import operators as ML
from suite.families import FAMILIES, Inputs, logits
from suite.registry import load_benchmarks

LLAMA = FAMILIES["llama"]
TEXT = Inputs(seq_len=16, vocab_size=61)


def gqa(hidden=64, layers=4, heads=4, kv_heads=2, seed=0):
    torch.manual_seed(seed)
    return LLAMA.build({"hidden": hidden, "layers": layers, "heads": heads,
                        "kv_heads": kv_heads}, TEXT, True).eval()


def x():
    return torch.randint(0, 61, (3, 16), generator=torch.Generator().manual_seed(1))


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def test_the_model_is_a_llama_with_grouped_query_attention():
    m = gqa()
    size, inputs, eager = LLAMA.describe(m)
    assert size == {"hidden": 64, "layers": 4, "heads": 4, "kv_heads": 2, "ffn": 176}
    assert (inputs.vocab_size, inputs.seq_len, eager) == (61, 16, True)
    attn = m.model.layers[0].self_attn
    assert attn.k_proj.weight.shape == (2 * 16, 64) and attn.q_proj.weight.shape == (64, 64)
    assert type(m.model.norm).__name__ == "LlamaRMSNorm" and m.lm_head.weight is not \
        m.model.embed_tokens.weight  # untied
    assert LLAMA.check({"hidden": 64, "layers": 4, "heads": 4, "kv_heads": 3}, TEXT) == \
        [("kv_heads", "heads=4 is not divisible by kv_heads=3")]
    assert LLAMA.check({"hidden": 36, "layers": 4, "heads": 4, "kv_heads": 2}, TEXT) == \
        [("heads", "head size hidden/heads = 36/4 = 9 is odd; rotary positions need an even "
                   "head size")]


def test_coalescing_pairs_query_heads_and_key_value_heads_alike():
    m = gqa()
    small = ML.coalesce(m, depth=False)
    size, _, _ = LLAMA.describe(small)
    assert (size["heads"], size["kv_heads"], size["hidden"] // size["heads"]) == (2, 1, 16)
    k = m.model.layers[0].self_attn.k_proj.weight.detach()  # (KV x 16, 64): heads 0 and 1
    got = small.model.layers[0].self_attn.k_proj.weight.detach()  # (16, 32)
    # KV head j pairs with j + KV/2 on the output axis; input columns pair (c, c + 32) summed
    want = (k[:16] + k[16:]) / 2
    want = want[:, :32] + want[:, 32:]
    assert torch.equal(got, want)


@pytest.mark.parametrize("pairing", ["adjacent", "stacked"])
def test_coalesce_of_decoalesce_is_the_identity(pairing):
    small = gqa(hidden=32, layers=2, heads=2, kv_heads=1, seed=3)
    grown = ML.decoalesce(small, like=gqa(), depth_pairing=pairing)
    back = ML.coalesce(grown, depth_pairing=pairing)
    ps = dict(small.named_parameters())
    assert max(rel(p.detach(), ps[k].detach()) for k, p in back.named_parameters()) < 1e-6


@pytest.mark.parametrize("scaling", ["reference", "preserving"])
def test_width_decoalescing_preserves_the_logits(scaling):
    """RMSNorm of [x, x] is [RMSNorm(x), RMSNorm(x)]: duplication keeps the root mean square;
    the head is untied, so the two embedding scalings coincide."""
    narrow = ML.coalesce(gqa(seed=5), depth=False, embedding_scaling=scaling)
    wide = ML.decoalesce(narrow, like=gqa(), embedding_scaling=scaling)
    with torch.no_grad():
        assert rel(logits(LLAMA, wide, x()), logits(LLAMA, narrow, x())) < 1e-5


@pytest.mark.parametrize("parity", ["even", "odd"])
def test_restrict_and_prolongate_with_delta_0_and_1(parity):
    fine = gqa()
    before = {k: v.detach().clone() for k, v in fine.named_parameters()}
    coarse = ML.restrict(fine, parity)
    assert coarse.config.num_hidden_layers == 2 and len(coarse.model.layers) == 2
    assert [b.self_attn.layer_idx for b in coarse.model.layers] == [0, 1]
    with torch.no_grad():
        logits(LLAMA, coarse, x())  # the coarse model runs
        for p in coarse.parameters():
            p.add_(0.5)
    ML.prolongate(fine, coarse, parity, delta=0.0)
    assert all(torch.equal(p, before[k]) for k, p in fine.named_parameters())
    ML.prolongate(fine, coarse, parity, delta=1.0)
    for j, i in enumerate(ML.owned_blocks(4, parity)):
        for (_, pf), (_, pc) in zip(fine.model.layers[i].named_parameters(),
                                    coarse.model.layers[j].named_parameters(), strict=True):
            assert torch.equal(pf, pc)


def test_stacking_repeats_the_blocks_in_order():
    small = gqa(layers=2)
    deep = ML.stack(small, 4)
    assert LLAMA.describe(deep)[0]["layers"] == 8
    for i in range(8):
        for (_, a), (_, b) in zip(deep.model.layers[i].named_parameters(),
                                  small.model.layers[i % 2].named_parameters(), strict=True):
            assert torch.equal(a, b)
    assert torch.equal(deep.lm_head.weight, small.lm_head.weight)
    with pytest.raises(ML.OperatorError, match="stack: growth=1; allowed: an integer >= 2"):
        ML.stack(small, 1)


def test_every_scale_and_arm_of_the_llama_benchmark_plans():
    bench = load_benchmarks()["llama"]
    assert set(bench.arms) == {"baseline", "vcycle", "ode-multilevel", "gstack"}
    assert bench.scale("paper").model == {"hidden": 768, "layers": 12, "heads": 12,
                                          "kv_heads": 4}
    gpt = load_benchmarks()["gpt"].scale("paper")
    paper = bench.scale("paper")
    assert (paper.steps, paper.batch_size, paper.seq_len) == (gpt.steps, gpt.batch_size,
                                                              gpt.seq_len)
