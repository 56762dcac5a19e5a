"""The package map as a test: each folder imports only from the layers below it, and nothing imports in a
circle. Imports are read from the source (``ast``), including those inside functions and under
``TYPE_CHECKING``: a circle that only the type checker sees is still a circle for a reader."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = (
    "common",
    "protocol",
    "trust",
    "server",
    "nat",
    "client",
    "attacks",
    "seedclient",
    "scenarios",
    "fuzz",
    "tests",
)
SHIPPED = frozenset({"common", "protocol", "trust", "server", "nat", "client", "attacks", "seedclient"})
"""What the lab image carries; scenarios and tests sit on top and may import any of it."""
CLIENT_LAYERS = frozenset(
    {"client.turn", "client.engine", "client.tunnel", "client.daemon", "client.cli", "client.diagnostics"}
)

LAYERS: dict[str, frozenset[str]] = {
    "common": frozenset(),
    "protocol": frozenset({"common"}),
    "trust": frozenset({"common"}),
    "server": frozenset({"common", "protocol", "trust"}),
    "nat": frozenset({"common"}),
    "client.turn": frozenset({"common", "protocol"}),
    "client.diagnostics": frozenset({"common", "protocol", "trust", "client.turn"}),
    "client.engine": frozenset({"common", "protocol", "trust", "client.turn"}),
    "client.tunnel": frozenset({"common", "protocol", "trust", "client.engine"}),
    "client.daemon": frozenset({"common", "protocol", "trust", "client.turn", "client.engine", "client.tunnel"}),
    "client.cli": frozenset(
        {"common", "protocol", "trust", "client.turn", "client.engine", "client.daemon", "client.diagnostics"}
    ),
    "client": frozenset({"client.cli"}),  # client/__main__.py
    "attacks": frozenset({"common", "protocol"}),
    "seedclient": frozenset(),  # the seed's client knows nothing of natlab
    "scenarios": SHIPPED | CLIENT_LAYERS,
    "fuzz": SHIPPED | CLIENT_LAYERS,
    "tests": SHIPPED | CLIENT_LAYERS | {"scenarios", "fuzz"},
}
"""Folder -> the folders it may import from (besides itself); the README's Design section shows this map."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """The project modules ``name`` imports (``from x import y`` counts ``x.y`` when that is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base]).strip(".")
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        yield from (target for target in targets if target in MODULES)


GRAPH = {name: sorted(set(_imports(name, path)) - {name}) for name, path in MODULES.items()}


def _layer(module: str) -> str:
    """The longest folder of LAYERS that holds ``module``."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in LAYERS:
            return ".".join(parts[:end])
    raise AssertionError(f"{module} is in no layer of the map: add its folder to LAYERS (and the README)")


def test_every_module_found() -> None:
    """The walk sees the tree (a broken walk would make the tests below pass vacuously)."""
    assert {"client.engine.core", "client.daemon.agent", "client.cli.main", "protocol.messages"} <= set(MODULES)
    assert "client.engine.core" in GRAPH["client.daemon.agent"]
    assert "protocol" in GRAPH["server.handler"] or "protocol.messages" in GRAPH["server.handler"]
    assert "scenarios.classifiers" in GRAPH["tests.test_classifiers"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_downward(module: str) -> None:
    layer = _layer(module)
    upward = [target for target in GRAPH[module] if _layer(target) not in LAYERS[layer] | {layer}]
    assert not upward, f"{module} ({layer}) imports {upward}; {layer} may import only {sorted(LAYERS[layer])}"


def test_no_import_circles() -> None:
    """Depth-first search for a back edge; the failure names the whole circle."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        stack.append(module)
        for target in GRAPH[module]:
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (circle := visit(target)):
                return circle
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(GRAPH):
        if module not in state and (circle := visit(module)):
            pytest.fail("import circle: " + " -> ".join(circle))


def test_the_circle_finder_finds_circles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GRAPH, "client.engine.core", [*GRAPH["client.engine.core"], "client.daemon.agent"])
    with pytest.raises(pytest.fail.Exception, match=r"import circle: .*client\.daemon\.agent"):
        test_no_import_circles()
