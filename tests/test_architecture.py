"""The package's arrows point one way: api → search → services → ai → db, and nothing below the API knows Flask.

Read from the source with `ast` (nothing imported), so a new import that breaks the layering fails here
with the file that made it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "altus4"

# lowest first; an import may only point at an earlier layer (or within its own)
LAYERS = ["db", "ai", "services", "search"]
# code that runs for any caller, request or not: must not reach the web framework or the API
FRAMEWORK_FREE = {
    "db",
    "ai",
    "services",
    "search",
    "jobs",
    "context",
    "config",
    "errors",
    "redis_store",
    "security",
    "write_behind",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    base = PACKAGE.parent.joinpath(*dotted.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _unit(dotted: str) -> str:
    """The first level below `altus4` (a subpackage or a top-level module); `altus4` itself is the factory."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def import_graph() -> dict[str, dict[str, set[str]]]:
    """unit -> imported unit (or 'flask') -> the files that import it."""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in PACKAGE.rglob("*.py"):
        source = _module_name(path)
        where = str(path.relative_to(PACKAGE.parent))
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [
                    f"{node.module}.{a.name}" if _is_module(f"{node.module}.{a.name}") else node.module
                    for a in node.names
                ]
            for target in targets:
                top = target.split(".")[0]
                if top == "flask":
                    graph[_unit(source)]["flask"].add(where)
                elif top == "altus4" and _unit(target) != _unit(source):
                    graph[_unit(source)][_unit(target)].add(where)
    return graph


def _cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt == "flask":
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_units():
    assert _cycles(import_graph()) == []


def test_domain_layers_point_down():
    graph = import_graph()
    upward = [
        f"{unit} -> {target} ({', '.join(sorted(files))})"
        for unit in LAYERS
        for target, files in graph.get(unit, {}).items()
        if target in LAYERS and LAYERS.index(target) > LAYERS.index(unit)
    ]
    assert upward == []


def test_nothing_below_the_api_reaches_flask_or_the_api():
    graph = import_graph()
    leaks = [
        f"{unit} -> {target} ({', '.join(sorted(files))})"
        for unit in FRAMEWORK_FREE
        for target, files in graph.get(unit, {}).items()
        if target in ("flask", "api", "container", "__init__", "cli")
    ]
    assert leaks == []


def test_the_checker_sees_a_cycle_and_an_upward_arrow():
    """The checks above can fail: a made-up graph with a cycle and a db -> search arrow is caught."""
    graph = {"db": {"search": {"x.py"}}, "search": {"db": {"y.py"}}}
    assert _cycles(graph) == [["db", "search"]]
    assert LAYERS.index("search") > LAYERS.index("db")
