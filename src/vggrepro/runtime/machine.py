"""The machine the process runs on: its memory, and whether the stages would use its CPU."""

from __future__ import annotations

import os
from pathlib import Path

_CGROUP_LIMIT = Path("/sys/fs/cgroup/memory.max")  # cgroup v2: a container's or a SLURM job's limit


def machine_bytes() -> int:
    """This machine's memory, or the cgroup's limit where it is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = _CGROUP_LIMIT.read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def runs_on_this_cpu(device: str) -> bool:
    """Whether train.device puts the stages on this machine's CPU memory. A GPU's memory is not
    known without CUDA (and the jobs may run elsewhere), so `cuda`, and `auto` where an NVIDIA
    device is present, are not checked here."""
    if device == "cpu":
        return True
    return device == "auto" and not list(Path("/dev").glob("nvidia[0-9]*"))
