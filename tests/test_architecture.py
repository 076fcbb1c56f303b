"""The house rules of evaluator/, read from the code itself: rooms, one-way arrows, short functions, one home per key.

Every import counts here, including those made inside functions and under TYPE_CHECKING: a lazy
import is still a dependency.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "evaluator"
GROUND = {"errors", "fileio", "typedjson", "config", "events", "__init__"}
# Which rooms each room may import (besides the ground floor and itself).
ALLOWED = {
    "__main__": {"cli"},
    "cli": {"serve", "batch", "scoring", "metering", "report", "runtime", "contract", "data", "power"},
    "serve": {"batch", "scoring", "report", "runtime", "contract", "data", "power"},
    "batch": {"scoring", "report", "runtime", "contract", "data", "power"},
    "scoring": {"report", "runtime", "contract", "data", "power"},
    "metering": {"report", "power"},
    "report": {"power"},
    "runtime": {"contract"},
    "data": {"contract"},
    "contract": set(),
    "power": set(),
}
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400  # a module longer than this holds more than one idea: split it along meaning


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


MODULES = _modules()


def _imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name.startswith("evaluator")}


def _graph() -> dict[str, set[str]]:
    return {name: {target for target in _imports(tree) if target in MODULES and target != name}
            for name, tree in MODULES.items()}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_circle_among_evaluator_modules():
    graph, state, path = _graph(), {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for target in graph[node]:
            if state.get(target) == "open":
                pytest.fail("import circle: " + " -> ".join([*path[path.index(target):], target]))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module)


def test_arrows_run_one_way_between_rooms():
    wrong = []
    for module, targets in _graph().items():
        room = _room(module)
        for target in targets:
            other = _room(target)
            if other in GROUND or other == room or (room in GROUND and other in GROUND):
                continue
            if room in GROUND or other not in ALLOWED.get(room, set()):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "arrows against the house plan: " + ", ".join(sorted(wrong))


def test_power_imports_nothing_of_the_evaluator_but_the_error_types():
    for module, targets in _graph().items():
        if _room(module) == "power":
            assert {t for t in targets if _room(t) != "power"} <= {"evaluator.errors"}, module


def test_no_function_is_longer_than_sixty_lines():
    long = [f"{name}.{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for name, tree in MODULES.items() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long


def test_no_module_is_longer_than_four_hundred_lines():
    long = {path.relative_to(PACKAGE.parent).as_posix(): lines for path in sorted(PACKAGE.rglob("*.py"))
            if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


# The documents edl writes, one module each (result, batch summary, meter report, review decision), and the
# records they share or embed: the only modules that define document keys.
DOCUMENT_MODULES = ("evaluator.report.result", "evaluator.report.batch_record", "evaluator.report.meter_report",
                    "evaluator.report.review_record", "evaluator.report.records", "evaluator.report.audit_record")


def _result_keys() -> set[str]:
    """Field names of the documents that only a document could mean (two words or more)."""
    import importlib

    keys = set()
    for module_name in DOCUMENT_MODULES:
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == module_name:
                keys |= {f.name for f in dataclasses.fields(value) if "_" in f.name}
    return keys


def test_result_keys_are_spelled_only_where_the_document_is_defined():
    """Readers use the typed documents' attributes; no other module spells a document key as a string."""
    from evaluator.config import ScoreConfig, option_fields

    option_names = {found.name for found in option_fields(ScoreConfig)}
    keys = _result_keys() - option_names
    spelled = []
    # report.legacy is the one other place: it maps older schemas' keys to today's, so it must spell both.
    for name, tree in MODULES.items():
        if name in (*DOCUMENT_MODULES, "evaluator.report.legacy"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in keys:
                spelled.append(f"{name}: {node.value!r}")
    assert not spelled, spelled
