"""Exclusive locks on files (flock or lockf): the kernel drops one when its process ends, however it
ends (SIGKILL and out-of-memory kills included), so a dead holder never leaves a stale lock.
The file holds the holder's pid and name, for the line that says who holds it. Used by GPU
leases (vggrepro.runtime.lease) and by the stage lock (vggrepro.stages.run_stage).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path


def try_lock(path: Path, *, this_process_only: bool = False) -> int | None:
    """An fd holding an exclusive lock on path, or None when another holds it.

    A flock is shared with forked children (DataLoader workers) until they exit too; with
    this_process_only, a POSIX record lock (lockf), which forked children do not hold, so the
    lock ends with this process even while an orphaned worker lingers.
    """
    # No O_TRUNC: the holder's line must survive for the error message until we hold the lock.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if this_process_only:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):  # lockf reports a held lock as EACCES or EAGAIN
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_holder(fd: int, holder: str, pid: int | None = None) -> None:
    """Records who holds the lock: holder, in process pid (this one by default)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps({"pid": pid or os.getpid(), "holder": holder}) + "\n").encode(), 0)


def holder_of(path: Path) -> str:
    """'pid 123 train_A_256' from a held lock file, or what is known of it."""
    try:
        info = json.loads(path.read_text())
        return f"pid {int(info['pid'])} {info['holder']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"  # held but not yet written, or written by something else
