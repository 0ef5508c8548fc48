"""prepare: the dataset as a manifest, a class list and a list of bad files.

With data.source "embedded" the embedded dataset is first generated into data.root; then,
whatever the source, the tree is read by vggrepro.data.scan (the embedded set by the very code
that reads ILSVRC-2012) into data/manifest.csv (one row per image, with a content fingerprint:
vggrepro.data.ingest), data/classes.csv and data/bad_files.csv (vggrepro.data.badfiles). The
generator writes only into a new folder or one it made before (vggrepro.data.embedded_owner), never
elsewhere. Run on every change of the folder's stamp, it decodes only the files that changed
(vggrepro.data.fingerprint's cache).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from vggrepro import paths
from vggrepro.data import badfiles, datastamp, embedded, embedded_owner, holdout, ingest, scan
from vggrepro.params import Params
from vggrepro.runtime import io


def embedded_spec(params: Params) -> embedded.EmbeddedSpec:
    return embedded.EmbeddedSpec(**params.raw["data"]["embedded"], seed=params.raw["seed"])


def run(params: Params) -> dict:
    data = params.raw["data"]
    root = params.data_root
    if data["source"] == "embedded":
        spec = embedded_spec(params)
        if embedded_owner.generated_spec(root) != spec_json(spec):  # absent, or made from other params
            generate_into(root, spec)
    datastamp.write(root, data["source"])  # the folder as read now: the engines rerun prepare when it changes
    dataset = scan.read_dataset(
        root,
        source=data["source"],
        seed=params.raw["seed"],
        val_fraction=data["val_fraction"],
        on_bad_file=data["on_bad_file"],
        workers=data["workers"],
    )
    holdout.check_classes(dataset.entries)  # before any output: the held-out slice must not be empty
    io.write_text(paths.CLASSES, ingest.classes_csv(dataset.names))
    io.write_text(paths.MANIFEST, ingest.manifest_csv(dataset.entries))
    io.write_text(paths.BAD_FILES, badfiles.csv_text(dataset.bad))
    datastamp.record_prepared(root, data["source"])
    return dataset.summary()


def spec_json(spec: embedded.EmbeddedSpec) -> str:
    return json.dumps(asdict(spec), sort_keys=True) + "\n"


def generate_into(root: Path, spec: embedded.EmbeddedSpec) -> None:
    """Generates the embedded set into a fresh folder beside root, then swaps it in.

    A killed run leaves root as it was, or (killed between the two renames) no root, which the
    next run generates; its hidden temporary folders are removed by the next run. The old
    folder is removed only after the check that the generator made it and nothing else is in it.
    """
    embedded_owner.check_generated_root(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    # What a killed run left (its pid is in the name; another workspace may share the folder).
    for kind in ("partial", "old"):
        for stale in root.parent.glob(f".{root.name}.{kind}-*"):
            if io.left_by_the_dead(stale.name[len(f".{root.name}.{kind}-") :]):
                shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-{os.getpid()}-", dir=root.parent))
    os.chmod(tmp, 0o777 & ~io.umask())  # mkdtemp's 0700 would keep colleagues out of the dataset
    try:
        try:
            embedded.generate(spec, tmp)
            (tmp / embedded_owner.MARKER).write_text(spec_json(spec))
        except OSError as err:  # a full disk: name the folder, not one image in the hidden one
            reason = f"cannot generate the embedded set ({err.strerror or err}); any previous one is left as it was"
            raise OSError(err.errno, reason, str(root)) from None
        old = None
        if root.exists():
            embedded_owner.check_nothing_foreign(root)  # again, file by file, just before it goes
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-{os.getpid()}-", dir=root.parent))
            os.replace(root, old / root.name)
        os.replace(tmp, root)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
