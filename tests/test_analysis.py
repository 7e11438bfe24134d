"""Savings with confidence intervals: hand-computed values, synthetic arms, and a null check."""

import math
from pathlib import Path

import numpy as np
import pytest

from suite.judge import analysis, power
from suite.judge.analysis import value_at
from suite.judge.intervals import mean_ci, welch_difference
from suite.results import ResultsError, Run

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


# ---------------------------------------------------------------- value_at, tail_drop


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


def test_compressed_arm_saves_exactly_half_paired():
    arm, base = synthetic_runs()
    c = analysis.compare(arm, base)
    finals = [loss(100.0, x) for x in OFFSETS]
    assert c.target == pytest.approx(np.mean(finals)) and c.paired
    # the arm's mean curve reaches the target at f = 50 (on an evaluation); every seed's
    # difference to its own baseline is the same, so the paired interval has no width
    for s in (c.flops_saving, c.wall_saving):
        assert (s.mean, s.low, s.high) == pytest.approx((0.5, 0.5, 0.5), abs=1e-12)
        assert not (s.miss or s.censored or s.extrapolated)
    gap = 3.0 * (np.exp(-5.0) - np.exp(-2.5))  # loss(200) - loss(100), every seed
    assert c.loss_at_equal_flops.mean == pytest.approx(gap) and c.loss_at_equal_flops.high < 0
    assert c.bpb_at_equal_flops is None  # no bits per byte in these curves
    assert c.arm == "fast" and c.arm_seeds == [0, 1, 2] and c.base_seeds == [0, 1, 2]
    assert analysis.verdict(c.flops_saving, 0.25, 0.05, 3, 0.1) == "meets claim"


def test_unpaired_when_the_seeds_differ_welch_by_hand():
    arm, base = synthetic_runs()
    other = [fake_run("fast", r.seed + 3, r.curve) for r in arm]
    c = analysis.compare(other, base)
    assert not c.paired and c.flops_saving.mean == pytest.approx(0.5, abs=1e-12)
    # at f = 50 the arm's seeds differ by the offsets, as do the baseline's finals: Welch with
    # equal variances, df = 4; the band reaches T where the mean is t * se above or below it
    se = math.sqrt(2 * np.var(OFFSETS, ddof=1) / 3)
    half = T975_4 * se
    f_first = -20 * math.log((half / 3) + math.exp(-2.5))  # mean curve - half reaches T
    assert c.flops_saving.high == pytest.approx(1 - f_first / 100, abs=2e-3)
    assert c.flops_saving.low < 0.5 < c.flops_saving.high
    assert saving_cells_pairing(c) == "unpaired (seeds differ)"


def saving_cells_pairing(c):
    from suite.judge.savings import saving_cells
    return saving_cells(c)[0]


def test_paired_interval_by_hand():
    """Two seeds, paired. Target 1.1 (baseline finals 1.0 and 1.2); the arm's mean falls from 3.0
    to 1.0 between 0 and 50 FLOPs, so it reaches 1.1 at 47.5. Per-seed differences at 50 are 0.0
    and -0.2 (se 0.1, t(0.975, 1) = 12.71): the upper band never reaches the target."""
    base = [fake_run("baseline", s, curve([0, 50, 100], [3.0, 2.0, v]))
            for s, v in ((0, 1.0), (1, 1.2))]
    arm = [fake_run("arm", s, curve([0, 50, 100], [3.0, 1.0, 0.5])) for s in (0, 1)]
    s = analysis.compare(arm, base).flops_saving
    assert s.mean == pytest.approx(1 - 47.5 / 100) and s.n == 2 and s.df == 1.0
    assert s.censored and not s.miss and s.high > s.mean
    # delta method: se of the difference (0.1) over |slope| x B, the slope a least-squares line
    # through the crossing evaluation's neighbours (0, 50, 100): -0.025 per FLOP
    assert np.polyfit([0, 50, 100], [3.0, 1.0, 0.5], 1)[0] == pytest.approx(-0.025)
    assert s.se == pytest.approx(0.1 / (0.025 * 100))


def test_arm_that_cannot_reach_the_target_is_a_miss():
    arm, base = synthetic_runs()
    stuck = [fake_run("stuck", r.seed, [{**row, "heldout_loss": 4.0} for row in r.curve])
             for r in arm]
    s = analysis.compare(stuck, base).flops_saving
    assert s.miss and s.censored and s.mean == 0.0 and s.over_budget == 0.0
    assert s.fmt() == "miss: not reached within the baseline's FLOPs (n=3)"
    assert analysis.verdict(s, 0.25, 0.05, 3, 0.1) == "no saving (miss)"


def test_extrapolation_is_bounded_flagged_and_counted():
    """An arm 10% behind the baseline in FLOPs on a straight line: its crossing lies 10% past
    its end, inside the bounded stretch; 20% behind, outside it: a miss."""
    base = [fake_run("baseline", s, curve([0, 50, 100], [3.0 + s, 2.0 + s, 1.0 + s]))
            for s in (0, 1)]

    def slow(k):
        return [fake_run("slow", s, curve([0, 50, 100], [3.0 + s, 3.0 + s - 50 / 50 / k,
                                                         3.0 + s - 2 / k])) for s in (0, 1)]
    near = analysis.compare(slow(1.1), base)
    s = near.flops_saving
    assert not s.miss and s.extrapolated >= 1 and near.extrapolated >= 1
    assert s.mean == pytest.approx(-0.1, abs=1e-9) and "†" in s.fmt()
    far = analysis.compare(slow(1.25), base).flops_saving
    assert far.miss and far.over_budget == pytest.approx(analysis.EXTRAPOLATION)
    assert "not reached within 10% more FLOPs than the baseline" in far.fmt()


def test_a_crossing_is_never_interpolated_across_a_coarse_phase():
    rows = [(0, 5.0, 1), (10, 3.5, 1), (20, 2.0, 2), (30, 2.8, 1), (40, 2.5, 1)]
    arm = [fake_run("vc", s, [{"flops": f, "step": i, "heldout_loss": v + d, "level": lv}
                              for i, (f, v, lv) in enumerate(rows)])
           for s, d in ((0, 0.0), (1, 0.01))]
    base = [fake_run("baseline", s, curve([0, 20, 40], [5.0, 4.0, 3.0 + d]))
            for s, d in ((0, 0.0), (1, 0.01))]
    s = analysis.compare(arm, base).flops_saving
    # the level-1 model does not exist between 10 and 30: the segment that starts at 30 is
    # already below the target 3.005, so the crossing is 30 exactly (not 10 < x < 30, and not
    # the coarse model's dip at 20)
    assert s.mean == pytest.approx(1 - 30 / 40)


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


def test_seeds_that_do_not_share_a_grid_are_refused():
    arm, base = synthetic_runs()
    short = fake_run("fast", 2, arm[2].curve[:-1])
    with pytest.raises(ResultsError, match="seed-2: its evaluations .* differ from those of"):
        analysis.compare(arm[:2] + [short], base)


def test_baseline_against_itself_on_other_seeds_saves_nothing(gpt_smoke_runs):
    """The null check, on real runs: the smoke gpt baseline on seeds 3-5 against seeds 0-2."""
    base = [gpt_smoke_runs(s) for s in (0, 1, 2)]
    other = [gpt_smoke_runs(s) for s in (3, 4, 5)]
    c = analysis.compare(other, base)
    assert c.base_seeds == [0, 1, 2] and c.arm_seeds == [3, 4, 5] and not c.paired
    assert c.target == pytest.approx(np.mean([r.curve[-1]["heldout_loss"] for r in base]))
    s = c.flops_saving
    assert not s.miss and s.high > 0 and (s.censored or s.low < 0), s
    assert c.loss_at_equal_flops.contains(0.0), c.loss_at_equal_flops
    back = analysis.compare(base, other)  # and the other way round
    assert back.loss_at_equal_flops.mean == pytest.approx(-c.loss_at_equal_flops.mean)


# ---------------------------------------------------------------- verdicts


def sv(mean, low, high, n=5, **kw):
    return analysis.Saving(mean, low, high, n, 0.01, 4.0, True, **kw)


@pytest.mark.parametrize("s,claim,expect", [
    (sv(0.30, 0.20, 0.40), 0.25, "meets claim"),
    (sv(0.25, 0.21, 0.29), 0.25, "meets claim"),  # lower end reaches 0.25 - 0.05
    (sv(0.10, 0.05, 0.15), 0.25, "saves, claim excluded"),
    (sv(0.15, 0.05, 0.25), 0.25, "saves, claim not excluded"),
    (sv(0.05, 0.01, 0.09), None, "saves"),
    (sv(-0.2, -0.3, -0.1), 0.25, "no saving"),
    (sv(-0.05, -0.1, 0.0), 0.25, "no saving"),  # upper end at 0
    (sv(0.0, -0.02, 0.03), 0.25, "no saving shown (< 3.0 pt)"),  # holds 0, narrow
    (sv(0.05, -0.1, 0.2), 0.25, "inconclusive"),  # holds 0, wider than 10 pt
    (sv(0.05, -0.01, 0.05, censored=True), None, "inconclusive"),  # censored: -inf
    (sv(0.0, -math.inf, 0.03, miss=True, censored=True), 0.25, "no saving (miss)"),
    (sv(0.30, 0.20, 0.40, n=2), 0.25, "inconclusive (n=2 < 3 seeds)"),
])
def test_verdict_rule(s, claim, expect):
    assert analysis.verdict(s, claim, tolerance=0.05, min_seeds=3, max_interval=0.10) == expect


# ---------------------------------------------------------------- power


def test_seeds_for_by_hand():
    # paired: t(n-1) x 0.01 / sqrt(n) / 0.1 is 0.0514 at n = 17 and 0.0497 at n = 18
    assert analysis._t(16) * 0.01 / math.sqrt(17) / 0.1 == pytest.approx(0.05142, abs=1e-5)
    assert analysis._t(17) * 0.01 / math.sqrt(18) / 0.1 == pytest.approx(0.04973, abs=1e-5)
    assert power.seeds_for(0.01, 0.1, 0.05, paired=True) == 18
    # unpaired, equal noise a side: sqrt(2) x 0.01 / sqrt(n): 0.0501 at 33, 0.0493 at 34
    assert power.seeds_for(0.01, 0.1, 0.05, paired=False, sd_base=0.01) == 34
    assert power.seeds_for(0.01, 0.0, 0.05, paired=True) is None
    assert power.seeds_for(1.0, 0.01, 0.05, paired=True) is None  # beyond MAX_SEEDS


def test_one_seed_is_unpaired_for_its_own_reason():
    """One seed of each (a new user's --seeds 1): the same seed, but a pair of one has no
    spread to test, so the table says why it is unpaired rather than that the seeds differ."""
    base = [fake_run("baseline", 0, curve([0, 50, 100], [3.0, 2.0, 1.0]))]
    arm = [fake_run("vcycle", 0, curve([0, 50, 100], [3.0, 1.5, 0.9]))]
    c = analysis.compare(arm, base)
    assert c.paired is False and c.flops_saving.n == 1
    assert saving_cells_pairing(c) == "unpaired (one seed)"


def test_power_needs_two_seeds_a_side():
    """One seed has no spread: the report says so in words (report.power_rows) and never asks."""
    x = np.arange(3.0)
    one = analysis.Grid(x, np.ones((1, 3)), np.zeros(3), (0,), np.array([2.0]))
    two = analysis.Grid(x, np.ones((2, 3)), np.zeros(3), (0, 1), np.array([2.0, 2.0]))
    with pytest.raises(ValueError, match=r"^power needs two seeds or more a side, got 1 and 2$"):
        power.power(None, one, two)
    with pytest.raises(ValueError, match=r"^baseline against itself needs two seeds or more, "
                                         r"got 1$"):
        power.baseline_power(one)
