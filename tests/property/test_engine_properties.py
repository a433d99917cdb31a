"""Property tests over random event sequences (hypothesis), for every venue preset.

After every event:
* each asset's ledger total equals deposits minus withdrawals (re-added from scratch), the
  clearing account is empty, every market's signed sizes sum to zero and the
  open-interest index matches the positions;
* no account is left below maintenance margin unless its liquidation is still in
  progress by policy (the liquidator's deficit set), and any shortfall is recorded
  (insurance fund, ADL, socialization or ``sys:bad_debt``), never lost;
* an account with no open position never loses money to ADL or socialization;
* ADL only closes positions that are in profit at the execution price;
* the insurance fund never goes negative.
Replaying the same events gives the same ``state_hash``; so does snapshot + restore + the
rest of the log.

The generator draws the book's depth (the default deep book, or a thin one) and the
insurance fund's size with the events, and each preset also runs explicit paths
(``WATERFALL_PATHS``), so every step of every preset's waterfall runs: the book, the
backstop, the fund's takeover and unwind or its cash payments, ADL on every preset that
has it, socialization. The test prints how often each step ran and fails if one the
preset's policy has never did (the properties above would hold vacuously there).
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from solvency.core.ledger.ledger import INSURANCE
from solvency.core.liquidation.policy import LiquidationPolicy, policy_for
from solvency.core.margin.kernels import OUT_COLLATERAL, OUT_MM
from solvency.core.model.events import InputEvent, parse_event
from solvency.core.model.presets import load_preset
from solvency.engine.engine import Engine
from solvency.engine.liquidation import SYSTEM_ROWS
from solvency.engine.ports import StaticDepth

ACCOUNTS = ["a", "b", "c", "d", "iso"]
BASE = {"BTC": 100000, "ETH": 3000}
VENUES = ["binance", "dydx", "hyperliquid", "drift", "deribit", "bitmex"]


def _markets(venue: str) -> dict[str, tuple[int, Decimal, Decimal, str]]:
    v = load_preset(venue)
    return {m.name: (BASE[m.base], m.tick_size, m.lot_size, m.kind) for m in v.markets.values()}


def _settle(venue: str) -> str:
    return "USDT" if venue in ("binance", "bitmex") else "USDC"


def _price(markets: dict[str, Any], market: str, factor: float) -> str:
    base, tick, _, _ = markets[market]
    return str(max(Decimal(1), (Decimal(str(base * factor)) / tick).to_integral_value()) * tick)


def _strategy(venue: str) -> Any:
    markets = _markets(venue)
    names = sorted(markets)
    perps = [m for m in names if markets[m][3] != "linear_future"]
    futures = [m for m in names if markets[m][3] == "linear_future"]
    assets = [_settle(venue), "BTC", "ETH"]
    account = st.sampled_from(ACCOUNTS)
    market = st.sampled_from(names)
    # a jump, or a small move (an account between the backstop's 2/3 of maintenance
    # margin and maintenance itself)
    factor = st.one_of(st.floats(min_value=0.5, max_value=1.5, allow_nan=False),
                       st.floats(min_value=0.97, max_value=1.03, allow_nan=False))
    amount = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("500000"), places=3)
    deposit = st.builds(lambda acc, asset, amt: {"type": "deposit", "account": acc,
                                                 "asset": asset, "amount": str(amt)},
                        account, st.sampled_from(assets), amount)
    withdraw = st.builds(lambda acc, asset, amt: {"type": "withdraw", "account": acc,
                                                  "asset": asset, "amount": str(amt)},
                         account, st.sampled_from(assets), amount)
    price = st.builds(lambda m, f: {"type": "price", "market": m,
                                    "price": _price(markets, m, f)}, market, factor)
    fill = st.builds(
        lambda m, b, s, k, f, fee: {"type": "fill", "market": m, "buyer": b, "seller": s,
                                    "size": _size(venue, m, k), "price": _price(markets, m, f),
                                    "fee_buyer": str(fee), "fee_seller": str(-fee / 4)},
        market, account, account, st.integers(min_value=1, max_value=600),
        st.floats(min_value=0.97, max_value=1.03), st.decimals(
            min_value=Decimal(0), max_value=Decimal("5"), places=4))
    funding = st.builds(lambda m, r: {"type": "funding", "market": m, "rate": str(r)},
                        st.sampled_from(perps), st.decimals(
                            min_value=Decimal("-0.003"), max_value=Decimal("0.003"), places=7))
    iso = st.builds(lambda amt: {"type": "isolated_margin", "account": "iso",
                                 "market": "BTC-PERP", "amount": str(amt)},
                    st.decimals(min_value=Decimal("-50"), max_value=Decimal("50"),
                                places=2).filter(lambda d: d != 0))
    options = [deposit, deposit, withdraw, price, price, price, fill, fill, fill, funding, iso]
    if futures:
        options.append(st.builds(lambda f: {"type": "expiry", "market": futures[0],
                                            "price": _price(markets, futures[0], f),
                                            "ts": "2026-03-27T08:00:00Z"}, factor))
    return st.lists(st.one_of(*options), min_size=20, max_size=60)


def _events(venue: str, specs: list[dict[str, Any]]) -> list[InputEvent]:
    markets = _markets(venue)
    head: list[dict[str, Any]] = [{"type": "account", "account": "iso", "mode": "isolated"}]
    head += [{"type": "price", "market": m, "price": _price(markets, m, 1.0)}
             for m in sorted(markets)]
    head += [{"type": "deposit", "account": a, "asset": _settle(venue), "amount": "20000"}
             for a in ACCOUNTS]
    head += [{"type": "deposit", "account": "__backstop__", "asset": _settle(venue),
              "amount": "1000000"}]
    return [parse_event({"id": f"e{i}", **spec}) for i, spec in enumerate(head + specs)]


def _flat_balances(engine: Engine) -> dict[str, dict[str, int]]:
    """Balances of every row of accounts that hold no position in any of their rows."""
    book = engine.book
    holding = {info.account for r, info in enumerate(book.rows) if book.row_nslots[r] > 0}
    out = {}
    for info in book.rows:
        if info.account in SYSTEM_ROWS or info.account in holding:
            continue
        out[info.ledger_id] = {a: engine.ledger.balance(info.ledger_id, a)
                               for a in book.asset_names}
    return out


def _check(engine: Engine, deposits: dict[str, int]) -> None:
    totals = engine.verify()  # conservation, balanced OI, fresh OI index, empty clearing
    assert totals == {a: deposits.get(a, 0) for a in totals}
    for a in engine.book.asset_names:
        assert engine.ledger.balance(INSURANCE, a) >= 0
    book = engine.book
    rows = np.array([r for r, i in enumerate(book.rows) if i.account not in SYSTEM_ROWS],
                    dtype=np.int64)
    if rows.shape[0]:
        out = book.aggregate(rows)
        below = rows[(out[:, OUT_COLLATERAL] < out[:, OUT_MM]) & (out[:, OUT_MM] > 0)]
        for r in below.tolist():
            assert r in engine.liquidator.deficit_rows, book.rows[r].name


def _steps(out: list[Any]) -> list[str]:
    """The waterfall steps an event's out-events show (docs/liquidation.md)."""
    steps = []
    for o in out:
        if o.type == "liquidation":
            steps.append(f"close via {o.via}")
            if Decimal(o.insurance_fund_delta) < 0:
                steps.append("fund pays a shortfall")
        elif o.type == "bad_debt":  # a flat account's negative balance
            if Decimal(o.insurance_paid) > 0:
                steps.append("fund pays a shortfall")
            if Decimal(o.bad_debt) > 0:
                steps.append("bad debt")
        elif o.type == "socialized_loss":
            if Decimal(o.covered) > 0:
                steps.append(f"socialized ({o.rule})")
            if Decimal(o.bad_debt) > 0:
                steps.append("bad debt")
        elif o.type in ("adl", "fund_unwind"):
            steps.append(o.type)
    return steps


def _waterfall(policy: LiquidationPolicy) -> set[str]:
    """The steps a preset's policy has (core/liquidation/waterfall.py): the book; the
    backstop vault; the fund taking over and later unwinding what it holds, or (a fund
    that holds nothing) paying shortfalls in cash; ADL; socialization. Bad debt and
    ``unresolved`` are what is left when these are exhausted: counted, not required."""
    steps = {"close via market"}
    if policy.backstop:
        steps.add("close via backstop")
    if policy.fund_takeover and policy.fund_covers_shortfall:
        steps.add("close via insurance_fund")
        if policy.fund_unwind_band_ppm:
            steps.add("fund_unwind")
    elif policy.fund_covers_shortfall:
        steps.add("fund pays a shortfall")
    if policy.adl_ranking != "none":
        steps.add("adl")
    if policy.socialize != "none":
        steps.add(f"socialized ({policy.socialize})")
    return steps


# a thin book (few lots a level, wide levels) makes the later steps run; None: the default
# deep book at the mark
depth = st.one_of(st.none(), st.builds(StaticDepth, st.integers(1, 3000),
                                       st.integers(5, 800), st.integers(1, 12)))
fund_deposit = st.sampled_from(["0", "500", "50000"])
REACHED: dict[str, Counter[str]] = {v: Counter() for v in VENUES}


def _size(venue: str, market: str, usd_k: int) -> str:
    """A size of about ``usd_k`` thousand USD of ``market``, on its lot grid."""
    base, _, lot, kind = _markets(venue)[market]
    contract = load_preset(venue).markets[market].contract_size
    per_lot = lot * contract * (1 if kind == "inverse_perp" else base)
    return str(max(1, int(Decimal(usd_k * 1000) / per_lot)) * lot)


def _path(venue: str, factors: list[float], usd_k: int) -> list[dict[str, Any]]:
    """a buys ``usd_k`` thousand USD of BTC-PERP from b, c 100 from d (each has 20,000),
    then the mark walks through ``factors`` of 100,000."""
    markets = _markets(venue)
    at = _price(markets, "BTC-PERP", 1.0)
    return [{"type": "fill", "market": "BTC-PERP", "buyer": "a", "seller": "b",
             "size": _size(venue, "BTC-PERP", usd_k), "price": at},
            {"type": "fill", "market": "BTC-PERP", "buyer": "c", "seller": "d",
             "size": _size(venue, "BTC-PERP", 100), "price": at}] + [
        {"type": "price", "market": "BTC-PERP", "price": _price(markets, "BTC-PERP", f)}
        for f in factors]


# Explicit paths that reach every step of every preset's waterfall whatever hypothesis
# draws (its draws differ between versions): (book, fund, mark path, a's notional). A
# crash through a thin book: the fund takes over or pays, then ADL or socialization; a
# walk down in 0.2 % steps: accounts reach maintenance margin before bankruptcy, so the
# book (deep, or thin: then the backstop or the fund) takes the close.
CRASH = [0.97, 0.9, 0.8, 0.6, 0.5]
WALK = [round(1 - 0.002 * k, 3) for k in range(1, 31)]
WATERFALL_PATHS: list[tuple[StaticDepth | None, str, list[float], int]] = [
    (StaticDepth(20, 50, 3), "50000", CRASH, 300), (StaticDepth(5, 20, 2), "50000", WALK, 400),
    (StaticDepth(20, 50, 3), "0", CRASH, 300), (None, "0", WALK, 400)]


@pytest.mark.parametrize("venue", VENUES)
def test_invariants_after_every_event(venue: str) -> None:
    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(depth, fund_deposit, _strategy(venue))
    def run(liquidity: StaticDepth | None, fund: str, specs: list[dict[str, Any]]) -> None:
        engine = Engine(load_preset(venue), liquidity=liquidity)
        net: dict[str, int] = {}
        scale = {a: 10 ** engine.venue.assets[a].decimals for a in engine.venue.assets}
        head = [{"type": "deposit", "account": "__insurance__", "asset": _settle(venue),
                 "amount": fund}] if fund != "0" else []
        for ev in _events(venue, head + specs):
            flat = _flat_balances(engine)
            realized = dict(engine.realized)
            out = engine.apply(ev)
            REACHED[venue].update(_steps(out))
            accepted = not (out and out[0].type == "rejected")
            if accepted and ev.type in ("deposit", "withdraw"):
                sign = 1 if ev.type == "deposit" else -1
                q = int(ev.amount * scale[ev.asset])  # type: ignore[union-attr]
                net[ev.asset] = net.get(ev.asset, 0) + sign * q  # type: ignore[union-attr]
            _check(engine, net)
            touched = {getattr(ev, "account", None), getattr(ev, "buyer", None),
                       getattr(ev, "seller", None)}
            # no-position immunity: flat accounts are untouched by anyone else's event
            for ledger_id, before in flat.items():
                name = ledger_id[2:]
                if name.split("/")[0] in touched:
                    continue
                after = {a: engine.ledger.balance(ledger_id, a) for a in before}
                assert after == before, (ledger_id, ev)
            # accounts liquidated in this event (in the book, by ADL, or settled flat):
            # their own losses may move their realized PnL whatever ADL did to them
            liquidated = {o.account for o in out  # type: ignore[union-attr]
                          if o.type in ("liquidation", "adl", "bad_debt", "socialized_loss")}
            for o in out:
                if o.type == "adl" and o.counterparty not in liquidated:  # type: ignore[union-attr]
                    cp = o.counterparty  # type: ignore[union-attr]
                    assert engine.realized.get(cp, 0) >= realized.get(cp, 0), o

    for liquidity, fund, factors, usd_k in WATERFALL_PATHS:
        run = example(liquidity, fund, _path(venue, factors, usd_k))(run)
    REACHED[venue].clear()
    run()
    expected = _waterfall(policy_for(venue))
    print(f"\n{venue} waterfall steps reached:", dict(sorted(REACHED[venue].items())))
    assert not expected - set(REACHED[venue]), (venue, sorted(expected - set(REACHED[venue])))


VENUE_FOR_DETERMINISM = "hyperliquid"


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(_strategy(VENUE_FOR_DETERMINISM), st.integers(min_value=0, max_value=49))
def test_replay_and_snapshot_restore_are_deterministic(
    specs: list[dict[str, Any]], cut: int
) -> None:
    venue = VENUE_FOR_DETERMINISM
    events = _events(venue, specs)
    cut = min(cut + 8, len(events))
    first = Engine(load_preset(venue))
    outs1 = [first.apply(e) for e in events]
    second = Engine(load_preset(venue))
    outs2 = [second.apply(e) for e in events]
    assert first.state_hash() == second.state_hash()
    assert outs1 == outs2
    third = Engine(load_preset(venue))
    for e in events[:cut]:
        third.apply(e)
    restored = Engine.restore(third.snapshot())
    assert restored.state_hash() == third.state_hash()
    outs3 = [restored.apply(e) for e in events[cut:]]
    assert restored.state_hash() == first.state_hash()
    assert outs3 == outs1[cut:]
