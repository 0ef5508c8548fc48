"""The package's rooms and who may import what (src/vggrepro/*/__init__.py says it in two lines),
defaults in the schema only, every path the project writes in vggrepro.paths."""

import ast
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, make_project, tiny_params
from vggrepro import paths
from vggrepro.engine import registry
from vggrepro.params import load_params, parse_params, schema

PACKAGE = ROOT / "src" / "vggrepro"
PAPER_CODE = {"cli", "params", "paths", "table1", "model", "training", "schedule", "protocols", "metrics", "published", "prediction"}
ROOMS = {"data", "stages", "report", "engine", "runtime", "bench"}


def module_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(p for p in rel.parts if p != "__init__")


def imported(path: Path) -> set[str]:
    """The vggrepro modules (or names of them) one source file imports, at any depth."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m == "vggrepro" or m.startswith("vggrepro.")}


SOURCES = sorted(PACKAGE.rglob("*.py"))


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ROOMS) else "top"


def test_the_top_level_is_the_papers_code_and_labelled_rooms():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert top == PAPER_CODE, f"top-level modules {sorted(top)}; expected {sorted(PAPER_CODE)}"
    assert folders == ROOMS
    for name in ROOMS:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc and re.search(r"import", doc, re.I), f"{name}/__init__.py must say what lives there and what it may import"


@pytest.mark.parametrize("path", [p for p in SOURCES if "/runtime/" in p.as_posix()], ids=lambda p: p.name)
def test_runtime_imports_nothing_outside_itself(path):
    outside = {m for m in imported(path) if not m.startswith("vggrepro.runtime")}
    assert not outside, f"{path.name} imports {sorted(outside)}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_of(p))
def test_imports_run_downward(path):
    """engine/ is for the CLI and the Snakefile; stages do not import each other; the paper's
    code, data/ and report/ never import a stage, engine/ or bench/; data/ never imports report/
    (a corrected paper number must not rerun a training)."""
    module = module_of(path)
    mine = room(module)
    for target in imported(path):
        theirs = room(target)
        if theirs == "engine":
            assert mine in ("engine", "bench") or module == "vggrepro.cli", (
                f"{module} imports {target}"
            )
        if theirs == "stages" and target.count(".") >= 2 and target.split(".")[2] not in ("StageRun", "run_stage"):
            assert mine == "bench" or module in ("vggrepro.cli",) and target.split(".")[2] in (
                "lock_stage", "StageRunning"), f"{module} imports {target}"
        if theirs == "report":
            assert mine not in ("data", "runtime", "engine", "top"), f"{module} imports {target}"
        if theirs == "bench":
            assert mine == "bench" or module == "vggrepro.cli", f"{module} imports {target}"


def test_registry_module_names_are_modules():
    """registry names stage modules and the validate stage's module as strings: each must be a
    module of the package, or building the graph fails (it does; this says which)."""
    kinds = {s.cmd.split()[1] for s in registry.snakemake_stages(registry.build(load_params(ROOT / "params.yaml")))}
    for kind in kinds:
        assert (PACKAGE / "stages" / f"{kind}.py").is_file(), kind
    assert (PACKAGE.parent / (registry.GUARD_MODULE.replace(".", "/") + ".py")).is_file()


def test_every_declared_output_lies_in_a_project_output_path():
    stages = registry.build(load_params(ROOT / "params.yaml"))
    roots = paths.PROJECT_OUTPUTS
    for stage in stages:
        for out in stage.outs:
            assert any(out.path == r or out.path.startswith(r + "/") for r in roots), (
                f"{stage.name} writes {out.path}, outside vggrepro.paths.PROJECT_OUTPUTS {roots}"
            )


def test_no_module_names_a_vggrepro_path_but_paths():
    """Every .vggrepro/ path is written out in vggrepro/paths.py and nowhere else."""
    for path in SOURCES:
        if path.name == "paths.py" and path.parent == PACKAGE:
            continue
        code = ast.parse(path.read_text())
        literals = [n.value for n in ast.walk(code) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        docstrings = {ast.get_docstring(n, clean=False) for n in ast.walk(code)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))}
        named = [s for s in literals if s not in docstrings and re.search(r"(^|/)\.vggrepro/", s)]
        assert not named, f"{path.relative_to(ROOT)} names {named}; use vggrepro.paths"


def test_defaults_come_from_the_schema():
    """A key the file leaves out takes the schema's default, at every depth; a key it gives wins."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, key in (("train", "nproc"), ("train", "device"), ("data", "workers"), ("evaluate", "pool")):
        raw[section].pop(key, None)
    del raw["data"]["embedded"]
    params = parse_params(raw)
    props = schema()["properties"]
    assert params.raw["train"]["nproc"] == props["train"]["properties"]["nproc"]["default"] == 1
    assert params.raw["train"]["device"] == "auto" and params.raw["data"]["workers"] == 2
    assert params.raw["evaluate"]["pool"] == "scores"
    assert params.raw["data"]["embedded"]["train_per_class"] == 200  # a defaulted section's own defaults
    assert not params.given_key("train.nproc") and params.given_key("train.lr")
    assert params.raw["train"]["lr"] == raw["train"]["lr"]


def test_a_default_changed_in_the_schema_takes_effect(tmp_path):
    """In a copy of the project whose schema says data.workers 0, train.lr_patience 7 and
    evaluate.pool posteriors, a params file without those keys resolves to them: in
    `vggrepro validate` and in the knob files the stages read."""
    params = copy.deepcopy(tiny_params())
    params["data"].pop("workers", None)
    params["train"].pop("lr_patience", None)
    params["evaluate"].pop("pool", None)
    project = make_project(tmp_path / "p", params)
    schema_file = project / "src" / "vggrepro" / "params.schema.yaml"
    text = schema_file.read_text()
    text = re.sub(r"(lr_patience: \{.*?default: )2\}", r"\g<1>7}", text)
    text = re.sub(r"(\n        enum: \[scores, posteriors\]\n        default: )scores", r"\1posteriors", text)
    text = re.sub(r"(changes speed only, never results.\"\n        type: integer\n        minimum: 0\n        maximum: 64\n        default: )2",
                  r"\g<1>0", text, flags=re.I)
    assert text.count("default: 7}") == 1 and "default: posteriors" in text and text != schema_file.read_text()
    schema_file.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(project / "src")}  # the copy's package, not the installed one

    def run(*args):
        done = subprocess.run([sys.executable, *args], cwd=project, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("-m", "vggrepro", "validate", "--write-knobs")
    knobs = project / paths.KNOBS_DIR
    train = json.loads((knobs / "train_A_256.json").read_text())
    evaluate = json.loads((knobs / "evaluate_A_256.json").read_text())
    assert train["train.lr_patience"] == 7 and evaluate["evaluate"]["pool"] == "posteriors"
    assert run("-c", "from vggrepro.params import load_params; print(load_params().raw['data']['workers'])").strip() == "0"
