"""The layering the README describes, checked from the source (AST), imports inside functions too.

- no import circles among edge_hired's modules;
- `hired/` (the algorithm) imports only itself, `edge_hired.errors`, numpy and the standard library;
- nothing under `runtime/` imports `export/` (a device that only runs bundles needs no exporter);
- nothing outside `cli/` imports `cli/`;
- `device/` imports only itself, `errors` and `units` (it reads hardware, it does not plan or run);
- the pure planner (`planner/`) imports no torch, transformers, onnx, onnxruntime or bitsandbytes,
  not even through the edge_hired modules it imports, and its own modules read no file.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "edge_hired"
HEAVY = ("torch", "transformers", "onnx", "onnxruntime", "onnxscript", "bitsandbytes")
FILE_READS = ("open", "read_text", "read_bytes", "load", "loads", "environ", "iterdir", "glob")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE_ROOT.rglob("*.py")}
TREES = {name: ast.parse(path.read_text()) for name, path in MODULES.items()}


def imported_names(tree: ast.AST) -> set[str]:
    """Every absolute module an `import` / `from ... import` names, wherever it stands."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def owning_module(name: str) -> str | None:
    """The edge_hired module a dotted name lives in (a module, or a name inside one)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def internal_edges(name: str) -> set[str]:
    """The edge_hired modules `name` imports."""
    found = {owning_module(n) for n in imported_names(TREES[name]) if n.startswith("edge_hired")}
    return {m for m in found if m and m != name}


GRAPH = {name: internal_edges(name) for name in MODULES}


def external_roots(name: str) -> set[str]:
    return {n.split(".")[0] for n in imported_names(TREES[name]) if not n.startswith("edge_hired")}


def in_package(name: str, package: str) -> bool:
    return name == f"edge_hired.{package}" or name.startswith(f"edge_hired.{package}.")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def closure(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(GRAPH[name])
    return seen


def test_the_cycle_finder_finds_a_planted_circle() -> None:
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(planted) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_there_are_no_import_circles() -> None:
    assert cycles(GRAPH) == []


def test_hired_imports_only_itself_errors_numpy_and_the_standard_library() -> None:
    allowed_external = {"numpy", "__future__", *sys.stdlib_module_names}
    for name in (m for m in MODULES if in_package(m, "hired")):
        internal = {m for m in GRAPH[name] if not in_package(m, "hired")}
        assert internal <= {"edge_hired.errors"}, (name, internal)
        assert external_roots(name) <= allowed_external, (name, external_roots(name))


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("runtime", "export"), ("device", "planner"), ("device", "facts"), ("device", "runtime")],
)
def test_lower_layers_do_not_import_higher_ones(package: str, forbidden: str) -> None:
    for name in (m for m in MODULES if in_package(m, package)):
        wrong = {m for m in GRAPH[name] if in_package(m, forbidden)}
        assert not wrong, f"{name} imports {sorted(wrong)}"


def test_device_imports_only_device_errors_and_units() -> None:
    for name in (m for m in MODULES if in_package(m, "device")):
        others = {m for m in GRAPH[name] if not in_package(m, "device")}
        assert others <= {"edge_hired.errors", "edge_hired.units"}, (name, others)


def test_nothing_outside_cli_imports_cli() -> None:
    for name in (m for m in MODULES if not in_package(m, "cli")):
        wrong = {m for m in GRAPH[name] if in_package(m, "cli")}
        assert not wrong, f"{name} imports {sorted(wrong)}"


def test_the_planner_needs_no_torch_onnx_or_bitsandbytes_even_indirectly() -> None:
    for name in (m for m in MODULES if in_package(m, "planner")):
        for reached in closure(name):
            heavy = external_roots(reached) & set(HEAVY)
            assert not heavy, f"{name} reaches {reached}, which imports {sorted(heavy)}"


def test_the_planner_reads_no_file() -> None:
    for name in (m for m in MODULES if in_package(m, "planner")):
        for node in ast.walk(TREES[name]):
            called = node.func if isinstance(node, ast.Call) else None
            label = getattr(called, "attr", None) or getattr(called, "id", None)
            assert label not in FILE_READS, f"{name}:{node.lineno} calls {label}"
            if isinstance(node, ast.Attribute):
                assert node.attr != "environ", f"{name}:{node.lineno} reads os.environ"
