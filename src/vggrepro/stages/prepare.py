"""prepare: the dataset as a manifest (split, path, wnid, label) and a class list.

With data.source "embedded" the embedded dataset is first generated into data.root; then,
whatever the source, the tree is read by the same ILSVRC-2012 ingestion code. The generator
writes only into a new folder or one it made before (vggrepro.workspace), never elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from vggrepro import datastamp, io, paths, workspace
from vggrepro.data import embedded, ingest
from vggrepro.params import Params


def embedded_spec(params: Params) -> embedded.EmbeddedSpec:
    return embedded.EmbeddedSpec(**params.raw["data"].get("embedded", {}), seed=params.raw["seed"])


def run(params: Params) -> dict[str, int]:
    data = params.raw["data"]
    root = workspace.data_root(params)
    if data["source"] == "embedded":
        spec = embedded_spec(params)
        if workspace.generated_spec(root) != spec_json(spec):  # absent, or made from other params
            generate_into(root, spec)
    datastamp.write(root)  # the folder as read now: the engines rerun prepare when it changes
    entries, synsets = ingest.ilsvrc2012(root)
    io.write_text(paths.CLASSES, ingest.classes_csv(synsets))
    io.write_text(paths.MANIFEST, ingest.manifest_csv(entries))
    io.write_text(paths.BAD_FILES, "path,kind,action,detail\n")
    counts = {split: sum(e.split == split for e in entries) for split in ("train", "val")}
    return {"classes": len(synsets), **counts}


def spec_json(spec: embedded.EmbeddedSpec) -> str:
    return json.dumps(asdict(spec), sort_keys=True) + "\n"


def generate_into(root: Path, spec: embedded.EmbeddedSpec) -> None:
    """Generates the embedded set into a fresh folder beside root, then swaps it in.

    A killed run leaves root as it was (plus a hidden temporary folder of its own); the old
    folder is removed only after the check that the generator made it and nothing else is in it.
    """
    workspace.check_generated_root(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        embedded.generate(spec, tmp)
        (tmp / workspace.MARKER).write_text(spec_json(spec))
        old = None
        if root.exists():
            workspace.check_nothing_foreign(root)  # again, file by file, just before it goes
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
            os.replace(root, old / root.name)
        os.replace(tmp, root)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
