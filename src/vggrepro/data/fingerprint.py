"""Fingerprints of image files: BLAKE2b of the bytes, upright size, and what decoding did.

Each file is read once: its bytes are hashed and decoded by vggrepro.data.images.decode_bytes,
the very function training and evaluation decode with, so what prepare accepts they can read.
The first pass over ILSVRC-2012 decodes 1.28M files: it runs in data.workers processes (a
torch DataLoader over the file list, results in list order, so the output does not depend on
the worker count).

Later passes read a cache keyed on (relative path, size, mtime_ns): prepare runs whenever the
dataset folder's stamp changes (vggrepro.datastamp), and then reads only the files that changed.
The cache lives under .vggrepro/cache/ in the project (gitignored, never inside data.root,
no stage's output; safe to delete), one file per data root, written atomically. As in git's
"racy git" rule, a file modified within RACY_NS before the pass began is not cached: a second
write within the same timestamp tick would otherwise keep its size and mtime and go unseen.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torchvision
from tqdm import tqdm

from vggrepro import io
from vggrepro.data import badfiles, images

CACHE_DIR = Path(".vggrepro/cache")  # relative to the project root, where the stages run
CACHE_FORMAT = 1  # bump when a cached field changes meaning
RACY_NS = 2_000_000_000  # 2 s: coarser than any file system's timestamp tick (FAT: 2 s)
NOT_CACHED = {"unreadable", "symlink_loop", "broken_link"}  # may change without a new mtime (chmod)
MIN_FOR_WORKERS = 256  # fewer files decode faster than worker processes start
CHUNK = 16  # files per worker task


@dataclass(frozen=True, slots=True)
class Fingerprint:
    size: int
    blake2b: str  # hex, digest_size 16; "" if the file could not be read
    width: int  # upright; 0 if excluded
    height: int
    notes: tuple[tuple[str, str], ...] = ()  # (kind, detail) bad-file rows: conversions, or one exclusion

    @property
    def excluded(self) -> bool:
        return any(badfiles.KINDS[kind] == badfiles.EXCLUDED for kind, _ in self.notes)

    def rows(self, path: str) -> list[badfiles.BadFile]:
        if not self.notes:  # nearly every file
            return []
        return [badfiles.BadFile(path, kind, detail) for kind, detail in self.notes]


def probe(path: str) -> Fingerprint:
    """Reads, hashes and decodes one file; never raises for a bad file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        row = badfiles.from_os_error(path, err)
        return Fingerprint(0, "", 0, 0, ((row.kind, row.detail),))
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    try:
        _, height, width = images.decode_bytes(data).shape
    except RuntimeError as err:
        row = badfiles.from_decode_error(path, data, images.describe(err))
        return Fingerprint(len(data), digest, 0, 0, ((row.kind, row.detail),))
    notes = tuple((r.kind, r.detail) for r in badfiles.conversions(os.path.basename(path), data))
    return Fingerprint(len(data), digest, width, height, notes)


class _Probes(torch.utils.data.Dataset):
    def __init__(self, paths: list[str]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Fingerprint:
        return probe(self.paths[i])


def _as_list(batch: list) -> list:
    return batch


def probe_all(paths: list[str], workers: int) -> Iterator[Fingerprint]:
    """probe() of each path, in order, in `workers` processes (0: in this one)."""
    if workers == 0 or len(paths) < MIN_FOR_WORKERS:
        yield from map(probe, paths)
        return
    loader = torch.utils.data.DataLoader(
        _Probes(paths), batch_size=CHUNK, num_workers=workers, collate_fn=_as_list, in_order=True
    )
    for batch in loader:
        yield from batch


Stat = tuple[int, int]  # (st_size, st_mtime_ns): the cache key beside the path
COLUMNS = ("path", "stat_size", "mtime_ns", "size", "blake2b", "width", "height", "notes")


class Cache:
    """(path, size, mtime_ns) -> Fingerprint for the files under one data root."""

    def __init__(self, folder: Path, root: Path):
        resolved = str(Path(root).resolve())
        self.path = Path(folder) / f"fingerprints-{hashlib.blake2b(resolved.encode(), digest_size=8).hexdigest()}.csv"
        self.header = f"# vggrepro fingerprint cache {CACHE_FORMAT}; torchvision {torchvision.__version__}; root {resolved}\n"
        self.entries: dict[str, tuple[Stat, Fingerprint]] = {}
        self.started_ns = time.time_ns()

    def load(self) -> Cache:
        try:
            with self.path.open(newline="") as f:
                if f.readline() != self.header:
                    return self  # another format, decoder or root: start afresh
                rows = csv.reader(f)
                if tuple(next(rows)) != COLUMNS:
                    return self
                for path, stat_size, mtime_ns, size, digest, width, height, notes in rows:
                    parsed = tuple(tuple(n) for n in json.loads(notes)) if notes else ()
                    fp = Fingerprint(int(size), digest, int(width), int(height), parsed)
                    self.entries[path] = ((int(stat_size), int(mtime_ns)), fp)
        except (OSError, ValueError, StopIteration, csv.Error):
            self.entries = {}  # unreadable or damaged: every file is probed again
        return self

    def get(self, path: str, stat: Stat) -> Fingerprint | None:
        hit = self.entries.get(path)
        return hit[1] if hit is not None and hit[0] == stat else None

    def keeps(self, stat: Stat, fp: Fingerprint) -> bool:
        """Whether a fingerprint may be trusted next time (see RACY_NS and NOT_CACHED)."""
        return stat[1] <= self.started_ns - RACY_NS and not any(k in NOT_CACHED for k, _ in fp.notes)

    def save(self, fingerprints: dict[str, tuple[Stat, Fingerprint]]) -> None:
        """Replaces the cache with these files' fingerprints, the trusted ones."""
        kept = {path: v for path, v in fingerprints.items() if self.keeps(*v)}
        if kept == self.entries:
            return  # nothing changed: no rewrite of a file that may hold 1.28M rows
        with io.atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
            f.write(self.header)
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(COLUMNS)
            for path in sorted(kept):
                (stat_size, mtime_ns), fp = kept[path]
                notes = json.dumps(fp.notes) if fp.notes else ""
                writer.writerow((path, stat_size, mtime_ns, fp.size, fp.blake2b, fp.width, fp.height, notes))


def fingerprints(
    root: Path, paths: list[str], *, cache: Cache, workers: int
) -> Iterator[tuple[str, Stat | None, Fingerprint, bool]]:
    """(path, stat, fingerprint, from the cache) of each path (relative to root), in order."""
    base = str(root)
    stats: dict[str, Stat | OSError] = {}
    todo = []
    for rel in paths:
        try:
            st = os.stat(os.path.join(base, rel))
            stats[rel] = (st.st_size, st.st_mtime_ns)
        except OSError as err:  # a dangling or looping link, or a file gone since it was listed
            stats[rel] = err
            continue
        if cache.get(rel, stats[rel]) is None:
            todo.append(rel)
    fresh = probe_all([os.path.join(base, rel) for rel in todo], workers)
    progress = tqdm(total=len(todo), desc="prepare: decoding", unit="img", disable=None, mininterval=2, file=sys.stderr)
    with progress:
        for rel in paths:
            st = stats[rel]
            if isinstance(st, OSError):
                yield rel, None, _unstatable(root / rel, st), False
                continue
            fp = cache.get(rel, st)
            if fp is not None:
                yield rel, st, fp, True
                continue
            progress.update()
            yield rel, st, next(fresh), False


def _unstatable(path: Path, err: OSError) -> Fingerprint:
    if isinstance(err, FileNotFoundError) and not path.is_symlink():
        note = ("missing", "gone while prepare read the folder")
    else:
        row = badfiles.from_os_error(str(path), err)
        note = (row.kind, row.detail)
    return Fingerprint(0, "", 0, 0, (note,))
