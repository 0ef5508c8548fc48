"""What both engines run before any stage touches an output.

DVC runs it as its first stage (`vggrepro validate --write-knobs`; every other stage reads a
knob file it writes, so DVC stops here before deleting anything); the Snakefile runs it at
parse time. One code path, so both engines refuse the same files with the same line:

1. params.yaml is read and validated (vggrepro.params);
2. the workspace is checked (vggrepro.data.embedded_owner: no folder the generator did not make);
3. dvc.yaml is checked against the registry (DVC would otherwise run a stale graph);
4. each stage's knob file is written, only where its values changed;
5. the dataset folder's stamp is written, only when a file in it changed (vggrepro.data.datastamp).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from vggrepro import paths
from vggrepro.data import datastamp, embedded_owner
from vggrepro.engine import codedeps, registry
from vggrepro.params import Params, ParamsError, load_params
from vggrepro.runtime import io

# What the last full pass checked (paths.VALIDATED), so DVC's `validate`, which runs on every
# call, can skip the checks when nothing they read has changed (params.yaml, dvc.yaml, the
# package's files) and only refresh the dataset stamp.
RECORD = paths.VALIDATED


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


def write_code_digests(stages: list[registry.Stage]) -> list[str]:
    """Writes every stage's code digest file (paths.code_digest); returns the stages whose code
    changed. The files read are the package's own, where it runs from (src/ in a checkout)."""
    digests: dict[str, str] = {}
    changed = []
    for stage in registry.snakemake_stages(stages):
        lines = []
        for name in stage.code:
            if name not in digests:
                source = codedeps.PACKAGE_DIR / name.removeprefix(codedeps.SRC_PREFIX + "/")
                digests[name] = hashlib.blake2b(source.read_bytes(), digest_size=16).hexdigest()
            lines.append(f"{digests[name]}  {name}\n")
        path = Path(paths.code_digest(stage.name))
        text = "".join(lines)
        if not path.is_file() or path.read_text() != text:
            io.write_text(path, text)
            changed.append(stage.name)
    return changed


def guard(params_path: str | Path = registry.PARAMS_FILE, *, dvc_yaml: bool = True) -> tuple[Params, list[registry.Stage]]:
    """Validates everything, then writes the knob files; raises ParamsError with one line."""
    key = _inputs_key(params_path, dvc_yaml)
    params = load_params(params_path)
    embedded_owner.check(params)
    stages = registry.build(params)
    if dvc_yaml:
        check_dvc_yaml(stages)
    write_knobs(params, stages)
    write_code_digests(stages)
    root, source = params.data_root, params.raw["data"]["source"]
    datastamp.write(root, source)
    io.write_text(RECORD, json.dumps({"key": key, "data_root": str(root), "source": source}, indent=1) + "\n")
    return params, stages


def unchanged_since_last_guard(params_path: str | Path = registry.PARAMS_FILE) -> bool:
    """If nothing the last full guard read has changed, refreshes the dataset stamp and says so."""
    try:
        record = json.loads(Path(RECORD).read_text())
    except (OSError, ValueError):
        return False
    if record.get("key") != _inputs_key(params_path, True) or "source" not in record:
        return False
    datastamp.write(record["data_root"], record["source"])
    return True


def _inputs_key(params_path: str | Path, dvc_yaml: bool) -> str:
    """A digest of params.yaml, dvc.yaml and the package's files (their sizes and times)."""
    h = hashlib.blake2b(digest_size=16)
    for path in (Path(params_path), *([Path(registry.DVC_YAML)] if dvc_yaml else [])):
        h.update(path.read_bytes() if path.is_file() else b"(absent)")
    for path in sorted(codedeps.PACKAGE_DIR.rglob("*")):
        if path.suffix in (".py", ".yaml"):
            st = path.stat()
            h.update(f"{path.relative_to(codedeps.PACKAGE_DIR)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()
