"""The machine the process runs on: its memory, and whether the stages would use its CPU."""

from __future__ import annotations

import os
import shutil
import subprocess
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


def gpu_bytes() -> int | None:
    """The smallest memory of the NVIDIA GPUs the stages would see here (CUDA_VISIBLE_DEVICES's
    indices, where it names them), from nvidia-smi (no CUDA initialised, no torch imported);
    None where nvidia-smi is missing, fails or lists none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    mib = [int(line) for line in out.stdout.split() if line.strip().isdigit()] if out.returncode == 0 else []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")  # nvidia-smi lists every GPU; the stages see these
    if visible is not None and all(v.strip().isdigit() for v in visible.split(",") if v.strip()):
        mib = [m for i, m in enumerate(mib) if str(i) in {v.strip() for v in visible.split(",")}]
    return min(mib) * 2**20 if mib else None
