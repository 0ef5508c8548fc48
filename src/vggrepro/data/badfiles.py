"""Bad files: what each kind is, what prepare does with it, and how it is recognised.

Every image prepare did not read as a plain 8-bit RGB file gets a row in data/bad_files.csv
(path, kind, action, detail), so nothing is dropped or changed silently:

- excluded: not in the manifest (the decoder, vggrepro.data.images.decode, cannot read it, or
  it has no label);
- converted: in the manifest, decoded to 8-bit RGB by that same decoder, upright;
- ignored: not an image file (its suffix is not .jpg, .jpeg or .png).

ILSVRC-2012's training set holds such files: 22 CMYK JPEGs and one PNG named .JPEG, and some
grayscale JPEGs. An image smaller than the crop is no bad file: it is kept, and the isotropic
rescale to S (Sec. 3.1, S >= crop) upsamples it, as for any other image.
"""

from __future__ import annotations

import csv
import errno
import io
from collections import Counter
from dataclasses import dataclass

EXCLUDED, CONVERTED, IGNORED = "excluded", "converted", "ignored"
KINDS = {
    "empty_file": EXCLUDED,  # zero bytes
    "not_an_image": EXCLUDED,  # neither JPEG, PNG, GIF nor WebP data, whatever the name says
    "truncated": EXCLUDED,  # a JPEG or PNG whose data stops early
    "corrupt": EXCLUDED,  # any other decoding error
    "unreadable": EXCLUDED,  # opening or reading it failed (permissions, I/O)
    "symlink_loop": EXCLUDED,  # a link that resolves to itself, or to a folder read already
    "broken_link": EXCLUDED,  # a link to nothing
    "missing": EXCLUDED,  # listed by the val labels (CSV or devkit), no such file
    "unlabelled": EXCLUDED,  # an image outside any class folder, or a flat val image with no label
    "empty_class": EXCLUDED,  # a class with no readable training image: not a class, later labels shift
    "wrong_suffix": CONVERTED,  # e.g. PNG data named .JPEG: decoded by content
    "cmyk": CONVERTED,
    "grayscale": CONVERTED,
    "palette": CONVERTED,
    "alpha": CONVERTED,  # the alpha channel is dropped; the colours are kept as stored
    "16bit": CONVERTED,  # 16-bit samples scaled to 8 bits (the top byte)
    "exif_rotated": CONVERTED,  # EXIF orientation applied: the manifest's width and height are upright
    "other_file": IGNORED,
}
COLUMNS = ("path", "kind", "action", "detail")


@dataclass(frozen=True, order=True)
class BadFile:
    path: str  # relative to the data root, forward slashes; a folder ends with "/"
    kind: str
    detail: str

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown bad-file kind {self.kind!r} (expected one of {', '.join(KINDS)})")

    @property
    def action(self) -> str:
        return KINDS[self.kind]

    @property
    def excluded(self) -> bool:
        return self.action == EXCLUDED


def csv_text(rows: list[BadFile]) -> str:
    """data/bad_files.csv: sorted by path and kind, so a rerun writes the same bytes."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows((r.path, r.kind, r.action, r.detail) for r in sorted(rows))
    return buf.getvalue()


def read_csv(text: str) -> list[BadFile]:
    return [BadFile(r["path"], r["kind"], r["detail"]) for r in csv.DictReader(io.StringIO(text))]


def summary(rows: list[BadFile]) -> dict:
    """Files per action and rows per kind, for the stage's summary line."""
    files = {action: {r.path for r in rows if r.action == action} for action in (EXCLUDED, CONVERTED, IGNORED)}
    return {
        **{action: len(paths) for action, paths in files.items()},
        "bad_files": dict(sorted(Counter(r.kind for r in rows).items())),
    }


def from_os_error(path: str, err: OSError) -> BadFile:
    """An open/stat failure as a row; errno, not the message, decides the kind."""
    reason = err.strerror or type(err).__name__
    if err.errno == errno.ELOOP:
        return BadFile(path, "symlink_loop", f"a symbolic link that resolves to itself ({reason})")
    if err.errno == errno.ENOENT:
        return BadFile(path, "broken_link", f"a symbolic link to nothing ({reason})")
    return BadFile(path, "unreadable", f"cannot be read ({reason})")


PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk's type and CRC close every complete PNG


def from_decode_error(path: str, data: bytes, message: str) -> BadFile:
    """A decoder error (vggrepro.data.images.describe of torchvision.io's) as a row."""
    if not data:
        return BadFile(path, "empty_file", "0 bytes")
    if message.startswith("Unsupported image file"):
        return BadFile(path, "not_an_image", f"not JPEG, PNG, GIF or WebP data ({len(data)} bytes)")
    if "truncated" in message or (data.startswith(b"\x89PNG") and not data.rstrip(b"\0").endswith(PNG_END)):
        return BadFile(path, "truncated", f"the data stops early ({len(data)} bytes): {message}")
    return BadFile(path, "corrupt", message)


IMAGE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
EXIF_ORIENTATION = 0x0112  # EXIF tag 274; 1 is upright, 2..8 mirror and/or rotate


def conversions(path: str, data: bytes) -> list[BadFile]:
    """What decoding a readable image changed on the way to 8-bit upright RGB.

    Read from the header alone (PIL opens lazily); the decoder has already accepted the file,
    so a header PIL cannot parse just adds no row.
    """
    from PIL import Image  # torchvision's own dependency

    try:
        with Image.open(io.BytesIO(data), formats=("JPEG", "PNG", "GIF", "WEBP")) as im:
            fmt, mode, (width, height) = im.format, im.mode, im.size
            transparent = "transparency" in im.info
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - any header PIL cannot read: nothing to report
        return []
    rows = []
    suffix = "." + path.rsplit(".", 1)[-1]
    if IMAGE_FORMATS.get(suffix.lower()) != fmt:
        rows.append(BadFile(path, "wrong_suffix", f"{fmt} data in a {suffix} file; decoded as {fmt}"))
    if mode == "CMYK":  # PIL reports Adobe YCCK as CMYK too
        rows.append(BadFile(path, "cmyk", "CMYK converted to RGB"))
    elif mode in GRAYSCALE_MODES:
        rows.append(BadFile(path, "grayscale", f"grayscale (mode {mode}) repeated into R, G and B"))
    elif mode in ("P", "PA"):
        rows.append(BadFile(path, "palette", "palette colours expanded to RGB"))
    if "A" in mode or transparent:
        rows.append(BadFile(path, "alpha", f"alpha dropped (mode {mode}); colours kept as stored"))
    if fmt == "PNG" and len(data) > 24 and data[24] == 16:  # IHDR bit depth
        rows.append(BadFile(path, "16bit", "16-bit samples scaled to 8 bits"))
    if isinstance(orientation, int) and 2 <= orientation <= 8:
        upright = (height, width) if orientation >= 5 else (width, height)  # 5..8 swap the axes
        rows.append(
            BadFile(
                path,
                "exif_rotated",
                f"EXIF orientation {orientation} applied: stored {width}x{height}, upright {upright[0]}x{upright[1]}",
            )
        )
    return rows
