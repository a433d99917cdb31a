"""The engine's portfolio-margin inputs, built over all rows at once, equal the
per-position formula bit for bit (issue 14: the scan's real path through the engine)."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from solvency.adapters.grids import load_grid
from solvency.core.margin.kernels import S_LOTS
from solvency.core.model.events import AccountMode, Deposit, Fill, Price, Vol
from solvency.core.model.presets import load_preset
from solvency.core.portfolio import KIND_CALL, KIND_FUTURE, KIND_PUT
from solvency.engine.engine import Engine
from solvency.engine.option_book import MS_PER_YEAR
from solvency.engine.portfolio_margin import underlying_usd

MARKETS = ["BTC-PERP", "ETH-PERP", "BTC_USDC-26JUN26-100000-C", "BTC-26JUN26-90000-P",
           "BTC-USD-INVERSE"]
TS = 1_774_000_000_000


def _reference(pm: Any, book: Any, ivs: Any, now_ms: int, rows: np.ndarray,
               extra: tuple[int, int] | None) -> tuple[dict[str, Any] | None, list[Any]]:
    """The inputs position by position, as the engine built them before (4ce05f2)."""
    held: list[tuple[int, int, int]] = []
    for i, r in enumerate(rows.tolist()):
        markets: dict[int, int] = {}
        for s in book.row_slots(r):
            markets[int(book.st[s, 0])] = int(book.st[s, S_LOTS])
        if extra is not None and i == 0 and extra[1]:
            markets[extra[0]] = markets.get(extra[0], 0) + extra[1]
        held.extend((i, m, lots) for m, lots in sorted(markets.items()) if lots)
    split = pm.grid is not None and pm.grid.pnl_currency == "coin"

    def pool(m: int) -> tuple[str, bool]:
        inst = book.instruments[m]
        return str(inst.base), split and inst.settle == inst.base

    pools = sorted({pool(m) for _, m, _ in held})
    u_of = {p: u for u, p in enumerate(pools)}
    cols: dict[str, list[Any]] = {k: [] for k in ("account", "underlying", "kind",
                                                  "strike", "expiry_yr", "size", "vol")}
    default_iv = Decimal(str(pm.default_vol))
    for i, m, lots in held:
        inst = book.instruments[m]
        contracts = lots * book.lot_size[m] * float(inst.contract_size)
        cols["account"].append(i)
        cols["underlying"].append(u_of[pool(m)])
        if inst.is_option:
            cols["kind"].append(KIND_CALL if inst.option_kind == "call" else KIND_PUT)
            cols["strike"].append(float(inst.strike or 0))
            cols["expiry_yr"].append(max((inst.expiry_ms or 0) - now_ms, 1) / MS_PER_YEAR)
            cols["size"].append(contracts)
            cols["vol"].append(float(ivs.get(m, default_iv)))
            continue
        mark = float(book.mk[m, 3])
        cols["kind"].append(KIND_FUTURE)
        cols["strike"].append(0.0)
        cols["expiry_yr"].append(0.0)
        cols["size"].append(contracts / mark if inst.is_inverse else contracts)
        cols["vol"].append(float("nan"))
    if not held:
        return None, pools
    out: dict[str, Any] = {k: np.array(v) for k, v in cols.items()}
    out["kind"] = np.array(cols["kind"], dtype=np.int8)
    out["underlying_price"] = np.array([underlying_usd(book, sym) for sym, _ in pools])
    out["coin"] = np.array([c for _, c in pools], dtype=np.bool_)
    return out, pools


def _engine(grid_name: str, n: int, seed: int) -> Engine:
    rng = random.Random(seed)
    e = Engine(load_preset("deribit"), pm_grid=load_grid(grid_name))
    for ev in (Deposit(id="d-mm", account="mm", asset="USDC", amount=Decimal(10**9), ts_ms=TS),
               Deposit(id="d-mmb", account="mm", asset="BTC", amount=Decimal(10_000),
                       ts_ms=TS),
               Price(id="p1", market="BTC-PERP", price=Decimal(100_000), ts_ms=TS),
               Price(id="p2", market="BTC-USD-INVERSE", price=Decimal(100_100), ts_ms=TS),
               Price(id="p3", market="ETH-PERP", price=Decimal(3_000), ts_ms=TS),
               Vol(id="v1", market=MARKETS[2], iv=Decimal("0.55"), ts_ms=TS),
               Vol(id="v2", market=MARKETS[3], iv=Decimal("0.7"), ts_ms=TS)):
        e.apply(ev)
    for i in range(n):
        a = f"pm{i}"
        e.apply(AccountMode(id=f"mode{i}", account=a, mode="portfolio", ts_ms=TS))
        e.apply(Deposit(id=f"d{i}", account=a, asset="USDC", amount=Decimal(500_000),
                        ts_ms=TS))
        e.apply(Deposit(id=f"db{i}", account=a, asset="BTC", amount=Decimal(5), ts_ms=TS))
        for k, market in enumerate(rng.sample(MARKETS, rng.randint(0, len(MARKETS)))):
            mark = e.book.marks[e.book.market_index[market]]
            assert mark is not None
            buy = rng.random() < 0.5
            size = Decimal(rng.choice(("0.1", "0.5", "1", "2"))) if market != \
                "BTC-USD-INVERSE" else Decimal(rng.choice((10, 100, 1_000)))
            e.apply(Fill(id=f"f{i}-{k}", market=market, buyer=a if buy else "mm",
                         seller="mm" if buy else a, size=size, price=mark, ts_ms=TS))
    return e


@pytest.mark.parametrize("grid_name", ["deribit_pm", "cme_span_16"])
def test_inputs_equal_the_per_position_formula(grid_name: str) -> None:
    e = _engine(grid_name, 60, 5)
    pm = e.portfolio_margin
    book = e.book
    ivs = e.ivs
    rows = np.array([book.row_index[f"pm{i}"] for i in range(60)], dtype=np.int64)
    now = TS + 3_600_000
    m_call = book.market_index[MARKETS[2]]
    m_inv = book.market_index["BTC-USD-INVERSE"]
    held0 = {int(book.st[s, 0]): int(book.st[s, S_LOTS]) for s in book.row_slots(rows[0])}
    cases = [(rows, None), (rows[::-1].copy(), None), (rows[:1], (m_call, 3)),
             (rows[:1], (m_inv, -7)), (rows[5:9], (m_call, 0)), (rows[:0], None)]
    # a what-if that closes the first row's position in one of its markets
    cases += [(rows[:1], (m, -lots)) for m, lots in list(held0.items())[:1]]
    for sel, extra in cases:
        got, pools = pm._inputs(book, ivs, now, sel, extra)
        want, want_pools = _reference(pm, book, ivs, now, sel, extra)
        assert pools == want_pools
        if want is None:
            assert got is None
            continue
        assert got is not None
        assert sorted(got) == sorted(want)
        for key, value in want.items():
            assert got[key].dtype == value.dtype, key
            assert got[key].tobytes() == value.tobytes(), key
    assert len(pools) >= 1
