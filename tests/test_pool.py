"""`run --jobs N` (suite/run/pool.py): the grid as separate processes gives every run the curve
it has alone, bit for bit on CPU; its jobs' options, and the table it prints."""

import json

import pytest

from suite.cli import main
from suite.cli_train import _names
from suite.run.pool import strip

TIMING = {"wall_s"}


def curves(root, bench="gpt", scale="smoke"):
    out = {}
    for f in sorted((root / scale / bench).glob("*/seed-*/curve.jsonl")):
        rows = [json.loads(x) for x in f.read_text().splitlines()]
        out[f"{f.parent.parent.name}/{f.parent.name}"] = [
            {k: v for k, v in r.items() if k not in TIMING} for r in rows]
    return out


def test_a_pool_of_jobs_draws_the_curves_of_runs_alone(tmp_path, capsys):
    args = ["run", "gpt", "--scale", "smoke", "--arms", "baseline,vcycle", "--seeds", "2",
            "--threads", "1", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "alone")]) == 0
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "pool"), "--jobs", "2"]) == 0
    out = capsys.readouterr()
    alone, pool = curves(tmp_path / "alone"), curves(tmp_path / "pool")
    assert sorted(pool) == ["baseline/seed-0", "baseline/seed-1", "vcycle/seed-0",
                            "vcycle/seed-1"]
    assert pool == alone  # every number of every curve
    assert "grid: 4 runs as 2 jobs at a time" in out.out
    assert "grid: 4 done, 0 running, 0 stopped, 0 failed, 0 left" in out.err
    assert out.out.count("| completed |") == 4
    logs = sorted(p.name for p in (tmp_path / "pool" / ".jobs" / "smoke" / "gpt").iterdir())
    assert logs == ["baseline.seed-0.log", "baseline.seed-1.log", "vcycle.seed-0.log",
                    "vcycle.seed-1.log"]
    man = json.loads((tmp_path / "pool/smoke/gpt/vcycle/seed-1/manifest.json").read_text())
    assert man["environment"]["threads"] == 1 and "--first-seed 1 --seeds 1" in man["command"]


def test_a_failed_job_is_counted_and_named(tmp_path, capsys):
    assert main(["run", "gpt", "--scale", "smoke", "--arms", "baseline,vcycle@levels=9",
                 "--jobs", "2", "--threads", "1", "--out", str(tmp_path)]) == 2
    assert "arms.vcycle@levels=9.levels" in capsys.readouterr().err  # checked before any job


def test_the_pool_sets_each_jobs_own_options():
    argv = ["--benchmarks", "x.toml", "run", "gpt", "--jobs", "2", "--arms=a,b", "--seeds", "3",
            "--first-seed", "1", "--threads", "4", "--device", "cpu", "--resume", "--sweep",
            "alpha", "--matched", "--out", "o", "--executor", "slurm", "--slurm-time=5",
            "--slurm-option", "qos=x", "--wait"]
    assert strip(argv) == ["--benchmarks", "x.toml", "run", "gpt", "--resume", "--out", "o"]


@pytest.mark.parametrize(("text", "names"), [
    ("baseline,vcycle@alpha=0.5,lr=0.002,gstack", ["baseline", "vcycle@alpha=0.5,lr=0.002",
                                                   "gstack"]),
    ("a, b@x=1 ,c", ["a", "b@x=1", "c"]),
    ("", None),
])
def test_a_variants_own_commas_stay_in_its_name(text, names):
    assert _names(text) == names


def test_an_interrupted_pool_says_what_stopped_and_how_to_go_on(tmp_path, long_toml):
    """Found by a new-user trial: Ctrl-C to a pool reported its stopped runs as failed, a job
    that never started as 'exit None' with a log that does not exist, and no way to go on."""
    import os
    import signal
    import subprocess
    import sys
    import time

    definition = tmp_path / "long.toml"
    definition.write_text(long_toml(600))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "suite", "--benchmarks", str(definition), "run", "long",
           "--scale", "smoke", "--arms", "baseline", "--seeds", "3", "--jobs", "2", "--threads",
           "1", "--out", str(out)]
    pool = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    first = out / "smoke" / "long" / "baseline" / "seed-0" / "curve.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (first.exists() and first.read_text().count("\n") > 2):
        time.sleep(0.05)
    pool.send_signal(signal.SIGINT)
    stdout, stderr = pool.communicate(timeout=120)
    assert pool.returncode == 1, stderr
    assert "2 stopped, 0 failed" in stderr, stderr
    assert "| not started" in stdout and "exit None" not in stdout
    assert "continue the unfinished runs with:" in stderr and "--resume" in stderr
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("| completed |") == 3


def test_the_cpu_default_fills_the_cores_with_single_thread_runs(monkeypatch):
    """Issue 24: on CPU, without --jobs and --threads, as many runs at once as cores (never more
    than the runs asked for), one thread each; --threads alone is one run at a time; --jobs N
    splits the cores (threads None: grid_jobs divides them); a torchrun rank is one run."""
    from argparse import Namespace

    from suite.cli_train import jobs_and_threads

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    monkeypatch.delenv("SUITE_THREADS", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)

    def shape(runs, jobs=None, threads=None, device="cpu"):
        return jobs_and_threads(Namespace(jobs=jobs, threads=threads, device=device), runs)

    assert shape(55) == (8, 1)
    assert shape(3) == (3, 1)
    assert shape(1) == (1, 1)  # a run alone draws the curve it draws in a grid
    assert shape(55, threads=4) == (1, 4)
    assert shape(55, jobs=2) == (2, None)
    assert shape(55, jobs=2, threads=3) == (2, 3)
    assert shape(55, device="cuda:1") == (1, None)
    monkeypatch.setenv("SUITE_THREADS", "2")
    assert shape(55) == (1, None)
    monkeypatch.delenv("SUITE_THREADS")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert shape(55) == (1, None)
