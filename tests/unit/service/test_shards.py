"""Account shards (issue 16): assignment, routing, both-legs-or-neither cross-shard fills,
and the equivalence of N shards with one engine (service/shards.py, docs/scale_out.md)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest

from solvency.core.ledger.ledger import INSURANCE
from solvency.core.model.events import Deposit, EventError, Fill, Price, Withdraw
from solvency.core.model.presets import load_preset, venue_from_data
from solvency.engine.engine import Engine
from solvency.engine.inputs import AnyInput, parse_input, parse_input_line
from solvency.service.shards import (
    SHARD_CLEARING,
    ShardedEngine,
    UnshardableError,
    clearing_residual,
    genesis,
    parse_shard,
    route,
    shard_of,
    venue_digest,
    venue_summary,
)
from tests.integration.service.workload import workload

TS = 1_774_512_000_000


def _events(lines: Iterable[str]) -> list[AnyInput]:
    out = []
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        try:
            out.append(parse_input_line(line))
        except EventError:
            continue  # malformed lines never reach an engine
    return out


def _key(o: Any) -> tuple[str, ...]:
    return (o.type, getattr(o, "account", ""), getattr(o, "market", ""),
            getattr(o, "reason", ""), getattr(o, "size", ""), getattr(o, "price", ""),
            getattr(o, "penalty", ""), getattr(o, "insurance_fund_delta", ""))


def _compared(out: list[Any]) -> list[tuple[str, ...]]:
    # left out: the funding/expiry totals (they include the clearing accounts' payments)
    # and margin calls of the market's own row (each shard holds its part of it)
    return sorted(_key(o) for o in out if o.type != "settled" and not (
        o.type.startswith("margin_") and o.account == "__market__"))


@pytest.mark.parametrize(("account", "n", "expected"), [
    # int.from_bytes(sha256(account)[:8], "big") % n, computed by hand below
    pytest.param("alice", 4, int.from_bytes(hashlib.sha256(b"alice").digest()[:8], "big") % 4,
                 id="alice-of-4"),
    pytest.param("t001", 2, int.from_bytes(hashlib.sha256(b"t001").digest()[:8], "big") % 2,
                 id="t001-of-2"),
    pytest.param("__insurance__", 4, 0, id="fund-on-shard-0"),
    pytest.param("__market__", 7, 0, id="market-on-shard-0"),
    pytest.param("anyone", 1, 0, id="one-shard"),
])
def test_shard_of(account: str, n: int, expected: int) -> None:
    assert shard_of(account, n) == expected


def test_shard_of_spreads_accounts() -> None:
    counts = [0] * 4
    for i in range(4_000):
        counts[shard_of(f"acct{i}", 4)] += 1
    assert min(counts) > 900, counts


@pytest.mark.parametrize(("spec", "expected"), [
    pytest.param("0/4", (0, 4), id="first"), pytest.param("3/4", (3, 4), id="last"),
    pytest.param("0/1", (0, 1), id="single")])
def test_parse_shard(spec: str, expected: tuple[int, int]) -> None:
    assert parse_shard(spec) == expected


@pytest.mark.parametrize("spec", ["4/4", "1", "a/b", "-1/4", "0/0", "1/2/3", ""])
def test_parse_shard_refuses(spec: str) -> None:
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(spec)


def _two_shard_names() -> tuple[str, str]:
    a = next(f"a{i}" for i in range(100) if shard_of(f"a{i}", 2) == 0)
    b = next(f"b{i}" for i in range(100) if shard_of(f"b{i}", 2) == 1)
    return a, b


def test_route() -> None:
    a, b = _two_shard_names()
    price = Price(id="p", price=Decimal(84_000), market="BTC-PERP", ts_ms=TS)
    assert route(price, 2) == [(0, price), (1, price)]
    dep = Deposit(id="d", account=b, asset="USDT", amount=Decimal(5))
    assert route(dep, 2) == [(1, dep)]
    fill = Fill(id="f", market="BTC-PERP", buyer=b, seller=a, size=Decimal(1),
                price=Decimal(84_000), fee_buyer=Decimal(1), fee_seller=Decimal(2))
    (k1, leg1), (k2, leg2) = route(fill, 2)
    assert (k1, k2) == (1, 0)
    assert isinstance(leg1, Fill) and isinstance(leg2, Fill)
    assert (leg1.buyer, leg1.seller, leg1.fee_buyer, leg1.fee_seller) == (
        b, SHARD_CLEARING, Decimal(1), Decimal(0))
    assert (leg2.buyer, leg2.seller, leg2.fee_buyer, leg2.fee_seller) == (
        SHARD_CLEARING, a, Decimal(0), Decimal(2))


def _funded(n: int) -> tuple[Engine, ShardedEngine, str, str]:
    a, b = _two_shard_names()
    venue = load_preset("binance")
    one, sh = Engine(venue), ShardedEngine(venue, n)
    setup = [Deposit(id="da", account=a, asset="USDT", amount=Decimal(10_000), ts_ms=TS),
             Deposit(id="db", account=b, asset="USDT", amount=Decimal(100), ts_ms=TS),
             Price(id="p1", price=Decimal(84_000), market="BTC-PERP", ts_ms=TS + 1)]
    one.apply_all(setup)
    sh.apply_all(setup)
    return one, sh, a, b


def test_cross_shard_fill_both_legs_or_neither() -> None:
    one, sh, a, b = _funded(2)
    before = [e.state_hash() for e in sh.shards]
    # b (shard 1) cannot margin 1 BTC on 100 USDT: one engine rejects; neither shard books
    big = Fill(id="f1", market="BTC-PERP", buyer=a, seller=b, size=Decimal(1),
               price=Decimal(84_000), ts_ms=TS + 2)
    want = one.apply(big)
    got = sh.apply(big)
    assert [(o.type, o.reason) for o in got] == [(o.type, o.reason) for o in want] == [
        ("rejected", "insufficient_initial_margin")]
    assert [e.state_hash() for e in sh.shards] == before
    # a small one passes on both sides: each shard books its leg, the clearing legs cancel
    small = Fill(id="f2", market="BTC-PERP", buyer=a, seller=b, size=Decimal("0.01"),
                 price=Decimal(84_000), fee_buyer=Decimal("0.5"), fee_seller=Decimal("0.5"),
                 ts_ms=TS + 3)
    assert _compared(sh.apply(small)) == _compared(one.apply(small))
    assert venue_digest([one]) == sh.digest()
    assert clearing_residual(sh.shards)["clearing_lots"] == {"BTC-PERP": 0}
    # a duplicate id is one venue-wide, an old timestamp too
    assert sh.apply(small) == []
    late = Withdraw(id="w-late", account=b, asset="USDT", amount=Decimal(1), ts_ms=TS)
    assert [o.reason for o in sh.apply(late)] == [o.reason for o in one.apply(late)] == [
        "out_of_order"]


def test_resting_orders_across_shards_equal_one_engine() -> None:
    """Each account's resting orders live in its shard: a cross-shard fill naming both
    sides' orders reduces each in its own shard (each leg keeps its side's order id), one
    that exceeds an order is refused on both legs, a cancel goes to the owner's shard;
    out-events and the orders left are one engine's."""
    one, sh, a, b = _funded(2)
    lines = [
        {"type": "order", "id": "bid", "account": a, "market": "BTC-PERP", "side": "buy",
         "size": "0.01", "price": "84000", "rest": True, "ts": TS + 2},
        {"type": "order", "id": "ask", "account": b, "market": "BTC-PERP", "side": "sell",
         "size": "0.01", "price": "84000", "rest": True, "ts": TS + 2},
        {"type": "fill", "id": "f", "market": "BTC-PERP", "buyer": a, "seller": b,
         "size": "0.004", "price": "84000", "buyer_order": "bid", "seller_order": "ask",
         "ts": TS + 3},
        # more than the ask has left: the buyer's leg names no order and would pass, so
        # both legs are refused first (Engine.check_fill checks the orders)
        {"type": "fill", "id": "f-big", "market": "BTC-PERP", "buyer": a, "seller": b,
         "size": "0.008", "price": "84000", "seller_order": "ask", "ts": TS + 3},
        {"type": "order_cancel", "id": "c-other", "account": a, "order": "ask", "ts": TS + 4},
        {"type": "order_cancel", "id": "c", "account": b, "order": "ask", "ts": TS + 4},
    ]
    for obj in lines:
        ev = parse_input(obj)
        assert _compared(sh.apply(ev)) == _compared(one.apply(ev)), obj["id"]
    rows = sorted(row for e in sh.shards for row in e.snapshot().get("open_orders", []))
    assert rows == one.snapshot()["open_orders"] == [
        ["bid", a, "BTC-PERP", "buy", "6", "84000"]]
    assert sh.digest() == venue_digest([one])


def test_one_order_named_for_both_sides_is_refused_as_one_engine() -> None:
    """Review 2 item 8: a cross-shard fill naming one order for both sides; the split
    once dropped the other side's id on each leg, so the shards said unknown_order where
    one engine says order_mismatch. Nothing changes on either."""
    one, sh, a, b = _funded(2)
    rest = parse_input({"type": "order", "id": "bid", "account": a, "market": "BTC-PERP",
                        "side": "buy", "size": "0.01", "price": "84000", "rest": True,
                        "ts": TS + 2})
    assert _compared(sh.apply(rest)) == _compared(one.apply(rest))
    before = sh.state_hash()
    fill = parse_input({"type": "fill", "id": "f", "market": "BTC-PERP", "buyer": a,
                        "seller": b, "size": "0.004", "price": "84000",
                        "buyer_order": "bid", "seller_order": "bid", "ts": TS + 3})
    got, want = sh.apply(fill), one.apply(fill)
    assert [(o.reason, o.detail) for o in got] == [(o.reason, o.detail) for o in want] == [
        ("order_mismatch", "order 'bid' named for both sides")]
    assert sh.state_hash() == before
    assert sh.digest() == venue_digest([one])


def test_a_user_event_naming_the_clearing_account_is_refused() -> None:
    """Only the shards book against SHARD_CLEARING: a user's withdrawal from it moved the
    shard's clearing balance (one engine refuses it: no such account), and a user fill
    with it went through reduce-only as a clearing leg (found in review)."""
    _, sh, a, b = _funded(2)
    before = [e.state_hash() for e in sh.shards]
    events = [
        Withdraw(id="wc", account=SHARD_CLEARING, asset="USDT", amount=Decimal(1_000_000),
                 ts_ms=TS + 2),
        Deposit(id="dc", account=SHARD_CLEARING, asset="USDT", amount=Decimal(5),
                ts_ms=TS + 2),
        Fill(id="fc", market="BTC-PERP", buyer=SHARD_CLEARING, seller=b,
             size=Decimal("0.01"), price=Decimal(84_000), ts_ms=TS + 2),
        Fill(id="fs", market="BTC-PERP", buyer=a, seller=SHARD_CLEARING,
             size=Decimal("0.01"), price=Decimal(84_000), ts_ms=TS + 2),
    ]
    for ev in events:
        got = sh.apply(ev)
        assert [(o.type, o.reason) for o in got] == [("rejected", "system_account")], got
        assert SHARD_CLEARING in got[0].detail
    assert [e.state_hash() for e in sh.shards] == before
    # refused, so the same id can come again as a user's own event
    ok = Deposit(id="wc", account=a, asset="USDT", amount=Decimal(5), ts_ms=TS + 3)
    assert [o.type for o in sh.apply(ok)] != ["rejected"]


def test_the_shard_feed_refuses_the_clearing_account_before_sending() -> None:
    """The shard processes' input boundary: ShardFeed.publish parses every event first and
    refuses one naming SHARD_CLEARING before any is sent (so no connection is needed)."""
    import asyncio

    from solvency.service.shard_node import ShardFeed

    feed = ShardFeed("nats://127.0.0.1:9", "nowhere", 2)
    good = {"type": "deposit", "id": "d1", "account": "a", "asset": "USDT", "amount": "5"}
    bad = {"type": "withdraw", "id": "w1", "account": SHARD_CLEARING, "asset": "USDT",
           "amount": "1"}
    with pytest.raises(EventError) as exc:
        asyncio.run(feed.publish([good, bad]))
    assert exc.value.reason == "system_account" and "event 1" in exc.value.detail


def test_check_fill_changes_nothing() -> None:
    one, _, a, b = _funded(1)
    before = one.state_hash()
    ok = Fill(id="c1", market="BTC-PERP", buyer=a, seller=b, size=Decimal("0.01"),
              price=Decimal(84_000), ts_ms=TS + 2)
    bad = Fill(id="c2", market="BTC-PERP", buyer=a, seller="nobody", size=Decimal("0.01"),
               price=Decimal(84_000), ts_ms=TS + 2)
    assert one.check_fill(ok) is None
    rej = one.check_fill(bad)
    assert rej is not None and rej.reason == "unknown_account"
    assert one.state_hash() == before


@pytest.mark.parametrize("n", [1, 2, 4])
def test_equivalent_to_one_engine(n: int) -> None:
    """A seeded workload (fills across shards, oracle rounds, funding, deposits,
    withdrawals, bad events, a 35 % crash that liquidates, drains the insurance fund to
    zero, makes it take positions over and unwind them, and reaches ADL): after every
    event the same out-events (liquidations with their fund deltas, ADL fills, fund
    unwinds, rejections), at the end the same balances, positions, realized PnL, fund and
    fees for every account; the events that needed the whole venue were decided over the
    gathered venue (docs/scale_out.md, "The venue-wide decision")."""
    events = _events(workload(2, 2_000, fund="3000", crash=(0.35, 0.30)))
    venue = load_preset("binance")
    one, sh = Engine(venue), ShardedEngine(venue, n)
    seen: Counter[str] = Counter()
    fund_low = None
    for ev in events:
        want = one.apply(ev)
        assert _compared(sh.apply(ev)) == _compared(want), ev.id
        seen.update(o.type for o in want)
        fund = one.ledger.balance(INSURANCE, "USDT")
        fund_low = fund if fund_low is None else min(fund_low, fund)
        # the fund is the sum of the shards' parts at every event
        assert sum(e.ledger.balance(INSURANCE, "USDT") for e in sh.shards) == fund, ev.id
    # a crash that reaches the fund and ADL (figures of this seed, one engine's)
    assert seen["liquidation"] >= 30 and seen["adl"] >= 100 and seen["fund_unwind"] >= 5
    assert fund_low == 0 and one.liquidator.counts["fund_takeover"] >= 5
    assert len(sh.venue_wide_events) >= 10
    assert {what for _, what in sh.venue_wide_events} >= {
        "the waterfall past the book (fund, ADL, backstop)", "the fund's unwind"}
    assert venue_summary(sh.shards) == venue_summary([one])
    assert sh.digest() == venue_digest([one])
    # the clearing, rounding and world accounts hold what one engine's do (conservation)
    # and the clearing accounts' positions cancel over the shards in every market
    residual = clearing_residual(sh.shards)
    assert {k: v for k, v in residual["held"].items() if v} == {
        k: v for k, v in clearing_residual([one])["held"].items() if v}
    assert set(residual["clearing_lots"].values()) <= {0}
    for engine in sh.shards:
        engine.verify()


def test_demo_through_adl_equals_one_engine() -> None:
    """The bundled demo (a fund takeover, ADL at e0060, the fund's unwinds) through 4
    shards: the same out-events after every event and the same state at the end."""
    text = resources.files("solvency.data").joinpath("demo_events.jsonl").read_text()
    venue = load_preset("binance")
    one, sh = Engine(venue), ShardedEngine(venue, 4)
    for ev in _events(text.splitlines()):
        want = one.apply(ev)
        assert _compared(sh.apply(ev)) == _compared(want), ev.id
    assert ("e0060", "the waterfall past the book (fund, ADL, backstop)") in (
        sh.venue_wide_events)
    assert one.liquidator.counts["adl"] > 0 and one.liquidator.counts["fund_unwind"] > 0
    assert venue_summary(sh.shards) == venue_summary([one])
    assert sh.digest() == venue_digest([one])
    for engine in sh.shards:
        engine.verify()


def test_resting_orders_on_every_shard_survive_a_venue_wide_event() -> None:
    """One resting bid per shard before the demo's venue-wide events (ADL at e0060, the
    fund's unwinds): each shard keeps its own accounts' orders through them (gather
    merges every shard's, scatter hands each shard its own), the digest covers the
    orders, and afterwards a cancel on every shard answers as one engine does."""
    text = resources.files("solvency.data").joinpath("demo_events.jsonl").read_text()
    lines = [json.loads(x) for x in text.splitlines() if x.strip() and not x.startswith("#")]
    names = _one_per_shard(4)
    at = 30  # after the demo's marks are set, before e0060
    ts = lines[at]["ts"]
    extra = [{"type": "deposit", "id": f"d-{nm}", "ts": ts, "account": nm,
              "asset": "USDT", "amount": "100000"} for nm in names]
    extra += [{"type": "order", "id": f"o-{nm}", "ts": ts, "account": nm,
               "market": "BTC-PERP", "side": "buy", "size": "0.01", "price": "83000",
               "rest": True} for nm in names]
    venue = load_preset("binance")
    one, sh = Engine(venue), ShardedEngine(venue, 4)
    for obj in lines[:at] + extra + lines[at:]:
        ev = parse_input(obj)
        assert _compared(sh.apply(ev)) == _compared(one.apply(ev)), obj["id"]
    assert ("e0060", "the waterfall past the book (fund, ADL, backstop)") in (
        sh.venue_wide_events)
    want = [[f"o-{nm}", nm, "BTC-PERP", "buy", "10", "83000"] for nm in names]
    assert one.snapshot()["open_orders"] == sorted(want)
    for k, engine in enumerate(sh.shards):
        assert engine.snapshot()["open_orders"] == [want[k]], k
    assert sh.digest() == venue_digest([one])
    for nm in names:
        cancel = parse_input({"type": "order_cancel", "id": f"c-{nm}", "account": nm,
                              "order": f"o-{nm}", "ts": lines[-1]["ts"]})
        got, expected = sh.apply(cancel), one.apply(cancel)
        assert [(o.type, o.order) for o in got] == [(o.type, o.order) for o in expected] == [
            ("order_cancelled", f"o-{nm}")]
    assert "open_orders" not in one.snapshot()
    assert sh.digest() == venue_digest([one])


def test_the_digest_covers_resting_orders() -> None:
    one, sh, a, _ = _funded(2)
    before = venue_digest([one])
    rest = parse_input({"type": "order", "id": "bid", "account": a, "market": "BTC-PERP",
                        "side": "buy", "size": "0.01", "price": "84000", "rest": True,
                        "ts": TS + 2})
    one.apply(rest)
    assert venue_digest([one]) != before
    assert venue_summary([one])["open_orders"] == [["bid", a, "BTC-PERP", "buy", "10",
                                                    "84000"]]
    sh.apply(rest)
    assert sh.digest() == venue_digest([one])


def test_contract_terms_refused_over_every_shard() -> None:
    """A lot-size change while an order rests on shard 1 only (or positions are open on
    shard 0 only) is one engine's rejection, decided over every shard before anything is
    applied; before, shard 0 applied it and shard 1 refused (ShardDivergenceError)."""
    n = 2
    names = _one_per_shard(n)
    second = next(f"v{i}" for i in range(1000) if shard_of(f"v{i}", n) == 0)
    venue = load_preset("binance")
    one, sh = Engine(venue), ShardedEngine(venue, n)
    change = {"type": "params", "market": "BTC-PERP", "lot_size": "0.01", "ts": TS + 3}
    lines = [
        {"type": "deposit", "id": "d1", "account": names[1], "asset": "USDT",
         "amount": "10000", "ts": TS},
        {"type": "price", "id": "p", "market": "BTC-PERP", "price": "84000", "ts": TS},
        {"type": "order", "id": "bid", "account": names[1], "market": "BTC-PERP",
         "side": "buy", "size": "0.01", "price": "84000", "rest": True, "ts": TS + 1},
        {**change, "id": "x1"},
        {"type": "order_cancel", "id": "c", "account": names[1], "order": "bid",
         "ts": TS + 2},
        {"type": "deposit", "id": "d2", "account": names[0], "asset": "USDT",
         "amount": "10000", "ts": TS + 2},
        {"type": "deposit", "id": "d3", "account": second, "asset": "USDT",
         "amount": "10000", "ts": TS + 2},
        {"type": "fill", "id": "f", "market": "BTC-PERP", "buyer": names[0],
         "seller": second, "size": "0.01", "price": "84000", "ts": TS + 2},
        {**change, "id": "x2"},
    ]
    for obj in lines:
        ev = parse_input(obj)
        before = sh.digest()
        got, want = sh.apply(ev), one.apply(ev)
        assert _compared(got) == _compared(want), obj["id"]
        if obj["id"].startswith("x"):
            assert [o.reason for o in got] == ["invalid_params"]
            assert sh.digest() == before
    assert [o.detail for o in one.apply(parse_input({**change, "id": "x3"}))] == [
        "lot_size cannot change while positions are open"]
    assert sh.digest() == venue_digest([one])


def test_expiry_cancels_every_shards_orders_as_one_engine() -> None:
    """A dated future's expiry reaches every shard: each cancels its own accounts' orders
    in that market (``market_expired``), the out-events and the orders left are one
    engine's."""
    names = _one_per_shard(2)
    venue = load_preset("binance")
    one, sh = Engine(venue), ShardedEngine(venue, 2)
    lines: list[dict[str, Any]] = [
        {"type": "price", "id": f"p-{market}", "market": market, "price": "84000",
         "ts": "2026-03-26T00:00:00Z"} for market in ("BTC-FUT-260327", "BTC-PERP")]
    for nm in names:
        lines += [{"type": "deposit", "id": f"d-{nm}", "account": nm, "asset": "USDT",
                   "amount": "10000", "ts": "2026-03-26T00:00:00Z"},
                  {"type": "order", "id": f"o-{nm}", "account": nm, "side": "buy",
                   "market": "BTC-FUT-260327", "size": "0.01", "price": "83000",
                   "rest": True, "ts": "2026-03-26T00:00:00Z"},
                  {"type": "order", "id": f"q-{nm}", "account": nm, "side": "buy",
                   "market": "BTC-PERP", "size": "0.01", "price": "83000",
                   "rest": True, "ts": "2026-03-26T00:00:00Z"}]
    lines.append({"type": "expiry", "id": "x", "market": "BTC-FUT-260327",
                  "price": "84000", "ts": "2026-03-27T08:00:00Z"})
    for obj in lines:
        ev = parse_input(obj)
        got = sh.apply(ev)
        assert _compared(got) == _compared(one.apply(ev)), obj["id"]
    assert sorted((o.order, o.reason) for o in got if o.type == "order_cancelled") == [
        (f"o-{nm}", "market_expired") for nm in sorted(names)]
    rows = sorted(row for e in sh.shards for row in e.snapshot().get("open_orders", []))
    assert rows == one.snapshot()["open_orders"] == sorted(
        [f"q-{nm}", nm, "BTC-PERP", "buy", "10", "83000"] for nm in names)
    assert sh.digest() == venue_digest([one])


def test_open_interest_scaled_margin_is_refused() -> None:
    # dYdX's Large-Cap tier has both caps 0 (OIMF off: presets.py cites genesis.sh): fine
    assert ShardedEngine(load_preset("dydx"), 2).n == 2
    scaled = venue_from_data({"preset": "dydx", "markets": {"BTC-PERP": {
        "open_interest_lower_cap": "1000000", "open_interest_upper_cap": "5000000"}}})
    with pytest.raises(UnshardableError, match="open interest"):
        ShardedEngine(scaled, 2)


def test_open_interest_params_change_is_rejected_before_it_is_applied() -> None:
    """A parameter change that would scale BTC-PERP's margin with open interest is
    rejected ``unshardable`` before anything moves: every shard's state hash is what it
    was, the id is not taken (sent again, it is judged again, not dropped as a
    duplicate), and a later allowed change still applies. dYdX's OIMF caps:
    open_interest_lower_cap/upper_cap (presets.py cites dydxprotocol/v4-chain
    protocol/testing/genesis.sh)."""
    from solvency.core.model.events import Params

    sh = ShardedEngine(load_preset("dydx"), 2)
    a, b = _one_per_shard(2)
    sh.apply_all([Deposit(id="d1", account=a, asset="USDC", amount=Decimal("50000"), ts_ms=TS),
                  Deposit(id="d2", account=b, asset="USDC", amount=Decimal("50000"), ts_ms=TS),
                  Price(id="p1", market="BTC-PERP", price=Decimal("60000"), ts_ms=TS),
                  Fill(id="f1", buyer=a, seller=b, market="BTC-PERP", size=Decimal("0.1"),
                       price=Decimal("60000"), ts_ms=TS + 1)])
    before = [e.state_hash() for e in sh.shards]
    oi = Params(id="oi", market="BTC-PERP", changes={
        "open_interest_lower_cap": "1000000", "open_interest_upper_cap": "5000000"},
        ts_ms=TS + 2)
    for _ in range(2):  # the second time judged again, not a duplicate
        got = sh.apply(oi)
        assert [(o.type, o.event, o.reason) for o in got] == [("rejected", "oi", "unshardable")]
        assert "BTC-PERP" in got[0].detail and "open interest" in got[0].detail
        assert [e.state_hash() for e in sh.shards] == before
        assert "oi" not in sh.seen
    allowed = Params(id="oi", market="BTC-PERP", changes={"imr": "0.05"}, ts_ms=TS + 3)
    got = sh.apply(allowed)
    assert not any(o.type == "rejected" for o in got), got
    assert "oi" in sh.seen
    assert all(h != x for h, x in zip(before, [e.state_hash() for e in sh.shards],
                                      strict=True))
    for engine in sh.shards:
        assert engine.market_data["BTC-PERP"]["imr"] == "0.05"
        engine.verify()


def _one_per_shard(n: int) -> list[str]:
    return [next(f"u{i}" for i in range(1000) if shard_of(f"u{i}", n) == k) for k in range(n)]


def test_proof_of_liabilities_over_shards() -> None:
    """`solvency shard prove`'s tree: over 1, 2 or 4 shards the same root, equal to the
    tree of one engine's liabilities (engine/summary.py) with the accounts sorted by name;
    every account's proof verifies against it (core/proofs.py)."""
    import numpy as np

    from solvency.adapters.proofs import Liabilities, proofs_from
    from solvency.cli.shard import shard_proofs
    from solvency.core.proofs import verify_proof
    from solvency.engine.summary import liabilities

    events = _events(workload(4, 600, fund="3000", crash=(0.12, 0.102)))
    venue = load_preset("binance")
    one = Engine(venue)
    one.apply_all(events)
    owed = liabilities(one)
    order = sorted(range(len(owed["accounts"])), key=lambda i: owed["accounts"][i])
    sorted_owed = {**owed, "accounts": [owed["accounts"][i] for i in order],
                   "owed": owed["owed"][np.array(order)]}
    seed = b"s" * 32
    want = proofs_from(Liabilities(sorted_owed, 7, "h", one.clock_ms, venue.name,
                                   {a: venue.assets[a].decimals for a in owed["assets"]}),
                       seed=seed).root
    assert len(owed["accounts"]) > 100
    for n in (1, 2, 4):
        sh = ShardedEngine(venue, n)
        sh.apply_all(events)
        got = shard_proofs(sh.shards, seq=7, seed=seed)
        assert got.root["root"] == want["root"], n
        assert got.root["totals"] == want["totals"]
        assert got.root["state_hash"] == sh.state_hash()
        for i in (0, len(owed["accounts"]) // 2, len(owed["accounts"]) - 1):
            account = sorted_owed["accounts"][i]
            balances = verify_proof(got.tree.proof(i), got.root)
            assert balances == dict(zip(owed["assets"], sorted_owed["owed"][i].tolist(),
                                        strict=True)), account


def test_gather_is_one_engines_state() -> None:
    """The venue gathered from 4 shards (docs/scale_out.md, "The venue-wide decision") is
    one engine's state: its accounts' rows in one engine's creation order (which breaks
    ADL ties), and the same positions, balances and realized PnL; a restored engine from
    it values every account as one engine does."""
    from solvency.service.shards import gather, restore_like

    events = _events(workload(3, 400, fund="3000", crash=(0.12, 0.102)))
    venue = load_preset("binance")
    one, sh = Engine(venue), ShardedEngine(venue, 4)
    for ev in events:
        one.apply(ev)
        sh.apply(ev)
    merged = gather([e.snapshot() for e in sh.shards], sh.births)
    want = one.snapshot()

    def users(rows: list[list[Any]]) -> list[str]:
        return [r[0] for r in rows if not r[1].startswith("__")]

    assert len(users(want["rows"])) > 100
    assert users(merged["rows"]) == users(want["rows"])
    engine = restore_like(sh.shards[0], merged)
    assert venue_summary([engine]) == venue_summary([one])
    for name in users(want["rows"])[::8]:
        assert engine.account_view(name) == one.account_view(name), name
    assert engine.section_hashes()["feeds"] == one.section_hashes()["feeds"]


def test_only_a_shards_engine_exempts_its_clearing_account_from_reduce_only() -> None:
    """A reduce-only market (quorum lost) lets a shard's clearing side of a leg grow (its
    trader's side was checked on the other shard), and a plain engine refuses the same
    fill naming SHARD_CLEARING like any account's (the exemption was by name alone, in
    every engine: review). The flag is ``Engine.shard``, set by the shard's genesis and
    carried by its snapshot; a plain engine's snapshot has no key for it."""
    from tests.scenarios.pretrade_cases import T0, _quorum_lost

    def fill(e: Engine) -> list[Any]:
        # alice sells down her long (reduces); the clearing account's long grows
        e.apply(Deposit(id="dc", account=SHARD_CLEARING, asset="USDT",
                        amount=Decimal(1_000_000)))
        return list(e.apply(Fill(id="fc", market="BTC-PERP", buyer=SHARD_CLEARING,
                                 seller="alice", size=Decimal("0.5"),
                                 price=Decimal(100_000), ts_ms=T0 + 40_000)))

    plain = _quorum_lost()
    assert "shard" not in plain.snapshot()
    got = fill(plain)
    assert [(o.type, o.reason) for o in got] == [("rejected", "market_reduce_only")], got
    assert SHARD_CLEARING in got[0].detail

    shard = _quorum_lost()
    shard.apply(genesis(shard, 0)[0])
    assert shard.shard and shard.snapshot()["shard"] is True
    restored = Engine.restore(shard.snapshot())
    assert restored.shard and restored.state_hash() == shard.state_hash()
    for e in (shard, restored):
        got = fill(e)
        assert not any(o.type == "rejected" for o in got), got
        assert e.account_view(SHARD_CLEARING)["positions"]
