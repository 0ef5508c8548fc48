"""The heartbeat: a line at least every interval from a stage writing to a log, none on a terminal."""

import io
import json
import time

import pytest

from vggrepro.runtime import heartbeat
from vggrepro.runtime.errors import Error
from vggrepro.runtime.heartbeat import Heartbeat


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_every_interval_with_the_rate_and_time_left():
    out = io.StringIO()
    with Heartbeat("train", {"run": "E_jit", "epoch": 3}, total=1000, start=100, every=0.02, stream=out) as beat:
        beat.done(400, step=12)
        time.sleep(0.15)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) >= 3  # a line every 20 ms while the block ran, none after it
    first = lines[0]
    assert list(first)[:4] == ["heartbeat", "run", "epoch", "step"]
    assert (first["heartbeat"], first["run"], first["epoch"], first["step"], first["done"], first["of"]) == (
        "train", "E_jit", 3, 12, 400, 1000)
    assert first["images_per_s"] > 0 and first["eta"].count(":") == 2  # h:mm:ss, from 300 images in its time


def test_a_terminal_gets_none_and_the_interval_comes_from_the_environment(monkeypatch):
    out = _Terminal()
    with Heartbeat("evaluate", {"run": "A_256"}, total=10, every=0.01, stream=out):
        time.sleep(0.05)
    assert out.getvalue() == ""  # tqdm's bar is there
    monkeypatch.setenv(heartbeat.ENV, "2.5")
    assert heartbeat.interval() == 2.5
    monkeypatch.delenv(heartbeat.ENV)
    assert heartbeat.interval() == 60
    for bad in ("0", "-1", "soon", "inf", "nan"):
        monkeypatch.setenv(heartbeat.ENV, bad)
        with pytest.raises(Error, match=rf"^VGGREPRO_HEARTBEAT='{bad}': expected a positive number of seconds$"):
            heartbeat.interval()


def test_a_bad_interval_stops_both_engines_before_any_stage(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import make_project, tiny_params, tool

    project = make_project(tmp_path / "p", tiny_params())
    env = {**os.environ, heartbeat.ENV: "soon"}
    # snakemake, and DVC's first stage (every other stage follows it)
    for cmd in ([tool("snakemake"), "-n"], [sys.executable, "-m", "vggrepro", "validate", "--write-knobs"]):
        done = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode != 0 and "VGGREPRO_HEARTBEAT='soon': expected a positive number of seconds" in (
            done.stdout + done.stderr), done.stderr
        assert "Traceback" not in done.stderr
    assert not (project / "data").exists()
