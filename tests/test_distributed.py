"""DDP on CPU: two gloo processes reproduce the single-process curve with the same global
batch, for the baseline, the V-cycle and the ODE arm; ranks stay identical across transfers."""

import os
import socket

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from suite.distributed import setup
from suite.registry import load_benchmarks
from suite.results import read_run
from suite.runner import run_one

ARMS = ["baseline", "vcycle", "ode-multilevel"]
TOLERANCE = 2e-4  # held-out loss, nats: gradient all-reduce sums in another order than one batch


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world_size, port, out, arms):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), HF_HUB_OFFLINE="1")
    world, device = setup("cpu")
    try:
        bench = load_benchmarks()["gpt"]
        for arm in arms:
            run_one(bench, "smoke", arm, 0, out, device, threads=1, progress=False, world=world)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_and_single(tmp_path_factory):
    ddp_out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), ddp_out, ARMS), nprocs=2, join=True)
    single_out = tmp_path_factory.mktemp("single")
    bench = load_benchmarks()["gpt"]
    for arm in ARMS:
        run_one(bench, "smoke", arm, 0, single_out, threads=1, progress=False)
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


def test_gradient_accumulation_keeps_the_step(tmp_path):
    bench = load_benchmarks()["gpt"]
    one = read_run(run_one(bench, "smoke", "baseline", 0, tmp_path / "a", threads=1,
                           progress=False))
    two = read_run(run_one(bench, "smoke", "baseline", 0, tmp_path / "b", threads=1,
                           progress=False, accum=2))
    diffs = [abs(a["heldout_loss"] - b["heldout_loss"]) for a, b in zip(one.curve, two.curve,
                                                                        strict=True)]
    assert max(diffs) < TOLERANCE and two.manifest["accum"] == 2
    # the path ran: two half-batch means sum in another order than one mean
    assert [r["train_loss"] for r in one.curve] != [r["train_loss"] for r in two.curve]
