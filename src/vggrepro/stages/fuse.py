"""fuse: ensembles of nets (Sec. 4.4, Table 6), the soft-max posteriors of several
(run, protocol) pairs averaged, from the posteriors the evaluate stages saved.

Each entry of params.yaml's `fuse` names its members as run/protocol; members whose run the
grid does not hold are left out and the metrics name the members fused. An entry with no
member left is skipped (its metrics say so); a fusion of one member is that member.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vggrepro import paths, protocols
from vggrepro.metrics import topk_error
from vggrepro.params import Params, fused_members, left_out_members
from vggrepro.runtime import io
from vggrepro.runtime.errors import Error, MissingFile


class FuseError(Error):
    """Posteriors that cannot be fused (not an evaluate stage's, or of other images); one line."""


def _read(run: str, protocol: str) -> dict:
    path = paths.protocol_posteriors(run, protocol)
    if not Path(path).exists():
        raise MissingFile(f"{path}: no such file; run {paths.stage_name('evaluate', run)} first")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not (isinstance(saved, dict) and {"posteriors", "labels", "paths"} <= saved.keys()):
        raise FuseError(f"{path}: not the posteriors an evaluate stage writes (posteriors, labels, paths); rerun {paths.stage_name('evaluate', run)}")
    return saved


def fuse(members: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(posteriors averaged over members, labels, image paths); every member must score the
    same images in the same order."""
    first = None
    total = None
    for run, protocol in members:
        saved = _read(run, protocol)
        protocols.check_posteriors(saved["posteriors"], run=run, protocol=protocol)
        if first is None:
            first = saved
            total = saved["posteriors"].double()
            continue
        if saved["paths"] != first["paths"] or not torch.equal(saved["labels"], first["labels"]):
            raise FuseError(
                f"fuse: {run}/{protocol} scored other images than {members[0][0]}/{members[0][1]}; "
                "rerun their evaluate stages on the same val split"
            )
        total += saved["posteriors"].double()
    # Summed in fp64 in the listed order, then one division: one member gives itself exactly.
    return (total / len(members)).float(), first["labels"], first["paths"]


def run(params: Params) -> dict:
    results = {}
    for name in params.raw["fuse"]:
        members = fused_members(params, name)
        entry = {"members": [f"{r}/{p}" for r, p in members], "left_out": left_out_members(params, name)}
        if members:
            posteriors, labels, image_paths = fuse(members)
            protocols.check_posteriors(posteriors, run=name, protocol="fusion")
            io.write_torch(paths.fused(name), {"posteriors": posteriors, "labels": labels, "paths": image_paths})
            entry.update(
                top1_err=round(topk_error(posteriors, labels, 1), 4), top5_err=round(topk_error(posteriors, labels, 5), 4)
            )
        results[name] = entry
    io.write_json(paths.FUSION_METRICS, results)
    return {"fused": sum(1 for e in results.values() if e["members"])}
