"""Snakemake trusts DVC's record of which outputs are current.

Snakemake decides on file times; DVC on content hashes. `dvc checkout` (or `dvc pull`, or a
run-cache restore) writes outputs in no particular order, so an output can come out older
than its input while its bytes are exactly what DVC recorded for the current inputs; Snakemake
would then rerun most of the grid. At parse time the Snakefile calls `align`: when some stage
looks stale by file times and the workspace has a dvc.lock, it asks `dvc status` which stages
DVC holds current, and gives those stages' outputs the present time, in graph order, so that
Snakemake sees them current too. Stages DVC does not hold current, stages it has no record of,
and every stage while dvc.yaml is stale are left alone: Snakemake reruns them. Nothing is asked
of DVC when the times already agree (a no-op stays fast).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ruamel.yaml.error import YAMLError

from vggrepro.engine.registry import DVC_YAML, Stage, dvc_yaml, snakemake_stages
from vggrepro.params import read_yaml

SNAKEMAKE_DIR_STAMP = ".snakemake_timestamp"  # Snakemake's time of a directory output


def _mtime(path: Path) -> int | None:
    """The time Snakemake reads for a path (ns), or None if it does not exist."""
    try:
        if path.is_dir() and (path / SNAKEMAKE_DIR_STAMP).exists():
            return (path / SNAKEMAKE_DIR_STAMP).stat().st_mtime_ns
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def stale_by_time(stage: Stage, root: Path) -> bool:
    """All outputs exist and the oldest is older than the newest input."""
    outs = [_mtime(root / o.path) for o in stage.outs]
    ins = [t for t in (_mtime(root / d) for d in stage.deps) if t is not None]
    return bool(outs) and None not in outs and bool(ins) and min(outs) < max(ins)


def _touch(path: Path, ns: int) -> None:
    os.utime(path, ns=(ns, ns))
    if path.is_dir() and (path / SNAKEMAKE_DIR_STAMP).exists():
        os.utime(path / SNAKEMAKE_DIR_STAMP, ns=(ns, ns))


def dvc_changed(root: Path) -> set[str] | None:
    """The stages `dvc status` reports changed; None if DVC cannot tell."""
    dvc = Path(sys.executable).with_name("dvc")
    try:
        done = subprocess.run(
            [str(dvc) if dvc.exists() else "dvc", "status", "--json"],
            cwd=root, capture_output=True, text=True, timeout=300,
        )
        changed = json.loads(done.stdout or "{}") if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return None
    if not isinstance(changed, dict):
        return None
    return {name.rsplit(":", 1)[-1] for name in changed}


def dvc_recorded(root: Path) -> set[str]:
    """The stages dvc.lock holds a record of (empty without DVC)."""
    lock = root / "dvc.lock"
    if not lock.is_file() or not (root / ".dvc").is_dir() or not (root / DVC_YAML).is_file():
        return set()
    try:
        return set((read_yaml(lock.read_text()) or {}).get("stages", {}))
    except (OSError, YAMLError, AttributeError):  # an unreadable lock: trust nothing
        return set()


def align(stages: list[Stage], root: str | Path = ".") -> list[str]:
    """Gives current times to the outputs of stages DVC holds current; returns their names."""
    root = Path(root)
    all_stages, stages = stages, snakemake_stages(stages)
    if not any(stale_by_time(s, root) for s in stages):
        return []
    recorded = dvc_recorded(root)
    # DVC's word counts only for the graph we would run: a stale dvc.yaml (a run added, an
    # import changed) means DVC's record describes other stages or other inputs.
    if not recorded or (root / DVC_YAML).read_text() != dvc_yaml(all_stages):
        return []
    changed = dvc_changed(root)
    if changed is None:
        return []
    aligned, now = [], 0
    for stage in stages:  # graph order: a stage's inputs are aligned before it is checked
        if stage.name in recorded and stage.name not in changed and stale_by_time(stage, root):
            now = max(time.time_ns(), now + 1)  # strictly after the stage aligned before it
            for out in stage.outs:
                _touch(root / out.path, now)
            aligned.append(stage.name)
    return aligned
