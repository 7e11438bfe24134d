"""One process or many: torchrun's environment -> a process group, and the few collective
operations the executor needs. Imports nothing of ours.

    torchrun --nproc-per-node 8 -m suite run gpt --scale small --device cuda
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 8 --rdzv-backend c10d \\
             --rdzv-endpoint HOST:29500 -m suite run gpt --scale small --device cuda

The global batch of a definition is the same for any number of processes: every rank draws the
same seeded global batch, reads and trains on its own slice of it (`data.TrainBatches` with
rank and ranks; DDP averages the gradients), so a run on N processes follows the
single-process curve.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def setup(device: str) -> tuple[World, str]:
    """Join torchrun's process group if there is one; returns the world and this rank's device
    (cuda:LOCAL_RANK on GPUs). Without torchrun: a world of one, nothing initialised."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), device
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if device.startswith("cuda"):
        device = f"cuda:{world.local_rank}"
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        if not device.startswith("cuda"):
            _gloo_on_loopback_when_local(size)
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return world, device


_left_a_group = False


def teardown(completed: bool = True) -> None:
    """Leave the process group (a barrier first, so that no rank leaves while a peer still talks
    to it; skipped after an error, where a peer may never arrive). Call `leave` to exit."""
    global _left_a_group
    if not dist.is_initialized():
        return
    if completed:
        dist.barrier()
    dist.destroy_process_group()
    _left_a_group = True


def leave(code: int) -> NoReturn:
    """Exit the process. A rank that was in a process group skips the interpreter's shutdown:
    once a model was DDP-wrapped, the gloo group and its threads outlive destroy_process_group
    (pytorch#107298), and at shutdown they can abort a rank whose runs have all completed
    (SIGABRT, "terminate called without an active exception", seen in CI)."""
    if _left_a_group:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _gloo_on_loopback_when_local(size: int) -> None:
    """gloo binds to the address the hostname resolves to; in containers that can be one the
    peers cannot connect to. All ranks on one node: use loopback, unless the user named an
    interface."""
    if "GLOO_SOCKET_IFNAME" in os.environ or int(os.environ.get("LOCAL_WORLD_SIZE", 0)) != size:
        return
    try:
        interfaces = [name for _, name in socket.if_nameindex()]
    except OSError:  # no interface list in this sandbox: leave the choice to gloo
        return
    loopback = [name for name in interfaces if _is_loopback(name)]
    if loopback:
        os.environ["GLOO_SOCKET_IFNAME"] = loopback[0]


def _is_loopback(interface: str) -> bool:
    try:  # IFF_LOOPBACK in the kernel's interface flags
        return bool(int(Path(f"/sys/class/net/{interface}/flags").read_text(), 16) & 0x8)
    except (OSError, ValueError):
        return interface == "lo"


def shard(x: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's slice of a global batch (the batch must divide evenly)."""
    if x.shape[0] % world.size:
        raise ValueError(f"global batch {x.shape[0]} does not divide over {world.size} processes")
    n = x.shape[0] // world.size
    return x[world.rank * n : (world.rank + 1) * n]


def broadcast_parameters(model: nn.Module, world: World) -> None:
    """Rank 0's parameters and buffers on every rank (after a transfer, to be certain)."""
    if not world.active:
        return
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, src=0)


def max_parameter_spread(model: nn.Module, world: World) -> float:
    """Largest difference of any parameter between ranks (0.0 when they are identical)."""
    if not world.active:
        return 0.0
    spread = torch.zeros(())
    with torch.no_grad():
        for p in model.parameters():
            hi, lo = p.detach().clone(), p.detach().clone()
            dist.all_reduce(hi, op=dist.ReduceOp.MAX)
            dist.all_reduce(lo, op=dist.ReduceOp.MIN)
            spread = torch.maximum(spread, (hi - lo).abs().max().cpu())
    return float(spread)



def rank0_says(flag: bool, world: World, device: str = "cpu") -> bool:
    """Rank 0's `flag` on every rank (one broadcast): for what only rank 0 reads from disk."""
    if not world.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())
