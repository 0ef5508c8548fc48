"""A GPU lease: a stage that shares a multi-GPU host picks a free device itself.

`snakemake --cores N --resources gpu=K` runs up to K GPU stages at once, but Snakemake assigns
no device ids (snakemake issue #281) and never sets CUDA_VISIBLE_DEVICES, so without a lease
every stage would train on device 0. Each stage therefore takes a lease before its first CUDA
call:

    from vggrepro.runtime import lease
    with lease.acquire(holder=paths.stage_name("train", run), folder=Path(paths.LEASES_DIR)):  # sets CUDA_VISIBLE_DEVICES
        ...

One lock file per device id, `<folder>/<host>/gpu-<id>.lock` (the project's .vggrepro/leases),
locked with fcntl.flock: the kernel releases the lock when the process ends in any way,
SIGKILL and OOM-kill included, so a dead stage never leaves a device marked busy and there is
no stale file to clean up. The file holds the holder's pid and name, for the error that names
who holds what. The host is part of the path because device 0 on one host is not device 0 on
another that sees the same project folder over a network file system.

No lease is taken (CUDA_VISIBLE_DEVICES is left as it is) when:
- the stage runs under torchrun with several local ranks (LOCAL_WORLD_SIZE > 1): each rank
  uses the device LOCAL_RANK among those torchrun's parent saw, and the job as a whole holds them;
- no device is visible (a CPU run): the lease is a no-op;
- one device is visible: there is nothing to choose. This is the SLURM case: with the profile
  in workflow/profiles/slurm each job asks for `--gpus=1` and SLURM sets CUDA_VISIBLE_DEVICES,
  often to "0" in every job on a node (cgroups renumber), so locking it would wrongly queue
  jobs that hold different physical GPUs behind each other.

Device ids are CUDA's numbering, the same in every process of a host for the same
CUDA_DEVICE_ORDER. An existing CUDA_VISIBLE_DEVICES is the list of ids to choose from
("2,3": lease 2 or 3); ids given as UUIDs lock by UUID, so do not mix the two forms on one host.
No torch import here: the count of devices, when needed, comes from a child process.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vggrepro.runtime.errors import Error
from vggrepro.runtime.locks import holder_of, try_lock, write_holder

# A stage that finds every device held waits this long, then stops with one line naming the
# holders. Snakemake starts a GPU job only when --resources gpu=K allows it, and a finished
# job's lock is released when its process exits, before Snakemake starts the next one, so
# waiting at all means more GPU jobs run than devices exist (no --resources gpu, or another
# workflow on the same host): say so rather than wait for hours.
TIMEOUT_S = 60.0
POLL_S = 0.5


class LeaseError(Error):
    """Devices that cannot be counted or leased as asked; one line."""


class LeaseTimeout(LeaseError):
    """Every device stayed held for timeout_s; one line naming the holders."""


@dataclass
class Lease:
    """A held device id (None: no device, or none leased here). Released by release() or exit."""

    id: str | None
    path: Path | None = None  # the lock file; None when nothing was locked
    fd: int | None = None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the open file description drops the flock
            self.fd = None

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def folder_for(folder: Path) -> Path:
    """The lock folder of this host under the leases folder."""
    return Path(folder) / _safe(socket.gethostname())


def in_torchrun(env: Mapping[str, str]) -> bool:
    """True under torchrun with several local ranks: each rank uses LOCAL_RANK, no lease."""
    try:
        return int(env.get("LOCAL_WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def visible_ids(env: Mapping[str, str], count: int | None = None) -> list[str]:
    """The physical device ids a lease chooses from.

    CUDA_VISIBLE_DEVICES when set ("" or "-1": none; CUDA ignores every entry from the first
    invalid one on), else 0..count-1, with count from device_count() when not given.
    """
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is not None:
        ids: list[str] = []
        for part in raw.split(","):
            part = part.strip()
            if not part or part.startswith("-"):
                break
            ids.append(part)
        return ids
    if count is None:
        count = device_count()
    return [str(i) for i in range(count)]


NVIDIA_GPUS = "/proc/driver/nvidia/gpus"  # one folder per GPU where the NVIDIA driver is loaded


def device_count() -> int:
    """The number of CUDA devices, counted by torch in a child process.

    The CUDA driver reads CUDA_VISIBLE_DEVICES once, when it initialises; torch counts through
    NVML when it can, but falls back to cudaGetDeviceCount, which initialises the driver. A
    count taken in this process could thus make the lease's CUDA_VISIBLE_DEVICES a no-op.
    A machine without the NVIDIA driver (no /proc/driver/nvidia/gpus) has none: no child.
    """
    if not os.path.isdir(NVIDIA_GPUS):
        return 0
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    done = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise LeaseError(f"counting CUDA devices failed (exit {done.returncode}): {last}")
    return int(done.stdout.strip())


def lease_device(
    ids: Sequence[str],
    *,
    folder: Path,
    holder: str,
    timeout_s: float = TIMEOUT_S,
    poll_s: float = POLL_S,
    log: Callable[[str], None] | None = None,
) -> Lease:
    """Locks the first free id of ids, waiting up to timeout_s while all are held.

    ids empty: a no-op lease (id None). The lock is flock's, so it is released by release(),
    by closing the lease, or when this process ends, however it ends. Processes forked from
    this one (DataLoader workers) share the lock until they exit too; exec'd ones do not.
    log gets one line when the lease starts waiting (default: stderr).
    """
    ids = list(ids)
    if not ids:
        return Lease(None)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    waiting = False
    while True:
        for i in ids:
            path = folder / f"gpu-{_safe(i)}.lock"
            fd = try_lock(path)
            if fd is not None:
                write_holder(fd, holder)
                return Lease(i, path, fd)
        left = deadline - time.monotonic()
        if left <= 0 or not waiting:
            held = ", ".join(f"{i} ({holder_of(folder / f'gpu-{_safe(i)}.lock')})" for i in ids)
        if left <= 0:
            raise LeaseTimeout(
                f"no free GPU for {holder} after {timeout_s:g} s: every visible id is leased: {held} "
                f"(locks in {folder}); run at most that many GPU jobs at once: "
                f"snakemake --resources gpu={len(ids)}"
            )
        if not waiting:
            (log or _stderr)(f"vggrepro: {holder}: every GPU is leased: {held}; waiting up to {timeout_s:g} s")
            waiting = True
        time.sleep(min(poll_s, left))


@dataclass
class Leases:
    """Several held device ids, for a torchrun job of nproc processes (see acquire_many)."""

    held: list[Lease]

    @property
    def ids(self) -> list[str]:
        return [lease.id for lease in self.held]

    def release(self) -> None:
        for lease in self.held:
            lease.release()

    def __enter__(self) -> Leases:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lease_devices(
    ids: Sequence[str], n: int, *, folder: Path, holder: str, timeout_s: float = TIMEOUT_S, poll_s: float = POLL_S
) -> Leases:
    """Locks n of ids, all or none: while fewer than n are free, whatever was locked is let go
    again (two jobs each holding half of what both need would otherwise wait on each other)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    waiting = False
    while True:
        held = []
        for i in ids:
            fd = try_lock(folder / f"gpu-{_safe(i)}.lock")
            if fd is not None:
                held.append(Lease(i, folder / f"gpu-{_safe(i)}.lock", fd))
                if len(held) == n:
                    for lease in held:
                        write_holder(lease.fd, holder)
                    return Leases(held)
        for lease in held:
            lease.release()
        left = deadline - time.monotonic()
        if left <= 0:
            busy = ", ".join(f"{i} ({holder_of(folder / f'gpu-{_safe(i)}.lock')})" for i in ids)
            raise LeaseTimeout(
                f"no {n} free GPUs for {holder} after {timeout_s:g} s: leased: {busy} (locks in {folder})"
            )
        if not waiting:
            _stderr(f"vggrepro: {holder}: fewer than {n} of {len(ids)} GPUs are free; waiting up to {timeout_s:g} s")
            waiting = True
        time.sleep(min(poll_s, left))


def acquire_many(
    holder: str, n: int, *, folder: Path, env: MutableMapping[str, str] | None = None, count: int | None = None,
    timeout_s: float = TIMEOUT_S, poll_s: float = POLL_S,
) -> Leases:
    """acquire() for a torchrun launch of n processes, one GPU each, before torchrun starts:
    leases n of the visible ids and makes exactly those visible. Nothing is locked where no
    more than n are visible (nothing to choose: a SLURM job given n GPUs); fewer than n is an
    error of one line."""
    target = os.environ if env is None else env
    ids = visible_ids(target, count)
    if not ids:
        return Leases([])
    if len(ids) < n:
        raise LeaseError(f"train.nproc {n} needs {n} GPUs; {len(ids)} visible ({', '.join(ids)})")
    if len(ids) == n:
        return Leases([Lease(i) for i in ids])
    leases = lease_devices(ids, n, folder=folder_for(folder), holder=holder, timeout_s=timeout_s, poll_s=poll_s)
    target["CUDA_VISIBLE_DEVICES"] = ",".join(leases.ids)
    return leases


def apply(lease: Lease, env: MutableMapping[str, str] | None = None) -> None:
    """Makes the leased id the only visible device (cuda:0) for this process and its children.

    Must run before the first CUDA call: the driver reads CUDA_VISIBLE_DEVICES once.
    """
    if lease.id is None:
        return
    if env is None:
        env = os.environ
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            raise LeaseError("CUDA is already initialised in this process: lease a device before the first CUDA call")
    env["CUDA_VISIBLE_DEVICES"] = lease.id


def acquire(
    holder: str,
    *,
    folder: Path,
    env: MutableMapping[str, str] | None = None,
    count: int | None = None,
    timeout_s: float = TIMEOUT_S,
    poll_s: float = POLL_S,
) -> Lease:
    """What a stage calls before its first CUDA call: lease a device and make it the visible one.

    A no-op under torchrun with several local ranks, with no device, or with one device (see the
    module docstring). Keep the returned lease referenced, or use it as a context manager; it
    is released at exit in any case. env defaults to os.environ; count to device_count().
    """
    target = os.environ if env is None else env
    if in_torchrun(target):
        return Lease(None)
    ids = visible_ids(target, count)
    if len(ids) < 2:
        return Lease(ids[0] if ids else None)  # nothing to choose; CUDA_VISIBLE_DEVICES unchanged
    lease = lease_device(ids, folder=folder_for(folder), holder=holder, timeout_s=timeout_s, poll_s=poll_s)
    apply(lease, env)
    return lease


def _safe(name: str) -> str:
    """A file name part: UUID ids (GPU-..., MIG-...) keep their letters, anything else becomes _."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def for_stage(device: str, *, holder: str, folder: Path, n: int = 1) -> Lease | Leases:
    """The lease of a train or evaluate stage (n GPUs: a torchrun launch of n processes), held
    until it is released or the process ends; use it as a context manager. None is taken when
    params.yaml's train.device is cpu."""
    if device == "cpu":
        return Lease(None)
    if n > 1:
        return acquire_many(holder, n, folder=folder)
    return acquire(holder, folder=folder)
