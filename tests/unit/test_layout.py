"""The layout's import rules (README "Layout"): dependencies point one way, pure packages
import no framework, nothing outside tests/ imports tests, the tests' helpers
(tests/support) import no test module, and no import cycle anywhere (tests included)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "adapters",
    "domain",
    "evals",
    "fakes",
    "graph",
    "metricsql",
    "nodes",
    "observability",
    "service",
    "sqlsafety",
)
HTTP_MODULES = (
    "service.app",
    "service.deps",
    "service.middleware",
    "service.problems",
    "service.routes",
    "service.schemas",
    "service.cli",
)


def modules(
    root: Path = ROOT, packages: tuple[str, ...] = (*PACKAGES, "bench", "tests")
) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `packages` under `root`."""
    out = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imports(path: Path) -> Iterator[str]:
    """Imported module names (`from a.b import c` yields a.b and a.b.c), wherever the
    import statement is: top level, inside a function, or under `if TYPE_CHECKING`."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def _under(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == r or name.startswith(r + ".") for r in roots)


MODULES = modules()


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("adapters", ("fastapi", "starlette", "service", "graph", "nodes")),
        ("domain", ("fastapi", "starlette", "service", "graph", "nodes", "adapters", "langgraph")),
        (
            "sqlsafety",
            ("fastapi", "starlette", "service", "graph", "nodes", "adapters", "langgraph"),
        ),
        (
            "metricsql",
            ("fastapi", "starlette", "service", "graph", "nodes", "adapters", "langgraph"),
        ),
        ("nodes", ("fastapi", "starlette", "service", "adapters")),
        ("graph", ("fastapi", "service.schemas", "service.problems", "service.routes")),
        ("fakes", ("service", "graph", "nodes", "tests")),
        (
            "observability",
            ("fastapi", "starlette", "service", "graph", "nodes", "adapters", "langgraph"),
        ),
        ("evals", ("tests",)),
        (  # the accuracy benchmark's scoring is pure (tested on its own)
            "evals.accuracy.scoring",
            ("fastapi", "starlette", "service", "graph", "nodes", "adapters", "langgraph", "fakes"),
        ),
        ("bench", ("tests",)),
    ],
)
def test_dependencies_point_one_way(package: str, forbidden: tuple[str, ...]) -> None:
    bad = [
        f"{name} imports {imp}"
        for name, path in MODULES.items()
        if _under(name, (package,))
        for imp in imports(path)
        if _under(imp, forbidden)
    ]
    assert bad == []


def test_only_the_http_layer_speaks_http() -> None:
    bad = [
        f"{name} imports {imp}"
        for name, path in MODULES.items()
        if _under(name, ("service",)) and not _under(name, HTTP_MODULES)
        for imp in imports(path)
        if _under(imp, ("fastapi", "service.schemas", "service.problems", "service.routes"))
    ]
    assert bad == []


def import_cycles(mods: dict[str, Path] = MODULES) -> list[list[str]]:
    """Every import cycle among the modules `mods` (function-level imports count: a cycle
    deferred into a function is still one)."""
    graph = {
        name: {imp for imp in imports(path) if imp in mods and imp != name}
        for name, path in mods.items()
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    # a package's __init__ re-exporting its own modules is not a cycle between modules
    return [
        c
        for c in cycles
        if len({m.split(".")[0] for m in c}) > 1 or not any(m in PACKAGES for m in c)
    ]


def test_no_import_cycle_among_modules() -> None:
    assert import_cycles() == []


def test_the_cycle_check_sees_function_level_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import g\n")
    (pkg / "b.py").write_text("def g():\n    from pkg.a import x  # deferred, still a cycle\n")
    mods = modules(tmp_path, ("pkg",))
    assert "pkg.a" in set(imports(mods["pkg.b"]))
    assert import_cycles(mods) == [["pkg.a", "pkg.b", "pkg.a"]]
    (pkg / "b.py").write_text("def g():\n    pass\n")
    assert import_cycles(mods) == []


def test_the_tests_helpers_import_no_test_module() -> None:
    bad = [
        f"{name} imports {imp}"
        for name, path in MODULES.items()
        if _under(name, ("tests.support",))
        for imp in imports(path)
        if _under(imp, ("tests",)) and not _under(imp, ("tests.support",))
    ]
    assert bad == []


def test_the_layout_test_sees_the_project() -> None:
    assert {
        "service.wiring",
        "domain.ports",
        "fakes.tcp_proxy",
        "service.routes.data",
        "tests.support.servers",
        "tests.conftest",
    } <= set(MODULES)
    assert "fastapi" in set(imports(MODULES["service.app"])) | set(imports(MODULES["service.deps"]))


MAX_LINES = 420
# Data-heavy modules (profiles, datasets) may be longer; nothing else.
DATA_HEAVY: frozenset[str] = frozenset()


def test_modules_stay_small() -> None:
    """Every module but the test modules themselves (the tests' helpers count)."""
    long = {
        name: n
        for name, path in MODULES.items()
        if not _under(name, ("tests",)) or _under(name, ("tests.support", "tests.conftest"))
        if (n := len(path.read_text().splitlines())) > MAX_LINES and name not in DATA_HEAVY
    }
    assert long == {}
