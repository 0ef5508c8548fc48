"""A full disk or an unwritable output folder stops a stage with one line naming the output and
leaves the previous outputs' bytes as they were; the rerun, once there is room, writes them again.

Root ignores file modes, so as root the read-only folder is a read-only bind mount and the full
disk a small tmpfs (real EROFS and ENOSPC from the kernel); as another user, a folder of mode
0555 and a write whose fsync fails with ENOSPC."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import vggrepro

AS_ROOT = os.geteuid() == 0


def _workspace(tiny_runs, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_runs["dvc"][0], tmp_path / "ws", symlinks=True))


def _bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@contextmanager
def _read_only(folder: Path):
    if AS_ROOT:
        _mount("--bind", str(folder), str(folder))
        try:
            _mount("-o", "remount,bind,ro", str(folder))
            yield
        finally:
            subprocess.run(["umount", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


@contextmanager
def _full(folder: Path):
    """folder, with its files, on a filesystem with no room left."""
    saved = folder.with_name(folder.name + ".saved")
    folder.rename(saved)
    folder.mkdir()
    _mount("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder))
    try:
        for p in saved.iterdir():
            shutil.copy2(p, folder / p.name)
        filler = folder / ".filler"
        try:
            with open(filler, "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC
        yield filler
    finally:
        subprocess.run(["umount", str(folder)], check=True)
        folder.rmdir()
        saved.rename(folder)


def _one_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.slow  # seconds: the default suite must stay under 10 minutes with its install
def test_a_read_only_output_folder_gives_one_line_and_keeps_the_outputs(tiny_runs, tmp_path):
    ws = _workspace(tiny_runs, tmp_path)
    before = _bytes(ws / "reports")
    with _read_only(ws / "reports/tables"):
        done = vggrepro("report", cwd=ws)
    line = _one_line(done)
    print(line)
    reason = "Read-only file system" if AS_ROOT else "Permission denied"
    assert line.startswith("vggrepro report: error: reports/tables/table3.csv: cannot write it") and reason in line, line
    assert _bytes(ws / "reports") == before
    assert vggrepro("report", cwd=ws).returncode == 0 and _bytes(ws / "reports") == before


@pytest.mark.slow  # seconds: the default suite must stay under 10 minutes with its install
def test_a_full_disk_gives_one_line_and_keeps_the_outputs(tiny_runs, tmp_path, monkeypatch, capsys):
    ws = _workspace(tiny_runs, tmp_path)
    before = _bytes(ws / "fusion")
    (ws / "fusion/metrics.json").write_text("{}\n")  # so that fuse has something to write
    edited = _bytes(ws / "fusion")
    if AS_ROOT:
        with _full(ws / "fusion") as filler:
            line = _one_line(vggrepro("fuse", cwd=ws))
            assert _bytes(ws / "fusion") == {**edited, ".filler": filler.read_bytes()}  # no temporary file left
    else:
        from vggrepro import cli

        def fsync(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.chdir(ws)
        monkeypatch.setattr(os, "fsync", fsync)
        capsys.readouterr()
        assert cli.main(["fuse"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        line = lines[0]
        assert _bytes(ws / "fusion") == edited
        monkeypatch.undo()
    print(line)
    assert "fusion/" in line and "cannot write it (No space left on device)" in line, line
    assert vggrepro("fuse", cwd=ws).returncode == 0 and _bytes(ws / "fusion") == before
