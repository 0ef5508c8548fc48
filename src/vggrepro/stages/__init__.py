"""One module per stage: a function of typed inputs that returns a dict of metrics.

`run_stage` is how every stage is started (the `vggrepro <stage>` commands call it). It lives
here, in the package every stage module imports, so what it does to results (the thread
count) is part of each stage's code dependencies (vggrepro.codedeps).
"""

from __future__ import annotations

import importlib

from vggrepro.params import Params


def run_stage(name: str, params: Params, run: str | None = None) -> dict:
    import torch  # here: the engines import this package's siblings and need no torch

    torch.set_num_threads(params.raw["threads"])  # results are bitwise repeatable per thread count
    stage = importlib.import_module(f"vggrepro.stages.{name}")
    return stage.run(params, run) if run is not None else stage.run(params)
