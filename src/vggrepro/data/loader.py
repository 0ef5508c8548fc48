"""Streaming images through a torch DataLoader: `data.workers` processes decode (and rescale,
crop, sum ...) per item, and nothing holds a split in memory but its file list.

Each stage builds its dataset on these pieces: training batches (vggrepro.data.train_batches),
whole validation images at Q (ScaledImages, for evaluate), pixel sums (mean_rgb). The worker
count changes speed only: items come back in order, and no item draws from a worker's RNG.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms.v2 import functional as TF

from vggrepro.data.images import decode, rescale
from vggrepro.data.ingest import DatasetError, Entry
from vggrepro.params import Params
from vggrepro.runtime.signals import die_with_parent

PREFETCH = 4  # batches each worker keeps ready: enough to hide a slow file, small in memory
IMAGES_PER_TASK = 16  # whole images a worker decodes before handing them back (scaled_images)
# The lowest priority: workers take only the cycles the step's threads leave. Measured on 2 cores
# (train_A_256, demo geometry, 2 threads): 0 workers 571-661 img/s; 2 workers at the stage's
# priority 87-465, at niceness 10 685-786, at 19 768-810.
WORKER_NICENESS = 19


class FileList:
    """The paths and labels of a split as flat numpy arrays.

    A list of 1.28M Python objects would be copied page by page into every forked worker as
    reference counts change; flat arrays are shared by the workers as they are.
    """

    def __init__(self, entries: Iterable[Entry]) -> None:
        encoded, labels, sizes = [], [], []
        for e in entries:
            encoded.append(e.path.encode())
            labels.append(e.label)
            sizes.append((e.height, e.width))
        self._blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self._ends = np.cumsum([len(p) for p in encoded], dtype=np.int64)
        self.labels = np.array(labels, dtype=np.int64)
        self.sizes = np.array(sizes, dtype=np.int64).reshape(-1, 2)  # (height, width) upright; 0 unknown

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, i: int) -> str:
        start = int(self._ends[i - 1]) if i else 0
        return self._blob[start : int(self._ends[i])].tobytes().decode()


class ScaledImages(Dataset):
    """Item i: image i decoded and isotropically rescaled so its smallest side is `side`
    (Sec. 3.2's Q; None: as decoded), uint8 3 x H x W."""

    def __init__(self, files: FileList, root: Path, side: int | None) -> None:
        self.files, self.root, self.side = files, root, side

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = decode(self.root / self.files.path(i))
        return image if self.side is None else rescale(image, self.side)


class CenterCrops(Dataset):
    """Item i: (uint8 3 x crop x crop, label) of image i rescaled so its smallest side is
    `side`, cropped at its centre: the held-out images the schedule watches (Sec. 3.1)."""

    def __init__(self, files: FileList, root: Path, side: int, crop: int) -> None:
        self.files, self.root, self.side, self.crop = files, root, side, crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = rescale(decode(self.root / self.files.path(i)), self.side)
        return TF.center_crop(image, [self.crop, self.crop]).contiguous(), int(self.files.labels[i])


def pack(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of different sizes as one flat buffer and their shapes (n, 3): a worker hands
    back a task in one transfer (per image, the transfer cost more than decoding it)."""
    return torch.cat([im.flatten() for im in images]), torch.tensor([tuple(im.shape) for im in images])


def unpack(flat: torch.Tensor, shapes: torch.Tensor) -> list[torch.Tensor]:
    sizes = shapes.prod(dim=1).tolist()
    return [chunk.view(shape) for chunk, shape in zip(flat.split(sizes), shapes.tolist())]


def scaled_images(files: FileList, root: Path, side: int | None, *, workers: int) -> Iterator[torch.Tensor]:
    """Every image of files in order, rescaled so its smallest side is `side` (ScaledImages),
    decoded by `workers` processes, IMAGES_PER_TASK at a time."""
    tasks = make_loader(ScaledImages(files, root, side), workers=workers, batch_size=IMAGES_PER_TASK, collate_fn=pack)
    for flat, shapes in one_line_errors(tasks):
        yield from unpack(flat, shapes)


def workers(params: Params) -> int:
    """data.workers: decoding processes, 0 for the stage's own; speed only, never results."""
    return params.raw["data"]["workers"]


def make_loader(
    dataset: Dataset,
    *,
    workers: int,
    batch_sampler: Sampler | None = None,
    batch_size: int | None = None,
    collate_fn: Callable | None = None,
    beside_a_step: bool = True,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader with `workers` processes, kept across epochs, that draws nothing from
    torch's global generator (dropout's), so the worker count cannot shift a training run.

    batch_size None (and no batch_sampler): one item at a time, as the dataset returns it.
    beside_a_step: the stage computes with its own threads meanwhile, so the workers yield to
    them (_yield_to_the_step); False where the workers do all the work (mean_rgb).
    pin_memory: batches in page-locked memory, for copies to a GPU that do not wait.
    """
    return DataLoader(
        dataset,
        batch_size=1 if batch_sampler is not None else batch_size,  # DataLoader's rule with a batch_sampler
        batch_sampler=batch_sampler,
        collate_fn=collate_fn,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=PREFETCH if workers > 0 else None,
        generator=torch.Generator().manual_seed(0),  # its only use: seeds of worker RNGs we never draw from
        worker_init_fn=_yield_to_the_step if beside_a_step else _ignore_stop_signals,
        pin_memory=pin_memory,
    )


def _yield_to_the_step(worker_id: int) -> None:
    """Workers run at a lower priority than the stage's own threads.

    The step's threads (params.yaml `threads`) meet at a barrier after every op; a worker that
    takes one of their cores stalls them all. At the lowest priority the workers fill the cycles
    the step leaves idle, and get the whole machine whenever the step waits for a batch. Where
    cores outnumber threads + workers (a GPU machine), the priority changes nothing.
    """
    _ignore_stop_signals(worker_id)
    os.nice(WORKER_NICENESS)


def _ignore_stop_signals(worker_id: int) -> None:
    """Ctrl-C reaches the whole process group: the stage saves its progress and stops the
    workers itself. SIGTERM stays fatal: it is how the loader (and Python's exit) stops a worker
    that does not answer; the stage tells a worker killed by SIGTERM from a failure. And the
    worker dies with the stage (die_with_parent)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()


def one_line_errors(batches: Iterable[Any]) -> Iterator[Any]:
    """Iterates a loader; a DatasetError raised in a worker comes back as its own one line.

    (A worker's exception reaches the main process with the worker's traceback in its text.)
    """
    try:
        yield from batches
    except DatasetError as err:
        raise DatasetError(_original_message(str(err))) from None


def _original_message(text: str) -> str:
    last = [line for line in text.splitlines() if line.strip()][-1]
    name = DatasetError.__name__ + ": "
    return last.split(name, 1)[1] if name in last else last
