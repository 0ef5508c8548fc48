"""Decoding and rescaling images (torchvision.io, the fastest decoder measured here).

read_header tells, from the header alone (PIL parses it without decoding), the format, mode
and size of an image: prepare refuses an image whose header claims more than MAX_PIXELS
before anything decodes it (a 675-byte JPEG may claim 60000 x 60000 pixels, and the decoder
would allocate 10.8 GB for it), and one whose long side is more than MAX_ASPECT times its short
side: the rescale to S or Q sets the short side, so a 10 x 17,000,000 PNG of a few kilobytes
would become 544 x 925 million pixels at Q = 544. What prepare accepted, training decodes (decode).
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

from vggrepro.data.badfiles import EXIF_ORIENTATION
from vggrepro.data.ingest import DatasetError, Entry

# PIL's own DecompressionBombError threshold (2 x Image.MAX_IMAGE_PIXELS's default), fixed here
# so a changed PIL setting does not change what prepare accepts.
MAX_PIXELS = 2 * 89_478_485
# Long side / short side at most: every rescale of an accepted image to a short side of Q then
# holds at most MAX_ASPECT * Q^2 pixels (validate's memory check takes a square image, Q^2, as
# its lower bound). ILSVRC's panoramas stay well below it; the embedded generator draws 1 to 1.5.
MAX_ASPECT = 16
# Bytes of one image file at most: prepare reads a file whole, and the decoder copies it once
# more. ILSVRC-2012's largest is under 20 MB; a PNG at the pixel limit, 16 bits, stored, 1.1 GB.
MAX_FILE_BYTES = 2**30
# torchvision's errors open with the C++ source: "decode_jpeg, /.../decode_jpeg.cpp:171, ";
# torch's allocator's with "[enforce fail at /.../alloc_cpu.cpp:117] . ".
_CPP_LOCATION = re.compile(r"^[\w()<>:~]+, \S+:\d+, ")
_ENFORCE = re.compile(r"\[enforce fail at [^\]]*\][\s.]*")
_SOURCE_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\s\\/,:;()\[\]'\"]+)+\.(?:cpp|cxx|cc|cu|hpp|c|h)\b(?::\d+)?")


class TooLarge(ValueError):
    """The header claims more than MAX_PIXELS pixels."""


class TooElongated(ValueError):
    """The image's long side is more than MAX_ASPECT times its short side."""


def check_shape(width: int, height: int) -> None:
    """Raises TooLarge or TooElongated for a size prepare does not accept."""
    if width * height > MAX_PIXELS:
        raise TooLarge(_too_large(width * height, f"{width}x{height}"))
    if max(width, height) > MAX_ASPECT * max(1, min(width, height)):
        raise TooElongated(
            f"{width}x{height}: the long side is {max(width, height) / max(1, min(width, height)):,.1f} times the "
            f"short one, above the limit of {MAX_ASPECT} (the rescale to S or Q sets the short side); not decoded"
        )


@dataclass(frozen=True)
class Header:
    format: str  # PIL's: JPEG, MPO, PNG, GIF, WEBP
    mode: str  # PIL's: RGB, L, CMYK, P, RGBA, I;16, ...
    width: int  # as stored (before any EXIF rotation)
    height: int
    transparent: bool = False  # a transparency entry beside the mode (palette or RGB PNG)
    orientation: int = 1  # EXIF orientation, 1 upright
    bits: int = 8  # bits per sample (16 for a 16-bit PNG)


def read_header(data: bytes) -> Header | None:
    """The image's header, without decoding; None if PIL cannot parse it (the decoder decides).

    Raises TooLarge if it claims more than MAX_PIXELS pixels, TooElongated if it is more than
    MAX_ASPECT times as long as it is wide.
    """
    from PIL import Image  # torchvision's own dependency

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=("JPEG", "PNG", "GIF", "WEBP")) as im:
                width, height = im.size
                check_shape(width, height)
                orientation = im.getexif().get(EXIF_ORIENTATION, 1)
                header = Header(
                    format=im.format or "",
                    mode=im.mode,
                    width=width,
                    height=height,
                    transparent="transparency" in im.info,
                    orientation=orientation if isinstance(orientation, int) else 1,
                    bits=16 if im.format == "PNG" and len(data) > 24 and data[24] == 16 else 8,  # IHDR bit depth
                )
    except Image.DecompressionBombError as err:  # PIL's own check, when its limit is lower
        claimed = re.search(r"\((\d+) pixels\)", str(err))
        raise TooLarge(_too_large(int(claimed.group(1)), "") if claimed else str(err)) from None
    except (TooLarge, TooElongated):
        raise
    except Exception:  # noqa: BLE001 - any header PIL cannot read: the decoder has the last word
        return None
    return header


def _too_large(pixels: int, dims: str) -> str:
    return (
        f"the header claims {dims + ' = ' if dims else ''}{pixels:,} pixels, above the limit of "
        f"{MAX_PIXELS:,} (PIL's decompression-bomb threshold); not decoded"
    )


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
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":  # torchvision orients JPEG and PNG only
        header = read_header(bytes(data))
        if header is not None and header.orientation != 1:
            img = orient(img, header.orientation)
    if img.dtype != torch.uint8:  # 16-bit PNG
        img = TF.to_dtype(img, torch.uint8, scale=True)
    return img


def orient(img: torch.Tensor, orientation: int) -> torch.Tensor:
    """An image stored with EXIF orientation 2..8, upright (PIL's ImageOps.exif_transpose)."""
    turn = {
        2: lambda x: x.flip(-1),
        3: lambda x: x.flip(-1).flip(-2),
        4: lambda x: x.flip(-2),
        5: lambda x: x.transpose(-1, -2),
        6: lambda x: torch.rot90(x, k=-1, dims=(-2, -1)),
        7: lambda x: x.flip(-1).flip(-2).transpose(-1, -2),
        8: lambda x: torch.rot90(x, k=1, dims=(-2, -1)),
    }.get(orientation)
    return turn(img).contiguous() if turn else img


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


def describe(err: BaseException) -> str:
    """A decoder error's first line, without the C++ source location or any build path.

    The detail lands in bad_files.csv, so it must not depend on where the wheel was built.
    """
    lines = str(err).strip().splitlines()
    if not lines:
        return type(err).__name__
    text = _ENFORCE.sub("", _CPP_LOCATION.sub("", lines[0]))
    text = _SOURCE_PATH.sub("<source>", text).strip(" ,.")
    return text or type(err).__name__


def decode_all(root: Path, entries: list[Entry]) -> list[torch.Tensor]:
    return [decode(root / e.path) for e in entries]


def rescale(img: torch.Tensor, short_side: int) -> torch.Tensor:
    """Isotropic rescaling so the smallest side is `short_side` (the paper's S or Q)."""
    return TF.resize(img, [short_side], antialias=True)
