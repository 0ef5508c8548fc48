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
