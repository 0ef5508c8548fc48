"""What a stage may delete: only what vggrepro made.

The embedded generator replaces data.root wholesale, and both engines delete a stage's
declared outputs before running it. So a folder becomes the generator's only if it did not
exist before (the generator then leaves a marker in it), and it is replaced only while it holds
the marker and nothing but the generator's own entries. Everything else stops with one line
naming the folder. Checked by `vggrepro validate` (DVC's first stage), by the Snakefile at parse
time, and by prepare itself. No torch import: the engines call this on every parse.
"""

from __future__ import annotations

from pathlib import Path

from vggrepro.params import Params, ParamsError

MARKER = ".vggrepro-embedded"  # written last by the generator, into the folder it made
# Snakemake touches .snakemake_timestamp inside a directory output once its job is done.
GENERATED = frozenset(
    {MARKER, "train", "val", "LOC_val_solution.csv", "LOC_synset_mapping.txt", ".snakemake_timestamp"}
)


def data_root(params: Params) -> Path:
    """data.root as a path, `~` expanded."""
    return Path(params.raw["data"]["root"]).expanduser()


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


def check(params: Params) -> None:
    """Every check of the workspace that must pass before an engine deletes an output."""
    if params.raw["data"]["source"] == "embedded":
        check_generated_root(data_root(params))


def generated_spec(root: Path) -> str | None:
    """The marker's text (the generator's parameters) if root holds one, else None."""
    marker = root / MARKER
    return marker.read_text() if marker.is_file() else None
