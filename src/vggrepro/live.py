"""runs/<run>/live: a running training's progress, by DVC's logger (dvclive).

Ten times an epoch (and at its last step) the epoch's running training loss, top-1 error and
lr go to dvclive's step files, live/plots/metrics/train/*.tsv with x = the global step, and
at each epoch's end the held-out error and loss to live/plots/metrics/holdout/*.tsv:
`dvc plots show` draws them while the run goes on. dvclive's summary, live/metrics.json (a
DVC metric), holds only the epoch and the global step reached, so `dvc exp show` shows where
a run is; a summary of losses would add columns per run that the report's headline already
says.

The points also travel in the resume point (training.Position.points): a resumed run writes
the files anew from them, since both engines delete a stage's outputs before running it, and
their final bytes are an unbroken run's. No timestamps, no speed: the files are a pure
function of the inputs.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

from vggrepro import paths

POINTS_PER_EPOCH = 10


def every(steps_per_epoch: int) -> int:
    """Steps between two points of an epoch."""
    return max(1, math.ceil(steps_per_epoch / POINTS_PER_EPOCH))


def is_point(step: int, steps_per_epoch: int) -> bool:
    """Whether the epoch's step-th global batch (1-based) ends with a point."""
    return step % every(steps_per_epoch) == 0 or step == steps_per_epoch


class LiveLog:
    """A run's live folder, written anew from `points` (those of a resume point, or none)."""

    def __init__(self, run: str, points: list[dict]) -> None:
        from dvclive import Live  # imports DVC: only a training run pays for it

        logging.getLogger("dvclive").setLevel(logging.ERROR)  # its notes on git and DVC state are not ours
        shutil.rmtree(paths.live_dir(run), ignore_errors=True)
        # dvc.yaml declares the files (vggrepro.engine.registry); DVC's experiments are the user's
        self.live = Live(paths.live_dir(run), dvcyaml=False, save_dvc_exp=False, report=None)
        Path(paths.live_plots(run)).mkdir(parents=True, exist_ok=True)  # an output even with no point (an import)
        self.epoch = 0
        for point in points:
            self._write(point)
        self._summary(points[-1] if points else {"step": 0, "epoch": 0})

    def add(self, points: list[dict], point: dict) -> None:
        """Appends `point` ({"step", "epoch", name: value, ...}) to the run's points and files."""
        points.append(point)
        self._write(point)
        self._summary(point)

    def _write(self, point: dict) -> None:
        self.live.step = point["step"]
        for name, value in point.items():
            if name not in ("step", "epoch"):
                self.live.log_metric(name, value)

    def _summary(self, point: dict) -> None:
        self.live.summary = {"epoch": point["epoch"]}  # make_summary adds the step
        self.live.step = point["step"]
        self.live.make_summary()
