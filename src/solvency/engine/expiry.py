"""Expiry: cash settlement of dated futures and options, once, at the settlement price.

After an ``expiry`` event the market is closed for good: its positions are settled and
removed, its resting orders cancelled (``order_cancelled``, reason ``market_expired``),
fills and prices are rejected ``market_expired``.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np

from solvency.core.ledger.ledger import CLEARING, ROUNDING, Transfer
from solvency.core.model.events import Expiry, OutEvent
from solvency.core.units import div_round
from solvency.engine.accounts import release_bucket
from solvency.engine.base import EngineState, RejectReason
from solvency.engine.context import PositionChange
from solvency.engine.funding import settled_event, settlement_payment
from solvency.engine.open_orders import OrderCancelled
from solvency.engine.valuation import check_rows

__all__ = ["apply_expiry"]


def apply_expiry(state: EngineState, ev: Expiry) -> list[OutEvent | OrderCancelled]:
    """Cash-settle a dated future or an option at the event's price and close the market.

    Longs receive ``lots x lot_size x contract_size x price`` rounded down, shorts pay it
    rounded up (options: the intrinsic value; coin-settled: in coin), the difference to
    the rounding account; isolated buckets left empty return their margin.
    """
    book = state.book
    m, inst = state.resolve_market(ev.market)
    if inst.kind not in ("linear_future", "option"):
        raise RejectReason("not_a_future", f"market {inst.name} does not expire")
    if book.expired[m]:
        raise RejectReason("market_expired", f"market {inst.name} already settled")
    when = ev.ts_ms if ev.ts_ms is not None else state.clock_ms
    if inst.expiry_ms is not None and (when is None or when < inst.expiry_ms):
        # an expiry needs a time at or after the contract's expiry: its own or the clock
        raise RejectReason("before_expiry", f"market {inst.name} expires at "
                           f"{inst.expiry_ms} ms")
    if ev.price > Decimal(10) ** 12:
        raise RejectReason("price_too_large", f"price {ev.price}")
    a = state.settle_asset[m]
    dec = state.asset_decimals[a]
    settle_price = Fraction(ev.price)
    if inst.is_option:
        # cash settlement against the index: the intrinsic value, in coin for
        # coin-settled options (exact fractions; rounding as for futures below)
        k = Fraction(inst.strike or 0)
        intrinsic = max(settle_price - k, Fraction(0)) if inst.option_kind == "call" else (
            max(k - settle_price, Fraction(0)))
        settle_price = intrinsic / settle_price if inst.coin_settled else intrinsic
    unit = Fraction(inst.lot_size) * Fraction(inst.contract_size) * settle_price
    unit *= 10**dec
    slots = sorted(book.holders[m].view().tolist())
    batch: list[Transfer] = []
    paid = received = 0
    settle = inst.settle
    for s in slots:
        lots = int(book.slot_lots[s])
        ledger_id = book.rows[int(book.slot_row[s])].ledger_id
        amount = unit * abs(lots)
        if lots > 0:  # a long closes: receives size x price
            q = div_round(amount.numerator, amount.denominator, "floor")
            received += q
            if q:
                batch.append(Transfer(CLEARING, ledger_id, settle, q, "expiry"))
        else:
            q = div_round(amount.numerator, amount.denominator, "ceil")
            paid += q
            if q:
                batch.extend(settlement_payment(state, ledger_id, settle, q, "expiry"))
    if paid - received:
        batch.append(Transfer(CLEARING, ROUNDING, settle, paid - received, "rounding"))
    if batch:
        state.post(batch)
    rows = sorted({int(book.slot_row[s]) for s in slots})
    for s in slots:
        r = int(book.slot_row[s])
        name = book.rows[r].name
        lots = int(book.slot_lots[s])
        value = div_round((unit * lots).numerator, (unit * lots).denominator, "down")
        state.realized[name] = state.realized.get(name, 0) + value - int(book.slot_cost[s])
        book.close_slot(s)
    if not inst.is_option:
        book.set_mark(m, ev.price)
    book.expired[m] = True
    book.set_oi(m, 0)
    for r in rows:
        state.sync_balance(r, a)
    out: list[OutEvent | OrderCancelled] = [
        settled_event(state, ev.id, "expiry", inst.name, settle, paid=paid,
                      received=received, decimals=dec)]
    rows_arr = np.array(rows, dtype=np.int64)
    out.extend(check_rows(state, rows_arr, ev.id))
    for r in rows:
        info = book.rows[r]
        if info.market == m:
            side = PositionChange(info.account, r, info.name, info.ledger_id, True, 0, 0, 0)
            out.extend(release_bucket(state, side, a, ev.id))
    for order in state.open_orders.in_market(m):  # nothing can fill them any more
        state.open_orders.remove(order.id)
        out.append(OrderCancelled(id=state.next_id(), event=ev.id, order=order.id,
                                  account=order.account, market=inst.name,
                                  side=order.side, size=str(order.lots * inst.lot_size),
                                  reason="market_expired"))
    return out
