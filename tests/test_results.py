"""Run folders: atomic writes, statuses, killed runs, and the runner's reproducible output."""

import json
import math
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from suite import registry, spec
from suite.data import load_text
from suite.results import (
    ResultsError,
    RunWriter,
    atomic_write_json,
    find_runs,
    read_run,
    run_dir,
)
from suite.run.executor import RunOptions, run_one

REPO = Path(__file__).resolve().parents[1]
MANIFEST = {"benchmark": "b", "scale_name": "smoke", "arm_name": "baseline", "seed": 3}


def files_in(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# ---------------------------------------------------------------- atomic writes


def test_atomic_write_json_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "x.json"
    atomic_write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    atomic_write_json(target, {"b": [1, 2]})
    assert json.loads(target.read_text()) == {"b": [1, 2]}
    assert files_in(target.parent) == ["x.json"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_writes_get_the_permissions_open_gives(tmp_path, umask):
    """mkstemp makes owner-only files: manifests, summaries and checkpoints were 0600 while the
    curve beside them (plain open) was 0644."""
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "m.json", {"a": 1})
        (tmp_path / "c.jsonl").write_text("{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o666 & ~umask
    assert (tmp_path / "m.json").stat().st_mode == (tmp_path / "c.jsonl").stat().st_mode


def test_atomic_write_json_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {("tuple", "key"): 1})  # json cannot write this key
    assert json.loads(target.read_text()) == {"a": 1}
    assert files_in(tmp_path) == ["x.json"]


# ---------------------------------------------------------------- RunWriter and statuses


def test_started_run_is_running_and_not_complete(tmp_results):
    path = run_dir(tmp_results, "smoke", "b", "baseline", 3)
    assert path == tmp_results / "smoke" / "b" / "baseline" / "seed-3"
    w = RunWriter(path, MANIFEST)
    w.log({"step": 0, "heldout_loss": 5.0})
    assert json.loads((path / "manifest.json").read_text())["status"] == "running"
    assert not (path / "summary.json").exists()
    r = read_run(path)
    assert r.status == "running" and not r.complete and r.summary is None
    assert r.curve == [{"step": 0, "heldout_loss": 5.0}]
    assert r.key == ("smoke", "b", "baseline") and r.seed == 3
    found = find_runs(tmp_results)
    assert [x.path for x in found] == [path]
    assert found[0].complete is False


def test_finish_completed_makes_a_result(tmp_results):
    path = run_dir(tmp_results, "smoke", "b", "baseline", 3)
    w = RunWriter(path, MANIFEST)
    w.log({"step": 10, "heldout_loss": 4.0})
    w.finish("completed", {"steps": 10})
    r = read_run(path)
    assert r.complete and r.status == "completed"
    assert r.summary == {"steps": 10, "status": "completed"}
    assert r.manifest["status"] == "completed" and r.manifest["seed"] == 3
    assert files_in(path) == ["curve.jsonl", "manifest.json", "summary.json"]


@pytest.mark.parametrize("status", ["diverged", "interrupted", "failed"])
def test_other_final_statuses_are_not_results(tmp_results, status):
    path = run_dir(tmp_results, "smoke", "b", "baseline", 0)
    RunWriter(path, MANIFEST).finish(status, {"error": "x"})
    r = read_run(path)
    assert r.status == status and r.complete is False


@pytest.mark.parametrize("status", ["bogus", "running", "COMPLETED"])
def test_finish_with_a_bad_status(tmp_results, status):
    path = tmp_results / "seed-0"  # a run folder: seed-<n> (results.is_run_folder)
    w = RunWriter(path, MANIFEST)
    allowed = "completed, diverged, preempted, interrupted, failed"
    with pytest.raises(ValueError, match=re.escape(f"finish status {status!r}; allowed: "
                                                   f"{allowed}")):
        w.finish(status, {})
    assert not (path / "summary.json").exists()


def test_rerun_deletes_the_stale_summary_and_curve(tmp_results):
    path = tmp_results / "seed-0"  # a run folder: seed-<n> (results.is_run_folder)
    w = RunWriter(path, MANIFEST)
    w.log({"step": 1, "heldout_loss": 5.0})
    w.finish("completed", {})
    assert read_run(path).complete
    w2 = RunWriter(path, {**MANIFEST, "seed": 4})
    assert not (path / "summary.json").exists()
    r = read_run(path)
    assert not r.complete and r.status == "running" and r.curve == [] and r.seed == 4
    w2.log({"step": 2})
    assert read_run(path).curve == [{"step": 2}]


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_run_killed_half_way(tmp_results, how):
    path = tmp_results / "smoke" / "b" / "baseline" / "seed-3"
    end = "os._exit(1)" if how == "exit" else "os.kill(os.getpid(), signal.SIGKILL)"
    code = textwrap.dedent(f"""
        import os, signal
        from suite.results import RunWriter
        w = RunWriter({str(path)!r}, {MANIFEST!r})
        for step in range(3):
            w.log({{"step": step, "heldout_loss": 5.0 - step}})
        {end}
        w.finish("completed", {{}})
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert proc.returncode == (1 if how == "exit" else -signal.SIGKILL), proc.stderr
    assert files_in(path) == ["curve.jsonl", "manifest.json"]
    r = read_run(path)
    assert r.manifest["status"] == "running" and r.summary is None
    assert r.status == "running" and r.complete is False
    assert [row["step"] for row in r.curve] == [0, 1, 2]
    assert [x.complete for x in find_runs(tmp_results)] == [False]


def test_read_run_on_corrupt_json(tmp_results):
    path = tmp_results / "seed-0"  # a run folder: seed-<n> (results.is_run_folder)
    RunWriter(path, MANIFEST).finish("completed", {})
    (path / "summary.json").write_text('{"status": "compl')
    with pytest.raises(ResultsError, match=re.escape(f"{path / 'summary.json'}: not valid JSON")):
        read_run(path)
    (path / "manifest.json").write_text("not json")
    with pytest.raises(ResultsError, match=re.escape(f"{path / 'manifest.json'}: not valid")):
        find_runs(tmp_results)


def test_read_run_on_a_corrupt_curve_line(tmp_results):
    """The last line of a run killed while appending is cut short: that run never finished, so
    it reads as incomplete (and one such run no longer blocks compare, report and gate for the
    whole folder); a bad line anywhere else, or in a finished run, is an error naming it."""
    path = tmp_results / "seed-0"  # a run folder: seed-<n> (results.is_run_folder)
    w = RunWriter(path, MANIFEST)
    w.log({"step": 0})
    w._curve.write('{"step": 1, "heldout_lo')  # a line cut short by a kill
    w._curve.flush()
    r = read_run(path)
    assert [row["step"] for row in r.curve] == [0] and r.status == "running"
    assert [x.complete for x in find_runs(tmp_results)] == [False]
    w._curve.write('\n{"step": 2}\n')  # the bad line is no longer the last
    w._curve.flush()
    with pytest.raises(ResultsError, match=re.escape(f"{path / 'curve.jsonl'}:2: not valid JSON")):
        read_run(path)
    other = tmp_results / "done"
    w = RunWriter(other, MANIFEST)
    w.log({"step": 0})
    w._curve.write('{"step": 1, "heldout_lo\n')
    w._curve.flush()
    w.finish("completed", {})
    with pytest.raises(ResultsError, match=re.escape(f"{other / 'curve.jsonl'}:2: not valid")):
        read_run(other)


def test_find_runs_on_a_missing_folder(tmp_path):
    with pytest.raises(ResultsError, match=re.escape(f"{tmp_path / 'nope'}: no such results")):
        find_runs(tmp_path / "nope")


# ---------------------------------------------------------------- the runner


def curve_values(run, key):
    return [row[key] for row in run.curve]


def test_runner_is_reproducible(gpt_smoke_runs, builtin_benchmarks, tmp_path):
    a = gpt_smoke_runs(0)
    b = read_run(run_one(builtin_benchmarks["gpt"], "smoke", "baseline", 0, tmp_path,
                         RunOptions(threads=1, progress=False)))
    assert a.path != b.path and a.complete and b.complete
    assert curve_values(a, "step") == [0, 10, 20]
    assert curve_values(a, "heldout_loss") == curve_values(b, "heldout_loss")
    assert curve_values(a, "flops") == curve_values(b, "flops")
    # training loss is evaluated at every point, the first one (before any step) included;
    # the running mean of minibatch losses exists only once there are minibatches
    assert curve_values(a, "train_loss") == curve_values(b, "train_loss")
    assert all(math.isfinite(v) for v in curve_values(a, "train_loss"))
    assert "train_loss_running" not in a.curve[0]
    assert [r["train_loss_running"] for r in a.curve[1:]] == \
        [r["train_loss_running"] for r in b.curve[1:]]
    assert all(math.isfinite(r["train_loss_running"]) for r in a.curve[1:])
    assert "NaN" not in (a.path / "curve.jsonl").read_text()
    # a smoke run learns something: held-out loss falls from about ln(256)
    start, *_, end = curve_values(a, "heldout_loss")
    assert start == pytest.approx(math.log(256), abs=0.1) and end < start - 0.2


def test_a_different_seed_gives_different_curves(gpt_smoke_runs):
    a, c = gpt_smoke_runs(0), gpt_smoke_runs(1)
    assert curve_values(a, "heldout_loss")[1:] != curve_values(c, "heldout_loss")[1:]
    assert curve_values(a, "train_loss")[1:] != curve_values(c, "train_loss")[1:]
    assert curve_values(a, "heldout_loss")[0] != curve_values(c, "heldout_loss")[0]  # init


def test_summary_agrees_with_the_curve(gpt_smoke_runs):
    r = gpt_smoke_runs(0)
    s = r.summary
    assert s["status"] == "completed" and s["steps"] == s["planned_steps"] == 20
    assert s["final_heldout_loss"] == r.curve[-1]["heldout_loss"]
    assert s["start_heldout_loss"] == r.curve[0]["heldout_loss"]
    assert s["flops"] == r.curve[-1]["flops"] == 2 * r.curve[1]["flops"] > 0
    assert s["levels"]["1"]["steps"] == 20 and s["levels"]["1"]["flops"] == s["flops"]
    assert s["final_heldout_bpb"] == pytest.approx(s["final_heldout_loss"] / math.log(2))
    assert s["error"] is None


def test_manifest_records_provenance(gpt_smoke_runs):
    r = gpt_smoke_runs(0)
    m = r.manifest
    assert m["status"] == "completed" and m["seed"] == 0
    assert (m["benchmark"], m["scale_name"], m["arm_name"]) == ("gpt", "smoke", "baseline")
    d = m["definition"]
    assert d["benchmark"] == "gpt" and d["family"] == "gpt2"
    assert d["scale"]["steps"] == 20 and d["scale"]["model"] == {"hidden": 32, "layers": 4,
                                                                  "heads": 2}
    assert d["arm"]["method"] == "baseline"
    env = m["environment"]
    git = env["git"]
    assert set(git) == {"commit", "dirty"}
    if (REPO / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", git["commit"]) and isinstance(git["dirty"], bool)
    for pkg in ("torch", "transformers", "timm", "fvcore"):
        assert env["versions"][pkg] == metadata.version(pkg), pkg
    assert isinstance(env["device_name"], str) and env["device_name"]
    assert env["threads"] == 1 and env["device"] == "cpu"
    assert m["data"]["heldout"] == list(load_text("shakespeare").heldout_names)
    assert m["data"]["inputs"]["vocab_size"] == 256 and m["data"]["inputs"]["seq_len"] == 32
    assert m["precision"] == "fp32"
    assert [s["kind"] for s in m["plan"]] == ["Train"]


def test_a_diverging_run_is_recorded_as_such(make_definition, tmp_path):
    doc = make_definition()
    doc["train"].update(lr=1e30, grad_clip=0.0)
    doc["scales"]["smoke"]["steps"] = 6
    bench = registry.validate(spec.parse(doc, "huge-lr.toml"))
    path = run_one(bench, "smoke", "baseline", 0, tmp_path, RunOptions(threads=1, progress=False))
    r = read_run(path)
    assert r.status == "diverged" and r.complete is False
    assert r.manifest["status"] == "diverged"
    assert re.match(r"training loss (nan|inf|-inf) at step \d", r.summary["error"])
    assert r.summary["steps"] < 6
    assert [x.status for x in find_runs(tmp_path)] == ["diverged"]


def test_levels_of_a_diverged_run_add_up(make_definition, tmp_path):
    doc = make_definition()
    doc["train"].update(lr=1e30, grad_clip=0.0)
    doc["scales"]["smoke"]["steps"] = 6
    bench = registry.validate(spec.parse(doc, "huge-lr.toml"))
    s = read_run(run_one(bench, "smoke", "baseline", 0, tmp_path,
                         RunOptions(threads=1, progress=False))).summary
    assert s["status"] == "diverged" and s["steps"] > 0
    assert sum(v["steps"] for v in s["levels"].values()) == s["steps"]
    assert sum(v["flops"] for v in s["levels"].values()) == s["flops"]


def test_a_nan_loss_diverges_even_with_a_sane_lr(make_definition, tmp_path, monkeypatch):
    import torch

    from suite.run import train

    real = train.loss_of

    def nan_loss(model, batch, out):
        loss, z = real(model, batch, out)
        return loss * torch.tensor(float("nan")) if model.training else loss, z

    monkeypatch.setattr(train, "loss_of", nan_loss)
    bench = registry.validate(spec.parse(make_definition(), "nan.toml"))
    r = read_run(run_one(bench, "smoke", "baseline", 0, tmp_path,
                         RunOptions(threads=1, progress=False)))
    assert r.status == "diverged" and not r.complete
    assert r.summary["error"].startswith("training loss nan")
    assert len(r.curve) == 1 and math.isfinite(r.curve[0]["heldout_loss"])  # only the start


# ---------------------------------------------------------------- what the curve measures


def _init_model(bench, seed):
    """The model a run of `bench` at smoke scale starts from with `seed`, and its data."""
    import torch

    from suite.families import FAMILIES
    from suite.run.context import load_data

    scale = bench.scale("smoke")
    family = FAMILIES[bench.family]
    data = load_data(family, scale)
    torch.manual_seed(seed)
    return family, scale, data, family.build(scale.model, registry.inputs_for(family, scale,
                                                                               data))


@pytest.mark.parametrize("seed", [0, 1])
def test_train_loss_at_step_0_is_the_fixed_training_subset(gpt_smoke_runs, builtin_benchmarks,
                                                            seed):
    """Every seed evaluates the same training subset (data.heldout_batches, split="train"):
    its step-0 train_loss is exactly evaluate() of its own initial model on that subset."""
    import torch

    from suite.data import heldout_batches
    from suite.families import logits
    from suite.run.train import evaluate

    family, scale, data, model = _init_model(builtin_benchmarks["gpt"], seed)
    subset = heldout_batches(data, family.task, scale.batch_size, scale.seq_len,
                             scale.eval.batches, split="train")
    ev = evaluate(model, subset, lambda m, x: logits(family, m, x), torch.device("cpu"), "fp32",
                  False)
    run = gpt_smoke_runs(seed)
    assert run.curve[0]["train_loss"] == ev["loss"]
    assert run.curve[0]["train_bpb"] == ev["loss"] / math.log(2)  # one byte per token
    assert run.summary["start_train_loss"] == ev["loss"]
    assert run.summary["final_train_loss"] == run.curve[-1]["train_loss"]
    assert run.manifest["evaluation"]["train_batches"] == scale.eval.batches == 2


def test_heldout_loss_is_the_token_weighted_mean_of_its_halves(make_definition, tmp_path):
    """Three held-out batches: halves of 1 and 2 batches; heldout_loss is their token-weighted
    mean (to 1e-12) at every point, and so is heldout_bpb."""
    doc = make_definition()
    doc["eval"]["batches"] = 3
    bench = registry.validate(spec.parse(doc, "three.toml"))
    r = read_run(run_one(bench, "smoke", "baseline", 0, tmp_path,
                         RunOptions(threads=1, progress=False)))
    ev = r.manifest["evaluation"]
    assert ev["heldout_batches"] == 3 and ev["heldout_halves_batches"] == [1, 2]
    na, nb = ev["heldout_halves_labelled"]
    assert (na, nb) == (2 * 16, 2 * 2 * 16) and ev["heldout_labelled"] == na + nb
    for row in r.curve:
        for unit in ("loss", "bpb"):
            a, b = row[f"heldout_{unit}_a"], row[f"heldout_{unit}_b"]
            assert abs(row[f"heldout_{unit}"] - (na * a + nb * b) / (na + nb)) <= 1e-12
            assert a != b  # two different halves: the noise is measured, not assumed
    assert r.summary["final_heldout_loss_a"] == r.curve[-1]["heldout_loss_a"]


def test_one_heldout_batch_has_only_a_second_half(make_definition, tmp_path):
    bench = registry.validate(spec.parse(make_definition(), "one.toml"))  # eval.batches = 1
    r = read_run(run_one(bench, "smoke", "baseline", 0, tmp_path,
                         RunOptions(threads=1, progress=False)))
    assert r.complete and r.manifest["evaluation"]["heldout_halves_batches"] == [0, 1]
    assert all("heldout_loss_a" not in row for row in r.curve)
    assert [row["heldout_loss_b"] for row in r.curve] == [row["heldout_loss"] for row in r.curve]


# ---------------------------------------------------------------- non-finite evaluations

LR_1E30 = """\
family = "decoder"

[data]
source = "shakespeare"

[train]
optimizer = "sgd"
lr = 1e30

[eval]
every = 1
batches = 1

[scales.smoke]
model = {{ hidden = 16, layers = 2, heads = 2 }}
seq_len = 16
batch_size = 4
steps = {steps}

[arms.baseline]
method = "baseline"
"""


@pytest.mark.parametrize("steps", [1, 3])
def test_a_nan_evaluation_diverges_and_the_next_seed_runs(tmp_path, capsys, steps):
    """lr 1e30: the first step's loss is finite (computed before the update), the evaluation
    after it is not. Before, steps=1 was recorded "completed" with a null held-out loss and
    steps=3 "diverged" at step 2; both then stopped `suite run` with a TypeError."""
    from suite.cli import main

    path = tmp_path / "huge.toml"
    path.write_text(LR_1E30.format(steps=steps))
    out = tmp_path / "runs"
    code = main(["--benchmarks", str(path), "run", "huge", "--scale", "smoke", "--seeds", "2",
                 "--out", str(out), "--threads", "1", "--no-progress"])
    assert code == 1  # not every run completed
    runs = find_runs(out)
    assert [r.seed for r in runs] == [0, 1]  # the second seed still ran
    for r in runs:
        assert r.status == r.summary["status"] == r.manifest["status"] == "diverged"
        assert not r.complete
        assert re.fullmatch(r"evaluation at step 1 \(level 1\): not finite: "
                            r"heldout_loss=(nan|inf), train_loss=(nan|inf), .*",
                            r.summary["error"]), r.summary["error"]
        assert r.summary["divergence"]["step"] == 1
        assert {"heldout_loss", "heldout_loss_b", "train_loss", "heldout_bpb", "train_bpb"} <= \
            set(r.summary["divergence"]["quantities"])
        # the curve holds measured numbers only: the start; the summary's finals are its values
        assert [row["step"] for row in r.curve] == [0]
        assert r.summary["final_heldout_loss"] == r.curve[0]["heldout_loss"]
        assert r.summary["steps"] == 1
    assert capsys.readouterr().out.count("| diverged") == 2


def test_a_nan_top1_or_transfer_evaluation_diverges_too(monkeypatch, builtin_benchmarks,
                                                        tmp_path):
    """Any evaluated value, not only the loss: a NaN top-1 right after the V-cycle's coalesce."""
    from suite.run import executor as runner

    real = runner.measure

    def poisoned(model, sets, *a):
        values = real(model, sets, *a)
        if sum(p.numel() for p in model.parameters()) < big:  # the coalesced model
            values["heldout_top1"] = math.nan
        return values

    family, scale, data, model = _init_model(builtin_benchmarks["deit"], 0)
    big = sum(p.numel() for p in model.parameters())
    monkeypatch.setattr(runner, "measure", poisoned)
    r = read_run(run_one(builtin_benchmarks["deit"], "smoke", "vcycle", 0, tmp_path,
                         RunOptions(threads=1, progress=False)))
    assert r.status == "diverged" and r.summary["divergence"]["quantities"] == ["heldout_top1"]
    first_stage = r.manifest["plan"][0]["steps"]  # level 1, then coalesce
    assert r.summary["steps"] == r.summary["divergence"]["step"] == first_stage
    assert r.summary["error"] == (f"evaluation at step {first_stage} (after coalesce): "
                                  "not finite: heldout_top1=nan")
    assert sum(v["steps"] for v in r.summary["levels"].values()) == r.summary["steps"]


def _old_run(root, rows, summary=None, manifest=MANIFEST):
    path = root / "old" / "seed-0"
    w = RunWriter(path, manifest)
    for row in rows:
        w.log(row)
    w.finish("completed", summary or {})
    return path


def test_old_completed_run_with_a_null_heldout_loss_is_not_a_result(tmp_results):
    """What the runner wrote before a NaN evaluation was a divergence: "completed" with
    nulls (json has no NaN). Readers must not take it for a result."""
    path = _old_run(tmp_results, [{"step": 0, "heldout_loss": 5.0, "train_loss": None},
                                  {"step": 1, "heldout_loss": math.nan, "train_loss": 5.1}],
                    {"final_heldout_loss": math.nan})
    assert '"heldout_loss": null' in (path / "curve.jsonl").read_text()
    r = read_run(path)
    assert r.summary["status"] == "completed" and not r.complete
    assert r.status == "diverged"
    assert r.problem == ("diverged", "curve row 2 (step 1): heldout_loss is None (null: not "
                                     "finite when written)")
    assert [x.status for x in find_runs(tmp_results)] == ["diverged"]


def test_readers_take_nan_and_infinity_tokens_as_null(tmp_results):
    path = _old_run(tmp_results, [{"step": 0, "heldout_loss": 5.0}])
    (path / "curve.jsonl").write_text('{"step": 0, "heldout_loss": 5.0}\n'
                                      '{"step": 1, "heldout_loss": NaN, "top1": Infinity}\n')
    r = read_run(path)
    assert r.curve[1] == {"step": 1, "heldout_loss": None, "top1": None}
    assert not r.complete and r.status == "diverged"


def test_an_old_run_keeps_its_null_running_train_loss(tmp_results):
    """Before the training subset, train_loss was the running mean, null at the start: still a
    result. A run that evaluates the subset (its manifest has `evaluation`) must have it."""
    rows = [{"step": 0, "heldout_loss": 5.0, "train_loss": None},
            {"step": 1, "heldout_loss": 4.0, "train_loss": 4.2}]
    assert read_run(_old_run(tmp_results, rows)).complete
    new = read_run(_old_run(tmp_results, rows, manifest={**MANIFEST, "evaluation": {}}))
    assert not new.complete and new.problem[0] == "diverged" and "train_loss" in new.problem[1]
    empty = read_run(_old_run(tmp_results, []))
    assert not empty.complete and empty.status == "failed"


@pytest.mark.parametrize(("manifest", "message"), [
    ({**MANIFEST, "seed": None}, "seed is None; expected an integer"),
    ({**MANIFEST, "seed": True}, "seed is True; expected an integer"),
    ({k: v for k, v in MANIFEST.items() if k != "arm_name"}, "arm_name is None; expected a name"),
])
def test_read_run_names_a_manifest_field_it_cannot_use(tmp_results, manifest, message):
    path = tmp_results / "seed-0"  # a run folder: seed-<n> (results.is_run_folder)
    atomic_write_json(path / "manifest.json", manifest)
    with pytest.raises(ResultsError, match=re.escape(f"{path / 'manifest.json'}: {message}")):
        read_run(path)


def test_read_run_refuses_a_summary_that_is_not_an_object(tmp_results):
    path = _old_run(tmp_results, [{"step": 0, "heldout_loss": 5.0}])
    (path / "summary.json").write_text("[1, 2]")
    with pytest.raises(ResultsError, match=re.escape(f"{path / 'summary.json'}: expected a JSON "
                                                     "object, found list")):
        read_run(path)


def test_only_run_folders_are_runs(tmp_results):
    """A manifest.json outside a seed-<n> folder, or under a hidden folder (a tracker's store:
    MLflow keeps a copy of each manifest as an artifact; job logs), is no run."""
    run = tmp_results / "smoke" / "b" / "a" / "seed-0"
    RunWriter(run, MANIFEST).finish("completed", {})
    for other in (tmp_results / ".mlruns" / "1" / "x" / "artifacts",
                  tmp_results / ".jobs" / "seed-3", tmp_results / "notes"):
        other.mkdir(parents=True)
        (other / "manifest.json").write_text((run / "manifest.json").read_text())
    assert [r.path for r in find_runs(tmp_results)] == [run]
    with pytest.raises(ResultsError, match="not a folder"):
        find_runs(run / "manifest.json")


def test_a_folder_of_tuning_trials_is_never_reported_compared_or_gated(tmp_path, capsys):
    """Pilot seeds are never reported: report, compare, power and gate refuse a folder of
    `suite tune` trials (manifests saying tuning.status "trial") in one line naming it and what
    to pass instead, exit 2; `status` still shows where they stand."""
    from suite.cli import main

    root = tmp_path / "tuning"
    for seed in (1000, 1001):
        path = run_dir(root, "smoke", "gpt", "baseline@lr=0.002", seed)
        path.mkdir(parents=True)
        atomic_write_json(path / "manifest.json", MANIFEST | {
            "benchmark": "gpt", "arm_name": "baseline@lr=0.002", "seed": seed, "status":
            "running", "tuning": {"status": "trial", "values": {"lr": 0.002}}})
    first = run_dir(root, "smoke", "gpt", "baseline@lr=0.002", 1000)
    said = (f"holds tuning trials ({first}: tuning.status 'trial'), pilot-seed runs that are "
            "never reported; pass a folder of `suite run` results (such as results/<scale>), "
            "not tune's --out\n")
    capsys.readouterr()
    for argv, folder in [(["report", "--results", str(root), "--scale", "smoke"], root / "smoke"),
                         (["compare", str(root)], root), (["power", str(root)], root / "smoke"),
                         (["gate", "--scale", "smoke", "--fresh", str(root), "--reference",
                           str(root)], root / "smoke")]:
        assert main(argv) == 2, argv
        assert capsys.readouterr().err == f"error: {folder}: {said}", argv
    with pytest.raises(ResultsError, match="holds tuning trials"):
        find_runs(root)
    assert [r.seed for r in find_runs(root, trials=True)] == [1000, 1001]
    assert main(["status", str(root)]) == 0
