"""Data parallelism under torchrun (Sec. 3.1 trained on 4 GPUs the same way: each GPU takes a
share of every batch, and the gradients are averaged).

With params.yaml `train.nproc: N` the stage command `vggrepro train --run E_256` leases N GPUs
(vggrepro.runtime.lease; on a shared workstation) and launches itself under torchrun:

    python -m torch.distributed.run --standalone --nproc_per_node=N -m vggrepro train E_256

Each process reads its share of every global batch (vggrepro.data.train_batches),
DistributedDataParallel averages the gradients (NCCL between GPUs, gloo on the CPU), and
process 0 alone writes files and logs. Without torchrun the world is one process and nothing
here does anything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that writes files and logs."""
        return self.rank == 0


def from_env(env=os.environ) -> World:
    """This process's place, from the variables torchrun sets."""
    return World(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def start(world: World, device: torch.device) -> None:
    if world.size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None)


def stop(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """The model DDP averages the gradients of (itself with one process)."""
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def gather(world: World, obj):
    """Every process's obj, in rank order (a list of one without torchrun)."""
    if world.size == 1:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def from_main(world: World, obj):
    """Process 0's obj on every process (a resume point read once, not by every process)."""
    if world.size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_true(world: World, flag: bool, device: torch.device) -> bool:
    """True on every process when flag is true on any (a stop signal seen by one of them)."""
    if world.size == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def first_index(world: World, index: torch.Tensor) -> int:
    """The smallest of the processes' indices (a 0-d int64 tensor each; -1 for none), or -1."""
    if world.size == 1:
        return int(index)
    none = torch.iinfo(torch.int64).max
    t = torch.where(index < 0, torch.full_like(index, none), index).reshape(1)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return -1 if int(t) == none else int(t)


def torchrun_argv(nproc: int, params_path: str, run: str) -> list[str]:
    """The command that runs `vggrepro train --run run` as nproc torchrun processes on this host."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "vggrepro", "--params", params_path, "train", run,  # not --run: see vggrepro.cli
    ]


def launch(argv: list[str]) -> int:
    """Runs argv (torchrun) to its end and returns its exit status. SIGTERM and SIGINT sent to
    this process alone (a job manager's) reach torchrun, which passes them to every process:
    each saves the resume point and stops at the same step."""
    child = subprocess.Popen(argv)

    def forward(signum, _frame) -> None:
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
