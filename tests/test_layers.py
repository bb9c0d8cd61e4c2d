"""The package's shape, checked by reading its source with ``ast``: imports run one way
(core -> tasks -> study -> cli and the API), no module imports another in a circle, no
import hides inside a function (except a commented lazy load of a heavy optional
dependency), and no function runs past a screen."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "rnnlab"
LAYERS = {"core": 0, "tasks": 1, "study": 2, "cli": 3, "api": 3,
          "serve": 3}  # rnnlab/__init__ sits on top
TOP = 4
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 and parts[1] in LAYERS else TOP


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module an import names (``from a.b import c``: ``a.b.c`` if that is a module)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imported(tree: ast.Module, known: dict[str, Path]) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {m for m in (resolve(n, known) for n in names if n.startswith("rnnlab")) if m}
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(ast.parse(path.read_text()), known) - {name}
            for name, path in known.items()}


def test_no_module_imports_a_layer_above_it():
    upward = [f"{src} -> {dst}" for src, targets in graph().items() for dst in targets
              if layer(dst) > layer(src)]
    assert not upward, "imports must run core -> tasks -> study -> cli/api:\n" + "\n".join(upward)


def test_the_import_graph_has_no_cycle():
    edges = graph()
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return [*path, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, node])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(edges):
        if start not in state:
            cycle = visit(start, [])
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def function_level_imports(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import | ast.ImportFrom):
                context = " ".join(lines[max(0, inner.lineno - 2): inner.lineno])
                if "lazy:" not in context:  # a commented lazy load of a heavy optional extra
                    found.append(f"{path.relative_to(SRC)}:{inner.lineno}")
    return found


def test_no_function_level_imports_except_commented_lazy_loads():
    found = [hit for path in modules().values() for hit in function_level_imports(path)]
    assert not found, "imports inside functions (move the code to the right layer):\n" + \
        "\n".join(found)


def long_functions(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            name = f"{module_name(path)}.{node.name}"
            if length > MAX_FUNCTION_LINES:
                found.append(f"{name}: {length} lines")
    return found


def test_no_function_longer_than_a_screen():
    found = [hit for path in modules().values() for hit in long_functions(path)]
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(found)


@pytest.mark.parametrize("module", ["rnnlab.core.models", "rnnlab.tasks.recall.data"])
def test_the_checker_sees_real_edges(module):
    """Guards the checks above against passing because they found nothing."""
    edges = graph()
    assert module in edges and any(dst.startswith("rnnlab.core") for dst in edges[module])
    assert layer("rnnlab.cli.train") > layer("rnnlab.study.jobs") > layer("rnnlab.tasks.base")
