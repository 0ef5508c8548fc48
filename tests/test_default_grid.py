"""The default params end to end (about 15 minutes on 2 cores without bf16; twice that on a CPU model
other than the one that made the committed reports): `pytest -m slow`."""

import json
import subprocess

import pandas as pd
import pytest
import torch
import yaml

import faults
from conftest import ROOT, make_project, tool
from vggrepro.params import load_params
from vggrepro.runtime import device


@pytest.mark.slow
def test_default_grid_runs_end_to_end_under_snakemake(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    project = make_project(tmp_path / "default", params)
    done = subprocess.run(
        [tool("snakemake"), "--profile", "workflow/profiles/local"], cwd=project, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table3 = pd.read_csv(project / "reports/tables/table3.csv")
    assert sorted(table3["run"]) == sorted(params["runs"])
    # The default is a grid a reader can learn from: at least 50 validation images a class, the
    # best single net at or below 25% top-1 error, every run at or below 50% (chance: 96% on 25 classes).
    assert params["data"]["embedded"]["val_per_class"] >= 50
    assert table3["top-1 err"].min() <= 25.0 and table3["top-1 err"].max() <= 50.0, table3
    headline = json.loads((project / "reports/metrics.json").read_text())
    best = table3.loc[table3["top-1 err"].idxmin()]
    assert (headline["t3_1"], headline["t3_5"]) == (round(best["top-1 err"], 2), round(best["top-5 err"], 2))
    # The committed reports came from `dvc repro` on the CPU their Compute line names, with the
    # torch pyproject.toml was tested with; there Snakemake gives the same bytes (same params,
    # same thread count). Another CPU model's kernels, another torch, or another precision (auto
    # is bf16 only on a CPU with bf16 arithmetic) differ in the last bits, and training carries
    # them on: there DVC runs the grid here too, and the two engines must give the same bytes.
    here = device.compute(load_params(ROOT / "params.yaml").raw["train"]).describe()
    committed = f"- Compute: trained and evaluated on {here} (" in (ROOT / "reports/results.md").read_text()
    if committed and torch.__version__.split("+")[0] == _tested_torch():
        reference = ROOT
    else:
        reference = faults.setup(tmp_path / "dvc", "dvc", params)
        faults.run_to_end(reference, "dvc", timeout=3600)
    for report in ("reports/metrics.json", "reports/results.md"):
        assert (project / report).read_text() == (reference / report).read_text(), (report, reference)


def _tested_torch() -> str:
    """The torch release the committed reports were made with: pyproject.toml's upper bound."""
    import re

    import tomllib

    for dep in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        if m := re.fullmatch(r"torch>=[\d.]+,<=([\d.]+)", dep.replace(" ", "")):
            return m[1]
    raise AssertionError("pyproject.toml pins no torch range")
