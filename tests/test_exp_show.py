"""`dvc exp show --only-changed` on the default grid fits in 160 columns and shows a changed
param beside the eight headline columns (the runs' progress columns, vggrepro.runtime.live, read 100 in
every finished experiment and drop out)."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from conftest import ROOT, tool
from vggrepro import paths
from vggrepro.params import parse_params

HEADLINE = [f"t{t}_{k}" for t in (3, 4, 5, 6) for k in ("top1", "top5")]


def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def _outputs(ws: Path, params, shift: float) -> None:
    """The metric files a finished default grid holds; `shift` moves every value."""
    for run in params.runs:
        if not params.runs[run].imported:
            summary = ws / paths.live_summary(run)
            summary.parent.mkdir(parents=True, exist_ok=True)
            summary.write_text(json.dumps({"progress": 100.0}))  # finished, however many epochs it took
    metrics = ws / paths.report_files(False).metrics
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps({k: 30.0 + i + shift for i, k in enumerate(HEADLINE)}))


def test_only_changed_fits_160_columns_with_the_param_beside_every_headline(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    for f in ("params.yaml", "dvc.yaml"):
        shutil.copy(ROOT / f, ws / f)
    params = parse_params(yaml.safe_load((ws / "params.yaml").read_text()))
    _outputs(ws, params, 0)
    env = {**os.environ, "COLUMNS": "160", "DVC_NO_ANALYTICS": "1"}
    _git("init", "-q", cwd=ws)
    subprocess.run([tool("dvc"), "init", "-q"], cwd=ws, check=True, env=env)
    _git("add", "-A", cwd=ws)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline", cwd=ws)
    # the experiment: another lr, other errors
    text = (ws / "params.yaml").read_text()
    (ws / "params.yaml").write_text(re.sub(r"(?m)^(  lr: )0\.01\b", r"\g<1>0.02", text, count=1))
    _outputs(ws, params, 2)
    shown = subprocess.run([tool("dvc"), "exp", "show", "--only-changed", "--no-pager"], cwd=ws, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= 160, shown.stdout
    header = next(line for line in lines if "Experiment" in line).split()
    assert [c for c in header if c in HEADLINE] == HEADLINE and "train.lr" in header, shown.stdout
    row = next(line for line in lines if line.strip().startswith("workspace")).split()
    assert "0.02" in row, shown.stdout
