"""Stepwise's modules import one another without a cycle, and the engine imports nothing else of the project.

Read from the source (every import statement, those inside functions too), so a cycle that only a
late import would hide at runtime is still found. README: Where things live.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from tests.processes import ROOT

# The repository's folders and the packages they install as (setup.py).
PACKAGES = {"runs": "stepwise.runs", "tasks": "stepwise.tasks", "console": "stepwise.console", "stepwise": "stepwise"}


def _modules() -> dict[str, Path]:
    modules = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            modules[".".join((package, *parts))] = path
    return modules


def _imports() -> dict[str, set[str]]:
    """Return, per module, the project's modules it imports (a package's own __init__ left out)."""
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(f"{target}."):
                    graph[name].add(target)
    return graph


def test_no_module_of_stepwise_imports_itself_back_through_others():
    graph = _imports()
    assert sum(len(targets) for targets in graph.values()) > 500  # the imports were read, not missed
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_the_engine_imports_nothing_of_the_project_outside_it():
    outside = sorted((module, target) for module, targets in _imports().items()
                     if module.startswith("stepwise.runs.engine") for target in targets
                     if not target.startswith("stepwise.runs.engine"))
    assert outside == []
