"""Paper 1's V-cycle as a plan of Train and Transfer steps, and its execution by the runner."""

import dataclasses

import pytest
import torch

from suite import operators as ML
from suite.families import FAMILIES, Inputs
from suite.methods import MethodError, Train, Transfer, coarser, plan
from suite.results import read_run
from suite.run.context import apply_transfer
from suite.run.executor import RunOptions, run_one
from suite.run.train import Optim
from suite.spec import Arm


def _cost(size):  # a stand-in meter: cost grows with width^2 x depth
    return size["hidden"] ** 2 * size["layers"]


def test_two_level_plan_follows_the_schedule(builtin_benchmarks):
    scale = builtin_benchmarks["gpt"].scale("tiny")  # 600 steps, 4 x 128 x 4
    p = plan(Arm("vc", "vcycle", {"alpha": 0.25}), scale, _cost)
    kinds = [(type(s).__name__, getattr(s, "level", None), getattr(s, "operator", None))
             for s in p.steps]
    assert kinds == [("Train", 1, None), ("Transfer", None, "coalesce"), ("Train", 2, None),
                     ("Transfer", None, "decoalesce+interpolate"), ("Train", 1, None)]
    ea, small, rest = (s for s in p.steps if isinstance(s, Train))
    assert ea.steps == 30 and small.steps == 300  # E_a 5%, E_small 50% of the baseline's 600
    assert small.model == {"hidden": 64, "layers": 2, "heads": 2, "ffn": 256}
    assert p.steps[3].options["alpha"] == 0.25 and p.steps[3].options["to"] == 1
    # every stage has a fresh schedule; the E_a stage is a warm-up; the small level's lr is 4x;
    # later stages decay linearly from their peak without a warm-up (exact Optims: below)
    assert ea.optim.warmup == 1.0 and ea.optim.decay == "constant"
    assert small.optim.lr == pytest.approx(4 * scale.train.lr)
    assert rest.optim.lr == scale.train.lr and rest.optim.warmup == 0.0
    # level 1 gets what is left of the baseline's FLOPs, to within one of its steps
    spent = sum(_cost(s.model) * s.steps for s in p.steps if isinstance(s, Train))
    budget = _cost(scale.model) * scale.steps
    assert budget - _cost(scale.model) < spent <= budget


def test_three_level_plan_goes_down_and_back_up(builtin_benchmarks):
    scale = builtin_benchmarks["bert-large"].scale("tiny")  # 8 x 128 x 4
    p = plan(Arm("vc3", "vcycle", {"levels": 3, "alpha": 0.5}), scale, _cost)
    levels = [s.level if isinstance(s, Train) else s.operator for s in p.steps]
    assert levels == [1, "coalesce", 2, "coalesce", 3, "decoalesce+interpolate", 2,
                      "decoalesce+interpolate", 1]
    sizes = [s.model for s in p.steps if isinstance(s, Train)]
    assert sizes[2] == {"hidden": 32, "layers": 2, "heads": 1, "ffn": 128}
    assert [s.options.get("to") for s in p.steps if isinstance(s, Transfer)] == [None, None, 2, 1]


def test_options_are_recorded_with_their_defaults(builtin_benchmarks):
    scale = builtin_benchmarks["gpt"].scale("smoke")
    p = plan(Arm("vc", "vcycle", {}), scale, _cost)
    assert p.options == {"levels": 2, "alpha": 0.25, "e_a": 0.05, "e_small": 0.5, "e_up": 0.05,
                         "coarse_lr_scale": 4.0, "first_stage": "warmup",
                         "later_stages": "decay-from-peak",
                         "depth_pairing": "adjacent", "embedding_scaling": "reference",
                         "optimizer_policy": "fresh"}


def test_budget_too_small_for_the_coarse_stages(builtin_benchmarks):
    scale = builtin_benchmarks["gpt"].scale("smoke")
    with pytest.raises(MethodError, match="already spend the baseline's FLOP budget"):
        plan(Arm("vc", "vcycle", {"e_small": 0.99, "e_a": 0.9}), scale, _cost)


def test_coarser_halves_every_dimension_and_names_the_odd_one():
    assert coarser({"hidden": 64, "layers": 4, "heads": 4}, 2) == {
        "hidden": 16, "layers": 1, "heads": 1, "ffn": 64}
    with pytest.raises(MethodError, match="model heads=1 does not halve evenly"):
        coarser({"hidden": 64, "layers": 8, "heads": 2}, 2)


def test_interpolation_uses_the_model_saved_before_coalescing():
    """alpha = 0 must give back exactly the level-1 model as it was before coalescing, however
    the small model trained in between."""
    fam = FAMILIES["decoder"]
    torch.manual_seed(0)
    big = fam.build({"hidden": 32, "layers": 2, "heads": 2}, Inputs(seq_len=8, vocab_size=50))
    before = {k: v.clone() for k, v in big.state_dict().items()}
    saved = {}
    ops = {"depth_pairing": "adjacent", "embedding_scaling": "reference"}
    small, cost = apply_transfer(Transfer("coalesce", {"from": 1, **ops}), big, saved)
    assert saved[1] is big and cost == 2 * sum(p.numel() for p in big.parameters())
    with torch.no_grad():
        for p in small.parameters():
            p.add_(1.0)  # "training" the small model
    back, _ = apply_transfer(Transfer("decoalesce+interpolate", {"to": 1, "alpha": 0.0, **ops}),
                             small, saved)
    assert saved == {}
    assert all(torch.equal(back.state_dict()[k], v) for k, v in before.items())
    half, _ = apply_transfer(Transfer("coalesce", {"from": 1, **ops}), back, saved)
    grown = ML.decoalesce(half, like=back, **ops)
    one, _ = apply_transfer(Transfer("decoalesce+interpolate", {"to": 1, "alpha": 1.0, **ops}),
                            half, saved)
    assert all(torch.equal(one.state_dict()[k], v) for k, v in grown.state_dict().items())


def test_vcycle_run_records_levels_operators_and_options(tmp_path, builtin_benchmarks):
    bench = builtin_benchmarks["bert-large"]
    run = read_run(run_one(bench, "smoke", "vcycle3", 0, tmp_path,
                           RunOptions(threads=1, progress=False)))
    assert run.complete
    s, m = run.summary, run.manifest
    assert set(s["levels"]) == {"1", "2", "3"}
    assert sum(v["steps"] for v in s["levels"].values()) == s["steps"] == s["planned_steps"]
    ops = s["operators"]
    assert ops["coalesce"]["count"] == 2 and ops["decoalesce+interpolate"]["count"] == 2
    level_flops = sum(v["flops"] for v in s["levels"].values())
    assert s["flops"] == level_flops + sum(o["flops"] for o in ops.values())
    assert m["method"]["options"]["levels"] == 3 and m["method"]["options"]["alpha"] == 0.5
    assert [r["event"] for r in run.curve if "event" in r] == [
        "coalesce", "coalesce", "decoalesce+interpolate", "decoalesce+interpolate"]
    # the arm spends no more than the baseline's FLOPs (operators included, to 0.1%)
    base = read_run(run_one(bench, "smoke", "baseline", 0, tmp_path,
                            RunOptions(threads=1, progress=False)))
    assert s["flops"] <= base.summary["flops"] * 1.001
    # the plan in the manifest is the one that ran
    trains = [st for st in m["plan"] if st["kind"] == "Train"]
    assert [st["level"] for st in trains] == [1, 2, 3, 2, 1]
    assert sum(st["steps"] for st in trains) == s["steps"]


def test_stage_lr_of_each_level(builtin_benchmarks):
    scale = builtin_benchmarks["bert-large"].scale("tiny")
    scale = dataclasses.replace(scale, train=dataclasses.replace(scale.train, lr=1e-3))
    p = plan(Arm("vc3", "vcycle", {"levels": 3, "coarse_lr_scale": 2.0}), scale, _cost)
    lrs = {s.level: s.optim.lr for s in p.steps if isinstance(s, Train)}
    assert lrs == pytest.approx({1: 1e-3, 2: 2e-3, 3: 4e-3})


def _three_level_cosine_scale(builtin_benchmarks):
    """bert-large tiny (8 x 128 x 4, 600 steps) with a cosine decay and a 0.1 floor, so that
    "decay-from-peak" visibly replaces the shape and keeps the floor."""
    scale = builtin_benchmarks["bert-large"].scale("tiny")
    train = dataclasses.replace(scale.train, lr=1e-3, decay="cosine", min_lr_ratio=0.1)
    return dataclasses.replace(scale, train=train)


def test_later_stages_decay_from_their_peak_by_default(builtin_benchmarks):
    """Public code of paper 1: after the big model's warm-up stage, 'small model 50K steps at LR
    4e-4 linear decay, big model 50K steps at 1e-4 linear decay': no warm-up in later stages."""
    scale = _three_level_cosine_scale(builtin_benchmarks)
    p = plan(Arm("vc3", "vcycle", {"levels": 3}), scale, _cost)
    assert p.options["later_stages"] == "decay-from-peak"
    stages = [(s.level, s.steps, s.optim) for s in p.steps if isinstance(s, Train)]
    common = {"optimizer": "adamw", "weight_decay": 0.01, "betas": (0.9, 0.98), "momentum": 0.0,
              "grad_clip": 1.0}
    warm = {"warmup": 1.0, "decay": "constant", "min_lr_ratio": 0.1}
    decay = {"warmup": 0.0, "decay": "linear", "min_lr_ratio": 0.1}
    assert stages[:4] == [
        (1, 30, Optim(lr=1e-3, **common, **warm)),   # E_a: a warm-up, as before
        (2, 30, Optim(lr=4e-3, **common, **warm)),   # E_a of level 2
        (3, 300, Optim(lr=1.6e-2, **common, **decay)),  # smallest level, E_small
        (2, 30, Optim(lr=4e-3, **common, **decay)),  # on the way up, e_up = e_a
    ]
    assert stages[4][0] == 1 and stages[4][2] == Optim(lr=1e-3, **common, **decay)
    assert len(stages) == 5


def test_later_stages_definition_restarts_the_definitions_schedule(builtin_benchmarks):
    scale = _three_level_cosine_scale(builtin_benchmarks)
    p = plan(Arm("vc3", "vcycle", {"levels": 3, "later_stages": "definition"}), scale, _cost)
    stages = [(s.level, s.optim) for s in p.steps if isinstance(s, Train)]
    common = {"optimizer": "adamw", "weight_decay": 0.01, "betas": (0.9, 0.98), "momentum": 0.0,
              "grad_clip": 1.0, "min_lr_ratio": 0.1}
    warm = {"warmup": 1.0, "decay": "constant"}
    definition = {"warmup": 0.05, "decay": "cosine"}  # the definition's, afresh in each stage
    assert stages == [(1, Optim(lr=1e-3, **common, **warm)), (2, Optim(lr=4e-3, **common, **warm)),
                      (3, Optim(lr=1.6e-2, **common, **definition)),
                      (2, Optim(lr=4e-3, **common, **definition)),
                      (1, Optim(lr=1e-3, **common, **definition))]


def test_later_stages_is_independent_of_first_stage(builtin_benchmarks):
    scale = builtin_benchmarks["gpt"].scale("tiny")  # warm-up 0.05, linear, floor 0.1
    p = plan(Arm("vc", "vcycle", {"first_stage": "schedule"}), scale, _cost)
    ea, small, rest = (s.optim for s in p.steps if isinstance(s, Train))
    assert (ea.warmup, ea.decay, ea.lr) == (0.05, "linear", 1e-3)
    assert (small.warmup, small.decay, small.min_lr_ratio) == (0.0, "linear", 0.1)
    assert (rest.warmup, rest.decay, rest.min_lr_ratio) == (0.0, "linear", 0.1)
    with pytest.raises(MethodError, match="arms.vc.later_stages: 'cosine' is not allowed; "
                                          "allowed: decay-from-peak, definition"):
        plan(Arm("vc", "vcycle", {"later_stages": "cosine"}), scale, _cost)
