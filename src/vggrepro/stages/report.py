"""report: reports/results.md with the paper's Tables 3 to 6 (ours beside the paper's) and the
figures, reports/tables/table{3,4,5,6}.csv and .html (the page `snakemake --report` shows),
reports/figures/*.png, and reports/metrics.json for `dvc metrics show`.

The report holds no timings, paths or dates, so the same params give the same bytes from
either engine and from a rerun.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from vggrepro import __version__, paths
from vggrepro.data import badfiles
from vggrepro.metrics import true_class_rank
from vggrepro.params import PAPER_CROP, PAPER_DROPOUT, PAPER_HEAD_WIDTH, Params
from vggrepro.report import figures, findings, htmltable, paper, tables
from vggrepro.runtime import io
from vggrepro.runtime.errors import Error, MissingFile

PAPER_EPOCHS = 74  # Sec. 3.1: 370K iterations of batch 256
PAPER_BATCH = 256  # Sec. 3.1


class ReportError(Error):
    """An input of the report that is there but not as this version writes it; one line."""


def _missing(path: str) -> FileNotFoundError:
    return MissingFile(
        f"{path}: no such file; its evaluate stage has not run (after changing the runs in "
        "params.yaml, regenerate dvc.yaml with `vggrepro dvc-yaml`)"
    )


def _read(path: str):
    if not Path(path).exists():
        raise _missing(path)
    return io.read_json(path) if path.endswith(".json") else Path(path).read_text()


def _wrong_per_image(source: str, protocol: str) -> tuple[torch.Tensor, list[str]]:
    """(1.0 where top-1 is wrong, ties counted wrong, else 0.0; the images' paths) of a run's
    protocol, or of a fuse entry (protocol "fused"), from the posteriors its stage saved."""
    path = paths.fused(source) if protocol == "fused" else paths.protocol_posteriors(source, protocol)
    if not Path(path).exists():
        raise _missing(path)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return (true_class_rank(saved["posteriors"], saved["labels"]) >= 1).double(), list(saved["paths"])


def curves(params: Params) -> list[str]:
    """Whose training curves the report draws: each run, or in a sweep each run as written with
    its seeds in one figure (the registry declares the same figures: stages import no engine)."""
    return list(dict.fromkeys(r.base for r in params.runs.values()))


def over_seeds(params: Params, df: pd.DataFrame, protocol) -> pd.DataFrame:
    """A table's rows that a summary figure draws: without seeds, all of them; in a sweep, one
    row for each run as written (and method, in Table 5) with the means over its seeds and the
    95% interval of the top-1 mean over seeds and images, as the findings count it."""
    if params.seeds is None or not len(df):
        return df
    keys = ["run", "method"] if "method" in df else ["run"]
    bases = df["run"].map(lambda r: params.runs[r].base)
    rows = []
    for _, group in df.groupby([bases, *(df[k] for k in keys[1:])], sort=False):
        row = group.iloc[0].copy()
        row["run"] = params.runs[row["run"]].base
        for column in ("top-1 err", "top-5 err"):
            row[column] = group[column].mean()
        if "top-1 low" in group:
            wrong = findings.aligned([(r["run"], *_wrong_per_image(r["run"], protocol(r))) for _, r in group.iterrows()])
            label = f"{row['run']} {protocol(row)} over seeds"
            row["top-1 low"], row["top-1 high"] = (
                findings.interval_over_seeds(wrong, params.raw["seed"], label) if len(wrong) > 1
                else findings.interval(wrong[0], params.raw["seed"], label))  # one seed: the images' alone
        rows.append(row)
    return pd.DataFrame(rows, columns=df.columns).reset_index(drop=True)


def _computed_on(run: str) -> tuple[str, str | None]:
    """The device and precision a run's evaluate stage computed in, and those its training did
    as its model.pt records them (None: imported, not trained in this grid). A file without them
    is not this version's: one line, not a guess."""
    record = _read(paths.eval_metrics(run))
    evaluated, trained = record.get("compute"), record.get("trained_on", False)
    if not isinstance(evaluated, str) or not isinstance(trained, str | None):
        entry = "compute" if not isinstance(evaluated, str) else "trained_on"
        raise ReportError(f"{paths.eval_metrics(run)}: no \"{entry}\" entry; rerun {paths.stage_name('evaluate', run)}")
    return evaluated, trained


def _compute_line(params: Params) -> str:
    """Where the runs trained and were evaluated, as they recorded it: train.precision auto and
    device auto resolve per machine, so the settings alone would not say."""
    where = {n: _computed_on(n) for n in params.runs}
    evaluated = sorted({e for e, _ in where.values()})
    trained = sorted({t for _, t in where.values() if t is not None})
    imported = [n for n, (_, t) in where.items() if t is None]
    if trained == evaluated:
        line = f"- Compute: trained and evaluated on {' and '.join(evaluated)}"
    else:
        line = "- Compute: " + (f"trained on {' and '.join(trained)}; " if trained else "") + f"evaluated on {' and '.join(evaluated)}"
    if imported:
        line += f"; {', '.join(imported)} imported, not trained here"
    if any("fastest kernels" in c for c in trained + evaluated):  # Compute.describe() of a GPU run
        line += "; the GPU's kernels chosen for speed: not bitwise repeatable"
    return line + " (paper: fp32 on 4 NVIDIA Titan Black GPUs)."


def epochs_trained(run: str) -> int:
    """Epochs the run trained (the schedule may stop before max_epochs): its log's lines."""
    return len(_read(paths.train_log(run)))


def _settings(params: Params) -> list[str]:
    """What differs from the paper's setting, one line each."""
    raw, runs = params.raw, params.runs
    data = raw["data"]
    if data["source"] == "embedded":
        emb = data["embedded"]
        classes = emb["classes"]
        n_train, n_val = classes * emb["train_per_class"], classes * emb["val_per_class"]
        data_line = (
            f"embedded generated dataset, {classes} classes, {n_train:,} train / {n_val:,} val images "
            "(paper: ILSVRC-2012, 1000 classes, 1.3M train / 50k val)"
        )
        chance = 100.0 * (1 - 1 / classes), 100.0 * (1 - min(5, classes) / classes)
    else:
        data_line = "ILSVRC-2012 from " + data["root"]
        chance = None
    crop = params.crop
    sides = {s for r in runs.values() for s in (*r.scale, r.single_scale_q, *r.multi_scale_q)}
    scaled = ", ".join(f"{s:g} -> {params.pixels(s)}" for s in sorted(sides))
    m, t = raw["model"], raw["train"]
    trained = {n: epochs_trained(n) for n in runs}
    seen = {n: trained[n] + sum(trained[c] for c in params.init_chain(n)) for n in runs}
    longest = max(seen, key=seen.get)
    aug = raw["augment"]
    transforms = ["random crop of the rescaled image"]
    transforms += ["random horizontal flip"] if aug["flip"] else []
    # The shift's eigenvectors are ImageNet's pixels' (AlexNet's PCA of its training set): right
    # for ILSVRC, borrowed for a generated dataset, whose own PCA the paper's recipe would take.
    borrowed = aug["colour_shift"] > 0 and data["source"] == "embedded"
    transforms += [f"AlexNet's PCA colour shift (std {aug['colour_shift']:g}"
                   + (", along ImageNet's RGB principal components, not this dataset's own)" if borrowed else ")")
                   ] if aug["colour_shift"] > 0 else []
    missing = [x for x, on in (("flip", aug["flip"]), ("colour shift", aug["colour_shift"] > 0)) if not on]
    lines = [f"- Data: {data_line}."]
    duplicates = sum(r.kind == "duplicate_across_splits" for r in badfiles.read_csv(_read(paths.BAD_FILES)))
    if duplicates:
        lines.append(f"- Data: {duplicates:,} val image(s) have the bytes of a training image (listed in "
                     f"{paths.BAD_FILES} as duplicate_across_splits); they are scored as the others, so a net "
                     "may have learnt them.")
    if crop != PAPER_CROP:
        lines.append(f"- Geometry: crop {crop} px (paper: {PAPER_CROP}); every S and Q scaled by {crop}/{PAPER_CROP} "
                     f"and rounded ({scaled} px).")
    if (m["width"], m["head_width"]) != (1.0, PAPER_HEAD_WIDTH):
        lines.append(f"- Width: conv layers x{m['width']:g}, FC1/FC2 {m['head_width']} channels "
                     f"(paper: x1, {PAPER_HEAD_WIDTH}).")
    if m["dropout"] != PAPER_DROPOUT:
        lines.append(f"- Dropout: {m['dropout']:g} after FC1 and FC2 (paper: {PAPER_DROPOUT:g}).")
    lines += [
        f"- Training: SGD, batch {t['batch_size']}, momentum {t['momentum']:g}, weight decay "
        f"{t['weight_decay']:g} on every parameter, biases included (Caffe's default; the paper does not say); "
        f"{_lr_rule(params)}{_fine_tune_lr(params)}; the table gives the epochs each run trained "
        "(paper: batch 256, lr 1e-2, 1e-3 for S = 384 from S = 256, divided by 10 when its validation accuracy plateaued, "
        f"3 times, 74 epochs). A run started from another adds its epochs to that run's ({params.base(longest)} has seen "
        f"{seen[longest]} counting its chain), "
        "so rows differ in training length as well as in depth and scale.",
        _compute_line(params),
        "- Preprocessing: " + (
            "mean RGB subtracted and divided by the per-channel std (paper: mean subtracted only)."
            if m["normalise"] == "mean_std" else "mean RGB subtracted (as the paper)."
        ),
        "- Augmentation: " + ", ".join(transforms)
        + (f"; no {' or '.join(missing)} (paper: crop, flip and colour shift)." if missing
           else " (paper: the same, the colour shift along its training set's components)." if borrowed
           else " (as the paper)."),
        f"- Initialisation: {_init_line(params)}",
        f"- Test: {_test_line(raw['evaluate'], sorted({params.pixels(q) for r in runs.values() for q in (r.single_scale_q, *r.multi_scale_q)}), bool(params.multi_crop_runs))}",
    ]
    imported = [n for n, r in runs.items() if r.imported]
    if imported:
        lines.append(
            "- Imported runs (not trained here; the lines above are about the others): "
            + "; ".join(f"{n} is {runs[n].weights}, its inputs normalised as that checkpoint says" for n in imported) + "."
        )
    if chance:
        lines.append(f"- Chance level on this dataset: top-1 {chance[0]:.1f}%, top-5 {chance[1]:.1f}%.")
    return lines


SCHEMES = {
    "normal": "N(0, std {std:g}^2)",
    "glorot": "Glorot & Bengio's uniform",
    "kaiming": "He et al.'s normal (postdates the paper)",
}


def _init_line(params: Params) -> str:
    """How each trained run started, saying only what ran (Sec. 3.1: the paper's A from
    N(0, 1e-2 variance); deeper nets from A's first four conv and three FC layers; S=384 from
    S=256; jittered from S=384)."""
    runs, std = params.runs, params.raw["train"]["init_std"]
    parts, from_a, whole = [], [], []
    for scheme, text in SCHEMES.items():
        named = [n for n, r in runs.items() if r.init == scheme]
        if named:
            parts.append(f"{', '.join(named)} from random weights, {text.format(std=std)}")
    others, roots = [], set()
    for n, r in runs.items():
        if r.init_run is not None:
            source = runs[r.init_run]
            if not tables.papers_chain(params, n):
                others.append(f"{n} from {r.init_run}")
            else:
                (whole if source.config == r.config else from_a).append(f"{n} from {r.init_run}")
                if source.config != r.config:  # the layers A does not give: drawn as the chain's root drew its own
                    roots.add(params.init_scheme(n))
    if not parts:
        return "no run trained here."
    if from_a:
        drawn = " or ".join(SCHEMES[s].format(std=std) for s in sorted(roots))
        parts.append(f"{', '.join(from_a)}: its first four conv and three FC layers (Sec. 3.1), the rest random, {drawn}")
    if whole:
        parts.append(f"{', '.join(whole)}: every layer (Sec. 3.1)")
    if others:
        parts.append(f"{', '.join(others)}: every layer its configuration shares (not a chain of the paper's; no "
                     "paper numbers beside it)")
    return "; ".join(parts) + " (paper: A from N(0, 1e-2 variance), the others as Sec. 3.1 chains them)."


def _test_line(settings: dict, qs_px: list[int], multi_crop: bool = True) -> str:
    """How the runs were tested; multi-crop only where some run was (multi_crop)."""
    flip = "averaged with the flipped image's" if settings["flip"] else "without the flipped image (paper: with it)"
    pool = (
        "the class score map averaged before the soft-max (the paper's sum-pooled score map)"
        if settings["pool"] == "scores"
        else "the soft-max taken at every position of the score map and the posteriors averaged (paper: scores averaged first)"
    )
    odd = [q for q in qs_px if q % 32]
    padded = (f"at this geometry every image, its Q of {', '.join(map(str, odd))} px being no multiple"
              if odd else "at the paper's Q, multiples of 32, only the longer side")
    crops = (
        "a 5 x 5 grid of crops and their flips at each of three Q, 150 crops (as the paper)"
        if settings["flip"] else "a 5 x 5 grid of crops at each of three Q, 75 crops without flips (paper: 150 with flips)"
    )
    return (
        f"dense evaluation of the whole image at Q, {pool}, posteriors {flip}; the pooling grid centred on the "
        "image: a side that is not a multiple of 32 px padded to one by repeating its edge pixels, split evenly "
        f"({padded}; the paper does not say how it treats a longer side that is not a multiple)"
        + (f"; multi-crop: {crops}." if multi_crop else "; no run evaluated by multi-crop.")
    )


SECTIONS = {
    3: ("Table 3: single-scale evaluation",
        "Dense evaluation at one test scale Q (Q = S for a fixed S, Q = 0.5 (S_min + S_max) for a jittered S)."),
    4: ("Table 4: multi-scale evaluation",
        "Dense evaluation, posteriors averaged over Q = {S-32, S, S+32} for a fixed S and {S_min, 0.5 (S_min + S_max), "
        "S_max} for a jittered S (Sec. 4.2). The paper's table has no A or A-LRN row: ours stand without a paper number."),
    5: ("Table 5: dense and multi-crop evaluation",
        "At the run's three test scales: dense, multi-crop (a 5 x 5 grid of crops at each scale, and their flips unless "
        "evaluate.flip is false: see the Test line below), and the two posteriors averaged (Sec. 4.3), for the runs in "
        "evaluate.multi_crop. The paper's rows are D and E trained with S in [256;512]."),
    6: ("Table 6: fusion of nets",
        "Soft-max posteriors averaged over the members (Sec. 4.4), each member run/protocol as params.yaml's fuse names "
        "it; members whose run the grid does not hold are left out and listed. The paper's numbers stand beside an "
        "ensemble only where it fuses all the nets of the paper's row. The paper's top-5 test errors are not reproducible "
        "here (ILSVRC test labels are not public)."),
}


SUBMISSION = paper.SUBMISSION
FULL_GRID = "params/cpu-table3.yaml"  # Table 3's twelve rows at the CPU default's geometry
FINDINGS = "params/findings.yaml"  # the claims tested over three seeds


def _notes(params: Params, number: int, df: pd.DataFrame) -> list[str]:
    """What a row beside the paper's must say about how the paper's was made."""
    if number == 6 and any((df["ensemble"].map(params.base) == SUBMISSION) & df["paper top-1"].notna()):
        return [
            f"{SUBMISSION}: the paper's multi-scale D in that ensemble had only its fully-connected layers "
            "fine-tuned from the single-scale D (Sec. 4.4); ours fine-tunes every layer."
        ]
    return []


def _table_notes(params: Params, number: int, df: pd.DataFrame) -> list[str]:
    """The lines under a table, in results.md (in italics) and in its HTML page alike."""
    return [*_notes(params, number, df), f"Differs from the paper: {_short_difference(params)}."]


def render(params: Params, frames: dict[int, pd.DataFrame]) -> str:
    settings = _settings(params)
    out = paths.report_files(params.seeds is not None)
    rel = {Path(f).stem: str(Path(f).relative_to(Path(out.markdown).parent)) for f in out.figures(curves(params))}
    lines = [
        "<!-- Generated by `vggrepro report` from params.yaml"
        + (f" (the findings profile's: `vggrepro use {FINDINGS}`)" if params.seeds is not None else "")
        + "; do not edit: change params.yaml and rerun. -->",
        "# VGG reproduction: results" + (f", {len(params.seeds)} training seeds" if params.seeds else ""),
        "",
        f"vggrepro {__version__}. Errors are percentages on the validation split; lower is better. Our numbers "
        "stand beside the paper's (ILSVRC-2012 val) on the rows the paper has. S and Q are in the paper's pixels; "
        "the runs use them scaled to this geometry. How this run differs from the paper's setting is listed at the end."
        + (f" A sweep over training seeds (params.yaml's `seeds`; `vggrepro use {FINDINGS}` sets the findings "
           "profile's).") * (params.seeds is not None),
        "",
    ]
    ours = {(r.config, r.scale_label) for r in params.runs.values() if not r.imported}
    missing = [f"{c} {s}" for c, s, *_ in paper.facts()["table3_single_scale"] if (c, s) not in ours]
    if missing:
        lines += [
            f"This grid leaves out {len(missing)} of Table 3's rows ({', '.join(missing)}): "
            f"`vggrepro use {FULL_GRID}` runs all of them on the embedded dataset, `params/imagenet-table3.yaml` on "
            "ILSVRC-2012.",
            "",
        ]
    tested = _findings_section(params, frames["findings"])
    if params.seeds is not None:  # a sweep over seeds is run for its findings: they come first
        lines += tested
    for number, (title, caption) in SECTIONS.items():
        df = frames[number]
        lines += [f"## {title}", "", caption, "", tables.to_markdown(df) if len(df) else "(no row in this grid)", ""]
        lines += [line for note in _table_notes(params, number, df) for line in (f"_{note}_", "")]
    if params.seeds is None:
        lines += tested
    lines += ["## Figures", ""]
    captions = {
        "error-vs-depth": "Single-scale top-1 error against depth, A to E (Table 3), with 95% intervals; the paper's "
                          "dotted on a second axis that spans at least as many points as ours.",
        "error-vs-scale": "Top-1 error against the training scale S, single-scale (Table 3) and multi-scale (Table 4) "
                          "test, with 95% intervals; the paper's, single-scale (x) and multi-scale (+), dotted on a second "
                          "axis that spans at least as many points as ours.",
        "protocols": "Dense, multi-crop and both, at three test scales (Table 5).",
    }
    several = params.seeds is not None and len(params.seeds) > 1
    points = {  # what a point and its interval are: the figures with intervals draw over_seeds' rows
        "error-vs-depth": f" Each point is the mean over the {len(params.seeds)} training seeds, its interval counting "
                          "the training noise as well as the images', as the findings do." if several
                          else " One training seed: the intervals are over the validation images.",
        "protocols": f" Each bar is the mean over the {len(params.seeds)} training seeds." if several else "",
    }
    points["error-vs-scale"] = points["error-vs-depth"]
    for name in ("error-vs-depth", "error-vs-scale", "protocols"):
        lines += [f"![{captions[name]}]({rel[name]})", "", f"_{captions[name]}{points[name]}_", ""]
    lines += ["### Training curves", ""]
    for run in curves(params):
        seeds = f", each of its {len(params.seeds)} seeds" if params.seeds else ""
        lines += [f"![{run}: loss, learning rate, training and held-out error per epoch{seeds}]({rel[f'training-{run}']})", ""]
    lines += ["## How this run differs from the paper's setting", "", *settings, ""]
    return "\n".join(lines)


def _lr_rule(params: Params) -> str:
    """How the trained runs' learning rate fell: Sec. 3.1's plateau rule, or a run's lr_steps."""
    t = params.raw["train"]
    # named as params.yaml writes them: a sweep's seeds share their run's schedule
    trained = {r.base: r for r in params.runs.values() if not r.imported}
    stepped = {n: r.lr_steps for n, r in trained.items() if r.lr_steps}
    watched = "held-out loss" if t["plateau_on"] == "loss" else "held-out error"
    rule_core = (
        f"lr divided by {1 / t['lr_factor']:g} when {t['lr_patience'] + 1} epochs in a row bring "
        f"no lower {'cross-entropy' if t['plateau_on'] == 'loss' else 'top-1 error'} on {t['holdout']:.0%} of each class "
        f"held out of the training split"
    )
    plateau = f"{rule_core}, at most {t['lr_decreases']} times, then stop, or at {_epoch_limits(params)}"
    # ReduceLROnPlateau counts the first epoch as an improvement: a cut needs lr_patience + 1 more
    never = sorted({n for n, r in trained.items() if not r.lr_steps and r.max_epochs <= t["lr_patience"] + 1})
    if never:
        lengths = sorted({trained[n].max_epochs for n in never})
        howlong = " or ".join(map(str, lengths)) + (" epoch" if lengths == [1] else " epochs")
        if set(never) == {n for n, r in trained.items() if not r.lr_steps}:
            plateau = f"the plateau rule ({rule_core}), which {howlong} are too few to fire: a constant rate"
        else:
            plateau += f" ({', '.join(never)}: {howlong}, too few for the rule to fire, so a constant rate)"
    if not stepped:
        return "each run's " + plateau
    whose = "every run's lr" if len(stepped) == len(trained) else f"the lr of {', '.join(stepped)}"
    rule = (
        f"{whose} divided by {1 / t['lr_factor']:g} after fixed epochs, each run then trained to its epoch limit ("
        + "; ".join(f"{n} after epochs {' and '.join(map(str, steps))} of {trained[n].max_epochs}" for n, steps in stepped.items())
        + f"), not when its {watched} stops falling: a run this short would keep its first rate for most of its "
        f"epochs; {t['holdout']:.0%} of each class is held out of the training split all the same and, for "
        + ("these runs" if len(stepped) < len(trained) else "them") + ", its error only logged"
    )
    rest = [n for n in trained if n not in stepped]
    return rule + (f"; {', '.join(rest)}: {plateau}" if rest else "")


PAPER_FINE_TUNE_LR = 1e-3  # Sec. 3.1: S = 384 from S = 256 "with a smaller initial learning rate of 10^-3"


def _fine_tune_lr(params: Params) -> str:
    """Runs that start from a run of their own configuration at another rate than the paper's."""
    runs = params.runs
    # fixed scales only: the paper gives no rate for the jittered nets' fine-tuning
    other = list(dict.fromkeys(r.base for r in runs.values() if r.init_run and runs[r.init_run].config == r.config
                               and not r.jittered and r.lr != PAPER_FINE_TUNE_LR and not r.imported))
    if not other:
        return ""
    rates = sorted({r.lr for r in runs.values() if r.base in other})
    return (f"; {' and '.join(other)} fine-tuned from a run of its configuration at lr "
            f"{' or '.join(f'{x:g}' for x in rates)} (paper: {PAPER_FINE_TUNE_LR:g} for S = 384 from S = 256, Sec. 3.1)")


def _epoch_limits(params: Params) -> str:
    """The epoch limits the trained runs had: the default only where some run kept it."""
    trained = [r for r in params.runs.values() if not r.imported and not r.lr_steps]  # those under the plateau rule
    default = params.raw["train"]["max_epochs"]
    written = (params.given or params.raw)["runs"]  # as params.yaml writes them, before a sweep names them per seed
    own = sorted({r.max_epochs for r in trained if "max_epochs" in written[r.base]})
    keeps = any("max_epochs" not in written[r.base] for r in trained)
    if not own:
        return f"{default} epochs"
    limits = ", ".join(map(str, own))
    if keeps:
        return f"{default} epochs (some runs set their own: {limits})"
    return f"each run's own epoch limit ({limits})"


def _findings_section(params: Params, table: pd.DataFrame) -> list[str]:
    return [
        "## The paper's findings, tested",
        "",
        "Each comparison from the runs this grid holds: top-1 error (%) of the side the paper says is better, then of the "
        "other, the paired difference with its 95% interval, and the paper's numbers for the same comparison (claims 3 "
        "and 6: the nearest the paper reports, as their text and notes say). A claim "
        "holds when the whole interval, its ends as printed, is below 0, does not hold when it is above 0, and is "
        "inconclusive otherwise; "
        "claim 7 (no gain from LRN; the difference is A minus A-LRN) holds when the interval's upper end is at most "
        f"+{findings.EQUIVALENT:g} point (A-LRN at most {findings.EQUIVALENT:g} point better than A) and does not hold "
        f"when its lower end is above +{findings.EQUIVALENT:g}. A claim whose runs this grid lacks reads \"not run\". "
        + _seeds_line(params),
        "",
        tables.to_markdown(table),
        "",
        *(f"- {line}" for line in findings.needs(table) + findings.notes(params, table)),
        "",
    ]


def _short_difference(params: Params) -> str:
    """The differences that bear on every table, each only where it holds."""
    raw, m = params.raw, params.raw["model"]
    parts = []
    if raw["data"]["source"] == "embedded":
        classes = raw["data"]["embedded"]["classes"]  # chance errs far less than ILSVRC's 99.9% and 99.5%
        parts.append(f"the embedded generated dataset, {classes} classes (chance: top-1 {100 * (1 - 1 / classes):.0f}%, "
                     f"top-5 {100 * (1 - min(5, classes) / classes):.0f}%)")
    if params.crop != PAPER_CROP:
        parts.append(f"crop {params.crop} px (paper {PAPER_CROP})")
    if m["width"] != 1.0:
        parts.append(f"conv width x{m['width']:g} (paper x1)")
    if m["head_width"] != PAPER_HEAD_WIDTH:
        parts.append(f"FC {m['head_width']} (paper {PAPER_HEAD_WIDTH})")
    if m["normalise"] != "mean":
        parts.append("inputs divided by the per-channel std (paper: mean subtracted only)")
    trained = [n for n, r in params.runs.items() if not r.imported]
    drawn = sorted({params.runs[n].init for n in trained} & (set(SCHEMES) - {"normal"}))
    if drawn:
        parts.append(f"{' and '.join(SCHEMES[s].split(' (')[0] for s in drawn)} initialisation (paper: N(0, 1e-2))")
    if raw["train"]["batch_size"] != PAPER_BATCH:
        parts.append(f"batch {raw['train']['batch_size']} (paper {PAPER_BATCH})")
    if any(epochs_trained(n) != PAPER_EPOCHS for n in trained):
        parts.append(f"the epochs in Table 3 (paper: {PAPER_EPOCHS})")
    stepped = [n for n in trained if params.runs[n].lr_steps]
    if stepped:
        parts.append(("lr" if len(stepped) == len(trained) else "some runs' lr") + " divided at fixed epochs (paper: at plateaus)")
    if raw["train"]["plateau_on"] == "loss" and len(stepped) < len(trained):
        parts.append("the plateau rule on the held-out loss (paper: validation accuracy)")
    if _fine_tune_lr(params):
        parts.append(f"a fine-tuning lr other than the paper's {PAPER_FINE_TUNE_LR:g}")
    if m["dropout"] != PAPER_DROPOUT:
        parts.append(f"dropout {m['dropout']:g} (paper {PAPER_DROPOUT:g})")
    if params.seeds is None:
        parts.append(f"one seed ({raw['seed']}): the intervals are over images, not over training runs")
    return "; ".join(parts)


def _seeds_line(params: Params) -> str:
    seeds = params.seeds
    if seeds is None or len(seeds) == 1:
        return (f"One training seed: the interval is a bootstrap over the validation images ({findings.RESAMPLES} "
                "resamples), not over training runs (\"seeds differ\" reads -), so a verdict here counts no training "
                f"noise and another seed may turn it: `vggrepro use {FINDINGS}` tests the claims over three seeds.")
    return (
        f"{len(seeds)} training seeds ({', '.join(map(str, seeds))}; the dataset and its held-out slice the same for "
        "each): ours are the means over seeds, sd the spread of the seeds' differences, and the interval counts the "
        "training noise (Student's t over the seeds' differences) as well as the images' (a bootstrap of the seeds' "
        f"mean difference over the validation images, {findings.RESAMPLES} resamples), their half-widths added in "
        "quadrature; \"seeds differ\" says whether the seeds' differences spread more than one seed's difference "
        "varies with the images drawn (an F test at 95%: where they do, more seeds, not more images, would narrow "
        "the interval). A comparison some seeds lack is inconclusive. Claim 6 "
        "sets each seed's ensemble against that seed's best member (named), beside the paper's best member. The "
        "tables give every seed's run."
    )


def run(params: Params) -> dict:
    runs = params.runs
    evals = {n: _read(paths.eval_metrics(n)) for n in runs}
    epochs = {n: epochs_trained(n) for n in runs}
    fusion = _read(paths.FUSION_METRICS)
    out = paths.report_files(params.seeds is not None)
    def intervals(df: pd.DataFrame, protocol) -> list[tuple[float, float]]:
        return [
            findings.interval(_wrong_per_image(row["run"], protocol(row))[0], params.raw["seed"], f"{row['run']} {protocol(row)}")
            for _, row in df.iterrows()
        ]

    t5_protocol = {method: p for p, method in tables.TABLE5_METHODS.items()}
    frames = {
        3: tables.table3(params, evals, epochs),
        4: tables.table4(params, evals),
        5: tables.table5(params, evals),
        6: tables.table6(params, fusion),
    }
    # Each error's 95% interval over the validation images (bootstrap): what a row can be told
    # apart from. Table 6's ensembles are compared in the findings.
    frames[3] = tables.with_intervals(frames[3], intervals(frames[3], lambda row: "dense-single"))
    frames[4] = tables.with_intervals(frames[4], intervals(frames[4], lambda row: "dense"))
    frames[5] = tables.with_intervals(frames[5], intervals(frames[5], lambda row: t5_protocol[row["method"]]))
    for number, df in frames.items():
        io.write_text(out.table(number), tables.to_csv(df))
        # and as a page that `snakemake --report` shows (a CSV there is only a download)
        title, caption = SECTIONS[number]
        io.write_text(out.table_page(number), htmltable.page(title, caption, df, _table_notes(params, number, df)))
    frames["findings"] = findings.table(params, _wrong_per_image, epochs)
    io.write_text(out.findings_table, tables.to_csv(frames["findings"]))
    if params.seeds is None:
        drawn = {f"training-{n}": figures.training_curves(n, _read(paths.train_log(n))) for n in runs}
    else:
        drawn = {
            f"training-{base}": figures.training_curves_over_seeds(
                base, {r.seed: _read(paths.train_log(n)) for n, r in runs.items() if r.base == base}
            )
            for base in curves(params)
        }
    t3, t4 = over_seeds(params, frames[3], lambda row: "dense-single"), over_seeds(params, frames[4], lambda row: "dense")
    drawn["error-vs-depth"] = figures.error_vs_depth(t3)
    drawn["error-vs-scale"] = figures.error_vs_scale(t3, t4)
    drawn["protocols"] = figures.protocols_side_by_side(  # bars: no interval drawn, none computed
        over_seeds(params, frames[5].drop(columns=["top-1 low", "top-1 high"]), None))
    for name, png in drawn.items():
        io.write_bytes(out.figure(name), png)
    io.write_text(out.markdown, render(params, frames))
    metrics = tables.headline(params, frames)
    io.write_json(out.metrics, metrics)
    return {"runs": len(runs), "tables": len(frames), "figures": len(drawn)}
