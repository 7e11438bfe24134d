"""`python -m suite list | run | compare`: output, exit codes and error messages."""

import json
import re
import shutil

import pytest

from suite import flops
from suite.cli import main
from suite.data import load_text
from suite.families import FAMILIES
from suite.registry import inputs_for
from suite.results import RunWriter, find_runs, run_dir

NAMES = ("bert", "bert-large", "deit", "gpt", "llama", "ode")


def table_rows(out):
    """The data rows of a github table as lists of stripped cells."""
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in out.splitlines() if line.startswith("|") and not line.startswith("|--")]


def by_column(rows, key):
    """Rows of a table (header first) as dicts keyed by the header, indexed by column `key`."""
    header, *body = rows
    return {r[header.index(key)]: dict(zip(header, r, strict=True)) for r in body}


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert rows[0][:3] == ["benchmark", "family", "scale"]
    assert {r[0] for r in rows[1:]} == set(NAMES)
    assert len(rows) == 1 + 6 * 4  # six benchmarks, four scales each
    gpt_smoke = next(r for r in rows if r[0] == "gpt" and r[2] == "smoke")
    assert gpt_smoke[1] == "gpt2" and gpt_smoke[3] == "4-32-2" and gpt_smoke[7] == "shakespeare"
    deit_smoke = next(r for r in rows if r[0] == "deit" and r[2] == "smoke")
    assert deit_smoke[3] == "2-32-2/p7" and deit_smoke[4] == "-"
    assert rows[0][8] == "seeds"  # what `run` trains by default (found by a new-user trial)
    assert next(r for r in rows if r[0] == "gpt" and r[2] == "tiny")[8] == "11"


def test_list_with_a_user_definition(tmp_path, capsys, mini_toml):
    path = tmp_path / "mine.toml"
    path.write_text(mini_toml("mine"))
    for args in (["--benchmarks", str(path), "list"], ["list", "--benchmarks", str(path)]):
        assert main(args) == 0  # before or after the command
        rows = table_rows(capsys.readouterr().out)
        assert [r[0] for r in rows[1:]] == ["mine"]


def test_run_unknown_benchmark(capsys):
    assert main(["run", "nope", "--scale", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark 'nope'" in err
    allowed = re.search(r"allowed: (.*)$", err.strip()).group(1).split(", ")
    assert sorted(allowed) == sorted(NAMES)


def test_run_unknown_arm(capsys, tmp_path):
    assert main(["run", "gpt", "--scale", "smoke", "--arms", "turbo", "--out",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err
    # --arms is the command line's: the message says so, and lists the definition's arms
    assert "(command line): arms.turbo: no such arm; allowed: baseline, vcycle" in err


def test_run_unknown_scale_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "gpt", "--scale", "huge"])
    assert e.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_paper_scale_without_data(capsys, tmp_path):
    out = tmp_path / "runs"
    assert main(["run", "gpt", "--scale", "paper", "--threads", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "scales.paper.data.source" in err and "--data" in err
    assert not out.exists()  # refused before any run folder was written


def test_dry_run_prints_flops(capsys, builtin_benchmarks, gpt_smoke_runs):
    assert main(["run", "gpt", "--scale", "smoke", "--dry-run"]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert rows[0] == ["arm", "method", "train steps", "FLOPs (projected)", "per level",
                       "tokens seen", "passes over the data"]
    scale = builtin_benchmarks["gpt"].scale("smoke")
    fam = FAMILIES["gpt2"]
    per_step = flops.train_step_flops(fam, scale.model, inputs_for(fam, scale, None), 8)
    tokens = 20 * 8 * 32
    passes = tokens / len(load_text("shakespeare").train)
    assert rows[1][:5] == ["baseline", "baseline", "20", f"{per_step * 20:.3g}",
                           "L1: 20 steps, 100.0%"]
    assert float(rows[1][5]) == tokens and float(rows[1][6]) == float(f"{passes:.2g}")
    # the V-cycle is fitted to the baseline's FLOPs: within one level-1 step below it
    assert rows[2][:2] == ["vcycle", "vcycle"]
    assert per_step * 19 <= float(rows[2][3]) <= per_step * 20
    assert rows[2][4].startswith("L1: ") and "L2: 10 steps" in rows[2][4]
    assert "FLOP convention: FLOPs = 2 x fvcore MACs" in out
    # the projection is what a real run meters
    assert gpt_smoke_runs(0).summary["flops"] == per_step * 20


def test_dry_run_prices_minutes_at_an_assumed_throughput(capsys, builtin_benchmarks):
    assert main(["run", "gpt", "--scale", "smoke", "--arms", "baseline", "--dry-run",
                 "--assume-tflops", "1e-05"]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert rows[0][-1] == "minutes at 1e-05 TFLOP/s"
    minutes = float(rows[1][3]) / 1e7 / 60
    assert minutes > 0.5 and float(rows[1][-1]) == pytest.approx(minutes, abs=0.051)
    assert "an assumption, not a measurement" in out


def test_run_and_compare(capsys, tmp_path):
    out = tmp_path / "runs"
    assert main(["run", "gpt", "--scale", "smoke", "--arms", "baseline", "--seeds", "2",
                 "--first-seed", "5",
                 "--threads", "1", "--no-progress", "--out", str(out)]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert [(r[0], r[1], r[2]) for r in rows[1:]] == [("baseline", "5", "completed"),
                                                      ("baseline", "6", "completed")]
    runs = find_runs(out)
    assert [r.seed for r in runs] == [5, 6] and all(r.complete for r in runs)
    assert runs[0].path == run_dir(out, "smoke", "gpt", "baseline", 5)
    assert rows[1][4] == f"{runs[0].summary['final_heldout_loss']:.4f}"

    # a second arm (a copy of the baseline) and a run that was killed half way
    for r in runs:
        dst = run_dir(out, "smoke", "gpt", "copy", r.seed)
        shutil.copytree(r.path, dst)
        manifest = json.loads((dst / "manifest.json").read_text())
        (dst / "manifest.json").write_text(json.dumps({**manifest, "arm_name": "copy"}))
    RunWriter(run_dir(out, "smoke", "gpt", "baseline", 7), {**runs[0].manifest, "seed": 7})

    assert main(["compare", str(out)]) == 0
    text = capsys.readouterr().out
    runs_part, marker, savings_part = text.partition("Savings against the baseline")
    assert marker, text
    done = by_column(table_rows(runs_part), "arm")
    assert set(done) == {"baseline", "copy"}
    assert (done["baseline"]["scale"], done["baseline"]["benchmark"]) == ("smoke", "gpt")
    assert done["baseline"]["completed"] == "2/3"  # the killed run is listed, not counted
    assert done["baseline"]["seeds"] == "5,6,7" and done["copy"]["completed"] == "2/2"
    ends = [r.summary["final_heldout_loss"] for r in runs]
    assert done["baseline"]["held-out loss end"].startswith(f"{sum(ends) / 2:.4f} [")
    assert done["copy"]["held-out loss end"] == done["baseline"]["held-out loss end"]
    # a baseline-method arm is judged on held-out loss only (training loss: paper 2's arms)
    saved = by_column(table_rows(savings_part), "criterion")
    assert list(saved) == ["held-out loss"]
    assert {r["arm"] for r in saved.values()} == {"copy"}
    held = saved["held-out loss"]
    assert held["target"] == f"{sum(ends) / 2:.4f}" and held["pairing"] == "paired"
    # same curves, same seeds: the mean curve reaches the target at the end, exactly
    assert held["FLOPs saved to target"] == "0.0% [0.0, 0.0] (n=2)"
    assert held["FLOPs saved, blocks only"] == "0.0% [0.0, 0.0] (n=2)"


def test_run_with_user_data(capsys, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(bytes(range(32, 127)) * 60)
    out = tmp_path / "runs"
    assert main(["run", "gpt", "--scale", "smoke", "--arms", "baseline", "--data", str(corpus),
                 "--threads", "1",
                 "--no-progress", "--out", str(out)]) == 0
    (run,) = find_runs(out)
    assert run.complete and run.manifest["data"]["source"] == str(corpus)
    assert run.manifest["definition"]["scale"]["data"]["source"] == str(corpus)


def test_run_with_missing_user_data(capsys, tmp_path):
    missing = tmp_path / "missing.txt"
    assert main(["run", "gpt", "--scale", "smoke", "--data", str(missing), "--threads", "1",
                 "--out", str(tmp_path / "runs")]) == 2
    assert f"error: (command line): --data: data source '{missing}': no such file or folder" \
        in capsys.readouterr().err


def test_run_with_a_missing_data_source_in_the_definition(capsys, tmp_path, mini_toml):
    """The same fault written in a definition names the file and the key, before any run."""
    missing = tmp_path / "nowhere"
    path = tmp_path / "mine.toml"
    path.write_text(mini_toml("mine").replace('source = "shakespeare"', f'source = "{missing}"'))
    assert main(["--benchmarks", str(path), "run", "mine", "--scale", "smoke", "--out",
                 str(tmp_path / "runs")]) == 2
    assert f"error: {path}: scales.smoke.data.source: data source '{missing}': no such file" \
        in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_compare_on_an_empty_folder(capsys, tmp_path):
    assert main(["compare", str(tmp_path)]) == 2
    assert f"{tmp_path}: no runs found" in capsys.readouterr().err


def test_compare_on_a_missing_folder(capsys, tmp_path):
    assert main(["compare", str(tmp_path / "nope")]) == 2
    assert "no such results folder" in capsys.readouterr().err


def test_broken_user_definition(capsys, tmp_path, mini_toml):
    path = tmp_path / "broken.toml"
    path.write_text(mini_toml("broken").replace("steps = 4", "steps = -5"))
    for command in (["list"], ["run", "broken", "--scale", "smoke", "--dry-run"]):
        assert main(["--benchmarks", str(path), *command]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}: scales.smoke.steps: must be a positive integer")


def test_check_operators_prints_exact_round_trips_and_the_reference_drift(capsys):
    assert main(["check-operators"]) == 0
    out = capsys.readouterr().out
    exactness = out.split("\n\n")[0]
    rows = {r[0]: r[1:] for r in table_rows(exactness)[1:]}
    assert set(rows) == {"bert", "gpt2", "vit", "decoder", "llama"}
    survival = table_rows(out.split("\n\n")[2])
    assert survival[0][:3] == ["family", "operator", "settings kept"]
    assert {(r[0], r[1]) for r in survival[1:]} >= {("vit", "coalesce"), ("llama", "stack")}
    assert all(r[4] == "-" and r[3] == "yes" for r in survival[1:]), survival
    for name, (rt_ref, rt_pres, drift_ref, drift_pres) in rows.items():
        assert float(rt_ref) < 1e-6 and float(rt_pres) < 1e-6
        assert float(drift_pres) < 1e-4
        assert (float(drift_ref) > 1e-2) == (name in ("gpt2", "decoder"))  # pre-LN, tied


def test_run_seeds_default_to_the_scale():
    from suite.registry import load_benchmarks

    assert load_benchmarks()["gpt"].scale("smoke").seeds == 1  # undeclared: one seed
    assert {n: b.scale("tiny").seeds for n, b in load_benchmarks().items()} == {
        "bert": 26, "bert-large": 10, "deit": 20, "gpt": 11, "llama": 11,
        "ode": 5}  # the power analysis (llama: kept at gpt's after its own runs)


@pytest.mark.parametrize(("args", "message"), [
    (["run", "gpt", "--seeds", "0"], "argument --seeds: got '0'; allowed: an integer >= 1 "
     "and <= 10000"),
    (["run", "gpt", "--seeds", "99999999999999999999"], "argument --seeds: got "
     "'99999999999999999999'; allowed: an integer >= 1 and <= 10000"),
    (["run", "gpt", "--first-seed", str(2**40)], f"argument --first-seed: got '{2**40}'; "
     "allowed: an integer >= 0 and <= 2147483648"),
    (["run", "gpt", "--threads", "-2"], "argument --threads: got '-2'; allowed: an integer >= 1"),
    (["run", "gpt", "--threads", "0"], "argument --threads: got '0'; allowed: an integer >= 1"),
    (["run", "gpt", "--accum", "0"], "argument --accum: got '0'; allowed: an integer >= 1"),
    (["run", "gpt", "--first-seed", "-1"], "argument --first-seed: got '-1'; allowed: an "
     "integer >= 0 and <= 2147483648"),
    (["run", "gpt", "--checkpoint-minutes", "0"], "argument --checkpoint-minutes: got '0'; "
     "allowed: a number > 0"),
    (["throughput", "gpt", "--steps", "x"], "argument --steps: got 'x'; allowed: an integer "
     ">= 1"),
    (["tokenize", "in", "--out", "o", "--heldout-every", "1"], "argument --heldout-every: "
     "got '1'; allowed: an integer >= 2"),
    (["power", "--goal", "-0.1"], "argument --goal: got '-0.1'; allowed: a number > 0"),
])
def test_numeric_options_out_of_range_are_one_line_errors(capsys, args, message):
    """Before anything runs (a negative --threads reached torch.set_num_threads)."""
    assert refused(capsys, args).endswith(message)


def refused(capsys, args: list[str]) -> str:
    """What the command line printed when it refused `args` (exit 2), as its one line."""
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_power_of_a_missing_folder_is_one_line(capsys, tmp_path):
    assert main(["power", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nowhere'}: no runs found (a " \
        "scale folder such as results/tiny, or a results root that holds one)"


@pytest.mark.parametrize(("device", "gpus", "message"), [
    ("tpu", 0, "argument --device: got 'tpu'; allowed: cpu, cuda, cuda:N"),
    ("meta", 0, "argument --device: got 'meta'; allowed: cpu, cuda, cuda:N"),
    ("cuda", 0, "argument --device: got 'cuda', but torch sees no CUDA device on this "
                "machine; allowed here: cpu"),
    ("cuda:3", 2, "argument --device: got 'cuda:3'; this machine has cuda:0 to cuda:1"),
])
def test_a_device_this_machine_lacks_is_one_line(capsys, monkeypatch, device, gpus, message):
    """Found by a trial: --device cuda on a CPU machine was a driver error from inside torch."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    for command in (["run", "gpt", "--scale", "smoke"], ["throughput", "gpt"]):
        with pytest.raises(SystemExit) as e:
            main([*command, "--device", device])
        assert e.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith(message)


@pytest.mark.parametrize("args", [
    ["run", "gpt", "--scale", "huge"], ["run", "gpt", "--seeds", "0"], ["list", "--nope"],
    ["tokenize", "in", "--out", "o", "--heldout-every", "0"], ["nosuch"],
])
def test_an_argument_error_is_one_line(capsys, args):
    """Found by a trial: argparse printed its whole usage block before the error."""
    assert ": error: " in refused(capsys, args)


@pytest.mark.parametrize(("args", "message"), [
    (["run", "gpt", "--scale", "smoke", "--assume-tflops", "5"],
     "argument --assume-tflops: only means something with --dry-run"),
    (["gate", "--label", "x"], "argument --label: only means something with --json"),
])
def test_an_option_that_needs_another_is_refused_alone(capsys, args, message):
    """Found by a trial: --assume-tflops without --dry-run trained every arm, silently."""
    assert refused(capsys, args) == f"python -m suite: error: {message}"


def test_benchmarks_given_before_and_after_the_command_are_both_read(tmp_path, capsys,
                                                                       mini_toml):
    """Found by a trial: the one after the command replaced the one before, silently."""
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(mini_toml("first"))
    b.write_text(mini_toml("second"))
    assert main(["--benchmarks", str(a), "list", "--benchmarks", str(b)]) == 0
    names = {r[0] for r in table_rows(capsys.readouterr().out)[1:]}
    assert names == {"first", "second"}


def test_a_path_that_cannot_be_written_is_one_line(capsys, tmp_path):
    """Found by a trial: --out or --json naming a file where a folder is meant (or the other
    way round) ended in a traceback; any such path is one line naming it."""
    afile = tmp_path / "notes.md"
    afile.write_text("x")
    assert main(["run", "gpt", "--scale", "smoke", "--seeds", "1", "--arms", "baseline",
                 "--threads", "1", "--no-progress", "--out", str(afile)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {afile}") and "Not a directory" in err and "\n" not in err
    assert main(["gate", "--scale", "smoke", "--fresh", "results", "--reference", "results",
                 "--only", "gpt", "--json", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and str(tmp_path) in err[-1]


def test_a_definition_without_a_plain_baseline_is_refused(tmp_path, capsys, mini_toml):
    """Found by a trial: a definition with no baseline arm trained, and one whose `baseline`
    arm ran a V-cycle was accepted: every saving would have been against it."""
    none = tmp_path / "none.toml"
    none.write_text(mini_toml().replace('[arms.baseline]\nmethod = "baseline"',
                                        '[arms.v]\nmethod = "vcycle"'))
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(mini_toml().replace('[arms.baseline]\nmethod = "baseline"',
                                         '[arms.baseline]\nmethod = "vcycle"'))
    assert main(["--benchmarks", str(none), "list"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {none}: arms.baseline: missing; " \
        'allowed: [arms.baseline] method = "baseline"'
    assert main(["--benchmarks", str(wrong), "list"]) == 2
    assert "arms.baseline: method 'vcycle': the arm every other arm is compared with must " \
        "be plain training" in capsys.readouterr().err


def test_the_judging_commands_run_without_torch(tmp_path):
    """compare, gate, power and report on committed runs, with an import hook that refuses
    torch (a machine that only judges results needs none)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "results" / "smoke" / "ode", tmp_path / "smoke" / "ode")
    hook = ("import runpy, sys\n"
            "class NoTorch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n"
            "            raise ImportError('torch is blocked')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "sys.argv = ['suite', *sys.argv[1:]]\n"
            "runpy.run_module('suite', run_name='__main__')\n")
    for args, expect in (
            (["compare", str(tmp_path / "smoke")], "Savings against the baseline"),
            (["gate", "--scale", "smoke", "--fresh", str(tmp_path), "--reference", "results",
              "--only", "ode"], "gate: pass"),
            (["power", str(tmp_path / "smoke")], "## smoke/ode"),
            (["report", "--results", str(tmp_path), "--scale", "smoke", "--no-plots"],
             "wrote")):
        out = subprocess.run([sys.executable, "-c", hook, *args], capture_output=True,
                             text=True, cwd=root)
        assert out.returncode == 0, (args, out.stderr[-1500:])
        assert expect in out.stdout, args
    assert (tmp_path / "smoke" / "REPORT.md").is_file()


def test_the_manifest_records_the_command_as_typed(monkeypatch):
    """Found by a trial: a resume recorded '/path/suite/__main__.py run ...', not the command."""
    from suite.run.provenance import command_line

    monkeypatch.setattr("sys.argv", ["/home/u/clone/suite/__main__.py", "run", "gpt"])
    assert command_line() == "python -m suite run gpt"
    monkeypatch.setattr("sys.argv", ["/usr/bin/multilevel-suite", "list"])
    assert command_line() == "/usr/bin/multilevel-suite list"
