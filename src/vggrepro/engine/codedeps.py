"""The source files a stage runs, found from its imports, not from a list kept by hand.

A stage depends on its module, every vggrepro module it imports (at the top or inside a
function, followed recursively), the `__init__.py` of each package on the way, and the data
files of the package those modules name (paper.yaml, params.schema.yaml). Editing any of them
reruns the stage in both engines. Imports made by name at run time (importlib) are not seen:
the stage modules make none. No torch import: the engines call this on every parse.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import vggrepro

PACKAGE = vggrepro.__name__
# The folder the package is imported from (src/vggrepro in a checkout), wherever this module sits.
PACKAGE_DIR = Path(vggrepro.__file__).resolve().parent
SRC_PREFIX = f"src/{PACKAGE}"  # where the package lives in the project, as the engines name it
DATA_SUFFIXES = (".yaml", ".yml", ".json", ".csv")


def _module_file(module: str, package_dir: Path) -> Path | None:
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = package_dir.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path, package_dir: Path) -> str:
    rel = path.relative_to(package_dir).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([PACKAGE, *parts])


def _imports(path: Path, package_dir: Path) -> tuple[set[str], set[Path]]:
    """(modules imported, package data files named) by one source file."""
    st = path.stat()
    return _parse(path, package_dir, st.st_mtime_ns, st.st_size)


@cache  # each file is parsed once per process and version, however many stages import it
def _parse(path: Path, package_dir: Path, mtime_ns: int, size: int) -> tuple[set[str], set[Path]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_name(path, package_dir)
    is_package = path.name == "__init__.py"
    modules: set[str] = set()
    data: set[Path] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = here.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            modules.add(origin)
            modules.update(f"{origin}.{alias.name}" for alias in node.names)  # submodules
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.endswith(DATA_SUFFIXES) and "/" not in node.value:
                candidate = path.parent / node.value
                if candidate.is_file():
                    data.add(candidate)
                elif (package_dir / node.value).is_file():
                    data.add(package_dir / node.value)
    return {m for m in modules if m == PACKAGE or m.startswith(PACKAGE + ".")}, data


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def closure(module: str, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """Every package file that importing `module` runs or reads, sorted. Raises LookupError if
    `module` itself is no module of the package (a stage module renamed or moved)."""
    if _module_file(module, package_dir) is None:
        raise LookupError(f"{module}: no such module under {package_dir}")
    files: set[Path] = set()
    todo = [module]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_parents(name))
        path = _module_file(name, package_dir)
        if path is None:
            continue  # a name imported from a module, not a module itself
        files.add(path)
        modules, data = _imports(path, package_dir)
        files.update(data)
        todo.extend(modules)
    return sorted(files)


@cache
def stage_code(module: str) -> tuple[str, ...]:
    """closure(module) as project paths (src/vggrepro/...), the form both engines take."""
    return tuple(f"{SRC_PREFIX}/{p.relative_to(PACKAGE_DIR).as_posix()}" for p in closure(module))
