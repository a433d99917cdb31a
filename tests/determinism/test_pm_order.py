"""Portfolio margin depends on the positions, not on the order they were opened in, nor
on slot numbers (issue 30, "What has to change" item 3.2).

Before: the kernel added losses in slot link order and numbered underlyings by first
sight, so the same account's requirement differed in the last bit between the live
engine and its restore for 6 of the 24 orders of opening four BTC positions (measured at
13b459e, deribit preset, deribit_pm grid). Now each row's positions go to the kernel by
market index and underlyings by symbol, the scan uses core/detmath, and the per-
underlying sum runs in index order: every order and every restore give the same bits.
"""

from __future__ import annotations

import itertools
import struct
from decimal import Decimal as D

import numpy as np

from solvency.adapters.grids import load_grid
from solvency.core.model.events import AccountMode, Deposit, Fill, Price, Vol
from solvency.core.model.presets import load_preset
from solvency.engine.engine import Engine

T0 = 1_774_000_000_000
OPTIONS = ("BTC_USDC-26JUN26-100000-C", "BTC-26JUN26-90000-P")
TRADES = (  # (market, size, pm buys?)
    ("BTC_USDC-26JUN26-100000-C", "0.7", False),
    ("BTC-26JUN26-90000-P", "1.3", True),
    ("BTC-PERP", "0.45", True),
    ("ETH-PERP", "2.1", False),
)


def _opened_in(order: tuple[int, ...]) -> Engine:
    grid = load_grid("deribit_pm")
    e = Engine(load_preset("deribit"), pm_grid=grid)
    e.apply(AccountMode(id="mode", account="pm", mode="portfolio", ts_ms=T0))
    e.apply(Deposit(id="d1", account="pm", asset="USDC", amount=D(400_000), ts_ms=T0))
    e.apply(Deposit(id="d2", account="mm", asset="USDC", amount=D(5_000_000), ts_ms=T0))
    e.apply(Price(id="p1", market="BTC-PERP", price=D(100_000), ts_ms=T0))
    e.apply(Price(id="p2", market="ETH-PERP", price=D(3_000), ts_ms=T0))
    e.apply(Price(id="p4", market="BTC-USD-INVERSE", price=D(100_000), ts_ms=T0))
    e.apply(Deposit(id="d3", account="pm", asset="BTC", amount=D(3), ts_ms=T0))
    e.apply(Deposit(id="d4", account="mm", asset="BTC", amount=D(100), ts_ms=T0))
    for n, market in enumerate(OPTIONS):
        e.apply(Vol(id=f"v{n}", market=market, iv=D("0.61"), ts_ms=T0))
    for n in order:
        market, size, pm_buys = TRADES[n]
        m = e.book.market_index[market]
        price = e.book.marks[m]
        assert price is not None
        buyer, seller = ("pm", "mm") if pm_buys else ("mm", "pm")
        out = e.apply(Fill(id=f"f{n}", market=market, buyer=buyer, seller=seller,
                           size=D(size), price=price, ts_ms=T0))
        assert not [o for o in out if o.type == "rejected"], out
    # a move re-margins the rows (the requirement is computed after a valuation)
    e.apply(Price(id="p3", market="BTC-PERP", price=D("97123.5"), ts_ms=T0 + 60_000))
    e.apply(Price(id="p5", market="BTC-USD-INVERSE", price=D("97111"), ts_ms=T0 + 60_000))
    return e


def _pm_bits(e: Engine) -> bytes:
    view = e.account_view("pm")
    im, mm = float(view["initial_margin"]), float(view["maintenance_margin"])
    assert mm > 0.0
    return struct.pack("<dd", im, mm)


def test_every_opening_order_and_its_restore_give_the_same_bits() -> None:
    grid = load_grid("deribit_pm")
    seen: set[bytes] = set()
    hashes: set[str] = set()
    for order in itertools.permutations(range(len(TRADES))):
        live = _opened_in(order)
        restored = Engine.restore(live.snapshot(), pm_grid=grid)
        assert _pm_bits(restored) == _pm_bits(live), order
        np.testing.assert_array_equal(restored.book.pm, live.book.pm)
        seen.add(_pm_bits(live))
        hashes.add(live.state_hash())
    assert len(seen) == 1, f"{len(seen)} different requirements over 24 orders"
    assert len(hashes) == 1
