"""The registry's modules import one way (issue 20): no cycle among them, counting imports
inside functions too (the store once imported the holder inside a method)."""

from __future__ import annotations

import ast
from pathlib import Path

REGISTRY = Path(__file__).resolve().parents[2] / "adapters" / "registry"
PACKAGE = "adapters.registry"


def _imports(path: Path) -> set[str]:
    """The registry modules `path` imports, at any depth (functions, TYPE_CHECKING)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        out |= {
            n.split(".")[2]
            for n in names
            if n.startswith(PACKAGE + ".") and (REGISTRY / f"{n.split('.')[2]}.py").exists()
        }
    return out


def test_the_registry_modules_form_no_cycle() -> None:
    graph = {p.stem: _imports(p) for p in REGISTRY.glob("*.py") if p.stem != "__init__"}
    assert "holder" in graph and "store" in graph
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, "import cycle: " + " -> ".join((*path, module))
        if module in done:
            return
        for dep in sorted(graph[module]):
            visit(dep, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())
    assert "holder" not in graph["store"] and "store" in graph["holder"]
