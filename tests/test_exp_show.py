"""`dvc exp show --only-changed` on the default grid fits in 160 columns and shows a changed
param beside the eight headline columns. DVC gives its table the terminal's width less about a
character per column it has before folding any, dependencies included, so the test holds the
real dvc.yaml and dvc.lock and changes what `dvc exp run -S train.lr=0.02` changes: the lr, the
headline, and the hashes of the run outputs, the reports and the train and report knobs. The
runs' progress (vggrepro.runtime.live) reads 100 in every finished experiment and drops out."""

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

HEADLINE = [f"t{t}_{k}" for t in (3, 4, 5, 6) for k in (1, 5)]
# what an lr change changes: every run's outputs and what reads them, and the knob files of the
# stages that read train.lr (the evaluate stages read only train's compute keys)
CHANGED = re.compile(r"^(runs|fusion|reports)/|^params\.yaml$|^\.vggrepro/knobs/(train_|report)")


def _git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True)


def _outputs(ws: Path, params, values: list[float]) -> None:
    """The metric files a finished default grid holds."""
    for run in params.runs:
        if not params.runs[run].imported:
            summary = ws / paths.live_summary(run)
            summary.parent.mkdir(parents=True, exist_ok=True)
            summary.write_text(json.dumps({"progress": 100.0}))  # finished, however many epochs it took
    metrics = ws / paths.report_files(False).metrics
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps(dict(zip(HEADLINE, values))))


def _change_hashes(lock: dict) -> int:
    """Reverses the md5 of every dependency and output CHANGED names; how many."""
    count = 0
    for stage in lock["stages"].values():
        for entry in [*stage.get("deps", []), *stage.get("outs", [])]:
            if CHANGED.search(entry["path"]) and "md5" in entry:
                entry["md5"] = entry["md5"][::-1]
                count += 1
    return count


def test_only_changed_fits_160_columns_with_the_param_beside_every_headline(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    for f in ("params.yaml", "dvc.yaml", "dvc.lock"):
        shutil.copy(ROOT / f, ws / f)
    params = parse_params(yaml.safe_load((ws / "params.yaml").read_text()))
    _outputs(ws, params, [11.0, 1.16, 25.4, 0.4, 19.6, 0.76, 34.88, 1.52])
    env = {**os.environ, "COLUMNS": "160", "DVC_NO_ANALYTICS": "1"}
    _git("init", "-q", cwd=ws)
    subprocess.run([tool("dvc"), "init", "-q"], cwd=ws, check=True, env=env)
    _git("add", "-A", cwd=ws)
    _git("commit", "-qm", "baseline", cwd=ws)
    # the experiment on a branch whose name is as wide as DVC's widest experiment label
    # ("└── 85b0e77 [strip-dunk]" is 24 characters): another lr, other errors, other hashes
    _git("checkout", "-q", "-b", "an-experiment-label-30-wide-xx", cwd=ws)
    text = (ws / "params.yaml").read_text()
    (ws / "params.yaml").write_text(re.sub(r"(?m)^(  lr: )0\.01\b", r"\g<1>0.02", text, count=1))
    _outputs(ws, params, [41.96, 5.72, 100.0, 99.96, 98.04, 90.0, 98.0, 90.0])
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    assert _change_hashes(lock) > 30  # about 37 dependency columns change, as in a real experiment
    (ws / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    _git("add", "-A", cwd=ws)
    _git("commit", "-qm", "experiment", cwd=ws)
    shown = subprocess.run([tool("dvc"), "exp", "show", "--only-changed", "--no-pager", "--all-branches"], cwd=ws, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= 160, shown.stdout
    header = next(line for line in lines if "Experiment" in line).split()
    assert [c for c in header if c in HEADLINE] == HEADLINE and "train.lr" in header, shown.stdout
    assert any("0.02" in line.split() for line in lines), shown.stdout
