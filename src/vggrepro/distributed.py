"""Data parallelism under torchrun (Sec. 3.1 trained on 4 GPUs the same way: each GPU takes a
share of every batch, and the gradients are averaged).

    torchrun --standalone --nproc_per_node=N --no-python vggrepro train --run E_256

(params.yaml `train.nproc: N` makes the stage command exactly that.) Each process reads its
share of every global batch (vggrepro.data.train_batches), DistributedDataParallel averages
the gradients (NCCL between GPUs, gloo on the CPU), and process 0 alone writes files and logs.
Without torchrun the world is one process and nothing here does anything.
"""

from __future__ import annotations

import os
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
