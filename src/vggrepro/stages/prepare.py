"""prepare: the dataset as a manifest (split, path, wnid, label) and a class list.

With data.source "embedded" the embedded dataset is first generated into data.root; then,
whatever the source, the tree is read by the same ILSVRC-2012 ingestion code.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vggrepro import io, paths
from vggrepro.data import embedded, ingest
from vggrepro.params import Params


def embedded_spec(params: Params) -> embedded.EmbeddedSpec:
    return embedded.EmbeddedSpec(**params.raw["data"].get("embedded", {}), seed=params.raw["seed"])


def run(params: Params) -> dict[str, int]:
    data = params.raw["data"]
    root = Path(data["root"])
    if data["source"] == "embedded":
        # Generated afresh into a temporary folder, so a killed run leaves no partial set.
        tmp = root.with_name(root.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        embedded.generate(embedded_spec(params), tmp)
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    entries, synsets = ingest.ilsvrc2012(root)
    io.write_text(paths.CLASSES, ingest.classes_csv(synsets))
    io.write_text(paths.MANIFEST, ingest.manifest_csv(entries))
    counts = {split: sum(e.split == split for e in entries) for split in ("train", "val")}
    return {"classes": len(synsets), **counts}
