"""Every rejection reason: a precise reason, and the state hash does not move."""

from __future__ import annotations

import json
from decimal import Decimal as D
from typing import Any

import pytest

from solvency.core.model.events import Funding
from solvency.engine.engine import Engine
from solvency.engine.inputs import parse_input_line
from tests.unit.engine.helpers import apply, engine, ev


def _book() -> Engine:
    e = engine("binance")
    apply(e, "deposit", account="alice", asset="USDT", amount="1000", ts="2026-03-20T00:00:00Z")
    apply(e, "deposit", account="bob", asset="USDT", amount="1000", ts="2026-03-20T00:00:00Z")
    apply(e, "account", account="iso", mode="isolated")
    apply(e, "deposit", account="iso", asset="USDT", amount="1000")
    apply(e, "price", market="BTC-PERP", price="100000")
    apply(e, "price", market="BTC-FUT-260327", price="100000")
    apply(e, "fill", market="BTC-PERP", buyer="alice", seller="bob", size="0.05",
          price="100000", id="open-1")
    return e


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("unknown_market", "price", {"market": "DOGE-PERP", "price": "1"}),
    ("unknown_market", "fill", {"market": "DOGE-PERP", "buyer": "alice", "seller": "bob",
                                "size": "1", "price": "1"}),
    ("unknown_asset", "deposit", {"account": "alice", "asset": "DOGE", "amount": "1"}),
    ("unknown_account", "withdraw", {"account": "carol", "asset": "USDT", "amount": "1"}),
    ("unknown_account", "fill", {"market": "BTC-PERP", "buyer": "carol", "seller": "bob",
                                 "size": "0.001", "price": "100000"}),
    ("invalid_amount", "deposit", {"account": "alice", "asset": "USDT",
                                   "amount": "0.0000001"}),
    ("amount_too_large", "deposit", {"account": "alice", "asset": "USDT",
                                     "amount": "10000000000000"}),
    ("insufficient_balance", "withdraw", {"account": "alice", "asset": "USDT",
                                          "amount": "1000.01"}),
    ("insufficient_balance", "withdraw", {"account": "alice", "asset": "BTC", "amount": "1"}),
    ("insufficient_initial_margin", "withdraw", {"account": "alice", "asset": "USDT",
                                                 "amount": "990"}),
    ("insufficient_initial_margin", "fill", {"market": "BTC-PERP", "buyer": "alice",
                                             "seller": "bob", "size": "1",
                                             "price": "100000"}),
    ("insufficient_initial_margin", "fill", {"market": "BTC-PERP", "buyer": "iso",
                                             "seller": "bob", "size": "2",
                                             "price": "100000"}),
    ("self_trade", "fill", {"market": "BTC-PERP", "buyer": "alice", "seller": "alice",
                            "size": "0.001", "price": "100000"}),
    ("no_mark", "fill", {"market": "ETH-PERP", "buyer": "alice", "seller": "bob",
                         "size": "0.01", "price": "2000"}),
    ("invalid_size", "fill", {"market": "BTC-PERP", "buyer": "alice", "seller": "bob",
                              "size": "0.0001", "price": "100000"}),
    ("price_off_tick", "fill", {"market": "BTC-PERP", "buyer": "alice", "seller": "bob",
                                "size": "0.001", "price": "100000.05"}),
    ("invalid_amount", "fill", {"market": "BTC-PERP", "buyer": "alice", "seller": "bob",
                                "size": "0.001", "price": "100000", "fee_buyer": "0.0000001"}),
    ("not_perpetual", "funding", {"market": "BTC-FUT-260327", "rate": "0.0001"}),
    ("no_mark", "funding", {"market": "ETH-PERP", "rate": "0.0001"}),
    # ETH is priced by ETH-PERP, which has no mark yet, and alice holds BTC-PERP: her
    # collateral would be NaN, never liquidated
    ("no_price", "deposit", {"account": "alice", "asset": "ETH", "amount": "1"}),
    ("not_a_future", "expiry", {"market": "BTC-PERP", "price": "100000"}),
    ("before_expiry", "expiry", {"market": "BTC-FUT-260327", "price": "100000"}),
    ("invalid_params", "params", {"market": "BTC-PERP",
                                  "tiers": [{"floor": "0", "mmr": "0.5", "imr": "0.1"}]}),
    ("invalid_params", "params", {"market": "BTC-PERP", "lot_size": "0.01"}),
    ("invalid_params", "params", {"market": "BTC-PERP", "imf_factor": "0.1"}),
    ("invalid_params", "params", {"market": "BTC-PERP", "tiers": "steep"}),
    ("open_positions", "account", {"account": "alice", "mode": "isolated"}),
    ("no_isolated_position", "isolated_margin", {"account": "iso", "market": "BTC-PERP",
                                                 "amount": "5"}),
    ("unknown_account", "isolated_margin", {"account": "zed", "market": "BTC-PERP",
                                            "amount": "5"}),
    ("out_of_order", "deposit", {"account": "alice", "asset": "USDT", "amount": "1",
                                 "ts": "2026-03-19T00:00:00Z"}),
    ("fixed_price", "price", {"asset": "USDT", "price": "1"}),
    ("price_from_market", "price", {"asset": "BTC", "price": "1"}),
    # issue 13: a mark below one tick or off the grid, like a fill's price
    ("price_off_tick", "price", {"market": "BTC-PERP", "price": "1e-30"}),
    ("price_off_tick", "price", {"market": "BTC-PERP", "price": "100000.05"}),
    ("price_off_tick", "price", {"market": "BTC-USD-INVERSE", "price": "0.01"}),
    # issue 13: balances are bounded before a row is created
    ("balance_too_large", "deposit", {"account": "bob", "asset": "USDT",
                                      "amount": "999999999999.5"}),
]


@pytest.mark.parametrize(("reason", "kind", "fields"), CASES,
                         ids=[f"{k}-{r}-{i}" for i, (r, k, _) in enumerate(CASES)])
def test_rejected_event_changes_nothing(reason: str, kind: str, fields: dict[str, Any]) -> None:
    e = _book()
    before = e.state_hash()
    snap = e.snapshot()
    out = e.apply(ev(kind, **fields))
    assert [o.type for o in out] == ["rejected"]
    assert out[0].reason == reason, out[0].detail  # type: ignore[union-attr]
    assert out[0].detail  # type: ignore[union-attr]
    assert e.state_hash() == before
    snap2 = e.snapshot()
    for key in ("ledger", "positions", "marks", "accounts", "rows", "seen_ids"):
        assert snap2[key] == snap[key], key
    e.verify()


def test_duplicate_ids_are_ignored() -> None:
    e = _book()
    before = e.state_hash()
    again = ev("fill", market="BTC-PERP", buyer="alice", seller="bob", size="0.05",
               price="100000", id="open-1")
    assert e.apply(again) == []
    assert e.state_hash() == before
    assert e.counts["duplicates"] == 1


def test_a_rejected_id_may_be_retried() -> None:
    e = _book()
    bad = ev("withdraw", account="alice", asset="USDT", amount="5000", id="w-1")
    assert e.apply(bad)[0].type == "rejected"
    good = ev("withdraw", account="alice", asset="USDT", amount="5", id="w-1")
    assert e.apply(good) == []


def test_a_first_oracle_report_that_is_refused_changes_nothing() -> None:
    # issue 13: Feeds.used became true before the guard refused the report, so a refused
    # first report changed the state hash and a replay of the accepted events differed.
    for fields in ({"source": "evil", "market": "BTC-PERP", "price": "84000"},
                   {"source": "binance", "market": "DOGE-PERP", "price": "1"},
                   {"source": "binance", "market": "BTC-PERP", "price": "84000",
                    "ts": 1774512000000 - 3_600_000}):
        e = engine("binance")
        apply(e, "deposit", account="a", asset="USDT", amount="1000", ts=1774512000000)
        before = e.state_hash()
        out = e.apply(_line({"type": "oracle", "id": "r1", "ts": 1774512000000, **fields}))
        assert [o.type for o in out] == ["rejected"], out
        assert e.state_hash() == before, fields


def test_a_huge_order_is_rejected_not_raised() -> None:
    # issue 13: OverflowError escaped apply() from the what-if margin (binance, bitmex,
    # deribit); a fill of the same size is rejected size_too_large, so is the order.
    for preset in ("binance", "bitmex", "deribit"):
        e = engine(preset)
        settle = e.venue.markets["BTC-PERP"].settle
        apply(e, "deposit", account="a", asset=settle, amount="1000")
        apply(e, "price", market="BTC-PERP", price="84000")
        out = e.apply(_line({"type": "order", "id": "o1", "account": "a",
                             "market": "BTC-PERP", "side": "buy", "size": "1e9"}))
        assert [(o.status, o.reason) for o in out] == [("rejected", "size_too_large")], out
        e.verify()  # (an order is counted by the rate limiter: issue 14 takes that up)


def test_funding_after_a_tiny_inverse_mark_no_longer_stops_the_engine() -> None:
    # issue 13's reproducer: a 1e-30 mark on an inverse market, then funding, made the
    # ledger refuse a validated batch (EngineError). The mark is now refused; funding at
    # the last valid mark settles.
    e = engine("binance")
    lines = [
        ("deposit", {"ts": 1774512038825, "account": "acct19", "asset": "USDT",
                     "amount": "131326.657782"}),
        ("deposit", {"ts": 1774512050706, "account": "acct09", "asset": "USDT",
                     "amount": "5.922642"}),
        ("price", {"ts": 1774512210284, "market": "BTC-PERP", "price": "86338.4"}),
        ("price", {"ts": 1774512218008, "market": "BTC-USD-INVERSE", "price": "84517.9"}),
        ("fill", {"ts": 1774512238340, "market": "BTC-USD-INVERSE", "buyer": "acct19",
                  "seller": "acct09", "size": "1985", "price": "124815.9"}),
    ]
    for kind, fields in lines:
        apply(e, kind, **fields)
    bad = e.apply(ev("price", ts=1774512457614, market="BTC-USD-INVERSE", price="1e-30"))
    assert [(o.type, o.reason) for o in bad] == [("rejected", "price_off_tick")]
    out = e.apply(ev("funding", ts=1774512462948, market="BTC-USD-INVERSE", rate="0.000256"))
    assert "settled" in [o.type for o in out]
    e.verify()


def test_funding_beyond_the_ledger_is_rejected_before_posting() -> None:
    # The parser bounds |rate| < 1; the engine bounds the payments itself all the same
    # (an event built in Python skips the parser).
    e = _book()
    before = e.state_hash()
    out = e.apply(Funding(id="f-huge", market="BTC-PERP", rate=D("1e20")))
    assert [(o.type, o.reason) for o in out] == [("rejected", "amount_too_large")], out
    assert e.state_hash() == before


def _line(obj: dict[str, Any]) -> Any:
    return parse_input_line(json.dumps(obj))


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_non_finite_decimals_built_in_python_are_rejected(value: str) -> None:
    """Events built in Python (not parsed from JSON, which refuses these) with a NaN or an
    infinity are rejected invalid_number, naming the field; nothing moves (before: a
    Decimal InvalidOperation, ValueError or OverflowError out of apply)."""
    from solvency.core.model.events import Deposit, Fill, Price, Vol, Withdraw
    from solvency.core.oracle import OracleReport
    from solvency.engine.pretrade import Order

    e = _book()
    bad = D(value)
    ts = e.clock_ms
    events: list[Any] = [
        Price(id="p-bad", market="BTC-PERP", price=bad, ts_ms=ts),
        Deposit(id="d-bad", account="alice", asset="USDT", amount=bad, ts_ms=ts),
        Withdraw(id="w-bad", account="alice", asset="USDT", amount=bad, ts_ms=ts),
        Fill(id="f-bad", market="BTC-PERP", buyer="alice", seller="bob", size=bad,
             price=D(100000), ts_ms=ts),
        Fill(id="f-bad2", market="BTC-PERP", buyer="alice", seller="bob", size=D("0.01"),
             price=D(100000), fee_buyer=bad, ts_ms=ts),
        Funding(id="r-bad", market="BTC-PERP", rate=bad, ts_ms=ts),
    ]
    for event in events:
        before = e.state_hash()
        out = e.apply(event)
        assert [(o.type, o.reason) for o in out] == [("rejected", "invalid_number")], event
        assert out[0].detail.endswith("is not a finite number")
        assert e.state_hash() == before
    before = e.state_hash()
    out = e.apply(Vol(id="v-bad", market="BTC-PERP", iv=bad, ts_ms=ts))
    assert [(o.type, o.reason) for o in out] == [("rejected", "invalid_number")]
    assert e.state_hash() == before
    # an order is answered by its own check (an answer, which takes a sequence number),
    # an oracle report refused by the guard (nothing moves)
    out = e.apply(Order(id="o-bad", account="alice", market="BTC-PERP", side="buy",
                        size=bad, ts_ms=ts))
    assert [(o.type, o.status, o.reason) for o in out] == [
        ("order", "rejected", "invalid_order")]
    before = e.state_hash()
    out = e.apply(OracleReport(id="or-bad", source="binance", market="BTC-PERP",
                               price=bad, ts_ms=ts))
    assert out and out[0].type == "rejected" and out[0].reason != "invalid_number", out
    assert e.state_hash() == before


@pytest.mark.parametrize(("size", "price", "code"), [
    ("0", "100000", "invalid_size"), ("NaN", "100000", "invalid_size"),
    ("Infinity", "100000", "invalid_size"), ("0.0000001", "100000", "invalid_size"),
    ("0.001", "0", "non_positive"), ("0.001", "-1", "non_positive"),
    ("0.001", "NaN", "non_positive"), ("0.001", "-Infinity", "non_positive"),
    ("1000000000000", "1000000000000000", "size_too_large"),
    ("0.001", "0.000000000000000000000000000001", "size_too_small"),
])
def test_a_refused_seed_changes_nothing(size: str, price: str, code: str) -> None:
    # seed_position checked its size and price after creating the counterparty's row,
    # so a refused seed left a new account behind and moved the state hash.
    from solvency.engine.base import RejectReason

    e = _book()
    before = e.state_hash()
    with pytest.raises(RejectReason) as err:
        e.seed_position("alice", "BTC-PERP", D(size), D(price), counterparty="fresh_street")
    assert err.value.reason == code
    assert e.state_hash() == before
    e.seed_position("alice", "BTC-PERP", D("0.001"), D(100000), counterparty="fresh_street")
    assert e.state_hash() != before


def test_a_seed_against_itself_is_refused() -> None:
    # the account as its own counterparty left size -1 lots and unbalanced open interest
    from solvency.engine.base import RejectReason

    e = _book()
    before = e.state_hash()
    with pytest.raises(RejectReason) as err:
        e.seed_position("alice", "BTC-PERP", D("0.001"), D(100000), counterparty="alice")
    assert err.value.reason == "invalid_field"
    assert e.state_hash() == before
    e.verify()
