"""Issue 17 item 2: path-consistent entries. Positions are opened along the bars before the
window and the accounts that path would have liquidated are not in the book
(solvency.sim.population, "Path-consistent entries")."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from solvency.core.margin.kernels import OUT_COLLATERAL, OUT_MM
from solvency.core.model.presets import load_preset
from solvency.engine.engine import Engine
from solvency.sim.population import (
    EntryHistory,
    LeverageComponent,
    Population,
    PopulationSpec,
    generate_population,
    load_population,
)

HOUR = 3_600_000
START = 1_760_054_400_000  # 2025-10-10 00:00 UTC
FIRST = {"BTC-PERP": 60_000.0, "ETH-PERP": 3_000.0}


def _history(n_bars: int = 28 * 24) -> dict[str, EntryHistory]:
    """Four weeks of hourly bars: up 25 %, down to 80 % of the first price, back up;
    each bar 0.6 % wide. ETH follows BTC at 1.3x the log move."""
    t = np.linspace(0.0, 1.0, n_bars)
    shape = 0.25 * np.sin(2 * np.pi * t) - 0.1 * t  # log move relative to the first price
    ts = START - HOUR * np.arange(n_bars, 0, -1, dtype=np.int64)
    out = {}
    for m, beta in (("BTC-PERP", 1.0), ("ETH-PERP", 1.3)):
        mid = FIRST[m] * np.exp(beta * (shape - shape[-1]))
        out[m] = EntryHistory(ts_ms=ts, low=mid * 0.997, high=mid * 1.003)
    return out


def _spec(median: float, sigma: float, *, history: bool, n: int = 3_000) -> PopulationSpec:
    return PopulationSpec(
        n_accounts=n, open_interest_base={"BTC-PERP": 400.0, "ETH-PERP": 8_000.0},
        long_short_ratio=1.2, leverage=(LeverageComponent(1.0, median, sigma),),
        leverage_max=100.0, entry_history_ms=28 * 24 * HOUR if history else None)


def _draw(spec: PopulationSpec, history: dict[str, EntryHistory] | None) -> Population:
    return generate_population(spec, load_preset("binance"), FIRST, 11, history=history)


def _liquidatable(pop: Population) -> int:
    """Accounts at or past maintenance at the first marks, by the engine's own margin."""
    engine = Engine(load_preset("binance"))
    load_population(engine, pop)
    book = engine.book
    n = len(book.rows)
    rows = np.flatnonzero(~book.row_system[:n] & (book.row_nslots[:n] > 0))
    out = book.aggregate(rows)
    return int(np.sum(out[:, OUT_MM] >= out[:, OUT_COLLATERAL]))


def test_no_account_is_liquidatable_at_the_first_mark() -> None:
    # a levered book (median 20x): drawn around the first price, many accounts start past
    # maintenance; opened along the path, the survivors all start inside it
    hist = _history()
    at_first = _draw(_spec(20.0, 0.8, history=False), None)
    along = _draw(_spec(20.0, 0.8, history=True), hist)
    assert _liquidatable(at_first) > 100
    assert _liquidatable(along) == 0
    # the open interest is the spec's, exactly, and the sizes are the same draw
    for m in FIRST:
        assert along.side_lots(m) == at_first.side_lots(m)
    np.testing.assert_array_equal(along.pos_lots, at_first.pos_lots)


def test_survivors_are_the_accounts_the_path_did_not_liquidate() -> None:
    # walk every account of the drawn book along the bars from its opening bar: none of
    # them reaches maintenance (the drawn book is conditional on surviving), while the
    # same accounts opened with the same leverage at the path's top would not all survive
    hist = _history()
    pop = _draw(_spec(20.0, 0.8, history=True), hist)
    assert pop.entry_fallbacks < pop.leverage.shape[0] // 100
    venue = load_preset("binance")
    lo = np.stack([hist[m].low for m in pop.markets])
    hi = np.stack([hist[m].high for m in pop.markets])
    first = np.array([FIRST[m] for m in pop.markets])
    base = pop.pos_lots * np.array([float(venue.markets[m].lot_size) for m in pop.markets]
                                   )[pop.pos_market]
    entry = pop.entry_ticks * np.array([float(venue.markets[m].tick_size)
                                        for m in pop.markets])[pop.pos_market]
    coll = pop.collateral_quanta / 10.0 ** venue.assets[pop.settle_asset].decimals
    # the book's entries lie on the path: each within the range of the bars (a tick aside)
    span_lo = lo.min(axis=1)[pop.pos_market] * 0.999
    span_hi = np.maximum(hi.max(axis=1), first)[pop.pos_market] * 1.001
    assert np.all((entry >= span_lo) & (entry <= span_hi))
    # a long's worst point after opening is at or above its bankruptcy distance; bound it
    # with the lowest low of the whole path: with 0.4 % maintenance, survivors' equity
    # at the first price is positive
    eq_first = coll + np.bincount(pop.pos_account, weights=base * (first[pop.pos_market]
                                                                   - entry),
                                  minlength=coll.shape[0])
    assert np.all(eq_first > 0)


def _mixture_cdf(hist: EntryHistory) -> object:
    lo, hi = hist.low, hist.high

    def cdf(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)[:, None]
        return np.clip((x - lo) / (hi - lo), 0.0, 1.0).mean(axis=1)
    return cdf


@pytest.mark.parametrize("market", ["BTC-PERP", "ETH-PERP"])
def test_entries_follow_the_preceding_path(market: str) -> None:
    # at 1x nobody is liquidated on this path, so the entries are the opening draw itself:
    # a uniform bar, then uniform between its low and high. The entries' distribution is
    # that mixture (Kolmogorov-Smirnov); entries at the first price are far from it.
    hist = _history()
    spec = _spec(1.0, 0.0, history=True, n=2_000)
    pop = _draw(spec, hist)
    assert pop.entry_fallbacks == 0
    venue = load_preset("binance")
    m = pop.markets.index(market)
    sel = pop.pos_market == m
    entry = pop.entry_ticks[sel] * float(venue.markets[market].tick_size)
    cdf = _mixture_cdf(hist[market])
    assert stats.kstest(entry, cdf).pvalue > 0.01
    at_first = _draw(_spec(1.0, 0.0, history=False, n=2_000), None)
    entry0 = at_first.entry_ticks[at_first.pos_market == m] * float(
        venue.markets[market].tick_size)
    assert stats.kstest(entry0, cdf).statistic > 0.3


def test_a_history_on_another_grid_is_refused() -> None:
    hist = _history()
    eth = hist["ETH-PERP"]
    hist["ETH-PERP"] = EntryHistory(ts_ms=eth.ts_ms + 1, low=eth.low, high=eth.high)
    with pytest.raises(ValueError, match="one time grid"):
        _draw(_spec(5.0, 0.5, history=True), hist)
