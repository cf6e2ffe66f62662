"""The package's layers, enforced: which subpackage may import which, and no import cycles.

Read from the source with `ast` (nothing is imported), so a rule broken anywhere, even in a
function-level or TYPE_CHECKING import, fails here. docs/architecture.md draws the layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "reflexio_mcp"

BACKENDS = ("backends.embedded", "backends.reflexio")
MAY_IMPORT: dict[str, frozenset[str]] = {
    "secrets": frozenset(),
    "core": frozenset({"secrets"}),
    "backends": frozenset({"core"}),
    "backends.embedded": frozenset({"core", "backends"}),
    "backends.reflexio": frozenset({"core", "backends"}),
    "backends.from_settings": frozenset({"core", "backends", *BACKENDS, "settings"}),
    "capture": frozenset({"core", "secrets", "backends", "backends.from_settings", "settings"}),
    "surface": frozenset({"core", "secrets"}),
    "settings": frozenset({"core"}),
    "transports": frozenset({"core", "surface", "settings"}),
    "app": frozenset(
        {
            "core",
            "secrets",
            "backends",
            *BACKENDS,
            "backends.from_settings",
            "surface",
            "settings",
            "transports",
        }
    ),
    "cli": frozenset(
        {
            "core",
            "secrets",
            "backends",
            *BACKENDS,
            "backends.from_settings",
            "capture",
            "surface",
            "settings",
            "transports",
            "app",
        }
    ),
    "version": frozenset(),
    "__main__": frozenset({"cli"}),
}
"""Each layer (the longest matching prefix of a module's path) and the layers it may import
besides itself. `backends` alone is what both backends share (the SQLite file); neither
backend may import the other. `version` is the package's own __init__: every layer may read
the version. `backends.from_settings` chooses one of them; `capture` (import and the hooks)
publishes through whichever it chose, without the MCP SDK."""

NO_MCP = frozenset(
    {
        "secrets",
        "core",
        "backends",
        "backends.embedded",
        "backends.reflexio",
        "backends.from_settings",
        "capture",
    }
)
"""Layers that must not import the MCP SDK: the data model and the stores work without it."""
MCP_PACKAGES = ("mcp", "mcp_types")


def layer_of(module: str) -> str:
    """'backends.reflexio.outbox' -> 'backends.reflexio'; '' (the package) -> 'version'."""
    if module == "":
        return "version"
    best = max((name for name in MAY_IMPORT if _within(module, name)), key=len, default=None)
    if best is None:
        raise AssertionError(f"reflexio_mcp.{module} is in no layer: add it to MAY_IMPORT")
    return best


def _within(module: str, name: str) -> bool:
    return module == name or module.startswith(f"{name}.")


def modules(package: Path) -> dict[str, Path]:
    """Every module of the package by dotted name under it ('' for the package itself)."""
    found: dict[str, Path] = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(path: Path, module: str, known: Mapping[str, Path]) -> Iterator[tuple[str, int]]:
    """(imported name, line) for each import in the file: ours as a dotted name under the
    package ('core.errors'), others as '!' + their top-level package ('!mcp')."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = module.split(".") if module else []
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield _named(alias.name, known), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here if is_package else here[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
                stem = target
            else:
                target = node.module or ""
                if target != "reflexio_mcp" and not target.startswith("reflexio_mcp."):
                    yield f"!{target.split('.')[0]}", node.lineno
                    continue
                stem = target.removeprefix("reflexio_mcp").removeprefix(".")
            for alias in node.names:
                child = f"{stem}.{alias.name}" if stem else alias.name
                yield (child if child in known else stem), node.lineno


def _named(name: str, known: Mapping[str, Path]) -> str:
    if name != "reflexio_mcp" and not name.startswith("reflexio_mcp."):
        return f"!{name.split('.')[0]}"
    stem = name.removeprefix("reflexio_mcp").removeprefix(".")
    while stem and stem not in known and stem.rpartition(".")[0] in known:
        stem = stem.rpartition(".")[0]  # `import reflexio_mcp.core.errors.X` names a module
    return stem


def violations(package: Path) -> list[str]:
    """Every import that breaks a layer rule, as 'file:line: what and why'."""
    known = modules(package)
    found: list[str] = []
    for module, path in known.items():
        layer = layer_of(module)
        for name, line in sorted(set(imports(path, module, known))):
            where = f"{path.relative_to(package.parent)}:{line}"
            if name.startswith("!"):
                if layer in NO_MCP and name[1:] in MCP_PACKAGES:
                    found.append(f"{where}: {layer} imports the MCP SDK ({name[1:]})")
                continue
            target = layer_of(name)
            if target not in (layer, "version") and target not in MAY_IMPORT[layer]:
                found.append(f"{where}: {layer} may not import {target} (reflexio_mcp.{name})")
    return found


def cycles(package: Path) -> list[list[str]]:
    """The import cycles between modules (strongly connected components of more than one)."""
    known = modules(package)
    graph = {
        module: {
            name
            for name, _ in imports(path, module, known)
            if not name.startswith("!") and name != module and name in known and name != ""
        }
        for module, path in known.items()
    }
    return [sorted(c) for c in _components(graph) if len(c) > 1]


def _components(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    found.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_every_import_keeps_to_its_layer() -> None:
    assert violations(PACKAGE) == []


def test_no_module_imports_itself_round_a_cycle() -> None:
    assert cycles(PACKAGE) == []


def test_every_subpackage_is_a_layer() -> None:
    for module in modules(PACKAGE):
        layer_of(module)  # raises for a module no rule covers


def _plant(tmp_path: Path, files: Mapping[str, str]) -> Path:
    package = tmp_path / "reflexio_mcp"
    for name, text in {"__init__.py": "", **files}.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(package).parents:
            (package / parent / "__init__.py").touch()
        path.write_text(text)
    return package


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"core/models.py": "from reflexio_mcp.surface.tools import x\n"},
            "reflexio_mcp/core/models.py:1: core may not import surface",
        ),
        (
            {"surface/tools.py": "def f():\n    from reflexio_mcp.backends.embedded import store"},
            "reflexio_mcp/surface/tools.py:2: surface may not import backends.embedded",
        ),
        (
            {"backends/embedded/store.py": "from ...backends.reflexio import outbox\n"},
            "reflexio_mcp/backends/embedded/store.py:1: backends.embedded may not import "
            "backends.reflexio",
        ),
        (
            {"secrets/scanner.py": "import reflexio_mcp.core.models\n"},
            "reflexio_mcp/secrets/scanner.py:1: secrets may not import core",
        ),
        (
            {"core/backend.py": "from mcp.server import MCPServer\n"},
            "reflexio_mcp/core/backend.py:1: core imports the MCP SDK",
        ),
        (
            {"surface/state.py": "from reflexio_mcp import settings\n", "settings.py": ""},
            "reflexio_mcp/surface/state.py:1: surface may not import settings",
        ),
    ],
)
def test_a_planted_violation_is_found(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    found = violations(_plant(tmp_path, files))
    assert [line.split(" (")[0] for line in found] == [expected]


def test_a_planted_cycle_is_found(tmp_path: Path) -> None:
    package = _plant(
        tmp_path,
        {
            "core/models.py": "def f():\n    from reflexio_mcp.core.errors import E\n",
            "core/errors.py": "from reflexio_mcp.core import models\n",
            "core/limits.py": "from reflexio_mcp.core import errors\n",
        },
    )
    assert cycles(package) == [["core.errors", "core.models"]]
