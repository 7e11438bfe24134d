"""Verdicts, the one-sided regression test, the gate and the report on real smoke runs."""

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from suite.cli import main
from suite.judge import analysis
from suite.judge.claims import ClaimsError, load_claims
from suite.judge.gate import fell_below, rose_above
from suite.judge.report import write_report
from suite.registry import load_benchmarks
from suite.results import ResultsError, read_run, run_dir
from suite.run.executor import RunOptions, run_one


def sv(mean, se, df=4.0):
    return analysis.Saving(mean, mean - 2 * se, mean + 2 * se, 5, se, df, True)


def test_one_sided_regression_test_by_hand():
    ref = sv(0.30, 0.02)
    assert fell_below(ref, ref, 0.0) is False  # identical: never a regression
    assert fell_below(sv(0.27, 0.02), ref, 0.05) is False  # within tolerance
    # fell by 0.15 with tolerance 0.05: t = -0.10 / sqrt(2 x 0.02^2) = -3.54; Welch df 8
    assert fell_below(sv(0.15, 0.02), ref, 0.05) is True
    # fell by 0.10: t = -0.05 / 0.0283 = -1.77 > -t(0.95, 8) = -1.86: not significant
    assert fell_below(sv(0.20, 0.02), ref, 0.05) is False
    assert fell_below(sv(0.05, math.inf), ref, 0.05) is None  # no test possible
    assert fell_below(sv(0.20, 0.0), sv(0.30, 0.0), 0.05) is True  # exact: the margin decides


def miss(bound):
    """A fresh arm that never reaches the target: its mean is an upper bound, se not finite."""
    return analysis.Saving(bound, -math.inf, bound, 5, math.inf, math.nan, True, miss=True)


def test_a_miss_is_tested_at_its_bound():
    ref = sv(0.30, 0.02)  # df 4: t(0.95, 4) = 2.132
    # even the bound fell by 0.20 with tolerance 0.05: t = -0.15 / 0.02 = -7.5
    assert fell_below(miss(0.10), ref, 0.05) is True
    # the bound fell by 0.08: t = -0.03 / 0.02 = -1.5 > -2.132: the miss may be noise
    assert fell_below(miss(0.22), ref, 0.05) is False
    assert fell_below(miss(0.27), ref, 0.05) is False  # within tolerance
    # against the baseline's exact zero: the margin decides
    assert fell_below(miss(-0.10), sv(0.0, 0.0), 0.05) is True
    assert fell_below(miss(0.0), sv(0.0, 0.0), 0.05) is False
    assert fell_below(miss(0.10), miss(0.30), 0.05) is None  # both misses: no test possible
    # a reference miss: a point at its bound against the fresh runs' noise (df 4)
    assert fell_below(sv(0.10, 0.02), miss(0.30), 0.05) is True  # t = -0.15 / 0.02 = -7.5
    assert fell_below(sv(0.22, 0.02), miss(0.30), 0.05) is False  # t = -1.5 > -2.132


def test_loss_rise_test_by_hand():
    # paired: differences 0.02, 0.03, 0.025 (mean 0.025, se 0.00289); tolerance 0.01:
    # t = 5.2 > t(0.95, 2) = 2.92
    assert rose_above([1.02, 1.03, 1.025], [1.0, 1.0, 1.0], 0.01, paired=True)
    assert not rose_above([1.005, 1.006, 1.004], [1.0, 1.0, 1.0], 0.01, paired=True)
    assert rose_above([math.nan] * 3, [1.0] * 3, 0.01, paired=True)  # nothing to compare


@pytest.fixture(scope="module")
def smoke_reference(tmp_path_factory):
    """gpt smoke: baseline and vcycle, 3 seeds, as a committed reference would be."""
    root = tmp_path_factory.mktemp("reference")
    bench = load_benchmarks()["gpt"]
    for arm in ("baseline", "vcycle"):
        for seed in range(3):
            run_one(bench, "smoke", arm, seed, root, RunOptions(threads=1, progress=False))
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
    assert re.search(r"\| gpt +\| vcycle +\| exact +\| seeds 0,1,2 .*numerics unchanged", out)
    assert "statistical" not in out  # identical numerics need nothing more


def test_gate_exact_tier_names_the_first_difference(smoke_reference, tmp_path, capsys):
    fresh = _copy(smoke_reference, tmp_path)
    curve = run_dir(fresh, "smoke", "gpt", "vcycle", 1) / "curve.jsonl"
    rows = [json.loads(x) for x in curve.read_text().splitlines()]
    rows[2]["heldout_loss"] += 1e-3
    curve.write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(["gate", "--fresh", str(fresh), "--reference", str(smoke_reference), "--scale", "smoke"])
    out = capsys.readouterr().out
    assert re.search(r"seed 1: first difference at evaluation 3 \(step \d+\): heldout_loss "
                     r"[0-9.]+ against [0-9.]+ \(\+0\.001\)", out), out
    assert re.search(r"\| vcycle +\| statistical +\| FLOPs saved to target", out)


def test_a_statistical_check_it_could_not_test_is_never_a_pass(smoke_reference, tmp_path,
                                                               capsys):
    """One seed a side (--seeds 0 limits both the reference and the fresh runs): a saving with
    no finite standard error cannot be tested, so the gate exits 2 naming it, not 'pass'."""
    fresh = _copy(smoke_reference, tmp_path)
    for path in fresh.rglob("curve.jsonl"):  # another CPU: every loss a little off
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        for r in rows:
            r["heldout_loss"] += 1e-4
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["gate", "--fresh", str(fresh), "--reference", str(smoke_reference),
                 "--scale", "smoke", "--seeds", "0"]) == 2
    captured = capsys.readouterr()
    assert re.search(r"\| vcycle +\| statistical +\| FLOPs saved to target .*\| not compared "
                     r"\(no test: se not finite\)", captured.out), captured.out
    assert "(n=1)" in captured.out and "(n=3)" not in captured.out  # fresh seeds 1, 2 left out
    assert "gpt/vcycle (FLOPs saved to target (held-out loss): no test, se not finite)" \
        in captured.err and "gate: pass" not in captured.out


def test_a_run_whose_summary_is_gone_is_no_completed_run(smoke_reference, tmp_path, capsys):
    """The manifest says completed, summary.json was deleted: every reader (status, gate,
    compare) sees one status, and it is not "completed"."""
    from suite.results import MISSING_SUMMARY, find_runs

    ref = _copy(smoke_reference, tmp_path)
    for seed in range(3):
        (run_dir(ref, "smoke", "gpt", "vcycle", seed) / "summary.json").unlink()
    gone = [r for r in find_runs(ref) if r.manifest["arm_name"] == "vcycle"]
    assert len(gone) == 3 and all(r.status == MISSING_SUMMARY and not r.complete for r in gone)
    assert main(["gate", "--fresh", str(smoke_reference), "--reference", str(ref),
                 "--scale", "smoke"]) == 2
    out = capsys.readouterr().out
    assert len(re.findall(r"\| vcycle +\| runs +\| reference seed \d +\| incomplete: "
                          r"summary.json missing .*\| not compared", out)) == 3, out
    assert main(["status", str(ref)]) == 0
    out = capsys.readouterr().out
    # runs 6, completed 3 (the baseline's), the three vcycle runs under "other"
    assert re.search(r"\| smoke +\| gpt +\| +6 \| +3 \| +0 \| +0 \| +0 \| +0 \| +3 \|", out), out


def test_gate_exit_2_when_the_definitions_differ(smoke_reference, tmp_path, capsys):
    fresh = _copy(smoke_reference, tmp_path)
    path = run_dir(fresh, "smoke", "gpt", "vcycle", 0) / "manifest.json"
    m = json.loads(path.read_text())
    m["definition"]["scale"]["train"]["lr"] *= 2
    path.write_text(json.dumps(m))
    assert main(["gate", "--fresh", str(fresh), "--reference", str(smoke_reference),
                 "--scale", "smoke"]) == 2
    assert "differs from the reference" in (err := capsys.readouterr().err)
    assert "at key 'scale.train.lr'" in err
    m["definition"]["scale"]["train"]["lr"] /= 2
    m["data"]["source"] = "mnist-5k fallback"
    path.write_text(json.dumps(m))
    assert main(["gate", "--fresh", str(fresh), "--reference", str(smoke_reference),
                 "--scale", "smoke"]) == 2
    assert "read data 'mnist-5k fallback'" in (err := capsys.readouterr().err)
    assert "(key data.source)" in err


def test_gate_fails_on_a_missing_or_diverged_run(smoke_reference, tmp_path, capsys):
    fresh = _copy(smoke_reference, tmp_path)
    shutil.rmtree(run_dir(fresh, "smoke", "gpt", "vcycle", 2))
    summary = run_dir(fresh, "smoke", "gpt", "baseline", 1) / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "status": "diverged"}))
    assert main(["gate", "--fresh", str(fresh), "--reference", str(smoke_reference),
                 "--scale", "smoke"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"\| gpt +\| vcycle +\| runs +\| seed 2 ran +\| completed +\| missing", out)
    assert re.search(r"\| gpt +\| baseline +\| runs +\| seed 1 ran +\| completed +\| diverged",
                     out)
    assert "gate: FAIL" in out


def _mark(root, arm, seeds, status):
    for seed in seeds:
        summary = run_dir(root, "smoke", "gpt", arm, seed) / "summary.json"
        summary.write_text(json.dumps({**json.loads(summary.read_text()), "status": status}))


@pytest.mark.parametrize(("arm", "statuses"), [
    ("vcycle", ["preempted", "diverged", "preempted"]),
    ("baseline", ["diverged", "diverged", "preempted"]),
])
def test_a_gate_with_nothing_to_compare_is_no_pass(smoke_reference, tmp_path, capsys, arm,
                                                  statuses):
    """Field fault (bats-core#1211): with every reference run of an arm preempted or diverged,
    or no completed reference baseline, the gate said 'numerics unchanged, pass', exit 0, even
    with the fresh runs of that arm deleted. It names what it could not compare, exit 2."""
    reference = tmp_path / "reference"
    shutil.copytree(smoke_reference, reference)
    for seed, status in enumerate(statuses):
        _mark(reference, arm, [seed], status)
    fresh = _copy(smoke_reference, tmp_path)
    shutil.rmtree(run_dir(fresh, "smoke", "gpt", arm, 0).parent)  # the fresh runs: gone
    if arm == "baseline":  # and vcycle's numbers moved: its saving needs the statistical tier
        curve = run_dir(fresh, "smoke", "gpt", "vcycle", 1) / "curve.jsonl"
        rows = [json.loads(x) for x in curve.read_text().splitlines()]
        rows[-1]["heldout_loss"] += 1e-3
        curve.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["gate", "--fresh", str(fresh), "--reference", str(reference),
                 "--scale", "smoke"]) == 2
    captured = capsys.readouterr()
    for seed, status in enumerate(statuses):
        assert re.search(rf"\| gpt +\| {arm} +\| runs +\| reference seed {seed} +\| {status} +"
                         r"\| missing +\| - +\| not compared",
                         captured.out), captured.out
    assert f"gpt/{arm} (no completed reference run)" in captured.err
    assert "gate: pass" not in captured.out and "numerics unchanged" not in captured.out.split(
        arm)[1].split("\n")[0]
    if arm == "baseline":  # vcycle's saving had nothing to be measured against
        assert "gpt/vcycle (no completed reference baseline)" in captured.err
        assert re.search(r"\| gpt +\| vcycle +\| statistical +\| against the baseline .*"
                         r"no completed reference baseline .*not compared", captured.out)


def test_one_incomplete_reference_seed_is_named_and_the_rest_is_gated(smoke_reference,
                                                                      tmp_path, capsys):
    reference = tmp_path / "reference"
    shutil.copytree(smoke_reference, reference)
    _mark(reference, "vcycle", [1], "preempted")
    fresh = _copy(smoke_reference, tmp_path)
    assert main(["gate", "--fresh", str(fresh), "--reference", str(reference),
                 "--scale", "smoke"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| vcycle +\| runs +\| reference seed 1 +\| preempted +\| completed +"
                     r"\| - +\| not compared", out)  # each column says its own run's status
    assert re.search(r"\| vcycle +\| exact +\| seeds 0,2 .*numerics unchanged", out)


def test_gate_on_the_arms_a_change_touched(smoke_reference, tmp_path, capsys):
    fresh = _copy(smoke_reference, tmp_path)
    shutil.rmtree(run_dir(fresh, "smoke", "gpt", "vcycle", 0).parent)
    args = ["gate", "--fresh", str(fresh), "--reference", str(smoke_reference), "--scale",
            "smoke"]
    assert main(args) == 1  # every reference arm is required by default
    capsys.readouterr()
    assert main([*args, "--only", "gpt", "--arms", "baseline"]) == 0
    out = capsys.readouterr().out
    assert "vcycle" not in out.split("gate: pass")[0]
    assert re.search(r"\| gpt +\| baseline +\| exact +\| seeds 0,1,2 .*numerics unchanged", out)
    shutil.rmtree(run_dir(fresh, "smoke", "gpt", "baseline", 2))
    assert main([*args, "--arms", "baseline", "--seeds", "0,1"]) == 0  # seed 2 not asked for
    assert re.search(r"\| gpt +\| baseline +\| exact +\| seeds 0,1 ", capsys.readouterr().out)
    assert main([*args, "--arms", "baseline", "--seeds", "0,7"]) == 2  # never a silent pass
    assert "no reference run of gpt/baseline seed 7; it holds seeds 0, 1, 2" in \
        capsys.readouterr().err
    assert main([*args, "--arms", "baseline", "--seeds", "0,x"]) == 2
    assert "--seeds: got '0,x'" in capsys.readouterr().err
    assert main([*args, "--arms", "vcycle"]) == 2
    assert "--arms must include baseline" in capsys.readouterr().err
    assert main([*args, "--only", "bert"]) == 2
    assert "no reference runs of benchmark bert; it holds gpt" in capsys.readouterr().err
    assert main([*args, "--arms", "baseline,vcycle3"]) == 2
    assert "no reference runs of arm vcycle3; it holds baseline, vcycle" in \
        capsys.readouterr().err


def test_gate_fails_when_the_arm_got_worse(smoke_reference, tmp_path, capsys):
    """A worse implementation, simulated: every fresh vcycle evaluation 0.3 nats higher."""
    # (and the baseline untouched: its exact tier passes)
    fresh = _copy(smoke_reference, tmp_path)
    for seed in range(3):
        curve = run_dir(fresh, "smoke", "gpt", "vcycle", seed) / "curve.jsonl"
        rows = [json.loads(x) for x in curve.read_text().splitlines()]
        curve.write_text("".join(json.dumps({**r, "heldout_loss": r["heldout_loss"] + 0.3})
                                 + "\n" for r in rows))
    assert main(["gate", "--fresh", str(fresh), "--reference", str(smoke_reference),
                 "--scale", "smoke"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"\| vcycle +\| statistical +\| held-out loss at the baseline's budget .*"
                     r"\| FAIL", out)
    assert re.search(r"\| baseline +\| exact +\| .*numerics unchanged", out)


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
    assert saving.fmt() in text  # the table shows what the analysis computes
    assert "| vcycle   | decoalesce+interpolate |" in text  # the per-operator breakdown
    # the runs table: the fall of held-out loss over the last 20% is the analysis' own figure
    fall = analysis.mean_ci([analysis.tail_drop(r.curve) for r in base]).fmt(digits=4)
    assert re.search(rf"\| baseline +\| 0,1,2 +\| 3/3 +\| +[0-9.]+ \| [^|]+\| {re.escape(fall)} ",
                     text)
    assert "Speed of the baseline's training step" not in text
    # what the runs ran with, from their manifests: a curve depends on threads and --compile
    env = text.split("## Environment of the runs", 1)[1]
    every = [read_run(p.parent) for p in root.glob("*/*/seed-*/manifest.json")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in env.splitlines()
            if line.startswith("| ") and not line.startswith("| commit")]
    shown = {}
    for *_, threads, compiled, n in rows:
        shown[(int(threads), compiled)] = shown.get((int(threads), compiled), 0) + int(n)
    made = {}
    for r in every:
        key = (r.manifest["environment"]["threads"], "yes" if r.manifest["compile"] else "no")
        made[key] = made.get(key, 0) + 1
    assert shown == made and sum(made.values()) == len(every) > 0


def test_report_of_one_seed_has_no_nan_and_no_warning(smoke_reference, tmp_path):
    """A new user's `--seeds 1`: no spread to measure, said in words; numpy must not warn
    (a sample SD of one value) and no table may show nan."""
    import shutil
    import warnings

    root = _copy(smoke_reference, tmp_path) / "smoke"
    for extra in root.glob("*/*/seed-[12]"):
        shutil.rmtree(extra)
    rules = {n: b.gate for n, b in load_benchmarks().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        text = write_report(root, load_claims(), rules, "smoke").read_text()
    assert "nan" not in text.lower().replace("nanogpt", "")
    assert "unpaired (one seed)" in text
    assert re.search(r"\| vcycle +\| held-out loss +\| +1 \| - +\| - +\| - +\| - +\| one seed: "
                     r"no noise to measure \|", text)


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
    assert {c.benchmark for c in load_claims()} == {"bert", "gpt", "deit", "bert-large", "ode",
                                                    "llama"}


def test_report_reads_the_gate_records_of_its_scale(tmp_path, capsys):
    """`gate --json` writes the record the report's table of injected regressions reads: the
    rows that decide (not the exact tier's hand-over), then the exit code; only its scale."""
    from suite.judge.report import regression_rows
    from suite.results import ResultsError

    fresh = tmp_path / "fresh"
    shutil.copytree(Path("results/smoke/ode"), fresh / "smoke" / "ode")
    for m in (fresh / "smoke").rglob("manifest.json"):  # other versions: the statistical tier
        d = json.loads(m.read_text())
        d["environment"]["versions"]["torch"] = "0"
        m.write_text(json.dumps(d))
    folder = tmp_path / "regressions"
    assert main(["gate", "--scale", "smoke", "--fresh", str(fresh), "--reference", "results",
                 "--only", "ode", "--arms", "baseline,ode-multilevel", "--json",
                 str(folder / "case.json"), "--label", "case (abc1234)"]) == 0
    capsys.readouterr()
    rec = json.loads((folder / "case.json").read_text())
    assert rec["ok"] is True and rec["exit"] == 0 and rec["label"] == "case (abc1234)"
    rows = regression_rows(folder, "smoke")
    decided = [r for r in rec["rows"] if r[-1] != "differs: statistical tier"]
    assert len(rows) == len(decided) + 1 and len(decided) >= 3
    assert rows[0][:4] == ["case (abc1234)", "ode", "baseline", "statistical"]
    assert rows[-1] == ["case (abc1234)", "-", "-", "-", "-", "-", "-", "gate exit: 0"]
    assert all(r[-1] == "pass" for r in rows[:-1])
    assert regression_rows(folder, "tiny") == []
    (folder / "broken.json").write_text("{}")
    with pytest.raises(ResultsError, match=r"broken\.json: not a gate record"):
        regression_rows(folder, "smoke")


def test_the_committed_regression_records_give_the_reports_table():
    from suite.judge.report import regression_rows

    rows = regression_rows(Path("results/regressions"), "tiny")
    exits = {r[0].split()[0]: r[-1] for r in rows if r[1] == "-"}
    assert exits == {"alpha1": "gate exit: 0", "delta0": "gate exit: 1",
                     "identity-gpt": "gate exit: 0", "identity-ode": "gate exit: 0",
                     "identity-ode-ablations": "gate exit: 0", "lrbug": "gate exit: 1",
                     "plain": "gate exit: 0"}


def test_a_report_of_runs_none_of_which_completed_says_so(smoke_reference, tmp_path):
    """An empty table reads as 'nothing wrong': a benchmark without a completed run says why
    its noise table is empty."""
    root = tmp_path / "results"
    shutil.copytree(smoke_reference, root)
    for arm in ("baseline", "vcycle"):
        _mark(root, arm, range(3), "diverged")
    text = write_report(root / "smoke", load_claims(), {"gpt": load_benchmarks()["gpt"].gate},
                        "smoke", plots=False).read_text()
    assert "(none: no arm has two completed seeds, and a completed baseline" in text
    assert "gpt/vcycle: not counted: seed 0: diverged, seed 1: diverged, seed 2: diverged" in text


def test_a_matched_baseline_is_gated_on_its_loss_and_has_no_saving_row(smoke_reference,
                                                                         tmp_path, capsys):
    """`baseline@budget=0.8` (the matched-budget check's control, committed beside the arms)
    has no saving of its own: its statistical tier is its held-out loss, never a 'FLOPs saved'
    row measured as if it were a method that misses."""
    reference = tmp_path / "reference"
    shutil.copytree(smoke_reference, reference)
    fresh = _copy(smoke_reference, tmp_path)
    for root, shift in ((reference, 0.0), (fresh, 1e-3)):
        src = run_dir(root, "smoke", "gpt", "baseline", 0).parent
        dst = src.parent / "baseline@budget=0.8"
        shutil.copytree(src, dst)
        for seed_dir in dst.iterdir():
            manifest = seed_dir / "manifest.json"
            manifest.write_text(json.dumps({**json.loads(manifest.read_text()),
                                            "arm_name": "baseline@budget=0.8"}))
            curve = seed_dir / "curve.jsonl"
            rows = [json.loads(x) for x in curve.read_text().splitlines()]
            rows[-1]["heldout_loss"] += shift
            curve.write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(["gate", "--fresh", str(fresh), "--reference", str(reference), "--scale", "smoke"])
    out = capsys.readouterr()
    rows = [x for x in out.out.splitlines()
            if re.match(r"\| gpt +\| baseline@budget=0\.8 +\| statistical", x)]
    assert len(rows) == 1 and "held-out loss at the baseline's budget" in rows[0], out
