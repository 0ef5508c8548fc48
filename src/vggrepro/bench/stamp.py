"""The dataset stamp's cost on a large tree, against a bare listing of the same tree.

    vggrepro bench stamp [--repeat 5] [--files 100000]

Both engines stamp the dataset folder on every call (vggrepro.data.datastamp): one stat per file,
no reading. This builds a tree of small files in ImageNet's train/<wnid>/ shape (1,000 class
folders) in a temporary folder and times the stamp against `os.walk` listing the same tree.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from vggrepro.data import datastamp


def _tree(root: Path, files: int, classes: int = 1000) -> None:
    for i in range(files):
        folder = root / "train" / f"n{i % classes:08d}"
        if i < classes:
            folder.mkdir(parents=True)
        (folder / f"{i:08d}.JPEG").write_bytes(b"\xff\xd8")


def _walk(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def _median(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(repeat: int = 5, files: int = 100_000) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _tree(root, files)
        assert datastamp.stamp(root)["files"] == files == _walk(root)
        stamp_s = _median(lambda: datastamp.stamp(root), repeat)
        walk_s = _median(lambda: _walk(root), repeat)
    print(
        f"dataset stamp of {files:,} files: {stamp_s:.3f} s; os.walk listing: {walk_s:.3f} s; "
        f"ratio {stamp_s / walk_s:.2f} (median of {repeat})"
    )
    return {"files": files, "stamp_s": stamp_s, "walk_s": walk_s}
