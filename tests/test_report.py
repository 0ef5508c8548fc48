"""The report's words beside the paper's numbers: no paper numbers beside a checkpoint trained
elsewhere, settings lines that describe only what ran, a differences line that lists only
what differs, and the note the paper's 7-net ensemble needs."""

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from conftest import tiny_params
from test_fuse import evals_for
from vggrepro import paths
from vggrepro.params import parse_params
from vggrepro.report import tables
from vggrepro.stages import report

ROOT = Path(__file__).resolve().parents[1]


def with_runs(runs: dict, **changes) -> dict:
    raw = copy.deepcopy(tiny_params())
    raw["runs"] = runs
    raw["evaluate"]["multi_crop"] = [n for n in runs if n.endswith("jit")]
    raw["fuse"] = {}
    for key, value in changes.items():
        section, name = key.split("__")
        raw[section][name] = value
    return raw


def test_an_imported_checkpoint_gets_no_paper_numbers_and_no_training_scale():
    raw = with_runs({
        "E_jit": {"config": "E", "scale": [256, 512], "init": "E_384"},
        "A_256": {"config": "A", "scale": 256, "init": "kaiming"},
        "E_256": {"config": "E", "scale": 256, "init": "A_256"},
        "E_384": {"config": "E", "scale": 384, "init": "E_256"},
        "tv_jit": {"config": "E", "scale": [256, 512], "init": "import", "weights": "vgg19.pt"},
    })
    raw["evaluate"]["multi_crop"] = ["E_jit", "tv_jit"]
    raw["fuse"] = {"D & E, [256;512]/{256,384,512}, dense": ["tv_jit/dense", "E_jit/dense"]}
    params = parse_params(raw, files=False)  # the tables only: no vgg19.pt needed
    evals = evals_for(params)
    for frame in (tables.table3(params, evals, {"E_jit": 1, "A_256": 1, "E_256": 1, "E_384": 1, "tv_jit": 0}), tables.table4(params, evals),
                  tables.table5(params, evals)):
        ours = frame[frame["run"] == "E_jit"]
        theirs = frame[frame["run"] == "tv_jit"]
        assert ours["paper top-1"].notna().all() and ours["train S"].eq("[256;512]").all()
        assert theirs["paper top-1"].isna().all() and theirs["paper top-5"].isna().all()
        assert theirs["train S"].eq(tables.IMPORTED_S).all()
    fused = {"members": ["tv_jit/dense", "E_jit/dense"], "left_out": [], "top1_err": 1.0, "top5_err": 0.5}
    t6 = tables.table6(params, {"D & E, [256;512]/{256,384,512}, dense": fused})
    assert t6[["paper top-1", "paper top-5"]].isna().all(axis=None)


def test_the_initialisation_line_says_only_what_ran():
    vgg19 = yaml.safe_load((ROOT / "params/imagenet-vgg19.yaml").read_text())
    glorot_only = {n: r for n, r in vgg19["runs"].items() if "glorot" in n}
    line = report._init_line(parse_params(with_runs(glorot_only)))
    assert line.startswith("E_glorot_256 from random weights, Glorot & Bengio's uniform;"), line
    assert "first four" not in line and "E_glorot_384 from E_glorot_256, E_glorot_jit from E_glorot_384: every layer" in line
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    line = report._init_line(parse_params(default))
    control = {**default["runs"], "E_384_more": {"config": "E", "scale": 384, "init": "E_384", "lr": 0.001}}
    assert "E_384_more from E_384: every layer its configuration shares (not a chain of the paper's" in (
        report._init_line(parse_params({**default, "runs": control})))
    assert "E_256 from A_256: its first four conv and three FC layers (Sec. 3.1), the rest random, He et al.'s normal" in line
    assert "E_384 from E_256, E_jit from E_384: every layer (Sec. 3.1)" in line
    assert "He et al.'s normal" in line and "Glorot" not in line and "N(0" in line.split("(paper:")[1]


def test_the_differences_line_lists_only_what_differs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = {"A_256": {"config": "A", "scale": 256, "init": "normal", "max_epochs": 74}}

    def logged(epochs: int) -> None:
        Path(paths.train_log("A_256")).parent.mkdir(parents=True, exist_ok=True)
        Path(paths.train_log("A_256")).write_text(json.dumps([{"epoch": e + 1} for e in range(epochs)]))

    logged(74)
    paper = parse_params(with_runs(runs, model__width=1.0, model__head_width=4096, geometry__crop=224, train__batch_size=256,
                                   data__embedded={"classes": 6, "train_per_class": 50, "val_per_class": 5}))
    line = report._short_difference(paper)
    assert line == ("the embedded generated dataset, 6 classes (chance: top-1 83%, top-5 17%); one seed (0): the "
                    "intervals are over images, not over training runs"), line
    logged(3)
    narrow = parse_params(with_runs(runs))
    line = report._short_difference(narrow)
    assert "crop 32 px (paper 224)" in line and "conv width x0.0625 (paper x1)" in line and "FC 16 (paper 4096)" in line
    assert "the epochs in Table 3 (paper: 74)" in line
    assert "dropout" not in line and "fixed epochs" not in line
    assert "batch 16 (paper 256)" in line and "per-channel std" not in line and "initialisation" not in line
    ours = parse_params(with_runs({"A_256": {**runs["A_256"], "init": "kaiming"}}, model__normalise="mean_std",
                                  train__plateau_on="loss"))
    line = report._short_difference(ours)
    assert ("inputs divided by the per-channel std (paper: mean subtracted only)" in line
            and "He et al.'s normal initialisation (paper: N(0, 1e-2))" in line
            and "the plateau rule on the held-out loss (paper: validation accuracy)" in line), line
    stepped = parse_params(with_runs({"A_256": {**runs["A_256"], "lr_steps": [2]}}, model__dropout=0.2))
    line = report._short_difference(stepped)
    assert "dropout 0.2 (paper 0.5)" in line and "; lr divided at fixed epochs (paper: at plateaus)" in line
    monkeypatch.setattr(report, "epochs_trained", lambda run: 1)
    some = parse_params(with_runs({"A_256": {**runs["A_256"], "lr_steps": [2]},
                                   "A_384": {"config": "A", "scale": 384, "init": "A_256", "lr": 0.001}}))
    assert "some runs' lr divided at fixed epochs (paper: at plateaus)" in report._short_difference(some)


def test_the_training_line_says_which_runs_stepped_their_rate_and_which_kept_the_plateau_rule(monkeypatch):
    runs = {"A_256": {"config": "A", "scale": 256, "init": "normal", "max_epochs": 6, "lr_steps": [3, 5]},
            "B_256": {"config": "B", "scale": 256, "init": "A_256"}}
    rule = report._lr_rule(parse_params(with_runs(runs, train__max_epochs=4)))
    assert rule.startswith("the lr of A_256 divided by 10 after fixed epochs, each run then trained to its epoch limit (A_256 after "
                           "epochs 3 and 5 of 6), not when its held-out error stops falling"), rule
    assert "5% of each class is held out of the training split all the same and, for these runs, its error only logged" in rule
    assert rule.endswith("; B_256: lr divided by 10 when 3 epochs in a row bring no lower top-1 error on 5% of each "
                         "class held out of the training split, at most 3 times, then stop, or at 4 epochs"), rule
    every = {n: {**r, "lr_steps": [2]} for n, r in runs.items()}
    assert report._lr_rule(parse_params(with_runs(every, train__max_epochs=4))).startswith(
        "every run's lr divided by 10 after fixed epochs, each run then trained to its epoch limit (A_256 after epochs 2 "
        "of 6; B_256 after epochs 2 of 4)")
    assert report._fine_tune_lr(parse_params(with_runs(runs))) == ""  # B from A: not a fine-tune of its own kind
    tuned = {**runs, "B_384": {"config": "B", "scale": 384, "init": "B_256", "lr": 0.01},
             "B_jit": {"config": "B", "scale": [256, 512], "init": "B_384", "lr": 0.01}}  # the paper gives no rate
    assert report._fine_tune_lr(parse_params(with_runs(tuned))) == (
        "; B_384 fine-tuned from a run of its configuration at lr 0.01 (paper: 0.001 for S = 384 from S = 256, Sec. 3.1)")
    monkeypatch.setattr(report, "epochs_trained", lambda run: 1)  # no training logs here
    assert "a fine-tuning lr other than the paper's 0.001" in report._short_difference(parse_params(with_runs(tuned)))
    del runs["A_256"]["lr_steps"]
    assert report._lr_rule(parse_params(with_runs(runs, train__max_epochs=4))).startswith("each run's lr divided by 10 when 3 epochs")
    # the paper's rule cannot cut a rate in lr_patience + 1 epochs: the line says the rate stayed
    short = {**runs, "B_384": {"config": "B", "scale": 384, "init": "B_256", "lr": 0.001, "max_epochs": 3}}
    rule = report._lr_rule(parse_params(with_runs(short, train__max_epochs=4)))
    assert rule.endswith("(B_384: 3 epochs, too few for the rule to fire, so a constant rate)"), rule
    assert rule.startswith("each run's lr divided") and rule.count("too few") == 1
    stepped_rest = {**short, "A_256": {**short["A_256"], "lr_steps": [3]}, "B_256": {**short["B_256"], "lr_steps": [2]}}
    rule = report._lr_rule(parse_params(with_runs(stepped_rest, train__max_epochs=4)))
    assert rule.endswith("; B_384: the plateau rule (lr divided by 10 when 3 epochs in a row bring no lower top-1 error on 5% "
                         "of each class held out of the training split), which 3 epochs are too few to fire: a constant rate"), rule
    short["B_384"]["max_epochs"] = 4
    assert "too few" not in report._lr_rule(parse_params(with_runs(short, train__max_epochs=4)))
    # a sweep names each run once, as params.yaml does, not once per seed
    swept = {**with_runs({**tuned, "A_256": {**tuned["A_256"], "lr_steps": [3, 5]}}, train__max_epochs=4), "seeds": [0, 1]}
    rule = report._lr_rule(parse_params(swept))
    assert "(A_256 after epochs 3 and 5 of 6)" in rule and "; B_256, B_384, B_jit: lr divided" in rule, rule
    assert "_seed" not in rule + report._fine_tune_lr(parse_params(swept))
    assert report._fine_tune_lr(parse_params(swept)).startswith("; B_384 fine-tuned from a run of its configuration at lr 0.01")


def test_the_papers_7_net_ensemble_notes_its_fc_only_fine_tuned_d():
    row = {"ensemble": report.SUBMISSION, "paper top-1": 24.7}
    params = parse_params(tiny_params())
    assert "only its fully-connected layers" in " ".join(report._notes(params, 6, pd.DataFrame([row])))
    assert report._notes(params, 6, pd.DataFrame([{**row, "paper top-1": None}])) == []
    assert report._notes(params, 3, pd.DataFrame([row])) == []
    swept = parse_params({**tiny_params(), "seeds": [0, 1], "fuse": {report.SUBMISSION: ["B_256/dense"]}})
    seed_1 = {**row, "ensemble": f"{report.SUBMISSION} (seed 1)"}  # a sweep's entry: of one seed
    assert "only its fully-connected layers" in " ".join(report._notes(swept, 6, pd.DataFrame([seed_1])))


def test_paper_numbers_stand_only_beside_runs_made_as_the_papers_were():
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    control = {**default["runs"], "E_384_more": {"config": "E", "scale": 384, "init": "E_384", "lr": 0.001}}
    params = parse_params({**default, "runs": control})
    made = {n: tables.papers_chain(params, n) for n in params.runs}
    # E_384_more continues E_384 at its S: a control the paper does not have.
    assert made == {"A_256": True, "E_256": True, "E_384": True, "E_jit": True, "E_384_more": False}
    raw = with_runs({"A_256": {"config": "A", "scale": 256, "init": "kaiming"},
                     "E_jit": {"config": "E", "scale": [256, 512], "init": "A_256"}})  # jittered straight from A
    assert not tables.papers_chain(parse_params(raw), "E_jit")


def test_the_headline_is_a_tables_best_row_and_in_a_sweep_the_best_mean_over_seeds():
    """The least of several noisy seeds would fall with every seed added: a sweep's headline
    averages each run over its seeds first."""
    import copy

    import pandas as pd

    from conftest import tiny_params
    from vggrepro.params import parse_params
    from vggrepro.report import tables

    raw = copy.deepcopy(tiny_params())
    raw["seeds"] = [0, 1]
    params = parse_params(raw)
    t3 = pd.DataFrame({"run": ["A_256_seed0", "A_256_seed1", "B_256_seed0", "B_256_seed1"],
                       "top-1 err": [30.0, 10.0, 18.0, 19.0], "top-5 err": [5.0, 1.0, 3.0, 4.0]})
    empty = pd.DataFrame(columns=["run", "method", "top-1 err", "top-5 err"])
    t6 = pd.DataFrame(columns=["ensemble", "nets", "top-1 err", "top-5 err"])
    frames = {3: t3, 4: empty, 5: empty, 6: t6}
    assert tables.headline(params, frames) == {"t3_1": 18.5, "t3_5": 3.5}  # B_256's mean, not A_256_seed1
    one = parse_params(copy.deepcopy(tiny_params()))
    t3_one = pd.DataFrame({"run": ["A_256", "B_256"], "top-1 err": [12.0, 12.0], "top-5 err": [2.0, 1.0]})
    assert tables.headline(one, {3: t3_one, 4: empty, 5: empty, 6: t6}) == {"t3_1": 12.0, "t3_5": 2.0}  # a tie: the first


def test_a_tables_html_page_holds_its_rows_as_results_md_prints_them():
    """reports/tables/table<N>.html (what `snakemake --report` shows): the markdown's cells,
    escaped, numbers flush right, and the notes under the table."""
    from vggrepro.report import htmltable

    df = pd.DataFrame({"run": ["A_256", "B<jit>"], "top-1 err": [11.0, 31.284], "paper top-1": [29.6, None]})
    page = htmltable.page("Table 3: single-scale evaluation", "Q = S.", df, ["Differs from the paper: crop & width."])
    flat = "".join(line.strip() for line in page.splitlines())
    assert "<thead><tr style=\"text-align: left;\"><th>run</th><th>top-1 err</th><th>paper top-1</th></tr></thead>" in flat
    assert "<tr><td>A_256</td><td>11.00</td><td>29.60</td></tr>" in flat
    assert "<tr><td>B&lt;jit&gt;</td><td>31.28</td><td>-</td></tr>" in flat
    assert "td:nth-child(2){text-align:right}td:nth-child(3){text-align:right}" in flat
    assert "td:nth-child(1){" not in flat
    assert "<p><em>Differs from the paper: crop &amp; width.</em></p>" in flat
    empty = htmltable.page("Table 6: fusion of nets", "", df.iloc[:0], [])
    assert "<table" not in empty and "(no row in this grid)" in empty


def test_the_training_line_names_only_the_epoch_limits_the_runs_had():
    own = {"A_256": {"config": "A", "scale": 256, "init": "kaiming", "max_epochs": 5},
           "B_256": {"config": "B", "scale": 256, "init": "A_256", "max_epochs": 3}}
    assert report._epoch_limits(parse_params(with_runs(own))) == "each run's own epoch limit (3, 5)"
    some = {**own, "B_256": {"config": "B", "scale": 256, "init": "A_256"}}
    params = parse_params(with_runs(some))
    default = params.raw["train"]["max_epochs"]
    assert report._epoch_limits(params) == f"{default} epochs (some runs set their own: 5)"
    none = {n: {k: v for k, v in r.items() if k != "max_epochs"} for n, r in own.items()}
    assert report._epoch_limits(parse_params(with_runs(none))) == f"{default} epochs"


def test_table4_carries_a_and_a_lrn_without_paper_numbers():
    """The findings' claim 4 quotes A's and A-LRN's multi-scale errors: each stands in Table 4,
    with no paper number beside it, as the paper's Table 4 has no A row."""
    raw = with_runs({
        "A_256": {"config": "A", "scale": 256, "init": "kaiming"},
        "A_LRN_256": {"config": "A-LRN", "scale": 256, "init": "kaiming"},
        "B_256": {"config": "B", "scale": 256, "init": "A_256"},
    })
    params = parse_params(raw, files=False)
    t4 = tables.table4(params, evals_for(params)).set_index("run")
    assert list(t4.index) == ["A_256", "A_LRN_256", "B_256"]
    assert t4.loc[["A_256", "A_LRN_256"], ["paper top-1", "paper top-5"]].isna().all(axis=None)
    assert t4.loc["B_256", "paper top-1"] == 28.2  # Table 4: B, S = 256, Q {224, 256, 288}


def test_the_findings_profile_a_sweep_report_names_is_a_sweep_over_three_seeds():
    profile = yaml.safe_load((ROOT / report.FINDINGS).read_text())
    assert len(profile["seeds"]) >= 3 and len(parse_params(profile, files=False).runs) >= 12 * 3


H100 = "cuda:0 (NVIDIA H100), bf16, channels_last, fastest kernels (cudnn.benchmark)"
EPYC = "cpu (AMD EPYC AVX2), fp32, channels_last"


def _evaluated(run: str, record: dict) -> None:
    Path(paths.eval_metrics(run)).parent.mkdir(parents=True, exist_ok=True)
    Path(paths.eval_metrics(run)).write_text(json.dumps(record))


def test_an_evaluation_without_its_compute_is_refused_not_read_as_cpu_fp32(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _evaluated("A_256", {"compute": H100, "trained_on": H100})
    assert report._computed_on("A_256") == (H100, H100)
    _evaluated("A_256", {"images": 10, "trained_on": H100})
    with pytest.raises(report.ReportError, match=r'^runs/A_256/eval.json: no "compute" entry; rerun evaluate_A_256$'):
        report._computed_on("A_256")
    _evaluated("A_256", {"compute": H100})  # an eval.json from before training's compute was recorded
    with pytest.raises(report.ReportError, match=r'^runs/A_256/eval.json: no "trained_on" entry; rerun evaluate_A_256$'):
        report._computed_on("A_256")


def test_the_compute_line_says_where_each_part_ran_not_the_auto_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = SimpleNamespace(runs={"A_256": None, "E_256": None})
    for run in params.runs:
        _evaluated(run, {"compute": EPYC, "trained_on": EPYC})
    paper = " (paper: fp32 on 4 NVIDIA Titan Black GPUs)."
    assert report._compute_line(params) == f"- Compute: trained and evaluated on {EPYC}" + paper
    _evaluated("E_256", {"compute": EPYC, "trained_on": H100})  # trained on a GPU, scored on a CPU
    gpu = "; the GPU's kernels chosen for speed: not bitwise repeatable"
    assert report._compute_line(params) == f"- Compute: trained on {EPYC} and {H100}; evaluated on {EPYC}" + gpu + paper
    _evaluated("A_256", {"compute": EPYC, "trained_on": None})  # imported weights
    assert report._compute_line(params) == (f"- Compute: trained on {H100}; evaluated on {EPYC}; A_256 imported, "
                                            "not trained here" + gpu + paper)


def test_the_test_line_names_multi_crop_only_where_a_run_was_evaluated_so():
    settings = {"flip": True, "pool": "scores"}
    assert "multi-crop: a 5 x 5 grid of crops and their flips" in report._test_line(settings, [73], True)
    line = report._test_line(settings, [73], False)
    assert "grid of crops" not in line and line.endswith("; no run evaluated by multi-crop.")


def test_the_error_vs_scale_figure_sets_the_papers_multi_scale_beside_ours(monkeypatch):
    from vggrepro.report import figures

    drawn = []
    monkeypatch.setattr(figures, "_png", lambda fig: drawn.append(fig) or b"")
    t3 = pd.DataFrame({"config": ["E", "E"], "train S": ["256", "384"], "top-1 err": [30.0, 28.0],
                       "top-1 low": [28.0, 26.0], "top-1 high": [32.0, 30.0], "paper top-1": [27.3, 26.9]})
    t4 = pd.DataFrame({"config": ["E", "E"], "train S": ["256", "384"], "top-1 err": [27.0, 25.0],
                       "top-1 low": [25.0, 23.0], "top-1 high": [29.0, 27.0], "paper top-1": [26.9, 26.7]})
    figures.error_vs_scale(t3, t4)
    paper_ax = drawn[0].axes[1]
    lines = {line.get_label(): list(line.get_ydata()) for line in paper_ax.get_lines()}
    assert lines == {"paper E, single-scale": [27.3, 26.9], "paper E, multi-scale": [26.9, 26.7]}
