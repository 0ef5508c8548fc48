"""The paper's Tables 3 to 6 as data frames: our errors beside the paper's, row for row.

Rows follow the grid's runs (params.yaml order) and, for Table 6, its fuse entries; the
paper's numbers stand beside each row the paper has (matched on configuration, training S
and protocol, or on the ensemble's name), "-" where it has none. Reads only the metrics the
evaluate and fuse stages wrote: no forward pass.
"""

from __future__ import annotations

import pandas as pd

from vggrepro.params import Params
from vggrepro.report import paper

TABLE5_METHODS = {"dense": "dense", "multi-crop": "multi-crop", "multi-crop+dense": "multi-crop & dense"}


def _q(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


IMPORTED_S = "unknown (imported)"


def _train_s(run) -> str:
    """Table 3's S notation; an imported checkpoint's training scale is not ours to state
    (torchvision's VGG weights were not trained with the paper's scale jittering)."""
    return IMPORTED_S if run.imported else run.scale_label


def papers_chain(params: Params, name: str) -> bool:
    """Whether the run was made as the paper made the row of its config and S (Sec. 3.1):
    trained here (not imported); a fixed S of 256 from random weights or from A at S=256; a
    fixed S of 384 from the same config at S=256; a jittered S from the same config at S=384.
    Another run (a continuation at the same S, a control) has no paper row beside it."""
    run = params.runs[name]
    if run.imported:
        return False
    if run.init_run is None:
        return not run.jittered and run.scale[0] == 256
    source = params.runs[run.init_run]
    if run.jittered:
        wanted = (run.config, (384, 384))
    elif run.scale[0] == 384:
        wanted = (run.config, (256, 256))
    elif run.scale[0] == 256:
        wanted = ("A", (256, 256))
    else:
        return False
    return (source.config, tuple(source.scale)) == wanted and not source.imported


def papers(params: Params, name: str, row):
    """The paper's row for a run of the grid (row(config, S label)), or None where the run was
    not made as the paper's was (papers_chain)."""
    run = params.runs[name]
    return row(run.config, run.scale_label) if papers_chain(params, name) else None


def _ours(metrics: dict, protocol: str) -> tuple[float, float]:
    m = metrics["protocols"][protocol]
    return m["top1_err"], m["top5_err"]


def table3(params: Params, evals: dict[str, dict], epochs: dict[str, int]) -> pd.DataFrame:
    """Single-scale dense evaluation (Sec. 4.1)."""
    rows = []
    for name, run in params.runs.items():
        top1, top5 = _ours(evals[name], "dense-single")
        theirs = papers(params, name, paper.table3_row)
        rows.append({
            "run": name, "config": run.config, "train S": _train_s(run), "test Q": _q(run.single_scale_q),
            "top-1 err": top1, "top-5 err": top5,
            "paper top-1": theirs[1] if theirs else None, "paper top-5": theirs[2] if theirs else None,
            "init": f"import ({run.weights})" if run.imported else run.init,
            "epochs": "-" if run.imported else epochs[name], "lr": "-" if run.imported else f"{run.lr:g}",
        })
    return pd.DataFrame(rows)


def table4(params: Params, evals: dict[str, dict]) -> pd.DataFrame:
    """Multi-scale dense evaluation (Sec. 4.2): posteriors averaged over three Q. Every run has
    a row, A and A-LRN too (the paper's Table 4 has none for them): the findings' claim 4 uses
    theirs, and each number it quotes stands in a table."""
    rows = []
    for name, run in params.runs.items():
        top1, top5 = _ours(evals[name], "dense")
        theirs = papers(params, name, paper.table4_row)
        rows.append({
            "run": name, "config": run.config, "train S": _train_s(run),
            "test Q": ",".join(_q(q) for q in run.multi_scale_q),
            "top-1 err": top1, "top-5 err": top5,
            "paper top-1": theirs[1] if theirs else None, "paper top-5": theirs[2] if theirs else None,
        })
    return pd.DataFrame(rows, columns=["run", "config", "train S", "test Q", "top-1 err", "top-5 err", "paper top-1", "paper top-5"])


def table5(params: Params, evals: dict[str, dict]) -> pd.DataFrame:
    """Dense against multi-crop evaluation and their combination (Sec. 4.3), for the runs in
    evaluate.multi_crop, at the run's three test scales."""
    rows = []
    for name in params.multi_crop_runs:
        run = params.runs[name]
        for protocol, method in TABLE5_METHODS.items():
            top1, top5 = _ours(evals[name], protocol)
            theirs = paper.table5_row(run.config, run.scale_label, method) if papers_chain(params, name) else None
            rows.append({
                "run": name, "config": run.config, "train S": _train_s(run),
                "test Q": ",".join(_q(q) for q in run.multi_scale_q), "method": method,
                "top-1 err": top1, "top-5 err": top5,
                "paper top-1": theirs[0] if theirs else None, "paper top-5": theirs[1] if theirs else None,
            })
    return pd.DataFrame(
        rows, columns=["run", "config", "train S", "test Q", "method", "top-1 err", "top-5 err", "paper top-1", "paper top-5"]
    )


def papers_ensemble(params: Params, name: str, members: list[str], left_out: list[str]) -> bool:
    """Whether the entry fuses the nets of the paper's row of that name: all of them (none left
    out), of the configurations, training scales and protocol the paper's row names."""
    expected = paper.table6_members(params.base(name))  # a sweep's entries: of each seed
    if expected is None or left_out:
        return False
    runs = params.runs
    if not all(papers_chain(params, m.split("/", 1)[0]) for m in members):
        return False
    ours = sorted((runs[r].config, runs[r].scale_label, p) for r, p in (m.split("/", 1) for m in members))
    return ours == expected


def table6(params: Params, fusion: dict[str, dict]) -> pd.DataFrame:
    """Ensembles (Sec. 4.4): posteriors averaged over nets. The paper's numbers stand beside an
    ensemble only where it fuses the nets of the paper's row (not a part of them)."""
    rows = []
    for name in params.raw["fuse"]:
        entry = fusion[name]
        left_out = entry.get("left_out", [])
        theirs = paper.table6_row(params.base(name)) if papers_ensemble(params, name, entry["members"], left_out) else None
        rows.append({
            "ensemble": name, "members": " + ".join(entry["members"]) or "none in this grid",
            "nets": len(entry["members"]), "left out (not in the grid)": ", ".join(left_out) or "-",
            "top-1 err": entry.get("top1_err"), "top-5 err": entry.get("top5_err"),
            "paper top-1": theirs[0] if theirs else None, "paper top-5": theirs[1] if theirs else None,
        })
    columns = ["ensemble", "members", "nets", "left out (not in the grid)", "top-1 err", "top-5 err", "paper top-1", "paper top-5"]
    return pd.DataFrame(rows, columns=columns)


def with_intervals(df: pd.DataFrame, intervals: list[tuple[float, float]]) -> pd.DataFrame:
    """The frame with each row's top-1 95% interval (points) beside its top-1 error."""
    out = df.copy()
    at = list(out.columns).index("top-1 err") + 1
    out.insert(at, "top-1 high", [hi for _, hi in intervals])
    out.insert(at, "top-1 low", [lo for lo, _ in intervals])
    return out


def cell(v) -> str:
    """A value as the report's tables print it: errors to two decimals, "-" where none."""
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "-"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def numeric_columns(df: pd.DataFrame) -> list[bool]:
    """Which columns hold numbers (set flush right)."""
    return [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]


def to_markdown(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---:" if numeric else "---" for numeric in numeric_columns(df)) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.astype(object).itertuples(index=False)]
    return "\n".join([head, rule, *body])


def headline(params: Params, frames: dict) -> dict:
    """reports/metrics.json: each table's best row (the lowest top-1 error), its top-1 and top-5
    error in % to two decimals (as the tables print them), as t<N>_1 and t<N>_5: eight short plain
    names. `dvc exp show` gives its table the terminal's width less a character per column it
    has before folding any (about 48 on the default grid), and folds from the right what its
    columns' widths overrun: with names of 7 characters the eight and a changed param overran
    160 columns by 6; with these, 10 to spare. In a sweep, each row is first averaged over its
    seeds (the least of several noisy seeds would fall with every seed added). Every row is in
    reports/tables/table<N>.csv; a table without rows is left out."""
    out = {}
    for number in (3, 4, 5, 6):
        df = frames[number]
        if number == 6:
            df = df[df["nets"] > 0]  # an ensemble none of whose members the grid holds
        if not len(df):
            continue
        key = "ensemble" if number == 6 else "run"
        rows = df.assign(**{key: df[key].map(params.base)})
        by = [key, "method"] if number == 5 else [key]
        means = rows.groupby(by, sort=False)[["top-1 err", "top-5 err"]].mean()  # one seed: the row itself
        best = means.loc[means["top-1 err"].idxmin()]  # the first of equal rows
        out[f"t{number}_1"] = round(float(best["top-1 err"]), 2)
        out[f"t{number}_5"] = round(float(best["top-5 err"]), 2)
    return out


def to_csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, lineterminator="\n", float_format="%.4f")
