"""Orders: pre-trade checks against the engine's state, and resting orders.

An ``order`` event asks whether an order would be accepted now (price band, size and
notional limits, position and open-interest caps, leverage tiers, free collateral after
the trade, breakers, rate limit: ``pretrade.py``); the answer is an ``order`` out-event,
``accepted`` or ``rejected`` with a reason. Balances only move when a fill arrives.

With ``rest: true`` an accepted order rests (``open_orders.py``) until a ``fill`` names it
(``buyer_order`` / ``seller_order``) or an ``order_cancel`` removes it; a refused one is a
``rejected`` out-event with the check's reason and changes nothing (as a refused fill).
"""

from __future__ import annotations

from typing import Any

from solvency.core.model.events import Fill
from solvency.engine.base import EngineState, RejectReason, on_grid
from solvency.engine.feeds import EngineView, OrderResult
from solvency.engine.fills import apply_fill
from solvency.engine.open_orders import OrderCancelled, RestingOrder
from solvency.engine.pretrade import Order, OrderCancel, Reject, check_order

__all__ = ["apply_fill_orders", "apply_order", "apply_order_cancel", "check_fill_orders",
           "resting_order_of"]


def apply_order(state: EngineState, ev: Order) -> list[Any]:
    """Pre-trade check of an order: accepted or rejected with a reason; no balance
    moves until it is filled. A ``rest`` order, accepted, rests."""
    now = ev.ts_ms if ev.ts_ms is not None else (state.clock_ms or 0)
    if not ev.rest:
        return [state.feeds.check(ev, now)]
    resting = resting_order_of(state, ev)
    feeds = state.feeds
    res = check_order(ev, EngineView(state, feeds, rests=True), now)
    if isinstance(res, Reject):
        raise RejectReason(res.reason, res.detail)
    feeds.rate.record(ev.account, now)
    state.open_orders.add(resting)
    return [OrderResult(id=state.next_id(), event=ev.id, account=ev.account,
                        market=ev.market, status="accepted", reason="", detail="resting")]


def resting_order_of(state: EngineState, ev: Order) -> RestingOrder:
    """The resting order an accepted ``rest`` order becomes; rejects, before anything
    changes, what could not rest: ``invalid_order`` (no finite size and price > 0),
    ``unknown_market``, ``unknown_account``, ``size_off_lot``, ``price_off_tick``
    (:meth:`~solvency.engine.engine.Engine.preview_order` asks here first too)."""
    price = ev.price
    if price is None or not (price.is_finite() and price > 0) or not (
            ev.size.is_finite() and ev.size > 0):
        raise RejectReason("invalid_order", f"a resting order needs a finite size and "
                                            f"price > 0: size {ev.size} / price {price}")
    m, inst = state.resolve_market(ev.market)
    state.require_user_account(ev.account)
    lots = on_grid(ev.size, inst.lot_size, "size", "size_off_lot")
    on_grid(price, inst.tick_size, "price", "price_off_tick")
    return RestingOrder(ev.id, ev.account, m, ev.side, lots, price)


def apply_order_cancel(state: EngineState, ev: OrderCancel) -> list[Any]:
    """Cancel a resting order; rejects ``unknown_order`` when the account has no resting
    order of that id (never placed, filled or cancelled already, or another account's)."""
    order = _own_order(state, ev.order, ev.account)
    state.open_orders.remove(ev.order)
    inst = state.book.instruments[order.market]
    return [OrderCancelled(id=state.next_id(), event=ev.id, order=order.id,
                           account=order.account, market=inst.name, side=order.side,
                           size=str(order.lots * inst.lot_size), reason="order_cancel")]


def apply_fill_orders(state: EngineState, ev: Fill) -> list[Any]:
    """A fill; one that names resting orders (``buyer_order`` / ``seller_order``) reduces
    each by its size. Checked before anything changes: ``unknown_order`` (that side's
    account has no resting order of the id), ``order_mismatch`` (other
    market or side, or one order named for both sides), ``fill_exceeds_order`` (more than
    is left of it), ``price_beyond_limit`` (a buy above its limit, a sell below)."""
    if ev.buyer_order is None and ev.seller_order is None:
        return apply_fill(state, ev)
    lots = check_fill_orders(state, ev)
    out = apply_fill(state, ev)  # a rejection here leaves the orders as they were too
    for oid in (ev.buyer_order, ev.seller_order):
        if oid is not None:
            state.open_orders.reduce(oid, lots)
    return out


def check_fill_orders(state: EngineState, ev: Fill) -> int:
    """Check the resting orders a fill names (the rejections of
    :func:`apply_fill_orders`); return the fill's size in lots. Changes nothing."""
    if ev.buyer_order is not None and ev.buyer_order == ev.seller_order:
        raise RejectReason("order_mismatch", f"order {ev.buyer_order!r} named for both sides")
    m, inst = state.resolve_market(ev.market)
    lots = on_grid(ev.size, inst.lot_size, "size", "invalid_size")
    for oid, who, side in ((ev.buyer_order, ev.buyer, "buy"),
                           (ev.seller_order, ev.seller, "sell")):
        if oid is not None:
            _check_fill_of(state, ev, oid, who, side, m, lots)
    return lots


def _own_order(state: EngineState, oid: str, account: str) -> RestingOrder:
    """``account``'s resting order ``oid``; rejects ``unknown_order`` otherwise. Another
    account's order is unknown to it too: account shards hold only their accounts' orders
    (service/shards.py), so a sharded venue answers as one engine does, and the answer
    tells nobody which ids others use."""
    order = state.open_orders.by_id.get(oid)
    if order is None or order.account != account:
        raise RejectReason("unknown_order", f"{account!r} has no resting order {oid!r}")
    return order


def _check_fill_of(state: EngineState, ev: Fill, oid: str, who: str, side: str, m: int,
                   lots: int) -> None:
    order = _own_order(state, oid, who)
    if order.market != m or order.side != side:
        raise RejectReason("order_mismatch",
                           f"order {oid!r} is a {order.side} of "
                           f"{state.book.market_names[order.market]}, not a {side} of "
                           f"{ev.market}")
    if lots > order.lots:
        raise RejectReason("fill_exceeds_order",
                           f"size {ev.size} > {order.lots * state.book.instruments[m].lot_size}"
                           f" left of order {oid!r}")
    if (ev.price > order.price) if side == "buy" else (ev.price < order.price):
        raise RejectReason("price_beyond_limit",
                           f"price {ev.price} is beyond order {oid!r}'s limit {order.price}")
