from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "imagenet-sample"


def tiny_params() -> dict:
    """A grid small enough to run through both engines in seconds: 3 runs, an init chain, a jittered scale."""
    return {
        "seed": 0,
        "threads": 2,
        "data": {
            "source": "embedded",
            "root": "data/embedded",
            "embedded": {"classes": 6, "train_per_class": 10, "val_per_class": 4, "min_side": 40, "max_side": 64},
        },
        "model": {"width": 0.0625, "head_width": 16, "dropout": 0.5},
        "geometry": {"crop": 32},
        "train": {"batch_size": 16, "epochs": 1, "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0005},
        "evaluate": {"flip": True},
        "runs": {
            "A_256": {"config": "A", "scale": 256, "init": "glorot"},
            "B_256": {"config": "B", "scale": 256, "init": "A_256"},
            "B_jit": {"config": "B", "scale": [256, 512], "init": "B_256", "lr": 0.001},
        },
    }


def vggrepro(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vggrepro", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def make_project(dest: Path, params: dict) -> Path:
    """A copy of the project's workflow files with its own params.yaml and rendered dvc.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Snakefile", dest / "Snakefile")
    shutil.copytree(ROOT / "workflow", dest / "workflow")
    # The stages list their source files as dependencies, as in the real project.
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    done = vggrepro("dvc-yaml", cwd=dest)
    assert done.returncode == 0, done.stderr
    return dest


def tool(name: str) -> str:
    """A console script of the environment the tests run in (dvc, snakemake)."""
    path = Path(sys.executable).with_name(name)
    return str(path) if path.exists() else name


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project", tiny_params())
