"""G_stack as the third method (issue 14): its plan on the same FLOP footing as the others, the
paper's d guideline and where it applies, and a run through the runner."""

import math

import pytest

from suite import methods
from suite.families import FAMILIES
from suite.methods.gstack import FITTED, guideline_tokens
from suite.registry import inputs_for, load_benchmarks
from suite.results import read_run
from suite.run.context import load_data, step_cost
from suite.run.executor import RunOptions, run_one
from suite.spec import Arm


def cost_of(bench, scale_name):
    b = load_benchmarks()[bench]
    scale = b.scale(scale_name)
    fam = FAMILIES[b.family]
    return b, scale, fam, step_cost(fam, scale, inputs_for(fam, scale, load_data(fam, scale)))


def test_plan_trains_l_over_g_blocks_stacks_and_fills_the_budget():
    b, scale, fam, cost = cost_of("gpt", "tiny")
    p = methods.plan(b.arms["gstack"], scale, cost, fam)
    small, grow, full = p.steps
    assert small.model["layers"] == scale.model["layers"] // 4 and small.level == 2
    assert small.model["hidden"] == scale.model["hidden"]  # same width
    assert small.steps == round(0.1 * scale.steps) == p.options["small_steps_run"]
    assert (grow.operator, grow.options) == ("stack", {"growth": 4})
    assert full.level == 1 and not full.keep_optimizer and full.model == dict(scale.model)
    spent = cost(small.model) * small.steps + cost(full.model) * full.steps
    budget = cost(dict(scale.model)) * scale.steps
    assert budget - cost(full.model) < spent <= budget  # the baseline's FLOPs, to one step


def test_the_guideline_is_the_papers_formula_and_refused_outside_its_range():
    n, c = 7e9, 6 * 7e9 * 300e9
    assert math.log10(guideline_tokens(n, c)) == pytest.approx(
        0.88 * math.log10(n) + 163.27 / math.log10(c) - 5.74)
    b, scale, fam, cost = cost_of("gpt", "tiny")
    arm = Arm("g", "gstack", {"d": "guideline"})
    with pytest.raises(methods.MethodError, match=r"arms\.g\.d: the guideline was fitted on "
                                                  r"410M-7B models; this one has about"):
        methods.plan(arm, scale, cost, fam)
    assert FITTED == (410e6, 7e9)


def test_options_are_checked():
    b, scale, fam, cost = cost_of("gpt", "tiny")
    with pytest.raises(methods.MethodError, match=r"arms\.g\.growth: model layers=4 is not "
                                                  r"divisible by growth=3"):
        methods.plan(Arm("g", "gstack", {"growth": 3}), scale, cost, fam)
    with pytest.raises(methods.MethodError, match=r"arms\.g\.d: 1\.5 is not allowed"):
        methods.plan(Arm("g", "gstack", {"d": 1.5}), scale, cost, fam)
    with pytest.raises(methods.MethodError, match=r"unknown method 'gstak'; allowed: baseline, "
                                                  r"vcycle, ode-multilevel, gstack"):
        methods.plan(Arm("g", "gstak", {}), scale, cost, fam)


@pytest.mark.parametrize("bench", ["gpt", "llama"])
def test_gstack_runs(tmp_path, bench):
    b = load_benchmarks()[bench]
    run = read_run(run_one(b, "smoke", "gstack", 0, tmp_path,
                           RunOptions(threads=1, progress=False)))
    assert run.complete, run.summary["error"]
    assert run.summary["operators"]["stack"]["count"] == 1
    assert run.summary["operators"]["stack"]["flops"] == 0  # copies
    assert set(run.summary["levels"]) == {"1", "2"}
    events = [r.get("event") for r in run.curve]
    assert "stack" in events  # an evaluation right after the growth
