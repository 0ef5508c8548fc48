"""report: reports/results.md, Table 3 with the paper's numbers beside ours, and
reports/metrics.json for `dvc metrics show`.

The report holds no timings, paths or dates, so the same params give the same bytes from
either engine and from a rerun.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vggrepro import __version__, io, paper, paths
from vggrepro.params import PAPER_CROP, Params


def _missing(path: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{path}: no such file; its evaluate stage has not run (after changing the runs in "
        "params.yaml, regenerate dvc.yaml with `vggrepro dvc-yaml`)"
    )


def _read(path: str):
    if not Path(path).exists():
        raise _missing(path)
    return io.read_json(path) if path.endswith(".json") else Path(path).read_text()


def epochs_trained(run: str) -> int:
    """Epochs the run trained (the schedule may stop before max_epochs): its log's lines."""
    return len(_read(paths.train_log(run)))


def table3(params: Params) -> pd.DataFrame:
    rows = []
    for name, run in params.runs.items():
        ours = _read(paths.eval_metrics(name))
        theirs = paper.table3_row(run.config, run.scale_label)
        q = ours["test_q"]
        rows.append(
            {
                "run": name,
                "config": run.config,
                "train S": run.scale_label,
                "test Q": str(int(q)) if q == int(q) else str(q),
                "top-1 err": ours["top1_err"],
                "top-5 err": ours["top5_err"],
                "paper top-1": theirs[1] if theirs else None,
                "paper top-5": theirs[2] if theirs else None,
                "init": run.init,
                "epochs": epochs_trained(name),
                "lr": f"{run.lr:g}",
            }
        )
    return pd.DataFrame(rows)


def _settings(params: Params) -> list[str]:
    """What differs from the paper's setting, one line each."""
    raw, runs = params.raw, params.runs
    data = raw["data"]
    if data["source"] == "embedded":
        emb = data.get("embedded", {})
        classes = emb.get("classes", 50)
        n_train, n_val = classes * emb.get("train_per_class", 200), classes * emb.get("val_per_class", 50)
        data_line = (
            f"embedded generated dataset, {classes} classes, {n_train:,} train / {n_val:,} val images "
            "(paper: ILSVRC-2012, 1000 classes, 1.3M train / 50k val)"
        )
        chance = 100.0 * (1 - 1 / classes), 100.0 * (1 - min(5, classes) / classes)
    else:
        data_line = "ILSVRC-2012 from " + data["root"]
        chance = None
    crop = params.crop
    scaled = ", ".join(f"{s} -> {params.pixels(s)}" for s in sorted({s for r in runs.values() for s in r.scale}))
    m, t = raw["model"], raw["train"]
    trained = {n: epochs_trained(n) for n in runs}
    seen = {n: trained[n] + sum(trained[c] for c in params.init_chain(n)) for n in runs}
    longest = max(seen, key=seen.get)
    aug = raw["augment"]
    transforms = ["random crop of the rescaled image"]
    transforms += ["random horizontal flip"] if aug["flip"] else []
    transforms += [f"AlexNet's PCA colour shift (std {aug['colour_shift']:g})"] if aug["colour_shift"] > 0 else []
    missing = [x for x, on in (("flip", aug["flip"]), ("colour shift", aug["colour_shift"] > 0)) if not on]
    computed = sorted({_read(paths.eval_metrics(n)).get("compute", "cpu, fp32") for n in runs})
    lines = [
        f"- Data: {data_line}.",
        f"- Geometry: crop {crop} px (paper: {PAPER_CROP}); every S and Q scaled by {crop}/{PAPER_CROP} ({scaled} px).",
        f"- Width: conv layers x{m['width']}, FC1/FC2 {m['head_width']} channels (paper: x1, 4096).",
        f"- Training: SGD, batch {t['batch_size']}, momentum {t.get('momentum', 0.9):g}, weight decay "
        f"{t.get('weight_decay', 5e-4):g}; each run's lr divided by {1 / t.get('lr_factor', 0.1):g} after "
        f"{t.get('lr_patience', 2)} epochs without a lower error on {t.get('holdout', 0.05):.0%} of each class held out "
        f"of the training split, at most {t.get('lr_decreases', 3)} times, then stop, or at "
        f"{t['max_epochs']} epochs (runs may set their own); the table gives the epochs each run trained "
        "(paper: batch 256, lr 1e-2, plateaus on its validation set, 3 decreases, 74 epochs). A run started "
        f"from another adds its epochs to that run's ({longest} has seen {seen[longest]} counting its chain), "
        "so rows differ in training length as well as in depth and scale.",
        f"- Compute: {'; '.join(computed)}"
        + (" (GPU kernels chosen for speed: not bitwise repeatable)" if any(c.startswith("cuda") for c in computed)
           and not t.get("deterministic", False) else "")
        + " (paper: fp32 on 4 NVIDIA Titan Black GPUs).",
        "- Preprocessing: " + (
            "mean RGB subtracted and divided by the per-channel std (paper: mean subtracted only)."
            if m.get("normalise", "mean") == "mean_std" else "mean RGB subtracted (as the paper)."
        ),
        "- Augmentation: " + ", ".join(transforms)
        + (f"; no {' or '.join(missing)} (paper: crop, flip and colour shift)." if missing else " (as the paper)."),
        "- Initialisation: " + "; ".join(f"{n} {r.init}" for n, r in runs.items() if r.init_run is None)
        + f" (paper: A from N(0, 1e-2 variance); normal here draws std {t.get('init_std', 0.01):g}); deeper nets copy "
        "A's first four conv and three FC layers (Sec. 3.1).",
        "- Test: dense evaluation of the whole image at Q, posteriors averaged with the flipped image (as the paper).",
    ]
    if chance:
        lines.append(f"- Chance level on this dataset: top-1 {chance[0]:.1f}%, top-5 {chance[1]:.1f}%.")
    return lines


def _markdown_table(df: pd.DataFrame) -> str:
    def cell(v) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return "-"
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---" for c in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.astype(object).itertuples(index=False)]
    return "\n".join([head, rule, *body])


def render(params: Params, t3: pd.DataFrame) -> str:
    return "\n".join(
        [
            "<!-- Generated by `vggrepro report` from params.yaml; do not edit: change params.yaml and rerun. -->",
            "# VGG reproduction: results",
            "",
            f"vggrepro {__version__}. Errors are percentages on the validation split; lower is better.",
            "",
            "## Table 3: single-scale evaluation",
            "",
            "Dense evaluation at one test scale Q (Q = S for a fixed S, Q = 0.5 (S_min + S_max) for "
            "a jittered S), our numbers beside the paper's (ILSVRC-2012 val). S and Q are in the paper's "
            "pixels; the runs use them scaled to this geometry (below).",
            "",
            _markdown_table(t3),
            "",
            "## How this run differs from the paper's setting",
            "",
            *_settings(params),
            "",
        ]
    )


def run(params: Params) -> dict:
    t3 = table3(params)
    io.write_text(paths.RESULTS_MD, render(params, t3))
    metrics = {r["run"]: {"top1_err": r["top-1 err"], "top5_err": r["top-5 err"]} for r in t3.to_dict("records")}
    io.write_json(paths.METRICS_JSON, {"table3": metrics})
    return {"runs": len(t3)}
