"""Data parallelism: 2 processes with batch b end a step with the parameters of 1 process with
batch 2b (gloo on the CPU, as torchrun would run them), and with train.nproc the stage command
launches itself under torchrun."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import make_project, tiny_params, vggrepro
from vggrepro.data.normalise import channels
from vggrepro.engine import registry
from vggrepro.model import VGG, ModelSpec, init_weights
from vggrepro.params import parse_params
from vggrepro.runtime import device, distributed
from vggrepro.training import EpochSums, Loop


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


def test_nproc_keeps_the_stage_command_which_launches_torchrun_itself():
    raw = tiny_params()
    raw["train"]["nproc"] = 2
    stages = {s.name: s for s in registry.build(parse_params(raw))}
    # The same command: it leases nproc GPUs first (vggrepro.runtime.lease), then runs torchrun.
    assert stages["train_A_256"].cmd == "vggrepro train --run A_256"
    assert stages["evaluate_A_256"].cmd == "vggrepro evaluate --run A_256"
    assert distributed.torchrun_argv(2, "params.yaml", "A_256")[1:] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "vggrepro", "--params", "params.yaml", "train", "A_256",
    ]


def test_the_launcher_passes_a_stop_signal_to_torchrun(tmp_path):
    """SIGTERM to the stage command (a job manager's) reaches torchrun's process."""
    seen = tmp_path / "seen"
    child = (
        "import signal, sys, time, pathlib\n"
        f"def stop(n, f): pathlib.Path({str(seen)!r}).write_text(str(n)); sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        f"pathlib.Path({str(seen)!r} + '.ready').write_text('')\n"
        "time.sleep(60)\n"
    )

    def kill_when_ready():
        deadline = time.monotonic() + 30
        while not Path(str(seen) + ".ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=kill_when_ready, daemon=True).start()
    assert distributed.launch([sys.executable, "-c", child]) == 143
    assert seen.read_text() == str(int(signal.SIGTERM))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the stage's own handling is back


@pytest.mark.slow  # four stage commands and a torchrun launch, about 30 s: `pytest -m slow`
def test_a_train_stage_with_nproc_2_runs_under_torchrun_on_the_cpu(tmp_path):
    raw = tiny_params()
    raw["train"].update(nproc=2, device="cpu")
    raw["runs"] = {"A_256": {"config": "A", "scale": 256, "init": "glorot"}}
    ws = make_project(tmp_path / "ws", raw)
    for stage in (("validate", "--write-knobs"), ("prepare",), ("mean_rgb",), ("train", "--run", "A_256")):
        done = vggrepro(*stage, cwd=ws)
        assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"stage": "train", "run": "A_256", "processes": 2}
    log = json.loads((ws / "runs/A_256/train_log.json").read_text())
    assert [e["epoch"] for e in log] == [1]
    # the live curve's last point of the epoch is the epoch's loss over both processes' shares
    last = (ws / "runs/A_256/live/plots/metrics/train/loss.tsv").read_text().splitlines()[-1].split("\t")
    assert float(last[1]) == pytest.approx(log[0]["loss"], rel=1e-12)
    checkpoint = torch.load(ws / "runs/A_256/model.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())
