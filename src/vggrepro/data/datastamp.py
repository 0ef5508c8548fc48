"""A stamp of the dataset folder: one digest of every file's path, size, mtime, inode and ctime.

The dataset folder is not an output of any stage (DVC would hash an ImageNet-sized folder
file by file on every call): the manifest, with a content fingerprint per image, is the
contract. What tells the engines that prepare must look again is this stamp, an input of
prepare, rewritten only when it changes: by vggrepro.engine.guard before any stage runs (both
engines, on every call: a listing with one stat per file, no reading), and by prepare itself
once it has generated or read the folder. A replaced, added or removed image changes it, so
prepare reruns, rehashes what changed and writes a new manifest, and everything after it reruns.
No torch import: the engines call this on every parse.

The key is the fingerprint cache's (vggrepro.data.fingerprint): size and mtime alone miss an
in-place edit that restores the mtime (exiftool -P, cp -p, rsync -t); the ctime changes on any
write and cannot be set back, and a replaced file has another inode. (A chmod, chown or new
hard link changes the ctime too, so it reruns prepare, which then rehashes those files.)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from vggrepro import paths
from vggrepro.runtime import io

IGNORED = {".snakemake_timestamp"}  # Snakemake's time carrier in a directory output


def _walk(root: Path):
    """(relative path, size, mtime_ns, inode, ctime_ns) of every file under root, folder by folder, sorted.

    Links to folders are followed, as ingestion follows them (torchvision does too); a link to
    a folder above it on the way down from root (a loop) is recorded and not entered. Two
    links to one folder elsewhere are two folders, as for ingestion (vggrepro.data.layouts).
    """
    stack = [("", str(root), ())]
    while stack:
        prefix, folder, chain = stack.pop()
        try:
            st = os.stat(folder)
            identity = (st.st_dev, st.st_ino)
            if identity in chain:
                yield (prefix or ".", -2, 0, 0, 0)  # a loop: named by prepare, stamped here
                continue
            chain = (*chain, identity)
            with os.scandir(folder) as it:
                entries = sorted((e for e in it if e.name not in IGNORED), key=lambda e: e.name)
        except OSError as err:  # unreadable: prepare names it; the stamp records that it is
            yield (prefix or ".", -1, err.errno or 0, 0, 0)
            continue
        subfolders = []
        for entry in entries:
            rel = prefix + entry.name
            try:
                if entry.is_dir():  # follows a link to a folder
                    subfolders.append((rel + "/", entry.path, chain))
                    continue
                st = entry.stat()  # follows a link to a file: its target's
                yield (rel, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
            except OSError as err:  # a dangling or looping link: recorded, named by prepare
                yield (rel, -1, err.errno or 0, 0, 0)
        stack.extend(reversed(subfolders))


def _single(path: Path, name: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError as err:
        return (name, -1, err.errno or 0, 0, 0)  # absent (the usual case) or unreadable
    return (name, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def _rows(root: Path, source: str):
    """Every file reading this source may open (vggrepro.data.layouts.read_paths)."""
    from vggrepro.data.layouts import read_paths  # torch-free, like this module

    folders, files = read_paths(root, source)
    for folder in folders:
        name = os.path.relpath(folder, root)
        for rel, *stat in _walk(folder):
            yield (rel if name == "." else f"{name}/{rel}", *stat)
    for path in files:
        yield _single(path, str(path))


def stamp(root: str | Path, source: str = "imagefolder") -> dict:
    """{"root", "files", "digest"}; files 0 and digest "absent" when root does not exist."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return {"root": str(root), "files": 0, "digest": "absent"}
    rows = ["\0".join(map(str, row)) + "\n" for row in _rows(root, source)]
    # surrogateescape: a file name that is not UTF-8 is stamped by its bytes, not refused
    digest = hashlib.blake2b("".join(rows).encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
    return {"root": str(root), "files": len(rows), "digest": digest}


def write(root: str | Path, source: str) -> bool:
    """Writes the stamp of root to paths.DATA_STAMP if it changed; returns whether it did."""
    text = json.dumps(stamp(root, source), indent=1, sort_keys=True) + "\n"
    target = Path(paths.DATA_STAMP)
    if target.is_file() and target.read_text() == text:
        return False
    io.write_text(target, text)
    return True


def _sizes_and_times(root: Path, source: str) -> dict:
    """{"files", "digest"} of every file's path, size and mtime: what a hand run compares. A
    copy of the dataset that keeps times (cp -p, shutil.copytree) compares equal; the inode and
    ctime, which the engines' stamp holds too, would not."""
    root = Path(root).expanduser()

    def named(path: str) -> str:  # files looked for beside the root are named from it
        return os.path.relpath(path, root) if os.path.isabs(path) else path

    rows = [f"{named(path)}\0{size}\0{mtime}\n" for path, size, mtime, *_ in _rows(root, source)]
    digest = hashlib.blake2b("".join(rows).encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
    return {"files": len(rows), "digest": digest}


def record_prepared(root: str | Path, source: str) -> None:
    """prepare, once it has read the folder: its files' sizes and times, for hand runs."""
    text = json.dumps(_sizes_and_times(root, source), indent=1, sort_keys=True) + "\n"
    target = Path(paths.PREPARED_STAMP)
    if not (target.is_file() and target.read_text() == text):
        io.write_text(target, text)


def check_unchanged_since_prepare(root: str | Path, source: str) -> None:
    """Before a stage reads an image: every file of the folder has the size and mtime it had
    when prepare read it (one stat per file, no reading). The engines rerun prepare on any change
    before they get here; a stage run by hand would otherwise read an image the manifest does not
    describe. Without prepare's record (.vggrepro/ deleted) there is nothing to compare: the
    engines' own stamp still guards their runs."""
    from vggrepro.data.ingest import DatasetError

    record = Path(paths.PREPARED_STAMP)
    if not record.is_file() or not Path(paths.MANIFEST).is_file():
        return  # nothing prepared yet (the stage names the missing manifest), or no record
    if json.loads(record.read_text()) != _sizes_and_times(root, source):
        raise DatasetError(f"{root}: changed since prepare (an image replaced, added or removed); rerun prepare")
