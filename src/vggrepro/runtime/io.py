"""Atomic output writing.

Every output is written to a temporary file beside it and renamed into place, so a killed
stage never leaves a half-written file that the next run takes for done. A file that already
holds the same bytes is left untouched, its modification time too: Snakemake decides on file
times, so a stage run again by hand does not make it rerun everything downstream.
"""

from __future__ import annotations

import filecmp
import glob
import json
import os
import tempfile
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any, Iterator

from vggrepro.runtime.errors import Error


class CorruptFile(Error):
    """A file the project wrote that no longer reads back (edited or truncated by hand)."""


def umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path in path's folder; renames it onto path on success.

    The temporary file's name holds this process's pid, so a later writer can tell one left by
    a killed process (removed) from one being written now (left alone). The file gets the mode
    a plain open() would give it (0666 less the umask; mkstemp's is 0600, which colleagues
    sharing the project folder could not read), and its bytes reach the disk before the rename, so a crash leaves the old file or the new one, never an empty one.
    A write that fails (a full disk, a read-only folder) raises an OSError naming path, not the
    temporary file, and leaves path as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A process killed while writing this file left its temporary one: remove those of
        # writers no longer alive (the writer's pid is in the name).
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
            if stale.name.startswith(f".{path.name}.") and left_by_the_dead(stale.name[len(path.name) + 2 :]):
                stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise _naming(err, path) from None
    try:
        try:
            yield Path(tmp)
        except OSError as err:
            if err.filename is None or str(err.filename) == tmp:  # write() names no file
                raise _naming(err, path) from None
            raise
        try:
            if not (path.is_file() and filecmp.cmp(tmp, path, shallow=False)):
                os.chmod(tmp, 0o666 & ~umask())
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, path)
        except OSError as err:
            raise _naming(err, path) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def left_by_the_dead(rest: str) -> bool:
    """Whether a temporary name's rest, '<pid>-<random>...', names a process no longer alive."""
    pid = rest.split("-", 1)[0]
    if not pid.isdigit():
        return False  # not one of ours: leave it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def _naming(err: OSError, path: Path) -> OSError:
    """err as an OSError about path whose text reads '<path>: cannot write it (<reason>); any
    previous version is left as it was'."""
    reason = err.strerror or str(err)
    return OSError(err.errno, f"cannot write it ({reason}); any previous version is left as it was", str(path))


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_torch(path: str | Path, obj: Any) -> None:
    """torch.save, atomically. Saved through a buffer: saved to a path, the archive would carry
    that path's (temporary, random) name and the same tensors would hash differently."""
    import torch  # here, not at the top: the engines import this package and need no torch

    buffer = BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())


def read_json(path: str | Path) -> Any:
    """The JSON file's content; one that is not JSON (edited or cut short by hand) is an Error
    naming it."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise CorruptFile(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); rerun the stage that writes it") from None

