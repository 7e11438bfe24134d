"""The estimator's coverage and bias, baseline against baseline, and the gate's error rates, by
simulation from the committed tiny curves (suite/judge/simulate.py says how the draws are made).
Seeds: each benchmark's tiny `seeds`, the ones its reference runs use."""

import math
import zlib
from pathlib import Path

import numpy as np
import pytest

from suite.judge import simulate
from suite.judge.savings import group_runs, is_matched_baseline
from suite.registry import load_benchmarks

TINY = Path(__file__).resolve().parent.parent / "results" / "tiny"
DRAWS = 300


def rng_of(seed: int, bench: str, arm: str) -> np.random.Generator:
    """Draws of their own per arm: re-made curves of one benchmark move no other's figures."""
    return np.random.default_rng([seed, zlib.crc32(f"{bench}/{arm}".encode())])


@pytest.fixture(scope="module")
def committed():
    groups = group_runs(TINY)
    benches = load_benchmarks()
    out = {}
    for bench, arms in groups.items():
        base = [r for r in arms["baseline"] if r.complete]
        for arm, rs in arms.items():
            if is_matched_baseline(arm):  # the matched-budget check's control: no saving
                continue
            ok = [r for r in rs if r.complete]
            if arm != "baseline" and len(ok) > 1 and len(base) > 1:
                out[(bench, arm)] = (simulate.model(ok, base), benches[bench].scale("tiny"))
        out[(bench, "baseline")] = (simulate.baseline_model(base), benches[bench].scale("tiny"))
    return out


def unresolved_at_tiny() -> set[str]:
    """Benchmarks whose [gate] declares that their tiny seeds cannot resolve +-5 pt (the power
    analysis, decided before their runs)."""
    return {n for n, b in load_benchmarks().items() if "tiny" in b.gate.unresolved_at}


def test_coverage_and_bias_at_the_declared_seeds(committed):
    hits = total = 0
    for (bench, arm), (m, scale) in committed.items():
        if arm == "baseline" or not math.isfinite(m.truth()):
            continue  # a true miss has no saving to cover
        c = simulate.coverage(m, scale.seeds, DRAWS, rng_of(12, bench, arm))
        hits += round(c.coverage * DRAWS)
        total += DRAWS
        assert 0.90 <= c.coverage <= 0.995, (bench, arm, c)  # per arm: 300 draws, +-2.5 pt
        assert abs(c.bias) <= 0.02, (bench, arm, c)  # points of saving
    assert total >= 5 * DRAWS
    assert 0.93 <= hits / total <= 0.97, hits / total  # pooled: the 95% interval's promise


# gpt and bert, re-made on their tuned values (issue 23; results/tuning/tiny): each baseline at
# its chosen lr is bimodal over the reported seeds (gpt at 8e-3: 4 of 11 end far above the rest;
# bert at 2e-3: 13 of 26 stall near 3.29 nats), far noisier per seed than the untuned curves their
# seeds were planned on (results/power-tiny.md); the 2 pilot seeds of each chosen trial did not
# show it
GPT_TUNED = pytest.mark.xfail(strict=True, reason="re-made on its tuned values, gpt's baseline "
                              "is bimodal over its declared seeds: results/tiny/SIMULATION.md")
BERT_TUNED = pytest.mark.xfail(strict=True, reason="re-made on its tuned values, bert's baseline "
                               "is bimodal over its declared seeds: results/tiny/SIMULATION.md")


@pytest.mark.parametrize("bench", [pytest.param("gpt", marks=GPT_TUNED),
                                   pytest.param("bert", marks=BERT_TUNED)])
def test_baseline_against_baseline_is_narrow_around_zero(committed, bench):
    """Other seeds of the baseline, unpaired, at the declared seeds: the interval holds 0 and
    its median half-width is under 5 pt. (Benchmarks whose baseline ends flat, ode and deit,
    cannot say this at tiny: `python -m suite power` shows it.)"""
    m, scale = committed[(bench, "baseline")]
    c = simulate.coverage(m, scale.seeds, DRAWS, np.random.default_rng(3))
    assert c.truth == 0.0
    assert c.coverage >= 0.93 and c.median_width / 2 < 0.05, c
    assert abs(c.bias) < 0.01


def _finite_arms(committed, bench=None):
    return [(b, arm, m, scale) for (b, arm), (m, scale) in committed.items()
            if arm != "baseline" and math.isfinite(m.truth()) and bench in (None, b)]


FALSE_FAIL = [pytest.param("gpt", marks=GPT_TUNED), "bert", "llama", "ode", "bert-large", "deit"]


def test_matched_baselines_are_committed_and_never_simulated_as_arms(committed):
    """llama's re-made results hold baseline@budget=0.8 and 0.9 (the matched-budget check's
    controls); as arms they would read as misses of their own and fill the tables."""
    held = {a for arms in group_runs(TINY).values() for a in arms if is_matched_baseline(a)}
    assert {"baseline@budget=0.8", "baseline@budget=0.9"} <= held, held
    assert not [k for k in committed if is_matched_baseline(k[1])]


def test_every_benchmark_has_its_false_fail_check():
    names = {p if isinstance(p, str) else p.values[0] for p in FALSE_FAIL}
    assert names == set(load_benchmarks())


@pytest.mark.parametrize("bench", FALSE_FAIL)
def test_gate_false_fail_rate(committed, bench):
    """With no regression at most 1% of checks FAIL, on every arm whose true saving is finite
    but those of the benchmarks whose [gate] declares them unresolved at tiny (their rates are
    in results/tiny/SIMULATION.md)."""
    unresolved = unresolved_at_tiny()
    assert unresolved <= {"bert-large", "deit"}, unresolved  # the power analysis' two capped
    arms = _finite_arms(committed, bench)
    assert arms or bench in unresolved, bench  # a benchmark with nothing to check is no pass
    for b, arm, m, scale in arms:
        false_fail = simulate.gate_fail_rate(m, scale.seeds, 0.0, 0.05, 200, rng_of(7, b, arm))
        assert bench in unresolved or false_fail <= 0.01, (bench, arm, false_fail)


def test_gate_detection(committed):
    """Where the declared seeds resolve the saving (median half-width <= 5 pt), a saving that
    fell by 20 pt is caught at least 80% of the time. (bert-large and deit are capped below
    that: their definitions and the report say so.)"""
    resolved = 0
    for bench, arm, m, scale in _finite_arms(committed):
        n, rng = scale.seeds, rng_of(7, bench, arm)
        simulate.gate_fail_rate(m, n, 0.0, 0.05, 200, rng)  # the draws the rates above used
        if simulate.coverage(m, n, 100, rng).median_width <= 0.10:
            resolved += 1
            assert simulate.gate_fail_rate(m, n, 0.20, 0.05, 100, rng) >= 0.80, (bench, arm)
    assert resolved >= 5


def test_simulated_seed_keeps_the_committed_covariance(committed):
    m, _ = committed[("gpt", "baseline")]
    a, _ = m.draw(4000, np.random.default_rng(0))
    want = np.cov(m.arm.y, rowvar=False)
    got = np.cov(a.y, rowvar=False)
    assert np.allclose(got, want, rtol=0.1, atol=0.05 * np.abs(want).max())


def test_a_rate_over_no_draw_is_refused(committed):
    """An empty collection never reads as a rate (or a pass): zero draws is an error."""
    m, scale = committed[("gpt", "baseline")]
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="draws must be at least 1, got 0"):
        simulate.coverage(m, scale.seeds, 0, rng)
    with pytest.raises(ValueError, match="draws must be at least 1, got 0"):
        simulate.gate_fail_rate(m, scale.seeds, 0.0, 0.05, 0, rng)
