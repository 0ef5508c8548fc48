"""Who owns the embedded dataset's folder: a stage may delete only what vggrepro made.

The embedded generator replaces data.root wholesale, and both engines delete a stage's
declared outputs before running it. So a folder becomes the generator's only if it did not
exist before (the generator then leaves a marker in it), and it is replaced only while it holds
the marker and nothing but the generator's own entries. Everything else stops with one line
naming the folder. Checked by `vggrepro validate` (DVC's first stage), by the Snakefile at parse
time, and by prepare itself. No torch import: the engines call this on every parse.
"""

from __future__ import annotations

import re
from pathlib import Path

from vggrepro.params import Params, ParamsError

MARKER = ".vggrepro-embedded"  # written last by the generator, into the folder it made
# Snakemake touches .snakemake_timestamp inside a directory output once its job is done.
GENERATED = frozenset(
    {MARKER, "train", "val", "LOC_val_solution.csv", "LOC_synset_mapping.txt", ".snakemake_timestamp"}
)


def check_generated_root(root: Path) -> None:
    """Raises ParamsError unless root is absent or a folder the embedded generator made."""
    if not root.exists() and not root.is_symlink():
        return
    if not root.is_dir() or root.is_symlink():
        raise ParamsError(f"data.root: {root} is not a folder the embedded generator made; expected a new folder")
    try:
        entries = {p.name for p in root.iterdir()}
    except OSError as err:
        raise ParamsError(f"data.root: {root} cannot be listed ({err.strerror}); expected a readable folder") from None
    if MARKER not in entries:
        raise ParamsError(
            f"data.root: {root} exists and was not made by the embedded generator (no {MARKER} in it); "
            "refusing to replace it: name a new folder, or move it away"
        )
    foreign = sorted(entries - GENERATED)
    if foreign:
        raise ParamsError(
            f"data.root: {root} holds {foreign[0]!r}, which the embedded generator did not write; "
            "refusing to replace the folder: move it away"
        )


# What the generator writes below its folder's top level (vggrepro.data.embedded).
GENERATED_FILES = re.compile(r"(train/(n\d{8})/\2_\d+\.JPEG|val/ILSVRC2012_val_\d{8}\.JPEG)")


def check_nothing_foreign(root: Path) -> None:
    """Raises ParamsError if any file under root is not one the generator writes.

    Run just before a generated folder is replaced (a walk of every file), where the top-level
    check that the engines run on every call would miss a file dropped into train/<wnid>/.
    """
    check_generated_root(root)
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        if "/" in rel and not GENERATED_FILES.fullmatch(rel):
            raise ParamsError(
                f"data.root: {root} holds {rel!r}, which the embedded generator did not write; "
                "refusing to replace the folder: move it away"
            )


def check(params: Params) -> None:
    """Every check of the workspace that must pass before an engine deletes an output."""
    if params.raw["data"]["source"] == "embedded":
        check_generated_root(params.data_root)


def generated_spec(root: Path) -> str | None:
    """The marker's text (the generator's parameters) if root holds one, else None."""
    marker = root / MARKER
    return marker.read_text() if marker.is_file() else None
