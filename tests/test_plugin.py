"""The method plug-in API (issue 14): a method from a package of its own (tests/plugin_example),
pip-installed here, found through its entry point or named as module:attribute, runs through
`run`, `compare`, `report` and `gate` without a line of the suite changed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFINITION = """
description = "gpt smoke with a plug-in method"
family = "gpt2"
[data]
source = "shakespeare"
[train]
lr = 1e-3
warmup = 0.05
[gate]
min_seeds = 2
[scales.smoke]
model = { hidden = 32, layers = 2, heads = 2 }
seq_len = 32
batch_size = 8
steps = 20
eval = { every = 10, batches = 2 }
[arms.baseline]
method = "baseline"
[arms.shrink]
method = "shrink"
[arms.shrink-direct]
method = "suite_example_method:METHOD"
shrink = 0.8
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--no-build-isolation", "--no-index", "--target", str(site),
                           str(ROOT / "tests" / "plugin_example")], capture_output=True,
                          text=True, timeout=300)
    if done.returncode:
        pytest.fail(done.stderr[-2000:])
    return site


def suite(site, *args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "suite", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=600)


def test_a_method_from_its_own_package_runs_end_to_end(installed, tmp_path):
    (tmp_path / "example.toml").write_text(DEFINITION)
    defs = ["--benchmarks", str(tmp_path / "example.toml")]
    listed = suite(installed, "methods", cwd=tmp_path)
    assert "| shrink " in listed.stdout
    assert "train, shrink the weights, train on (plug-in: suite_example_method:METHOD)" in \
        listed.stdout
    run = suite(installed, *defs, "run", "example", "--scale", "smoke", "--seeds", "2",
                "--threads", "1", "--no-progress", "--out", "runs", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    for arm, factor in (("shrink", 0.9), ("shrink-direct", 0.8)):
        folder = tmp_path / "runs" / "smoke" / "example" / arm / "seed-0"
        manifest = json.loads((folder / "manifest.json").read_text())
        summary = json.loads((folder / "summary.json").read_text())
        assert manifest["method"]["name"] == "shrink" and summary["status"] == "completed"
        assert manifest["method"]["options"]["shrink"] == factor
        op = summary["operators"]["shrink"]
        assert op["count"] == 1 and op["flops"] > 0  # the meter counted the plug-in's operator
    compare = suite(installed, *defs, "compare", "runs", cwd=tmp_path)
    assert compare.returncode == 0 and "| shrink-direct " in compare.stdout, compare.stderr
    report = suite(installed, *defs, "report", "--results", "runs", "--scale", "smoke",
                   "--no-plots", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "shrink" in (tmp_path / "runs" / "smoke" / "REPORT.md").read_text()
    gate = suite(installed, *defs, "gate", "--scale", "smoke", "--fresh", "runs",
                 "--reference", "runs", cwd=tmp_path)
    assert gate.returncode == 0 and "numerics unchanged" in gate.stdout, gate.stdout[-2000:]


def test_an_unknown_or_broken_method_is_named(installed, tmp_path):
    (tmp_path / "bad.toml").write_text(DEFINITION.replace('"suite_example_method:METHOD"',
                                                          '"suite_example_method:NOPE"'))
    done = suite(installed, "--benchmarks", str(tmp_path / "bad.toml"), "list", cwd=tmp_path)
    assert done.returncode == 2
    assert "arms.shrink-direct.method: method 'suite_example_method:NOPE' cannot be loaded" in \
        done.stderr
