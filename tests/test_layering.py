"""The import graph of ``src/servesim`` follows the layers of DESIGN.md.

Layers depend only downward (catalog/model/hardware ← cost ← engine ← run/cli); the engine
imports nothing of the cost model, the specs or the output; and no module imports itself back
through others. Every import counts — at module level, inside functions and under
``TYPE_CHECKING`` — since a function-level import hides a dependency, not removes it.

Nodes are modules (``servesim.cost.step``); ``from servesim.cost import operators`` is an edge to
the submodule, ``from servesim.cost import CostParams`` one to the package's ``__init__``. The
parent packages Python imports on the way are not counted as edges.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "servesim"

LAYERS: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (layer, frozenset(parts.split()))
    for layer, parts in (
        # Lowest first. A module may import modules of its own layer and of the layers above it
        # in this list, never of the layers below it. Names are the top-level parts of the
        # package (``servesim.<part>``); "servesim" is the package's own ``__init__``.
        ("base", "errors textfile validation paths interrupts profile knobs formatting versions"),
        ("specs", "catalog model hf_config hardware engines chat_templates workload"),
        ("cost", "cost"),
        ("engine", "engine"),
        (
            "assembly",
            "scenario scenario_overlay fleet metrics summary run output trace report "
            "calibrate sweep track_record fused_kernels kernel_cache",
        ),
        ("entry", "cli serve servesim __main__"),
    )
)

ENGINE_NEVER_IMPORTS = frozenset({"cost", "model", "hf_config", "hardware", "output"})
"""DESIGN.md: the engine is driven through the step-cost protocol and emits records; it knows
nothing of how steps are priced, what the model or GPU is, or how results are written."""

ROOT_CONSTANTS = frozenset({"__version__"})
"""Names of ``servesim/__init__.py`` any module may import: plain constants it defines without
importing anything (importing any ``servesim.*`` module runs that file anyway)."""

KNOWN_CIRCLES: tuple[frozenset[str], ...] = ()
"""Circles known and yet to be broken (none now: a new one fails the tests below)."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The servesim modules ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def target(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    found.add(target(alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in modules:
                    found.add(sub)
                elif not (source == PACKAGE and alias.name in ROOT_CONSTANTS):
                    found.add(target(source))
    found.discard(None)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _part(module: str) -> str:
    """``servesim.cost.step`` -> ``cost``; the package's own ``__init__`` -> ``servesim``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE


def _layer(module: str) -> int:
    part = _part(module)
    for i, (_, parts) in enumerate(LAYERS):
        if part in parts:
            return i
    raise AssertionError(f"servesim.{part} is in no layer: add it to LAYERS in {__file__}")


def _circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(frozenset(component))
    return out


GRAPH = _graph()


def test_every_module_has_a_layer():
    for module in GRAPH:
        _layer(module)


def test_layers_only_import_downward():
    upward = sorted(
        f"{a} (layer {LAYERS[_layer(a)][0]}) imports {b} (layer {LAYERS[_layer(b)][0]})"
        for a, targets in GRAPH.items()
        for b in targets
        if _layer(b) > _layer(a)
    )
    assert upward == []


def test_the_engine_imports_nothing_of_the_cost_model_specs_or_output():
    found = sorted(
        f"{a} imports {b}"
        for a, targets in GRAPH.items()
        if _part(a) == "engine"
        for b in targets
        if _part(b) in ENGINE_NEVER_IMPORTS
    )
    assert found == []


def test_no_import_circles_but_the_known_ones():
    circles = _circles(GRAPH)
    assert [sorted(c) for c in circles if c not in KNOWN_CIRCLES] == []
    # A known circle that is gone must leave the list, so the list stays true.
    assert [sorted(c) for c in KNOWN_CIRCLES if c not in circles] == []


def test_no_import_circles_at_all():
    assert _circles(GRAPH) == []


def test_the_circle_check_finds_a_circle():
    """Not vacuous: a graph with a hidden back edge has a circle, a layered one has none."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [frozenset({"a", "b", "c"})]
    assert _circles({"a": {"b"}, "b": set(), "d": {"a", "b"}}) == []


def test_function_level_imports_count(tmp_path):
    """An import inside a function is an edge like any other."""
    modules = {"servesim": SRC, "servesim.run": SRC, "servesim.calibrate": SRC}
    source = tmp_path / "run.py"
    source.write_text("def f():\n    from servesim.calibrate import load_calibration\n")
    assert _imports("servesim.run", source, modules) == {"servesim.calibrate"}
