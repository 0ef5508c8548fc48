"""The report's figures (matplotlib, PNG): training curves per run, error against depth, error
against training scale, and the test protocols side by side.

The same data give the same bytes: the Agg backend, fixed size and dpi, matplotlib's own
fonts, and no "Software" stamp in the PNG.
"""

from __future__ import annotations

import io as _io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend)
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from vggrepro.report import paper  # noqa: E402

DPI = 100
STYLE = {"figure.figsize": (6.4, 4.0), "font.size": 9, "axes.grid": True, "grid.alpha": 0.3}


def _png(fig) -> bytes:
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def training_curves(run: str, log: list[dict]) -> bytes:
    """Loss, training and held-out top-1 error, and the learning rate, per epoch."""
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(8.0, 3.4))
        epochs = [e["epoch"] for e in log]
        left.plot(epochs, [e["loss"] for e in log], marker="o", label="training loss")
        if log and "holdout_loss" in log[0]:
            left.plot(epochs, [e["holdout_loss"] for e in log], marker="s", label="held-out loss")
        left.set_xlabel("epoch")
        left.set_ylabel("cross-entropy")
        lr = left.twinx()
        lr.step(epochs, [e["lr"] for e in log], where="post", color="grey", linestyle="--", label="learning rate")
        lr.set_yscale("log")
        lr.set_ylabel("learning rate")
        handles = [h for ax in (left, lr) for h in ax.get_legend_handles_labels()[0]]
        left.legend(handles, [h.get_label() for h in handles], fontsize=7)
        for ax in (left, right):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
        right.plot(epochs, [e["train_top1_err"] for e in log], marker="o", label="training")
        right.plot(epochs, [e["holdout_top1_err"] for e in log], marker="s", label="held out")
        right.set_xlabel("epoch")
        right.set_ylabel("top-1 error (%)")
        right.legend()
        fig.suptitle(f"{run}: training curves")
        fig.tight_layout()
        return _png(fig)


def training_curves_over_seeds(run: str, logs: dict[int, list[dict]]) -> bytes:
    """One run of a sweep, a colour a seed: training (solid) and held-out (dashed) cross-entropy
    with the learning rate (dotted, right axis), and training and held-out top-1 error."""
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(8.0, 3.4))
        lr = left.twinx()
        for k, (seed, log) in enumerate(logs.items()):
            colour = f"C{k}"
            epochs = [e["epoch"] for e in log]
            left.plot(epochs, [e["loss"] for e in log], color=colour, marker="o", markersize=3, label=f"seed {seed}: training")
            if log and "holdout_loss" in log[0]:
                left.plot(epochs, [e["holdout_loss"] for e in log], color=colour, linestyle="--", marker="s", markersize=3, label=f"seed {seed}: held out")
            lr.step(epochs, [e["lr"] for e in log], where="post", color=colour, linestyle=":", alpha=0.6,
                    label="learning rate" if k == 0 else None)
            right.plot(epochs, [e["train_top1_err"] for e in log], color=colour, marker="o", markersize=3, label=f"seed {seed}: training")
            right.plot(epochs, [e["holdout_top1_err"] for e in log], color=colour, linestyle="--", marker="s", markersize=3, label=f"seed {seed}: held out")
        left.set_xlabel("epoch")
        left.set_ylabel("cross-entropy")
        lr.set_yscale("log")
        lr.set_ylabel("learning rate (dotted)")
        handles = [h for ax in (left, lr) for h in ax.get_legend_handles_labels()[0]]
        left.legend(handles, [h.get_label() for h in handles], fontsize=6)
        for ax in (left, right):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
        right.set_xlabel("epoch")
        right.set_ylabel("top-1 error (%)")
        right.legend(fontsize=6)
        fig.suptitle(f"{run}: training curves, {len(logs)} seeds")
        fig.tight_layout()
        return _png(fig)


def _errorbar(ax, x, rows: pd.DataFrame, **style) -> None:
    """Top-1 error with its 95% interval where the frame has one."""
    y = rows["top-1 err"].to_numpy(dtype=float)
    if "top-1 low" in rows:
        yerr = [y - rows["top-1 low"].to_numpy(dtype=float), rows["top-1 high"].to_numpy(dtype=float) - y]
        ax.errorbar(x, y, yerr=yerr, capsize=3, **style)
    else:
        ax.plot(x, y, **style)


def _papers_axis(ax, points: list[tuple]):
    """The paper's top-1 errors on a second axis (ILSVRC-2012 errors sit elsewhere than ours),
    each series dotted in the colour of our series it stands beside; points are (x, errors,
    label, colour) or (x, errors, label, colour, marker), marker "x" unless named. The second
    axis spans as many points as ours does, so a slope looks as steep on either; it is centred on
    the paper's values, and widened only where they spread wider than ours."""
    drawn = [(*point, "x")[:5] for point in points if point[1].notna().any()]
    if not drawn:
        return None
    paper_ax = ax.twinx()
    values = []
    for x, p, label, colour, marker in drawn:
        keep = p.notna().to_numpy()
        values += [float(v) for v in p[keep]]
        paper_ax.plot([v for v, k in zip(x, keep) if k], p[keep], marker=marker, color=colour, linestyle=":",
                      alpha=0.8, label=label)
    low, high = ax.get_ylim()
    span = max(high - low, 1.2 * (max(values) - min(values)), 1.0)
    middle = (max(values) + min(values)) / 2
    paper_ax.set_ylim(middle - span / 2, middle + span / 2)
    paper_ax.set_ylabel("paper's top-1 error (%), ILSVRC-2012 val (dotted)")
    return paper_ax


def _legend(ax, other) -> None:
    handles = [h for a in (ax, other) if a is not None for h in a.get_legend_handles_labels()[0]]
    if handles:
        ax.legend(handles, [h.get_label() for h in handles], fontsize=7)


def error_vs_depth(t3: pd.DataFrame) -> bytes:
    """Table 3's top-1 error of each configuration, A to E, for each training S, with its 95%
    interval; the paper's top-1 on a second axis."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots()
        configs = [c for c in paper.facts()["table1_configs"] if c != "head"]  # A, A-LRN, B, C, D, E
        order = {c: i for i, c in enumerate(configs)}
        theirs = []
        for k, (s, rows) in enumerate(t3.groupby("train S", sort=False)):
            rows = rows.drop_duplicates("config").sort_values("config", key=lambda c: c.map(order))
            x = [order[c] for c in rows["config"]]
            _errorbar(ax, x, rows, marker="o", color=f"C{k}", label=f"ours, S={s}")
            theirs.append((x, rows["paper top-1"], f"paper, S={s}", f"C{k}"))
        other = _papers_axis(ax, theirs)
        ax.set_xticks(range(len(configs)), configs)
        ax.set_xlabel("configuration (Table 1; deeper to the right)")
        ax.set_ylabel("our top-1 error (%), single-scale dense")
        _legend(ax, other)
        fig.tight_layout()
        return _png(fig)


def error_vs_scale(t3: pd.DataFrame, t4: pd.DataFrame) -> bytes:
    """Top-1 error of each configuration against its training scale S, single- and multi-scale
    test, with 95% intervals; the paper's single- (x) and multi-scale (+) on a second axis."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots()
        scales = list(dict.fromkeys(t3["train S"]))
        theirs = []
        drawn = 0
        for config, rows in t3.groupby("config", sort=False):
            rows = rows.drop_duplicates("train S")  # one point a scale: the first run at it
            if len(rows) < 2:
                continue
            colour, drawn = f"C{drawn}", drawn + 1
            x = [scales.index(s) for s in rows["train S"]]
            _errorbar(ax, x, rows, marker="o", color=colour, label=f"{config}, single-scale")
            theirs.append((x, rows["paper top-1"], f"paper {config}, single-scale", colour))
            multi = t4[t4["config"] == config].drop_duplicates("train S")
            if len(multi):
                xm = [scales.index(s) for s in multi["train S"]]
                _errorbar(ax, xm, multi, marker="s", linestyle="--", color=colour, alpha=0.7,
                          label=f"{config}, multi-scale")
                theirs.append((xm, multi["paper top-1"], f"paper {config}, multi-scale", colour, "+"))
        other = _papers_axis(ax, theirs)
        ax.set_xticks(range(len(scales)), scales)
        ax.set_xlabel("training scale S")
        ax.set_ylabel("our top-1 error (%), dense")
        _legend(ax, other)
        fig.tight_layout()
        return _png(fig)


def protocols_side_by_side(t5: pd.DataFrame) -> bytes:
    """Table 5: dense, multi-crop and both, top-1 and top-5, for each run evaluated all three ways."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots()
        runs = list(dict.fromkeys(t5["run"]))
        methods = list(dict.fromkeys(t5["method"]))
        width = 0.8 / max(len(methods), 1)
        for k, method in enumerate(methods):
            rows = t5[t5["method"] == method]
            x = [runs.index(r) + (k - (len(methods) - 1) / 2) * width for r in rows["run"]]
            ax.bar(x, rows["top-1 err"], width, label=f"{method}, top-1")
            ax.bar(x, rows["top-5 err"], width, fill=False, hatch="//", label="top-5 (hatched)" if k == 0 else None)
        ax.set_xticks(range(len(runs)), runs)
        ax.set_ylabel("error (%), multi-scale")
        if runs:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no run in evaluate.multi_crop", ha="center", transform=ax.transAxes)
        fig.tight_layout()
        return _png(fig)
