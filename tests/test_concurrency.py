"""Two pipelines started at once in one workspace: the second, of either engine, stops at once
with one line naming the first (vggrepro.engine.pipeline_lock), and the first ends with the bytes of a
run that had the workspace to itself."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

import faults
from conftest import tiny_params, tool

TARGET = "evaluate_A_256"  # prepare, mean_rgb, train and evaluate: the shortest path through it
FIRST = {"dvc": ["dvc", "repro", TARGET], "snakemake": ["snakemake", "--cores", "2", TARGET]}
HOLDER = {"dvc": "dvc repro", "snakemake": "snakemake"}


def _command(engine: str, args: list[str] | None = None) -> list[str]:
    name, *rest = FIRST[engine]
    return [tool(name), *(rest if args is None else args)]


def _when_holding(proc: subprocess.Popen, ws: Path, holder: str, timeout: float = 120) -> int:
    """Waits until the first pipeline holds the workspace lock; its recorded pid."""
    lock = ws / ".vggrepro/locks/pipeline.lock"
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"the first pipeline ended before holding the lock: {proc.communicate()}"
        assert time.monotonic() < deadline, "the first pipeline never held the lock"
        try:
            info = json.loads(lock.read_text())
            if info["holder"] == holder:
                return info["pid"]
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)


@pytest.mark.slow  # two pipeline runs, 2 to 3 minutes: `pytest -m slow`
@pytest.mark.parametrize("first", ["snakemake", "dvc"])
def test_a_second_pipeline_stops_at_once_naming_the_first(first, tiny_runs, tmp_path):
    ws = faults.setup(tmp_path / "ws", "dvc", tiny_params())  # a DVC project Snakemake runs in too
    proc = subprocess.Popen(_command(first), cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid = _when_holding(proc, ws, HOLDER[first])
    refusal = f"a pipeline is already running in this workspace (pid {pid} {HOLDER[first]})"
    for second, args in (("snakemake", ["--cores", "2"]), ("dvc", ["repro"])):
        started = time.monotonic()
        done = subprocess.run(_command(second, args), cwd=ws, capture_output=True, text=True, timeout=300)
        seconds = time.monotonic() - started
        out = done.stdout + done.stderr
        assert proc.poll() is None, "the first pipeline ended too soon to test against"
        assert done.returncode != 0, out
        if second == first == "dvc":  # DVC's own lock refuses first, naming the first's pid
            assert f"(PID {pid})" in out and "is busy" in out, out
        else:
            line = f"{'vggrepro validate' if second == 'dvc' else 'snakemake'}: error: {refusal}"
            assert any(row.startswith(line) for row in out.splitlines()), out
        print(f"second {second} stopped after {seconds:.1f} s: {out.strip().splitlines()[-1]}")
        assert seconds < 30, f"the second {second} took {seconds:.1f} s to stop"
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    expected = tiny_runs["snakemake"][2]
    found = faults.outputs(ws)
    assert set(found) <= set(expected), sorted(set(found) - set(expected))
    assert found == {p: expected[p] for p in found}, "outputs differ"
    assert "runs/A_256/eval/dense.pt" in found
