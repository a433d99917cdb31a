"""Resting orders through ``Engine.apply``: place, cancel, fill, snapshot, hash.

An ``order`` with ``rest: true`` that the pre-trade checks accept rests under its id; an
``order_cancel`` removes it, a ``fill`` naming it (``buyer_order`` / ``seller_order``)
reduces it. Every refusal is a reason code and leaves ``state_hash()`` as it was; the
orders travel in the snapshot and the hash, and a state without any keeps its old hash.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from solvency.core.model.presets import venue_from_data
from solvency.engine.engine import Engine
from solvency.engine.inputs import parse_input
from solvency.engine.open_orders import free_collateral_worst_side
from solvency.engine.pretrade import Order

_N = iter(range(10**9))


def _apply(e: Engine, **fields: Any) -> list[Any]:
    fields.setdefault("id", f"ev{next(_N)}")
    return e.apply(parse_input(fields))


def _rest(e: Engine, oid: str, account: str, side: str, size: str, price: str,
          market: str = "BTC-PERP") -> list[Any]:
    return _apply(e, type="order", id=oid, account=account, market=market, side=side,
                  size=size, price=price, rest=True)


def _engine() -> Engine:
    """Drift's rule (worst side, 0.01 USDC per order) with a flat 10 % IM (imf 0)."""
    e = Engine(venue_from_data({"preset": "drift", "markets": {
        "BTC-PERP": {"imf_factor": "0"}, "ETH-PERP": {"imf_factor": "0"}}}))
    for who, amount in (("alice", "2000"), ("bob", "1000000"), ("carol", "1000")):
        _apply(e, type="deposit", account=who, asset="USDC", amount=amount)
    _apply(e, type="price", market="BTC-PERP", price="50000")
    _apply(e, type="price", market="ETH-PERP", price="100")
    return e


def _book(e: Engine) -> list[list[str]]:
    return list(e.snapshot().get("open_orders", []))


def test_place_fill_cancel_and_the_snapshot_rows() -> None:
    e = _engine()
    assert "open_orders" not in e.snapshot()  # no resting order: the key is absent
    out = _rest(e, "b1", "alice", "buy", "0.1", "49000")
    assert [(o.type, o.status, o.detail) for o in out] == [("order", "accepted", "resting")]
    _rest(e, "a1", "bob", "sell", "0.3", "51000")
    assert _book(e) == [["a1", "bob", "BTC-PERP", "sell", "3000", "51000"],
                        ["b1", "alice", "BTC-PERP", "buy", "1000", "49000"]]
    # naming both: bob's ask sells no lower than 51,000, so 49,000 breaks his limit
    out = _apply(e, type="fill", market="BTC-PERP", buyer="alice", seller="bob",
                 size="0.04", price="49000", buyer_order="b1", seller_order="a1")
    assert [o.reason for o in out] == ["price_beyond_limit"]
    _apply(e, type="fill", market="BTC-PERP", buyer="alice", seller="bob", size="0.04",
           price="49000", buyer_order="b1")
    assert _book(e)[1] == ["b1", "alice", "BTC-PERP", "buy", "600", "49000"]
    _apply(e, type="fill", market="BTC-PERP", buyer="alice", seller="bob", size="0.06",
           price="48000", buyer_order="b1")  # below the limit: a better price is fine
    assert [row[0] for row in _book(e)] == ["a1"]  # b1 filled in full: gone
    out = _apply(e, type="order_cancel", account="bob", order="a1")
    assert [(o.type, o.order, o.side, o.size) for o in out] == [
        ("order_cancelled", "a1", "sell", "0.3000")]
    assert "open_orders" not in e.snapshot()
    assert Decimal(e.account_view("alice")["positions"][0]["size"]) == Decimal("0.1")
    e.verify()


def _hash_after(e: Engine, **fields: Any) -> tuple[str, list[Any]]:
    out = _apply(e, **fields)
    return e.state_hash(), out


_REFUSALS: list[Any] = [
    pytest.param({"type": "order_cancel", "account": "alice", "order": "nope"},
                 "unknown_order", id="cancel-unknown-id"),
    pytest.param({"type": "order_cancel", "account": "carol", "order": "b1"},
                 "unknown_order", id="cancel-another-accounts-order"),
    pytest.param({"type": "order_cancel", "account": "alice", "order": "gone"},
                 "unknown_order", id="cancel-twice"),
    pytest.param({"type": "fill", "market": "BTC-PERP", "buyer": "alice", "seller": "bob",
                  "size": "0.01", "price": "49000", "buyer_order": "nope"},
                 "unknown_order", id="fill-unknown-order"),
    pytest.param({"type": "fill", "market": "BTC-PERP", "buyer": "carol", "seller": "bob",
                  "size": "0.01", "price": "49000", "buyer_order": "b1"},
                 "unknown_order", id="fill-another-accounts-order"),
    pytest.param({"type": "fill", "market": "BTC-PERP", "buyer": "bob", "seller": "alice",
                  "size": "0.01", "price": "49000", "seller_order": "b1"},
                 "order_mismatch", id="fill-wrong-side"),
    pytest.param({"type": "fill", "market": "ETH-PERP", "buyer": "alice", "seller": "bob",
                  "size": "0.01", "price": "100", "buyer_order": "b1"},
                 "order_mismatch", id="fill-wrong-market"),
    pytest.param({"type": "fill", "market": "BTC-PERP", "buyer": "alice", "seller": "bob",
                  "size": "0.11", "price": "49000", "buyer_order": "b1"},
                 "fill_exceeds_order", id="fill-more-than-left"),
    pytest.param({"type": "fill", "market": "BTC-PERP", "buyer": "alice", "seller": "bob",
                  "size": "0.01", "price": "49001", "buyer_order": "b1"},
                 "price_beyond_limit", id="fill-above-buy-limit"),
    pytest.param({"type": "fill", "market": "BTC-PERP", "buyer": "alice", "seller": "alice",
                  "size": "0.01", "price": "49000", "buyer_order": "b1",
                  "seller_order": "b1"}, "order_mismatch", id="fill-one-order-both-sides"),
    pytest.param({"type": "order", "account": "dave", "market": "BTC-PERP", "side": "buy",
                  "size": "0.1", "price": "49000", "rest": True},
                 "unknown_account", id="rest-unknown-account"),
    pytest.param({"type": "order", "account": "alice", "market": "XRP-PERP", "side": "buy",
                  "size": "0.1", "price": "49000", "rest": True},
                 "unknown_market", id="rest-unknown-market"),
    pytest.param({"type": "order", "account": "alice", "market": "BTC-PERP", "side": "buy",
                  "size": "0.00001", "price": "49000", "rest": True},
                 "size_off_lot", id="rest-size-off-lot"),
    pytest.param({"type": "order", "account": "alice", "market": "BTC-PERP", "side": "buy",
                  "size": "0.1", "price": "49000.05", "rest": True},
                 "price_off_tick", id="rest-price-off-tick"),
    pytest.param({"type": "order", "account": "alice", "market": "BTC-PERP", "side": "buy",
                  "size": "0.1", "price": "40000", "rest": True},
                 "price_outside_band", id="rest-refused-by-pretrade"),
]


@pytest.mark.parametrize(("fields", "reason"), _REFUSALS)
def test_refusals_change_nothing(fields: dict[str, Any], reason: str) -> None:
    e = _engine()
    _rest(e, "b1", "alice", "buy", "0.1", "49000")
    _rest(e, "gone", "alice", "buy", "0.01", "49000")
    _apply(e, type="order_cancel", account="alice", order="gone")
    before, rows = e.state_hash(), _book(e)
    after, out = _hash_after(e, **fields)
    assert [(o.type, o.reason) for o in out] == [("rejected", reason)]
    assert after == before and _book(e) == rows


@pytest.mark.parametrize(("size", "price"), [
    (Decimal("NaN"), Decimal("49000")), (Decimal("0"), Decimal("49000")),
    (Decimal("-1"), Decimal("49000")), (Decimal("0.1"), Decimal("-5")),
    (Decimal("0.1"), Decimal("Infinity")), (Decimal("0.1"), None),
], ids=["nan-size", "zero-size", "negative-size", "negative-price", "infinite-price",
        "no-price"])
def test_malformed_resting_orders_built_in_python(size: Decimal,
                                                  price: Decimal | None) -> None:
    """The JSON parser refuses these already; built in Python they reach the engine,
    which refuses them ``invalid_order`` with nothing changed."""
    e = _engine()
    before = e.state_hash()
    out = e.apply(Order(id="x", account="alice", market="BTC-PERP", side="buy", size=size,
                        price=price, rest=True))
    assert [(o.type, o.reason) for o in out] == [("rejected", "invalid_order")]
    assert e.state_hash() == before and "open_orders" not in e.snapshot()


def test_duplicate_id_is_ignored() -> None:
    e = _engine()
    _rest(e, "b1", "alice", "buy", "0.1", "49000")
    before = e.state_hash()
    assert _rest(e, "b1", "alice", "buy", "0.2", "48000") == []  # the engine's idempotency
    assert e.state_hash() == before
    assert _book(e) == [["b1", "alice", "BTC-PERP", "buy", "1000", "49000"]]


def test_snapshot_restore_keeps_the_orders_and_the_hash() -> None:
    e = _engine()
    _rest(e, "b1", "alice", "buy", "0.1", "49000")
    _rest(e, "a1", "carol", "sell", "1.5", "101", market="ETH-PERP")
    _apply(e, type="fill", market="BTC-PERP", buyer="alice", seller="bob", size="0.03",
           price="49000", buyer_order="b1")
    snap = e.snapshot()
    again = Engine.restore(snap)
    assert again.state_hash() == e.state_hash()
    assert _book(again) == _book(e) == [
        ["a1", "carol", "ETH-PERP", "sell", "1500", "101"],
        ["b1", "alice", "BTC-PERP", "buy", "700", "49000"]]
    # the restored per-account sums decide the same: both refuse alice's next bid
    for eng in (e, again):
        out = _rest(eng, "b2", "alice", "buy", "0.35", "49000")
        assert [o.reason for o in out] == ["insufficient_initial_margin"]
    assert again.state_hash() == e.state_hash()
    sections = e.section_hashes()
    e2 = Engine.restore(snap)
    _apply(e2, type="order_cancel", account="carol", order="a1")
    changed = {k for k, v in e2.section_hashes().items() if sections[k] != v}
    assert changed == {"positions", "sequence"}  # the orders hash in "positions"


def test_fills_keep_every_asset_conserved() -> None:
    e = _engine()
    totals = e.verify()
    _rest(e, "b1", "alice", "buy", "0.1", "49000")
    _rest(e, "a1", "bob", "sell", "0.2", "49000")
    for size in ("0.02", "0.05", "0.03"):
        _apply(e, type="fill", market="BTC-PERP", buyer="alice", seller="bob", size=size,
               price="49000", buyer_order="b1", seller_order="a1", fee_buyer="0.5",
               fee_seller="-0.1")
        assert e.verify() == totals
    assert _book(e) == [["a1", "bob", "BTC-PERP", "sell", "1000", "49000"]]


@pytest.mark.parametrize(("key", "value"), [("lot_size", "0.001"), ("tick_size", "1000"),
                                            ("contract_size", "2")])
def test_contract_terms_cannot_change_while_orders_rest(key: str, value: str) -> None:
    """A resting order holds its size in lots and its limit on the tick grid: a lot-size
    change with no position open once made carol's 0.1 BTC bid a 1.0 BTC one (review 2,
    item 2). The change is refused while an order rests in the market, the hash is
    unchanged; another market's change still applies, and after the cancel it does."""
    e = _engine()
    _rest(e, "b1", "carol", "buy", "0.1", "49000")
    before = e.state_hash()
    out = _apply(e, type="params", market="BTC-PERP", **{key: value})
    assert [(o.type, o.reason, o.detail) for o in out] == [
        ("rejected", "invalid_params", f"{key} cannot change while orders rest in BTC-PERP")]
    assert e.state_hash() == before
    assert _book(e) == [["b1", "carol", "BTC-PERP", "buy", "1000", "49000"]]
    out = _apply(e, type="order_cancel", account="carol", order="b1")
    assert [o.size for o in out] == ["0.1000"]
    out = _apply(e, type="params", market="ETH-PERP", **{key: value})
    assert [o.type for o in out] == ["settled"]  # no order rests in ETH-PERP
    out = _apply(e, type="params", market="BTC-PERP", **{key: value})
    assert [o.type for o in out] == ["settled"]  # none left in BTC-PERP


def test_expiry_cancels_the_markets_resting_orders() -> None:
    """Review 2 item 11: an expiry once left the orders on the expired market (under
    ``worst_side`` they kept adding margin until cancelled). Drift's rule with a dated
    BTC future in the venue file: the expiry cancels the market's orders, by id, with
    reason ``market_expired``; the perpetual's order stays; every asset is conserved and
    the orders' cancel is then ``unknown_order``."""
    e = Engine(venue_from_data({"preset": "drift", "markets": {"BTC-FUT-260327": {
        "kind": "linear_future", "base": "BTC", "quote": "USDC",
        "expiry": "2026-03-27T08:00:00Z", "lot_size": "0.0001", "tick_size": "0.5",
        "model": "size_premium", "imr": "0.1", "mmr": "0.05", "imf_factor": "0"}}}))
    for who, amount in (("alice", "2000"), ("bob", "1000000")):
        _apply(e, type="deposit", account=who, asset="USDC", amount=amount)
    _apply(e, type="price", market="BTC-PERP", price="50000")
    _apply(e, type="price", market="BTC-FUT-260327", price="50000")
    _rest(e, "f2", "bob", "sell", "0.2", "52000", market="BTC-FUT-260327")
    _rest(e, "f1", "alice", "buy", "0.01", "49000", market="BTC-FUT-260327")
    _rest(e, "p1", "alice", "buy", "0.01", "49000")
    totals = e.verify()
    out = _apply(e, type="expiry", market="BTC-FUT-260327", price="50000",
                 ts="2026-03-27T08:00:00Z")
    cancels = [(o.order, o.account, o.side, o.size, o.reason, o.event) for o in out
               if o.type == "order_cancelled"]
    assert cancels == [("f1", "alice", "buy", "0.0100", "market_expired", out[0].event),
                       ("f2", "bob", "sell", "0.2000", "market_expired", out[0].event)]
    assert _book(e) == [["p1", "alice", "BTC-PERP", "buy", "100", "49000"]]
    assert e.verify() == totals
    out = _apply(e, type="order_cancel", account="alice", order="f1")
    assert [o.reason for o in out] == ["unknown_order"]


@pytest.mark.parametrize(("account", "size", "price", "reason"), [
    ("nobody", "0.1", "49000", "unknown_account"),  # was insufficient_initial_margin
    ("alice", "0.00005", "49000", "size_off_lot"),
    ("alice", "0.1", "49000.01", "price_off_tick"),
    ("alice", "0.1", "49000", ""),
])
def test_the_preview_of_a_resting_order_answers_as_its_placement(
        account: str, size: str, price: str, reason: str) -> None:
    """Review 2 item 9: POST /v1/orders/check (``preview_order``) of a ``rest`` order
    once skipped what placement checks first, and answered an account with no deposit
    ``insufficient_initial_margin`` (free collateral -inf). The preview changes
    nothing."""
    e = _engine()
    order = parse_input({"type": "order", "id": "x", "account": account,
                         "market": "BTC-PERP", "side": "buy", "size": size, "price": price,
                         "rest": True})
    assert isinstance(order, Order)
    before = e.state_hash()
    status, got, detail = e.preview_order(order)
    assert e.state_hash() == before
    placed = e.apply(order)[0]  # a refusal is a Rejected, an acceptance an OrderResult
    placed_status = "rejected" if placed.type == "rejected" else placed.status
    assert (status, got) == (placed_status, placed.reason) == (
        "rejected" if reason else "accepted", reason)
    if reason:
        assert detail == placed.detail


def test_only_accepted_resting_orders_count_toward_the_rate_limit() -> None:
    """Review 2 item 10, documented (docs/oracle.md): a plain ``order`` is answered (an
    ``order`` out-event, accepted or not) and counted; a refused ``rest`` order is a
    ``rejected`` event, which leaves the state, the rate limiter included, as it was.
    With 2 orders a window: two refused rests leave the hash alone and both accepted
    rests pass; two refused plain orders use up the window."""
    venue = {"preset": "drift", "oracle": {"rate_limit": {"max_orders": 2,
                                                         "window_ms": 60_000}}}
    for rest in (True, False):
        e = Engine(venue_from_data(venue))
        _apply(e, type="deposit", account="alice", asset="USDC", amount="100000")
        _apply(e, type="price", market="BTC-PERP", price="50000")
        before = e.state_hash()
        for i in range(2):  # off the lot grid: refused
            out = _apply(e, type="order", id=f"bad{i}", account="alice", market="BTC-PERP",
                         side="buy", size="0.00005", price="49000", rest=rest)
            assert [o.reason for o in out] == ["size_off_lot"]
        assert (e.state_hash() == before) is rest
        out = _apply(e, type="order", id="good", account="alice", market="BTC-PERP",
                     side="buy", size="0.01", price="49000", rest=rest)
        assert [o.reason for o in out] == ["" if rest else "rate_limited"]


def test_isolated_orders_promise_the_cross_collateral_once() -> None:
    """Drift's rule for an isolated account (review 2 items 5, t13). Carol (1,000 USDC,
    isolated) rests a 0.1 BTC bid (worst-case IM 500 + 0.01). An ETH bid counts only
    ETH's orders in ETH's row (the isolated branch: with BTC's counted there too, 40 ETH
    would be refused), but the cross collateral BTC's bid needs is promised once: 40 ETH
    (IM 400.01) passes with 99.98 left; 55 more (ETH at 95: 950.02 + 500.01) is refused
    by 450.03 with nothing changed (it once passed: both 950s on the same 1,000); 5 more
    (ETH at 45) passes."""
    e = _engine()
    _apply(e, type="account", account="carol", mode="isolated")
    assert _rest(e, "i1", "carol", "buy", "0.1", "50000")[0].status == "accepted"
    assert _rest(e, "i2", "carol", "buy", "40", "100", market="ETH-PERP")[0].status == (
        "accepted")
    before = e.state_hash()
    out = _rest(e, "i3", "carol", "buy", "55", "100", market="ETH-PERP")
    assert [(o.reason, o.detail) for o in out] == [
        ("insufficient_initial_margin", "free collateral after the order -450.03 < 0")]
    assert e.state_hash() == before
    assert _rest(e, "i4", "carol", "buy", "5", "100", market="ETH-PERP")[0].status == (
        "accepted")


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_worst_side_values_the_extra_lots_as_traded_at_the_mark(side: str) -> None:
    """Review 2 item 6: ``_cash_at_mark`` (the extra lots' cost at the mark) matters where
    IM reads the cost basis: Drift's weight and IMF on unrealized PnL. Alice's resting
    0.1 BTC order at the mark leaves the same free collateral (1,500 = 2,000 - IM 500)
    as a fill of it at the mark; with the cost left at 0 the what-if saw 2,000."""
    def make() -> Engine:
        e = Engine(venue_from_data({"preset": "drift", "markets": {"BTC-PERP": {
            "imf_factor": "0", "unrealized_pnl_initial_asset_weight": "0.5",
            "unrealized_pnl_imf_factor": "0.01"}}}))
        for who, amount in (("alice", "2000"), ("bob", "1000000")):
            _apply(e, type="deposit", account=who, asset="USDC", amount=amount)
        _apply(e, type="price", market="BTC-PERP", price="50000")
        return e
    resting = make()
    _rest(resting, "o", "alice", side, "0.1", "50000")
    row = resting.book.row_index["alice"]
    free = free_collateral_worst_side(resting, "alice", row, False, -1, 0, 0.0)
    filled = make()
    buyer, seller = ("alice", "bob") if side == "buy" else ("bob", "alice")
    _apply(filled, type="fill", market="BTC-PERP", buyer=buyer, seller=seller, size="0.1",
           price="50000")
    assert free == float(filled.account_view("alice")["free_collateral"]) == 1500.0
