"""Savings with confidence intervals: hand-computed values, synthetic arms, and a null check."""

import math
from pathlib import Path

import numpy as np
import pytest

from suite import analysis
from suite.analysis import Cost, cost_to_reach, mean_ci, ratio_saving, value_at, welch_difference
from suite.results import Run

T975_2 = 4.302652729749462  # Student t, 97.5% quantile, 2 degrees of freedom
T975_4 = 2.7764451051977987  # ... 4 degrees of freedom


def curve(xs, ys, x="flops"):
    return [{x: a, "heldout_loss": b} for a, b in zip(xs, ys, strict=True)]


LINE = curve([0, 10, 20, 30], [4.0, 3.0, 2.0, 1.0])


# ---------------------------------------------------------------- mean_ci


def test_mean_ci_by_hand():
    ci = mean_ci([1, 2, 3])
    half = 4.3027 * 0.57735  # t(0.975, 2) * sd / sqrt(n), sd = 1
    assert ci.mean == 2.0 and ci.n == 3
    assert ci.low == pytest.approx(2 - half, rel=1e-4)
    assert ci.high == pytest.approx(2 + half, rel=1e-4)
    assert ci.contains(2 + half - 1e-3) and not ci.contains(2 + half + 1e-3)


def test_mean_ci_other_confidence():
    ci = mean_ci([2.0, 4.0], confidence=0.90)
    # t(0.95, 1) = 6.3138; sd = sqrt(2); n = 2 -> half = 6.3138
    assert ci.mean == 3.0
    assert ci.high - ci.mean == pytest.approx(6.3138, rel=1e-4)


def test_mean_ci_degenerate_inputs():
    one = mean_ci([5.0])
    assert (one.mean, one.low, one.high, one.n) == (5.0, -math.inf, math.inf, 1)
    assert one.contains(1e9)
    none = mean_ci([])
    assert math.isnan(none.mean) and none.n == 0 and not none.contains(0.0)
    same = mean_ci([2.0, 2.0, 2.0])
    assert (same.low, same.mean, same.high) == (2.0, 2.0, 2.0)


def test_interval_format():
    assert mean_ci([1, 2, 3]).fmt(digits=2) == "2.00 [-0.48, 4.48] (n=3)"
    assert analysis.Interval(0.25, 0.1, 0.4, 3).fmt(pct=True) == "25.0% [10.0, 40.0] (n=3)"
    assert mean_ci([1.0]).fmt() == "1.0 (n=1)"
    assert mean_ci([]).fmt() == "n/a"


# ---------------------------------------------------------------- cost_to_reach, value_at


@pytest.mark.parametrize("target, expected", [
    (2.5, 15.0),  # between (10, 3) and (20, 2)
    (3.0, 10.0),  # exactly on an evaluation
    (1.2, 28.0),
    (1.0, 30.0),  # the last evaluation
    (4.0, 0.0),  # the first evaluation already is there
    (9.0, 0.0),
])
def test_cost_to_reach_interpolates(target, expected):
    c = cost_to_reach(LINE, target)
    assert c == Cost(pytest.approx(expected), False)


def test_cost_to_reach_on_another_axis_and_skipping_missing_values():
    rows = [{"wall_s": 0.0, "heldout_loss": 4.0}, {"wall_s": 1.0, "heldout_loss": None},
            {"wall_s": 2.0, "heldout_loss": 2.0}]
    assert cost_to_reach(rows, 3.0, x="wall_s") == Cost(1.0, False)


def test_cost_to_reach_first_crossing_counts():
    c = cost_to_reach(curve([0, 10, 20, 30], [4.0, 2.0, 3.0, 1.0]), 2.5)
    assert c == Cost(pytest.approx(7.5), False)


def test_not_reached_is_extrapolated_and_flagged():
    c = cost_to_reach(LINE, 0.5)
    # last quarter, at least 3 points: slope -0.1 per FLOP; 0.5 below the last 1.0 -> 5 more
    assert c.extrapolated and c.value == pytest.approx(35.0)
    long = curve(list(range(0, 120, 10)), [10.0 - i for i in range(12)])  # ends at (110, -1)
    c = cost_to_reach(long, -2.0)
    assert c.extrapolated and c.value == pytest.approx(120.0)


def test_non_improving_tail_never_reaches():
    flat = curve([0, 10, 20, 30, 40], [4.0, 2.0, 2.0, 2.0, 2.0])
    assert cost_to_reach(flat, 1.0) == Cost(math.inf, True)
    rising = curve([0, 10, 20, 30, 40], [4.0, 2.0, 2.1, 2.2, 2.3])
    assert cost_to_reach(rising, 1.0) == Cost(math.inf, True)
    assert cost_to_reach(curve([0], [4.0]), 1.0) == Cost(math.inf, False)
    assert cost_to_reach([], 1.0).value == math.inf


def test_flat_tail_at_real_flop_scales_never_reaches():
    step = 578519040  # the FLOPs of 10 smoke gpt steps
    flat = curve([0, step, 2 * step, 3 * step], [9.0, 5.1, 5.1, 5.1])
    assert cost_to_reach(flat, 1.0) == Cost(math.inf, True)


def test_value_at():
    assert value_at(LINE, 15) == pytest.approx(2.5)
    assert value_at(LINE, 0) == 4.0
    assert value_at(LINE, 20) == 2.0
    assert value_at(LINE, 27.5) == pytest.approx(1.25)
    assert value_at(LINE, 30.02) == 1.0  # past the end by less than 0.1%: the end itself
    assert math.isnan(value_at(LINE, 31))
    assert math.isnan(value_at([], 1))


# ---------------------------------------------------------------- ratio_saving, welch


def test_tail_drop_reads_the_last_fifth_of_level_one_flops():
    falling = [{"flops": f, "heldout_loss": 3.0 - f / 100, "level": 1} for f in range(0, 101, 10)]
    assert analysis.tail_drop(falling) == pytest.approx(0.2)
    # coarse-level points (level 2) do not count, even when they are the last ones
    mixed = falling + [{"flops": 120, "heldout_loss": 9.0, "level": 2}]
    assert analysis.tail_drop(mixed) == pytest.approx(0.2)
    rising = [{"flops": f, "heldout_loss": 2.0 + f / 100} for f in range(0, 101, 10)]
    assert analysis.tail_drop(rising) == pytest.approx(-0.2)
    flat = [{"flops": f, "heldout_loss": 2.0} for f in (0, 50, 100)]
    assert analysis.tail_drop(flat) == 0.0
    assert math.isnan(analysis.tail_drop(flat[:1]))


def test_ratio_saving_of_identical_constant_lists_is_exactly_zero():
    s = ratio_saving([5.0, 5.0, 5.0], [5.0, 5.0, 5.0])
    assert (s.mean, s.low, s.high, s.n) == (0.0, 0.0, 0.0, 3)


def test_ratio_saving_of_identical_lists_by_hand():
    s = ratio_saving([1, 2, 3], [1, 2, 3])
    # r = 1; relative variances 1/12 each; Welch df = 4; half = t(0.975, 4) * sqrt(1/6)
    half = T975_4 * math.sqrt(1 / 6)
    assert s.mean == 0.0
    assert s.low == pytest.approx(-half) and s.high == pytest.approx(half)


def test_ratio_saving_halved_costs():
    s = ratio_saving([5.0, 5.0], [10.0, 10.0])
    assert (s.mean, s.low, s.high) == (0.5, 0.5, 0.5)
    s = ratio_saving([4.0, 6.0], [10.0, 10.0])
    assert s.mean == pytest.approx(0.5) and s.low < 0.5 < s.high


def test_ratio_saving_degenerate():
    assert math.isnan(ratio_saving([1.0, math.inf], [1.0, 2.0]).mean)
    assert math.isnan(ratio_saving([], [1.0]).mean)
    one = ratio_saving([1.0], [2.0])
    assert one.mean == 0.5 and one.low == -math.inf and one.high == math.inf


def test_welch_difference_by_hand():
    d = welch_difference([1, 2, 3], [1, 2, 3])
    assert d.mean == 0.0
    # var/n = 1/3 each; df = 4; half = t(0.975, 4) * sqrt(2/3)
    assert d.high == pytest.approx(T975_4 * math.sqrt(2 / 3))
    d = welch_difference([2.0, 2.0], [1.0, 1.0, math.nan])
    assert (d.mean, d.low, d.high, d.n) == (1.0, 1.0, 1.0, 2)


# ---------------------------------------------------------------- compare


def fake_run(arm, seed, rows, status="completed"):
    manifest = {"arm_name": arm, "seed": seed, "scale_name": "smoke", "benchmark": "synthetic"}
    summary = None if status == "running" else {"status": status}
    return Run(Path(f"/runs/{arm}/seed-{seed}"), manifest, summary, rows)


def loss(f, c):
    return 1.0 + c + 3.0 * np.exp(-f / 40.0)


OFFSETS = (0.0, 0.05, 0.1)


def synthetic_runs():
    """Baseline curves over 0..100 FLOPs; the arm's are the same curves compressed 2x in FLOPs
    (the arm's loss at f is the baseline's at 2f), run to the same 100 FLOPs."""
    base, arm = [], []
    for seed, c in enumerate(OFFSETS):
        fb = np.arange(0, 101, 10.0)
        base.append(fake_run("baseline", seed, [
            {"flops": f, "wall_s": f / 10, "heldout_loss": loss(f, c)} for f in fb]))
        fa = np.arange(0, 101, 5.0)
        arm.append(fake_run("fast", seed, [
            {"flops": f, "wall_s": f / 10, "heldout_loss": loss(2 * f, c)} for f in fa]))
    return arm, base


def test_compressed_arm_saves_half_at_a_target_every_run_reaches():
    arm, base = synthetic_runs()
    c = analysis.compare(arm, base, target=2.0)
    # every crossing lies on matching evaluations: arm costs are exactly half the baseline's
    assert c.flops_saving.mean == pytest.approx(0.5, abs=1e-12)
    assert c.wall_saving.mean == pytest.approx(0.5, abs=1e-12)
    assert c.flops_saving.contains(0.5) and c.flops_saving.low > 0.3
    assert c.extrapolated == 0
    costs = [x.value for x in c.arm_cost_flops]
    base_costs = [cost_to_reach(r.curve, 2.0).value for r in base]
    assert costs == pytest.approx([b / 2 for b in base_costs])


def test_compressed_arm_saves_about_half_at_the_default_target():
    arm, base = synthetic_runs()
    c = analysis.compare(arm, base)
    finals = [loss(100.0, x) for x in OFFSETS]
    assert c.target == pytest.approx(np.mean(finals))
    assert c.base_final.mean == pytest.approx(np.mean(finals))
    assert 0.4 < c.flops_saving.mean < 0.6 and c.flops_saving.low > 0
    # at the baseline's budget the arm is ahead: loss(200) - loss(100) for every offset
    gap = 3.0 * (np.exp(-5.0) - np.exp(-2.5))
    assert c.loss_at_equal_flops.mean == pytest.approx(gap)
    assert c.loss_at_equal_flops.high < 0
    assert c.arm == "fast" and c.arm_seeds == [0, 1, 2] and c.base_seeds == [0, 1, 2]


def test_arm_that_cannot_reach_the_target():
    arm, base = synthetic_runs()
    stuck = [fake_run("stuck", r.seed, [{**row, "heldout_loss": 4.0} for row in r.curve])
             for r in arm]
    c = analysis.compare(stuck, base)
    assert all(x == Cost(math.inf, True) for x in c.arm_cost_flops)
    assert math.isnan(c.flops_saving.mean) and not c.flops_saving.contains(0.0)
    assert c.flops_saving.fmt(pct=True) == "n/a"


@pytest.mark.parametrize("status", ["running", "diverged", "failed", "interrupted"])
def test_compare_refuses_incomplete_runs(status):
    arm, base = synthetic_runs()
    bad = fake_run("fast", 9, arm[0].curve, status=status)
    with pytest.raises(ValueError, match=f"seed-9: status '{status}'; only completed runs"):
        analysis.compare(arm + [bad], base)
    with pytest.raises(ValueError, match="only completed runs"):
        analysis.compare(arm, [bad] + base)


def test_compare_needs_runs_on_both_sides():
    arm, base = synthetic_runs()
    with pytest.raises(ValueError, match="at least one completed run on each side"):
        analysis.compare([], base)
    with pytest.raises(ValueError, match="at least one completed run on each side"):
        analysis.compare(arm, [])


def test_baseline_against_itself_on_other_seeds_saves_nothing(gpt_smoke_runs):
    """The null check, on real runs: the smoke gpt baseline on seeds 3-5 against seeds 0-2."""
    base = [gpt_smoke_runs(s) for s in (0, 1, 2)]
    other = [gpt_smoke_runs(s) for s in (3, 4, 5)]
    assert all(r.complete for r in base + other)
    c = analysis.compare(other, base)
    assert c.base_seeds == [0, 1, 2] and c.arm_seeds == [3, 4, 5]
    assert c.target == pytest.approx(np.mean([r.curve[-1]["heldout_loss"] for r in base]))
    assert math.isfinite(c.flops_saving.low) and math.isfinite(c.flops_saving.high)
    assert c.flops_saving.low < c.flops_saving.high
    assert c.flops_saving.contains(0.0), c.flops_saving
    assert c.loss_at_equal_flops.contains(0.0), c.loss_at_equal_flops
    assert abs(c.flops_saving.mean) < 0.25
    back = analysis.compare(base, other)  # and the other way round
    assert back.flops_saving.contains(0.0) and back.loss_at_equal_flops.contains(0.0)
    assert back.loss_at_equal_flops.mean == pytest.approx(-c.loss_at_equal_flops.mean)


def test_a_coarse_level_reaching_the_target_does_not_count():
    rows = [{"flops": f, "heldout_loss": v, "level": lv}
            for f, v, lv in [(0, 5.0, 1), (10, 3.0, 2), (20, 3.5, 1), (30, 2.5, 1)]]
    # the small model (level 2) dips below 3.0 at 10 FLOPs; the target model gets there
    # between 20 and 30
    assert cost_to_reach(rows, 3.0).value == pytest.approx(25.0)
