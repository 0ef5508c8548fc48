"""The paper's findings, tested on whatever runs the grid holds: each claim's comparisons, our
paired difference in top-1 error with its 95% bootstrap interval over the validation images,
the paper's numbers for the same comparison, and a verdict.

A comparison is paired: both sides scored the same images, so the interval is that of the
difference, not of each error (much narrower when the two nets err on the same images). The
bootstrap draws images with replacement from a generator seeded by params.yaml's seed, so the
same posteriors give the same interval from either engine and from a rerun. In a sweep over
training seeds a comparison is made once per seed, between that seed's runs; the row gives the
means over seeds, the spread (sd) of the seeds' differences, and an interval that counts the
training noise (Student's t over the seeds' differences) as well as the images' (the bootstrap
of the seeds' mean difference), so one lucky seed is no finding. A comparison that some seeds
lack (the schedule stopped one side early) is inconclusive whatever its interval.

Verdicts, for a claim "X errs less than Y" (difference X - Y): holds when the whole interval is
below 0, does not hold when it is above 0, inconclusive otherwise. Claim 7 says the opposite
kind of thing (A-LRN is no better than A; the difference is A - (A-LRN), positive where A-LRN
errs less): it holds when the interval's upper end is at most +EQUIVALENT (A-LRN at most that
many points better, worse included), does not hold when its lower end is above +EQUIVALENT, and
is inconclusive otherwise.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

from vggrepro.params import Params
from vggrepro.report import paper, tables
from vggrepro.runtime.errors import Error

RESAMPLES = 2000
CHUNK = 100  # resamples drawn at once
EQUIVALENT = 1.0  # points of top-1 error within which claim 7 calls two nets alike
DEEP, SHALLOW = ("D", "E"), ("A", "B")

CLAIMS = {
    1: "Error falls with depth: D and E below A and B (single-scale, Table 3)",
    2: "3x3 beats 1x1 at equal depth: D below C (single-scale, Table 3)",
    3: "Scale jitter in training beats a fixed S: a jittered run below its fixed-scale continuation of equal length "
       "from the same start (single-scale, Q 384; the paper's numbers: its jittered net against the S=384 net it was "
       "fine-tuned from, as the paper has no equal-length control)",
    4: "Multi-scale testing beats single-scale (Tables 3 and 4)",
    5: "Multi-crop & dense beats each alone (Table 5)",
    6: "Fusing D and E beats the best single net (Table 6; the paper's side: its best reported member of the same nets)",
    7: "LRN does not help: A-LRN no better than A, within a point (single-scale, Table 3)",
}

# Claim 6's rows for an ensemble that adds other configurations to D and E (the 7-net ILSVRC
# submission adds C): a finding of their own, so that their verdict is not read as D and E's.
WIDER_FUSION = ("Fusing nets beats the best single net: D and E with other configurations (Sec. 4.4, Table 6; the "
                "paper's side: its best reported member of the same nets)")

# What we think a claim would need where it does not hold or is inconclusive here.
MORE_IMAGES = "more validation images (a narrower interval)"
MORE_EITHER = ("more validation images or more training seeds (the seeds spread as their images' noise explains, and "
               "with few seeds Student's t widens the interval most)")
MORE_SEEDS = "more training seeds (the seeds' differences spread more than one seed's difference varies with the images drawn)"
MORE_MIXED = ("more validation images or more training seeds (on some of its rows the seeds' differences spread more than "
              "the images explain, on others not)")
NEEDS = {
    1: "the deeper nets trained longer: their added layers start from random weights, and the narrow nets of a CPU "
       "grid relearn slowly",
    2: "C and D trained longer, as for claim 1",
    3: "longer jittered training than this grid's fine-tuning; at the demo geometry a 64-px crop of a 110-px image "
       "cuts the objects, so the S=384 start is weak",
    4: MORE_IMAGES,
    5: MORE_IMAGES + "; our dense and multi-crop differ far more than the paper's",
    6: "members that err on other images; more validation images",
    7: MORE_IMAGES,
}
# Where a claim does not hold, what we think differs from the paper's setting (no more images or
# seeds would turn a clear result round); the claims not named take NEEDS.
NOT_HOLDING = {
    7: "a setting nearer the paper's: LRN's gain here may be that of a narrow net (the paper's are full width)",
}

class Unpaired(Error, ValueError):
    """Two sides, or two seeds, that scored other images: no paired difference; one line."""


# (run or fuse entry, protocol): the per-image top-1 wrong (0/1 float) and the images' paths
Wrong = Callable[[str, str], tuple[torch.Tensor, list[str]]]


@dataclass(frozen=True)
class Side:
    label: str  # how the row names it: "E_256 dense-single"
    source: str  # a run, or a fuse entry's name when protocol is "fused"
    protocol: str
    paper: float | None  # the paper's top-1 error for that side, where it has the row
    unreported: bool = False  # the paper's net of this side has no error in the paper (claim 6: its FC-only D)


@dataclass(frozen=True)
class Comparison:
    claim: int
    better: Side  # the side the claim says errs less (claim 7: A, against A-LRN)
    worse: Side
    seed: int | None = None  # the training seed both sides share in a sweep over seeds
    note: str = ""  # claim 6 in a sweep: which member was this seed's best
    finding: str = ""  # the row's finding where it is not CLAIMS[claim] (claim 6: WIDER_FUSION)

    @property
    def label(self) -> str:
        return f"{self.better.label} vs {self.worse.label}"


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
    """Every comparison the grid's runs and fuse entries allow, claim by claim; in a sweep over
    seeds, once per seed, between runs of that seed, each side labelled by its run's name as
    written. epochs: those each run trained (the schedule may stop one early); claim 3's
    control must match them."""
    trained = {n: r for n, r in params.runs.items() if not r.imported}
    out: list[Comparison] = []
    for seed in dict.fromkeys(r.seed for r in trained.values()):
        out += _of_one_seed(params, {n: r for n, r in trained.items() if r.seed == seed}, seed, epochs)
    return out


def _of_one_seed(params: Params, runs: dict, seed: int | None, epochs: dict[str, int] | None) -> list[Comparison]:
    def side(name: str, what: str, protocol: str, paper_err: float | None) -> Side:
        return Side(f"{runs[name].base} {what}", name, protocol, paper_err)

    single = {n: side(n, "single-scale", "dense-single", _t3(params, n)) for n in runs}
    out: list[Comparison] = []

    def seen(n: str) -> int | None:  # epochs counting the chain it started from
        return None if epochs is None else sum(epochs.get(r, 0) for r in (n, *params.init_chain(n)))

    def pairs(better_configs, worse_configs, claim, equal_length=False):
        for b, rb in runs.items():
            for w, rw in runs.items():
                if (rb.config in better_configs and rw.config in worse_configs and rb.scale == rw.scale
                        and (not equal_length or seen(b) == seen(w))):
                    out.append(Comparison(claim, single[b], single[w], seed))

    pairs(DEEP, SHALLOW, 1)  # the deeper nets start from A, as the paper's did
    pairs(("D",), ("C",), 2, equal_length=True)  # D_384 against C_384, not against a longer control
    for j, rj in runs.items():
        if not rj.jittered:
            continue
        for f, rf in runs.items():
            if (not rf.jittered and rf.config == rj.config and rf.init == rj.init and rf.max_epochs == rj.max_epochs
                    and rf.lr == rj.lr and rf.lr_steps == rj.lr_steps and rf.single_scale_q == rj.single_scale_q
                    and (epochs is None or epochs.get(f) == epochs.get(j))):
                # The paper has no equal-length control: beside ours, its jittered net against the
                # S=384 net it was fine-tuned from (Table 3), where our control continues that start.
                start = _t3(params, rj.init_run) if rj.init_run in runs and runs[rj.init_run].scale == rf.scale else None
                control = Side(single[f].label, f, "dense-single", start if single[j].paper is not None else None)
                out.append(Comparison(3, single[j], control, seed))
    for n, r in runs.items():
        out.append(Comparison(4, side(n, "multi-scale", "dense", _t4(params, n)), single[n], seed))
    for n in params.multi_crop_runs:
        if n not in runs:
            continue
        both = side(n, "multi-crop & dense", "multi-crop+dense", _t5(params, n, "multi-crop & dense"))
        out.append(Comparison(5, both, side(n, "dense", "dense", _t5(params, n, "dense")), seed))
        out.append(Comparison(5, both, side(n, "multi-crop", "multi-crop", _t5(params, n, "multi-crop")), seed))
    for name in params.raw["fuse"]:
        members = [m.split("/", 1) for m in params.raw["fuse"][name] if m.split("/", 1)[0] in runs]
        configs = {runs[r].config for r, _ in members}
        if not ({"D", "E"} <= configs and len(members) == len(params.raw["fuse"][name])):
            continue
        finding = "" if configs == {"D", "E"} else WIDER_FUSION
        base = params.base(name)
        theirs = paper.table6_row(base) if tables.papers_ensemble(params, name, params.raw["fuse"][name], []) else None
        fused = Side(base, name, "fused", theirs[0] if theirs else None)
        for r, p in members:
            # The submission's multi-scale D had only its FC layers fine-tuned (Sec. 4.4): the
            # paper gives no error for that net, so none stands beside ours.
            fc_only = base == paper.SUBMISSION and paper.fc_only_in_submission(runs[r].config, runs[r].scale_label)
            member = Side(f"{runs[r].base} {p}", r, p, None if fc_only else _member_paper(params, r, p), fc_only)
            out.append(Comparison(6, fused, member, seed, finding=finding))
    pairs(("A",), ("A-LRN",), 7)
    return out


def _generator(seed: int, label: str) -> torch.Generator:
    return torch.Generator().manual_seed((seed % 2**32) * 2**32 + zlib.crc32(label.encode()))


def _percentiles(means: torch.Tensor) -> tuple[float, float]:
    low, high = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=means.dtype)).tolist()
    return low, high


def _bootstrap(values: torch.Tensor, seed: int, label: str) -> tuple[float, float]:
    """The 95% percentile interval of the mean of values (one per image) over RESAMPLES draws
    of the images with replacement. The draws come from a generator of (seed, label) alone, so a
    row's interval does not depend on which other rows the grid holds; drawn in chunks, so
    50,000 ILSVRC images stay in memory."""
    generator = _generator(seed, label)
    v = values.double()
    return _percentiles(torch.cat([
        v[torch.randint(len(v), (n, len(v)), generator=generator)].mean(dim=1)
        for n in [CHUNK] * (RESAMPLES // CHUNK) + [RESAMPLES % CHUNK] if n
    ]))


def _over_seeds(values: torch.Tensor, seed: int, label: str) -> tuple[float, float]:
    """The 95% interval of the mean over training seeds of the mean over images, values being
    (seeds, images) on the same images: the images' bootstrap interval of the seeds' mean and
    Student's t over the seeds' own means (k - 1 degrees of freedom), their half-widths added
    in quadrature. Three seeds are too few for a bootstrap over seeds (its percentiles cover
    far less than 95%); t is the small-sample interval, and a wide one: 4.3 sd / sqrt(3)."""
    from scipy.stats import t

    v = values.double()
    mean = v.mean().item()
    img_low, img_high = _bootstrap(v.mean(dim=0), seed, label)
    per_seed = v.mean(dim=1)
    half = float(t.ppf(0.975, len(per_seed) - 1)) * per_seed.std().item() / len(per_seed) ** 0.5
    return mean - ((mean - img_low) ** 2 + half**2) ** 0.5, mean + ((img_high - mean) ** 2 + half**2) ** 0.5


def aligned(per_seed: list[tuple[str, torch.Tensor, list[str]]]) -> torch.Tensor:
    """(seeds, images) from each seed's (source, per-image values, image paths): refused unless
    every seed scored the same images in the same order, which the mean over seeds and the
    bootstrap over images take for granted (a seed that skipped another bad file would shift
    every image after it)."""
    source, _, first = per_seed[0]
    for other, _, images in per_seed[1:]:
        if images != first:
            raise Unpaired(f"{other} and {source} scored other images; rerun their evaluate stages on the same val split")
    return torch.stack([values for _, values, _ in per_seed])


def _paired(wrong: Wrong, group: list[Comparison], seed: int) -> dict:
    """A comparison over its seeds: each side's error and the difference better - worse (the
    means over seeds), its spread over seeds, and its 95% interval, all in points."""
    diffs, better, worse = [], [], []
    for c in group:
        b, b_paths = wrong(c.better.source, c.better.protocol)
        w, w_paths = wrong(c.worse.source, c.worse.protocol)
        if b_paths != w_paths:
            raise Unpaired(f"{c.better.source} and {c.worse.source} scored other images; rerun their evaluate stages")
        diffs.append((c.better.source, (b.double() - w.double()) * 100.0, b_paths))
        better.append(100.0 * b.double().mean().item())
        worse.append(100.0 * w.double().mean().item())
    d = aligned(diffs)
    per_seed = d.mean(dim=1)
    label = group[0].label
    low, high = _bootstrap(d[0], seed, label) if len(group) == 1 else _over_seeds(d, seed, label)
    return {
        "better": sum(better) / len(better), "worse": sum(worse) / len(worse), "diff": per_seed.mean().item(),
        "sd": per_seed.std().item() if len(group) > 1 else None, "low": low, "high": high,
        "seeds_differ": None if len(group) == 1 else seeds_differ(d),
    }


def seeds_differ(d: torch.Tensor) -> bool:
    """Whether the seeds' differences (rows of d: seeds x images, in points) spread more than
    the images' noise alone explains: each seed's mean over N images varies by var(d_k) / N from
    the images it drew, so the spread of the seeds' means is compared with that (an F test at
    95%, its denominator's many images read as infinite degrees of freedom). Where it is not,
    more seeds would not narrow the interval more than more images would."""
    from scipy.stats import chi2

    k, n = d.shape
    seed_var = d.double().mean(dim=1).var().item()
    image_var = (d.double().var(dim=1) / n).mean().item()
    if image_var == 0:
        return seed_var > 0
    return seed_var / image_var > float(chi2.ppf(0.95, k - 1)) / (k - 1)


def interval_over_seeds(wrong: torch.Tensor, seed: int, label: str) -> tuple[float, float]:
    """The 95% interval (points) of one top-1 error's mean over training seeds, from its per-image
    0/1 vectors (seeds x images): the training noise and the images', as the findings count them."""
    return _over_seeds(wrong.double() * 100.0, seed, label)


def interval(wrong: torch.Tensor, seed: int, label: str) -> tuple[float, float]:
    """The 95% bootstrap interval (points) of one top-1 error, from its per-image 0/1 vector."""
    return _bootstrap(wrong.double() * 100.0, seed, label)


def needs(table: pd.DataFrame) -> list[str]:
    """One line for each claim that does not hold or is inconclusive on some comparison. Where
    the seeds of every such row differ by more than their images explain, it asks for more
    seeds rather than more validation images."""
    open_rows = table[table["verdict"].isin(["does not hold", "inconclusive"])]
    lines = []
    for claim in dict.fromkeys(open_rows["claim"]):
        rows = open_rows[open_rows["claim"] == claim]
        text = NOT_HOLDING[claim] if claim in NOT_HOLDING and set(rows["verdict"]) == {"does not hold"} else NEEDS[claim]
        differ = set(rows["seeds differ"])
        if differ == {"yes"}:
            text = _instead_of_images(text, MORE_SEEDS) if _asks_images(text) else f"{text}; {MORE_SEEDS}"
        elif differ == {"no"}:  # a sweep whose seeds spread no more than their images explain
            text = _instead_of_images(text, MORE_EITHER)
        elif "-" not in differ:
            text = _instead_of_images(text, MORE_MIXED)
        lines.append(f"Claim {claim} would need, we think: {text}.")
    return lines


def _asks_images(text: str) -> bool:
    return MORE_IMAGES in text or "more validation images" in text


def _instead_of_images(text: str, advice: str) -> str:
    """text asking for advice where it asks for more validation images (once: advice may say it too)."""
    return text.replace(MORE_IMAGES, advice) if MORE_IMAGES in text else text.replace("more validation images", advice)


def notes(params: Params, table: pd.DataFrame) -> list[str]:
    """What a row's paper numbers mean where they are not the same comparison as ours: claim 6's
    submission row where its members hold the net the paper gives no error for."""
    runs = params.runs
    fc_only = [name for name, members in params.raw["fuse"].items() if params.base(name) == paper.SUBMISSION
               and any(paper.fc_only_in_submission(runs[m.split("/", 1)[0]].config, runs[m.split("/", 1)[0]].scale_label)
                       for m in members if m.split("/", 1)[0] in runs)]
    if not fc_only or not any((table["claim"] == 6) & table["comparison"].str.startswith(paper.SUBMISSION + " vs ")):
        return []
    return [f"Claim 6, {paper.SUBMISSION}: the paper's multi-scale D in that ensemble had only its fully-connected "
            "layers fine-tuned (Sec. 4.4) and the paper gives no error for it, so no paper number stands for it; the "
            "paper's side is the best member it does report."]


def _signed(x: float) -> str:
    """One decimal with its sign; an end that rounds to zero reads +0.0, never -0.0, which a
    reader would take for below zero where the verdict (on the printed value) counts it as zero."""
    return f"{round(x, 1) + 0.0:+.1f}"


def verdict(claim: int, low: float, high: float) -> str:
    if claim == 7:  # better = A, worse = A-LRN: the difference is A - (A-LRN)
        if high <= EQUIVALENT:
            return "holds"  # A-LRN at most EQUIVALENT points better, or worse
        if low > EQUIVALENT:
            return "does not hold"  # A-LRN errs less by more than EQUIVALENT
        return "inconclusive"
    if high < 0:
        return "holds"
    if low > 0:
        return "does not hold"
    return "inconclusive"


COLUMNS = ["claim", "finding", "comparison", "seeds", "ours", "difference [95% CI]", "sd over seeds", "seeds differ",
           "paper", "verdict"]


def table(params: Params, wrong: Wrong, epochs: dict[str, int] | None = None) -> pd.DataFrame:
    """One row a comparison (claim 6: the ensemble against its best member), over the seeds
    the grid trained, and one "not run" row for each claim the grid holds no comparison for."""
    seed = params.raw["seed"]
    found = comparisons(params, epochs)
    rows = []
    for claim, text in CLAIMS.items():
        mine = [c for c in found if c.claim == claim]
        if claim == 6 and mine:
            mine = _against_best_member(mine, wrong)
        if not mine:
            rows.append({**dict.fromkeys(COLUMNS, "-"), "claim": claim, "finding": text, "verdict": "not run"})
        groups: dict[str, list[Comparison]] = {}
        for c in mine:
            groups.setdefault(c.label, []).append(c)
        for label, group in groups.items():
            r = _paired(wrong, group, seed)
            finding = group[0].finding or text
            b, w = group[0].better.paper, group[0].worse.paper
            partial = params.seeds is not None and len(group) < len(params.seeds)
            seeds = ", ".join(f"{c.seed} ({c.note})" if c.note else str(seed if c.seed is None else c.seed) for c in group)
            rows.append({
                "claim": claim, "finding": finding, "comparison": label,
                "seeds": seeds + (f" of {len(params.seeds)}: the others' runs trained other lengths" if partial else ""),
                "ours": f"{r['better']:.1f} vs {r['worse']:.1f}",
                "difference [95% CI]": f"{_signed(r['diff'])} [{_signed(r['low'])}, {_signed(r['high'])}]",
                "sd over seeds": "-" if r["sd"] is None else f"{r['sd']:.1f}",
                # beyond what their images' noise explains (seeds_differ); "-" with one seed
                "seeds differ": "-" if r["seeds_differ"] is None else ("yes" if r["seeds_differ"] else "no"),
                "paper": f"{b:.1f} vs {w:.1f}" if b is not None and w is not None else "-",
                # decided on the interval as printed, so that a reader's reading agrees
                "verdict": "inconclusive" if partial else verdict(claim, round(r["low"], 1), round(r["high"], 1)),
            })
    return pd.DataFrame(rows, columns=COLUMNS)


BEST_MEMBER = "its best member"


def _against_best_member(mine: list[Comparison], wrong: Wrong) -> list[Comparison]:
    """Claim 6 per ensemble: against the member with the lowest error (the first on a tie); in
    a sweep, each seed's ensemble against that seed's best member (noted), and the paper's
    side its best member among the same nets."""
    by_seed: dict[tuple[str, int | None], list[Comparison]] = {}
    for c in mine:
        by_seed.setdefault((c.better.label, c.seed), []).append(c)
    sweep = len({seed for _, seed in by_seed}) > 1
    out = []
    for group in by_seed.values():
        best = min(group, key=lambda c: wrong(c.worse.source, c.worse.protocol)[0].mean().item())
        # The paper's side: the best member the paper reports, whichever is ours (one seed or a
        # sweep alike): our best member's own paper error would overstate the paper's gain.
        papers = [c.worse.paper for c in group if not c.worse.unreported]
        theirs = min(papers) if papers and None not in papers else None
        if sweep:
            worse = Side(BEST_MEMBER, best.worse.source, best.worse.protocol, theirs)
            out.append(Comparison(6, best.better, worse, best.seed, note=best.worse.label, finding=best.finding))
        else:
            worse = Side(best.worse.label, best.worse.source, best.worse.protocol, theirs)
            out.append(Comparison(6, best.better, worse, best.seed, finding=best.finding))
    return out
