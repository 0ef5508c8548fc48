"""What both engines run before any stage touches an output.

DVC runs it as its first stage (`vggrepro validate --write-knobs`; every other stage reads a
knob file it writes, so DVC stops here before deleting anything); the Snakefile runs it at
parse time. One code path, so both engines refuse the same files with the same line:

1. params.yaml is read and validated (vggrepro.params);
2. the workspace is checked (vggrepro.workspace: no folder the generator did not make);
3. dvc.yaml is checked against the registry (DVC would otherwise run a stale graph);
4. each stage's knob file is written, only where its values changed;
5. the dataset folder's stamp is written, only when a file in it changed (vggrepro.datastamp).
"""

from __future__ import annotations

from pathlib import Path

from vggrepro import datastamp, io, paths, registry, workspace
from vggrepro.params import Params, ParamsError, load_params


def check_dvc_yaml(stages: list[registry.Stage], path: str | Path = registry.DVC_YAML) -> None:
    path = Path(path)
    if path.exists() and path.read_text() != registry.dvc_yaml(stages):
        raise ParamsError(
            f"{path} is stale: it differs from the stage graph params.yaml describes; "
            "run `vggrepro dvc-yaml` (then `dvc repro` again)"
        )


def write_knobs(params: Params, stages: list[registry.Stage]) -> list[str]:
    """Writes every stage's knob file; returns the stages whose knobs changed."""
    changed = []
    for stage in registry.snakemake_stages(stages):
        path = Path(paths.knobs(stage.name))
        text = registry.knobs(params, stage)
        if not path.is_file() or path.read_text() != text:
            io.write_text(path, text)
            changed.append(stage.name)
    return changed


def guard(params_path: str | Path = registry.PARAMS_FILE, *, dvc_yaml: bool = True) -> tuple[Params, list[registry.Stage]]:
    """Validates everything, then writes the knob files; raises ParamsError with one line."""
    params = load_params(params_path)
    workspace.check(params)
    stages = registry.build(params)
    if dvc_yaml:
        check_dvc_yaml(stages)
    write_knobs(params, stages)
    datastamp.write(workspace.data_root(params))
    return params, stages
