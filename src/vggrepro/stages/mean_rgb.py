"""mean_rgb: the mean RGB value over the training split, the paper's only preprocessing (Sec. 2.1).

    vggrepro mean_rgb

One streaming pass: `data.workers` processes decode the images and sum their pixels and
squared pixels per channel. The sums are integers, added exactly (int64 per image, Python
integers across images), so the result does not depend on the order or the worker count, and
the moments are divided out once at the end, correctly rounded to float64. The per-channel
standard deviation comes out of the same pass, for runs that also divide by it
(model.normalise: mean_std).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from vggrepro import paths, provenance
from vggrepro.data import images, ingest, loader
from vggrepro.params import Params
from vggrepro.runtime import io

IMAGES_PER_TASK = 64  # images a worker sums before handing back three small tensors
PIXELS_PER_SLICE = 1 << 22  # pixels of one image widened at a time


class PixelSums(Dataset):
    """Item i: (sum of pixels (3,), sum of squared pixels (3,), pixel count) of image i, int64."""

    def __init__(self, files: loader.FileList, root: Path) -> None:
        self.files, self.root = files, root

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = images.decode(self.root / self.files.path(i)).flatten(1)
        sums, squares = torch.zeros(3, dtype=torch.int64), torch.zeros(3, dtype=torch.int64)
        # In slices: a whole 177-megapixel image (images.MAX_PIXELS) widened to int32 and squared
        # took 4 GB beside its 0.5 GB of bytes; a slice takes 2 x 48 MB.
        for start in range(0, x.shape[1], PIXELS_PER_SLICE):
            part = x[:, start : start + PIXELS_PER_SLICE].to(torch.int32)
            sums += part.sum(1, dtype=torch.int64)
            squares += (part * part).sum(1, dtype=torch.int64)
        return torch.stack([sums, squares, torch.full((3,), x.shape[1], dtype=torch.int64)])


def add_sums(items: list[torch.Tensor]) -> torch.Tensor:
    """Sums of a task's images, in the worker: (3 rows: sums, squares, pixels) x 3 channels."""
    return torch.stack(items).sum(0)


def rgb_moments(
    root: Path, entries: list[ingest.Entry] | loader.FileList, *, workers: int = 0
) -> tuple[list[float], list[float], int]:
    """Per-channel mean and standard deviation over every pixel of every image, and the
    number of pixels per channel."""
    files = entries if isinstance(entries, loader.FileList) else loader.FileList(entries)
    tasks = loader.make_loader(
        PixelSums(files, root), workers=workers, batch_size=IMAGES_PER_TASK, collate_fn=add_sums, beside_a_step=False
    )
    total, squares, pixels = [0] * 3, [0] * 3, 0
    # disable=None: a progress bar on a terminal, nothing in logs
    with tqdm(total=len(files), desc="mean_rgb", unit="img", leave=False, disable=None) as bar:
        for done, sums in enumerate(loader.one_line_errors(tasks)):
            s, q, n = sums.tolist()  # Python integers: exact for any dataset size
            total = [a + b for a, b in zip(total, s)]
            squares = [a + b for a, b in zip(squares, q)]
            pixels += n[0]
            bar.update(min(IMAGES_PER_TASK, len(files) - done * IMAGES_PER_TASK))
    if pixels == 0:
        raise ingest.DatasetError("the manifest lists no training images; rerun the prepare stage")
    mean = [t / pixels for t in total]  # int / int: correctly rounded
    # Variance from exact integers, (N sum x^2 - (sum x)^2) / N^2: no cancellation.
    std = [math.sqrt((pixels * q - t * t) / (pixels * pixels)) for t, q in zip(total, squares)]
    return mean, std, pixels


def run(params: Params) -> dict:
    # The whole training split, the slice the schedule holds out included (Sec. 2.1: "the mean
    # RGB value, computed on the training set"); flat arrays, no object per image in the workers.
    files = loader.FileList(ingest.read_manifest(paths.MANIFEST, "train"))
    mean, std, pixels = rgb_moments(params.data_root, files, workers=loader.workers(params))
    out = {"mean_rgb": mean, "std_rgb": std, "images": len(files), "pixels": pixels, "provenance": provenance()}
    io.write_json(paths.MEAN_RGB, out)
    return {"mean_rgb": [round(m, 3) for m in mean], "images": len(files)}
