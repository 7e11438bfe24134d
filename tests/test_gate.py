"""Verdicts, the one-sided regression test, the gate and the report on real smoke runs."""

import json
import math
import re
import shutil

import pytest

from suite import analysis
from suite.analysis import Interval, fell_below, verdict
from suite.claims import ClaimsError, load_claims
from suite.cli import main
from suite.registry import load_benchmarks
from suite.report import write_report
from suite.results import ResultsError, read_run, run_dir
from suite.runner import run_one

RULE = dict(tolerance=0.1, min_seeds=3, max_interval=1.0)


@pytest.mark.parametrize("iv,claim,expect", [
    (Interval(0.30, 0.20, 0.40, 3), 0.25, "meets claim"),
    (Interval(0.10, 0.05, 0.16, 3), 0.25, "meets claim"),  # reaches 0.25 - 0.10
    (Interval(0.10, 0.05, 0.12, 3), 0.25, "below claim"),
    # holds both 0 and the claim: a saving no different from none cannot meet a claim
    (Interval(0.18, -0.02, 0.38, 3), 0.19, "inconclusive"),
    (Interval(0.02, -0.05, 0.09, 3), 0.25, "below claim"),  # whole interval below claim - tol
    (Interval(-0.2, -0.3, -0.1, 3), 0.25, "no saving"),
    (Interval(0.30, 0.20, 0.40, 2), 0.25, "inconclusive"),  # too few seeds
    (Interval(0.30, -0.9, 1.5, 3), 0.25, "inconclusive"),  # interval too wide
    (Interval(math.nan, math.nan, math.nan, 3), 0.25, "inconclusive"),  # never reached
    (Interval(0.05, 0.01, 0.09, 3), None, "saves (no claim)"),  # no claim: above 0
    (Interval(0.05, -0.01, 0.09, 3), None, "inconclusive"),
])
def test_verdict_rule(iv, claim, expect):
    assert verdict(iv, claim, **RULE) == expect


def test_one_sided_regression_test():
    ref = Interval(0.30, 0.25, 0.35, 3)
    assert not fell_below(ref, ref, 0.0)  # identical: never a regression
    assert not fell_below(Interval(0.25, 0.20, 0.30, 3), ref, 0.10)  # within tolerance
    assert fell_below(Interval(0.05, 0.00, 0.10, 3), ref, 0.10)  # clearly worse
    assert not fell_below(Interval(0.05, -0.9, 1.0, 3), ref, 0.10)  # too uncertain to say
    # lower is better for a loss gap: a rise beyond the tolerance is the regression
    gap = Interval(0.0, -0.01, 0.01, 3)
    assert fell_below(Interval(0.2, 0.19, 0.21, 3), gap, 0.05, higher_is_better=False)
    assert not fell_below(Interval(0.02, 0.01, 0.03, 3), gap, 0.05, higher_is_better=False)


@pytest.fixture(scope="module")
def smoke_reference(tmp_path_factory):
    """gpt smoke: baseline and vcycle, 3 seeds, as a committed reference would be."""
    root = tmp_path_factory.mktemp("reference")
    bench = load_benchmarks()["gpt"]
    for arm in ("baseline", "vcycle"):
        for seed in range(3):
            run_one(bench, "smoke", arm, seed, root, threads=1, progress=False)
    return root


def _copy(src, tmp_path):
    dst = tmp_path / "fresh"
    shutil.copytree(src, dst)
    return dst


def test_gate_passes_on_identical_runs(smoke_reference, tmp_path, capsys):
    fresh = _copy(smoke_reference, tmp_path)
    assert main(["gate", "--fresh", str(fresh), "--reference", str(smoke_reference),
                 "--scale", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "gate: pass" in out and "FAIL" not in out
    assert re.search(r"\| gpt +\| vcycle +\| FLOPs saved to target .*\| pass", out)


def test_gate_fails_on_a_missing_or_diverged_run(smoke_reference, tmp_path, capsys):
    fresh = _copy(smoke_reference, tmp_path)
    shutil.rmtree(run_dir(fresh, "smoke", "gpt", "vcycle", 2))
    summary = run_dir(fresh, "smoke", "gpt", "baseline", 1) / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "status": "diverged"}))
    assert main(["gate", "--fresh", str(fresh), "--reference", str(smoke_reference),
                 "--scale", "smoke"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"\| gpt +\| vcycle +\| seed 2 ran +\| completed +\| missing", out)
    assert re.search(r"\| gpt +\| baseline +\| seed 1 ran +\| completed +\| diverged", out)
    assert "gate: FAIL" in out


def test_gate_fails_when_the_arm_got_worse(smoke_reference, tmp_path, capsys):
    """A worse implementation, simulated: every fresh vcycle evaluation 0.3 nats higher."""
    fresh = _copy(smoke_reference, tmp_path)
    for seed in range(3):
        curve = run_dir(fresh, "smoke", "gpt", "vcycle", seed) / "curve.jsonl"
        rows = [json.loads(x) for x in curve.read_text().splitlines()]
        curve.write_text("".join(json.dumps({**r, "heldout_loss": r["heldout_loss"] + 0.3})
                                 + "\n" for r in rows))
    assert main(["gate", "--fresh", str(fresh), "--reference", str(smoke_reference),
                 "--scale", "smoke"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"\| vcycle +\| held-out loss at equal FLOPs .*\| FAIL", out)


def test_gate_exit_2_on_unusable_input(smoke_reference, tmp_path, capsys):
    (tmp_path / "smoke").mkdir()
    assert main(["gate", "--fresh", str(tmp_path), "--reference", str(smoke_reference),
                 "--scale", "smoke"]) == 2
    assert "no fresh runs" in capsys.readouterr().err
    fresh = _copy(smoke_reference, tmp_path)
    (run_dir(fresh, "smoke", "gpt", "vcycle", 0) / "manifest.json").write_text("{broken")
    assert main(["gate", "--fresh", str(fresh), "--reference", str(smoke_reference),
                 "--scale", "smoke"]) == 2
    assert "manifest.json: not valid JSON" in capsys.readouterr().err


def test_report_tables_claims_and_plots(smoke_reference, tmp_path):
    root = _copy(smoke_reference, tmp_path) / "smoke"
    rules = {n: b.gate for n, b in load_benchmarks().items()}
    claims = load_claims()
    text = write_report(root, claims, rules, "smoke").read_text()
    assert "**This is the smoke scale, not the papers' setting.**" in text
    gpt_flops = next(c for c in claims if c.id == "zou-gpt-base-flops").value
    assert f"FLOPs {gpt_flops:.1%}" in text  # the claim comes from reference/claims.toml
    assert "(not the paper's setting)" in text
    for png in ("gpt-flops.png", "gpt-wall.png"):
        assert f"![{png}]({png})" in text and (root / png).stat().st_size > 10_000
    runs = [read_run(run_dir(root.parent, "smoke", "gpt", "vcycle", s)) for s in range(3)]
    base = [read_run(run_dir(root.parent, "smoke", "gpt", "baseline", s)) for s in range(3)]
    saving = analysis.compare(runs, base).flops_saving
    assert saving.fmt(pct=True) in text  # the table shows what the analysis computes
    assert "| vcycle   | decoalesce+interpolate |" in text  # the per-operator breakdown
    # the runs table: the fall of held-out loss over the last 20% is the analysis' own figure
    fall = analysis.mean_ci([analysis.tail_drop(r.curve) for r in base]).fmt(digits=4)
    assert re.search(rf"\| baseline +\| 0,1,2 +\| 3/3 +\| +[0-9.]+ \| [^|]+\| {re.escape(fall)} ",
                     text)
    assert "Speed of the baseline's training step" not in text


def test_report_shows_recorded_step_speed(smoke_reference, tmp_path):
    root = _copy(smoke_reference, tmp_path) / "smoke"
    rec = {"benchmark": "gpt", "precision": "bf16", "compile": True, "step_ms": 12.5,
           "throughput_per_s": 1.31e6, "unit": "tokens", "achieved_flops_per_s": 2.5e14,
           "mfu": 0.2528, "environment": {"device_name": "NVIDIA H100 80GB HBM3",
                                          "git": {"commit": "0123456789abcdef"}}}
    (root.parent / "throughput").mkdir()
    (root.parent / "throughput" / "gpt-smoke-compiled-h100.json").write_text(json.dumps(rec))
    (root.parent / "throughput" / "gpt-tiny-compiled-h100.json").write_text("{}")  # other scale
    rules = {n: b.gate for n, b in load_benchmarks().items()}
    text = write_report(root, load_claims(), rules, "smoke").read_text()
    assert ("| gpt         | NVIDIA H100 80GB HBM3 | bf16        | yes        |        12.5 | "
            "1.31e+06 tokens/s |       250 | 25.3% | 0123456789 |") in text
    (root.parent / "throughput" / "gpt-smoke-eager-h100.json").write_text('{"benchmark": 1}')
    with pytest.raises(ResultsError, match=r"gpt-smoke-eager-h100\.json: not a throughput record"):
        write_report(root, load_claims(), rules, "smoke")


def test_claims_file_errors(tmp_path):
    bad = tmp_path / "claims.toml"
    bad.write_text('[[claim]]\nid = "x"\nmetric = "speed"\n')
    with pytest.raises(ClaimsError, match=r"claim\[0\]: missing key"):
        load_claims(bad)
    assert all(0 < c.value < 1 for c in load_claims())
    assert {c.benchmark for c in load_claims()} == {"bert", "gpt", "deit", "bert-large", "ode"}
