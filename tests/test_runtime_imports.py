"""The runtime stands without the demo fleet: it imports no fleet code and no `gguf`.

The fleet (`fleet/`, distribution `auditor-fleet`, package `auditor_fleet`) is a tool beside
the auditor and depends on it, never the other way; only the fleet's weight surgery needs
`gguf`. The import graphs of the providers and of the fleet have no cycle.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]

RUNTIME_MODULES = [
    "auditor.cli",
    "auditor.rounds.run",
    "auditor.judging.findings",
    "auditor.operations.daemon",
    "auditor.web.app",
]
FORBIDDEN = ("auditor_fleet", "gguf")


@pytest.mark.slow  # a fresh interpreter importing the whole runtime: about 4 s
def test_importing_the_runtime_loads_no_fleet_code_and_no_gguf() -> None:
    script = (
        "import json, sys\n"
        + "".join(f"import {name}\n" for name in RUNTIME_MODULES)
        + "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert set(RUNTIME_MODULES) <= set(loaded)  # the modules named are the ones imported
    leaked = [m for m in loaded if m.partition(".")[0] in FORBIDDEN]
    assert leaked == []


def test_gguf_is_a_dependency_of_the_fleet_not_of_the_auditor() -> None:
    def names(pyproject: Path) -> set[str]:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        return {Requirement(r).name.lower() for r in project["dependencies"]}

    runtime = names(ROOT / "pyproject.toml")
    fleet = names(ROOT / "fleet" / "pyproject.toml")
    assert "gguf" not in runtime
    assert "auditor-fleet" not in runtime
    assert {"gguf", "auditor"} <= fleet


def test_the_runtime_sources_name_no_fleet_module() -> None:
    """Not even lazily, but for the fleet commands (`auditor fleet ...`, `auditor demo`),
    which import the fleet when they run."""
    allowed = {("auditor/cli/fleet.py", "auditor_fleet")}
    offenders = []
    for path in sorted((ROOT / "auditor").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for module, line in _imports(path, _module_name(path, ROOT)):
            top = module.partition(".")[0]
            if top in FORBIDDEN and (rel, top) not in allowed:
                offenders.append(f"{rel}:{line}: {module}")
    assert offenders == []


@pytest.mark.parametrize(
    ("package", "root"),
    [("auditor.providers", ROOT / "auditor"), ("auditor_fleet", ROOT / "fleet")],
    ids=["auditor.providers", "auditor_fleet"],
)
def test_no_import_cycle(package: str, root: Path) -> None:
    """Counting every import: lazy ones inside functions and `TYPE_CHECKING` ones too."""
    folder = root.joinpath(*package.split("."))
    modules = {_module_name(path, root): path for path in folder.rglob("*.py")}
    graph = {
        name: {m for m, _ in _imports(path, name) if m in modules and m != name}
        for name, path in modules.items()
    }
    assert _cycles(graph) == []


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> list[tuple[str, int]]:
    """Every module `path` imports, anywhere in it, with the line: `from a import b` yields
    both `a` and `a.b` (b may be a submodule); relative imports are resolved."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            found.append((target, node.lineno))
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found
