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
from vggrepro.data.loader import FileList, make_loader, scaled_images
from vggrepro.data.transforms import TrainTransform

ORDER, SAMPLE = 0, 1  # spawn_key tags: the epoch's order and a sample's draws never share a stream


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the n training samples in an epoch."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(ORDER, epoch))).permutation(n)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of every random draw of sample `index` in `epoch`."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SAMPLE, epoch, index)))


# A training set whose decoded images take at most this many bytes is decoded once and held in
# memory (rescaled once, for a fixed S), as a tight loop would: the embedded set at the CPU
# default takes about 0.1 GB at S=256 and 0.3 GB jittered; ImageNet (about 330 GB at S=256)
# streams. The same ops run on the same pixels either way, so the choice changes no bit.
RESIDENT_BYTES = 2 * 2**30


def resident_bytes(files: FileList, scale: tuple[int, int]) -> int | None:
    """Bytes of the training images decoded (and, for a fixed S, rescaled to S); None where
    the manifest does not know an image's size."""
    heights, widths = files.sizes[:, 0], files.sizes[:, 1]
    if len(files) == 0 or (files.sizes <= 0).any():
        return None
    s_min, s_max = scale
    if s_min != s_max:
        return int(3 * (heights * widths).sum())
    short, long = np.minimum(heights, widths), np.maximum(heights, widths)
    return int(3 * (s_min * np.ceil(s_min * long / short)).sum())


def resident_images(files: FileList, root: Path, scale: tuple[int, int], *, workers: int) -> list[torch.Tensor] | None:
    """Every training image decoded once, rescaled to S for a fixed S (the transform's rescale
    to the same S then returns it as it is), or None where they would take more than
    RESIDENT_BYTES: the loader then decodes each image every epoch."""
    needed = resident_bytes(files, scale)
    if needed is None or needed > RESIDENT_BYTES:
        return None
    s_min, s_max = scale
    return list(scaled_images(files, root, s_min if s_min == s_max else None, workers=workers))


class TrainImages(Dataset):
    """Item (epoch, index): (uint8 crop, float32 colour shift (3,), label) of a training image.

    resident: the decoded images (resident_images), or None to decode from root each time.
    """

    def __init__(
        self, files: FileList, root: Path, transform: TrainTransform, seed: int, resident: list[torch.Tensor] | None = None
    ) -> None:
        self.files, self.root, self.transform, self.seed, self.resident = files, root, transform, seed, resident

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        epoch, index = key
        image = self.resident[index] if self.resident is not None else decode(self.root / self.files.path(index))
        patch, shift = self.transform(image, sample_rng(self.seed, epoch, index))
        return patch, shift, int(self.files.labels[index])


class EpochBatches(Sampler):
    """This process's part of each global batch of (epoch, index) keys, in the epoch's order.

    Global batches are `batch_size` keys; the last, short one is dropped (so every step sees
    a full batch on every process; each epoch drops other images). Under torchrun, process
    `rank` of `world` takes keys [rank * b, (rank + 1) * b) of each batch, b = batch_size /
    world. `set_epoch(e, start)` begins epoch e at global batch `start` (a resume).
    """

    def __init__(self, n: int, batch_size: int, seed: int, *, rank: int = 0, world: int = 1) -> None:
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} does not split over {world} processes")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch, self.start = 1, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    @property
    def steps(self) -> int:
        """Global batches in an epoch."""
        return self.n // self.batch_size

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = epoch_order(self.seed, self.epoch, self.n).tolist()
        part = self.batch_size // self.world
        for step in range(self.start, self.steps):
            first = step * self.batch_size + self.rank * part
            yield [(self.epoch, i) for i in order[first : first + part]]


def train_loader(
    *,
    files: FileList,
    root: Path,
    transform: TrainTransform,
    seed: int,
    batch_size: int,
    workers: int,
    rank: int = 0,
    world: int = 1,
    pin_memory: bool = False,
    keep_resident: bool = True,
) -> tuple[DataLoader, EpochBatches]:
    """This process's part of each global batch: (uint8 N x 3 x crop x crop, colour shifts
    N x 3, labels N); call `sampler.set_epoch(e, start)` before iterating epoch e.

    keep_resident: decode the images once and keep them in memory where they fit
    (resident_images); False decodes each image every epoch."""
    sampler = EpochBatches(len(files), batch_size, seed, rank=rank, world=world)
    resident = resident_images(files, root, transform.scale, workers=workers) if keep_resident else None
    dataset = TrainImages(files, root, transform, seed, resident)
    return make_loader(dataset, workers=workers, batch_sampler=sampler, pin_memory=pin_memory), sampler
