from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "imagenet-sample"


def tiny_params() -> dict:
    """tests/params-tiny.yaml: 3 runs, an init chain and a jittered scale, seconds per engine."""
    return yaml.safe_load((ROOT / "tests" / "params-tiny.yaml").read_text())


def vggrepro(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vggrepro", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def vggrepro_here(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`vggrepro ARGS` as its main() in this process, with the command's exit status and output:
    seconds faster than a new process, which imports torch again."""
    from vggrepro import cli

    out, err, previous = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = cli.main(list(args))
            except SystemExit as exit_:
                status = exit_.code
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(["vggrepro", *args], status, out.getvalue(), err.getvalue())


def make_project(dest: Path, params: dict) -> Path:
    """A copy of the project's workflow files with its own params.yaml and rendered dvc.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Snakefile", dest / "Snakefile")
    shutil.copytree(ROOT / "workflow", dest / "workflow")
    shutil.copytree(ROOT / "profiles", dest / "profiles")
    # The stages list their source files as dependencies, as in the real project.
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    done = vggrepro("dvc-yaml", cwd=dest)
    assert done.returncode == 0, done.stderr
    return dest


def tool(name: str) -> str:
    """A console script of the environment the tests run in (dvc, snakemake)."""
    path = Path(sys.executable).with_name(name)
    return str(path) if path.exists() else name


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> dict:
    """The tiny pipeline run to the end once per engine: {engine: (workspace, seconds, the
    BLAKE2b of every output file, taken right after the run)}. Tests may read the workspaces;
    those that change them note it."""
    import faults

    engines = ("dvc", "snakemake")
    spaces = {e: faults.setup(tmp_path_factory.mktemp(f"tiny-{e}") / "ws", e, tiny_params()) for e in engines}
    # Both engines at once: a stage is mostly a process starting and importing torch, on one core,
    # so the two pipelines overlap well on two cores. Each one's seconds are its time beside the other's.
    with ThreadPoolExecutor(len(engines)) as pool:
        seconds = dict(zip(engines, pool.map(lambda e: faults.run_to_end(spaces[e], e), engines)))
    return {e: (spaces[e], seconds[e], faults.outputs(spaces[e])) for e in engines}
