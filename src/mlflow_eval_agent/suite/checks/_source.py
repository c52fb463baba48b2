"""The source text of the checks a suite uses, for copying into a self-contained `scorers.py`.

Starting from the chosen check factories, it takes every top-level definition they reference
(helpers from `_trace.py`, constants, other functions) transitively, in library order, without
the `@check` decorators or the prerequisite functions that only the agent side needs.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass
from types import ModuleType

from . import _errors, _latency, _output, _retrieval, _tools, _trace

# Library order: helpers first, then the check modules.
SOURCE_MODULES: tuple[ModuleType, ...] = (_trace, _errors, _tools, _latency, _output, _retrieval)
_INTERNAL = ("._registry", "._trace")


@dataclass(frozen=True)
class _Definition:
    name: str
    source: str
    references: frozenset[str]


def _definitions(module: ModuleType) -> tuple[list[_Definition], list[str]]:
    """Top-level definitions (name, source without decorators, names used) and stdlib imports."""
    text = inspect.getsource(module)
    lines = text.splitlines()
    tree = ast.parse(text)
    definitions, imports = [], []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom) and node.level:
                continue  # our own modules: their code is copied instead
            imports.append(ast.get_source_segment(text, node) or "")
            continue
        names = _defined_names(node)
        if not names:
            continue  # the module docstring
        source = "\n".join(lines[node.lineno - 1 : node.end_lineno])
        if isinstance(node, ast.FunctionDef):
            node.decorator_list = []  # `@check(requires=...)` is registry wiring, not code to copy
        used = frozenset(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
        definitions += [_Definition(name, source, used) for name in names[:1]]
    return definitions, imports


def _defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def library_source(check_names: list[str]) -> tuple[list[str], str]:
    """(stdlib import lines, source of everything the named checks need), in library order."""
    pool: dict[str, tuple[tuple[int, int], _Definition, list[str]]] = {}
    for order, module in enumerate(SOURCE_MODULES):
        definitions, imports = _definitions(module)
        for index, definition in enumerate(definitions):
            pool[definition.name] = ((order, index), definition, imports)
    unknown = [n for n in check_names if n not in pool]
    if unknown:
        raise KeyError(f"no such checks: {', '.join(unknown)}")
    needed: set[str] = set()
    todo = list(check_names)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        todo += [ref for ref in pool[name][1].references if ref in pool and ref not in needed]
    chosen = sorted((pool[n] for n in needed), key=lambda item: item[0])
    imports = sorted({line for _, _, module_imports in chosen for line in module_imports}, key=lambda line: (line.startswith("from "), line))
    return imports, "\n\n\n".join(d.source for _, d, _ in chosen) + "\n"


def library_names() -> set[str]:
    """Every top-level name the library may put into a rendered scorers.py."""
    return {d.name for module in SOURCE_MODULES for d in _definitions(module)[0]}
