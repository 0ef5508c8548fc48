"""No-op reruns of both engines on this workspace, against a one-stage toy pipeline of each.

    vggrepro bench noop [--repeat 5]

Run it in a finished workspace (after `dvc repro` or `snakemake`). The toy pipelines are the
floor each engine costs on this machine; the ratio says what our graph adds to it.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vggrepro.runtime.errors import Error

TOY_DVC = "stages:\n  touch:\n    cmd: echo done > out.txt\n    outs:\n    - out.txt\n"
TOY_SNAKEFILE = 'rule all:\n    output: "out.txt"\n    shell: "echo done > {output}"\n'


def _tool(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    return str(path) if path.exists() else name


def _time(cmd: list[str], cwd: Path, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise Error(f"{' '.join(cmd)} failed in {cwd}: {done.stderr.strip().splitlines()[-1:]}")
    return times


def _toy(root: Path) -> Path:
    (root / "dvc.yaml").write_text(TOY_DVC)
    (root / "Snakefile").write_text(TOY_SNAKEFILE)
    subprocess.run([_tool("dvc"), "init", "--no-scm", "-q"], cwd=root, check=True)
    subprocess.run([_tool("dvc"), "config", "core.analytics", "false"], cwd=root, check=True)
    subprocess.run([_tool("dvc"), "repro", "-q"], cwd=root, check=True)
    return root


def main(repeat: int = 5, workspace: Path = Path(".")) -> dict:
    commands = {"dvc": [_tool("dvc"), "repro"], "snakemake": [_tool("snakemake"), "--cores", "2", "--quiet"]}
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        toy = _toy(Path(tmp))
        for engine, cmd in commands.items():
            _time(cmd, workspace, 1)  # warm the file cache and the engines' own state
            ours = statistics.median(_time(cmd, workspace, repeat))
            floor = statistics.median(_time(cmd, toy, repeat))
            result[engine] = {"ours_s": round(ours, 3), "toy_s": round(floor, 3), "ratio": round(ours / floor, 2)}
            print(f"{engine:10s} no-op: ours {ours:.3f} s, one-stage toy {floor:.3f} s, ratio {ours / floor:.2f} (median of {repeat})")
    return result
