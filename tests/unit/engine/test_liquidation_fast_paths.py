"""The liquidation sweep's fast paths change no outcome (issue 14, the 20 % shock).

``Liquidator._step`` plans a step without walking the ADL queue first when the fund can
absorb it (``liquidation.LAZY_ADL``), and ``adl_allocate`` splits a short queue head in
Python ints instead of numpy. Each is run here against its reference (the queue walked
at every step; the vectorized allocation) on a random population of every preset with a
fund that runs dry mid-crash: the same out-events, the same ledger to the quantum, the
same state hash, every step's counts; and the population reaches fund takeovers, ADL and
(where the preset has it) socialization, so both branches of the fast path are taken.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import numpy as np
import pytest

import solvency.core.liquidation.adl as adl_mod
import solvency.engine.liquidation as liq_mod
from solvency.core.liquidation import POLICIES, adl_allocate
from solvency.core.model.events import Deposit, Price
from solvency.core.model.presets import load_preset
from solvency.engine.engine import Engine
from solvency.engine.ports import StaticDepth

PRESETS = ["binance", "bitmex", "deribit", "drift", "dydx", "hyperliquid", "bitmex+100000"]
PRICES = {"BTC-PERP": 100_000, "ETH-PERP": 3_000}


def _crash(venue: str, seed: int) -> tuple[list[str], str, dict[str, int], dict[str, int]]:
    rng = np.random.default_rng(seed)
    name, _, threshold = venue.partition("+")
    policy = None
    if threshold:  # an ADL threshold (dYdX's MaxInsuranceFundQuantumsForDeleveraging)
        settle = load_preset(name).markets["BTC-PERP"].settle
        dec = load_preset(name).assets[settle].decimals
        policy = replace(POLICIES[name], adl_fund_threshold_quanta=int(threshold) * 10**dec)
    e = Engine(load_preset(name), liquidity=StaticDepth(lots_per_level=400, level_bps=40),
               policy=policy)
    markets = list(PRICES)
    settle = e.venue.markets[markets[0]].settle
    dec = e.venue.assets[settle].decimals
    for m, px in PRICES.items():
        e.apply(Price(id=f"p0-{m}", market=m, price=D(px)))
    n = 300
    pos_market = rng.integers(0, 2, n)
    lot = np.array([float(e.venue.markets[m].lot_size) for m in markets])[pos_market]
    price = np.array([PRICES[m] for m in markets], dtype=np.float64)[pos_market]
    tick = np.array([float(e.venue.markets[m].tick_size) for m in markets])[pos_market]
    units = rng.uniform(0.05, 2.0, n) / price * 10_000  # 500 .. 20,000 USD of notional
    lots = np.maximum((units / lot).astype(np.int64), 1)
    lots *= np.where(rng.random(n) < 0.55, 1, -1)
    ticks = np.round(price / tick).astype(np.int64)
    leverage = rng.uniform(1.5, 30.0, n)
    notional_q = np.abs(lots) * lot * price * 10**dec
    collateral = (notional_q / leverage).astype(np.int64) + 1
    e.load_book([f"a{i}" for i in range(n)], settle, collateral, np.arange(n, dtype=np.int64),
                pos_market, lots, ticks)
    # a fund that pays the first few shortfalls and takeovers, then runs dry
    e.apply(Deposit(id="fund", account="__insurance__", asset=settle, amount=D(150000)))
    out: list[str] = []
    for k, move in enumerate(("0.93", "0.86", "0.78", "0.70", "0.88", "1.05")):
        for m, px in PRICES.items():
            ev = e.apply(Price(id=f"p{k}-{m}", market=m, price=D(px) * D(move)))
            out.extend(repr(x) for x in ev)
    e.verify()
    ledger = {f"{a}/{s}": v for (a, s), v in e.ledger.balances().items()}
    return out, e.state_hash(), ledger, dict(e.liquidator.counts)


def _walks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    # counts the ADL queue walks (the work the lazy path skips)
    calls = [0]
    walk = liq_mod.Liquidator._adl_queue

    def counted(self: liq_mod.Liquidator, *args: object) -> object:
        calls[0] += 1
        return walk(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(liq_mod.Liquidator, "_adl_queue", counted)
    return calls


@pytest.mark.parametrize("venue", PRESETS)
def test_fast_paths_change_nothing(venue: str, monkeypatch: pytest.MonkeyPatch) -> None:
    walks = _walks(monkeypatch)
    fast = _crash(venue, 7)
    fast_walks = walks[0]
    monkeypatch.setattr(liq_mod, "LAZY_ADL", False)
    monkeypatch.setattr(adl_mod, "SMALL_QUEUE", 0)
    ref = _crash(venue, 7)
    ref_walks = walks[0] - fast_walks
    assert fast[3] == ref[3]
    assert fast[2] == ref[2]  # every ledger account to the quantum
    assert fast[0] == ref[0]  # every out-event, in order
    assert fast[1] == ref[1]
    counts = fast[3]
    # the population reaches the paths the fast path chooses between
    assert counts["steps"] > 20, counts
    assert counts["fund_takeover"] + counts.get("backstop", 0) > 0 or venue in (
        "dydx", "drift", "deribit"), counts
    assert counts["adl"] + counts["socialized"] + counts["bad_debt"] > 0, counts
    if venue in ("binance", "bitmex", "hyperliquid", "bitmex+100000"):
        # the fund absorbed some steps without a walk, and the queue was walked once it
        # could not (it runs dry mid-crash): both branches taken
        assert 0 < fast_walks < ref_walks, (fast_walks, ref_walks)


def test_small_queue_allocation_is_the_vectorized_one() -> None:
    rng = np.random.default_rng(3)
    for _ in range(2_000):
        n = int(rng.integers(1, 40))
        lots = rng.integers(-50, 50, n).astype(np.int64)
        eligible = rng.random(n) < 0.7
        order = rng.permutation(n).astype(np.int64)
        need = int(rng.integers(0, 400))
        got = adl_allocate(need, lots=lots, order=order, eligible=eligible)
        # the vectorized formula, written out
        avail = np.where(eligible, np.abs(lots), 0).astype(np.int64)
        q = avail[order]
        want = np.zeros(n, dtype=np.int64)
        want[order] = np.clip(need - (np.cumsum(q) - q), 0, q)
        assert got.dtype == np.int64
        assert got.tolist() == want.tolist()
