"""Reads an ILSVRC-2012 tree into a manifest: one row per image (split, path, wnid, label).

The layout is the one ImageNet is distributed in, and the one the embedded dataset is written in:

    train/<wnid>/*.JPEG
    val/*.JPEG with LOC_val_solution.csv (ImageId,PredictionString "wnid x1 y1 x2 y2 ...")
      or val/<wnid>/*.JPEG (the "folderised" val that many people keep)
    LOC_synset_mapping.txt ("wnid name, other name"), optional

Labels are the index of the wnid in sorted order, as torchvision's ImageNet uses.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".jpeg", ".jpg")
MANIFEST_COLUMNS = ("split", "path", "wnid", "label")


class DatasetError(ValueError):
    """A dataset layout problem, phrased as one line naming the file and what was expected."""


@dataclass(frozen=True)
class Entry:
    split: str
    path: str  # relative to the dataset root, with forward slashes
    wnid: str
    label: int


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_synsets(root: Path) -> dict[str, str]:
    """wnid -> class name, from LOC_synset_mapping.txt, else from the train folders."""
    mapping = root / "LOC_synset_mapping.txt"
    if mapping.exists():
        names = {}
        for n, line in enumerate(mapping.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            wnid, _, name = line.partition(" ")
            if not wnid.startswith("n"):
                raise DatasetError(f"{mapping}:{n}: {line!r} does not start with a wnid (n########)")
            names[wnid] = name.strip()
        return names
    train = root / "train"
    if not train.is_dir():
        raise DatasetError(f"{train}: no such folder; expected train/<wnid>/*.JPEG")
    return {d.name: d.name for d in sorted(train.iterdir()) if d.is_dir()}


def _val_from_solution(root: Path, csv_path: Path, labels: dict[str, int]) -> list[Entry]:
    entries = []
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"ImageId", "PredictionString"} <= set(reader.fieldnames):
            raise DatasetError(f"{csv_path}: expected the columns ImageId,PredictionString")
        for n, row in enumerate(reader, start=2):
            wnid = (row["PredictionString"] or "").split(" ", 1)[0]
            if wnid not in labels:
                raise DatasetError(f"{csv_path}:{n}: wnid {wnid!r} is not a class of the training set")
            rel = f"val/{row['ImageId']}.JPEG"
            if not (root / rel).is_file():
                raise DatasetError(f"{root / rel}: listed in {csv_path.name} but missing")
            entries.append(Entry("val", rel, wnid, labels[wnid]))
    return sorted(entries, key=lambda e: e.path)


def ilsvrc2012(root: str | Path) -> tuple[list[Entry], dict[str, str]]:
    """All train and val entries under root, and wnid -> class name."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder; expected an ILSVRC-2012 tree (train/, val/)")
    synsets = read_synsets(root)
    labels = {wnid: i for i, wnid in enumerate(sorted(synsets))}
    entries = []
    for wnid in sorted(synsets):
        folder = root / "train" / wnid
        if not folder.is_dir():
            raise DatasetError(f"{folder}: no such folder; every class of LOC_synset_mapping.txt needs train images")
        entries += [Entry("train", f"train/{wnid}/{p.name}", wnid, labels[wnid]) for p in _images(folder)]
    val = root / "val"
    solution = root / "LOC_val_solution.csv"
    if val.is_dir() and any(d.is_dir() for d in val.iterdir()):
        for wnid in sorted(synsets):
            if (val / wnid).is_dir():
                entries += [Entry("val", f"val/{wnid}/{p.name}", wnid, labels[wnid]) for p in _images(val / wnid)]
    elif solution.exists():
        entries += _val_from_solution(root, solution, labels)
    else:
        raise DatasetError(f"{root}: no val/<wnid>/ folders and no LOC_val_solution.csv; expected one of them")
    for split in ("train", "val"):
        if not any(e.split == split for e in entries):
            raise DatasetError(f"{root}: no {split} images found")
    return entries, synsets


def manifest_csv(entries: list[Entry]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows((e.split, e.path, e.wnid, e.label) for e in entries)
    return buf.getvalue()


def classes_csv(synsets: dict[str, str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("label", "wnid", "name"))
    writer.writerows((i, wnid, synsets[wnid]) for i, wnid in enumerate(sorted(synsets)))
    return buf.getvalue()


def read_manifest(path: str | Path, split: str) -> list[Entry]:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file; run the prepare stage first")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [Entry(r["split"], r["path"], r["wnid"], int(r["label"])) for r in rows if r["split"] == split]


def read_classes(path: str | Path) -> list[str]:
    """wnids in label order."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file; run the prepare stage first")
    with path.open(newline="") as f:
        return [r["wnid"] for r in csv.DictReader(f)]
