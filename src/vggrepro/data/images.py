"""Decoding and rescaling images (torchvision.io, the fastest decoder measured here)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

from vggrepro.data.ingest import DatasetError, Entry

# torchvision's errors open with the C++ source: "decode_jpeg, /.../decode_jpeg.cpp:171, "
_CPP_LOCATION = re.compile(r"^[\w()]+, \S+:\d+, ")


def decode_bytes(data: bytes | bytearray) -> torch.Tensor:
    """uint8 RGB, 3 x H x W, upright, from a file's bytes; raises RuntimeError if undecodable.

    One decoder for every format prepare accepts: the content decides (a PNG named .JPEG is read
    as a PNG); grayscale, palette and CMYK come back as RGB, alpha is dropped, EXIF orientation is
    applied, 16-bit samples are scaled to 8 bits, an animated GIF gives its first frame.
    """
    if not data:
        raise RuntimeError("empty file")
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)  # a writable copy, as torch wants
    img = decode_image(raw, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    if img.ndim == 4:  # GIF frames
        img = img[0]
    if img.dtype != torch.uint8:  # 16-bit PNG
        img = TF.to_dtype(img, torch.uint8, scale=True)
    return img


def decode(path: Path) -> torch.Tensor:
    """The image at path as uint8 RGB, 3 x H x W, upright (see decode_bytes)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DatasetError(f"{path}: listed in the manifest but missing; rerun the prepare stage") from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot be read ({err.strerror}); expected a readable image") from None
    try:
        return decode_bytes(data)
    except RuntimeError as err:
        raise DatasetError(f"{path}: not a decodable image ({describe(err)}); rerun the prepare stage") from None


def describe(err: Exception) -> str:
    """A decoder error's first line, without the C++ source location."""
    lines = str(err).splitlines()
    return _CPP_LOCATION.sub("", lines[0]) if lines else type(err).__name__


def decode_all(root: Path, entries: list[Entry]) -> list[torch.Tensor]:
    return [decode(root / e.path) for e in entries]


def rescale(img: torch.Tensor, short_side: int) -> torch.Tensor:
    """Isotropic rescaling so the smallest side is `short_side` (the paper's S or Q)."""
    return TF.resize(img, [short_side], antialias=True)
