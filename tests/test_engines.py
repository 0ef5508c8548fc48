"""One finished tiny workspace, two engines: bad params touch nothing, and both engines make the
same rerun decisions after each other's runs, after a restore from DVC's cache and after a
stage is run again by hand."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import make_project, tiny_params, tool, vggrepro, vggrepro_here

KEEP = ("runs", "reports", "data", ".vggrepro")


def run(cmd, cwd, ok=True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    if ok:
        assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def fingerprint(project: Path) -> dict[str, str]:
    """md5 of every output file (and every file of the dataset), not DVC's .gitignore files,
    Snakemake's time carrier in a directory output (.snakemake_timestamp, which DVC ignores),
    the record of the last validation, the stage locks (which hold the last holder's pid), nor
    the outputs' records (which hold file times) and edit counts."""
    found = {}
    for top in KEEP:
        for path in sorted((project / top).rglob("*")):
            if (path.is_file() and path.name not in (".gitignore", "validated.json", ".snakemake_timestamp")
                    and path.parent.name not in ("locks", "outputs", "edits")):
                found[str(path.relative_to(project))] = hashlib.md5(path.read_bytes()).hexdigest()
    return found


def snakemake_plan(project: Path) -> set[str]:
    out = run([tool("snakemake"), "-n", "--cores", "2"], project).stdout
    return set(re.findall(r"^rule (\w+):", out, flags=re.M)) - {"all"}


def dvc_changed(project: Path) -> set[str]:
    """What `dvc repro` reruns: its first stage, validate, brings the knob and code digest files
    up to date (the other stages' only view of params.yaml and the code), then DVC compares."""
    import json

    vggrepro("validate", "--write-knobs", cwd=project)
    return set(json.loads(run([tool("dvc"), "status", "--json"], project).stdout or "{}"))


@pytest.fixture(scope="module")
def workspace(tiny_runs, tmp_path_factory) -> Path:
    """A tiny project in git, built by `dvc repro`; params.yaml as committed. A copy of the
    session's finished DVC workspace, made a git repository: the copy's dataset files have new
    inodes, so `dvc repro` reruns prepare (same manifest bytes) and nothing after it."""
    project = tmp_path_factory.mktemp("engines") / "project"
    shutil.copytree(tiny_runs["dvc"][0], project, symlinks=True)
    run(["git", "init", "-q"], project)
    run([tool("dvc"), "config", "--unset", "core.no_scm"], project)
    # Made with --no-scm, the outputs have no .gitignore: committing them again writes one
    # each, so `git add -A` below leaves DVC's outputs out of git as in a user's project.
    run([tool("dvc"), "commit", "--force", "--quiet"], project)
    done = run([tool("dvc"), "repro"], project)
    assert re.findall(r"Running stage '(\w+)'", done.stdout) == ["validate", "prepare"], done.stdout
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "built"], project)
    return project


def params_text() -> str:
    return yaml.safe_dump(tiny_params(), sort_keys=False)


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, (old, text)
    return text.replace(old, new)


# Each bad file as a user would type it (YAML text, not a Python dict: the reader is on trial).
BAD_FILES = {
    "negative lr": lambda t: replace_once(t, "lr: 0.01", "lr: -0.01"),
    "NaN lr": lambda t: replace_once(t, "lr: 0.01", "lr: .nan"),
    "infinite lr": lambda t: replace_once(t, "lr: 0.01", "lr: .inf"),
    "NaN width": lambda t: replace_once(t, "width: 0.0625", "width: .nan"),
    "float batch size": lambda t: replace_once(t, "batch_size: 16", "batch_size: 16.0"),
    "float head width": lambda t: replace_once(t, "head_width: 16", "head_width: 16.0"),
    "float threads": lambda t: replace_once(t, "threads: 2", "threads: 2.0"),
    "flip: yes": lambda t: replace_once(t, "evaluate:\n  flip: true", "evaluate:\n  flip: yes"),
    "unknown top-level key": lambda t: t + "optimiser: adam\n",
    "duplicate run key": lambda t: replace_once(t, "runs:\n", "runs:\n  B_jit: {config: A, scale: 256, init: glorot}\n"),
    "duplicate top-level key": lambda t: t + "seed: 1\n",
    "data.root over runs/": lambda t: replace_once(t, "root: data/embedded", "root: runs"),
    "data.root a user's folder": lambda t: replace_once(t, "root: data/embedded", "root: photos"),
    # Values a stage would refuse or choke on, refused before any output is touched (issue 17):
    "seed 2^64": lambda t: replace_once(t, "seed: 0", "seed: 18446744073709551616"),
    "threads 1e20": lambda t: replace_once(t, "threads: 2", "threads: 100000000000000000000"),
    "batch size 1e20": lambda t: replace_once(t, "batch_size: 16", "batch_size: 100000000000000000000"),
    "S_max 1e20": lambda t: replace_once(t, "- 512", "- 100000000000000000000"),
    "workers 100000": lambda t: replace_once(t, "workers: 0", "workers: 100000"),
    "crop 8192": lambda t: replace_once(t, "crop: 32", "crop: 8192"),
    "activations beyond memory": lambda t: replace_once(replace_once(t, "crop: 32", "crop: 1024"),
                                                        "batch_size: 16", "batch_size: 65536"),
    "train_per_class 1e8": lambda t: replace_once(t, "train_per_class: 10", "train_per_class: 100000000"),
    "ilsvrc2012 without its folder": lambda t: replace_once(
        t, "source: embedded\n  root: data/embedded", "source: ilsvrc2012\n  root: no/such/imagenet"),
    "imported weights missing": lambda t: t + "  tv: {config: A, scale: 256, init: import, weights: missing.pt}\n",
    "imagefolder at the project root": lambda t: replace_once(
        t, "source: embedded\n  root: data/embedded", "source: imagefolder\n  root: ."),
    "not UTF-8": lambda t: "# caf\udce9 (Latin-1)\n" + t,
    "NUL byte in data.root": lambda t: replace_once(t, "root: data/embedded", 'root: "data/emb\\0edded"'),
    "~nosuchuser": lambda t: replace_once(t, "root: data/embedded", "root: ~nosuchuser/embedded"),
    "run name of 300 characters": lambda t: t + "  " + "A" * 300 + ": {config: A, scale: 256, init: glorot}\n",
}


# Through both engines (3 s a case): one case of each way a file goes wrong (its value, its YAML,
# its bytes, a path, a file it names, memory, a name); every case goes through the engines' guard
# and prepare in-process below, and through both engines in the slow suite.
THROUGH_ENGINES = {
    "negative lr", "duplicate top-level key", "not UTF-8", "data.root over runs/",
    "imported weights missing", "activations beyond memory", "run name of 300 characters",
}


def _write_bad_file(workspace: Path, case: str) -> dict[str, str]:
    """A user's folder in the project (photos/, which no stage may touch), then the bad params
    file; returns the outputs' fingerprint from before."""
    (workspace / "photos").mkdir(exist_ok=True)
    (workspace / "photos" / "holiday.txt").write_text("keep me\n")
    before = fingerprint(workspace)
    # surrogateescape: "not UTF-8" writes the byte 0xe9 as a Latin-1 editor would
    (workspace / "params.yaml").write_bytes(BAD_FILES[case](params_text()).encode("utf-8", "surrogateescape"))
    return before


@pytest.mark.parametrize("case", BAD_FILES)
def test_every_bad_params_file_is_refused_in_one_line_by_the_engines_guard_and_prepare(workspace, case):
    before = _write_bad_file(workspace, case)
    try:
        # `validate --write-knobs` is the guard both engines run first (vggrepro.engine.guard)
        for stage in (["validate", "--write-knobs"], ["prepare"]):
            done = vggrepro_here(*stage, cwd=workspace)
            assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, (stage, done.stderr)
            assert "Traceback" not in done.stderr, done.stderr
        assert fingerprint(workspace) == before, f"validate or prepare changed outputs ({case})"
        assert (workspace / "photos" / "holiday.txt").read_text() == "keep me\n"
    finally:
        (workspace / "params.yaml").write_text(params_text())


@pytest.mark.parametrize(
    "case", [c if c in THROUGH_ENGINES else pytest.param(c, marks=pytest.mark.slow) for c in BAD_FILES]
)
def test_a_bad_params_file_touches_no_output_under_either_engine(workspace, case):
    before = _write_bad_file(workspace, case)
    try:
        dvc = run([tool("dvc"), "repro"], workspace, ok=False)
        assert dvc.returncode != 0, dvc.stdout
        assert fingerprint(workspace) == before, f"dvc repro changed outputs ({case}):\n{dvc.stdout}{dvc.stderr}"
        snake = run([tool("snakemake"), "--cores", "2"], workspace, ok=False)
        assert snake.returncode != 0, snake.stdout
        assert "Traceback" not in snake.stderr, snake.stderr
        errors = [line for line in snake.stderr.splitlines() if line.startswith("snakemake: error:")]
        assert len(errors) == 1, snake.stderr
        assert fingerprint(workspace) == before, f"snakemake changed outputs ({case})"
        by_hand = vggrepro_here("prepare", cwd=workspace)
        assert by_hand.returncode == 2 and len(by_hand.stderr.strip().splitlines()) == 1, by_hand.stderr
        assert fingerprint(workspace) == before, f"vggrepro prepare changed outputs ({case})"
        assert (workspace / "photos" / "holiday.txt").read_text() == "keep me\n"
    finally:
        (workspace / "params.yaml").write_text(params_text())


def test_dvc_stops_on_a_stale_dvc_yaml_before_deleting_anything(workspace):
    before = fingerprint(workspace)
    text = params_text() + "  C_256: {config: C, scale: 256, init: A_256}\n"
    (workspace / "params.yaml").write_text(text)
    try:
        dvc = run([tool("dvc"), "repro"], workspace, ok=False)
        assert dvc.returncode != 0
        assert "dvc.yaml is stale" in dvc.stdout + dvc.stderr
        assert fingerprint(workspace) == before
    finally:
        (workspace / "params.yaml").write_text(params_text())


@pytest.mark.slow  # eight engine runs, about 80 s: `pytest -m slow`
def test_both_engines_decide_alike(workspace):
    """DVC built it; Snakemake agrees; a restore from DVC's cache, a knob change in either
    direction and a stage run again by hand give the same decisions in both engines."""
    project = workspace
    assert snakemake_plan(project) == set(), "Snakemake replans DVC's finished outputs"

    # Restore every output from DVC's cache: written in no particular order. (The dataset
    # folder is no output: it stays.)
    subprocess.run(["rm", "-rf", str(project / "runs")], check=True)
    for output in ("manifest.csv", "classes.csv", "bad_files.csv", "mean_rgb.json"):
        (project / "data" / output).unlink()
    run([tool("dvc"), "checkout", "-q"], project)
    assert snakemake_plan(project) == set(), "Snakemake replans outputs DVC restored"

    # A knob one run reads: both engines plan exactly that run, its evaluation, the fusion
    # that names it (tests/params-tiny.yaml fuses B_256 and B_jit) and the report.
    text = params_text()
    (project / "params.yaml").write_text(replace_once(text, "lr: 0.001", "lr: 0.002"))
    expected = {"train_B_jit", "evaluate_B_jit", "fuse", "report"}
    assert snakemake_plan(project) == expected
    # `dvc status` lists the stages whose own inputs changed: fuse's change once evaluate has run.
    assert dvc_changed(project) == expected - {"fuse"} | {"validate"}

    # Snakemake runs it; DVC, which has no record of that run, reruns the same stages and
    # writes the same bytes.
    run([tool("snakemake"), "--cores", "2"], project)
    made_by_snakemake = fingerprint(project)
    rerun = run([tool("dvc"), "repro"], project).stdout
    assert set(re.findall(r"Running stage '(\w+)'", rerun)) == expected | {"validate"}, rerun
    assert fingerprint(project) == made_by_snakemake
    assert snakemake_plan(project) == set()

    # The other way round: a knob every evaluation (and the report, which states it) reads.
    (project / "params.yaml").write_text(
        replace_once(replace_once(text, "lr: 0.001", "lr: 0.002"), "evaluate:\n  flip: true", "evaluate:\n  flip: false")
    )
    evaluations = {f"evaluate_{r}" for r in tiny_params()["runs"]}
    assert dvc_changed(project) == evaluations | {"report", "validate"}
    assert snakemake_plan(project) == evaluations | {"fuse", "report"}
    (project / "params.yaml").write_text(replace_once(text, "lr: 0.001", "lr: 0.002"))
    assert snakemake_plan(project) == set()

    # A stage run again by hand writes the same bytes and leaves the files' times alone.
    stamp = (project / "runs/A_256/eval.json").stat().st_mtime_ns
    assert vggrepro("evaluate", "--run", "A_256", cwd=project).returncode == 0
    assert (project / "runs/A_256/eval.json").stat().st_mtime_ns == stamp
    assert snakemake_plan(project) == set()
    (project / "params.yaml").write_text(text)


@pytest.mark.slow  # about 90 s: `pytest -m slow`
def test_snakemake_does_not_trust_dvc_for_a_graph_dvc_yaml_does_not_describe(workspace):
    """A run added without `vggrepro dvc-yaml`: DVC has no record of it, and its record of
    the other stages may name other inputs, so Snakemake goes by its own file times."""
    run([tool("snakemake"), "--cores", "2"], workspace)  # whatever an earlier test left stale
    text = params_text() + "  C_256: {config: C, scale: 256, init: A_256}\n"
    (workspace / "params.yaml").write_text(text)
    try:
        assert snakemake_plan(workspace) == {"train_C_256", "evaluate_C_256", "report"}
        run([tool("snakemake"), "--cores", "2"], workspace)
        (workspace / "params.yaml").write_text(replace_once(text, "init: A_256}\n", "init: A_256, lr: 0.003}\n"))
        assert snakemake_plan(workspace) == {"train_C_256", "evaluate_C_256", "report"}
    finally:
        (workspace / "params.yaml").write_text(params_text())


def replace_one_image(root: Path) -> None:
    """Rewrites one training image in place with new bytes (a byte past the JPEG's end)."""
    image = sorted((root / "train").rglob("*.JPEG"))[0]
    image.write_bytes(image.read_bytes() + b"\0")


def assert_a_replaced_image_reruns_the_grid(project: Path, data_root: Path, runs) -> None:
    downstream = {"mean_rgb", *(f"train_{r}" for r in runs), *(f"evaluate_{r}" for r in runs)}
    replace_one_image(data_root)
    # Snakemake notices at parse time (the dataset stamp is prepare's input) ...
    assert {"prepare"} | downstream <= snakemake_plan(project)
    # ... and DVC on its first stage: prepare reruns and writes a new manifest.
    before = (project / "data/manifest.csv").read_bytes()
    run([tool("dvc"), "repro", "prepare"], project)
    assert (project / "data/manifest.csv").read_bytes() != before, "the manifest does not see a replaced image"
    assert downstream <= dvc_changed(project)
    assert downstream <= snakemake_plan(project)


@pytest.mark.slow  # about 19 s, beside the external tree's case below: `pytest -m slow`
def test_a_replaced_embedded_image_reruns_mean_rgb_and_training(workspace):
    assert_a_replaced_image_reruns_the_grid(workspace, workspace / "data/embedded", tiny_params()["runs"])


@pytest.mark.slow  # a second DVC project, about 45 s: `pytest -m slow`
def test_a_replaced_image_in_an_external_tree_reruns_mean_rgb_and_training(workspace, tmp_path):
    external = tmp_path / "imagenet"  # a dataset outside the workspace, as ImageNet on a shared disk
    shutil.copytree(workspace / "data/embedded", external, ignore=shutil.ignore_patterns(".vggrepro-embedded"))
    params = tiny_params()
    params["data"] = {"source": "ilsvrc2012", "root": str(external), "workers": 0}
    params["runs"] = {"A_256": params["runs"]["A_256"]}
    project = make_project(tmp_path / "project", params)
    run([tool("dvc"), "init", "--no-scm", "-q"], project)
    run([tool("dvc"), "config", "core.analytics", "false"], project)
    run([tool("dvc"), "repro"], project)
    assert snakemake_plan(project) == set()
    assert_a_replaced_image_reruns_the_grid(project, external, params["runs"])


@pytest.mark.slow  # four reruns under Snakemake, about 2 minutes: `pytest -m slow`
def test_an_output_edited_or_deleted_by_hand_reruns_its_stage_in_both_engines(workspace):
    """DVC by the outputs' hashes; Snakemake by a missing file, or by the record each stage
    command leaves of its outputs (vggrepro.engine.outputs_record) for an edited one."""
    # Whatever an earlier test left stale, brought up to date in both engines' records: DVC
    # reruns (or restores from its run cache) what its lock file does not describe.
    run([tool("dvc"), "repro"], workspace)
    run([tool("snakemake"), "--cores", "2"], workspace)
    finished = fingerprint(workspace)
    cases = {"reports/results.md": "report", "runs/B_256/eval.json": "evaluate_B_256"}  # a final and a middle one
    for out, stage in cases.items():
        for how in ("edited", "deleted"):
            path = workspace / out
            if how == "edited":
                path.write_bytes(path.read_bytes() + b"\n")
            else:
                path.unlink()
            assert stage in dvc_changed(workspace), (out, how)
            assert stage in snakemake_plan(workspace), (out, how)
            run([tool("snakemake"), "--cores", "2"], workspace)
            assert fingerprint(workspace) == finished, (out, how)
            assert dvc_changed(workspace) == {"validate"}, (out, how)
    # A file touched, not changed, or restored by DVC is not an edit.
    os.utime(workspace / "reports/results.md")
    assert snakemake_plan(workspace) == set()
