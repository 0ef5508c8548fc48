"""One module per stage: a function of typed inputs that returns a dict of metrics.

`run_stage` is how every stage is started (the `vggrepro <stage>` commands call it). It lives
here, in the package every stage module imports, so what it does to results (the thread
count) is part of each stage's code dependencies (vggrepro.codedeps).

When the stage ends it records its outputs (vggrepro.outputs_record: Snakemake reruns a stage
whose output was edited by hand). It also locks the stage: two runs of one stage in a workspace at once (two pipelines, or a
command run by hand beside one) would write the same outputs; the second stops at once with
one line naming the first. The lock is the kernel's (vggrepro.locks): a killed stage leaves none.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from vggrepro import outputs_record, registry
from vggrepro.locks import holder_of, try_lock, write_holder
from vggrepro.params import Params

LOCKS_DIR = ".vggrepro/locks"


class StageRunning(ValueError):
    """The same stage runs already in this workspace; one line."""


def lock_stage(name: str) -> int | None:
    """An fd holding the stage's lock until this process ends, or None under torchrun, whose
    processes run under the lock their launching stage command holds."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return None
    folder = Path(LOCKS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    fd = try_lock(path, this_process_only=True)  # a killed stage's lingering workers hold nothing
    if fd is None:
        raise StageRunning(f"{name} is already running in this workspace ({holder_of(path)}); wait for it to end or stop it")
    write_holder(fd, name)
    return fd


def run_stage(name: str, params: Params, run: str | None = None) -> dict:
    stage_name = f"{name}_{run}" if run is not None else name
    held = lock_stage(stage_name)  # noqa: F841 - held until exit
    import torch  # here: the engines import this package's siblings and need no torch

    torch.set_num_threads(params.raw["threads"])  # results are bitwise repeatable per thread count
    stage = importlib.import_module(f"vggrepro.stages.{name}")
    result = stage.run(params, run) if run is not None else stage.run(params)
    if held is not None:  # the stage command itself, not a process under its torchrun
        outputs_record.record(next(s for s in registry.build(params) if s.name == stage_name))
    return result
