"""Decoding and rescaling images (torchvision.io, the fastest decoder measured here)."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_jpeg, read_file
from torchvision.transforms.v2 import functional as TF

from vggrepro.data.ingest import DatasetError, Entry


def decode(path: Path) -> torch.Tensor:
    """uint8 RGB image, 3 x H x W; grayscale and CMYK JPEGs come back as RGB."""
    try:
        return decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB)
    except FileNotFoundError:
        raise DatasetError(f"{path}: listed in the manifest but missing; rerun the prepare stage") from None
    except RuntimeError as err:
        raise DatasetError(f"{path}: not a decodable JPEG ({str(err).splitlines()[0]})") from None


def decode_all(root: Path, entries: list[Entry]) -> list[torch.Tensor]:
    return [decode(root / e.path) for e in entries]


def rescale(img: torch.Tensor, short_side: int) -> torch.Tensor:
    """Isotropic rescaling so the smallest side is `short_side` (the paper's S or Q)."""
    return TF.resize(img, [short_side], antialias=True)
