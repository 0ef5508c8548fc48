"""Labels of ILSVRC-2012's flat val/ folder: from the Kaggle CSV or from image-net.org's devkit.

- LOC_val_solution.csv (Kaggle): `ImageId,PredictionString`, the string being
  "wnid x_min y_min x_max y_max" once per box; every box of a CLS-LOC val image has its class.
- The devkit (ILSVRC2012_devkit_t12, as image-net.org ships it and torchvision's ImageNet reads
  it): data/ILSVRC2012_validation_ground_truth.txt holds one ILSVRC2012_ID per line, line i for
  ILSVRC2012_val_<i, 8 digits>.JPEG; data/meta.mat maps those IDs (1..1000, the synsets
  without children) to wnids. The IDs are not in wnid order: labels are still the sorted wnid
  index, as torchvision's.

Each reader returns {image id (the file name without suffix): (wnid, "file:line")}. A label
file that cannot be read, is not UTF-8 text, or lacks a field stops with one line naming it.
"""

from __future__ import annotations

import csv
from pathlib import Path

from vggrepro.data.ingest import DatasetError

SOLUTION_CSV = "LOC_val_solution.csv"
DEVKIT = "ILSVRC2012_devkit_t12"
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
META = "meta.mat"

Labels = dict[str, tuple[str, str]]


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 label file; a file that cannot be read or decoded is one line."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # a BOM is no part of the text
            return f.read().splitlines()
    except OSError as err:
        raise DatasetError(f"{path}: cannot be read ({err.strerror or type(err).__name__}); expected a readable text file") from None
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not UTF-8 text (byte {err.start}); expected the file as distributed") from None


def from_solution_csv(path: Path) -> Labels:
    labels = {}
    reader = csv.DictReader(read_lines(path))
    try:
        fieldnames = reader.fieldnames
    except csv.Error as err:
        raise DatasetError(f"{path}: not CSV ({err}); expected the columns ImageId,PredictionString") from None
    if fieldnames is None or not {"ImageId", "PredictionString"} <= set(fieldnames):
        raise DatasetError(f"{path}: expected the columns ImageId,PredictionString")
    try:
        for n, row in enumerate(reader, start=2):
            wnid = (row["PredictionString"] or "").split(" ", 1)[0]
            if not wnid:
                raise DatasetError(f"{path}:{n}: no wnid for {row['ImageId']!r}; expected 'wnid x1 y1 x2 y2 ...'")
            labels[row["ImageId"]] = (wnid, f"{path}:{n}")
    except csv.Error as err:
        raise DatasetError(f"{path}:{reader.line_num}: not CSV ({err})") from None
    return labels


def find_devkit(folders: list[Path]) -> Path | None:
    """The devkit's data/ folder, in the first of folders that holds ILSVRC2012_devkit_t12/."""
    for folder in folders:
        data = folder / DEVKIT / "data"
        if (data / GROUND_TRUTH).is_file():
            return data
    return None


META_FIELDS = ("ILSVRC2012_ID", "WNID", "words", "num_children")


def read_meta(path: Path) -> dict[int, tuple[str, str]]:
    """ILSVRC2012_ID -> (wnid, words) for the 1000 leaf synsets of meta.mat."""
    import numpy as np
    from scipy.io import loadmat  # as torchvision.datasets.ImageNet reads it

    expected = f"expected a 'synsets' struct array with the fields {', '.join(META_FIELDS)}"
    try:
        synsets = loadmat(str(path), squeeze_me=True)["synsets"]
    except OSError as err:
        raise DatasetError(f"{path}: cannot be read ({err.strerror or err}); {expected}") from None
    except (ValueError, KeyError, TypeError, IndexError, NotImplementedError) as err:
        raise DatasetError(f"{path}: not the devkit's meta.mat ({type(err).__name__}: {err}); {expected}") from None
    synsets = np.atleast_1d(synsets)
    missing = [f for f in META_FIELDS if synsets.dtype.names is None or f not in synsets.dtype.names]
    if missing:
        raise DatasetError(f"{path}: its synsets have no field {missing[0]!r}; {expected}")
    # Sec. 3 of the devkit's readme: synsets with num_children == 0 are the 1000 classes.
    try:
        return {
            int(s["ILSVRC2012_ID"]): (str(s["WNID"]), str(s["words"]))
            for s in synsets
            if int(s["num_children"]) == 0
        }
    except (ValueError, TypeError) as err:
        raise DatasetError(f"{path}: a synset with an unexpected value ({err}); {expected}") from None


def from_devkit(data: Path) -> tuple[Labels, dict[str, str]]:
    """Labels of ILSVRC2012_val_*.JPEG, and wnid -> class words, from the devkit's data/ folder."""
    meta_path = data / META
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path}: no such file; the devkit's data/ needs meta.mat beside {GROUND_TRUTH}")
    meta = read_meta(meta_path)
    truth = data / GROUND_TRUTH
    labels = {}
    for n, line in enumerate(read_lines(truth), start=1):
        if not line.strip():
            continue
        try:
            wnid = meta[int(line)][0]
        except (ValueError, KeyError):
            raise DatasetError(f"{truth}:{n}: {line!r} is not an ILSVRC2012_ID of {meta_path.name} (expected 1..1000)") from None
        labels[f"ILSVRC2012_val_{n:08d}"] = (wnid, f"{truth}:{n}")
    return labels, {wnid: words for wnid, words in meta.values()}
