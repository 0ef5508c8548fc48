"""The paper's findings, tested on whatever runs the grid holds: each claim's comparisons, our
paired difference in top-1 error with its 95% bootstrap interval over the validation images,
the paper's numbers for the same comparison, and a verdict.

A comparison is paired: both sides scored the same images, so the interval is that of the
difference, not of each error (much narrower when the two nets err on the same images). The
bootstrap draws images with replacement from a generator seeded by params.yaml's seed, so the
same posteriors give the same interval from either engine and from a rerun.

Verdicts, for a claim "X errs less than Y" (difference X - Y): holds when the whole interval is
below 0, does not hold when it is above 0, inconclusive otherwise. Claim 7 says the opposite
kind of thing (A-LRN is no better than A): it holds when A-LRN is worse, or when the whole
interval lies within +-EQUIVALENT points; it does not hold when A-LRN is better.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

from vggrepro.params import Params
from vggrepro.report import paper, tables

RESAMPLES = 2000
CHUNK = 100  # resamples drawn at once
EQUIVALENT = 1.0  # points of top-1 error within which claim 7 calls two nets alike
DEEP, SHALLOW = ("D", "E"), ("A", "B")

CLAIMS = {
    1: "Error falls with depth: D and E below A and B (single-scale, Table 3)",
    2: "3x3 beats 1x1 at equal depth: D below C (single-scale, Table 3)",
    3: "Scale jitter in training beats a fixed S: a jittered run below its fixed-scale continuation of equal length "
       "from the same start (single-scale, Q 384)",
    4: "Multi-scale testing beats single-scale (Tables 3 and 4)",
    5: "Multi-crop & dense beats each alone (Table 5)",
    6: "Fusing D and E beats the best single net (Table 6)",
    7: "LRN does not help: A-LRN no better than A (single-scale, Table 3)",
}

# What we think a claim would need where it does not hold or is inconclusive here.
NEEDS = {
    1: "the deeper nets trained longer: their added layers start from random weights, and the narrow nets of a CPU "
       "grid relearn slowly",
    2: "C and D trained longer, as for claim 1",
    3: "longer jittered training (the paper's jittered nets trained as long as the others); at the demo geometry a "
       "64-px crop of a 110-px image cuts the objects, so the S=384 start is weak",
    4: "more validation images (a narrower interval)",
    5: "more validation images (a narrower interval); our dense and multi-crop differ far more than the paper's",
    6: "members that err on other images; more validation images",
    7: "more validation images (a narrower interval)",
}

# (run or fuse entry, protocol): the per-image top-1 wrong (0/1 float) and the images' paths
Wrong = Callable[[str, str], tuple[torch.Tensor, list[str]]]


@dataclass(frozen=True)
class Side:
    label: str  # how the row names it: "E_256 dense-single"
    source: str  # a run, or a fuse entry's name when protocol is "fused"
    protocol: str
    paper: float | None  # the paper's top-1 error for that side, where it has the row


@dataclass(frozen=True)
class Comparison:
    claim: int
    better: Side  # the side the claim says errs less (claim 7: A, against A-LRN)
    worse: Side


def _t3(params: Params, name: str) -> float | None:
    row = tables.papers(params, name, paper.table3_row)
    return row[1] if row else None


def _t4(params: Params, name: str) -> float | None:
    row = tables.papers(params, name, paper.table4_row)
    return row[1] if row else None


def _t5(params: Params, name: str, method: str) -> float | None:
    run = params.runs[name]
    row = paper.table5_row(run.config, run.scale_label, method) if tables.papers_chain(params, name) else None
    return row[0] if row else None


def _member_paper(params: Params, name: str, protocol: str) -> float | None:
    """The paper's top-1 error of one fused member by its protocol (Tables 3 to 5)."""
    if protocol == "dense-single":
        return _t3(params, name)
    if protocol == "dense":
        return _t4(params, name)
    return _t5(params, name, {"multi-crop": "multi-crop", "multi-crop+dense": "multi-crop & dense"}[protocol])


def comparisons(params: Params, epochs: dict[str, int] | None = None) -> list[Comparison]:
    """Every comparison the grid's runs and fuse entries allow, claim by claim. epochs: those
    each run trained (the schedule may stop one early); claim 3's control must match them."""
    runs = {n: r for n, r in params.runs.items() if not r.imported}
    single = {n: Side(f"{n} single-scale", n, "dense-single", _t3(params, n)) for n in runs}
    out: list[Comparison] = []

    def pairs(better_configs, worse_configs, claim):
        for b, rb in runs.items():
            for w, rw in runs.items():
                if rb.config in better_configs and rw.config in worse_configs and rb.scale == rw.scale:
                    out.append(Comparison(claim, single[b], single[w]))

    pairs(DEEP, SHALLOW, 1)
    pairs(("D",), ("C",), 2)
    for j, rj in runs.items():
        if not rj.jittered:
            continue
        for f, rf in runs.items():
            if (not rf.jittered and rf.config == rj.config and rf.init == rj.init and rf.max_epochs == rj.max_epochs
                    and rf.lr == rj.lr and rf.single_scale_q == rj.single_scale_q
                    and (epochs is None or epochs.get(f) == epochs.get(j))):
                out.append(Comparison(3, single[j], single[f]))
    for n, r in runs.items():
        out.append(Comparison(4, Side(f"{n} multi-scale", n, "dense", _t4(params, n)), single[n]))
    for n in params.multi_crop_runs:
        if n not in runs:
            continue
        both = Side(f"{n} multi-crop & dense", n, "multi-crop+dense", _t5(params, n, "multi-crop & dense"))
        out.append(Comparison(5, both, Side(f"{n} dense", n, "dense", _t5(params, n, "dense"))))
        out.append(Comparison(5, both, Side(f"{n} multi-crop", n, "multi-crop", _t5(params, n, "multi-crop"))))
    for name in params.raw["fuse"]:
        members = [m.split("/", 1) for m in params.raw["fuse"][name] if m.split("/", 1)[0] in runs]
        configs = {runs[r].config for r, _ in members}
        if not ({"D", "E"} <= configs and len(members) == len(params.raw["fuse"][name])):
            continue
        theirs = paper.table6_row(name) if tables.papers_ensemble(params, name, params.raw["fuse"][name], []) else None
        fused = Side(name, name, "fused", theirs[0] if theirs else None)
        out += [Comparison(6, fused, Side(f"{r} {p}", r, p, _member_paper(params, r, p))) for r, p in members]
    pairs(("A",), ("A-LRN",), 7)
    return out


def _bootstrap(values: torch.Tensor, seed: int, label: str) -> tuple[float, float]:
    """The 95% percentile interval of the mean of values (one per image) over RESAMPLES draws
    of the images with replacement. The draws come from a generator of (seed, label) alone, so a
    row's interval does not depend on which other rows the grid holds; drawn in chunks, so
    50,000 ILSVRC images stay in memory."""
    generator = torch.Generator().manual_seed((seed % 2**32) * 2**32 + zlib.crc32(label.encode()))
    v = values.double()
    means = torch.cat([
        v[torch.randint(len(v), (n, len(v)), generator=generator)].mean(dim=1)
        for n in [CHUNK] * (RESAMPLES // CHUNK) + [RESAMPLES % CHUNK] if n
    ])
    low, high = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=means.dtype)).tolist()
    return low, high


def _paired(wrong: Wrong, c: Comparison, seed: int) -> tuple[float, float, float, float, float]:
    """(better's error, worse's, difference better - worse, interval low, high) in points."""
    b, b_paths = wrong(c.better.source, c.better.protocol)
    w, w_paths = wrong(c.worse.source, c.worse.protocol)
    if b_paths != w_paths:
        raise ValueError(f"{c.better.label} and {c.worse.label} scored other images; rerun their evaluate stages")
    d = (b.double() - w.double()) * 100.0
    low, high = _bootstrap(d, seed, f"{c.better.label} vs {c.worse.label}")
    return 100.0 * b.mean().item(), 100.0 * w.mean().item(), d.mean().item(), low, high


def interval(wrong: torch.Tensor, seed: int, label: str) -> tuple[float, float]:
    """The 95% bootstrap interval (points) of one top-1 error, from its per-image 0/1 vector."""
    return _bootstrap(wrong.double() * 100.0, seed, label)


def needs(table: pd.DataFrame) -> list[str]:
    """One line for each claim that does not hold or is inconclusive on some comparison."""
    open_claims = table.loc[table["verdict"].isin(["does not hold", "inconclusive"]), "claim"]
    return [f"Claim {c} would need, we think: {NEEDS[c]}." for c in dict.fromkeys(open_claims)]


def verdict(claim: int, low: float, high: float) -> str:
    if claim == 7:  # better = A, worse = A-LRN: the difference is A - (A-LRN)
        if low > 0:
            return "does not hold"  # A-LRN errs less
        if high < 0 or (low >= -EQUIVALENT and high <= EQUIVALENT):
            return "holds"
        return "inconclusive"
    if high < 0:
        return "holds"
    if low > 0:
        return "does not hold"
    return "inconclusive"


def table(params: Params, wrong: Wrong, epochs: dict[str, int] | None = None) -> pd.DataFrame:
    """One row a comparison (claim 6: the ensemble against its best member), and one "not run"
    row for each claim the grid holds no comparison for."""
    seed = params.raw["seed"]
    found = comparisons(params, epochs)
    rows = []
    for claim, text in CLAIMS.items():
        mine = [c for c in found if c.claim == claim]
        if claim == 6 and mine:
            mine = _against_best_member(mine, wrong)
        if not mine:
            rows.append({"claim": claim, "finding": text, "comparison": "-", "ours": "-", "difference [95% CI]": "-",
                         "paper": "-", "verdict": "not run"})
        for c in mine:
            ours_b, ours_w, diff, low, high = _paired(wrong, c, seed)
            theirs = (f"{c.better.paper:.1f} vs {c.worse.paper:.1f}" if c.better.paper is not None and c.worse.paper is not None
                      else "-")
            rows.append({
                "claim": claim, "finding": text, "comparison": f"{c.better.label} vs {c.worse.label}",
                "ours": f"{ours_b:.1f} vs {ours_w:.1f}", "difference [95% CI]": f"{diff:+.1f} [{low:+.1f}, {high:+.1f}]",
                "paper": theirs, "verdict": verdict(claim, low, high),
            })
    return pd.DataFrame(rows, columns=["claim", "finding", "comparison", "ours", "difference [95% CI]", "paper", "verdict"])


def _against_best_member(mine: list[Comparison], wrong: Wrong) -> list[Comparison]:
    """Claim 6 per ensemble: against the member with the lowest error (the first on a tie)."""
    best: dict[str, tuple[float, Comparison]] = {}
    for c in mine:
        err = wrong(c.worse.source, c.worse.protocol)[0].mean().item()
        if c.better.source not in best or err < best[c.better.source][0]:
            best[c.better.source] = (err, c)
    return [c for _, c in best.values()]
