"""Open orders in the initial-margin check, per venue (``[margin] open_orders``).

Sources, read with their code:

* Drift protocol-v2 at 0ae3e3b1db782a6765c3525b3dec38ad4d9d3a62 (2026-04-01):
  ``programs/drift/src/state/user.rs`` ``PerpPosition::worst_case_liability_value`` (the
  position + all open bids or + all open asks, whichever has the larger ``|base| x
  oracle``; asks on a tie), ``programs/drift/src/math/margin.rs``
  ``calculate_perp_position_value_and_pnl`` (the margin ratio of the worst case's size times
  its liability, plus ``margin_requirement_for_open_orders`` = open orders x
  ``OPEN_ORDER_MARGIN_REQUIREMENT``, ``QUOTE_PRECISION / 100`` = 0.01 USDC in
  ``math/constants.rs``), ``controller/orders.rs`` ``place_perp_order`` (the new order is
  added to ``open_bids``/``open_asks`` before ``meets_place_order_margin_requirement``).
  The vectors: ``state/user/tests.rs`` ``worst_case_liability_value::perp``.
* dYdX v4-chain at 84d4664bae71e3a077adaac67fb77ad19cd28d30 (2026-03-04):
  ``protocol/x/clob/keeper/orders.go`` ``PlaceStatefulOrder`` step 4 and
  ``AddOrderToOrderbookSubaccountUpdatesCheck``: the order alone, its remaining size at its
  own price, against the subaccount's positions; other open orders are not counted, which
  is the engine's ``none`` rule.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from solvency.core.model.presets import venue_from_data
from solvency.core.model.venue import ConfigError, OpenOrderRule
from solvency.engine.engine import Engine
from solvency.engine.inputs import parse_input
from solvency.engine.open_orders import free_collateral_worst_side, worst_lots

REPO = "protocol-v2@0ae3e3b1/programs/drift/src"
BASE = 10**9  # Drift's BASE_PRECISION
_N = iter(range(10**9))


def _apply(e: Engine, **fields: Any) -> list[Any]:
    fields.setdefault("id", f"ev{next(_N)}")
    return e.apply(parse_input(fields))


def _rest(e: Engine, oid: str, side: str, size: str, price: str, *, account: str = "alice",
          market: str = "BTC-PERP") -> list[Any]:
    return _apply(e, type="order", id=oid, account=account, market=market, side=side,
                  size=size, price=price, rest=True)


def _engine(preset: str = "drift", margin: dict[str, Any] | None = None,
            alice_usdc: str = "2000") -> Engine:
    """A flat 10 % IM (Drift's size premium off: imf_factor 0) on BTC and ETH."""
    data: dict[str, Any] = {"preset": preset, "markets": {
        "BTC-PERP": {"model": "size_premium", "imr": "0.1", "mmr": "0.05",
                     "imf_factor": "0"},
        "ETH-PERP": {"model": "size_premium", "imr": "0.1", "mmr": "0.05",
                     "imf_factor": "0"}}}
    if margin is not None:
        data["margin"] = margin
    e = Engine(venue_from_data(data))
    _apply(e, type="deposit", account="alice", asset="USDC", amount=alice_usdc)
    _apply(e, type="deposit", account="bob", asset="USDC", amount="1000000")
    _apply(e, type="price", market="BTC-PERP", price="50000")
    _apply(e, type="price", market="ETH-PERP", price="100")
    return e


def _reasons(out: list[Any]) -> list[str]:
    return [getattr(o, "reason", "") or o.status for o in out]


def test_presets_rules() -> None:
    """Drift counts open orders on the worse side with 0.01 USDC each; dYdX checks the
    order alone (its code, above); the other presets were not read for it: none."""
    assert venue_from_data({"preset": "drift"}).open_orders == OpenOrderRule(
        "worst_side", Decimal("0.01"))
    for name in ("dydx", "binance", "hyperliquid", "bitmex", "deribit"):
        assert venue_from_data({"preset": name}).open_orders == OpenOrderRule("none")


def test_bids_on_the_worse_side_refuse_the_next_order_and_a_cancel_frees_it() -> None:
    """Alice: 2,000 USDC, long 0.2 BTC bought at the mark 50,000 (IM 10 % = 1,000).
    A resting bid of 0.1 makes the worst case 0.3 BTC: IM 1,500 + 0.01 per order, free
    499.99, accepted. A second bid of 0.1: 0.4 BTC, IM 2,000 + 0.02 > 2,000 of collateral:
    refused ``insufficient_initial_margin`` (free -0.02) with the hash unchanged. Cancel
    the first bid and the same order passes again (free 499.99)."""
    e = _engine()
    _apply(e, type="fill", market="BTC-PERP", buyer="alice", seller="bob", size="0.2",
           price="50000")
    assert Decimal(e.account_view("alice")["initial_margin"]) == 1_000
    assert _reasons(_rest(e, "b1", "buy", "0.1", "49500")) == ["accepted"]
    before = e.state_hash()
    out = _rest(e, "b2", "buy", "0.1", "49000")
    assert [(o.type, o.reason) for o in out] == [("rejected", "insufficient_initial_margin")]
    assert "-0.02 < 0" in out[0].detail
    assert e.state_hash() == before
    _apply(e, type="order_cancel", account="alice", order="b1")
    assert _reasons(_rest(e, "b2", "buy", "0.1", "49000")) == ["accepted"]


def test_the_worse_side_is_chosen() -> None:
    """Long 0.2 BTC with an ask of 0.5 resting: all asks filled leave -0.3 BTC, all bids
    (none) 0.2: the asks' side is the worst case (IM 1,500 + 0.01). A further ask of 0.1
    makes it -0.4 (IM 2,000 + 0.02): refused; a bid of 0.1 instead leaves the worst case
    at -0.3 (bids' side 0.3, a tie: IM 1,500 + 0.02): accepted."""
    e = _engine()
    _apply(e, type="fill", market="BTC-PERP", buyer="alice", seller="bob", size="0.2",
           price="50000")
    assert _reasons(_rest(e, "a1", "sell", "0.5", "51000")) == ["accepted"]
    assert _reasons(_rest(e, "a2", "sell", "0.1", "51000")) == [
        "insufficient_initial_margin"]
    assert _reasons(_rest(e, "b1", "buy", "0.1", "49000")) == ["accepted"]


def test_dydx_checks_the_order_alone() -> None:
    """The same book under dYdX's rule: the second bid is checked alone, as if filled at
    its price against the 0.2 BTC held: 0.3 BTC, IM 1,500, and 100 USDC gained buying 0.1
    at 49,000 under the mark: free 600, accepted."""
    e = _engine("dydx")
    _apply(e, type="fill", market="BTC-PERP", buyer="alice", seller="bob", size="0.2",
           price="50000")
    assert _reasons(_rest(e, "b1", "buy", "0.1", "49500")) == ["accepted"]
    assert _reasons(_rest(e, "b2", "buy", "0.1", "49000")) == ["accepted"]
    assert len(e.snapshot()["open_orders"]) == 2  # the orders rest all the same


def test_orders_in_another_market_count_in_the_cross_check() -> None:
    """Cross margin: a resting BTC bid of 0.1 (IM 500 + 0.01) stays in the requirement
    when alice (1,000 USDC) bids 50 ETH at 100 (IM 500 + 0.01): 1,000 - 1,000 - 0.02 < 0,
    refused; without the BTC bid it passes (free 499.99)."""
    e = _engine(alice_usdc="1000")
    assert _reasons(_rest(e, "btc", "buy", "0.1", "50000")) == ["accepted"]
    assert _reasons(_rest(e, "eth", "buy", "50", "100", market="ETH-PERP")) == [
        "insufficient_initial_margin"]
    _apply(e, type="order_cancel", account="alice", order="btc")
    assert _reasons(_rest(e, "eth", "buy", "50", "100", market="ETH-PERP")) == ["accepted"]


def test_a_taker_order_counts_the_resting_ones() -> None:
    """An order that does not rest (a pre-trade question) is checked with the account's
    resting orders too: after a bid of 0.3 BTC rests (IM 1,500 + 0.01 on 2,000), a buy of
    0.1 is refused (0.4 BTC: IM 2,000 + 0.02), and accepted once the bid is cancelled."""
    e = _engine()
    assert _reasons(_rest(e, "b1", "buy", "0.3", "50000")) == ["accepted"]
    ask = {"type": "order", "account": "alice", "market": "BTC-PERP", "side": "buy",
           "size": "0.1", "price": "50000"}
    assert _reasons(_apply(e, **ask)) == ["insufficient_initial_margin"]
    _apply(e, type="order_cancel", account="alice", order="b1")
    assert _reasons(_apply(e, **ask)) == ["accepted"]


def test_the_first_resting_order_pays_its_own_charge() -> None:
    """1,000 USDC, no position, mark 50,000: a bid of 0.2 BTC at 50,000 needs IM 1,000.
    As a question (no ``rest``, no resting orders) it passes, free 0; to rest it is one
    open order, 1,000 + 0.01 > 1,000: refused, and the service's preview
    (``Engine.preview_order``) says the same before it is sent."""
    e = _engine(alice_usdc="1000")
    order = {"type": "order", "account": "alice", "market": "BTC-PERP", "side": "buy",
             "size": "0.2", "price": "50000"}
    assert _reasons(_apply(e, **order)) == ["accepted"]
    resting = parse_input({**order, "id": "r1", "rest": True})
    assert e.preview_order(resting)[:2] == ("rejected", "insufficient_initial_margin")
    assert _reasons(e.apply(resting)) == ["insufficient_initial_margin"]


# Drift state/user/tests.rs worst_case_liability_value::perp at oracle 100: (base,
# open_bids, open_asks) -> worst-case base, in BASE_PRECISION units
DRIFT_WORST_CASE: list[Any] = [
    pytest.param(0, BASE, -BASE, -BASE, id=f"{REPO}/state/user/tests.rs/"
                 "worst_case_liability_value/perp/1-bid-1-ask-tie"),
    pytest.param(0, 2 * BASE, -BASE, 2 * BASE, id=f"{REPO}/state/user/tests.rs/"
                 "worst_case_liability_value/perp/2-bids-1-ask"),
    pytest.param(98 * BASE, 0, -99 * BASE, 98 * BASE, id=f"{REPO}/state/user/tests.rs/"
                 "worst_case_liability_value/perp/long-98-ask-99"),
    pytest.param(-98 * BASE, 99 * BASE, 0, -98 * BASE, id=f"{REPO}/state/user/tests.rs/"
                 "worst_case_liability_value/perp/short-98-bid-99"),
]


@pytest.mark.parametrize(("base", "bids", "asks", "worst"), DRIFT_WORST_CASE)
def test_drift_worst_case_vectors(base: int, bids: int, asks: int, worst: int) -> None:
    """The worst-case base of Drift's own test, and through the engine its requirement:
    ETH-PERP at 100 (Drift's price; 1 ETH = 1,000 lots), 10 % IM of |worst| x 100 (Drift's
    liability 100 x |worst| QUOTE, the test's second assertion) + 0.01 per open order."""
    assert worst_lots(base, bids, -asks) == worst
    lots = 1_000  # ETH-PERP lots (0.001 ETH) per ETH, Drift's BASE_PRECISION
    e = _engine(alice_usdc="20000")
    if base:
        side = ("alice", "bob") if base > 0 else ("bob", "alice")
        _apply(e, type="fill", market="ETH-PERP", buyer=side[0], seller=side[1],
               size=str(abs(base) // BASE), price="100")
    n = 0
    for oid, size, side_name in (("bid", bids, "buy"), ("ask", -asks, "sell")):
        if size:
            assert _reasons(_rest(e, oid, side_name, str(size // BASE), "100",
                                  market="ETH-PERP")) == ["accepted"]
            n += 1
    r = e.book.row_index["alice"]
    free = free_collateral_worst_side(e, "alice", r, False, -1, 0, 0.01)
    collateral = 20_000.0
    liability = abs(worst) // BASE * 100  # USDC
    assert free == pytest.approx(collateral - 0.1 * liability - 0.01 * n, abs=1e-6)
    assert worst_lots(base // BASE * lots, bids // BASE * lots, -asks // BASE * lots) == (
        worst // BASE * lots)


@pytest.mark.parametrize(("margin", "message"), [
    ({"open_orders": "both"}, "margin.open_orders"),
    ({"open_order_margin_usd": "0.01", "open_orders": "none"},
     "margin.open_order_margin_usd: acts only with"),
    ({"open_order_margin_usd": "-1"}, "margin.open_order_margin_usd"),
    ({"open_orders": "worst_side", "per_order": 1}, "margin.per_order"),
])
def test_venue_file_keys_refused_with_the_dotted_key(margin: dict[str, Any],
                                                     message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        venue_from_data({"preset": "binance", "margin": margin}, source="v.toml")
    assert message in str(exc.value)


def test_venue_file_sets_the_rule() -> None:
    v = venue_from_data({"preset": "binance", "margin": {"open_orders": "worst_side",
                                                         "open_order_margin_usd": "0.5"}})
    assert v.open_orders == OpenOrderRule("worst_side", Decimal("0.5"))
    assert venue_from_data({"preset": "drift", "margin": {"open_orders": "none"}}
                           ).open_orders == OpenOrderRule("none")
