"""runs/<run>/live (vggrepro.paths.live_dir): a running training's progress, by DVC's logger
(dvclive).

Ten times an epoch, evenly spaced and at its last step, the epoch's running training loss and
top-1 error so far go to dvclive's step files, live/plots/metrics/train/{loss,top1_err}.tsv
against the global step: `dvc plots show` draws them while the run goes on (train_log.json
has the held-out error and the lr, by epoch). dvclive's summary, live/metrics.json (a DVC
metric), holds only the epoch and the global step reached, so `dvc exp show` and `dvc metrics
show` tell where a run is; a summary of losses would add columns per run that the report's
headline already says.

The points also travel in the resume point (training.Position.points): a resumed run writes
the files anew from them, since both engines delete a stage's outputs before running it, and
their final bytes are an unbroken run's. No timestamps, no speed: the files are a pure
function of the inputs.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from vggrepro.runtime import io

POINTS_PER_EPOCH = 10
METRICS = ("train/loss", "train/top1_err")  # what each point holds (dvc.yaml plots them: vggrepro.engine.registry)


def is_point(step: int, steps_per_epoch: int) -> bool:
    """Whether the epoch's step-th global batch (1-based) ends with a point: min(10, steps)
    points, evenly spaced, the last at the epoch's last step."""
    return step * POINTS_PER_EPOCH // steps_per_epoch != (step - 1) * POINTS_PER_EPOCH // steps_per_epoch


def _live_class():
    from dvclive import Live  # imports DVC: only a training run pays for it

    class FilesOnly(Live):
        """dvclive's files and nothing else: no DVC repository opened, or created in a git
        repository that has none (dvc.yaml declares the files, and DVC's experiments are the
        user's), and nothing sent to DVC Studio. Private hooks: dvclive is pinned below 4."""

        def _init_dvc(self) -> None:
            pass

        def _init_studio(self) -> None:
            self._studio_events_to_skip.update({"start", "data", "done"})

    return FilesOnly


class LiveLog:
    """A run's live folder, written anew from `points` (those of a resume point, or none); it
    owns the list and adds to it. dvclive writes its step files under folder/plots; the
    progress goes to folder/metrics.json."""

    def __init__(self, folder: str, points: list[dict], *, total_steps: int) -> None:
        logging.getLogger("dvclive").setLevel(logging.ERROR)
        shutil.rmtree(folder, ignore_errors=True)
        self.summary, self.points, self.total_steps = Path(folder) / "metrics.json", points, total_steps
        self.live = _live_class()(folder, dvcyaml=False, save_dvc_exp=False, report=None)
        Path(self.live.plots_dir).mkdir(parents=True, exist_ok=True)  # an output from the start
        for point in points:
            self._write(point)
        self._progress(points[-1]["step"] if points else 0)

    def add(self, point: dict) -> None:
        """A point: {"step": global step, "epoch": e, name: value for name in METRICS}."""
        self.points.append(point)
        self._write(point)
        self._progress(point["step"])

    def finish(self) -> None:
        """The run has ended (at max_epochs or a plateau): 100%."""
        self._progress(self.total_steps)

    def _write(self, point: dict) -> None:
        self.live.step = point["step"]
        for name in METRICS:
            self.live.log_metric(name, point[name])

    def _progress(self, step: int) -> None:
        done = 100.0 if step >= self.total_steps else round(100.0 * step / self.total_steps, 1)
        io.write_text(self.summary, json.dumps({"progress": done}) + "\n")
