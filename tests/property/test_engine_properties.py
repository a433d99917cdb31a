"""Property tests over random event sequences (hypothesis).

After every event: each asset's ledger total equals deposits minus withdrawals (checked
from scratch), every market's signed sizes sum to zero, the clearing account is empty and
the open-interest index matches the positions. Replaying the same events gives the same
``state_hash``; so does snapshot + restore + the rest of the log.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solvency.core.model.events import InputEvent, parse_event
from solvency.core.model.presets import load_preset
from solvency.engine.engine import Engine

ACCOUNTS = ["a", "b", "c", "d", "iso"]
MARKETS = {  # market -> (base price, tick, lot)
    "BTC-PERP": (100000, Decimal("0.1"), Decimal("0.001")),
    "ETH-PERP": (3000, Decimal("0.01"), Decimal("0.001")),
    "BTC-USD-INVERSE": (100000, Decimal("0.1"), Decimal("1")),
    "BTC-FUT-260327": (100500, Decimal("0.1"), Decimal("0.001")),
}
ASSETS = ["USDT", "BTC", "ETH"]


def _price(market: str, factor: float) -> str:
    base, tick, _ = MARKETS[market]
    return str((Decimal(str(base * factor)) / tick).to_integral_value() * tick)


account = st.sampled_from(ACCOUNTS)
market = st.sampled_from(list(MARKETS))
factor = st.floats(min_value=0.3, max_value=2.0, allow_nan=False)

deposit = st.builds(lambda acc, asset, amt: {"type": "deposit", "account": acc, "asset": asset,
                                             "amount": str(amt)},
                    account, st.sampled_from(ASSETS),
                    st.decimals(min_value=Decimal("0.001"), max_value=Decimal("500000"),
                                places=3))
withdraw = st.builds(lambda acc, asset, amt: {"type": "withdraw", "account": acc,
                                              "asset": asset, "amount": str(amt)},
                     account, st.sampled_from(ASSETS),
                     st.decimals(min_value=Decimal("0.001"), max_value=Decimal("200000"),
                                 places=3))
price = st.builds(lambda m, f: {"type": "price", "market": m, "price": _price(m, f)},
                  market, factor)
fill = st.builds(
    lambda m, b, s, n, f, fee: {"type": "fill", "market": m, "buyer": b, "seller": s,
                                "size": str(MARKETS[m][2] * n), "price": _price(m, f),
                                "fee_buyer": str(fee), "fee_seller": str(-fee / 4)},
    market, account, account, st.integers(min_value=1, max_value=3000), factor,
    st.decimals(min_value=Decimal(0), max_value=Decimal("5"), places=4))
funding = st.builds(lambda m, r: {"type": "funding", "market": m, "rate": str(r)},
                    st.sampled_from(["BTC-PERP", "ETH-PERP", "BTC-USD-INVERSE"]),
                    st.decimals(min_value=Decimal("-0.003"), max_value=Decimal("0.003"),
                                places=7))
expiry = st.builds(lambda f: {"type": "expiry", "market": "BTC-FUT-260327",
                              "price": _price("BTC-FUT-260327", f) + "3",
                              "ts": "2026-03-27T08:00:00Z"}, factor)
params = st.builds(lambda mmr: {"type": "params", "market": "ETH-PERP", "tiers": [
    {"floor": "0", "mmr": str(mmr), "imr": str(mmr * 2)}]},
    st.decimals(min_value=Decimal("0.001"), max_value=Decimal("0.2"), places=3))
isolated = st.builds(lambda amt: {"type": "isolated_margin", "account": "iso",
                                  "market": "BTC-PERP", "amount": str(amt)},
                     st.decimals(min_value=Decimal("-50"), max_value=Decimal("50"),
                                 places=2).filter(lambda d: d != 0))
event = st.one_of(deposit, deposit, withdraw, price, price, fill, fill, fill, funding,
                  expiry, params, isolated)


def _events(specs: list[dict[str, Any]]) -> list[InputEvent]:
    head = [{"type": "account", "account": "iso", "mode": "isolated"}]
    head += [{"type": "price", "market": m, "price": _price(m, 1.0)} for m in MARKETS]
    head += [{"type": "deposit", "account": a, "asset": "USDT", "amount": "20000"}
             for a in ACCOUNTS]
    out = []
    for i, spec in enumerate(head + specs):
        out.append(parse_event({"id": f"e{i}", **spec}))
    return out


def _check(engine: Engine, deposits: dict[str, int]) -> None:
    totals = engine.verify()  # raises on any broken invariant
    assert totals == {a: deposits.get(a, 0) for a in totals}
    assert all(v == 0 for v in engine.signed_size_sums().values())


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, min_size=5, max_size=60))
def test_conservation_and_balanced_open_interest_after_every_event(
    specs: list[dict[str, Any]]
) -> None:
    engine = Engine(load_preset("binance"))
    net: dict[str, int] = {}
    scale = {a: 10 ** engine.venue.assets[a].decimals for a in engine.venue.assets}
    for ev in _events(specs):
        out = engine.apply(ev)
        accepted = not (out and out[0].type == "rejected")
        if accepted and ev.type in ("deposit", "withdraw"):
            sign = 1 if ev.type == "deposit" else -1
            q = int(ev.amount * scale[ev.asset])  # type: ignore[union-attr]
            net[ev.asset] = net.get(ev.asset, 0) + sign * q  # type: ignore[union-attr]
        _check(engine, net)
        for o in out:
            assert o.type in ("rejected", "margin_call", "margin_restored", "settled")


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, min_size=5, max_size=50), st.integers(min_value=0, max_value=49))
def test_replay_and_snapshot_restore_are_deterministic(
    specs: list[dict[str, Any]], cut: int
) -> None:
    events = _events(specs)
    cut = min(cut + 8, len(events))
    first = Engine(load_preset("binance"))
    outs1 = [first.apply(e) for e in events]
    second = Engine(load_preset("binance"))
    outs2 = [second.apply(e) for e in events]
    assert first.state_hash() == second.state_hash()
    assert outs1 == outs2
    third = Engine(load_preset("binance"))
    for e in events[:cut]:
        third.apply(e)
    restored = Engine.restore(third.snapshot())
    assert restored.state_hash() == third.state_hash()
    outs3 = [restored.apply(e) for e in events[cut:]]
    assert restored.state_hash() == first.state_hash()
    assert outs3 == outs1[cut:]
