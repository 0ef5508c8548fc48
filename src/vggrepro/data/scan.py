"""A dataset folder read into manifest entries, class names and bad-file rows: prepare's work.

    layout (vggrepro.data.layouts: which files, and the class list)
    -> fingerprints (vggrepro.data.fingerprint: hash, decode, cached)
    -> the val split, for an imagefolder tree without a val folder (hold_out)
    -> labels: the index of the class in the sorted class list (torchvision's convention).

The class list is the layout's, whatever the files hold: every class folder, or every wnid
of LOC_synset_mapping.txt / the devkit's meta.mat where one is found. A class left with no
usable training image (an empty folder, a folder of unreadable or unsupported files, a wnid
listed without a folder) stays a class, with an `empty_class` row (action kept_class): no
later label ever shifts, and labels match torchvision's ImageFolder.find_classes.

With data.on_bad_file "fail", the first excluded file, in this order, stops with one line (an
empty class is no file: it does not stop).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from vggrepro import paths
from vggrepro.data import badfiles, fingerprint, layouts
from vggrepro.data.badfiles import BadFile
from vggrepro.data.fingerprint import Fingerprint
from vggrepro.data.ingest import DatasetError, Entry
from vggrepro.data.layouts import Candidate, Layout

EXPECTED = {
    "ilsvrc2012": "an ILSVRC-2012 tree (train/, val/)",
    "embedded": "an ILSVRC-2012 tree (train/, val/)",
    "imagefolder": "an ImageFolder tree (<class>/<image>)",
}


@dataclass
class Dataset:
    entries: list[Entry]  # train then val, each sorted by path
    names: dict[str, str]  # class (wnid) -> readable name
    bad: list[BadFile]
    decoded: int = 0  # files read and decoded in this pass
    cached: int = 0  # files whose fingerprint came from the cache

    def summary(self) -> dict:
        splits = Counter(e.split for e in self.entries)
        return {
            "classes": len(self.names),
            "train": splits["train"],
            "val": splits["val"],
            **badfiles.summary(self.bad),
            "decoded": self.decoded,
            "cached": self.cached,
        }


def read_dataset(
    root: str | Path,
    *,
    source: str,
    seed: int,
    val_fraction: float,  # data.val_fraction, data.on_bad_file: their defaults are the schema's
    on_bad_file: str,
    workers: int = 0,
    cache_dir: str | Path = fingerprint.CACHE_DIR,
) -> Dataset:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder; expected {EXPECTED.get(source, 'a dataset')} (data.root)")
    fail = on_bad_file == "fail"
    layout = layouts.read(root, source)
    bad = list(layout.bad)
    if fail:
        _stop_at_first(root, bad)
    accepted, decoded, cached = _fingerprint(root, layout, bad, fail=fail, workers=workers, cache_dir=cache_dir)
    if any(c.split == "" for c, _ in accepted):
        accepted = hold_out(accepted, fraction=val_fraction, seed=seed)
    labels = {wnid: i for i, wnid in enumerate(sorted(layout.names))}
    bad += _empty_classes(layout, accepted, labels)
    entries = sorted(
        (
            Entry(c.split, c.path, c.wnid, labels[c.wnid], fp.width, fp.height, fp.size, fp.blake2b)
            for c, fp in accepted
        ),
        key=lambda e: (e.split != "train", e.path),
    )
    _check_splits(root, entries, val_fraction)
    bad += duplicates_across_splits(entries)
    return Dataset(entries, dict(layout.names), sorted(bad), decoded=decoded, cached=cached)


def duplicates_across_splits(entries: list[Entry]) -> list[BadFile]:
    """A row for each val image whose bytes a training image has (under any label): kept, as
    the dataset has it, but a net may have learnt that very image, so the report says so."""
    trained: dict[str, str] = {}
    for e in entries:
        if e.split == "train":
            trained.setdefault(e.blake2b, e.path)
    return [
        BadFile(e.path, "duplicate_across_splits", f"the same bytes as training image {trained[e.blake2b]}; kept")
        for e in entries if e.split != "train" and e.blake2b in trained
    ]


def _fingerprint(
    root: Path, layout: Layout, bad: list[BadFile], *, fail: bool, workers: int, cache_dir: str | Path
) -> tuple[list[tuple[Candidate, Fingerprint]], int, int]:
    """The candidates that decode, with their fingerprints; rows of the others appended to bad."""
    cache = fingerprint.Cache(Path(cache_dir), root).load()
    candidates = {c.path: c for c in layout.images}
    accepted, seen, decoded, cached = [], {}, 0, 0
    try:
        for rel, st, fp, from_cache in fingerprint.fingerprints(root, sorted(candidates), cache=cache, workers=workers):
            rows = fp.rows(rel)
            if fail:
                _stop_at_first(root, rows)
            bad.extend(rows)
            cached += from_cache
            decoded += st is not None and not from_cache
            if st is not None:
                seen[rel] = (st, fp)
                if not from_cache:
                    cache.add(rel, st, fp)
            if not fp.excluded:
                accepted.append((candidates[rel], fp))
    except BaseException:
        cache.checkpoint()  # stopped early (a bad file with fail, Ctrl-C): what was decoded is kept
        raise
    cache.save(seen)
    return accepted, decoded, cached


def _empty_classes(layout: Layout, accepted: list[tuple[Candidate, Fingerprint]], labels: dict[str, int]) -> list[BadFile]:
    """An `empty_class` row (kept_class) for each class with no usable training image."""
    usable = Counter(c.wnid for c, _ in accepted if c.split != "val")
    listed = Counter(c.wnid for c in layout.images if c.split != "val")
    rows = []
    for wnid in sorted(layout.names):
        if usable[wnid]:
            continue
        if wnid not in layout.folders:
            why = f"listed in {layout.class_list} but no folder"
        elif listed[wnid]:
            why = f"every training image excluded ({listed[wnid]})"
        else:
            why = "no training image"
        path = layout.folders.get(wnid) or layout.missing_folder(wnid)
        rows.append(BadFile(path, "empty_class", f"{why}; kept as class {labels[wnid]} so that no label shifts (it cannot be learnt)"))
    return rows


def _stop_at_first(root: Path, rows: list[BadFile]) -> None:
    """data.on_bad_file fail: the first excluded row, as one line."""
    for row in rows:
        if row.excluded:
            raise DatasetError(
                f"{root / row.path}: {row.detail} ({row.kind}); data.on_bad_file is fail "
                f"(with skip it would be left out and listed in {paths.BAD_FILES})"
            )


def hold_out(
    images: list[tuple[Candidate, Fingerprint]], *, fraction: float, seed: int
) -> list[tuple[Candidate, Fingerprint]]:
    """Moves round(fraction * n) images of each class (at most n - 1) to val, the rest to train.

    Stratified and seeded: within a class, the images with the smallest BLAKE2b of
    "seed/path" go to val. Each image's draw depends on its own path only, so adding an image
    to one class changes no other class's split, and no Python version changes it.
    """
    by_class: dict[str, list[tuple[Candidate, Fingerprint]]] = {}
    for item in images:
        by_class.setdefault(item[0].wnid, []).append(item)
    split = []
    for items in by_class.values():
        n_val = min(len(items) - 1, math.floor(fraction * len(items) + 0.5))
        ranked = sorted(items, key=lambda item: _draw(seed, item[0].path))
        for k, (c, fp) in enumerate(ranked):
            split.append((Candidate("val" if k < n_val else "train", c.path, c.wnid), fp))
    return split


def _draw(seed: int, path: str) -> str:
    return hashlib.blake2b(f"{seed}/{path}".encode(), digest_size=8).hexdigest()


def _check_splits(root: Path, entries: list[Entry], val_fraction: float) -> None:
    if not any(e.split == "train" for e in entries):
        raise DatasetError(f"{root}: no readable training images; expected images in class folders (see {paths.BAD_FILES})")
    if not any(e.split == "val" for e in entries):
        raise DatasetError(
            f"{root}: no readable val images; expected a val/ folder, or classes large enough that "
            f"data.val_fraction ({val_fraction}) holds out at least one image"
        )
