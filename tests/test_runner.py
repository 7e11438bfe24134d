"""The runner's clock and pairing: the once-per-process warm-up runs before any clock and
changes no number; each stage's set-up is inside the clock; the manifest says what arm and
baseline seeds share."""

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from suite import methods
from suite.families import FAMILIES
from suite.registry import load_benchmarks
from suite.results import read_run
from suite.run import context, provenance
from suite.run import executor as runner
from suite.run.context import RunOptions

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def benches():
    return load_benchmarks()


def _plan(bench, arm, scale="smoke"):
    s = bench.scale(scale)
    fam = FAMILIES[bench.family]
    data = context.load_data(fam, s)
    inputs = context.inputs_for(fam, s, data)
    return fam, inputs, methods.plan(bench.arms[arm], s, context.step_cost(fam, s, inputs))


@pytest.mark.parametrize(("bench", "arm"), [("ode", "ode-multilevel"), ("gpt", "vcycle"),
                                            ("bert-large", "vcycle3")])
def test_warm_up_leaves_the_global_rng_as_it_found_it(benches, bench, arm):
    fam, inputs, plan = _plan(benches[bench], arm)
    torch.manual_seed(11)
    before = torch.get_rng_state()
    assert context.warm_up(fam, inputs, plan, torch.device("cpu"), "fp32") > 0
    assert torch.equal(torch.get_rng_state(), before)


def test_warm_up_builds_a_throwaway_for_every_scale_of_every_benchmark(benches):
    """Found by a trial: the throwaway kept the definition's kv_heads (4 at llama's small and
    paper scales) beside its own 2 heads, and every llama baseline there failed in warm-up."""
    for bench in benches.values():
        fam, inputs, plan = _plan(bench, "baseline")
        for name, scale in bench.scales.items():
            first = dataclasses.replace(plan.steps[0], model=dict(scale.model))
            sized = dataclasses.replace(plan, steps=(first, *plan.steps[1:]))
            assert context.warm_up(fam, inputs, sized, torch.device("cpu"), "fp32") > 0, name


def _curves(run):
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in run.curve]


@pytest.mark.parametrize(("bench", "arm"), [("ode", "ode-multilevel"), ("gpt", "vcycle")])
def test_a_seed_gives_the_same_curve_with_or_without_the_warm_up(benches, bench, arm,
                                                                tmp_path, monkeypatch):
    with_it = read_run(runner.run_one(benches[bench], "smoke", arm, 0, tmp_path / "a",
                                      RunOptions(threads=1, progress=False)))
    monkeypatch.setattr(runner, "warm_up", lambda *a: 0.0)
    without = read_run(runner.run_one(benches[bench], "smoke", arm, 0, tmp_path / "b",
                                      RunOptions(threads=1, progress=False)))
    assert with_it.complete and without.complete
    assert _curves(with_it) == _curves(without)
    assert with_it.summary["warmup_s"] > 0 and without.summary["warmup_s"] == 0.0


def test_warm_up_comes_first_and_stage_set_up_is_on_the_clock(benches, tmp_path, monkeypatch):
    """A fake clock for the runner that moves only while an optimiser is made (100 s each):
    the summary's wall time holds exactly that much set-up, per level too; the warm-up ran
    once, before any optimiser, training step or transfer."""
    events = []

    class FakeTime:
        now = 0.0
        strftime = staticmethod(__import__("time").strftime)

        def perf_counter(self):
            return self.now

    fake = FakeTime()
    real = {n: getattr(runner, n) for n in ("warm_up", "make_optimizer", "train",
                                            "apply_transfer")}

    def spy(name, advance=0.0):
        def call(*a, **k):
            events.append(name)
            fake.now += advance
            return real[name](*a, **k)
        return call

    monkeypatch.setattr(runner, "time", fake)
    monkeypatch.setattr(runner, "warm_up", spy("warm_up"))
    monkeypatch.setattr(runner, "make_optimizer", spy("make_optimizer", 100.0))
    monkeypatch.setattr(runner, "train", spy("train"))
    monkeypatch.setattr(runner, "apply_transfer", spy("apply_transfer"))
    r = read_run(runner.run_one(benches["gpt"], "smoke", "vcycle", 0, tmp_path,
                                RunOptions(threads=1, progress=False)))
    assert r.complete
    assert events[0] == "warm_up" and events.count("warm_up") == 1
    stages = [s for s in r.manifest["plan"] if s["kind"] == "Train"]
    assert events.count("make_optimizer") == len(stages) == 3  # level 1, level 2, level 1
    s = r.summary
    assert s["setup_wall_s"] == 300.0
    assert 300.0 < s["wall_s"] < 400.0  # the set-up plus the real (train.py-timed) steps
    assert s["levels"]["1"]["wall_s"] > 200.0 and 100.0 < s["levels"]["2"]["wall_s"] < 200.0
    assert s["eval_wall_s"] < 100.0  # evaluation is never set-up


def test_after_the_warm_up_a_first_restrict_imports_nothing(tmp_path):
    """What was cold: family_of (every operator calls it) resolves every family's class, which
    imported transformers' BERT and GPT-2 and timm inside the first timed transfer."""
    code = textwrap.dedent("""
        import sys
        import torch
        from suite import methods, operators
        from suite.families import FAMILIES, Inputs
        from suite.run import context
        from suite.registry import load_benchmarks
        bench = load_benchmarks()["ode"]
        plan = methods.plan(bench.arms["ode-multilevel"], bench.scale("smoke"))
        fam, inputs = FAMILIES["decoder"], Inputs(seq_len=32, vocab_size=256)
        cold = "transformers.models.bert.modeling_bert" not in sys.modules
        context.warm_up(fam, inputs, plan, torch.device("cpu"), "fp32")
        model = fam.build(bench.scale("smoke").model, inputs)
        seen = set(sys.modules)
        coarse = operators.restrict(model, "even")
        operators.prolongate(model, coarse, "even", 0.25)
        print(cold, sorted(set(sys.modules) - seen))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "True []"


# ---------------------------------------------------------------- pairing


def test_pairing_of_the_baseline_and_the_v_cycle(benches):
    bench = benches["gpt"]
    scale = bench.scale("smoke")
    _, _, base = _plan(bench, "baseline")
    p = provenance.pairing(base, scale, 4, FAMILIES['gpt2'])
    assert (p["init_seed"], p["batch_seed"], p["shares_init_with_baseline"]) == (4, 4, True)
    assert p["main_step_batches"] == [[1, 20, 0]] and p["main_steps_on_baseline_batches"] == 20
    assert p["same_updates_as_baseline"] == 20
    _, _, vc = _plan(bench, "vcycle")
    p = provenance.pairing(vc, scale, 4, FAMILIES['gpt2'])
    first = vc.steps[0].steps  # level 1 before coalescing: round(0.05 x 20) = 1 step
    assert p["shares_init_with_baseline"] is True and first == 1
    assert p["main_step_batches"] == [[1, vc.train_steps, 0]]
    assert p["main_steps_on_baseline_batches"] == 20
    # the first stage is a linear warm-up over its one step: the baseline's warm-up is
    # round(0.05 x 20) = 1 step too, so that step is the baseline's very update
    assert scale.train.warmup == 0.05 and p["same_updates_as_baseline"] == 1
    assert p["shares_batch_stream_with_baseline"] == (
        "yes, batches only: every training step i, at any level, draws batch i as the "
        "baseline's step i does; the models part at the first transfer (after step 1) or "
        "earlier (same_updates_as_baseline); steps past the baseline's 20 draw batches it "
        "never drew")
    assert vc.train_steps > 20


@pytest.mark.parametrize("name", ["bert", "bert-large", "deit", "gpt", "llama", "ode"])
def test_every_level_1_stage_is_the_baseline_model(benches, name):
    """Level 1 is the target model in every method's plan, at every scale: the same size as
    the family builds it for the baseline (a fault found by a new-user trial: the ode plan
    sized llama's FFN by 4 x hidden, not SwiGLU's 8/3 x hidden, yet the manifest claimed a
    shared initialisation)."""
    bench = benches[name]
    fam = FAMILIES[bench.family]
    for scale_name, scale in bench.scales.items():
        want = fam.resolved(dict(scale.model))
        for arm in bench.arms.values():
            plan = methods.plan(arm, scale, family=fam)
            level1 = [s for s in plan.steps if isinstance(s, methods.Train) and s.level == 1]
            assert level1, (name, scale_name, arm.name)
            for s in level1:
                assert fam.resolved(s.model) == want, (name, scale_name, arm.name, s.model)


def test_llama_ffn_by_its_own_rule_in_plans_and_pairing(benches):
    """llama at smoke: hidden 32, SwiGLU's FFN 88 (8/3 x 32, rounded up to a multiple of 8),
    not 4 x 32 = 128; a plan whose first stage has FFN 128 shares no initialisation."""
    bench, fam = benches["llama"], FAMILIES["llama"]
    scale = bench.scale("smoke")
    plan = methods.plan(bench.arms["ode-multilevel"], scale, family=fam)
    assert plan.steps[0].model["ffn"] == fam.resolved(dict(scale.model))["ffn"] == 88
    assert provenance.pairing(plan, scale, 0, fam)["shares_init_with_baseline"] is True
    wide = methods.Plan(plan.method, plan.options, (dataclasses.replace(
        plan.steps[0], model={**plan.steps[0].model, "ffn": 128}), *plan.steps[1:]))
    assert provenance.pairing(wide, scale, 0, fam)["shares_init_with_baseline"] is False
    assert provenance.same_updates(wide, scale, fam) == 0


def test_same_updates_stop_where_the_learning_rate_differs(benches):
    """gpt at tiny: the V-cycle's first stage (30 steps of linear warm-up to the peak) is the
    baseline's warm-up of round(0.05 x 600) = 30 steps, update for update. With the
    definition's own schedule instead, that stage warms up over round(0.05 x 30) = 2 steps:
    its first learning rate is half the peak, the baseline's 1/30 of it."""
    bench = benches["gpt"]
    scale = bench.scale("tiny")
    arm = bench.arms["vcycle"]
    plan = methods.plan(arm, scale)
    assert plan.steps[0].steps == 30
    assert provenance.same_updates(plan, scale, FAMILIES['gpt2']) == 30
    own = type(arm)(arm.name, arm.method, {**arm.options, "first_stage": "schedule"})
    assert provenance.same_updates(methods.plan(own, scale), scale, FAMILIES['gpt2']) == 0


def test_pairing_of_the_ode_arm_counts_the_coarse_batches(benches):
    """Paper 2 at tiny: 600 fine steps, 35 corrections of 2 x 4 coarse steps. Fine step t <= 36
    draws batch t + 8 (t - 1); after the last correction every fine step is 280 batches on."""
    bench = benches["ode"]
    _, _, plan = _plan(bench, "ode-multilevel", "tiny")
    assert plan.options["coarse_steps_run"] == 4 and plan.options["coarse_until"] == 35
    p = provenance.pairing(plan, bench.scale("tiny"), 0, FAMILIES["decoder"])
    assert p["shares_init_with_baseline"] is True
    assert p["main_step_batches"] == [[t, t, 8 * (t - 1)] for t in range(1, 36)] + \
        [[36, 600, 280]]
    assert p["main_steps_on_baseline_batches"] == p["same_updates_as_baseline"] == 1
    assert p["shares_batch_stream_with_baseline"].startswith("until the first transfer (after "
                                                             "step 1)")


def test_arm_and_baseline_start_from_the_same_model_and_batches(benches, tmp_path,
                                                                 monkeypatch):
    """What `pairing` states, observed: the same step-0 evaluation (same initial model) and the
    same batch i at training step i for the V-cycle arm and the baseline."""
    drawn = {}
    real_next = context.dataio.TrainBatches.__next__

    def record(self):
        batch = real_next(self)
        drawn.setdefault(current, []).append(batch[0].clone())
        return batch

    monkeypatch.setattr(context.dataio.TrainBatches, "__next__", record)
    runs = {}
    for current in ("baseline", "vcycle"):
        runs[current] = read_run(runner.run_one(benches["gpt"], "smoke", current, 3, tmp_path,
                                                RunOptions(threads=1, progress=False)))
    base, arm = runs["baseline"], runs["vcycle"]
    assert arm.manifest["pairing"]["init_seed"] == base.manifest["pairing"]["init_seed"] == 3
    assert _curves(arm)[0] == _curves(base)[0]
    assert len(drawn["vcycle"]) == arm.summary["steps"] and len(drawn["baseline"]) == 20
    assert all(torch.equal(a, b) for a, b in zip(drawn["vcycle"], drawn["baseline"],
                                                 strict=False))




def test_a_process_records_the_commit_of_the_code_it_loaded(monkeypatch):
    """Found re-reading the gpt tuning: trials of one long tune process recorded the commit
    HEAD had at each trial's start (commits made while it ran), not the code it loaded."""
    import subprocess

    from suite.run import provenance

    calls = []
    real = subprocess.run

    def counting(cmd, *a, **k):
        calls.append(cmd[:2])
        return real(cmd, *a, **k)

    provenance._git_state.cache_clear()
    monkeypatch.setattr(provenance.subprocess, "run", counting)
    first = provenance.git_state()
    first["commit"] = "changed by a caller"
    assert provenance.git_state()["commit"] != "changed by a caller"  # a copy each time
    assert len(calls) == 2  # rev-parse and status, once per process
