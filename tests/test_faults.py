"""The short variant of the fault injection (tests/faults.py): the tiny pipeline killed with
SIGKILL at random moments under each engine, rerun after each kill with the plain command,
ends with every output byte-identical to an uninterrupted run's. The seed is printed (and is
in the failure message); VGGREPRO_FAULT_SEED=N replays one. The long run, 20 kills or more per
engine, is `python tests/faults.py --engine dvc|snakemake --kills 20`."""

from __future__ import annotations

import os
import random

import pytest

import faults
from conftest import tiny_params

KILLS = 2


@pytest.mark.slow  # about 70 s an engine: `pytest -m slow`
@pytest.mark.parametrize("engine", ["dvc", "snakemake"])
def test_killed_anywhere_and_rerun_gives_the_uninterrupted_bytes(engine, tiny_runs, tmp_path):
    _, seconds, expected = tiny_runs[engine]
    seed = int(os.environ.get("VGGREPRO_FAULT_SEED") or random.SystemRandom().randrange(2**31))
    print(f"seed {seed}")
    workspace = faults.setup(tmp_path / "ws", engine, tiny_params())
    # Two kills, each anywhere in the pipeline's time, then the plain command to the end.
    points = faults.inject(workspace, engine, kills=KILLS, seed=seed, span=max(1.0, seconds))
    found = faults.outputs(workspace)
    assert faults.differences(expected, found) == [], f"seed {seed}, kills {points}"
    assert faults.leftovers(workspace, engine) == [], f"seed {seed}, kills {points}"
