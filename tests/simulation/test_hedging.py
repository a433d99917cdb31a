"""Delta hedging through a real engine: a seeded GBM study and the hedger's rules.

The study: a desk is short 10 at-the-money 30-day BTC calls (linear, USDC) sold at the
Black-76 price with the vol the paths are drawn with, and hedges with dYdX's BTC-PERP
through an :class:`~solvency.engine.engine.Engine` (pre-trade checked orders, fills
against a market maker at 5 bps fee and 2 bps slippage). The same 32 seeded paths are
hedged at every band, so the trends compare like with like. Run this file as a script to
print the table of ``docs/greeks_and_hedging.md``::

    python -m tests.simulation.test_hedging
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from functools import cache

import numpy as np
import pytest

from solvency.core.ledger.ledger import FEES, INSURANCE
from solvency.core.model.events import Deposit, Price
from solvency.core.model.presets import load_preset
from solvency.core.options import black76_greeks
from solvency.engine.engine import Engine
from solvency.engine.hedging import (
    HedgeConfig,
    Hedger,
    engine_collateral,
    fill_order,
    perp_delta,
    propose_rebalance,
)
from solvency.engine.option_book import OptionBook, OptionBookError, OptionSpec
from solvency.sim.paths import GbmSpec, simulate

DAY_MS = 86_400_000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
S0 = 60_000.0
VOL = 0.6
N_CALLS = 10.0
SEED = 20_261_120
N_PATHS = 32
STEP_MS = 2 * 3_600_000
FEE_RATE = 0.0005  # dYdX taker, 5 bps
SLIPPAGE = 0.0002
DESK_USDC = 200_000
BANDS = (0.25, 0.5, 1.0, 2.0, 4.0)
CALL = OptionSpec("BTC-C-60000", "BTC", "call", S0, START_MS + 30 * DAY_MS, "USDC")


@dataclass(frozen=True)
class Outcome:
    pnl_usd: float
    cost_usd: float
    orders: int
    fees_booked_usd: float


def _engine(s0: float, desk_usdc: int = DESK_USDC) -> Engine:
    eng = Engine(load_preset("dydx"))
    eng.apply(Price(id="p0", market="BTC-PERP", price=Decimal(round(s0)), ts_ms=START_MS))
    eng.apply(Deposit(id="d-desk", account="desk", asset="USDC", amount=Decimal(desk_usdc)))
    eng.apply(Deposit(id="d-mm", account="mm", asset="USDC", amount=Decimal(10**9)))
    return eng


def _book() -> OptionBook:
    book = OptionBook()
    book.add(CALL, -N_CALLS)
    return book


def run_path(path: np.ndarray, ts_ms: np.ndarray, band: float | None) -> Outcome:
    """Hedge one path (``band`` None: never hedge); PnL = engine equity change + options."""
    eng = _engine(float(path[0]))
    book = _book()
    vols = {CALL.name: VOL}
    v_start = book.value_quote({"BTC": float(path[0])}, vols, START_MS)
    hedger = None if band is None else Hedger(
        HedgeConfig("desk", {"BTC": "BTC-PERP"}, band_base=band), book)
    cost = Decimal(0)
    orders = 0
    for i in range(1, len(path)):
        now = int(ts_ms[i])
        eng.apply(Price(id=f"p{i}", market="BTC-PERP", price=Decimal(round(float(path[i]))),
                        ts_ms=now))
        if hedger is None or now >= CALL.expiry_ms:
            continue
        for d in hedger.step(eng, vols=vols, now_ms=now):
            if d.order is None:
                continue
            assert d.accepted, d.reason
            fill = fill_order(eng, d.order, counterparty="mm", fee_rate=FEE_RATE,
                              slippage_rate=SLIPPAGE)
            assert fill.accepted, fill.out
            cost += fill.cost_settle
            orders += 1
    s_end = float(eng.book.marks[eng.book.market_index["BTC-PERP"]] or 0)
    equity = float(eng.account_view("desk")["equity_usd"])
    v_end = book.value_quote({"BTC": s_end}, vols, int(ts_ms[-1]))
    fees = (eng.ledger.balance(FEES, "USDC") + eng.ledger.balance(INSURANCE, "USDC")) / 1e6
    return Outcome(equity - DESK_USDC + v_end - v_start, float(cost), orders, fees)


@cache
def _paths() -> tuple[np.ndarray, np.ndarray]:
    spec = GbmSpec(s0=S0, sigma_annual=VOL, n_steps=30 * DAY_MS // STEP_MS, step_ms=STEP_MS,
                   start_ms=START_MS)
    ps = simulate(spec, N_PATHS, SEED)
    return ps.prices, ps.ts_ms


@cache
def study() -> dict[float | None, list[Outcome]]:
    """Outcomes per band (None: unhedged) on the same seeded paths."""
    prices, ts = _paths()
    return {band: [run_path(prices[k], ts, band) for k in range(N_PATHS)]
            for band in (*BANDS, None)}


def table() -> list[tuple[str, float, float, float, float]]:
    """Rows (band, PnL std, mean PnL, mean hedge cost, mean orders) of the study."""
    rows = []
    for band, outs in study().items():
        pnl = [o.pnl_usd for o in outs]
        rows.append(("unhedged" if band is None else f"{band:g} BTC",
                     statistics.pstdev(pnl), statistics.fmean(pnl),
                     statistics.fmean(o.cost_usd for o in outs),
                     statistics.fmean(o.orders for o in outs)))
    return rows


def test_pnl_variance_falls_and_cost_rises_as_the_band_tightens() -> None:
    rows = table()
    std = [r[1] for r in rows]  # tight band ... wide band, unhedged
    cost = [r[3] for r in rows]
    assert all(a < b for a, b in itertools.pairwise(std)), rows
    assert all(a > b for a, b in itertools.pairwise(cost)), rows
    assert cost[-1] == 0.0
    # the tightest band removes most of the unhedged risk
    assert std[0] < 0.25 * std[-1], rows


def test_measured_cost_covers_the_fees_the_engine_booked() -> None:
    # cost = fees + slippage; the fees alone land in the engine's fee pool (and fund)
    for band in BANDS:
        for o in study()[band]:
            assert 0.0 < o.fees_booked_usd < o.cost_usd
            assert o.orders > 0


# ---------------------------------------------------------------- hedger rules


def _call_delta(f: float, now_ms: int) -> float:
    t = (CALL.expiry_ms - now_ms) / (365 * DAY_MS)
    return float(black76_greeks(forward=f, strike=S0, time_yr=t, vol=VOL, rate=0.0,
                                is_call=True).delta[0])


@pytest.mark.parametrize(
    ("case", "band", "ratio", "expected_reason", "size_btc"),
    [
        # short 10 ATM 30-day calls at 60 % vol: delta -10 x 0.53427 BTC; buy back to the
        # center (all of it, or half), rounded to dYdX's 0.0001 BTC lot
        ("out-of-band-full", 1.0, 1.0, "accepted", 5.3427),
        ("out-of-band-half", 1.0, 0.5, "accepted", 2.6713),
        ("in-band", 6.0, 1.0, "in_band", 0.0),
    ],
)
def test_hedger_trades_the_excess_to_the_band_center(case: str, band: float, ratio: float,
                                                     expected_reason: str,
                                                     size_btc: float) -> None:
    eng = _engine(S0)
    hedger = Hedger(HedgeConfig("desk", {"BTC": "BTC-PERP"}, band_base=band,
                                hedge_ratio=ratio), _book())
    (d,) = hedger.step(eng, vols={CALL.name: VOL}, now_ms=START_MS)
    assert d.reason == expected_reason, case
    assert d.option_delta_base == pytest.approx(-N_CALLS * _call_delta(S0, START_MS))
    if size_btc:
        assert d.order is not None and d.order.side == "buy"
        assert float(d.order.size) == pytest.approx(size_btc, abs=1e-4)
        fill_order(eng, d.order, counterparty="mm", fee_rate=0.0, slippage_rate=0.0)
        assert perp_delta(eng, "desk", "BTC") == pytest.approx(float(d.order.size), rel=1e-12)


def test_min_interval_is_event_time_and_rejections_are_reported() -> None:
    eng = _engine(S0, desk_usdc=1_000)  # 5 BTC of perp needs ~6,000 USDC initial margin
    hedger = Hedger(HedgeConfig("desk", {"BTC": "BTC-PERP"}, band_base=0.5,
                                min_interval_ms=3_600_000), _book())
    (d,) = hedger.step(eng, vols={CALL.name: VOL}, now_ms=START_MS)
    assert (d.accepted, d.reason) == (False, "insufficient_initial_margin")
    (d,) = hedger.step(eng, vols={CALL.name: VOL}, now_ms=START_MS + 3_599_999)
    assert (d.order, d.reason) == (None, "interval")
    eng.apply(Deposit(id="top-up", account="desk", asset="USDC", amount=Decimal(100_000)))
    (d,) = hedger.step(eng, vols={CALL.name: VOL}, now_ms=START_MS + 3_600_000)
    assert (d.accepted, d.reason) == (True, "accepted")


def test_fill_cost_is_fee_plus_slippage_on_the_tick_grid() -> None:
    eng = _engine(S0)
    hedger = Hedger(HedgeConfig("desk", {"BTC": "BTC-PERP"}, band_base=0.0), _book())
    (d,) = hedger.step(eng, vols={CALL.name: VOL}, now_ms=START_MS)
    assert d.order is not None
    fill = fill_order(eng, d.order, counterparty="mm", fee_rate=0.0005, slippage_rate=0.0002)
    # buy at 60,000 x 1.0002 = 60,012 (tick 1); fee 5 bps of the notional, rounded up
    assert fill.fill.price == Decimal(60_012)
    assert fill.slippage_settle == d.order.size * 12
    assert fill.fee_settle == (d.order.size * 60_012 * Decimal("0.0005")).quantize(
        Decimal("0.000001"), ROUND_CEILING)
    assert eng.ledger.balance(FEES, "USDC") == int(fill.fee_settle * 10**6)


def test_option_book_refuses_expired_options_and_values_them_at_intrinsic() -> None:
    book = _book()
    with pytest.raises(OptionBookError, match="expired at 2026-01-31T00:00:00Z"):
        book.delta({"BTC": S0}, {CALL.name: VOL}, CALL.expiry_ms)
    assert book.value_quote({"BTC": 61_000.0}, {}, CALL.expiry_ms) == -10 * 1_000.0


# ---------------------------------------------------------------- collateral


@pytest.mark.parametrize(
    ("case", "balances", "weights", "target", "tolerance", "expected"),
    [
        # all USDC, target 50/50 weighted with BTC at weight 0.95, BTC at 50,000:
        # V = 100,000, W' = 100,000 / (0.5 + 0.5 / 0.95); USDC keeps 0.5 W'
        ("usdc-to-btc", {"USDC": 100_000.0, "BTC": 0.0}, {"USDC": 1.0, "BTC": 0.95},
         {"USDC": 0.5, "BTC": 0.5}, 0.05,
         [("USDC", "BTC", 100_000.0 - 0.5 * 100_000.0 / (0.5 + 0.5 / 0.95))]),
        ("within-tolerance", {"USDC": 52_000.0, "BTC": 1.0}, {"USDC": 1.0, "BTC": 1.0},
         {"USDC": 0.5, "BTC": 0.5}, 0.05, []),
        # BTC counts at half its value: weighted share 25,000 / 75,000 drifts from 0
        ("all-into-usdc", {"USDC": 50_000.0, "BTC": 1.0}, {"USDC": 1.0, "BTC": 0.5},
         {"USDC": 1.0, "BTC": 0.0}, 0.0, [("BTC", "USDC", 50_000.0)]),
    ],
)
def test_rebalance_proposals(case: str, balances: dict[str, float], weights: dict[str, float],
                             target: dict[str, float], tolerance: float,
                             expected: list[tuple[str, str, float]]) -> None:
    prices = {"USDC": 1.0, "BTC": 50_000.0}
    out = propose_rebalance(balances=balances, prices_usd=prices, weights=weights,
                            target=target, tolerance=tolerance)
    assert [(t.from_asset, t.to_asset) for t in out] == [e[:2] for e in expected], case
    for t, e in zip(out, expected, strict=True):
        assert t.value_usd == pytest.approx(e[2], rel=1e-12)
        assert t.amount_from == pytest.approx(e[2] / prices[t.from_asset], rel=1e-12)
    if out:
        after = dict(balances)
        for t in out:
            after[t.from_asset] -= t.amount_from
            after[t.to_asset] += t.amount_to
        w = {a: after[a] * prices[a] * weights[a] for a in after}
        for a, share in target.items():
            assert w[a] / sum(w.values()) == pytest.approx(share, abs=1e-12)


def test_rebalance_reads_the_engine_and_refuses_bad_targets() -> None:
    eng = Engine(load_preset("binance"))  # BTC collateral at weight 0.95
    eng.apply(Price(id="p0", market="BTC-PERP", price=Decimal(50_000), ts_ms=START_MS))
    eng.apply(Deposit(id="d1", account="desk", asset="USDT", amount=Decimal(100_000)))
    balances, prices, weights = engine_collateral(eng, "desk")
    assert (balances["USDT"], prices["BTC"], weights["BTC"]) == (100_000.0, 50_000.0, 0.95)
    out = propose_rebalance(balances=balances, prices_usd=prices, weights=weights,
                            target={"USDT": 0.5, "BTC": 0.5}, tolerance=0.1)
    assert [(t.from_asset, t.to_asset) for t in out] == [("USDT", "BTC")]
    with pytest.raises(ValueError, match="sum to 1"):
        propose_rebalance(balances=balances, prices_usd=prices, weights=weights,
                          target={"USDT": 0.7}, tolerance=0.1)


if __name__ == "__main__":
    print("| band (half-width) | PnL std (USD) | mean PnL (USD) | mean hedge cost (USD) "
          "| orders |")
    print("| --- | --- | --- | --- | --- |")
    for name, sd, mean, c, n in table():
        print(f"| {name} | {sd:,.0f} | {mean:,.0f} | {c:,.0f} | {n:.1f} |")
