"""The tree's architecture, checked: no import cycles, each layer imports only the layers it may, and no module of
engine/ imports a specific backend (only actors.base and actors.registry).

Imports are read from the source with `ast` (module level and inside functions; `if TYPE_CHECKING:` blocks left
out, since they never run), so the check needs no import side effects.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "actors", "kernels")

# Layer → the project packages its modules may import (besides their own layer). engine.config reads the
# strategy and backend registries; the method never imports the config layer (it reads settings by attribute).
ALLOWED = {
    "engine.errors": set(),
    "engine.method": {"engine.errors", "actors.base", "actors.registry", "kernels"},
    "engine.config": {"engine.errors", "engine.method", "actors.base", "actors.registry"},
    "engine.inputs": {"engine.errors", "engine.config", "engine.method"},
    "engine.stages": {"engine.errors", "engine.config", "engine.method", "actors.base", "actors.registry", "kernels"},
    "engine.execution": {"engine.errors", "engine.config", "engine.method", "engine.inputs", "engine.stages",
                         "actors.base", "actors.registry", "kernels"},
    "engine.report": {"engine.errors", "engine.config", "engine.method", "engine.execution"},
    "engine.cli": {"engine"},
    "engine.api": {"engine"},
    "engine.run": {"engine"},
    "engine": set(),
    "actors": {"actors"},
    "kernels": {"kernels"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports (submodules where `from pkg import name` names one)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in modules else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def layer(module: str) -> str:
    """The most specific ALLOWED key that `module` falls under."""
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in ALLOWED:
            return ".".join(parts[:k])
    raise AssertionError(f"{module} belongs to no layer of ALLOWED")


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                strong(w)
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
                out.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_each_layer_imports_only_what_it_may():
    bad = []
    for module, imported in graph().items():
        own = layer(module)
        for target in imported:
            if within(target, own) or any(within(target, allowed) for allowed in ALLOWED[own]):
                continue
            bad.append(f"{module} → {target}")
    assert bad == []


def test_engine_imports_no_specific_backend():
    bad = [f"{m} → {t}" for m, ts in graph().items() if within(m, "engine") for t in ts
           if within(t, "actors") and t not in ("actors", "actors.base", "actors.registry")]
    assert bad == []


# The checker itself: a planted cycle and a planted layer breach are found.
def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module, target", [("engine.method.judges", "engine.execution.tables"),
                                            ("actors.http", "engine.errors"),
                                            ("engine.report.data", "engine.cli.run")])
def test_a_layer_breach_is_named(module, target):
    own = layer(module)
    assert not (within(target, own) or any(within(target, allowed) for allowed in ALLOWED[own]))
