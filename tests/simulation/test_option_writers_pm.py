"""Option writers under portfolio margin (issue 29 / issue 14): ``[population.options]
margin = "portfolio"`` loads the writers in portfolio mode, and the venue's scenario grid
margins each writer's whole book (its short options and its perp hedge) through the run.

The hand case: the one-account book of ``test_option_holders`` (one at-the-money BTC
call written, 7 days, mark vol 80 %, delta-hedged with the perp, the price rising 500
USDC a minute) under Deribit's portfolio-margin grid (``deribit_pm``: Deribit "Portfolio
margin" knowledge-base page, https://www.deribit.com/kb/portfolio-margin, as the grid
file cites it). At every mark the writer's maintenance margin must equal the grid's
worst-scenario loss of the same positions computed by the plain-Python twin
(``core/portfolio/reference.py``, one position and one scenario at a time), and its margin
call must come at the first mark where that requirement reaches the preset's
``margin_call_ratio`` (0.8) of its equity.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from solvency.core.model.events import Price
from solvency.core.portfolio import KIND_CALL, KIND_FUTURE
from solvency.core.portfolio.reference import Position, account_margin_reference
from solvency.engine.engine import Engine
from solvency.sim.option_holders import draw_option_holders, load_option_holders, option_series
from solvency.sim.population import generate_population, load_population
from solvency.sim.run import build_paths, run_scenario
from solvency.sim.scenario import ScenarioError, parse_scenario_data
from tests.simulation.test_option_holders import DAY_MS, S0, T0, _bars, _data

YEAR_MS = 365 * DAY_MS


def _reference_mm(grid: Any, s: float, now_ms: int, perp_btc: float, iv: float) -> float:
    """The grid's requirement of (short 1 call at S0, perp_btc of perp) at mark ``s``.

    The book is linear (USDC-settled), so a coin grid revalues it in USD (Deribit
    margins a USDC book apart from its coin book): the reference runs with
    ``pnl_currency = "quote"``."""
    usd = dataclasses.replace(grid, pnl_currency="quote")
    t = (T0 + 7 * DAY_MS - now_ms) / YEAR_MS
    book = [Position(0, KIND_CALL, float(S0), t, -1.0, iv, s),
            Position(0, KIND_FUTURE, float("nan"), float("nan"), perp_btc, float("nan"), s)]
    mm, _im, _worst = account_margin_reference(book, n_underlyings=1, rate=0.0, grid=usd)
    return mm


def test_one_portfolio_writer_is_margined_and_called_as_the_grid_says(
        tmp_path: Path) -> None:
    sc = parse_scenario_data(_data(_bars(tmp_path, 60), margin="portfolio"), source="hand")
    assert sc.options is not None and sc.options.pm_grid is not None
    assert sc.options.pm_grid.name == "deribit-pm"
    path = build_paths(sc)["BTC-PERP"]
    ts, px = path.ts_ms, path.prices[0]
    v0 = sc.venue()
    pop = generate_population(sc.population, v0, {"BTC-PERP": float(px[0])},
                              sc.seed_population)
    listing = option_series(sc.options, v0.markets["BTC-PERP"], pop.marks["BTC-PERP"],
                            int(ts[0]))
    v = sc.venue(listing=listing)
    book = draw_option_holders(sc.options, v, pop, listing, int(ts[0]))
    eng = Engine(v, pm_grid=sc.options.pm_grid)
    load_population(eng, pop, portfolio=book.holders)
    load_option_holders(eng, pop, book, ts_ms=int(ts[0]))
    acct = pop.accounts[0]
    assert eng.accounts[acct] == "portfolio"
    perp_btc = (1 + int(book.hedge_lots[0])) * 0.0001  # the drawn lot and the hedge
    row = eng.book.row_index[acct]
    # at the opening mark, before any price event of the run: the book as loaded (the
    # run tops accounts up from it), then through the account view
    ref0 = _reference_mm(sc.options.pm_grid, float(px[0]), int(ts[0]), perp_btc, 0.8)
    assert ref0 > 0
    assert float(eng.book.pm[row, 1]) == pytest.approx(ref0, rel=1e-9)
    assert float(eng.account_view(acct)["maintenance_margin"]) == pytest.approx(
        ref0, abs=0.01)
    called = liquidated = None
    checked = 0
    for k in range(1, ts.shape[0]):
        s = float(px[k])
        out = eng.apply(Price(id=f"p{k}", market="BTC-PERP", price=Decimal(repr(s)),
                              ts_ms=int(ts[k])))
        kinds = [o.type for o in out if getattr(o, "account", "").startswith(acct)]
        if "liquidation" in kinds:
            liquidated = k
            break
        # the engine's clock moves after an event's handler: a mark is valued at the
        # previous event's time, 15 s of time decay before the mark's own
        ref = _reference_mm(sc.options.pm_grid, s, int(ts[k - 1]), perp_btc, 0.8)
        assert float(eng.book.pm[row, 1]) == pytest.approx(ref, rel=1e-9), k
        checked += 1
        equity = float(eng.account_view(acct)["equity_usd"])
        if "margin_call" in kinds and called is None:
            called = k
            assert ref >= 0.8 * equity - 0.01, k  # the grid says call
        if called is None:
            assert ref < 0.8 * equity + 0.01, k  # the grid says not yet
    assert checked > 10 and called is not None and liquidated is not None
    # called at 46,500 (step 52: the grid's 6,413.91 >= 0.8 x 7,794.8), liquidated at
    # 49,000 (step 72); the standard rule, blind to the hedge's offset, liquidates the
    # same writer at 44,500 (step 36, test_option_holders)
    assert (called, liquidated, float(px[called]), float(px[liquidated])) == (
        52, 72, 46_500.0, 49_000.0)
    eng.verify()
    # the run loads and margins the writer the same way: called, then liquidated at the
    # same step
    r = run_scenario(sc)
    o = r.metrics["options"]
    assert (o["holders"], o["holders_called"], o["holders_liquidated"]) == (1, 1, 1)
    assert int(np.flatnonzero(r.series.liq_count > 0)[0]) == liquidated
    assert r.metrics["violation"] is None


@pytest.mark.parametrize(("options", "message"), [
    ({"margin": "cross"}, "population.options.margin"),
    ({"margin": "portfolio", "pm_grid": "no_such_grid"}, "population.options.pm_grid"),
    ({"pm_grid": "deribit_pm"}, "population.options.pm_grid"),
], ids=["unknown-margin", "unknown-grid", "grid-without-portfolio"])
def test_bad_margin_settings_are_refused_with_their_key(
        tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message.replace(".", r"\.")):
        parse_scenario_data(_data(_bars(tmp_path), **options), source="hand")
