"""The matched-budget check (suite/judge/analysis.py, "Matched budget"), the sweep table, and
the headline's tuning and matched columns, on synthetic runs with known answers."""

import math
from pathlib import Path

import numpy as np
import pytest

from suite.judge import analysis, matched, report, savings, sweeps
from suite.judge.claims import Claim
from suite.results import Run
from suite.spec import GateSpec

SEEDS = range(5)


def run(arm, seed, f_end, fn, tuning=None, options=None):
    fs = np.linspace(0, f_end, 11)
    rows = [{"step": i, "flops": float(f), "wall_s": float(f) / 10, "level": 1,
             "heldout_loss": float(fn(f, seed))} for i, f in enumerate(fs)]
    manifest = {"arm_name": arm, "seed": seed, "scale_name": "tiny", "benchmark": "syn",
                "method": {"options": options or {}}}
    if tuning:
        manifest["tuning"] = tuning
    return Run(Path(f"/runs/{arm}/seed-{seed}"), manifest, {"status": "completed"}, rows)


def base_loss(f, seed, end=100.0):
    """A schedule-aware baseline: its loss depends on the fraction of its own budget spent, so
    one trained to 70 ends where the full one is only at 100 - what a decayed schedule does."""
    return 2.0 + 0.01 * seed + 1.0 * (1 - f / end)


def fast_loss(f, seed):  # reaches the full baseline's final value (2.0 + ...) at f = 60
    return 2.0 + 0.01 * seed + 1.0 * (1 - f / 60.0) + 0.002 * (seed % 2)


def test_the_fraction_is_the_smallest_declared_one_at_or_above_the_cost():
    fr = (0.5, 0.6, 0.7, 0.8, 0.9)
    assert matched.matched_fraction(0.35, fr) == 0.7  # C / B = 0.65
    assert matched.matched_fraction(0.4, fr) == 0.6  # exactly on one
    assert matched.matched_fraction(0.6, fr) == 0.5  # below every fraction: the smallest
    assert matched.matched_fraction(0.05, fr) == 1.0  # above every one: the baseline itself
    assert matched.matched_arm(0.7) == "baseline@budget=0.7"
    assert matched.matched_arm(1.0) == "baseline"


def arms_with(matched_fn):
    arms = {"baseline": [run("baseline", s, 100, base_loss) for s in SEEDS],
            "fast": [run("fast", s, 100, fast_loss,
                         tuning={"status": "tuned", "values": {"lr": 0.002}}) for s in SEEDS]}
    if matched_fn:
        arms["baseline@budget=0.7"] = [run("baseline@budget=0.7", s, 70, matched_fn)
                                       for s in SEEDS]
    return arms


def rows_of(arms):
    rows, _ = savings.comparison("syn", arms, [], GateSpec(min_seeds=3), "tiny")
    return {r[0]: dict(zip(savings.HEADERS, r, strict=True)) for r in rows}


def test_a_saving_that_a_baseline_given_its_flops_also_has_is_no_saving():
    # the baseline trained to 70, its schedule ending there, ends 0.5 below the full one's
    # final value: lower than the arm at 70 (which is 1/6 below that value)
    rows = rows_of(arms_with(lambda f, s: base_loss(f, s, end=70.0) - 0.5))
    assert rows["fast"]["verdict"] == "no saving against a matched baseline"
    assert rows["fast"]["baseline given the arm's FLOPs: final value vs target"].startswith(
        "baseline@budget=0.7: 1.5200")
    assert "baseline@budget=0.7" not in rows  # read by the check, no row of its own


def test_a_saving_that_beats_the_matched_baseline_stands():
    rows = rows_of(arms_with(lambda f, s: base_loss(f, s, end=70.0) + 0.3))
    assert rows["fast"]["verdict"] == "saves"
    assert rows["fast"]["tuning"] == "lr=0.002" and rows["baseline"]["tuning"] == "untuned"
    m = matched.check(arms_with(None)["fast"], [run("b", s, 70, lambda f, s: 2.5) for s in SEEDS],
                      0.7, 100.0, 2.0)
    at = [fast_loss(70, s) for s in SEEDS]
    assert m.n == 5 and m.arm_at.mean == pytest.approx(np.mean(at))
    assert m.difference.mean == pytest.approx(np.mean(at) - 2.5)
    assert m.better and m.upper < 0


def test_without_the_matched_runs_a_saving_is_unchecked_and_says_what_to_run():
    rows = rows_of(arms_with(None))
    assert rows["fast"]["verdict"] == \
        "saves (unchecked: baseline@budget=0.7 on 0 of the arm's seeds, 5 needed)"
    assert rows["fast"]["baseline given the arm's FLOPs: final value vs target"] == \
        "not run: python -m suite run syn --scale tiny --arms baseline@budget=0.7 --seeds 5 " \
        "--out results"


def test_fewer_than_five_shared_seeds_is_unchecked():
    arms = arms_with(lambda f, s: base_loss(f, s, end=70.0) + 0.3)
    arms["baseline@budget=0.7"] = arms["baseline@budget=0.7"][:4]
    assert rows_of(arms)["fast"]["verdict"] == \
        "saves (unchecked: baseline@budget=0.7 on 4 of the arm's seeds, 5 needed)"


def test_a_verdict_that_is_no_saving_is_not_checked():
    assert matched.verdict("no saving", None, 0.7) == "no saving"
    assert matched.verdict("inconclusive", None, 0.7) == "inconclusive"


def test_a_sweep_is_found_by_its_variants_names_with_the_parent_at_its_own_value():
    arms = arms_with(None)
    arms["fast"] = [run("fast", s, 100, fast_loss, options={"alpha": 0.25}) for s in SEEDS]

    arms["fast@alpha=0.5"] = [run("fast@alpha=0.5", s, 100, base_loss) for s in SEEDS]
    found, _ = savings.savings("syn", arms)
    assert sweeps.sweeps_of(found) == {}  # one variant is a run by name, not a sweep
    arms["fast@alpha=0.75"] = [run("fast@alpha=0.75", s, 100, base_loss) for s in SEEDS]
    found, _ = savings.savings("syn", arms)
    sw = sweeps.sweeps_of(found)
    assert list(sw) == [("fast", "alpha")]
    assert [(v, a.arm) for v, a in sw[("fast", "alpha")]] == [
        (0.25, "fast"), (0.5, "fast@alpha=0.5"), (0.75, "fast@alpha=0.75")]
    rows = sweeps.rows(sw, savings.tuning_of)
    assert [r[1] for r in rows] == ["0.25", "0.5", "0.75"] and rows[0][5].startswith("40.0%")
    assert rows[1][6].startswith("2.0200")  # base_loss at its end, mean over seeds
    assert savings.is_matched_baseline("baseline@budget=0.7")
    assert not savings.is_matched_baseline("baseline@lr=0.002")  # a baseline lr sweep's


def test_a_budget_ladder_reads_the_whole_budget_from_the_arm_itself():
    """budget 1.0 is the arm itself (protocol.runs_as), whose manifest records no budget: the
    table's 1.0 row is the arm's own runs, as a tuned value's row is."""
    arms = arms_with(None)
    arms["fast"] = [run("fast", s, 100, fast_loss, options={"alpha": 0.25}) for s in SEEDS]
    for v in ("0.5", "0.7"):
        arms[f"fast@budget={v}"] = [run(f"fast@budget={v}", s, 100, base_loss) for s in SEEDS]
    found, _ = savings.savings("syn", arms)
    assert [(v, a.arm) for v, a in sweeps.sweeps_of(found)[("fast", "budget")]] == [
        (0.5, "fast@budget=0.5"), (0.7, "fast@budget=0.7"), (1.0, "fast")]


def test_a_sweep_of_misses_is_drawn_as_misses_not_as_an_empty_panel(tmp_path, monkeypatch):
    """gpt's alpha sweep at tiny missed at every value: the saving panel said nothing at all.
    Each missed value is marked "miss", and a panel of misses only says so."""
    import matplotlib.pyplot as plt

    arms = arms_with(None)
    never = [run("fast", s, 100, lambda f, s: base_loss(f, s) + 1.0, options={"alpha": 0.25})
             for s in SEEDS]
    arms["fast"] = never
    for v in ("0.5", "0.75"):
        arms[f"fast@alpha={v}"] = [run(f"fast@alpha={v}", s, 100,
                                       lambda f, s: base_loss(f, s) + 1.0) for s in SEEDS]
    found, _ = savings.savings("syn", arms)
    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)
    assert sweeps.plot("syn", sweeps.sweeps_of(found), tmp_path) == ["syn-sweep-fast-alpha.png"]
    left = drawn[0].axes[0]
    assert [t.get_text() for t in left.texts].count("miss") == 3
    assert "every point a miss" in " ".join(t.get_text() for t in left.texts)
    assert (tmp_path / "syn-sweep-fast-alpha.png").stat().st_size > 10_000


def test_the_headline_shows_tuning_matched_and_the_untuned_verdict_it_replaced(tmp_path,
                                                                               monkeypatch):
    tuned = arms_with(lambda f, s: base_loss(f, s, end=70.0) + 0.3)
    untuned = arms_with(None)
    untuned["fast"] = [run("fast", s, 100, lambda f, s: base_loss(f, s) + 0.1) for s in SEEDS]

    def groups(root):
        return {"syn": untuned if "untuned" in str(root) else tuned}

    monkeypatch.setattr(report, "group_runs", groups)
    (tmp_path / "untuned" / "tiny").mkdir(parents=True)
    claim = Claim("c1", "p", "s", "m", 2, "flops_saved", 0.3, "q", "qs", "h", "syn", "fast")
    text = report.headline(tmp_path / "tiny", [claim], {"syn": GateSpec(min_seeds=3)}, "tiny")
    header, _, row = text.splitlines()[:3]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:4] == ["syn", "fast", "lr=0.002", "held-out loss"]
    assert cells[6].startswith("baseline@budget=0.7: ") and "vs target 2.0200" in cells[6]
    assert cells[7].startswith("saves") or cells[7].startswith("meets claim")
    assert "untuned results it replaced" in header
    assert cells[8].startswith("miss") and ": no saving (miss)" in cells[8]
    assert math.isfinite(float(cells[4].split("%")[0]))


def test_which_savings_survived_is_read_off_the_two_verdicts():
    def row(verdict):
        return ["-"] * 13 + [verdict]

    key = [("b", a, "held-out loss") for a in ("kept", "lost", "new", "never", "other")]
    new = {key[0]: row("saves"), key[1]: row("no saving against a matched baseline"),
           key[2]: row("meets claim (not the paper's setting)"), key[3]: row("no saving (miss)"),
           key[4]: row("saves")}
    old = {key[0]: row("saves (unchecked: baseline@budget=0.8 on 0 of the arm's seeds, 5 "
                       "needed)"), key[1]: row("meets claim"), key[2]: row("inconclusive"),
           key[3]: row("no saving")}
    assert report.survival(new, old) == [
        "- **survived**: b/kept (held-out loss)",
        "- **disappeared**: b/lost (held-out loss): meets claim -> no saving against a matched "
        "baseline",
        "- **appeared**: b/new (held-out loss): inconclusive -> meets claim (not the paper's "
        "setting)",
        "- **no saving before or after**: b/never (held-out loss)",
        "- **not re-made on the tuned protocol**: b/other (held-out loss)"]
    assert report.survival({}, old) == [
        "- no tuned verdict to compare: no benchmark here has a [gate] rule"]
    assert [analysis.is_saving(v) for v in ("saves, claim excluded", "meets claim (unchecked)",
                                            "no saving", "inconclusive", "claim excluded")] \
        == [True, True, False, False, False]


def test_run_matched_trains_the_baselines_the_verdicts_need():
    arms = arms_with(None)
    assert savings.matched_needed("syn", arms, [], GateSpec(min_seeds=3)) == [
        "baseline@budget=0.7"]
    arms["fast"] = [run("fast", s, 100, lambda f, s: base_loss(f, s) + 0.1) for s in SEEDS]
    assert savings.matched_needed("syn", arms, [], GateSpec(min_seeds=3)) == []  # no saving


def test_run_matched_without_runs_says_so(tmp_path, capsys):
    from suite.cli import main

    assert main(["run", "gpt", "--scale", "smoke", "--matched", "--out", str(tmp_path),
                 "--dry-run"]) == 2
    assert f"--matched: no runs of gpt in {tmp_path / 'smoke'}" in capsys.readouterr().err
    assert main(["run", "gpt", "--scale", "smoke", "--matched", "--arms", "baseline",
                 "--dry-run"]) == 2
    assert "--arms: given with --matched" in capsys.readouterr().err
