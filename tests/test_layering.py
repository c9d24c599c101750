"""The house: packages are layered as the pipeline (plumbing -> storage -> data -> models -> concepts -> attribution
-> correction -> evaluation -> training -> runs -> bench -> cli), every import goes down or sideways, and there is no
import cycle, counting imports inside functions (each `import` statement anywhere in a module is an edge)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

# Lower ranks are imported by higher ones, never the other way round.
LAYERS = {
    "backend": 0,  # the package root: the version
    "backend.errors": 0,
    "backend.progress": 0,
    "backend.device": 0,
    "backend.defaults": 0,
    "backend.options": 0,
    "backend.storage": 1,
    "backend.data": 2,
    "backend.models": 3,
    "backend.concepts": 4,
    "backend.attribution": 5,
    "backend.discovery": 5,  # explains with attribution, sideways: attribution never imports it
    "backend.correction": 6,
    "backend.evaluation": 7,
    "backend.training": 8,
    "backend.runs": 9,
    "backend.bench": 10,
    "backend.cli": 11,
    "backend.__main__": 12,
}


def _modules(*packages: str) -> dict[str, Path]:
    """Every module of the packages: dotted name -> file."""
    found = {}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of `known` that `name` imports anywhere in its file (module level, functions, TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        edges |= {t for t in targets if t in known and t != name}
    return edges


def _graph(*packages: str) -> dict[str, set[str]]:
    modules = _modules(*packages)
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _layer(module: str) -> str:
    return max((prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")), key=len)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_every_backend_module_belongs_to_a_layer():
    assert all(_layer(m) for m in _graph("backend"))


def test_imports_go_down_the_pipeline_never_up():
    back_edges = [
        f"{a} ({_layer(a)}) imports {b} ({_layer(b)})"
        for a, targets in _graph("backend").items()
        for b in targets
        if LAYERS[_layer(b)] > LAYERS[_layer(a)]
    ]
    assert back_edges == []


def test_there_is_no_import_cycle_not_even_through_function_local_imports():
    assert _cycles(_graph("backend", "app", "components")) == []


def test_the_checker_sees_a_cycle_hidden_in_a_function(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from backend.correction import methods\n")
    assert _imports("backend.models.x", module, {"backend.correction", "backend.correction.methods"}) == {
        "backend.correction.methods"
    }


def test_the_library_never_imports_the_app_and_widgets_never_import_pages():
    graph = _graph("backend", "app", "components")
    assert not [(a, b) for a, bs in graph.items() if a.startswith("backend") for b in bs if not b.startswith("backend")]
    assert not [(a, b) for a, bs in graph.items() if a.startswith("components") for b in bs if b.startswith("app")]
    streamlit = [p for p in (ROOT / "backend").rglob("*.py") if "import streamlit" in p.read_text()]
    assert streamlit == []
