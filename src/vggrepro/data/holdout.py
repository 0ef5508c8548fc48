"""The held-out slice of the training split that Sec. 3.1's schedule watches.

The paper decreased the learning rate when "the validation set accuracy stopped improving";
here the schedule watches a slice held out of the training split instead, so the val split
the tables report never steers training. The slice is stratified and seeded: within each
class, the round(fraction * n) images (at most n - 1) with the smallest BLAKE2b of
"seed/holdout/path" are held out. Each image's draw depends on its own path only.
"""

from __future__ import annotations

import hashlib
import math

from vggrepro.data.ingest import Entry
from vggrepro.params import ParamsError


def _draw(seed: int, path: str) -> str:
    return hashlib.blake2b(f"{seed}/holdout/{path}".encode(), digest_size=8).hexdigest()


def split(entries: list[Entry], *, fraction: float, seed: int) -> tuple[list[Entry], list[Entry]]:
    """(images to train on, held-out images), each in the manifest's order."""
    by_class: dict[int, list[Entry]] = {}
    for e in entries:
        by_class.setdefault(e.label, []).append(e)
    held: set[str] = set()
    for items in by_class.values():
        n = min(len(items) - 1, math.floor(fraction * len(items) + 0.5))
        held.update(e.path for e in sorted(items, key=lambda e: _draw(seed, e.path))[:n])
    if entries and not held:
        raise ParamsError(
            f"train.holdout: {fraction:g} holds out no image of the {len(entries)} training images in "
            f"{len(by_class)} classes (round({fraction:g} x images) per class); expected a fraction giving "
            "at least one held-out image a class"
        )
    return [e for e in entries if e.path not in held], [e for e in entries if e.path in held]
