"""Shared fixtures: a minimal valid definition, its TOML text, results roots and smoke runs."""

import copy
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # a hub call hangs for a minute offline; set before imports

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

# A tiny gpt2 definition with one scale: valid for spec.parse and registry.validate.
_MINI = {
    "name": "mini",
    "family": "gpt2",
    "data": {"source": "shakespeare"},
    "train": {"lr": 1e-3, "optimizer": "adamw"},
    "eval": {"every": 2, "batches": 1},
    "scales": {
        "smoke": {
            "model": {"hidden": 16, "layers": 1, "heads": 2},
            "seq_len": 16,
            "batch_size": 2,
            "steps": 4,
        },
    },
    "arms": {"baseline": {"method": "baseline"}},
}

MINI_TOML = """\
name = "{name}"
family = "gpt2"

[data]
source = "shakespeare"

[train]
lr = 1e-3

[eval]
every = 2
batches = 1

[scales.smoke]
model = {{ hidden = 16, layers = 1, heads = 2 }}
seq_len = 16
batch_size = 2
steps = 4

[arms.baseline]
method = "baseline"
"""


@pytest.fixture
def long_toml():
    """`long_toml(steps)`: the minimal definition named 'long', 2 blocks, batch 4, an evaluation
    every 20 steps, a vcycle arm beside the baseline: runs long enough to be stopped mid-way."""
    return lambda steps: (MINI_TOML.format(name="long").replace("layers = 1", "layers = 2")
                          .replace("steps = 4", f"steps = {steps}")
                          .replace("every = 2", "every = 20")
                          .replace("batch_size = 2", "batch_size = 4")
                          + '\n[arms.vcycle]\nmethod = "vcycle"\n')


@pytest.fixture
def make_definition():
    """A factory of fresh, independent copies of the minimal valid definition dict."""
    return lambda: copy.deepcopy(_MINI)


@pytest.fixture
def definition(make_definition):
    return make_definition()


@pytest.fixture
def mini_toml():
    """The minimal definition as TOML text; `mini_toml(name)` sets its name."""
    return lambda name="mini": MINI_TOML.format(name=name)


@pytest.fixture
def tmp_results(tmp_path):
    root = tmp_path / "results"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def builtin_benchmarks():
    from suite.registry import load_benchmarks

    return load_benchmarks()


@pytest.fixture(scope="session")
def gpt_smoke_runs(builtin_benchmarks, tmp_path_factory):
    """`get(seed)` -> the Run of the built-in gpt benchmark at smoke scale, trained once per
    session and seed (about a second each) under one shared results root."""
    from suite.results import read_run
    from suite.run.executor import RunOptions, run_one

    root = tmp_path_factory.mktemp("gpt-smoke")
    cache = {}

    def get(seed):
        if seed not in cache:
            path = run_one(builtin_benchmarks["gpt"], "smoke", "baseline", seed, root,
                           RunOptions(threads=1, progress=False))
            cache[seed] = read_run(path)
        return cache[seed]

    get.root = root
    return get
