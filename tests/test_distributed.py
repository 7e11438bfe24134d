"""DDP on CPU: two gloo processes reproduce the single-process curve with the same global
batch, for the baseline, the V-cycle and the ODE arm; ranks stay identical across transfers."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import suite.run.distributed as d
from suite.registry import load_benchmarks
from suite.results import read_run
from suite.run.executor import RunOptions, run_one
from suite.spec import SpecError

ARMS = ["baseline", "vcycle", "ode-multilevel"]
TOLERANCE = 2e-4  # held-out loss, nats: gradient all-reduce sums in another order than one batch
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
# gloo alone, through the same setup: tells "this machine cannot run two gloo processes" apart
# from "the suite's DDP path is wrong"
PROBE = textwrap.dedent("""
    import torch, torch.distributed as dist
    from suite.run.distributed import setup
    world, _ = setup("cpu")
    x = torch.tensor([float(world.rank + 1)])
    dist.all_reduce(x)
    assert x.item() == 3.0, x
    dist.destroy_process_group()
""")


def _torchrun(*args: str, timeout: int) -> subprocess.CompletedProcess:
    root = str(Path(__file__).resolve().parents[1])  # the suite imports without an install
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    return subprocess.run([*TORCHRUN, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _errors(output: str) -> list[str]:
    keys = ("Error", "error:", "terminate", "what()", "Abort", "Signal")
    return [line.strip() for line in output.splitlines() if any(k in line for k in keys)][-6:]


@pytest.fixture(scope="module")
def ddp_and_single(tmp_path_factory):
    script = tmp_path_factory.mktemp("probe") / "probe.py"
    script.write_text(PROBE)
    probe = _torchrun(str(script), timeout=120)
    if probe.returncode:
        pytest.skip("two gloo processes cannot talk on this machine (not the suite's code): "
                    + " | ".join(_errors(probe.stdout + probe.stderr)))
    ddp_out = tmp_path_factory.mktemp("ddp")
    # the README's command line
    ddp = _torchrun("-m", "suite", "run", "gpt", "--scale", "smoke", "--device", "cpu",
                    "--threads", "1", "--no-progress", "--arms", ",".join(ARMS),
                    "--out", str(ddp_out), timeout=600)
    assert ddp.returncode == 0, (ddp.stdout + ddp.stderr)[-3000:]
    single_out = tmp_path_factory.mktemp("single")
    bench = load_benchmarks()["gpt"]
    for arm in ARMS:
        run_one(bench, "smoke", arm, 0, single_out, RunOptions(threads=1, progress=False))
    return ddp_out, single_out


@pytest.mark.parametrize("arm", ARMS)
def test_two_processes_follow_the_single_process_curve(ddp_and_single, arm):
    ddp_out, single_out = ddp_and_single
    path = ("smoke", "gpt", arm, "seed-0")
    ddp, single = read_run(ddp_out.joinpath(*path)), read_run(single_out.joinpath(*path))
    assert ddp.complete and single.complete
    assert ddp.manifest["world_size"] == 2 and single.manifest["world_size"] == 1
    assert [r["step"] for r in ddp.curve] == [r["step"] for r in single.curve]
    assert [r["flops"] for r in ddp.curve] == [r["flops"] for r in single.curve]  # summed
    diffs = [abs(a["heldout_loss"] - b["heldout_loss"]) for a, b in zip(ddp.curve, single.curve,
                                                                        strict=True)]
    assert max(diffs) < TOLERANCE, diffs
    assert ddp.summary["max_rank_spread_after_transfers"] == 0.0


def test_only_rank_0_wrote(ddp_and_single):
    ddp_out, _ = ddp_and_single
    assert len(list(ddp_out.rglob("manifest.json"))) == len(ARMS)


@pytest.mark.parametrize("name", ["bert", "gpt", "deit", "ode"])  # one benchmark per family
def test_gradient_accumulation_keeps_the_curve(tmp_path, name):
    bench = load_benchmarks()[name]
    one = read_run(run_one(bench, "smoke", "baseline", 0, tmp_path / "a",
                           RunOptions(threads=1, progress=False)))
    for accum in (2, 4):
        more = read_run(run_one(bench, "smoke", "baseline", 0, tmp_path / f"k{accum}",
                                RunOptions(threads=1, progress=False, accum=accum)))
        assert more.manifest["accum"] == accum
        for key in ("heldout_loss", "train_loss"):
            diffs = [abs(a[key] - b[key]) for a, b in zip(one.curve, more.curve, strict=True)]
            assert max(diffs) < TOLERANCE, (accum, key, diffs)


GRADIENTS = textwrap.dedent("""
    import sys, torch
    from torch.nn.parallel import DistributedDataParallel as DDP
    sys.path.insert(0, sys.argv[2])
    from test_accumulation import BENCH_OF, gradient, setup_family
    from suite.run.distributed import leave, setup, teardown
    world, _ = setup("cpu")
    grads = {}
    for name in sorted(BENCH_OF):
        family, model, batch = setup_family(name)
        grads[name] = gradient(family, model, batch, 1, world, DDP(model))
    if world.main:
        torch.save(grads, sys.argv[1])
    teardown()
    leave(0)  # not the interpreter's shutdown: DDP's gloo threads can abort it (pytorch#107298)
""")


def test_two_processes_give_the_single_process_gradient(ddp_and_single, tmp_path):
    """Every family: DDP over two ranks, each a slice of the global batch with its own count
    of labelled positions (BERT's masked tokens differ), gives one process's gradient."""
    from test_accumulation import BENCH_OF, RELATIVE, gradient, relative, setup_family

    script, saved = tmp_path / "grads.py", tmp_path / "grads.pt"
    script.write_text(GRADIENTS)
    done = _torchrun(str(script), str(saved), str(Path(__file__).parent), timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    ddp = torch.load(saved)
    for name in sorted(BENCH_OF):
        family, model, batch = setup_family(name)
        assert relative(ddp[name], gradient(family, model, batch, 1)) < RELATIVE, name


@pytest.mark.parametrize(("accum", "world"), [(3, 1), (0, 1), (-2, 1), (4, 4), (1, 3)])
def test_a_batch_that_does_not_split_evenly_is_refused_before_training(tmp_path, accum, world):
    bench = load_benchmarks()["gpt"]  # smoke: a global batch of 8
    with pytest.raises(SpecError) as e:
        run_one(bench, "smoke", "baseline", 0, tmp_path,
                RunOptions(threads=1, progress=False, world=d.World(rank=0, size=world),
                           accum=accum))
    assert e.value.key == "scales.smoke.batch_size" and e.value.file.endswith("gpt.toml")
    assert f"a global batch of 8 does not split evenly over {world} process(es) x --accum {accum}" \
        in str(e.value)
    assert not list(tmp_path.rglob("manifest.json"))  # refused before anything was written


@pytest.mark.parametrize(("local", "preset", "expected"), [
    ("2", None, "lo"),  # one node: loopback
    ("1", None, None),  # two nodes: gloo's own choice (the hostname's address)
    ("2", "eth7", "eth7"),  # the user's interface wins
])
def test_gloo_binds_to_loopback_only_on_one_node(monkeypatch, local, preset, expected):
    monkeypatch.setattr(d.socket, "if_nameindex", lambda: [(1, "lo"), (2, "eth0")])
    monkeypatch.setattr(d, "_is_loopback", lambda name: name == "lo")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", local)
    if preset is None:
        monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    else:
        monkeypatch.setenv("GLOO_SOCKET_IFNAME", preset)
    d._gloo_on_loopback_when_local(2)
    assert os.environ.get("GLOO_SOCKET_IFNAME") == expected


def test_only_the_loopback_interface_reads_as_loopback():
    names = [name for _, name in d.socket.if_nameindex()]
    assert "lo" in names  # Linux's loopback, on every machine the tests run on
    assert {name: d._is_loopback(name) for name in names} == {name: name == "lo" for name in names}
    assert not d._is_loopback("no-such-interface")


@pytest.mark.parametrize("completed", [True, False])
def test_teardown_leaves_the_process_group(completed):
    # CI: a rank that exited with its gloo group still up aborted (SIGABRT) after its runs
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    assert dist.is_initialized()
    d.teardown(completed)
    assert not dist.is_initialized()
    d.teardown(completed)  # no group: nothing to do, no error


LEAVE = textwrap.dedent("""
    import atexit, sys, torch.distributed as dist
    import suite.run.distributed as d
    atexit.register(lambda: print("interpreter shutdown ran"))
    if sys.argv[1] == "group":
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        d.teardown()
    print("written before leaving", end="")
    d.leave(3)
""")


@pytest.mark.parametrize("group", ["group", "none"])
def test_leave_skips_shutdown_only_after_a_process_group(tmp_path, group):
    script = tmp_path / "leave.py"
    script.write_text(LEAVE)
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, str(script), group], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": root}, timeout=120)
    assert out.returncode == 3
    expected = "written before leaving" + ("" if group == "group" else "interpreter shutdown ran\n")
    assert out.stdout == expected


def test_two_processes_stop_together_and_resume_to_the_same_curve(ddp_and_single, tmp_path):
    """Both ranks receive SIGTERM after step 7, agree to stop where losses are read back (step
    10), rank 0 writes the state, and a resumed torchrun draws the uninterrupted curve."""
    ddp_out, _ = ddp_and_single
    cmd = ["-m", "suite", "run", "gpt", "--scale", "smoke", "--device", "cpu", "--threads",
           "1", "--no-progress", "--arms", "baseline", "--out", str(tmp_path)]
    os.environ["SUITE_SIGNAL_AT_STEP"] = "7"
    try:
        stopped = _torchrun(*cmd, timeout=600)
    finally:
        del os.environ["SUITE_SIGNAL_AT_STEP"]
    assert "preempted (SIGTERM after step 10; state in step-00000010.pt)" in stopped.stderr, \
        (stopped.stdout + stopped.stderr)[-3000:]
    run = tmp_path / "smoke" / "gpt" / "baseline" / "seed-0"
    assert read_run(run).status == "preempted"
    done = _torchrun(*cmd, "--resume", timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    resumed, full = read_run(run), read_run(ddp_out / "smoke" / "gpt" / "baseline" / "seed-0")
    assert resumed.complete and [r["step"] for r in resumed.manifest["resumes"]] == [10]
    strip = [{k: v for k, v in r.items() if k != "wall_s"} for r in resumed.curve]
    assert strip == [{k: v for k, v in r.items() if k != "wall_s"} for r in full.curve]
