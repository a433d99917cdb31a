"""Liquidations at risk (issue 18's risk report): the shocked valuation equals the
engine's own after the same marks are set, and the accounts it says would be liquidated
are the ones an actual engine run of the same shock liquidates."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pytest

from solvency.adapters.eventlog import load_venue
from solvency.adapters.grids import load_grid
from solvency.core.margin.kernels import MK_MARK
from solvency.core.model.events import Deposit, Fill, Price
from solvency.engine.engine import Engine
from solvency.engine.summary import liquidations_at_risk

TS = 1_774_512_000_000


def book() -> Engine:
    """Eight BTC-PERP longs from 3x to 24x against a market maker, one short."""
    e = Engine(load_venue("binance"), pm_grid=load_grid("deribit_pm"))
    e.apply(Price(id="p0", market="BTC-PERP", price=Decimal("80000"), ts_ms=TS))
    e.apply(Deposit(id="dmm", account="mm", asset="USDT", amount=Decimal("50000000"),
                    ts_ms=TS))
    e.apply(Deposit(id="dins", account="__insurance__", asset="USDT",
                    amount=Decimal("1000000"), ts_ms=TS))
    for i, lev in enumerate((3, 5, 8, 11, 14, 17, 20, 24)):
        e.apply(Deposit(id=f"d{i}", account=f"t{i}", asset="USDT", amount=Decimal("10000"),
                        ts_ms=TS))
        size = (Decimal(10000 * lev) / Decimal(80000)).quantize(Decimal("0.001"))
        out = e.apply(Fill(id=f"f{i}", market="BTC-PERP", buyer=f"t{i}", seller="mm",
                           size=size, price=Decimal("80000"), ts_ms=TS))
        assert not out or out[0].type != "rejected", out
    e.apply(Deposit(id="ds", account="short", asset="USDT", amount=Decimal("10000"),
                    ts_ms=TS))
    e.apply(Fill(id="fs", market="BTC-PERP", buyer="mm", seller="short",
                 size=Decimal("1.5"), price=Decimal("80000"), ts_ms=TS))
    return e


def test_the_shocked_valuation_is_the_engines_own() -> None:
    e = book()
    rows = liquidations_at_risk(e, (-0.10,))
    copy = Engine.restore(json.loads(json.dumps(e.snapshot(), default=str)),
                          pm_grid=load_grid("deribit_pm"))
    m = copy.book.market_index["BTC-PERP"]
    copy.book.set_mark(m, Decimal(str(float(copy.book.mk[m, MK_MARK]) * 0.9)))
    out = copy.book.remargin_all()
    n = len(copy.book.rows)
    liq = (out[:n, 1] < out[:n, 3]) & (out[:n, 3] > 0) & ~copy.book.row_system[:n]
    assert rows[1]["rows"] == int(liq.sum()) and rows[1]["shock"] == "-10%"
    assert rows[0]["shock"] == "+0%" and rows[0]["accounts"] == 0


@pytest.mark.parametrize("shock", [-0.05, -0.10, -0.20, 0.10, 0.30])
def test_predicted_accounts_are_the_ones_a_real_run_liquidates(shock: float) -> None:
    e = book()
    predicted = liquidations_at_risk(e, (shock,))[1]
    out = e.apply(Price(id="shock", market="BTC-PERP",
                        price=Decimal(80000 * (1 + shock)).quantize(Decimal("0.1")),
                        ts_ms=TS + 1000))
    liquidated = {o.account for o in out if o.type == "liquidation"}
    assert predicted["accounts"] == len(liquidated), (predicted, liquidated)
    if shock < 0:
        assert "short" not in liquidated
    assert float(predicted["notional_usd"]) >= 0
    # the long and short sides (the stress-lab liquidation map): a fall liquidates the
    # longs t0..t7, a rise the one short; each side is the liquidatable rows' positions
    # of that side at the shocked mark
    long_usd = float(predicted["long_notional_usd"])
    short_usd = float(predicted["short_notional_usd"])
    assert long_usd + short_usd == pytest.approx(float(predicted["notional_usd"]), abs=0.011)
    mark = 80000 * (1 + shock)
    held = {f"t{i}": float((Decimal(10000 * lev) / Decimal(80000)).quantize(Decimal("0.001")))
            for i, lev in enumerate((3, 5, 8, 11, 14, 17, 20, 24))}
    if shock < 0:
        assert short_usd == 0.0
        want = sum(held[a] for a in liquidated) * mark
        assert long_usd == pytest.approx(want, rel=1e-9, abs=0.01)
    else:
        assert long_usd == 0.0
        assert short_usd == pytest.approx(1.5 * mark if liquidated else 0.0, rel=1e-9)


def test_a_bulk_book_answers_every_shock() -> None:
    # 20,000 bulk-loaded accounts (arrays all the way): more accounts liquidatable the
    # deeper the move, none at no move
    e = Engine(load_venue("binance"))
    rng = np.random.default_rng(3)
    n = 20_000
    e.apply(Price(id="p0", market="BTC-PERP", price=Decimal("80000"), ts_ms=TS))
    m = e.book.market_index["BTC-PERP"]
    lots = (rng.uniform(1, 40, n) * 1000).astype(np.int64)  # 0.001 BTC lots: 1-40 BTC
    lots *= np.where(rng.random(n) < 0.7, 1, -1)
    notional = np.abs(lots) * 0.001 * 80000
    collateral = (notional / rng.uniform(2, 30, n) * 1e6).astype(np.int64)
    e.load_book([f"a{i}" for i in range(n)], "USDT", collateral, np.arange(n),
                np.full(n, m), lots, np.full(n, 800000, dtype=np.int64))
    rows = liquidations_at_risk(e)
    assert len(rows) == 9 and rows[0]["shock"] == "+0%"
    down = [r["accounts"] for r in rows[1:5]]  # -30, -20, -10, -5 %
    assert down == sorted(down, reverse=True) and down[0] > 0
    assert rows[0]["accounts"] <= down[-1]
