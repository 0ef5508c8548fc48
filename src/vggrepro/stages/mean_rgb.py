"""mean_rgb: the mean RGB value over the training split, the paper's only preprocessing (Sec. 2.1).

The per-channel standard deviation comes out of the same pass, for runs that also divide by it
(model.normalise: mean_std).
"""

from __future__ import annotations

from pathlib import Path

import torch

from vggrepro import io, paths
from vggrepro.data import images, ingest
from vggrepro.params import Params


def rgb_moments(root: Path, entries: list[ingest.Entry]) -> tuple[list[float], list[float], int]:
    """Per-channel mean and standard deviation over every pixel of every image.

    One streaming pass; the sums are float64 integers-valued, so exact for any dataset size.
    """
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    pixels = 0
    for e in entries:
        img = images.decode(root / e.path).flatten(1).double()
        total += img.sum(dim=1)
        squares += (img * img).sum(dim=1)
        pixels += img.shape[1]
    mean = total / pixels
    std = (squares / pixels - mean * mean).clamp(min=0).sqrt()
    return mean.tolist(), std.tolist(), pixels


def run(params: Params) -> dict:
    entries = ingest.read_manifest(paths.MANIFEST, "train")
    mean, std, pixels = rgb_moments(Path(params.raw["data"]["root"]), entries)
    out = {"mean_rgb": mean, "std_rgb": std, "images": len(entries), "pixels": pixels, "provenance": io.provenance()}
    io.write_json(paths.MEAN_RGB, out)
    return {"mean_rgb": [round(m, 3) for m in mean], "images": len(entries)}
