"""Paper 2's operators and schedule: restriction, prolongation, the odd/even plan."""

import pytest
import torch

from suite import operators as ML
from suite.families import FAMILIES, Inputs, logits
from suite.methods import MethodError, Train, Transfer, plan
from suite.results import read_run
from suite.run.executor import RunOptions, run_one
from suite.run.train import Clock, Loop, Optim, Stage, lr_factor, make_optimizer, train
from suite.spec import Arm

INPUTS = Inputs(seq_len=16, vocab_size=50)


def fine(name="decoder", layers=4, seed=0):
    torch.manual_seed(seed)
    return FAMILIES[name].build({"hidden": 32, "layers": layers, "heads": 2}, INPUTS).eval()


def blocks(m):
    return m.blocks if hasattr(m, "blocks") else m.transformer.h


def params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    while True:
        w = torch.randint(0, 50, (4, 17), generator=g)
        yield w[:, :-1], w[:, 1:]


def out(m, x):
    return logits(FAMILIES["decoder"], m, x)


def test_even_and_odd_cover_every_block_once():
    assert ML.owned_blocks(12, "even") == [1, 3, 5, 7, 9, 11]  # blocks 2, 4, .., 12 (1-based)
    assert ML.owned_blocks(12, "odd") == [0, 2, 4, 6, 8, 10]  # blocks 1, 3, .., 11
    assert sorted(ML.owned_blocks(12, "even") + ML.owned_blocks(12, "odd")) == list(range(12))


@pytest.mark.parametrize("name", ["decoder", "gpt2"])
@pytest.mark.parametrize("parity", ["even", "odd"])
def test_restrict_takes_the_parity_blocks_and_the_shared_layers(name, parity):
    f = fine(name)
    c = ML.restrict(f, parity)
    idx = ML.owned_blocks(4, parity)
    assert len(blocks(c)) == 2 and len(blocks(f)) == 4
    for j, i in enumerate(idx):
        assert same(params(blocks(c)[j]), params(blocks(f)[i]))
        assert blocks(c)[j] is not blocks(f)[i]  # copies under "averaged"
    emb = "wte" if name == "decoder" else "transformer.wte"
    assert torch.equal(c.get_parameter(emb + ".weight"), f.get_parameter(emb + ".weight"))


@pytest.mark.parametrize("parity", ["even", "odd"])
def test_prolongate_with_delta_0_and_1(parity):
    f = fine()
    before = params(f)
    c = ML.restrict(f, parity)
    with torch.no_grad():
        for p in c.parameters():
            p.add_(0.5)  # pretend the coarse model trained
    ML.prolongate(f, c, parity, delta=0.0)
    assert same(params(f), before)  # delta 0: unchanged, exactly
    ML.prolongate(f, c, parity, delta=1.0)
    for j, i in enumerate(ML.owned_blocks(4, parity)):
        assert same(params(blocks(f)[i]), params(blocks(c)[j]))  # delta 1: the coarse blocks
    assert torch.equal(f.wte.weight, c.wte.weight)  # "averaged": shared layers too


def test_prolongate_is_the_weighted_average_and_averages_a_tied_matrix_once():
    f = fine()
    before = params(f)
    c = ML.restrict(f, "odd")
    with torch.no_grad():
        for p in c.parameters():
            p.add_(1.0)
    ML.prolongate(f, c, "odd", delta=0.25)
    assert torch.allclose(f.blocks[0].fc.weight, before["blocks.0.fc.weight"] + 0.25)
    assert torch.equal(f.blocks[1].fc.weight, before["blocks.1.fc.weight"])  # not owned
    # wte and head are one tensor: moved by 0.25 once, not twice
    assert torch.allclose(f.wte.weight, before["wte.weight"] + 0.25)
    assert f.head.weight is f.wte.weight


@pytest.mark.parametrize("parity", ["even", "odd"])
def test_coarse_training_never_changes_blocks_it_does_not_own(parity):
    f = fine()
    before = params(f)
    c = ML.restrict(f, parity)
    train(c, batches(), Stage(5, Optim(optimizer="sgd", lr=0.5), 1), Clock(), Loop(out))
    ML.prolongate(f, c, parity, delta=0.25)
    owned = set(ML.owned_blocks(4, parity))
    for i in range(4):
        moved = not same(params(f.blocks[i]), {k[len(f"blocks.{i}."):]: v
                                               for k, v in before.items()
                                               if k.startswith(f"blocks.{i}.")})
        assert moved == (i in owned)


def test_tied_shared_layers_are_the_fine_tensors():
    f = fine()
    c = ML.restrict(f, "even", shared="tied")
    assert c.wte.weight is f.wte.weight and c.ln_f.weight is f.ln_f.weight
    assert c.head.weight is f.wte.weight
    emb_before = f.wte.weight.detach().clone()
    train(c, batches(), Stage(3, Optim(optimizer="sgd", lr=0.5), 1), Clock(), Loop(out))
    assert not torch.equal(f.wte.weight, emb_before)  # coarse training updated it in place
    updated = f.wte.weight.detach().clone()
    ML.prolongate(f, c, "even", delta=0.25, shared="tied")
    assert torch.equal(f.wte.weight, updated)  # and prolongation leaves it alone


def test_coarse_step_2_computes_the_ode_reading():
    """With equal odd and even blocks, a fine model applies F twice with step 1; the coarse
    model with coarse_step = 2 applies x + 2 F(x): forward Euler with the doubled step."""
    f = fine(layers=4)
    with torch.no_grad():
        for i in (0, 2):
            f.blocks[i + 1].load_state_dict(f.blocks[i].state_dict())
    c2 = ML.restrict(f, "odd", coarse_step=2)
    c1 = ML.restrict(f, "odd", coarse_step=1)
    x = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        h = f.wte(x) + f.wpe(torch.arange(16))
        for blk in c2.blocks:  # by hand: each branch's output doubled
            h = h + 2 * blk.attention(blk.ln_1(h))
            h = h + 2 * blk.fc_out(torch.nn.functional.gelu(blk.fc(blk.ln_2(h))))
        by_hand = f.head(f.ln_f(h))
        assert torch.allclose(c2(x), by_hand, atol=1e-6)
        err2 = (c2(x) - f(x)).abs().max()
        err1 = (c1(x) - f(x)).abs().max()
    assert err2 < err1  # the doubled step is the better coarse model of the fine one


def test_errors():
    with pytest.raises(ML.OperatorError, match="layers=3 is odd"):
        ML.restrict(fine(layers=3), "even")
    with pytest.raises(ML.OperatorError, match="bert is not a pre-LN residual decoder"):
        ML.restrict(FAMILIES["bert"].build({"hidden": 32, "layers": 2, "heads": 2},
                                           Inputs(seq_len=16, vocab_size=51)), "even")
    with pytest.raises(ML.OperatorError, match="coarse_step=2: gpt2 blocks cannot scale"):
        ML.restrict(fine("gpt2"), "even", coarse_step=2)
    with pytest.raises(ML.OperatorError, match="parity='middle'; allowed: even, odd"):
        ML.restrict(fine(), "middle")
    with pytest.raises(ML.OperatorError, match="delta=2; allowed: 0 <= delta <= 1"):
        ML.prolongate(fine(), ML.restrict(fine(), "odd"), "odd", delta=2)


def test_plan_follows_the_paper_schedule_scaled_to_the_budget(builtin_benchmarks):
    scale = builtin_benchmarks["ode"].scale("tiny")  # 600 steps, 8 blocks
    p = plan(Arm("ml", "ode-multilevel", {}), scale)
    k = round(100 * 600 / 16000)  # "proportional": the paper's 100 per 16,000 fine steps
    assert p.options["coarse_steps_run"] == k == 4
    assert p.options["until_scaling"] == "absolute" and p.options["coarse_until_run"] == 35
    head = p.steps[:7]
    assert [type(s).__name__ for s in head] == ["Train", "Transfer", "Train", "Transfer",
                                                "Transfer", "Train", "Transfer"]
    assert [s.operator for s in head if isinstance(s, Transfer)] == [
        "restrict", "prolongate", "restrict", "prolongate"]
    assert [s.options["parity"] for s in head if isinstance(s, Transfer)] == [
        "even", "even", "odd", "odd"]
    # shared layers are the fine model's tensors by default (paper 2's figure)
    assert [s.options["shared"] for s in p.steps if isinstance(s, Transfer)] == ["tied"] * 140
    fine_steps = [s for s in p.steps if isinstance(s, Train) and not s.auxiliary]
    coarse = [s for s in p.steps if isinstance(s, Train) and s.auxiliary]
    assert len(coarse) == 2 * 35 and all(s.steps == k for s in coarse)
    assert all(s.model["layers"] == 4 for s in coarse)
    assert sum(s.steps for s in fine_steps) == p.main_steps == 600
    # the fine model follows one cosine over all 600 steps; coarse steps use its current lr
    assert [s.schedule for s in fine_steps[:3]] == [(0, 600), (1, 600), (2, 600)]
    assert fine_steps[-1].schedule == (35, 600) and fine_steps[-1].steps == 565
    base = fine_steps[0].optim
    assert coarse[4].optim.lr == pytest.approx(base.lr * lr_factor(2, 600, base))
    assert coarse[4].optim.decay == "constant"
    absolute = plan(Arm("ml", "ode-multilevel", {"coarse_scaling": "absolute"}), scale)
    assert absolute.options["coarse_steps_run"] == 100


def _counts(p):
    """(corrections, coarse stages, coarse steps, fine steps) of an ode-multilevel plan."""
    coarse = [s for s in p.steps if isinstance(s, Train) and s.auxiliary]
    restricts = [s for s in p.steps if isinstance(s, Transfer) and s.operator == "restrict"]
    return len(restricts) // 2, len(coarse), sum(s.steps for s in coarse), p.main_steps


@pytest.mark.parametrize(("scale_name", "corrections"), [
    ("smoke", 1),    # round(35 x 20 / 16,000) = 0, at least 1
    ("tiny", 1),     # round(35 x 600 / 16,000) = round(1.3125)
    ("small", 18),   # round(35 x 8,000 / 16,000) = round(17.5), half to even
    ("paper", 35),   # the paper's schedule, exactly
])
def test_until_scaling_proportional_scales_the_corrections(builtin_benchmarks, scale_name,
                                                           corrections):
    scale = builtin_benchmarks["ode"].scale(scale_name)
    p = plan(Arm("ml", "ode-multilevel", {"until_scaling": "proportional",
                                          "coarse_scaling": "absolute"}), scale)
    assert p.options["coarse_until_run"] == corrections and p.options["coarse_steps_run"] == 100
    assert _counts(p) == (corrections, 2 * corrections, 200 * corrections, scale.steps)
    fine_steps = [s for s in p.steps if isinstance(s, Train) and not s.auxiliary]
    assert fine_steps[-1].schedule == (corrections, scale.steps)


def test_until_scaling_absolute_keeps_coarse_until_up_to_the_run_length(builtin_benchmarks):
    ode = builtin_benchmarks["ode"]
    tiny = plan(Arm("ml", "ode-multilevel", {}), ode.scale("tiny"))
    assert tiny.options["coarse_until_run"] == 35 and _counts(tiny) == (35, 70, 280, 600)
    smoke = plan(Arm("ml", "ode-multilevel", {}), ode.scale("smoke"))  # 20 fine steps < 35
    assert smoke.options["coarse_until_run"] == 20 and _counts(smoke) == (20, 40, 40, 20)
    none = plan(Arm("ml", "ode-multilevel", {"coarse_until": 0, "until_scaling": "proportional"}),
                ode.scale("tiny"))  # no coarse work stays none: "at least 1" is for rounding
    assert none.options["coarse_until_run"] == 0 and _counts(none) == (0, 0, 0, 600)
    with pytest.raises(MethodError, match="arms.ml.until_scaling: 'linear' is not allowed; "
                                          "allowed: absolute, proportional"):
        plan(Arm("ml", "ode-multilevel", {"until_scaling": "linear"}), ode.scale("tiny"))


def test_shared_averaged_reaches_both_operators(builtin_benchmarks):
    p = plan(Arm("ml", "ode-multilevel", {"shared": "averaged"}),
             builtin_benchmarks["ode"].scale("smoke"))
    transfers = [s for s in p.steps if isinstance(s, Transfer)]
    assert {s.operator for s in transfers} == {"restrict", "prolongate"}
    assert all(s.options["shared"] == "averaged" for s in transfers)


def test_tied_works_for_hf_gpt2_with_its_tied_lm_head():
    """gpt's ode-multilevel arm runs the default shared = "tied" on GPT2LMHeadModel: the coarse
    model's wte, wpe, ln_f and lm_head are the fine model's tensors, lm_head stays tied to wte,
    coarse training moves them in place and prolongation leaves them alone."""
    f = fine("gpt2")
    c = ML.restrict(f, "odd", shared="tied")
    for name in ("transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight",
                 "transformer.ln_f.bias", "lm_head.weight"):
        assert c.get_parameter(name) is f.get_parameter(name)
    assert c.lm_head.weight is c.transformer.wte.weight
    emb_before = f.transformer.wte.weight.detach().clone()
    block_before = params(blocks(f)[1])
    fam = FAMILIES["gpt2"]
    train(c, batches(), Stage(3, Optim(optimizer="adamw", lr=1e-2), 1), Clock(),
          Loop(lambda m, x: logits(fam, m, x)))
    assert not torch.equal(f.transformer.wte.weight, emb_before)
    assert same(params(blocks(f)[1]), block_before)  # an even block: not the odd model's
    updated = f.transformer.wte.weight.detach().clone()
    ML.prolongate(f, c, "odd", delta=0.25, shared="tied")
    assert torch.equal(f.transformer.wte.weight, updated)
    assert f.lm_head.weight is f.transformer.wte.weight


def test_plan_errors(builtin_benchmarks):
    scale = builtin_benchmarks["ode"].scale("tiny")
    with pytest.raises(MethodError, match="arms.ml.delta: 1.5 is not allowed"):
        plan(Arm("ml", "ode-multilevel", {"delta": 1.5}), scale)
    with pytest.raises(MethodError, match="arms.ml.coarse_step: 3 is not allowed; allowed: 1, 2"):
        plan(Arm("ml", "ode-multilevel", {"coarse_step": 3}), scale)


def test_ode_run_counts_both_conventions_and_evaluates_the_fine_model(tmp_path,
                                                                       builtin_benchmarks):
    bench = builtin_benchmarks["ode"]  # smoke: 20 steps, eval every 10, 4 blocks
    run = read_run(run_one(bench, "smoke", "ode-multilevel", 0, tmp_path,
                           RunOptions(threads=1, progress=False)))
    assert run.complete
    s = run.summary
    k = run.manifest["method"]["options"]["coarse_steps_run"]
    assert s["steps"] == 20 + 20 * 2 * k  # coarse_until = 35 > 20: every fine step corrected
    assert s["operators"]["restrict"]["count"] == s["operators"]["prolongate"]["count"] == 40
    assert [r["step"] for r in run.curve] == [0, 10, 20]  # fine steps only
    assert all(r["level"] == 1 for r in run.curve)
    assert s["flops_blocks"] < s["flops"]
    assert s["levels"]["2"]["flops_blocks"] == s["levels"]["1"]["flops_blocks"] * k  # half depth


def test_the_fine_model_keeps_one_optimiser_across_its_one_step_stages(builtin_benchmarks):
    p = plan(Arm("ml", "ode-multilevel", {}), builtin_benchmarks["ode"].scale("tiny"))
    trains = [s for s in p.steps if isinstance(s, Train)]
    assert [s.keep_optimizer for s in trains if not s.auxiliary][:3] == [False, True, True]
    assert all(s.keep_optimizer for s in [t for t in trains if not t.auxiliary][1:])
    assert not any(s.keep_optimizer for s in trains if s.auxiliary)  # coarse: fresh each time
    # a kept optimiser carries its state: AdamW's step count goes on
    f = fine()
    o = Optim(optimizer="adamw", lr=1e-3)
    opt = make_optimizer(f, o)
    for _ in range(3):
        train(f, batches(), Stage(1, o, 1), Clock(), Loop(out), optimizer=opt)
    assert int(opt.state[f.wte.weight]["step"]) == 3


def test_restricted_hf_gpt2_runs_with_its_kv_cache_on():
    """A user's GPT-2 (cache on by default): coarse blocks are renumbered for the cache."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    m = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=4, n_head=2, vocab_size=50,
                                   n_positions=16)).eval()
    c = ML.restrict(m, "even")
    assert [b.attn.layer_idx for b in c.transformer.h] == [0, 1]
    with torch.no_grad():
        out = c(torch.randint(0, 50, (2, 16)), use_cache=True)
    assert out.logits.shape == (2, 16, 50)
