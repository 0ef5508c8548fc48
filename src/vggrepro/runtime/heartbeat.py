"""A line at least once a minute from a long stage whose output is no terminal.

On a terminal, tqdm's bar shows progress. In a log file (a SLURM job, `dvc repro > log`) the
bar is off, and an ImageNet epoch of VGG-19 would leave the log silent for hours; so a thread
prints the stage's latest progress as one JSON line every VGGREPRO_HEARTBEAT seconds (60 by
default): what runs, where it is, images/s and the time left. Speed only: nothing it prints
reaches an output file.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import threading
import time

from vggrepro.runtime.errors import Error

ENV = "VGGREPRO_HEARTBEAT"  # seconds between two lines


def interval() -> float:
    raw = os.environ.get(ENV, "60")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise Error(f"{ENV}={raw!r}: expected a positive number of seconds")
    return seconds


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


class Heartbeat:
    """with Heartbeat("train", {"run": "E_jit", "epoch": 3}, total=images) as beat: ... beat.done(n, step=k)

    Prints {"heartbeat": stage, <fields>, "done": n, "of": total, "images_per_s": r, "eta": h:mm:ss}
    every `every` seconds while the block runs, if `enabled` (default: the stream is no
    terminal). `start`: images already done (a resumed epoch), not counted in the rate."""

    def __init__(self, stage: str, fields: dict, *, total: int, start: int = 0, every: float | None = None,
                 enabled: bool | None = None, stream=None) -> None:
        self.stage, self.fields, self.total, self.start = stage, dict(fields), total, start
        self.stream = stream or sys.stdout
        self.every = interval() if every is None else every
        self.enabled = (not self.stream.isatty()) if enabled is None else enabled
        self._done, self._extra = start, {}
        self._began = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def done(self, images: int, **extra) -> None:
        """The images done so far (and any fields that change, e.g. step)."""
        self._done, self._extra = images, extra

    def line(self) -> str:
        done, elapsed = self._done, time.monotonic() - self._began
        rate = (done - self.start) / elapsed if elapsed > 0 else 0.0
        left = (self.total - done) / rate if rate > 0 else None
        return json.dumps({
            "heartbeat": self.stage, **self.fields, **self._extra, "done": done, "of": self.total,
            "images_per_s": round(rate), "eta": _clock(left) if left is not None else "unknown",
        })

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            print(self.line(), file=self.stream, flush=True)

    def __enter__(self) -> Heartbeat:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
