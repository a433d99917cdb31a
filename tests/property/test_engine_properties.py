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
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solvency.core.ledger.ledger import INSURANCE
from solvency.core.margin.kernels import OUT_COLLATERAL, OUT_MM
from solvency.core.model.events import InputEvent, parse_event
from solvency.core.model.presets import load_preset
from solvency.engine.engine import Engine
from solvency.engine.liquidation import SYSTEM_ROWS

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
    factor = st.floats(min_value=0.5, max_value=1.5, allow_nan=False)
    amount = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("500000"), places=3)
    deposit = st.builds(lambda acc, asset, amt: {"type": "deposit", "account": acc,
                                                 "asset": asset, "amount": str(amt)},
                        account, st.sampled_from(assets), amount)
    withdraw = st.builds(lambda acc, asset, amt: {"type": "withdraw", "account": acc,
                                                  "asset": asset, "amount": str(amt)},
                         account, st.sampled_from(assets), amount)
    price = st.builds(lambda m, f: {"type": "price", "market": m,
                                    "price": _price(markets, m, f)}, market, factor)
    def _lots(m: str, usd_k: int) -> str:
        base, _, lot, kind = markets[m]
        contract = load_preset(venue).markets[m].contract_size
        per_lot = lot * contract * (1 if kind == "inverse_perp" else base)
        return str(max(1, int(Decimal(usd_k * 1000) / per_lot)) * lot)

    fill = st.builds(
        lambda m, b, s, k, f, fee: {"type": "fill", "market": m, "buyer": b, "seller": s,
                                    "size": _lots(m, k), "price": _price(markets, m, f),
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


@pytest.mark.parametrize("venue", VENUES)
def test_invariants_after_every_event(venue: str) -> None:
    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(_strategy(venue))
    def run(specs: list[dict[str, Any]]) -> None:
        engine = Engine(load_preset(venue))
        net: dict[str, int] = {}
        scale = {a: 10 ** engine.venue.assets[a].decimals for a in engine.venue.assets}
        for ev in _events(venue, specs):
            flat = _flat_balances(engine)
            realized = dict(engine.realized)
            out = engine.apply(ev)
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
            liquidated = {o.account for o in out if o.type == "liquidation"}  # type: ignore[union-attr]
            for o in out:
                if o.type == "adl" and o.counterparty not in liquidated:  # type: ignore[union-attr]
                    cp = o.counterparty  # type: ignore[union-attr]
                    assert engine.realized.get(cp, 0) >= realized.get(cp, 0), o

    run()


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
