"""The JSON Schemas of the files a user writes whose models this layer sees.

Each schema is generated from the pydantic model that reads the format (the model is the
source of truth; the published file is what editors check users' files with). This module
holds :class:`SchemaSpec`, the renderer and the formats of ``core``/``engine``/``adapters``
(grid, event line, venue file, portfolio file, correlation file);
:mod:`solvency.cli.schemas` adds the stress lab's scenario file (``sim``, which this
layer may not import) and writes them all. A test regenerates them
and fails when a published file has drifted; to rewrite them::

    .venv/bin/python -m solvency.cli.schemas --write
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, TypeAdapter

from solvency.core.portfolio.grid import GridFile
from solvency.core.schema import schema_document

__all__ = ["PUBLISHED", "SchemaSpec", "render_schema", "write_schemas"]


@dataclass(frozen=True, slots=True)
class SchemaSpec:
    """One published schema: its file stem, the model, title and description."""

    name: str
    model: Callable[[], type[BaseModel] | TypeAdapter[Any]]
    title: str
    description: str


def _grid() -> type[BaseModel]:
    return GridFile


def _event() -> TypeAdapter[Any]:
    from solvency.core.model.event_schema import EVENT_LINE

    return EVENT_LINE


def _venue() -> type[BaseModel]:
    from solvency.core.model.venue_schema import VenueFile

    return VenueFile


def _correlation() -> type[BaseModel]:
    from solvency.adapters.correlation import CorrelationFile

    return CorrelationFile


def _portfolio_venues() -> type[BaseModel]:
    from solvency.engine.multivenue import MultiVenuePortfolio

    return MultiVenuePortfolio


def _portfolio() -> type[BaseModel]:
    from solvency.engine.portfolio import PortfolioFile

    return PortfolioFile


PUBLISHED: Final[tuple[SchemaSpec, ...]] = (
    SchemaSpec("grid-v1", _grid, "solvency portfolio-margin scenario grid, version 1",
               "A scenario grid for portfolio margin (TOML): price and volatility moves "
               "with weights, scan ranges and add-ons. Read by --pm-grid FILE and "
               "solvency.adapters.grids.load_grid_file; the shipped grids are in "
               "solvency/core/portfolio/grids/. Numbers are exact decimals."),
    SchemaSpec("event-v1", _event, "solvency event line, version 1",
               "One line of an event log (JSON Lines), as solvency replay, solvency serve "
               "(POST /v1/events) and the engine read it: one object per input event, "
               "discriminated by type. Amounts are exact decimals, as decimal strings "
               "(recommended) or JSON numbers, within 1e-40 .. 1e40."),
    SchemaSpec("venue-v1", _venue, "solvency venue file, version 1",
               "A venue (JSON or TOML) for --venue FILE and a scenario's [venue] table: a "
               "bundled preset and overrides, or a full venue: assets and their "
               "collateral tiers, markets of every margin model and option terms, oracle "
               "(sources, guard, mark, breakers, pre-trade limits, rate limit), insurance, "
               "portfolio_margin and liquidation (docs/venues.md). Amounts are exact "
               "decimals: decimal strings (recommended) or numbers."),
    SchemaSpec("portfolio-v1", _portfolio, "solvency portfolio file, version 1",
               "One account's portfolio (JSON or TOML) for solvency margin and solvency "
               "greeks: venue, market overrides or declared options, prices, collateral "
               "and positions. Numbers are exact decimals: JSON numbers or decimal "
               "strings."),
    SchemaSpec("portfolio-venues-v1", _portfolio_venues,
               "solvency multi-venue portfolio file, version 1",
               "One trader's accounts on several venues (JSON) for solvency margin: "
               "'venues', each a portfolio-v1 file whose venue is required, with an "
               "optional unique name (docs/contagion.md)."),
    SchemaSpec("correlation-v1", _correlation, "solvency correlation file, version 1",
               "The correlation of an account's markets (JSON) for solvency margin --corr "
               "FILE: the markets and their correlation matrix, row-major."),
)


def render_schema(spec: SchemaSpec) -> str:
    """Return the schema document of ``spec`` as the published text (sorted keys)."""
    doc: dict[str, Any] = schema_document(spec.model(), name=spec.name, title=spec.title,
                                          description=spec.description)
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(folder: Path, specs: Iterable[SchemaSpec] = PUBLISHED) -> list[Path]:
    """Write the schemas of ``specs`` into ``folder`` and return the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for spec in specs:
        path = folder / f"{spec.name}.json"
        path.write_text(render_schema(spec), encoding="utf-8")
        out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    """Say where the writer is: ``python -m solvency.cli.schemas`` writes every schema."""
    print("the schemas are written by: python -m solvency.cli.schemas --write "
          "(it adds the scenario file's, which this module cannot see)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
