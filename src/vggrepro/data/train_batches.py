"""Training batches (Sec. 3.1), streamed: the order of an epoch and every random draw of a
sample are pure functions of the run's seed, so the worker count changes no bit.

The order of an epoch is a function of (run seed, epoch), and every draw of a sample (S, crop
position, flip, colour shift: vggrepro.data.transforms) comes from a generator of its own, a
function of (run seed, epoch, sample index):

    order  = permutation(SeedSequence(seed, spawn_key=(ORDER, epoch)))
    sample = Generator(SeedSequence(seed, spawn_key=(SAMPLE, epoch, index)))

so 0, 1 or 16 workers give the same batches bit for bit, and resuming mid-epoch is starting at
a position of the order (as torchvision's references do with `sampler.set_epoch`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vggrepro.data.images import decode
from vggrepro.data.loader import FileList, make_loader
from vggrepro.data.transforms import TrainTransform

ORDER, SAMPLE = 0, 1  # spawn_key tags: the epoch's order and a sample's draws never share a stream


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the n training samples in an epoch."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(ORDER, epoch))).permutation(n)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of every random draw of sample `index` in `epoch`."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SAMPLE, epoch, index)))


class TrainImages(Dataset):
    """Item (epoch, index): (uint8 crop, float32 colour shift (3,), label) of a training image."""

    def __init__(self, files: FileList, root: Path, transform: TrainTransform, seed: int) -> None:
        self.files, self.root, self.transform, self.seed = files, root, transform, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        epoch, index = key
        image = decode(self.root / self.files.path(index))
        patch, shift = self.transform(image, sample_rng(self.seed, epoch, index))
        return patch, shift, int(self.files.labels[index])


class EpochBatches(Sampler):
    """Batches of (epoch, index) keys in the epoch's order; the last batch may be short."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = epoch_order(self.seed, self.epoch, self.n).tolist()
        for start in range(0, self.n, self.batch_size):
            yield [(self.epoch, i) for i in order[start : start + self.batch_size]]


def train_loader(
    *, files: FileList, root: Path, transform: TrainTransform, seed: int, batch_size: int, workers: int
) -> tuple[DataLoader, EpochBatches]:
    """Batches (uint8 N x 3 x crop x crop, colour shifts N x 3, labels N); call
    `sampler.set_epoch(e)` before iterating epoch e."""
    sampler = EpochBatches(len(files), batch_size, seed)
    return make_loader(TrainImages(files, root, transform, seed), workers=workers, batch_sampler=sampler), sampler
