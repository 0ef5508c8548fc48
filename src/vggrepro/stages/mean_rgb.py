"""mean_rgb: the mean RGB value over the training split, the paper's only preprocessing (Sec. 2.1)."""

from __future__ import annotations

from pathlib import Path

import torch

from vggrepro import io, paths
from vggrepro.data import images, ingest
from vggrepro.params import Params


def mean_rgb(root: Path, entries: list[ingest.Entry]) -> tuple[list[float], int]:
    """Per-channel mean over every pixel of every image: one streaming pass, float64 sums."""
    total = torch.zeros(3, dtype=torch.float64)
    pixels = 0
    for e in entries:
        img = images.decode(root / e.path)
        total += img.flatten(1).sum(dim=1, dtype=torch.float64)
        pixels += img.shape[1] * img.shape[2]
    return (total / pixels).tolist(), pixels


def run(params: Params) -> dict:
    entries = ingest.read_manifest(paths.MANIFEST, "train")
    mean, pixels = mean_rgb(Path(params.raw["data"]["root"]), entries)
    out = {"mean_rgb": mean, "images": len(entries), "pixels": pixels, "provenance": io.provenance()}
    io.write_json(paths.MEAN_RGB, out)
    return {"mean_rgb": [round(m, 3) for m in mean], "images": len(entries)}
