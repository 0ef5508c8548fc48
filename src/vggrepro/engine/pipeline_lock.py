"""One pipeline at a time in a workspace, whichever engine runs it.

Two pipelines at once would rerun the same stages and delete each other's outputs (both
engines remove a stage's outputs before, or after a failed, run), so the second stops at once
with one line naming the first. The lock is a flock on paths.PIPELINE_LOCK, which
the kernel drops when its holders end, however they end:

- Snakemake's main process takes it in the Snakefile's onstart and holds it until it exits.
  (Snakemake's own lock is off, profiles/default: a killed run leaves it behind.)
- A DVC run takes it in its first stage, `vggrepro validate --write-knobs`. That command ends
  long before `dvc repro` does, so it leaves a keeper process holding the lock (a flock is
  shared with a forked child) until the DVC process it ran under ends. DVC's own locks are not
  enough: it releases its repository lock while a stage's command runs.

Stage commands run by hand take no pipeline lock, only their stage's (vggrepro.stages); nor does
`dvc repro --single-item` of a stage other than validate, which skips the validate stage.
Linux only for DVC (the keeper finds its DVC process through /proc); elsewhere DVC runs
unlocked by us and relies on its own locks.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from vggrepro import paths
from vggrepro.runtime.errors import Error
from vggrepro.runtime.locks import holder_of, try_lock, write_holder

PATH = Path(paths.PIPELINE_LOCK)
# DVC runs a stage as `$SHELL -c CMD`: the shells between a stage command and DVC
SHELLS = {"sh", "bash", "dash", "zsh", "fish", "ksh", "mksh", "csh", "tcsh", "nu", "xonsh"}
POLL_S = 0.1  # how soon after DVC ends the workspace is free


class PipelineRunning(Error):
    """Another pipeline holds the workspace; one line."""


def acquire(engine: str, pid: int | None = None) -> int:
    """An fd holding the lock (for this process and its forked children), recorded as held by
    engine (pid: the engine's process, this one by default)."""
    PATH.parent.mkdir(parents=True, exist_ok=True)
    fd = try_lock(PATH)
    if fd is None:
        raise PipelineRunning(f"a pipeline is already running in this workspace ({holder_of(PATH)}); wait for it to end or stop it")
    write_holder(fd, engine, pid=pid)
    return fd


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the fields after the command's name


def _started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot: with the pid, it names one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def engine_process() -> int | None:
    """The process that ran this stage command: the first ancestor that is not a shell."""
    pid = _parent(os.getpid())
    while pid and _name(pid) in SHELLS:
        pid = _parent(pid)
    return pid or None


def hold_for_dvc() -> None:
    """Under `dvc repro` (DVC sets DVC_STAGE for a stage's command): takes the lock, and leaves
    a keeper holding it until DVC ends. Run by hand, it does nothing."""
    if "DVC_STAGE" not in os.environ or not Path("/proc/self/stat").exists():
        return
    dvc = engine_process()
    started = _started(dvc) if dvc else None
    if started is None:
        return
    fd = acquire("dvc repro", pid=dvc)
    if os.fork() == 0:  # the keeper: holds fd, the lock's open file, until the DVC process ends
        try:
            # In DVC's process group, so a kill of the whole group (a lost node) takes it too;
            # Ctrl-C is for DVC to act on, which holds the workspace until it has.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            null = os.open(os.devnull, os.O_RDWR)
            for std in (0, 1, 2):  # nobody waits on this process's output
                os.dup2(null, std)
            while _started(dvc) == started:
                time.sleep(POLL_S)
        finally:
            os._exit(0)
    os.close(fd)  # the keeper's copy holds the lock now
