"""SIGTERM (SLURM's scancel and time limit, kill) and SIGINT (Ctrl-C) as a request to stop:
the training loop saves a resume point after the step in flight and raises Stopped, which the
CLI prints as one line before exiting with 128 + the signal's number (not vggrepro's Error:
its exit status differs). No torch here: the CLI catches Stopped without importing torch."""

from __future__ import annotations

import signal


class Stopped(Exception):
    """A stop signal arrived and the progress was saved; the message says where."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """While entered, SIGTERM and SIGINT set `received` instead of killing the process."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __enter__(self) -> "StopSignals":
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else ""


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """Run in a worker process: the kernel sends it SIGKILL when its parent dies (Linux), so a
    worker stuck in a read (a hung network file system) cannot outlive a killed stage. torch's
    own watchdog only looks between tasks. Elsewhere a no-op."""
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the call: nobody is left to signal us
        os._exit(1)
