"""No stage deletes or overwrites what it did not create; code dependencies follow imports."""

import os
import re
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, tiny_params, vggrepro
from vggrepro import paths
from vggrepro.data import embedded_owner
from vggrepro.engine import codedeps, guard, registry
from vggrepro.params import load_params
from vggrepro.runtime import io


def project_with_root(tmp_path: Path, root: str) -> Path:
    params = tiny_params()
    params["data"]["root"] = root
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def test_prepare_refuses_a_folder_it_did_not_make(tmp_path):
    project = project_with_root(tmp_path, "data/photos")
    (project / "data/photos").mkdir(parents=True)
    (project / "data/photos/cat.jpg").write_bytes(b"not mine")
    for command in (["prepare"], ["validate"]):
        done = vggrepro(*command, cwd=project)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"vggrepro {command[0]}: error: data.root: data/photos exists and was not made by the embedded "
            f"generator (no {embedded_owner.MARKER} in it); refusing to replace it: name a new folder, or move it away"
        ]
    assert (project / "data/photos/cat.jpg").read_bytes() == b"not mine"
    assert sorted(p.name for p in (project / "data").iterdir()) == ["photos"]


@pytest.mark.slow  # three generations of the embedded set, about 25 s: `pytest -m slow`
def test_prepare_regenerates_only_its_own_folder_and_only_for_new_params(tmp_path):
    project = project_with_root(tmp_path, "data/embedded")
    assert vggrepro("prepare", cwd=project).returncode == 0
    assert (project / "data/embedded" / embedded_owner.MARKER).is_file()
    manifest = (project / "data/manifest.csv").read_bytes()
    image = next((project / "data/embedded/train").rglob("*.JPEG"))
    stamp = image.stat().st_mtime_ns
    assert vggrepro("prepare", cwd=project).returncode == 0  # same params: read again, not rewritten
    assert image.stat().st_mtime_ns == stamp
    assert (project / "data/manifest.csv").read_bytes() == manifest
    assert sorted(p.name for p in (project / "data").iterdir()) == ["bad_files.csv", "classes.csv", "embedded", "manifest.csv"]

    # New generator params replace the folder, unless something in it is not the generator's.
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["embedded"]["val_per_class"] += 1
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    user_file = image.parent / "notes.txt"
    user_file.write_text("mine")
    done = vggrepro("prepare", cwd=project)
    assert done.returncode == 2, done.stderr
    assert f"holds 'train/{image.parent.name}/notes.txt', which the embedded generator did not write" in done.stderr
    assert user_file.read_text() == "mine" and image.stat().st_mtime_ns == stamp
    user_file.unlink()
    assert vggrepro("prepare", cwd=project).returncode == 0
    assert (project / "data/manifest.csv").read_bytes() != manifest
    assert [p.name for p in (project / "data").iterdir() if p.name.startswith(".")] == []  # no temporary folders left


def test_an_identical_rewrite_keeps_the_file_and_its_time(tmp_path):
    target = tmp_path / "out.txt"
    io.write_text(target, "same\n")
    stamp = target.stat().st_mtime_ns
    io.write_text(target, "same\n")
    assert target.stat().st_mtime_ns == stamp
    io.write_text(target, "changed\n")
    assert target.read_text() == "changed\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    """Written through a temporary file (mkstemp's 0600), an output still gets 0666 less the
    umask, as a plain open() would: colleagues sharing the folder can read the reports."""
    before = os.umask(umask)
    try:
        io.write_text(tmp_path / "report.md", "text\n")
        io.write_torch(tmp_path / "model.pt", {"x": 1})
    finally:
        os.umask(before)
    for name in ("report.md", "model.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_stage_code_follows_imports(tmp_path, monkeypatch):
    stages = registry.build(load_params(ROOT / "params.yaml"))
    deps = {s.name: s.code for s in stages}
    # Each stage reads the code through one digest file, which lists every source file it runs.
    assert all(paths.code_digest(s.name) in s.deps for s in registry.snakemake_stages(stages))
    monkeypatch.chdir(tmp_path)
    guard.write_code_digests(stages)
    listed = Path(paths.code_digest("train_A_256")).read_text().splitlines()
    assert [line.split("  ")[1] for line in listed] == list(deps["train_A_256"])
    assert guard.write_code_digests(stages) == []  # unchanged code: no file rewritten
    src = codedeps.SRC_PREFIX
    for needed in ("stages/train.py", "model.py", "data/loader.py", "data/transforms.py", "params.py", "__init__.py"):
        assert f"{src}/{needed}" in deps["train_A_256"], needed
    assert f"{src}/report/paper.yaml" in deps["report"]  # a data file the report's code names
    # ... and no training reads the paper's numbers, nor any stage the engines' plumbing.
    assert f"{src}/report/paper.yaml" not in deps["train_A_256"]
    assert not [f for s in stages if s.name != "validate" for f in s.code if f.startswith(f"{src}/engine/")]
    # Stages do not import each other: evaluation does not rerun when training code changes.
    assert f"{src}/stages/train.py" not in deps["evaluate_A_256"]
    assert f"{src}/model.py" not in deps["report"]


def test_a_new_import_becomes_a_dependency(tmp_path):
    package = tmp_path / "vggrepro"
    shutil.copytree(codedeps.PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    before = codedeps.closure("vggrepro.stages.mean_rgb", package)
    assert package / "colour.py" not in before
    (package / "colour.py").write_text("from vggrepro.data import tables\n")
    (package / "data" / "tables.py").write_text("SCALE = 1.0\n")
    stage = package / "stages" / "mean_rgb.py"
    # An import inside a function counts as much as one at the top.
    stage.write_text(stage.read_text() + "\n\ndef _later():\n    from vggrepro import colour\n")
    after = codedeps.closure("vggrepro.stages.mean_rgb", package)
    assert set(after) - set(before) == {package / "colour.py", package / "data" / "tables.py"}


def test_the_snakefile_names_only_profiles_that_exist():
    text = (ROOT / "Snakefile").read_text() + (ROOT / "README.md").read_text()
    named = set(re.findall(r"--profile\s+(\S+?)[`\s]", text))
    assert named, "no profile named"
    for profile in named:
        assert (ROOT / profile / "config.yaml").is_file(), profile


def test_a_stage_already_running_stops_a_second_run_with_one_line(tmp_path, monkeypatch):
    """Two runs of one stage at once would write the same outputs: the second stops at once."""
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from vggrepro.stages import lock_stage\nwith lock_stage('train_A_256'):\n"
         "    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        from vggrepro.stages import StageRunning, lock_stage

        with pytest.raises(StageRunning, match=rf"^train_A_256 is already running in this workspace \(pid {holder.pid} train_A_256\)"):
            with lock_stage("train_A_256"):
                pass
        with lock_stage("evaluate_A_256") as locked:  # another stage: free
            assert locked
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    with lock_stage("train_A_256") as locked:  # the holder ended: free again
        assert locked
