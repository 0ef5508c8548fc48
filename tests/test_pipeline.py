"""The whole pipeline on a tiny grid, through both engines: identical reports, no-op reruns."""

import json
import re
import subprocess
import sys

import pandas as pd

from conftest import tiny_params, tool

REPORTS = (
    "reports/results.md", "reports/metrics.json", *(f"reports/tables/table{n}.{ext}" for n in (3, 4, 5, 6) for ext in ("csv", "html")),
    "reports/figures/error-vs-depth.png", "reports/figures/error-vs-scale.png", "reports/figures/protocols.png",
    "reports/figures/training-B_jit.png", "fusion/metrics.json", "fusion/b-b-jittered-dense.pt",
)
OUTPUTS = (
    "runs/{run}/model.pt", "runs/{run}/train_log.json", "runs/{run}/eval.json",
    "runs/{run}/eval/dense-single.pt", "runs/{run}/eval/dense.pt", "runs/{run}/live/metrics.json",
    *(f"runs/{{run}}/live/plots/metrics/{m}.tsv" for m in ("train/loss", "train/top1_err")),
)


def run(cmd, cwd) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def test_dvc_and_snakemake_build_identical_reports(tiny_runs):
    params = tiny_params()
    with_dvc, with_snakemake = tiny_runs["dvc"][0], tiny_runs["snakemake"][0]

    for report in REPORTS:
        a, b = (with_dvc / report).read_bytes(), (with_snakemake / report).read_bytes()
        assert a == b, f"{report} differs between engines:\n{a.decode()}\n---\n{b.decode()}"
    # Every output, weights included, is a pure function of the inputs: the same bytes.
    for output in OUTPUTS:
        for run_name in params["runs"]:
            path = output.format(run=run_name)
            assert (with_dvc / path).read_bytes() == (with_snakemake / path).read_bytes(), path

    for protocol in ("multi-crop", "multi-crop+dense"):  # B_jit alone is in evaluate.multi_crop
        path = f"runs/B_jit/eval/{protocol}.pt"
        assert (with_dvc / path).read_bytes() == (with_snakemake / path).read_bytes(), path
        assert not (with_dvc / f"runs/B_256/eval/{protocol}.pt").exists()

    t = {n: pd.read_csv(with_dvc / f"reports/tables/table{n}.csv") for n in (3, 4, 5, 6)}
    assert sorted(t[3]["run"]) == sorted(params["runs"])
    assert ((0 <= t[3]["top-5 err"]) & (t[3]["top-5 err"] <= t[3]["top-1 err"]) & (t[3]["top-1 err"] <= 100)).all()
    assert sorted(t[4]["run"]) == sorted(params["runs"])  # A too, though the paper's Table 4 has no A row
    assert list(t[5]["method"]) == ["dense", "multi-crop", "multi-crop & dense"] and set(t[5]["run"]) == {"B_jit"}
    assert list(t[6]["ensemble"]) == ["B & B jittered, dense"]
    dense = t[5].set_index("method").loc["dense"]
    b_jit = t[4].set_index("run").loc["B_jit"]
    assert (dense["top-1 err"], dense["top-5 err"]) == (b_jit["top-1 err"], b_jit["top-5 err"])  # one set of posteriors
    # metrics.json: each table's best row, under plain names (dvc exp show's columns)
    headline = json.loads((with_dvc / "reports/metrics.json").read_text())
    assert list(headline) == [f"t{n}_{k}" for n in (3, 4, 5, 6) for k in (1, 5)]
    for n, df in t.items():
        best = df.loc[df["top-1 err"].idxmin()]
        assert (headline[f"t{n}_1"], headline[f"t{n}_5"]) == (round(best["top-1 err"], 2), round(best["top-5 err"], 2)), n
    # The training curves: every declared plot draws every run's log.
    plots = json.loads(run([tool("dvc"), "plots", "show", "--json"], with_dvc))["data"]
    for title in ("training loss", "training top-1 error (%)", "held-out top-1 error (%)", "learning rate"):
        points = plots[title][0]["content"]["data"]["values"]
        drawn = {p["filename"].split("/")[-2] for p in points}  # DVC drops the common "runs/"
        assert drawn == set(params["runs"]) and all("epoch" in p for p in points), (title, points[:3])
    results = (with_dvc / "reports/results.md").read_text()
    assert "| B_jit | B | [256;512] | 384 |" in results, results
    assert "| A_256 | A | 256 | 256 |" in results and "29.60 | 10.40 |" in results, results
    assert "| B_256 | B | 256 | 224,256,288 |" in results and "28.20 | 9.60 |" in results, results  # Table 4
    for figure in ("error-vs-depth", "error-vs-scale", "protocols", "training-A_256"):
        assert f"](figures/{figure}.png)" in results, figure

    # A second call of either engine does nothing (DVC's validate runs on every call: it
    # refreshes the dataset stamp, and leaves every stage's inputs as they were).
    again = run([tool("dvc"), "repro"], with_dvc)
    assert re.findall(r"Running stage '(\w+)'", again) == ["validate"], again
    assert "didn't change, skipping" in again
    status = run([tool("dvc"), "status", "--json"], with_dvc)
    assert json.loads(status) == {"validate": ["always changed"]}, status
    plan = run([tool("snakemake"), "-n", "--cores", "2"], with_snakemake)
    assert "Nothing to be done" in plan, plan

    # Changing one run's knob reruns that run and what follows it, in both engines (then put
    # back: other tests read the finished workspaces; a copy would have a new dataset stamp).
    try:
        _knob_changed(params, with_dvc, with_snakemake)
    finally:
        for project in (with_dvc, with_snakemake):
            (project / "params.yaml").write_text(__import__("yaml").safe_dump(tiny_params(), sort_keys=False))
            run([sys.executable, "-m", "vggrepro", "validate", "--write-knobs"], project)


def _knob_changed(params, with_dvc, with_snakemake) -> None:
    params["runs"]["B_jit"]["lr"] = 0.002
    for project in (with_dvc, with_snakemake):
        (project / "params.yaml").write_text(__import__("yaml").safe_dump(params, sort_keys=False))
    run([sys.executable, "-m", "vggrepro", "validate", "--write-knobs"], with_dvc)  # dvc repro's first stage
    dvc_status = run([tool("dvc"), "status"], with_dvc)
    assert "train_B_jit" in dvc_status and "train_B_256" not in dvc_status, dvc_status
    plan = run([tool("snakemake"), "-n", "--cores", "2"], with_snakemake)
    assert "train_B_jit" in plan and "rule train_B_256:" not in plan, plan
