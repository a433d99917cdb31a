"""Funding: periodic payments between a perpetual's longs and shorts.

A ``funding`` event carries the market and the rate; the engine computes each holder's
payment exactly at the current mark and posts it through the clearing account, then
values the holders' rows (margin calls, liquidations). :func:`settlement_payment` is
shared with expiry: what a position owes, paid into clearing, where the insurance fund's
own positions pay what the fund holds and the rest is recorded as bad debt.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from solvency.core.ledger.ledger import CLEARING, INSURANCE, ROUNDING, Transfer
from solvency.core.model.events import Funding, OutEvent, Settled
from solvency.core.units import MAX_QUANTA, div_round, format_quanta
from solvency.engine.base import EngineState, RejectReason
from solvency.engine.liquidation import BAD_DEBT
from solvency.engine.valuation import check_rows

__all__ = ["apply_funding", "settled_event", "settlement_payment"]


def apply_funding(state: EngineState, ev: Funding) -> list[OutEvent]:
    """Settle one funding payment of a perpetual between its longs and shorts.

    Per position: ``lots x lot_size x contract_size x mark x rate`` (inverse: ``/ mark``),
    exact; payers rounded up, receivers down, the difference to the rounding account.
    """
    book = state.book
    m, inst = state.resolve_market(ev.market)
    if not inst.is_perpetual:
        raise RejectReason("not_perpetual", f"market {inst.name} has no funding")
    mark = book.marks[m]
    if mark is None:
        raise RejectReason("no_mark", f"market {inst.name} has no mark price yet")
    a = state.settle_asset[m]
    dec = state.asset_decimals[a]
    # payment per lot, exact: linear lot x cv x mark x rate; inverse lot x cv / mark x rate
    unit = Fraction(inst.lot_size) * Fraction(inst.contract_size) * Fraction(ev.rate)
    unit = unit / Fraction(mark) if inst.is_inverse else unit * Fraction(mark)
    unit *= 10**dec
    slots = sorted(book.holders[m].view().tolist())
    payers: list[tuple[int, int]] = []
    receivers: list[tuple[int, int]] = []
    for s in slots:
        amount = unit * int(book.slot_lots[s])  # > 0: this position pays
        if amount > 0:
            payers.append((s, div_round(amount.numerator, amount.denominator, "ceil")))
        elif amount < 0:
            receivers.append((s, div_round(-amount.numerator, amount.denominator, "floor")))
    paid = sum(q for _, q in payers)
    received = sum(q for _, q in receivers)
    if max(paid, received) > MAX_QUANTA:
        # bounded before anything is posted: the ledger never refuses a validated batch
        raise RejectReason("amount_too_large",
                           f"funding of {format_quanta(max(paid, received), dec)} "
                           f"{inst.settle} at rate {ev.rate}")
    batch: list[Transfer] = []
    settle = inst.settle
    for s, q in payers:
        if q:
            batch.extend(settlement_payment(state, book.rows[int(book.slot_row[s])].ledger_id,
                                            settle, q, "funding"))
    for s, q in receivers:
        if q:
            batch.append(Transfer(CLEARING, book.rows[int(book.slot_row[s])].ledger_id,
                                  settle, q, "funding"))
    if paid - received:
        batch.append(Transfer(CLEARING, ROUNDING, settle, paid - received, "rounding"))
    if batch:
        state.post(batch)
    rows = np.unique(book.slot_row[np.array(slots, dtype=np.int64)]) if slots else (
        np.zeros(0, dtype=np.int64))
    for r in rows.tolist():
        state.sync_balance(r, a)
    out: list[OutEvent] = [settled_event(state, ev.id, "funding", inst.name, settle,
                                         paid=paid, received=received, decimals=dec)]
    out.extend(check_rows(state, rows, ev.id))
    return out


def settlement_payment(state: EngineState, ledger_id: str, asset: str, amount: int,
                       code: str) -> list[Transfer]:
    """Transfers of a settlement payment into the clearing account. The insurance
    fund pays what it holds of a loss on positions it took over; the rest is the
    venue's recorded bad debt (the fund never goes negative)."""
    if ledger_id != INSURANCE:
        return [Transfer(ledger_id, CLEARING, asset, amount, code)]
    # the fund's whole balance decides what is bad debt (an account shard decides this
    # event over the gathered venue: service/shards.py)
    state.liquidator.venue_wide = state.liquidator.venue_wide or "the fund paying funding"
    have = max(state.ledger.balance(INSURANCE, asset), 0)
    out = []
    if min(have, amount):
        out.append(Transfer(INSURANCE, CLEARING, asset, min(have, amount), code))
    if amount > have:
        out.append(Transfer(BAD_DEBT, CLEARING, asset, amount - have, "bad_debt"))
    return out


def settled_event(state: EngineState, cause: str, kind: str, market: str, asset: str, *,
                  paid: int, received: int, decimals: int) -> Settled:
    """The ``settled`` out-event of a funding or expiry settlement: what payers paid,
    what receivers got, and the difference that went to the rounding account."""
    return Settled(id=state.next_id(), event=cause, kind=kind, market=market, asset=asset,
                   paid=format_quanta(paid, decimals), received=format_quanta(received, decimals),
                   rounding=format_quanta(paid - received, decimals))
