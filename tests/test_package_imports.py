"""The package's import graph: no cycle, no upward import, no import hidden in a function.

Every ``import``/``from ... import`` of a ``panoptic_ocr`` module is read from the source (module
level and inside functions alike) and resolved to the module it loads.
"""

import ast
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "panoptic_ocr"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, modules: Dict[str, Path]) -> List[Tuple[str, int, bool]]:
    """``(imported module, line, inside a function)`` for each package import of a module."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []

    def resolve(target: str):
        while target and target not in modules:
            target = target.rsplit(".", 1)[0] if "." in target else ""
        return target

    def visit(node: ast.AST, in_function: bool):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                # ``from pkg import name``: the submodule pkg.name when there is one, else pkg.
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in child.names
                ]
            else:
                visit(child, nested)
                continue
            for target in targets:
                if target.split(".")[0] == "panoptic_ocr":
                    found.append((resolve(target), child.lineno, in_function))

    visit(ast.parse(path.read_text()), False)
    return found


def _graph() -> Tuple[Dict[str, Path], Dict[str, List[Tuple[str, int, bool]]]]:
    modules = _modules()
    return modules, {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components: List[List[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))

    def visit(v: str):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
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
                components.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return components


def test_the_package_has_no_import_cycle():
    modules, imports = _graph()
    assert len(modules) > 50
    edges = {m: {t for t, _, _ in found if t != m} for m, found in imports.items()}
    assert _cycles(edges) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_a_package_above_it():
    """A package's ``__init__`` collects its submodules; a submodule that imports an enclosing
    package (``from .. import X``, ``import panoptic_ocr``) depends on everything above it."""
    _, imports = _graph()
    upward = [
        f"{name}:{line} imports {target}"
        for name, found in imports.items()
        for target, line, _ in found
        if target != name and name.startswith(target + ".")
    ]
    assert upward == []


def test_no_package_import_is_hidden_in_a_function():
    """Imports of the package sit at the top of each module, where the cycle check sees them."""
    _, imports = _graph()
    hidden = [
        f"{name}:{line} imports {target} inside a function"
        for name, found in imports.items()
        for target, line, in_function in found
        if in_function
    ]
    assert hidden == []


def test_the_graph_reader_sees_relative_and_function_level_imports(tmp_path):
    fake = {
        "panoptic_ocr": Path("p/__init__.py"),
        "panoptic_ocr.a": Path("p/a.py"),
        "panoptic_ocr.b": Path("p/b.py"),
        "panoptic_ocr.b.c": Path("p/b/c.py"),
    }
    source = tmp_path / "c.py"
    source.write_text(
        "from .. import a\nfrom ...panoptic_ocr import x\n\ndef f():\n    from . import c\n"
    )
    found = _imports("panoptic_ocr.b.c", source, fake)
    assert found == [
        ("panoptic_ocr.a", 1, False),
        ("panoptic_ocr", 2, False),
        ("panoptic_ocr.b.c", 5, True),
    ]
