"""Scenario-grid portfolio margin (SPAN-like, Deribit-like, Paradex-like), vectorized.

Every option is fully revalued with Black-76 under each scenario of a grid (price move x
volatility shock), futures and perpetuals linearly; the maintenance margin is the worst
weighted scenario loss plus add-ons, combined across underlyings by a sum or a
correlation rule; the initial margin is the maintenance margin times a factor. Grids are
data: :func:`parse_grid` reads TOML text or a mapping, the shipped grids (CME SPAN 16,
Deribit PM, Paradex PM) are loaded by :func:`solvency.adapters.grids.load_grid`. See
``docs/portfolio_margin.md``.
"""

from __future__ import annotations

from solvency.core.portfolio.grid import (
    DeltaRule,
    GridError,
    ScenarioGrid,
    VolShift,
    parse_grid,
)
from solvency.core.portfolio.kernel import (
    KIND_CALL,
    KIND_FUTURE,
    KIND_PUT,
    Combine,
    PortfolioMargin,
    portfolio_margin,
    scenario_losses,
)

__all__ = [
    "KIND_CALL",
    "KIND_FUTURE",
    "KIND_PUT",
    "Combine",
    "DeltaRule",
    "GridError",
    "PortfolioMargin",
    "ScenarioGrid",
    "VolShift",
    "parse_grid",
    "portfolio_margin",
    "scenario_losses",
]
