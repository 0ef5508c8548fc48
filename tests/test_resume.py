"""A train stage killed or stopped mid-epoch goes on from its last resume point and ends with
the same bytes as a run never interrupted (on the CPU); stop signals save and say so in one
line; a resume point of other inputs is never used; a non-finite loss is named. An evaluate
stage stopped mid-way goes on from its last resume point, to the same posteriors' bytes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import make_project, tiny_params, tool, vggrepro
from vggrepro import paths
from vggrepro.runtime import device

RESUME = Path(paths.resume_point("train_A_256"))
MODEL = Path("runs/A_256/model.pt")


def _params() -> dict:
    params = tiny_params()
    params["data"]["embedded"]["train_per_class"] = 40  # 228 images to train on: 14 steps an epoch
    params["train"].update(max_epochs=3, checkpoint_every=1)
    params["runs"] = {"A_256": {"config": "A", "scale": 256, "init": "glorot"}}
    return params


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    ws = make_project(tmp_path_factory.mktemp("resume") / "ws", _params())
    for stage in (("validate", "--write-knobs"), ("prepare",), ("mean_rgb",)):
        done = vggrepro(*stage, cwd=ws)
        assert done.returncode == 0, done.stderr
    return ws


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory) -> Path:
    ws = _copy(prepared, tmp_path_factory.mktemp("whole"))
    done = vggrepro("train", "--run", "A_256", cwd=ws)
    assert done.returncode == 0, done.stderr
    assert not (ws / RESUME).exists()  # removed once the stage finished
    return ws


@pytest.fixture(scope="module")
def uninterrupted(trained) -> str:
    return _hash(trained / MODEL)


def _copy(ws: Path, into: Path) -> Path:
    return Path(shutil.copytree(ws, into / "ws", symlinks=True))


def _hash(model: Path) -> str:
    """The weights' file, the training log beside it (every epoch's sums, not just the last) and
    the live folder's files (every step point)."""
    live = sorted(p for p in (model.parent / "live").rglob("*") if p.is_file())
    assert live, "no live files"
    files = [model, model.with_name("train_log.json"), *live]
    return hashlib.blake2b(b"".join(str(f.relative_to(model.parent)).encode() + f.read_bytes() for f in files),
                           digest_size=16).hexdigest()


def _start(cmd: list[str], ws: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _when_resumable(proc: subprocess.Popen, ws: Path, timeout: float = 300) -> None:
    """Waits for the first resume point (the run is past its first step)."""
    deadline = time.monotonic() + timeout
    while not (ws / RESUME).exists():
        assert proc.poll() is None, f"finished before any resume point: {proc.communicate()}"
        assert time.monotonic() < deadline, "no resume point appeared"
        time.sleep(0.005)


@pytest.mark.slow  # about 14 s, beside tests/test_faults.py, which kills `dvc repro` anywhere
def test_sigkill_mid_epoch_then_rerun_gives_the_uninterrupted_weights(prepared, uninterrupted, tmp_path):
    ws = _copy(prepared, tmp_path)
    proc = _start([sys.executable, "-m", "vggrepro", "train", "--run", "A_256"], ws)
    _when_resumable(proc, ws)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert not (ws / MODEL).exists() and (ws / RESUME).exists()
    done = vggrepro("train", "--run", "A_256", cwd=ws)
    assert done.returncode == 0, done.stderr
    assert "A_256: resuming at epoch" in done.stdout
    assert _hash(ws / MODEL) == uninterrupted


@pytest.mark.slow  # seconds: the default suite must stay under 10 minutes with its install
def test_the_log_grows_each_epoch_a_resume_ends_with_the_same_bytes_and_a_log_file_gets_heartbeats(
        prepared, trained, tmp_path):
    """dvc plots show draws a running run's epochs; a kill after one leaves them in the log; in a
    log file (no terminal) a heartbeat line tells where the run is (every 10 ms here)."""
    ws = _copy(prepared, tmp_path)
    log = ws / "runs" / "A_256" / "train_log.json"
    proc = subprocess.Popen([sys.executable, "-m", "vggrepro", "train", "--run", "A_256"], cwd=ws, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "VGGREPRO_HEARTBEAT": "0.01"})
    deadline = time.monotonic() + 300
    while not (log.exists() and json.loads(log.read_text() or "[]")):
        assert proc.poll() is None, f"finished before its log grew: {proc.communicate()}"
        assert time.monotonic() < deadline, "the log never grew"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    epochs = json.loads(log.read_text())
    assert not (ws / MODEL).exists() and 1 <= len(epochs) < 3 and epochs[0]["epoch"] == 1
    # dvclive's step curve has points within the first epoch, and its summary says where the run was
    rows = (ws / "runs/A_256/live/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert rows[0] == "step\tloss" and len(rows) > 2, rows
    steps = [int(r.split("\t")[0]) for r in rows[1:]]
    assert steps == sorted(set(steps)) and steps[0] >= 1, steps  # strictly rising global steps
    summary = json.loads((ws / "runs/A_256/live/metrics.json").read_text())
    assert set(summary) == {"progress"} and 0 < summary["progress"] < 100, summary  # of max_epochs' steps
    beats = [json.loads(line) for line in out.splitlines() if line.startswith('{"heartbeat"')]
    assert beats and beats[0]["heartbeat"] == "train" and beats[0]["run"] == "A_256", out
    assert set(beats[0]) >= {"epoch", "step", "steps", "done", "of", "images_per_s", "eta"}
    done = vggrepro("train", "--run", "A_256", cwd=ws)
    assert done.returncode == 0, done.stderr
    assert log.read_bytes() == (trained / "runs" / "A_256" / "train_log.json").read_bytes()
    assert _hash(ws / MODEL) == _hash(trained / MODEL)  # the live files too
    assert json.loads((ws / "runs/A_256/live/metrics.json").read_text()) == {"progress": 100.0}


@pytest.mark.slow  # about 15 s: `pytest -m slow`
def test_sigterm_saves_says_so_in_one_line_and_the_rerun_finishes_identically(prepared, uninterrupted, tmp_path):
    ws = _copy(prepared, tmp_path)
    proc = _start([sys.executable, "-m", "vggrepro", "train", "--run", "A_256"], ws)
    _when_resumable(proc, ws)
    os.killpg(proc.pid, signal.SIGTERM)  # the whole group, as SLURM's scancel does
    _, err = proc.communicate(timeout=300)
    lines = err.strip().splitlines()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert len(lines) == 1 and "A_256: stopped by SIGTERM at" in lines[0] and "rerun the stage to continue" in lines[0]
    done = vggrepro("train", "--run", "A_256", cwd=ws)
    assert done.returncode == 0, done.stderr
    assert "resuming at epoch" in done.stdout and _hash(ws / MODEL) == uninterrupted


@pytest.mark.slow  # about 15 s: `pytest -m slow`
def test_a_resume_point_of_other_inputs_is_discarded(prepared, tmp_path):
    ws = _copy(prepared, tmp_path)
    proc = _start([sys.executable, "-m", "vggrepro", "train", "--run", "A_256"], ws)
    _when_resumable(proc, ws)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["train"]["lr"] = 0.02
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert vggrepro("validate", "--write-knobs", cwd=ws).returncode == 0
    done = vggrepro("train", "--run", "A_256", cwd=ws)
    assert done.returncode == 0, done.stderr
    assert "resume point of other inputs (params, data, code, processes or precision changed) discarded" in done.stderr
    assert "resuming" not in done.stdout


def _cpu_with(tmp_path: Path, name: str, *, bf16: bool) -> dict:
    """An environment whose Python processes see no GPU and a CPU of this name with (or without)
    bf16 arithmetic: what train.precision auto decides from (device.has_bf16_arithmetic)."""
    folder = tmp_path / name
    folder.mkdir()
    faked = {"cpu_name": name, **dict.fromkeys(device.CPU_BF16_FEATURES, bf16)}
    (folder / "sitecustomize.py").write_text(
        f"import torch\n_real = torch.cpu.get_capabilities\ntorch.cpu.get_capabilities = lambda: {{**_real(), **{faked!r}}}\n"
    )
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "CUDA_VISIBLE_DEVICES": ""}


def _killed_then_rerun(ws: Path, first: dict, then: dict) -> subprocess.CompletedProcess:
    """train_A_256 SIGKILLed after its first resume point in environment first, rerun in then."""
    command = [sys.executable, "-m", "vggrepro", "train", "--run", "A_256"]
    proc = subprocess.Popen(command, cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=first)
    _when_resumable(proc, ws)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    done = subprocess.run(command, cwd=ws, capture_output=True, text=True, timeout=600, env=then)
    assert done.returncode == 0, done.stderr
    return done


def _trained_on(ws: Path) -> str:
    return torch.load(ws / MODEL, map_location="cpu", weights_only=False)["compute"]


@pytest.mark.slow  # about 20 s: `pytest -m slow`
def test_a_resume_point_computed_in_another_precision_is_discarded(prepared, tmp_path):
    # precision auto resolves per machine: a run killed on one without bf16 arithmetic and
    # requeued onto one with it starts over in bf16, rather than finish in bf16 from fp32 steps.
    ws = _copy(prepared, tmp_path)  # train.precision left out: auto, the default
    done = _killed_then_rerun(ws, _cpu_with(tmp_path, "Old", bf16=False), _cpu_with(tmp_path, "New", bf16=True))
    assert "resume point of other inputs (params, data, code, processes or precision changed) discarded" in done.stderr
    assert "resuming" not in done.stdout
    assert re.fullmatch(r"cpu \(New \w+\), bf16, channels_last", _trained_on(ws)), _trained_on(ws)


@pytest.mark.slow  # about 20 s: `pytest -m slow`
def test_a_run_resumed_on_another_machine_records_both(prepared, tmp_path):
    ws = _copy(prepared, tmp_path)  # the same precision on both: the run goes on where it stopped
    done = _killed_then_rerun(ws, _cpu_with(tmp_path, "Old", bf16=False), _cpu_with(tmp_path, "New", bf16=False))
    assert "A_256: resuming at epoch" in done.stdout
    assert re.fullmatch(r"cpu \(Old \w+\), fp32, channels_last; then cpu \(New \w+\), fp32, channels_last",
                        _trained_on(ws)), _trained_on(ws)


@pytest.mark.slow  # about 35 s: `pytest -m slow`, beside tests/test_faults.py, which kills `dvc repro` anywhere
def test_dvc_repro_after_a_kill_resumes_the_stage(prepared, uninterrupted, tmp_path):
    ws = _copy(prepared, tmp_path)
    for cmd in (["init", "--no-scm", "-q"], ["config", "core.analytics", "false"]):
        subprocess.run([tool("dvc"), *cmd], cwd=ws, check=True)
    proc = _start([tool("dvc"), "repro", "train_A_256"], ws)
    _when_resumable(proc, ws)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    done = subprocess.run([tool("dvc"), "repro", "train_A_256"], cwd=ws, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "A_256: resuming at epoch" in done.stdout
    assert _hash(ws / MODEL) == uninterrupted


def test_a_non_finite_loss_stops_with_one_line_naming_run_epoch_and_step(prepared, tmp_path):
    ws = _copy(prepared, tmp_path)
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["train"]["lr"] = 1e30
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert vggrepro("validate", "--write-knobs", cwd=ws).returncode == 0
    done = vggrepro("train", "--run", "A_256", cwd=ws)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "A_256: the training loss became NaN or infinite at epoch 1, step" in lines[0]
    assert not (ws / MODEL).exists()


class _Killed(BaseException):
    """Stands for SIGKILL: raised from inside the stage, caught by nothing in it."""


def _evaluate_in_process(ws: Path, monkeypatch, *, kill_after_saves: int | None = None) -> None:
    """Runs evaluate_A_256 here, with 4-image chunks and a resume point after each; with
    kill_after_saves, stops it dead once that many points are written."""
    from vggrepro.engine import registry
    from vggrepro.params import load_params
    from vggrepro.runtime import resume
    from vggrepro.stages import StageRun, evaluate, run_stage

    monkeypatch.chdir(ws)
    monkeypatch.setattr(evaluate, "CHUNK", 4)
    monkeypatch.setattr(evaluate, "SAVE_EVERY_S", 0.0)
    saves = []
    real_save = resume.Point.save

    def save(point, state):
        real_save(point, state)
        saves.append(state["images"])
        if kill_after_saves is not None and len(saves) == kill_after_saves:
            raise _Killed

    monkeypatch.setattr(resume.Point, "save", save)
    try:
        params = load_params("params.yaml")
        stage = next(s for s in registry.build(params) if s.name == "evaluate_A_256")
        run_stage("evaluate", params, StageRun(stage.name, tuple(stage.deps)), "A_256")
    finally:
        monkeypatch.setattr(resume.Point, "save", real_save)
        monkeypatch.undo()


def _eval_outputs(ws: Path) -> dict[str, bytes]:
    folder = ws / "runs" / "A_256"
    return {p.name: p.read_bytes() for p in [folder / "eval.json", *sorted((folder / "eval").glob("*.pt"))]}


def test_an_evaluation_stopped_midway_resumes_to_the_same_posteriors(trained, tmp_path, monkeypatch, capsys):
    whole = _copy(trained, tmp_path / "whole")
    _evaluate_in_process(whole, monkeypatch)
    expected = _eval_outputs(whole)
    assert set(expected) >= {"eval.json", "dense-single.pt", "dense.pt"}

    ws = _copy(trained, tmp_path / "killed")
    point = ws / paths.resume_point("evaluate_A_256")
    with pytest.raises(_Killed):
        _evaluate_in_process(ws, monkeypatch, kill_after_saves=2)
    assert point.exists() and not (ws / "runs/A_256/eval.json").exists()
    capsys.readouterr()
    _evaluate_in_process(ws, monkeypatch)
    assert "A_256: resuming evaluation after image 8 of 24" in capsys.readouterr().out
    assert _eval_outputs(ws) == expected
    assert not point.exists()  # removed once the stage finished
