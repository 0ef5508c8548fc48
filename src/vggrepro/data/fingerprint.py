"""Fingerprints of image files: BLAKE2b of the bytes, upright size, and what decoding did.

Each file is read once: its header is checked (vggrepro.data.images.read_header: an image
claiming more than MAX_PIXELS is never decoded), its bytes are hashed and decoded by
vggrepro.data.images.decode_bytes, the very function training and evaluation decode with,
so what prepare accepts they can read. The first pass over ILSVRC-2012 decodes 1.28M files:
it runs in data.workers processes (a torch DataLoader over the file list, results in list
order, so the output does not depend on the worker count).

Later passes read a cache keyed on (relative path, size, mtime_ns, inode, ctime_ns): prepare
runs whenever the dataset folder's stamp changes (vggrepro.data.datastamp, the same key), and then
reads only the files that changed. The inode and ctime catch what size and mtime miss: an
in-place edit that restores the mtime (exiftool -P, cp -p, rsync -t) still changes the ctime,
which no user can set back; a file replaced by another one of the same size and time has
another inode. (A chmod or a new hard link changes the ctime too: the file is rehashed, once.)
As in git's "racy git" rule, a file changed (mtime or ctime) within RACY_NS before the pass
began is not cached: a second write within the same timestamp tick would otherwise go unseen.

Failures that may pass on their own are never cached (TRANSIENT: a read error, a dangling
link, running out of memory): the next pass tries the file again. Content errors (truncated,
corrupt, too large, not an image) are cached with the file's key, like any fingerprint.

The cache lives under .vggrepro/cache/ in the project (gitignored, never inside data.root,
no stage's output; safe to delete), one file per data root, written atomically. During a
pass, every CHECKPOINT files decoded are also written, atomically, as a part file beside it,
so a killed first pass over ImageNet keeps what it decoded; the next pass reads the cache and
its parts, and its final write folds the parts in and removes them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Iterator

import torch
import torchvision
from tqdm import tqdm

from vggrepro import paths
from vggrepro.data import badfiles, images
from vggrepro.runtime import io
from vggrepro.runtime.signals import die_with_parent

CACHE_DIR = Path(paths.FINGERPRINT_CACHE_DIR)  # relative to the project root, where the stages run
CACHE_FORMAT = 2  # bump when a cached field changes meaning (2: inode and ctime in the key)
RACY_NS = 2_000_000_000  # 2 s: coarser than any file system's timestamp tick (FAT: 2 s)
TRANSIENT = {"unreadable", "symlink_loop", "broken_link", "missing", "out_of_memory"}  # never cached
CHECKPOINT = 10_000  # decoded files between two part files of the cache
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


def _failed(size: int, digest: str, row: badfiles.BadFile) -> Fingerprint:
    return Fingerprint(size, digest, 0, 0, ((row.kind, row.detail),))


def _out_of_memory(path: str, size: int, digest: str, err: BaseException) -> Fingerprint:
    detail = f"decoding ran out of memory ({images.describe(err)}); tried again next time"
    return _failed(size, digest, badfiles.BadFile(path, "out_of_memory", detail))


def _is_allocation_failure(err: RuntimeError) -> bool:
    message = str(err)
    return "can't allocate memory" in message or "DefaultCPUAllocator" in message or "out of memory" in message


def probe(path: str) -> Fingerprint:
    """Reads, hashes, checks and decodes one file; never raises for a bad file."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > images.MAX_FILE_BYTES:  # never read: a 6 GB file would take 12 GB here
                return _failed(size, "", badfiles.BadFile(
                    path, "too_large", f"{size:,} bytes, above the limit of {images.MAX_FILE_BYTES:,} for one image file; not read"))
            data = f.read()
    except OSError as err:
        return _failed(0, "", badfiles.from_os_error(path, err))
    except MemoryError as err:
        return _out_of_memory(path, 0, "", err)
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    try:
        header = images.read_header(data)
        _, height, width = images.decode_bytes(data).shape
        images.check_shape(width, height)  # the decoder's word where PIL could not read the header
    except images.TooLarge as err:
        return _failed(len(data), digest, badfiles.BadFile(path, "too_large", str(err)))
    except images.TooElongated as err:
        return _failed(len(data), digest, badfiles.BadFile(path, "too_elongated", str(err)))
    except MemoryError as err:
        return _out_of_memory(path, len(data), digest, err)
    except RuntimeError as err:
        if _is_allocation_failure(err):
            return _out_of_memory(path, len(data), digest, err)
        return _failed(len(data), digest, badfiles.from_decode_error(path, data, images.describe(err)))
    notes = tuple((r.kind, r.detail) for r in badfiles.conversions(os.path.basename(path), header))
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
    """probe() of each path, in order, in `workers` processes (0: in this one).

    A DataLoader without a sampler returns batches in order on every torch version (its
    in_order argument, torch >= 2.6, only lets that be relaxed), so none is passed.
    """
    if workers == 0 or len(paths) < MIN_FOR_WORKERS:
        yield from map(probe, paths)
        return
    loader = torch.utils.data.DataLoader(
        _Probes(paths), batch_size=CHUNK, num_workers=workers, collate_fn=_as_list,
        worker_init_fn=_die_with_parent,  # a killed prepare leaves no worker behind
    )
    for batch in loader:
        yield from batch


def _die_with_parent(worker_id: int) -> None:
    die_with_parent()


Stat = tuple[int, int, int, int]  # (st_size, st_mtime_ns, st_ino, st_ctime_ns): the key beside the path
COLUMNS = ("path", "stat_size", "mtime_ns", "ino", "ctime_ns", "size", "blake2b", "width", "height", "notes")


def stat_key(st: os.stat_result) -> Stat:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


@cache
def verdict_code() -> str:
    """What a cached verdict was computed with: the decoding and checking code and libraries.
    Any change to them (a new size limit, a new bad-file kind, another Pillow) empties the cache,
    so no verdict of older code survives into a manifest the engines take for fresh."""
    import PIL

    h = hashlib.blake2b(digest_size=8)
    for module in (images, badfiles, sys.modules[__name__]):
        h.update(Path(module.__file__).read_bytes())
    return f"code {h.hexdigest()}; torchvision {torchvision.__version__}; Pillow {PIL.__version__}"


class Cache:
    """(path, size, mtime_ns, inode, ctime_ns) -> Fingerprint for the files under one data root."""

    def __init__(self, folder: Path, root: Path):
        resolved = str(Path(root).resolve())
        key = hashlib.blake2b(os.fsencode(resolved), digest_size=8).hexdigest()
        self.path = Path(folder) / f"fingerprints-{key}.csv"
        shown = os.fsencode(resolved).decode("utf-8", "backslashreplace")
        self.header = f"# vggrepro fingerprint cache {CACHE_FORMAT}; {verdict_code()}; root {shown}\n"
        self.entries: dict[str, tuple[Stat, Fingerprint]] = {}
        self.parts: list[Path] = []  # part files found by load() or written since
        self.pending: dict[str, tuple[Stat, Fingerprint]] = {}  # decoded since the last part file
        self.started_ns = time.time_ns()

    def _part(self, k: int) -> Path:
        return self.path.with_name(f"{self.path.stem}.part-{k:06d}.csv")

    def _existing_parts(self) -> list[Path]:
        found = []
        for p in self.path.parent.glob(f"{self.path.stem}.part-*.csv"):
            number = p.name[len(self.path.stem) + len(".part-") : -len(".csv")]
            if number.isdigit():
                found.append((int(number), p))
        return [p for _, p in sorted(found)]

    def _read(self, path: Path) -> dict[str, tuple[Stat, Fingerprint]]:
        entries = {}
        with path.open(newline="", encoding="utf-8") as f:
            if f.readline() != self.header:
                return {}  # another format, decoder or root: start afresh
            rows = csv.reader(f)
            if tuple(next(rows)) != COLUMNS:
                return {}
            for path_, stat_size, mtime_ns, ino, ctime_ns, size, digest, width, height, notes in rows:
                parsed = tuple(tuple(n) for n in json.loads(notes)) if notes else ()
                fp = Fingerprint(int(size), digest, int(width), int(height), parsed)
                entries[path_] = ((int(stat_size), int(mtime_ns), int(ino), int(ctime_ns)), fp)
        return entries

    def load(self) -> Cache:
        """The cache, then its part files (a killed pass's checkpoints) over it, in order."""
        self.parts = self._existing_parts()
        entries = {}
        for path in ([self.path] if self.path.is_file() else []) + self.parts:
            try:
                entries.update(self._read(path))
            except (OSError, ValueError, StopIteration, csv.Error, UnicodeDecodeError):
                if path == self.path:
                    entries = {}  # unreadable or damaged: every file is probed again
        self.entries = entries
        return self

    def get(self, path: str, stat: Stat) -> Fingerprint | None:
        hit = self.entries.get(path)
        return hit[1] if hit is not None and hit[0] == stat else None

    def keeps(self, stat: Stat, fp: Fingerprint) -> bool:
        """Whether a fingerprint may be trusted next time (see RACY_NS and TRANSIENT)."""
        changed_ns = max(stat[1], stat[3])
        return changed_ns <= self.started_ns - RACY_NS and not any(k in TRANSIENT for k, _ in fp.notes)

    def add(self, path: str, stat: Stat, fp: Fingerprint) -> None:
        """A freshly decoded file; every CHECKPOINT of them are written as a part file."""
        if self.keeps(stat, fp):
            self.pending[path] = (stat, fp)
            if len(self.pending) >= CHECKPOINT:
                self.checkpoint()

    def checkpoint(self) -> None:
        if not self.pending:
            return
        numbers = [int(p.name[len(self.path.stem) + len(".part-") : -len(".csv")]) for p in self.parts]
        part = self._part(max(numbers, default=0) + 1)
        self._write(part, self.pending)
        self.parts.append(part)
        self.pending = {}

    def save(self, fingerprints: dict[str, tuple[Stat, Fingerprint]]) -> None:
        """Replaces the cache with these files' fingerprints, the trusted ones; removes the parts."""
        kept = {path: v for path, v in fingerprints.items() if self.keeps(*v)}
        self.pending = {}
        if kept != self.entries or self.parts or not self.path.is_file():
            self._write(self.path, kept)  # else nothing changed: no rewrite of 1.28M rows
            self.entries = kept
        for part in self.parts:
            part.unlink(missing_ok=True)
        self.parts = []

    def _write(self, target: Path, entries: dict[str, tuple[Stat, Fingerprint]]) -> None:
        with io.atomic_path(target) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
            f.write(self.header)
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(COLUMNS)
            for path in sorted(entries):
                stat, fp = entries[path]
                notes = json.dumps(fp.notes) if fp.notes else ""
                writer.writerow((path, *stat, fp.size, fp.blake2b, fp.width, fp.height, notes))


def fingerprints(
    root: Path, paths: list[str], *, cache: Cache, workers: int
) -> Iterator[tuple[str, Stat | None, Fingerprint, bool]]:
    """(path, stat, fingerprint, from the cache) of each path (relative to root), in order."""
    base = str(root)
    stats: dict[str, Stat | OSError] = {}
    todo = []
    for rel in paths:
        try:
            stats[rel] = stat_key(os.stat(os.path.join(base, rel)))
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
