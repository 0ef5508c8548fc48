"""The SLURM path for real: a one-node SLURM on this machine (scripts/slurm-local.sh) runs the
tiny grid through `snakemake --profile workflow/profiles/slurm`, one job per stage, to the bytes
of a local run; a second submission plans nothing; a training job cancelled with scancel
mid-training resumes when resubmitted, to the same bytes.

    pytest -m slurm       # deselected by default; root and apt needed (6 to 7 minutes on 2 cores)

The cluster is started if it is not up (and stopped again afterwards); one that cannot start
fails the test with the script's output.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import faults
from conftest import ROOT, make_project, tool

pytestmark = pytest.mark.slurm

SCRIPT = ROOT / "scripts" / "slurm-local.sh"
PARAMS = ROOT / "tests" / "params-slurm.yaml"  # the tiny grid on the CPU, B_jit long enough to cancel
CANCELLED = "train_B_jit"
RUN_S = 1800  # one whole submission, at most
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")
# Jobs of seconds: look at the queue 5 s after a submission rather than the plugin's 40 s
SUBMIT = ["--profile", "workflow/profiles/slurm", "--slurm-init-seconds-before-status-checks", "5"]


def _env() -> dict:
    """The jobs get the submitter's environment (sbatch --export=ALL): this interpreter's tools first."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _run(cmd: list[str], cwd: Path, timeout: float = RUN_S) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_env())


def _slurm(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.fixture(scope="module")
def cluster():
    was_up = shutil.which("scontrol") is not None and subprocess.run(["scontrol", "ping"], capture_output=True).returncode == 0
    done = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        pytest.fail(f"the local SLURM did not start ({SCRIPT.name} start):\n{done.stdout}{done.stderr}", pytrace=False)
    yield done.stdout.strip()
    if not was_up:
        subprocess.run([str(SCRIPT), "stop"], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> dict[str, str]:
    """The same grid run locally: every output's BLAKE2b."""
    ws = make_project(tmp_path_factory.mktemp("local") / "ws", yaml.safe_load(PARAMS.read_text()))
    done = _run([tool("snakemake"), "--cores", "2"], ws)
    assert done.returncode == 0, done.stderr[-3000:]
    return faults.outputs(ws)


def _job_of(rule: str) -> str | None:
    """The queued or running job of a rule (the plugin puts rule_<name> in the job's comment)."""
    for line in _slurm("squeue", "-h", "-o", "%i %k").splitlines():
        job, _, comment = line.partition(" ")
        if comment == f"rule_{rule}":
            return job
    return None


def test_the_tiny_grid_through_the_slurm_profile(cluster, local, tmp_path):
    ws = make_project(tmp_path / "ws", yaml.safe_load(PARAMS.read_text()))
    jobs = []  # the SLURM job ids, as the plugin reports them

    done = _run([tool("snakemake"), *SUBMIT], ws)
    jobs += SUBMITTED.findall(done.stderr)
    assert done.returncode == 0 and jobs, done.stderr[-5000:]
    assert faults.differences(local, faults.outputs(ws)) == []  # byte for byte, no file more or fewer

    again = _run([tool("snakemake"), *SUBMIT], ws)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr and not SUBMITTED.findall(again.stderr), again.stderr[-3000:]

    # scancel mid-training: the stage saves its progress and the resubmission goes on from there
    for out in ("model.pt", "train_log.json"):
        (ws / "runs" / "B_jit" / out).unlink()  # an output deleted by hand reruns its stage
    point = ws / ".vggrepro" / "resume" / f"{CANCELLED}.pt"
    proc = subprocess.Popen([tool("snakemake"), *SUBMIT], cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=_env())
    try:
        deadline = time.monotonic() + RUN_S
        while not point.exists():  # a resume point: the job is past its first step
            assert proc.poll() is None, f"ended before {CANCELLED} saved a resume point:\n{proc.communicate()[0][-3000:]}"
            assert time.monotonic() < deadline, f"{CANCELLED}: no resume point after {RUN_S} s"
            time.sleep(0.05)
        job = _job_of(CANCELLED)
        assert job, f"{CANCELLED}: no job in the queue"
        _slurm("scancel", job)
        out, _ = proc.communicate(timeout=RUN_S)  # squeue says CANCELLED: Snakemake stops
    finally:
        if proc.poll() is None:
            proc.kill()
    jobs += SUBMITTED.findall(out)
    assert proc.returncode != 0, out[-3000:]
    state = _slurm("sacct", "-X", "-n", "-P", "-j", job, "-o", "State").strip()
    assert state.startswith("CANCELLED"), f"job {job}: {state} (finished before the scancel landed?)"
    log = ws / "logs" / f"{CANCELLED}.log"
    assert "B_jit: stopped by SIGTERM" in log.read_text() and point.exists(), log.read_text()[-2000:]

    resumed = _run([tool("snakemake"), *SUBMIT], ws)
    jobs += SUBMITTED.findall(resumed.stderr)
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    assert "B_jit: resuming at epoch" in log.read_text(), log.read_text()[-2000:]
    assert faults.differences(local, faults.outputs(ws)) == []
    assert not point.exists()

    # What ran, as the accounting database has it (shown with `pytest -m slurm -s`)
    print(_slurm("sacct", "-X", "-j", ",".join(jobs), "-o", "JobID,Comment%22,AllocCPUS,ReqMem,State,ExitCode,Elapsed"))
