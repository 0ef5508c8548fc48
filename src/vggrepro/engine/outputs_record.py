"""Snakemake reruns a stage whose output was edited by hand.

DVC hashes every output on each call and reruns the stage of one that changed. Snakemake
decides on file times and its own metadata: it reruns the stages after an edited output (their
input is newer) but not the stage that made it, so an edited final report would stay; and it
remakes a missing output only when a stage reading it must run anyway (`snakemake --summary`
says "missing, no update"), so a deleted evaluation stays deleted. So each stage command records its outputs when it ends (size, mtime and
MD5, in .vggrepro/outputs/<stage>.json), and at parse time the Snakefile calls `flag_edited`:
an output whose size or mtime differs from the record is hashed, and if its bytes differ too
(and are not a version dvc.lock holds: `dvc checkout` restores those), or the output is gone,
the count of edits in .vggrepro/edits/<stage>.txt, an input of the stage's rule only, goes up
by one. Its content changes, so Snakemake reruns the stage (a newer time alone would not do:
Snakemake compares the checksums of small inputs it recorded). Bytes that
match have their new size and time recorded, so each file is hashed once after a change.
A stage with no record (its outputs came from elsewhere, or it never ran here) is left alone;
only files are recorded (the embedded dataset folder prepare makes is checked by its stamp).
The Snakefile runs this in Snakemake's main process only, never in a cluster job.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ruamel.yaml.error import YAMLError

from vggrepro import paths
from vggrepro.engine.registry import Stage, snakemake_stages
from vggrepro.params import read_yaml
from vggrepro.runtime import io
from vggrepro.runtime.locks import try_lock


def ensure_edit_counts(stages: list[Stage], root: str | Path = ".") -> None:
    """Creates the missing counts, dated 1970: a new one must not look like an update of an
    input to stages whose outputs are already there (made by DVC, or before counts existed)."""
    for stage in snakemake_stages(stages):
        path = Path(root) / paths.edits(stage.name)
        if not path.is_file():
            io.write_text(path, "0\n")
            os.utime(path, ns=(0, 0))


def _bump(root: Path, stage: str) -> None:
    path = root / paths.edits(stage)
    try:
        count = int(path.read_text())
    except (OSError, ValueError):
        count = 0
    io.write_text(path, f"{count + 1}\n")


def _running(root: Path, stage: str) -> bool:
    """Whether the stage's command runs now: its outputs may be newer than its record."""
    path = root / paths.stage_lock(stage)
    if not path.exists():
        return False
    fd = try_lock(path, this_process_only=True)
    if fd is None:
        return True
    os.close(fd)
    return False


def _path(stage: str) -> Path:
    return Path(paths.output_record(stage))


def md5(path: Path) -> str:
    h = hashlib.md5()  # DVC's hash: one reading serves the check against dvc.lock too
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def record(stage: Stage) -> None:
    """What the stage's outputs are now, as it ends."""
    outs = {o.path: {"stat": _stat(Path(o.path)), "md5": md5(Path(o.path))} for o in stage.outs if Path(o.path).is_file()}
    io.write_json(_path(stage.name), outs)


def _dvc_versions(root: Path) -> dict[str, set[str]]:
    """Every output's MD5 that dvc.lock records (empty without one)."""
    try:
        lock = read_yaml((root / "dvc.lock").read_text()) or {}
        found: dict[str, set[str]] = {}
        for stage in lock.get("stages", {}).values():
            for out in stage.get("outs", []):
                found.setdefault(out["path"], set()).add(out.get("md5"))
        return found
    except (OSError, YAMLError, AttributeError, KeyError, TypeError):
        return {}


def flag_edited(stages: list[Stage], root: str | Path = ".") -> list[str]:
    """Counts one more edit for each stage (not running now) with an output edited or deleted
    since it ran; their names."""
    root = Path(root)
    stages = snakemake_stages(stages)
    flagged, dvc = set(), None
    for stage in stages:
        if _running(root, stage.name):
            continue
        rec_path = root / _path(stage.name)
        try:
            rec = io.read_json(rec_path)
        except (OSError, ValueError):
            continue
        refreshed = False
        for out, seen in rec.items():
            path = root / out
            if not path.is_file():
                # Snakemake remakes a missing output only for a stage that must run anyway
                # (`snakemake --summary`: "missing, no update"); a deleted final one it remakes.
                flagged.add(stage.name)
                continue
            if _stat(path) == seen["stat"]:
                continue
            digest = md5(path)
            if dvc is None:
                dvc = _dvc_versions(root)
            if digest == seen["md5"] or digest in dvc.get(out, ()):
                rec[out] = {"stat": _stat(path), "md5": digest}  # touched or restored, not edited
                refreshed = True
            else:
                flagged.add(stage.name)
        if refreshed:
            io.write_json(rec_path, rec)
    for name in flagged:
        _bump(root, name)
    return sorted(flagged)
