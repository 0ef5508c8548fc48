"""Bad files: what each kind is, what prepare does with it, and how it is recognised.

Every image prepare did not read as a plain 8-bit RGB file gets a row in data/bad_files.csv
(path, kind, action, detail), so nothing is dropped or changed silently:

- excluded: not in the manifest (the decoder, vggrepro.data.images.decode_bytes, cannot read
  it, its header claims too many pixels or too elongated a shape, it has no label, or it is hidden);
- converted: in the manifest, decoded to 8-bit RGB by that same decoder, upright;
- ignored: not an image file (its suffix is none of the image formats below);
- kept: in the manifest as it is, but worth knowing (a val image whose bytes a training image
  has: a net may have learnt it);
- kept_class: a class folder (or a class of the synset list) with no usable training image.
  It stays in the class list, so no later label shifts (torchvision's ImageFolder labels every
  class folder too); it just cannot be learnt.

ILSVRC-2012's training set holds such files: 22 CMYK JPEGs and one PNG named .JPEG, and some
grayscale JPEGs. An image smaller than the crop is no bad file: it is kept, and the isotropic
rescale to S (Sec. 3.1, S >= crop) upsamples it, as for any other image.

Known limit: a JPEG damaged in the middle of its data, which libjpeg decodes to the end with
only a warning ("Corrupt JPEG data: premature end of data segment"), is accepted as it
decodes (grey or smeared blocks where the data was damaged), with no row: the decoder reports
no error to tell it from a good one.
"""

from __future__ import annotations

import csv
import errno
import io
from collections import Counter
from dataclasses import dataclass

EXCLUDED, CONVERTED, IGNORED, KEPT_CLASS, KEPT = "excluded", "converted", "ignored", "kept_class", "kept"
KINDS = {
    "empty_file": EXCLUDED,  # zero bytes
    "not_an_image": EXCLUDED,  # neither JPEG, PNG, GIF nor WebP data, whatever the name says
    "truncated": EXCLUDED,  # a JPEG or PNG whose data stops early
    "corrupt": EXCLUDED,  # any other decoding error
    "too_large": EXCLUDED,  # over MAX_FILE_BYTES (never read), or its header claims more than MAX_PIXELS (never decoded)
    "too_elongated": EXCLUDED,  # long side over MAX_ASPECT x the short one: its rescale would not fit
    "out_of_memory": EXCLUDED,  # decoding ran out of memory (not cached: may pass next time)
    "unreadable": EXCLUDED,  # opening or reading it failed (permissions, I/O)
    "symlink_loop": EXCLUDED,  # a link that resolves to itself, or to a folder above it
    "broken_link": EXCLUDED,  # a link to nothing
    "not_a_file": EXCLUDED,  # a pipe, socket, device or folder named like an image: never opened
    "missing": EXCLUDED,  # listed by the val labels (CSV or devkit), no such file
    "unlabelled": EXCLUDED,  # an image outside any class folder, or a flat val image with no label
    "unsupported_format": EXCLUDED,  # an image format not read here (.bmp, .gif, .tif, ...)
    "hidden": EXCLUDED,  # an image file whose name starts with "." (e.g. macOS's ._IMG_1.jpg)
    "bad_name": EXCLUDED,  # a file name that is not UTF-8: it could not be written to the manifest
    "empty_class": KEPT_CLASS,  # a class with no usable training image: still a class, label kept
    "wrong_suffix": CONVERTED,  # e.g. PNG data named .JPEG: decoded by content
    "cmyk": CONVERTED,
    "grayscale": CONVERTED,
    "palette": CONVERTED,
    "alpha": CONVERTED,  # the alpha channel is dropped; the colours are kept as stored
    "16bit": CONVERTED,  # 16-bit samples scaled to 8 bits (the top byte)
    "exif_rotated": CONVERTED,  # EXIF orientation applied: the manifest's width and height are upright
    "other_file": IGNORED,
    "duplicate_across_splits": KEPT,  # a val image whose bytes a training image has (any label)
}
# A file's action in the summary: its strongest row's (a converted file later excluded counts once).
_PRECEDENCE = (EXCLUDED, CONVERTED, IGNORED, KEPT)
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

    @property
    def is_folder(self) -> bool:
        return self.path.endswith("/")


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
    """For the stage's summary line: files per final action, empty classes, rows per kind.

    A file with several rows (a 16-bit grayscale PNG; a converted file then excluded) counts
    once, under its strongest action (excluded, then converted, then ignored). Folder rows (an
    empty class, a folder link loop) are no files: they count in bad_files (rows per kind) only,
    and empty classes also as empty_classes.
    """
    actions: dict[str, set[str]] = {}
    for r in rows:
        if not r.is_folder:
            actions.setdefault(r.path, set()).add(r.action)
    final = Counter(next(a for a in _PRECEDENCE if a in acts) for acts in actions.values())
    return {
        **{action: final[action] for action in _PRECEDENCE},
        "empty_classes": sum(r.kind == "empty_class" for r in rows),
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


# The formats a suffix names; MPO is the multi-picture JPEG of phone cameras (a JPEG first image).
IMAGE_FORMATS = {".jpg": ("JPEG", "MPO"), ".jpeg": ("JPEG", "MPO"), ".png": ("PNG",), ".webp": ("WEBP",)}
GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
EXIF_ORIENTATION = 0x0112  # EXIF tag 274; 1 is upright, 2..8 mirror and/or rotate


def conversions(path: str, header) -> list[BadFile]:
    """What decoding a readable image changed on the way to 8-bit upright RGB.

    header: vggrepro.data.images.Header, read from the file's header alone (None when PIL
    could not parse it: the decoder has already accepted the file, so that just adds no row).
    """
    if header is None:
        return []
    fmt, mode, width, height = header.format, header.mode, header.width, header.height
    rows = []
    suffix = "." + path.rsplit(".", 1)[-1]
    if fmt not in IMAGE_FORMATS.get(suffix.lower(), ()):
        rows.append(BadFile(path, "wrong_suffix", f"{fmt} data in a {suffix} file; decoded as {fmt}"))
    if mode == "CMYK":  # PIL reports Adobe YCCK as CMYK too
        rows.append(BadFile(path, "cmyk", "CMYK converted to RGB"))
    elif mode in GRAYSCALE_MODES:
        rows.append(BadFile(path, "grayscale", f"grayscale (mode {mode}) repeated into R, G and B"))
    elif mode in ("P", "PA"):
        rows.append(BadFile(path, "palette", "palette colours expanded to RGB"))
    if "A" in mode or header.transparent:
        rows.append(BadFile(path, "alpha", f"alpha dropped (mode {mode}); colours kept as stored"))
    if header.bits == 16:
        rows.append(BadFile(path, "16bit", "16-bit samples scaled to 8 bits"))
    orientation = header.orientation
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
