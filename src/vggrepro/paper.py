"""The paper's numbers (paper.yaml), looked up by the labels the report uses."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from vggrepro.params import read_yaml


@cache
def facts() -> dict:
    return read_yaml(files("vggrepro").joinpath("paper.yaml").read_text())


def table3_row(config: str, train_s: str) -> tuple[str, float, float] | None:
    """(test Q, top-1 err, top-5 err) of Table 3 for a config and a train S label, if any."""
    for cfg, s, q, top1, top5 in facts()["table3_single_scale"]:
        if cfg == config and s == train_s:
            return q, top1, top5
    return None
