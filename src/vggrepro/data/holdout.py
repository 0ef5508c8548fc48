"""The held-out slice of the training split that Sec. 3.1's schedule watches.

The paper decreased the learning rate when "the validation set accuracy stopped improving";
here the schedule watches a slice held out of the training split instead, so the val split
the tables report never steers training. The slice is stratified and seeded: within each
class of n >= 2 images, the round(fraction * n) images, at least one and at most n - 1, with
the smallest BLAKE2b of "seed/holdout/path" are held out; a class of one image holds none out.
So the slice is empty only where no class has two training images, which prepare refuses
(`check_classes`) before any training output is deleted. Each image's draw depends on its own
path only.
"""

from __future__ import annotations

import hashlib
import math

from vggrepro.data.ingest import Entry
from vggrepro.runtime.errors import Error


class DataError(Error):
    """A dataset the stages cannot use, said in one line."""


_NONE_HELD = (
    "data: no class of the {images} training images in {classes} classes has two, so none can be held out for "
    "the schedule (train.holdout) and one kept to train on; expected at least two training images in some class"
)


def check_classes(entries: list[Entry]) -> None:
    """prepare's check: some class of the training split has two images, so the held-out slice
    is not empty whatever train.holdout is."""
    train = [e for e in entries if e.split == "train"]
    counts: dict[int, int] = {}
    for e in train:
        counts[e.label] = counts.get(e.label, 0) + 1
    if train and max(counts.values()) < 2:
        raise DataError(_NONE_HELD.format(images=len(train), classes=len(counts)))


def held_count(n: int, fraction: float) -> int:
    """Images held out of a class of n: round(fraction x n), at least one and at most n - 1."""
    return min(n - 1, max(1, math.floor(fraction * n + 0.5)))


def _draw(seed: int, path: str) -> str:
    return hashlib.blake2b(f"{seed}/holdout/{path}".encode(), digest_size=8).hexdigest()


def split(entries: list[Entry], *, fraction: float, seed: int) -> tuple[list[Entry], list[Entry]]:
    """(images to train on, held-out images), each in the manifest's order."""
    by_class: dict[int, list[Entry]] = {}
    for e in entries:
        by_class.setdefault(e.label, []).append(e)
    held: set[str] = set()
    for items in by_class.values():
        n = held_count(len(items), fraction)
        held.update(e.path for e in sorted(items, key=lambda e: _draw(seed, e.path))[:n])
    if entries and not held:
        raise DataError(_NONE_HELD.format(images=len(entries), classes=len(by_class)))
    return [e for e in entries if e.path not in held], [e for e in entries if e.path in held]
