"""The manifest: the contract between prepare and every stage after it.

data/manifest.csv holds one row per image that prepare accepted:

    split,path,label,wnid,width,height,size,blake2b

- path: relative to data.root, with forward slashes;
- label: the index of wnid in sorted order (torchvision's convention for ImageNet and
  ImageFolder, so published weights line up); wnid is the class folder's name (a WordNet id on
  ILSVRC-2012, any name in an ImageFolder tree);
- width, height: of the upright image, as vggrepro.data.images.decode returns it;
- size, blake2b: the file's byte count and 128-bit BLAKE2b digest. A replaced image changes
  its row, so the engines rerun everything that depends on the manifest.

data/classes.csv lists label, wnid, name for every class of the class list, those with no
usable image included (vggrepro.data.scan: no label shifts). Which files are read, and how, is
vggrepro.data.scan's job; this module only reads and writes the two files (stages that read
the manifest do not depend on the scanning code).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from vggrepro.runtime.errors import Error

MANIFEST_COLUMNS = ("split", "path", "label", "wnid", "width", "height", "size", "blake2b")


class DatasetError(Error):
    """A dataset problem, phrased as one line naming the file and what was expected."""


@dataclass(frozen=True, slots=True)  # slots: 1.28M of them in a manifest
class Entry:
    split: str
    path: str  # relative to the dataset root, with forward slashes
    wnid: str
    label: int
    width: int = 0  # upright, in pixels
    height: int = 0
    size: int = 0  # bytes
    blake2b: str = ""  # hex digest of the file's bytes (digest_size 16)


def manifest_csv(entries: list[Entry]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows((e.split, e.path, e.label, e.wnid, e.width, e.height, e.size, e.blake2b) for e in entries)
    return buf.getvalue()


def classes_csv(synsets: dict[str, str]) -> str:
    """label,wnid,name for each class, labels in sorted wnid order."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("label", "wnid", "name"))
    writer.writerows((i, wnid, synsets[wnid]) for i, wnid in enumerate(sorted(synsets)))
    return buf.getvalue()


def _entry(row: dict[str, str]) -> Entry:
    return Entry(
        split=row["split"],
        path=row["path"],
        wnid=row["wnid"],
        label=int(row["label"]),
        width=int(row.get("width") or 0),
        height=int(row.get("height") or 0),
        size=int(row.get("size") or 0),
        blake2b=row.get("blake2b") or "",
    )


def read_manifest(path: str | Path, split: str) -> list[Entry]:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file; run the prepare stage first")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"split", "path", "wnid", "label"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{path}: no column {sorted(missing)[0]!r}; expected {','.join(MANIFEST_COLUMNS)}")
        try:
            return [_entry(r) for r in reader if r["split"] == split]
        except (ValueError, TypeError) as err:  # a row edited by hand: a label that is no number
            raise DatasetError(f"{path}: line {reader.line_num}: {err}; rerun the prepare stage") from None


def read_classes(path: str | Path) -> list[str]:
    """wnids in label order."""
    return [wnid for wnid, _ in read_class_names(path)]


def read_class_names(path: str | Path) -> list[tuple[str, str]]:
    """(wnid, name) in label order; the name is the wnid where the dataset gives none."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file; run the prepare stage first")
    with path.open(newline="") as f:
        return [(r["wnid"], r.get("name") or r["wnid"]) for r in csv.DictReader(f)]
