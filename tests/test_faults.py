"""The short variant of the fault injection (tests/faults.py): the tiny pipeline killed with
SIGKILL at random moments under each engine, rerun after each kill with the plain command,
ends with every output byte-identical to an uninterrupted run's. The seed is printed (and is
in the failure message); VGGREPRO_FAULT_SEED=N replays one. The long run, 20 kills or more per
engine, is `python tests/faults.py --engine dvc|snakemake --kills 20`."""

from __future__ import annotations

import os
import random
import subprocess

import pytest

import faults
from conftest import tiny_params, tool

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


@pytest.mark.parametrize("torn", ["dvc.lock", ".dvc/tmp/rwlock"])
def test_a_file_dvc_wrote_when_killed_stops_the_rerun_and_the_readmes_handling_recovers(torn, tmp_path):
    # DVC writes both files in place; a SIGKILL mid-write leaves a prefix (seen in CI: rwlock cut
    # at 8,187 characters). The README's handling, which inject() applies: remove it, rerun.
    (tmp_path / "dvc.yaml").write_text("stages:\n  s:\n    cmd: echo made > out.txt\n    outs: [out.txt]\n")
    subprocess.run([tool("dvc"), "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    faults.run_to_end(tmp_path, "dvc")
    # A prefix of each: dvc.lock cut inside a key (many cuts still parse as YAML, and DVC just
    # reruns); rwlock cut inside the entry DVC writes as a stage takes its locks.
    prefixes = {"dvc.lock": (tmp_path / "dvc.lock").read_text().split("cmd:")[0] + "cm",
                ".dvc/tmp/rwlock": '{"read": {"dvc.yaml": [{"pid": 1, "cmd": "dvc repro"}]}, "write": {"out.txt": {"pi'}
    (tmp_path / torn).write_text(prefixes[torn])
    (tmp_path / "out.txt").unlink()  # so that the rerun has a stage to run and takes its locks
    with pytest.raises(AssertionError) as stopped:
        faults.run_to_end(tmp_path, "dvc")
    assert faults.torn_by_kill("dvc", str(stopped.value)) == torn
    faults.run_to_end(tmp_path, "dvc", after_kill=True)
    assert (tmp_path / "out.txt").read_text() == "made\n"
