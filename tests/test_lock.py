"""One live job per run folder (suite/run/lock.py): a live holder is named, a dead one's lock is
taken over, and the lock goes when the run ends."""

import json
import os
import re
import socket
import subprocess
import time

import pytest

from suite.cli import main
from suite.registry import load_benchmarks
from suite.results import read_run
from suite.run import lock as L
from suite.run.executor import RunOptions, run_one


def hold(folder, pid, host=None, age=0.0):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / L.NAME
    path.write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid,
                                "since": "2026-12-02T07:00:00+0000"}))
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_a_folder_a_live_job_holds_is_refused_naming_it(tmp_path, capsys):
    folder = tmp_path / "smoke" / "gpt" / "baseline" / "seed-0"
    live = subprocess.Popen(["sleep", "60"])
    try:
        hold(folder, live.pid)
        assert main(["run", "gpt", "--scale", "smoke", "--arms", "baseline", "--out",
                     str(tmp_path), "--no-progress", "--threads", "1"]) == 2
        err = capsys.readouterr().err
        assert f"seed-0: held by pid {live.pid} on host {socket.gethostname()} since " \
               "2026-12-02T07:00:00+0000: another job is running this run; if it is gone, " \
               f"delete {folder / L.NAME}" in err
        assert not (folder / "manifest.json").exists()  # nothing of the holder's touched
    finally:
        live.kill()


def test_a_dead_jobs_lock_is_taken_over_and_released_at_the_end(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    folder = tmp_path / "smoke" / "gpt" / "baseline" / "seed-0"
    hold(folder, dead.pid)
    path = run_one(load_benchmarks()["gpt"], "smoke", "baseline", 0, tmp_path,
                   RunOptions(threads=1, progress=False))
    assert read_run(path).complete and not (folder / L.NAME).exists()


def test_another_hosts_lock_is_stale_only_once_its_heartbeat_stops(tmp_path):
    fresh = hold(tmp_path / "a", 1, host="node-7")
    old = hold(tmp_path / "b", 1, host="node-7", age=L.STALE_S + 1)
    assert not L.stale(json.loads(fresh.read_text()), fresh)
    assert L.stale(json.loads(old.read_text()), old)
    with pytest.raises(L.RunLockError, match="held by pid 1 on host node-7"):
        with L.RunLock(tmp_path / "a"):
            pass
    with L.RunLock(tmp_path / "b") as held:  # taken over
        assert json.loads(held.path.read_text())["pid"] == os.getpid()
    assert not (tmp_path / "b" / L.NAME).exists()


def test_a_lock_is_released_only_by_its_holder(tmp_path):
    with L.RunLock(tmp_path) as held:
        hold(tmp_path, 99999999, host="node-7")  # someone replaced it (a stale takeover)
    assert (tmp_path / L.NAME).exists() and held.active


def test_status_says_where_a_grid_stands(tmp_path, capsys):
    import shutil

    from suite.run import state as ckpt

    b = load_benchmarks()["gpt"]
    run_one(b, "smoke", "baseline", 0, tmp_path, RunOptions(threads=1, progress=False))
    run_one(b, "smoke", "baseline", 1, tmp_path, RunOptions(
        threads=1, progress=False, policy=ckpt.Policy(every_minutes=0, signal_at_step=10)))
    seed1 = tmp_path / "smoke" / "gpt" / "baseline" / "seed-1"
    live = seed1.with_name("seed-2")  # a run still going: no summary, a fresh lock
    shutil.copytree(seed1, live)
    (live / "summary.json").unlink()
    man = json.loads((live / "manifest.json").read_text()) | {"seed": 2, "status": "running"}
    (live / "manifest.json").write_text(json.dumps(man))
    hold(live, os.getpid())
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    row = [c.strip() for c in out.splitlines()[2].strip("|").split("|")]
    assert row == ["smoke", "gpt", "3", "1", "1", "1", "0", "0", "0"]
    assert re.search(rf"gpt/baseline/seed-2 +\| 10/20 +\| pid {os.getpid()} on ", out), out
    assert "ETA of the running runs: about 0 min at the " in out


def test_status_of_a_folder_without_runs_says_so(tmp_path, capsys):
    (tmp_path / "smoke").mkdir()
    assert main(["status", str(tmp_path)]) == 2
    assert "no run folders" in capsys.readouterr().err
