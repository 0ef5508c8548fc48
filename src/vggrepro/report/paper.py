"""The paper's numbers (paper.yaml), looked up by the labels the report uses."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from vggrepro.params import read_yaml

SUBMISSION = "ILSVRC submission, 7 nets, dense"  # Table 6's first row


def fc_only_in_submission(config: str, train_s: str) -> bool:
    """Whether the paper's net of this config and train S in its ILSVRC submission had only its
    FC layers fine-tuned (Sec. 4.4: the multi-scale D), so no table gives its error."""
    return config == "D" and train_s == "[256;512]"


@cache
def facts() -> dict:
    return read_yaml(files("vggrepro.report").joinpath("paper.yaml").read_text())


def table3_row(config: str, train_s: str) -> tuple[str, float, float] | None:
    """(test Q, top-1 err, top-5 err) of Table 3 for a config and a train S label, if any."""
    for cfg, s, q, top1, top5 in facts()["table3_single_scale"]:
        if cfg == config and s == train_s:
            return q, top1, top5
    return None


def table4_row(config: str, train_s: str) -> tuple[str, float, float] | None:
    """(test Q set, top-1 err, top-5 err) of Table 4 (dense, multi-scale), if the paper has the row."""
    for cfg, s, qs, top1, top5 in facts()["table4_multi_scale"]:
        if cfg == config and s == train_s:
            return qs, top1, top5
    return None


def table5_row(config: str, train_s: str, method: str) -> tuple[float, float] | None:
    """(top-1 err, top-5 err) of Table 5 for a config and method ("dense", "multi-crop",
    "multi-crop & dense"); the paper's rows are all S in [256;512] tested at {256, 384, 512}."""
    if train_s != "[256;512]":
        return None
    for cfg, m, top1, top5 in facts()["table5_eval_methods"]:
        if cfg == config and m == method:
            return top1, top5
    return None


def table6_row(name: str) -> tuple[float, float, float | None] | None:
    """(top-1 val err, top-5 val err, top-5 test err) of Table 6 for an ensemble named as the paper's row."""
    for row_name, top1, top5, top5_test in facts()["table6_fusion"]:
        if row_name == name:
            return top1, top5, top5_test
    return None


TABLE6_PROTOCOLS = {"dense": "dense", "multi-crop": "multi-crop", "multi-crop & dense": "multi-crop+dense"}


def table6_members(name: str) -> list[tuple[str, str, str]] | None:
    """The nets of a Table 6 row as sorted (config, train S label, protocol), or None when the
    paper has no row of that name. The submission's 7 nets are dense over three Q each."""
    if table6_row(name) is None:
        return None
    if name.startswith("ILSVRC submission"):
        nets = [net.split("/")[:2] for net in facts()["table6_ilsvrc_7_nets"]]
        return sorted((config, scale, "dense") for config, scale in nets)
    configs, rest = name.split(", ", 1)  # "D & E", "[256;512]/{256,384,512}, multi-crop & dense"
    scale, method = rest.split("/", 1)[0], rest.rsplit(", ", 1)[1]
    return sorted((config, scale, TABLE6_PROTOCOLS[method]) for config in configs.split(" & "))
