"""Checkpoint and resume (issue 13): a run stopped at any step -- inside a coarse stage, right
after a transfer, at its very end -- and resumed draws the uninterrupted run's curve, bit for
bit on CPU; the signal path, the manifest's resumes and the errors."""

import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from suite import methods
from suite.registry import load_benchmarks
from suite.results import CheckpointError, read_run
from suite.run import state as ckpt
from suite.run.context import build_context
from suite.run.executor import RunOptions, run_one
from suite.run.resume import resume_command

ARMS = [("gpt", "baseline"), ("gpt", "vcycle"), ("bert-large", "vcycle3"),
        ("ode", "ode-multilevel")]
TIMING = {"wall_s"}  # the one field a resumed curve may not share


def kill_points(bench: str, arm: str) -> list[int]:
    """Training steps (cumulative, coarse helper steps included) to stop after: the first,
    the middle of the first stage, the first step after the first and the last transfer, the
    middle of a coarse stage, one drawn at random (seeded by the arm), the last but one and
    the last."""
    ctx, _, _ = build_context(load_benchmarks()[bench], "smoke", arm, RunOptions(threads=1))
    stages, done, after_transfer = [], 0, False
    for s in ctx.plan.steps:
        if isinstance(s, methods.Transfer):
            after_transfer = True
            continue
        stages.append((done, s.steps, s.level, after_transfer))
        done, after_transfer = done + s.steps, False
    points = {1, max(1, stages[0][1] // 2), done - 1, done,
              random.Random(f"{bench}/{arm}").randint(1, done)}
    moved = [start + 1 for start, _, _, moved in stages if moved]
    points |= set(moved[:1] + moved[-1:])
    coarse = [(start, n) for start, n, level, _ in stages if level > 1]
    if coarse:
        start, n = coarse[len(coarse) // 2]
        points.add(start + max(1, n // 2))
    return sorted(points)


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    return {(b, a): read_run(run_one(load_benchmarks()[b], "smoke", a, 0, root,
                                     RunOptions(threads=1, progress=False))) for b, a in ARMS}


@pytest.mark.parametrize(("bench", "arm"), ARMS)
def test_a_resumed_run_draws_the_uninterrupted_curve(uninterrupted, tmp_path, bench, arm):
    full = uninterrupted[(bench, arm)]
    assert full.complete and not (full.path / "checkpoints").exists()
    b = load_benchmarks()[bench]
    points = kill_points(bench, arm)
    assert len(points) >= 3, points
    for k in points:
        out = tmp_path / f"k{k}"
        stopped = read_run(run_one(b, "smoke", arm, 0, out,
                                   RunOptions(threads=1, progress=False, policy=ckpt.Policy(
                                       every_minutes=0, signal_at_step=k))))
        assert stopped.status == "preempted", (k, stopped.summary["error"])
        assert stopped.summary["steps"] == k
        assert f"SIGTERM after step {k}; state in step-{k:08d}.pt" in stopped.summary["error"]
        done = read_run(run_one(b, "smoke", arm, 0, out,
                                RunOptions(threads=1, progress=False, resume=True)))
        assert done.complete, (k, done.summary["error"])
        assert without_timing(done.curve) == without_timing(full.curve), k
        for key in ("steps", "flops", "flops_blocks", "final_heldout_loss", "final_train_loss",
                    "final_train_loss_running", "operators"):
            got, want = done.summary[key], full.summary[key]
            if key == "operators":  # operator wall time differs; counts and FLOPs may not
                got = {o: {**v, "wall_s": 0} for o, v in got.items()}
                want = {o: {**v, "wall_s": 0} for o, v in want.items()}
            assert got == want, (k, key)
        assert [r["step"] for r in done.manifest["resumes"]] == [k]
        assert done.manifest["resumes"][0]["checkpoint"] == f"step-{k:08d}.pt"
        assert not (done.path / "checkpoints").exists()  # a result keeps no state


def test_periodic_checkpoints_keep_the_newest(tmp_path):
    b = load_benchmarks()["gpt"]
    policy = ckpt.Policy(every_steps=3, keep=2, signal_at_step=10)
    run = read_run(run_one(b, "smoke", "baseline", 0, tmp_path,
                           RunOptions(threads=1, progress=False, policy=policy)))
    assert run.status == "preempted"
    kept = sorted(p.name for p in (run.path / "checkpoints").iterdir())
    assert kept == ["step-00000009.pt", "step-00000010.pt"]  # 3, 6 deleted; 10: the signal
    payload = ckpt.read(run.path / "checkpoints" / kept[-1])
    assert payload["clock"]["step"] == 10 and payload["position"] == 0
    assert payload["stage_step"] == 10 and len(payload["curve"]) == 2  # steps 0 and 10


def test_resume_keeps_completed_runs_and_refuses_another_definition(tmp_path):
    b = load_benchmarks()["gpt"]
    path = run_one(b, "smoke", "baseline", 0, tmp_path, RunOptions(threads=1, progress=False))
    before = (path / "summary.json").read_text()
    assert run_one(b, "smoke", "baseline", 0, tmp_path,
                   RunOptions(threads=1, progress=False, resume=True)) == path
    assert (path / "summary.json").read_text() == before  # left as it was
    run_one(b, "smoke", "vcycle", 0, tmp_path,
            RunOptions(threads=1, progress=False,
                       policy=ckpt.Policy(every_minutes=0, signal_at_step=4)))
    vpath = path.parent.parent / "vcycle" / "seed-0"
    manifest = json.loads((vpath / "manifest.json").read_text())
    manifest["definition"]["scale"]["train"]["lr"] *= 2
    (vpath / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"step-00000004\.pt: was written by a run whose "
                                              r"definition differs at 'scale\.train\.lr'"):
        run_one(b, "smoke", "vcycle", 0, tmp_path,
                RunOptions(threads=1, progress=False, resume=True))


def test_a_broken_checkpoint_is_named(tmp_path):
    bad = tmp_path / "step-00000001.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=re.escape(f"{bad}: not a readable checkpoint")):
        ckpt.read(bad)


def test_a_full_disk_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda _: type("U", (), {"free": 10})())
    with pytest.raises(CheckpointError, match="0.00 GB free, a checkpoint needs"):
        ckpt.write(tmp_path, {"clock": {"step": 3}, "x": b"", "t": [1] * 10}, keep=2)
    assert not list((tmp_path / "checkpoints").glob("*"))


def test_signals_are_requests_and_the_handlers_come_back():
    before = signal.getsignal(signal.SIGUSR1)
    p = ckpt.Preemption().install()
    os.kill(os.getpid(), signal.SIGUSR1)
    assert p.requested == "SIGUSR1"
    p.restore()
    assert signal.getsignal(signal.SIGUSR1) is before


def test_a_signal_before_a_runs_handlers_is_taken_over_by_them():
    """The `run` command's handlers cover the gaps between runs; a signal there (a run's setup)
    becomes the run's own request, so it stops at its first step boundary."""
    before = signal.getsignal(signal.SIGUSR1)
    outer = ckpt.Preemption().install()
    os.kill(os.getpid(), signal.SIGUSR1)
    inner = ckpt.Preemption().install()
    assert (outer.requested, inner.requested) == ("SIGUSR1", "SIGUSR1")
    inner.restore()
    fresh = ckpt.Preemption()
    outer.restore()
    assert fresh.install().requested is None  # nothing pending once the outer ones are gone
    fresh.restore()
    assert signal.getsignal(signal.SIGUSR1) is before


def test_a_signal_between_runs_starts_no_further_run(tmp_path, capsys, monkeypatch):
    import suite.run.executor
    from suite.cli import main

    real = suite.run.executor.run_one

    def then_signal(*args, **kwargs):
        path = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGUSR1)  # as a scheduler would, between two seeds
        return path

    monkeypatch.setattr(suite.run.executor, "run_one", then_signal)
    code = main(["run", "gpt", "--scale", "smoke", "--arms", "baseline", "--seeds", "2",
                 "--threads", "1", "--no-progress", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert read_run(tmp_path / "smoke" / "gpt" / "baseline" / "seed-0").complete
    assert not (tmp_path / "smoke" / "gpt" / "baseline" / "seed-1").exists()
    assert "SIGUSR1 between runs: the runs above are kept, no further run starts; continue " \
        "with:" in err
    assert shlex.split(err.strip().splitlines()[-1])[-1] == "--resume"


def test_a_signal_after_the_last_run_says_nothing_is_left(tmp_path, capsys, monkeypatch):
    """Found by a trial: SIGTERM after the last run ended the process with 143 and no word."""
    import suite.run.executor
    from suite.cli import main

    real = suite.run.executor.run_one

    def then_signal(*args, **kwargs):
        path = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return path

    monkeypatch.setattr(suite.run.executor, "run_one", then_signal)
    before = signal.getsignal(signal.SIGTERM)
    code = main(["run", "gpt", "--scale", "smoke", "--arms", "baseline", "--seeds", "1",
                 "--threads", "1", "--no-progress", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0
    assert read_run(tmp_path / "smoke" / "gpt" / "baseline" / "seed-0").complete
    assert err.strip().splitlines()[-1] == (
        "SIGTERM after the last run: every run was finished, nothing is left to resume")
    assert "| baseline |      0 | completed |" in out
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_second_ctrl_c_ends_with_one_line_and_no_result(tmp_path, capsys, monkeypatch):
    """Found by a trial: a second Ctrl-C outside the training loop (a git subprocess while
    writing the manifest) ended with a traceback."""
    import suite.run.executor
    from suite.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(suite.run.executor, "run_one", interrupted)
    code = main(["run", "gpt", "--scale", "smoke", "--arms", "baseline", "--seeds", "1",
                 "--threads", "1", "--no-progress", "--out", str(tmp_path)])
    assert code == 130
    assert capsys.readouterr().err.strip() == (
        "python -m suite: interrupted; a run cut off is recorded as interrupted or left without "
        "a summary, never counted as a result")


def test_the_resume_command_under_torchrun_keeps_the_process_count(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert shlex.split(resume_command(["run", "gpt", "--out", "a b"])) == [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "4", "-m", "suite",
        "run", "gpt", "--out", "a b", "--resume"]
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert shlex.split(resume_command(["run", "gpt", "--resume"])) == [
        sys.executable, "-m", "suite", "run", "gpt", "--resume"]


def test_the_command_line_prints_how_to_continue(tmp_path):
    """The real path: SIGTERM to the process (sent by itself on cue), the state written, the
    remaining seeds not started, and the printed command continues to the same result."""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SUITE_SIGNAL_AT_STEP": "7",
           "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "suite", "run", "gpt", "--scale", "smoke", "--arms",
           "baseline", "--seeds", "2", "--threads", "1", "--no-progress", "--out",
           str(tmp_path)]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 1, first.stderr[-2000:]
    assert "preempted (SIGTERM after step 7; state in step-00000007.pt); continue with:" in \
        first.stderr
    printed = shlex.split(first.stderr.splitlines()[-1])
    assert printed == [*cmd, "--resume"]  # this interpreter, not a bare `python`
    assert not (tmp_path / "smoke" / "gpt" / "baseline" / "seed-1").exists()
    env.pop("SUITE_SIGNAL_AT_STEP")
    again = subprocess.run(printed, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    done = read_run(tmp_path / "smoke" / "gpt" / "baseline" / "seed-0")
    fresh = read_run(run_one(load_benchmarks()["gpt"], "smoke", "baseline", 0, tmp_path / "fresh",
                             RunOptions(threads=1, progress=False)))
    assert without_timing(done.curve) == without_timing(fresh.curve)
    assert read_run(tmp_path / "smoke" / "gpt" / "baseline" / "seed-1").complete


KILL_DURING_IMPORT = """
import importlib.abc, os, runpy, signal, sys

class SignalOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "suite.cli":  # the seconds of importing torch, as a scheduler sees them
            os.kill(os.getpid(), signal.SIGTERM)
        return None

sys.meta_path.insert(0, SignalOnImport())
sys.argv = ["suite", "list"]
runpy.run_module("suite", run_name="__main__")
"""


def test_a_signal_while_starting_is_one_line_not_a_traceback():
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", KILL_DURING_IMPORT], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == "python -m suite: SIGTERM while starting; nothing was run " \
        "or written"


def test_a_kill_between_the_summary_and_the_checkpoints_leaves_a_kept_result(tmp_path,
                                                                             monkeypatch):
    """Field fault: finish deleted the checkpoints before it wrote summary.json, so a
    scheduler's kill between the two left neither, and --resume retrained the whole run. Now
    the summary comes first; a kill after it leaves a completed run that --resume keeps."""
    from suite import results

    b = load_benchmarks()["gpt"]
    policy = ckpt.Policy(every_steps=5, every_minutes=0)

    def killed(path, *args, **kwargs):
        if Path(path).name == "checkpoints":
            raise KeyboardInterrupt  # the kill lands right after the summary
        return real(path, *args, **kwargs)

    real = results.shutil.rmtree
    monkeypatch.setattr(results.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        run_one(b, "smoke", "baseline", 0, tmp_path, RunOptions(threads=1, progress=False,
                                                                policy=policy))
    monkeypatch.undo()
    run = read_run(tmp_path / "smoke" / "gpt" / "baseline" / "seed-0")
    assert run.complete and (run.path / "checkpoints").is_dir()  # the kill's state
    summary = (run.path / "summary.json").read_text()
    again = read_run(run_one(b, "smoke", "baseline", 0, tmp_path,
                             RunOptions(threads=1, progress=False, resume=True)))
    assert (again.path / "summary.json").read_text() == summary  # kept, not retrained
    assert "resumes" not in again.manifest and not (again.path / "checkpoints").exists()


@pytest.mark.parametrize(("change", "key"), [
    ({"precision": "bf16"}, "precision was 'fp32', this one has 'bf16'; resume it with the "
                            "same --precision"),
    ({"accum": 2}, "accum was 1, this one has 2; resume it with the same --accum"),
    ({"data": "other"}, "data.fingerprint was {'heldout_tokens': 12000"),
])
def test_a_resume_that_would_mix_two_runs_is_refused(tmp_path, change, key):
    """Field fault: --resume with another --precision, --accum or a replaced data file was
    accepted, and the manifest kept the first leg's settings (a run half fp32 and half bf16
    was recorded, and gated in the exact tier, as fp32); a data file with another vocabulary
    ended in a raw load_state_dict traceback. Each is refused, naming the key."""
    from suite.spec import with_data_source

    text = tmp_path / "text"
    text.mkdir()
    for i in range(4):  # two vocabularies: bytes a-d, or bytes a-z
        (text / f"w{i}.txt").write_text("abcd" * 3000)
    b = with_data_source(load_benchmarks()["gpt"], "smoke", str(text))
    out = tmp_path / "out"
    stopped = read_run(run_one(b, "smoke", "baseline", 0, out, RunOptions(
        threads=1, progress=False, policy=ckpt.Policy(every_minutes=0, signal_at_step=5))))
    assert stopped.status == "preempted"
    opts = {"threads": 1, "progress": False, "resume": True}
    if change.get("data"):
        from suite.run import context

        for i in range(4):
            (text / f"w{i}.txt").write_text("abcdefghijklmnopqrstuvwxyz" * 500)
        context._DATA_CACHE.clear()  # a resume is a new process: it reads the files again
    else:
        opts |= change
    with pytest.raises(CheckpointError, match=re.escape(key)):
        run_one(b, "smoke", "baseline", 0, out, RunOptions(**opts))


def test_each_resumed_leg_records_its_threads_and_host(tmp_path):
    b = load_benchmarks()["gpt"]
    run_one(b, "smoke", "baseline", 0, tmp_path, RunOptions(
        threads=1, progress=False, policy=ckpt.Policy(every_minutes=0, signal_at_step=5)))
    done = read_run(run_one(b, "smoke", "baseline", 0, tmp_path,
                            RunOptions(threads=2, progress=False, resume=True)))
    leg = done.manifest["resumes"][0]
    assert leg["threads"] == 2 and done.manifest["environment"]["threads"] == 1
    assert leg["host"] == os.uname().nodename and leg["device_name"]


KEPT_BUT = "a completed run that --resume would keep, but its "
DO = "; to train this one use another --out, or delete the folder (to keep it, run with "


def test_resume_refuses_a_completed_run_of_another_definition(tmp_path, mini_toml, capsys):
    """Field fault: `run --resume` kept a completed run folder without checking its definition
    (only a checkpoint was checked), so a run of 4 steps was kept, and reported, as the result
    of a definition of 6. A completed run of another definition is refused in one line (exit
    2) naming the folder, the key and what to do, under --jobs too; one of the same definition
    is kept, not retrained."""
    from suite.cli import main

    toml, out = tmp_path / "mini.toml", tmp_path / "runs"
    toml.write_text(mini_toml())
    cmd = ["--benchmarks", str(toml), "run", "mini", "--scale", "smoke", "--threads", "1",
           "--no-progress", "--seeds", "1", "--arms", "baseline", "--out", str(out)]
    assert main(cmd) == 0
    folder = out / "smoke" / "mini" / "baseline" / "seed-0"
    summary = (folder / "summary.json").read_text()
    assert main([*cmd, "--resume"]) == 0  # the same definition: kept as it is
    assert (folder / "summary.json").read_text() == summary
    assert "resumes" not in read_run(folder).manifest
    toml.write_text(mini_toml().replace("steps = 4", "steps = 6"))
    capsys.readouterr()
    assert main([*cmd, "--resume"]) == 2
    line = f"{folder}: {KEPT_BUT}definition differs at 'scale.steps'{DO}the definition it " \
        "started with)"
    assert capsys.readouterr().err == f"error: {line}\n"
    assert main([*cmd, "--resume", "--jobs", "2"]) == 2  # each job a process of its own
    assert capsys.readouterr().err.splitlines()[-1] == f"error: baseline seed 0: {line}"
    assert (folder / "summary.json").read_text() == summary  # left as it was, never retrained


def test_resume_refuses_a_completed_run_of_other_settings(tmp_path):
    """A completed run is checked for what a checkpoint is checked for (precision, --accum,
    processes, compile, device, data): kept, it would stand for a run it is not."""
    b = load_benchmarks()["gpt"]
    path = run_one(b, "smoke", "baseline", 0, tmp_path, RunOptions(threads=1, progress=False))
    with pytest.raises(CheckpointError, match=re.escape(
            f"{path}: {KEPT_BUT}accum was 1, this one has 2{DO}the same --accum)")):
        run_one(b, "smoke", "baseline", 0, tmp_path,
                RunOptions(threads=1, progress=False, resume=True, accum=2))
