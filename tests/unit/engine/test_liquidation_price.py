"""Liquidation prices: Binance's published examples, and agreement with the trigger.

The displayed liquidation price is computed by the same health function that decides
liquidation (``row_health_at`` over ``requirement``), with the tier re-selected at the
trial price; these tests hold the two to each other and to the venue's worked examples.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvency.core.margin.kernels import row_health_at
from solvency.engine.engine import Engine
from solvency.engine.portfolio import ACCOUNT, evaluate_portfolio, load_portfolio_engine

# Binance "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts" worked example,
# as reproduced in freqtrade tests/exchange/test_binance.py::test_liquidation_price_binance
# (read 2026-11-20): WB 1,535,443.01 USDT; ETHUSDT long 3683.979 @ 1456.84 (MMR 10%,
# maintenance amount 135,365); BTCUSDT long 109.488 @ 32481.98 (MMR 2.5%, amount 16,300).
ETH_TIER = [{"floor": "0", "mmr": "0.10", "imr": "0.2", "maintenance_amount": "135365"}]
BTC_TIER = [{"floor": "0", "mmr": "0.025", "imr": "0.05", "maintenance_amount": "16300"}]


def _portfolio(mode: str, positions: list[dict[str, str]], prices: dict[str, str],
               collateral: str | None) -> dict[str, Any]:
    account: dict[str, Any] = {"mode": mode, "positions": positions}
    if collateral:
        account["collateral"] = {"USDT": collateral}
    return {"venue": "binance",
            "markets": {"ETH-PERP": {"tiers": ETH_TIER},
                        "BTC-PERP": {"tiers": BTC_TIER, "tick_size": "0.01"}},
            "prices": prices, "account": account}


@pytest.mark.parametrize(
    ("case", "mode", "positions", "prices", "collateral", "market", "expected"),
    [
        ("binance-faq-isolated-ETHUSDT", "isolated",
         [{"market": "ETH-PERP", "size": "3683.979", "entry_price": "1456.84",
           "margin": "1535443.01"}], {"ETH-PERP": "1456.84"}, None, "ETH-PERP", 1114.78),
        ("binance-faq-isolated-BTCUSDT", "isolated",
         [{"market": "BTC-PERP", "size": "109.488", "entry_price": "32481.98",
           "margin": "1535443.01"}], {"BTC-PERP": "32481.98"}, None, "BTC-PERP", 18778.73),
        ("binance-faq-cross-ETHUSDT", "cross",
         [{"market": "BTC-PERP", "size": "109.488", "entry_price": "32481.98"},
          {"market": "ETH-PERP", "size": "3683.979", "entry_price": "1456.84"}],
         {"BTC-PERP": "31967.27", "ETH-PERP": "1335.18"}, "1535443.01", "ETH-PERP", 1153.26),
        ("binance-faq-cross-BTCUSDT", "cross",
         [{"market": "BTC-PERP", "size": "109.488", "entry_price": "32481.98"},
          {"market": "ETH-PERP", "size": "3683.979", "entry_price": "1456.84"}],
         {"BTC-PERP": "31967.27", "ETH-PERP": "1335.18"}, "1535443.01", "BTC-PERP", 26316.89),
    ],
    ids=lambda x: x if isinstance(x, str) and x.startswith("binance") else "",
)
def test_binance_published_liquidation_prices(case: str, mode: str, positions: list[Any],
                                              prices: dict[str, str], collateral: str | None,
                                              market: str, expected: float) -> None:
    # The FAQ quotes BTC to 0.01, so the BTC-PERP tick is overridden to 0.01 here.
    report = evaluate_portfolio(_portfolio(mode, positions, prices, collateral))
    got = {p["market"]: p for p in report["positions"]}[market]["liquidation_price"]
    assert float(got) == pytest.approx(expected, abs=0.02), case


def _health(engine: Engine, market: str, price: float) -> float:
    b = engine.book
    r = b.row_index[ACCOUNT]
    m = b.market_index[market]
    return float(row_health_at(r, m, price, b.row_first, b.st, b.row_int, b.mk, b.mki,
                               b.tiers, b.asset_price, b.ascale, b.asset_link,
                               b.atier_start, b.atier_count, b.atiers))


def test_incremental_sums_equal_the_from_scratch_health() -> None:
    data = _portfolio("cross",
                      [{"market": "BTC-PERP", "size": "109.488", "entry_price": "32481.98"},
                       {"market": "ETH-PERP", "size": "3683.979", "entry_price": "1456.84"}],
                      {"BTC-PERP": "31967.27", "ETH-PERP": "1335.18"}, "1535443.01")
    e = load_portfolio_engine(data)
    from solvency.core.model.events import Price

    for i, px in enumerate(["30000.01", "25000.5", "33000.77", "28888.88"]):
        e.apply(Price(id=f"m{i}", market="BTC-PERP", price=Decimal(px)))
        r = e.book.row_index[ACCOUNT]
        inc = e.book.aggregate(np.array([r]))[0]
        assert inc[1] - inc[3] == _health(e, "BTC-PERP", float(px))  # bit for bit
        again = Engine.restore(e.snapshot())
        assert np.array_equal(again.book.row_int[r], e.book.row_int[r])


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    venue=st.sampled_from(["binance", "hyperliquid", "dydx", "drift", "deribit", "bitmex"]),
    size=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("400"), places=2),
    long=st.booleans(),
    leverage=st.integers(min_value=2, max_value=40),
    eth=st.booleans(),
)
def test_displayed_price_is_where_the_engine_starts_liquidating(
    venue: str, size: Decimal, long: bool, leverage: int, eth: bool
) -> None:
    settle = "USDT" if venue in ("binance", "bitmex") else "USDC"
    price = Decimal(100000)
    notional = size * price
    positions = [{"market": "BTC-PERP", "size": str(size if long else -size),
                  "entry_price": str(price)}]
    prices = {"BTC-PERP": str(price)}
    if eth:
        positions.append({"market": "ETH-PERP", "size": "-10" if long else "10",
                          "entry_price": "3000"})
        prices["ETH-PERP"] = "3000"
    data = {"venue": venue, "prices": prices,
            "account": {"collateral": {
                settle: str((notional / leverage).quantize(Decimal("0.01")))},
                        "positions": positions}}
    e = load_portfolio_engine(data)
    b = e.book
    r = b.row_index[ACCOUNT]
    s = b.slot_of(r, b.market_index["BTC-PERP"])
    p = float(b.liquidation_prices(np.array([r]), np.array([s]))[0])
    if np.isnan(p):
        return
    # just inside the liquidation price the account is still healthy; at it, it is not
    eps = p * 1e-9
    inside = p + eps if long else p - eps
    assert _health(e, "BTC-PERP", p) < 0
    assert _health(e, "BTC-PERP", inside) >= 0 or abs(_health(e, "BTC-PERP", inside)) < 1e-6
    # and the engine's own trigger agrees: no liquidation just inside, one just beyond
    from solvency.core.model.events import Price

    tick = e.venue.markets["BTC-PERP"].tick_size  # marks are on the tick grid (issue 13)
    before = (Decimal(repr(p * (1.001 if long else 0.999))) / tick).to_integral_value() * tick
    out = e.apply(Price(id="probe-in", market="BTC-PERP", price=before))
    assert not [o for o in out if o.type == "liquidation"]
    beyond = (Decimal(repr(p * (0.999 if long else 1.001))) / tick).to_integral_value() * tick
    out = e.apply(Price(id="probe-out", market="BTC-PERP", price=beyond))
    liquidations = [o for o in out if o.type == "liquidation"]
    assert liquidations and liquidations[0].account == ACCOUNT  # type: ignore[union-attr]
    e.verify()


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(-10**12, 10**12), st.integers(-10**12, 10**12),
                          st.integers(0, 10**11), st.integers(0, 10**11)),
                min_size=1, max_size=20),
       st.floats(min_value=0.5, max_value=2.0), st.booleans())
def test_row_valuation_kernel_matches_its_plain_twin(
    rows_q: list[tuple[int, int, int, int]], btc_px: float, weighted: bool
) -> None:
    """``evaluate_rows`` (inlined numba loop) against ``value_row_reference``."""
    from solvency.core.margin.kernels import evaluate_rows, value_row_reference
    from solvency.core.model.presets import load_preset
    from solvency.engine.state import Book

    book = Book(load_preset("binance"))  # 4 assets; BTC weighted 0.95
    n_a = len(book.asset_names)
    for i, (bal, val, im, mm) in enumerate(rows_q):
        r = book.add_row(f"r{i}", f"r{i}", -1, f"u:r{i}", weighted)
        a = i % n_a
        book.row_int[r, a] = bal
        book.row_int[r, n_a + a] = val
        book.row_int[r, 2 * n_a + a] = im
        book.row_int[r, 3 * n_a + a] = mm
    book.asset_price[:] = np.where(np.isnan(book.asset_price), btc_px * 1000, book.asset_price)
    rows = np.arange(len(rows_q), dtype=np.int64)
    out = np.empty((rows.shape[0], 4))
    evaluate_rows(rows, book.row_int, *book._args(), out, book.pm)
    for i in range(rows.shape[0]):
        twin = value_row_reference(i, book.row_int, *book._args())
        assert np.allclose(out[i], twin, rtol=1e-12, atol=1e-9)
