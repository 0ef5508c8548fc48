"""One module per stage (a function of typed inputs returning a dict of metrics), and the runner.
Stages import the paper's code, data/, report/ and runtime/; never each other, nor engine/.

`run_stage` is how every stage is started (the `vggrepro <stage>` commands call it). It lives
here, in the package every stage module imports, so what it does to results (the thread
count) is part of each stage's code dependencies (vggrepro.engine.codedeps). What does not
touch results stays in the CLI: finding the stage in the registry, recording its outputs.

`lock_stage` keeps two runs of one stage in a workspace from running at once (two pipelines,
or a command run by hand beside one): they would write the same outputs, so the second stops at
once with one line naming the first. The lock is the kernel's (vggrepro.runtime.locks): a
killed stage leaves none.
"""

from __future__ import annotations

import importlib
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from vggrepro import paths
from vggrepro.data import datastamp
from vggrepro.params import Params
from vggrepro.runtime.errors import Error
from vggrepro.runtime.locks import holder_of, try_lock, write_holder
from vggrepro.runtime.resume import Point, inputs_key


class StageRunning(Error):
    """The same stage runs already in this workspace; one line."""


@dataclass(frozen=True)
class StageRun:
    """The stage being run: its name in both engines and every file it depends on (its knob
    file, its code's digest, data, weights), as the stage registry declares them."""

    name: str
    deps: tuple[str, ...]

    def resume_point(self, *qualifiers: str) -> Point:
        """The stage's resume point, keyed on the bytes of its inputs (and what else the stage
        says a point depends on), so a point left by other params, data or code is never used."""
        key = "/".join([inputs_key(list(self.deps)), *qualifiers])
        return Point(Path(paths.resume_point(self.name)), key)


@contextmanager
def lock_stage(name: str) -> Iterator[bool]:
    """Holds the stage's lock while entered; yields False, locking nothing, under torchrun,
    whose processes run under the lock their launching stage command holds."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        yield False
        return
    path = Path(paths.stage_lock(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = try_lock(path, this_process_only=True)  # a killed stage's lingering workers hold nothing
    if fd is None:
        raise StageRunning(f"{name} is already running in this workspace ({holder_of(path)}); wait for it to end or stop it")
    try:
        write_holder(fd, name)
        yield True
    finally:
        os.close(fd)


READS_IMAGES = ("mean_rgb", "train", "evaluate")  # the stages that open the dataset's images after prepare


def run_stage(kind: str, params: Params, stage: StageRun, run: str | None = None) -> dict:
    """Runs one stage of kind `kind` (prepare, mean_rgb, train, evaluate, fuse, report)."""
    import torch  # here: the engines import this package's siblings and need no torch

    torch.set_num_threads(params.raw["threads"])  # results are bitwise repeatable per thread count
    if kind in READS_IMAGES:  # before anything is written: run by hand, no engine checked the folder
        datastamp.check_unchanged_since_prepare(params.data_root, params.raw["data"]["source"])
    module = importlib.import_module(f"{__name__}.{kind}")
    return module.run(params, run, stage=stage) if run is not None else module.run(params)
