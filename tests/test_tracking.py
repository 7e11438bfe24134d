"""Experiment tracking with the real libraries, offline (suite/run/tracking.py): what each tracker
holds is read back and equals the run folder's curve; a resumed run continues the same tracked
run; a tracker that is not installed is one line."""

import json

import pytest

from suite.cli import main
from suite.registry import load_benchmarks
from suite.results import read_run
from suite.run import state as ckpt
from suite.run.executor import RunOptions, run_one

pytest.importorskip("tensorboard")
pytest.importorskip("wandb")
pytest.importorskip("mlflow")


def stopped_then_resumed(tmp_path, track):
    b = load_benchmarks()["gpt"]
    run_one(b, "smoke", "vcycle", 0, tmp_path, RunOptions(
        threads=1, progress=False, track=track,
        policy=ckpt.Policy(every_minutes=0, signal_at_step=12)))
    return read_run(run_one(b, "smoke", "vcycle", 0, tmp_path, RunOptions(
        threads=1, progress=False, track=track, resume=True)))


def test_tensorboard_event_files_hold_the_curve_of_a_resumed_run(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = stopped_then_resumed(tmp_path, "tensorboard")
    acc = EventAccumulator(str(run.path / "tensorboard"))
    acc.Reload()
    got = [(e.step, e.value) for e in acc.Scalars("heldout_loss")]
    want = [(r["step"], r["heldout_loss"]) for r in run.curve]
    assert [s for s, _ in got] == [s for s, _ in want]  # once each: the resume purged
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)
    assert "lr" in acc.Tags()["scalars"] and "level" in acc.Tags()["scalars"]
    events = [t.step for t in acc.Tensors("event/text_summary")]
    assert events == [r["step"] for r in run.curve if r.get("event")]
    assert json.loads(acc.Tensors("manifest/text_summary")[0].tensor_proto.string_val[0]
                      .decode().strip("`\n"))["arm_name"] == "vcycle"


def test_mlflow_file_store_holds_the_curve_and_one_run_across_a_resume(tmp_path):
    from mlflow.tracking import MlflowClient

    run = stopped_then_resumed(tmp_path, "mlflow")
    client = MlflowClient((tmp_path / ".mlruns").resolve().as_uri())
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1  # the resume continued the same tracked run
    hist = client.get_metric_history(runs[0].info.run_id, "heldout_loss")
    by_step = {m.step: m.value for m in hist}
    assert by_step == pytest.approx({r["step"]: r["heldout_loss"] for r in run.curve})
    assert runs[0].data.tags["status"] == "completed" and runs[0].info.status == "FINISHED"
    from suite.results import find_runs

    assert [r.path for r in find_runs(tmp_path)] == [run.path]  # its artifacts are no run


def test_wandb_offline_run_is_resumed_under_its_id(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = stopped_then_resumed(tmp_path, "wandb")
    payload_ids = {p.name.rsplit("-", 1)[-1] for p in (run.path / "wandb").glob("offline-run-*")}
    assert len(payload_ids) == 1  # both legs wrote to one run id
    files = list((run.path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2 and all(f.stat().st_size > 0 for f in files)


def test_a_tracker_that_is_not_installed_is_one_line(tmp_path, capsys, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_wandb(name, *a, **k):
        if name == "wandb":
            raise ImportError("No module named 'wandb'", name="wandb")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    assert main(["run", "gpt", "--scale", "smoke", "--arms", "baseline", "--track", "wandb",
                 "--out", str(tmp_path), "--threads", "1"]) == 2
    assert "--track wandb: wandb is not installed; pip install 'multilevel-suite[track]'" in \
        capsys.readouterr().err
    assert not any(tmp_path.rglob("manifest.json"))  # no run folder left behind
