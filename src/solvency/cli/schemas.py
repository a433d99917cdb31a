"""The JSON Schemas of every file a user writes, as published under ``docs/schema/``.

Each schema is generated from the pydantic model that reads the format (the model is the
source of truth; the published file is what editors check users' files with). The
registry sits in ``cli`` because it is the one layer that sees every model: the grid,
event and portfolio models (``solvency.adapters.schemas.PUBLISHED``) and the stress lab's
scenario file (``solvency.sim.scenario.ScenarioFile``, which ``adapters`` may not import).
A test regenerates them and fails when a published file has drifted; to rewrite them::

    .venv/bin/python -m solvency.cli.schemas --write

(``risk-report-v1.json`` is an output format, written by hand and not generated here.)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

from pydantic import BaseModel

from solvency.adapters import schemas as _adapters
from solvency.adapters.schemas import SchemaSpec, render_schema

__all__ = ["PUBLISHED", "SchemaSpec", "main", "render_schema", "write_schemas"]


def _scenario() -> type[BaseModel]:
    from solvency.sim.scenario import ScenarioFile

    return ScenarioFile


PUBLISHED: Final[tuple[SchemaSpec, ...]] = (
    *_adapters.PUBLISHED,
    SchemaSpec("scenario-v1", _scenario, "solvency stress-lab scenario, version 1",
               "A stress-lab scenario (TOML) for solvency simulate and solvency sweep: "
               "time grid, seeds, the price-path model and its markets, the population, "
               "the venue (a preset plus overrides, checked by the venue parser), "
               "liquidity, agents, oracle and the report's thresholds "
               "(docs/stress_lab.md). Durations are \"30s\", \"15m\", \"4h\", \"2d\" or "
               "integer milliseconds; times are UTC."),
)
"""Every published schema, in the order ``--write`` writes them."""


def write_schemas(folder: Path) -> list[Path]:
    """Write every published schema into ``folder`` and return the paths written."""
    return _adapters.write_schemas(folder, PUBLISHED)


def main(argv: list[str] | None = None) -> int:
    """Print the schemas' names, or with ``--write [DIR]`` write them (default docs/schema)."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--write"]:
        folder = Path(args[1]) if len(args) > 1 else Path("docs/schema")
        for path in write_schemas(folder):
            print(path)
        return 0
    for spec in PUBLISHED:
        print(f"{spec.name}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
