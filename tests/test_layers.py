"""Folders are layers, and the layers are checked by walking every import."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

# evals -> agent -> tools | policies -> memory | pipelines -> config (../shared/STYLE.md): siblings never import
# each other; memory is the agent's recollection and needs only settings; policies decide from the platform's
# state, never from what the agent remembers. benchmarks/ measures every layer and nothing imports it.
ALLOWED = {
    "config": {"config"},
    "pipelines": {"pipelines", "config"},
    "memory": {"memory", "config"},
    "tools": {"tools", "memory", "pipelines", "config"},
    "policies": {"policies", "pipelines", "config"},
    "agent": {"agent", "tools", "policies", "memory", "pipelines", "config"},
    "evals": {"evals", "agent", "tools", "policies", "memory", "pipelines", "config"},
    "benchmarks": {"benchmarks", "evals", "agent", "tools", "policies", "memory", "pipelines", "config"},
}
AGENT_ONLY = {"langgraph", "openai", "slack_bolt", "slack_sdk"}
PROJECT = set(ALLOWED) | {"tests"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_layers_only_import_downwards() -> None:
    violations = []
    for layer, allowed in ALLOWED.items():
        for path in (REPO / layer).rglob("*.py"):
            for name in imports_of(path):
                if name in PROJECT and name not in allowed:
                    violations.append(f"{path.relative_to(REPO)} imports {name}")
                if name in AGENT_ONLY and layer not in {"agent", "evals", "benchmarks"}:
                    violations.append(f"{path.relative_to(REPO)} imports {name}, which only agent/ and evals/ may use")
    assert not violations, "\n".join(violations)


def test_tools_and_policies_never_import_each_other() -> None:
    for a, b in (("tools", "policies"), ("policies", "tools")):
        for path in (REPO / a).rglob("*.py"):
            assert b not in imports_of(path), f"{path} imports {b}: a tool must never approve itself"


def test_ray_stays_an_optional_extra() -> None:
    """Only the Ray executor imports ray, and only when a backfill asks for it: the platform runs without it."""
    importers = sorted(str(p.relative_to(REPO)) for layer in ALLOWED for p in (REPO / layer).rglob("*.py") if "ray" in imports_of(p))
    assert importers == ["pipelines/ray_executor.py"]
    source = (REPO / "pipelines/ray_executor.py").read_text()
    module_level = {n.names[0].name for n in ast.parse(source).body if isinstance(n, ast.Import)}
    assert "ray" not in module_level, "import ray inside the executor, so importing the module needs no Ray"
    for path in (REPO / "pipelines").rglob("*.py"):
        if path.name != "ray_executor.py":
            tree = ast.parse(path.read_text())
            top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
            assert "pipelines.ray_executor" not in top, f"{path.relative_to(REPO)} imports the Ray executor at module level"


def _module_imports(path: Path, package: str) -> set[str]:
    """Project modules `path` imports anywhere (functions included), except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == package}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == package:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in graph:
        if name not in index:
            visit(name)
    return circles


def test_no_import_circles_in_a_layer() -> None:
    """Modules of one folder form no circle (STYLE.md: small modules, one concept each, imports one way).

    Imports only for type checking do not count; lazy imports inside functions do."""
    for package in ALLOWED:
        modules = {".".join(p.relative_to(REPO).with_suffix("").parts): p for p in (REPO / package).rglob("*.py")}
        modules = {name.removesuffix(".__init__"): path for name, path in modules.items()}
        graph = {name: {m for m in _module_imports(path, package) if m in modules and m != name} for name, path in modules.items()}
        circles = _circles(graph)
        assert not circles, f"{package}/ has import circles: {circles}"


def test_pipeline_modules_stay_small() -> None:
    """STYLE.md: small modules, one concept each, under ~400 lines. Issue 15 split the pipelines/ modules that had
    grown past it (promotion, remediation, diagnosis, service, outbox, cli, the value models); this keeps them so."""
    limit = 400
    long = {str(p.relative_to(REPO)): n for p in (REPO / "pipelines").rglob("*.py") if (n := len(p.read_text().splitlines())) > limit}
    assert not long, f"modules over {limit} lines (split them by concept): {long}"
