"""The package's shape, checked statically: data flows one way and modules stay small.

source model -> convert -> metadata -> runtime -> pipeline -> report; accuracy sits beside convert
and uses it, never the reverse. Every import counts, module-level and function-level alike: a lazy
import is still a dependency.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "edgeq"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
LONG_REASON = "Long because"  # the phrase a longer function's docstring uses to state its reason


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> set[str]:
    """edgeq modules that ``module`` imports, anywhere in its body."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            # `from X import a`: the submodule X.a where a is one, else X itself
            base = _resolve(module, node)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for t in targets:
            # the deepest edgeq module named (importing a.b.c imports a.b.c; a bare name may be an attribute)
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t.startswith("edgeq") and t != module:
                found.add(t)
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in sorted(GRAPH):
        if m not in index:
            visit(m)
    return out


def _ignoring_top_package(graph: dict[str, set[str]]) -> None:
    # `edgeq/__init__` is the facade that re-exports everything; modules must not import it.
    for m, deps in graph.items():
        assert "edgeq" not in deps or m == "edgeq", f"{m} imports the top-level edgeq package (its facade)"


def test_no_module_imports_the_top_level_facade():
    _ignoring_top_package(GRAPH)


def test_no_import_cycles():
    cycles = _cycles()
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_library_never_imports_the_cli():
    for m, deps in GRAPH.items():
        if m.startswith("edgeq.commands") or m in ("edgeq.cli", "edgeq.__main__"):
            continue
        bad = sorted(d for d in deps if d.startswith("edgeq.commands") or d == "edgeq.cli")
        assert not bad, f"library module {m} imports {bad}"


@pytest.mark.parametrize("lower, upper", [
    ("edgeq.runtime", "edgeq.convert"), ("edgeq.runtime", "edgeq.accuracy"), ("edgeq.runtime", "edgeq.edgetpu"),
    ("edgeq.runtime", "edgeq.pipeline"), ("edgeq.convert", "edgeq.accuracy"), ("edgeq.metadata", "edgeq.runtime"),
    ("edgeq.postprocess", "edgeq.runtime"), ("edgeq.postprocess", "edgeq.pipeline"),
    ("edgeq.runtime", "edgeq.tune"), ("edgeq.runtime", "edgeq.bench"),
])
def test_data_flows_one_way(lower, upper):
    """Modules under ``lower`` never import modules under ``upper``."""
    for m, deps in GRAPH.items():
        if m == lower or m.startswith(lower + "."):
            bad = sorted(d for d in deps if d == upper or d.startswith(upper + "."))
            assert not bad, f"{m} imports {bad}, against the flow {lower} -> {upper}"


def test_modules_are_small():
    big = {m: n for m, p in MODULES.items() if (n := len(p.read_text(encoding="utf-8").splitlines()))
           > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


def test_long_functions_say_why():
    long_ones = []
    for m, p in MODULES.items():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and LONG_REASON not in (ast.get_docstring(node) or ""):
                    long_ones.append(f"{m}.{node.name} ({n} lines)")
    assert not long_ones, (f"functions over {MAX_FUNCTION_LINES} lines without '{LONG_REASON} ...' in the "
                           f"docstring: {long_ones}")
