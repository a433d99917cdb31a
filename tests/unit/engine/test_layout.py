"""The engine's layout as the docs describe it (issue 12).

* every event type goes, in one hop, to the ``module.function`` that docs/engine.md's
  table names (``engine.HANDLERS`` is that table in code);
* docs/architecture.md lists every module of ``solvency.engine`` from the top down, and
  no module imports one listed above it (import-linter forbids cycles; this also keeps
  the map's order true);
* no module of ``solvency.engine`` imports or reads another module's private names (the
  liquidator and the feeds see the engine through ``context.py``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from solvency.engine.engine import HANDLERS

ROOT = Path(__file__).resolve().parents[3]
ENGINE = ROOT / "src" / "solvency" / "engine"
MODULES = sorted(p for p in ENGINE.glob("*.py") if p.stem != "__init__")


def _section(doc: str, title: str) -> str:
    text = (ROOT / "docs" / doc).read_text()
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start:] if end < 0 else text[start:end]


@pytest.mark.parametrize("event_type", list(HANDLERS), ids=lambda t: t.__name__)
def test_docs_table_names_the_handler_of_each_event(event_type: type) -> None:
    handler = HANDLERS[event_type]
    module = handler.__module__.rsplit(".", 1)[-1]
    row = f"| `{event_type.type}` | `{module}.{handler.__name__}` |"  # type: ignore[attr-defined]
    assert row in _section("engine.md", "## Where each event is handled"), (
        f"docs/engine.md: the table should have the row {row}")


def test_module_map_lists_every_module_in_import_order() -> None:
    rows = [line.split("|")[1] for line in
            _section("architecture.md", "## The engine package").splitlines()
            if line.startswith("| `")]
    level = {name: i for i, cell in enumerate(rows)
             for name in re.findall(r"`([a-z_]+)\.py`", cell)}
    missing = sorted(p.stem for p in MODULES if p.stem not in level)
    assert not missing, f"docs/architecture.md: add {missing} to the engine module map"
    upward = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "solvency.engine."):
                dep = str(node.module).split(".")[2]
                if level[dep] <= level[path.stem] and dep != path.stem:
                    upward.append(f"{path.stem} -> {dep}")
    assert not upward, f"docs/architecture.md lists these modules in the wrong order: {upward}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_private_name_crosses_modules(path: Path) -> None:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found += [f"import {a.name}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_")
              and not node.attr.startswith("__")
              and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    assert not found, f"{path.name} reaches into private names: {found}"
