"""The Slurm path with a real one-node cluster (Debian's slurm-wlm and munge, brought up by
ci/slurm-up.sh): a grid submitted as one job array through submitit, one task requeued while its
run trains, every curve identical to a local run's."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suite.cli import main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node cluster for this module; skipped, saying why, where it cannot run."""
    missing = [t for t in ("slurmctld", "slurmd", "munged", "sbatch") if not shutil.which(t)]
    if missing:
        pytest.skip(f"no Slurm here ({', '.join(missing)} not found): apt-get install "
                    "slurm-wlm munge (.ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("slurmd must run as root to start jobs")
    pytest.importorskip("submitit")
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SUITE_SLURM_DIR": str(state)}
    up = subprocess.run(["bash", str(ROOT / "ci" / "slurm-up.sh")], env=env,
                        capture_output=True, text=True, timeout=120)
    if up.returncode != 0:  # a machine whose daemons cannot start (no root in a container...)
        subprocess.run(["bash", str(ROOT / "ci" / "slurm-down.sh")], env=env, timeout=60)
        tail = (up.stderr.strip().splitlines() or ["no message"])[-1]
        pytest.skip(f"the one-node Slurm cluster did not come up here: {tail}")
    conf = str(state / "slurm.conf")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    yield conf
    subprocess.run(["bash", str(ROOT / "ci" / "slurm-down.sh")], env=env, timeout=60)
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


def curves(root):
    out = {}
    for f in sorted(Path(root).glob("smoke/long/*/seed-*/curve.jsonl")):
        out[f"{f.parent.parent.name}/{f.parent.name}"] = [
            {k: v for k, v in json.loads(x).items() if k != "wall_s"}
            for x in f.read_text().splitlines()]
    return out


def sh(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()


def test_a_requeued_array_task_resumes_and_every_curve_is_the_local_one(cluster, tmp_path,
                                                                      long_toml):
    definition = tmp_path / "long.toml"
    definition.write_text(long_toml(240))
    args = ["--benchmarks", str(definition), "run", "long", "--scale", "smoke", "--arms",
            "baseline,vcycle", "--seeds", "2", "--threads", "1", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "local")]) == 0
    out = tmp_path / "slurm"
    said = subprocess.run([sys.executable, "-m", "suite", *args, "--out", str(out),
                           "--executor", "slurm"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert said.returncode == 0, said.stderr
    array = re.search(r"as Slurm array (\d+)", said.stdout).group(1)
    victim = out / "smoke" / "long" / "baseline" / "seed-0"
    deadline = time.time() + 240
    while time.time() < deadline:  # its run is training: some evaluations, no summary
        rows = (victim / "curve.jsonl").read_text().count("\n") \
            if (victim / "curve.jsonl").exists() else 0
        if rows >= 3 and not (victim / "summary.json").exists():
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"task {array}_0 never trained; {sh('squeue')}")
    assert sh("scontrol", "requeue", f"{array}_0") == ""
    for _ in range(100):  # Slurm holds a requeued job ~2 min; an operator's 'now' skips that
        if "PENDING" in sh("scontrol", "show", "job", f"{array}_0"):
            sh("scontrol", "update", f"jobid={array}_0", "BeginTime=now")
            break
        time.sleep(0.1)
    while time.time() < deadline + 240 and sh("squeue", "-h", "-j", array):
        time.sleep(0.5)
    assert sh("squeue", "-h", "-j", array) == "", "the array did not finish in time"
    assert curves(out) == curves(tmp_path / "local")  # every number, requeued one included
    man = json.loads((victim / "manifest.json").read_text())
    assert len(man["resumes"]) == 1 and man["status"] == "completed"
