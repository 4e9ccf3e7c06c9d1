"""The package's import graph: no circles, and no module imports from a layer above it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "grpo_helpers"
# Bottom to top; a module may import only from its own layer's lower neighbours and below.
LAYERS = [
    {"errors", "plotting", "exercises", "grpo_math", "seed_rewards", "notebooks", "sandbox", "precision"},
    {"config"},
    {"runtime"},
    {"storage", "data", "word_sums"},
    {"models"},
    {"recipes"},
]


def imports() -> dict[str, set[str]]:
    """module -> the package modules it imports (imports inside functions count too)."""
    names = {p.stem for p in PACKAGE.glob("*.py")}
    graph = {}
    for path in PACKAGE.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("grpo_helpers."):
                deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.ImportFrom) and node.module == "grpo_helpers":
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[1] for a in node.names if a.name.startswith("grpo_helpers."))
        graph[path.stem] = {d for d in deps if d in names and d != path.stem}
    return graph


def test_no_import_circles():
    graph = imports()
    state: dict[str, int] = {}
    circles = []

    def visit(node, path):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                circles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_no_module_imports_from_a_higher_layer():
    graph = imports()
    layer = {m: i for i, group in enumerate(LAYERS) for m in group}
    top = len(LAYERS)
    upward = [f"{m} -> {d}" for m, deps in graph.items() for d in deps if layer.get(d, top) > layer.get(m, top)]
    assert upward == []
    assert graph["config"] == {"errors"}  # the bottom: only config reads environment variables
