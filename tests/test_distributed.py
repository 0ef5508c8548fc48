"""Data parallelism: 2 processes with batch b end a step with the parameters of 1 process with
batch 2b (gloo on the CPU, as torchrun would run them), and train.nproc makes the stage a
torchrun launch."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vggrepro import device, distributed, registry
from vggrepro.data.normalise import channels
from vggrepro.model import VGG, ModelSpec, init_weights
from vggrepro.params import parse_params
from vggrepro.training import EpochSums, Loop

from conftest import tiny_params


def _loop(world: distributed.World, accumulation: int = 1) -> Loop:
    model = VGG(ModelSpec("A", num_classes=5, width=0.0625, head_width=16, crop=32, dropout=0.0))
    init_weights(model, "glorot", torch.Generator().manual_seed(0))
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    wrapped = distributed.wrap(model, world, torch.device("cpu"))
    return Loop(wrapped, opt, device.CPU, channels([100.0] * 3), channels([50.0] * 3), accumulation=accumulation, global_batch=16)


def _batch():
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g)
    return images, torch.randn(16, 3, generator=g), torch.randint(0, 5, (16,), generator=g)


def _steps(loop: Loop, parts) -> torch.Tensor:
    sums = EpochSums.zeros(torch.device("cpu"))
    bad, count = torch.full((), -1), torch.zeros((), dtype=torch.int64)
    for _ in range(2):
        loop.step(*parts, sums, bad, count)
    module = getattr(loop.model, "module", loop.model)
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def _rank(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    images, shift, labels = _batch()
    share = slice(8 * rank, 8 * rank + 8)  # this process's share, as EpochBatches gives it
    params = _steps(_loop(distributed.World(rank, 2, rank), accumulation=2), (images[share], shift[share], labels[share]))
    if rank == 0:
        torch.save(params, out)
    dist.destroy_process_group()


def test_two_processes_with_batch_b_step_as_one_with_batch_2b(tmp_path):
    torch.set_num_threads(1)
    mp.spawn(_rank, args=(str(tmp_path / "store"), str(tmp_path / "ddp.pt")), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "ddp.pt")
    single = _steps(_loop(distributed.World()), _batch())
    assert (ddp - single).abs().max() <= 1e-5


def test_nproc_makes_the_train_stage_a_torchrun_launch():
    raw = tiny_params()
    raw["train"]["nproc"] = 2
    stages = {s.name: s for s in registry.build(parse_params(raw))}
    assert stages["train_A_256"].cmd == "torchrun --standalone --nproc_per_node=2 --no-python vggrepro train --run A_256"
    assert stages["evaluate_A_256"].cmd == "vggrepro evaluate --run A_256"
