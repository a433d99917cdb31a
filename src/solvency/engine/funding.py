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
from solvency.core.margin.kernels import S_LOTS, S_ROW
from solvency.core.model.events import Funding, OutEvent, Settled
from solvency.core.typing import Int64Array1D
from solvency.core.units import MAX_QUANTA, div_round, format_quanta
from solvency.engine.base import EngineState, RejectReason
from solvency.engine.liquidation import BAD_DEBT
from solvency.engine.valuation import check_rows

__all__ = ["apply_funding", "funding_quanta", "funding_quanta_reference", "settled_event",
           "settlement_payment"]

_INT64_SAFE = 1 << 62  # products and quotients below this stay exact in int64


def funding_quanta(lots: Int64Array1D, num: int, den: int
                   ) -> tuple[Int64Array1D, Int64Array1D]:
    """Each position's funding payment in quanta, for a payment per lot of ``num / den``
    quanta (``den > 0``; its sign says who pays): ``(paid, received)``, ``paid[i] =
    ceil(num x lots[i] / den)`` where that is positive (the position pays, rounded up)
    and ``received[i] = floor(-num x lots[i] / den)`` where it is negative (the position
    receives, rounded down), 0 elsewhere.

    Exact: in int64 when ``|num| x max |lots|`` and ``den`` stay below 2**62, else in
    Python integers (:func:`funding_quanta_reference`, the plain twin a test holds it to).
    """
    top = int(np.abs(lots).max()) if lots.shape[0] else 0
    if abs(num) * top >= _INT64_SAFE or den >= _INT64_SAFE:
        return funding_quanta_reference(lots, num, den)
    prod = lots * np.int64(num)
    d = np.int64(den)
    paid = np.where(prod > 0, -((-prod) // d), 0)
    received = np.where(prod < 0, (-prod) // d, 0)
    return paid.astype(np.int64), received.astype(np.int64)


def funding_quanta_reference(lots: Int64Array1D, num: int, den: int
                             ) -> tuple[Int64Array1D, Int64Array1D]:
    """Plain twin of :func:`funding_quanta`: one position at a time, as exact fractions
    rounded by :func:`~solvency.core.units.div_round` (payers up, receivers down)."""
    unit = Fraction(num, den)
    paid: list[int] = []
    received: list[int] = []
    for n in lots.tolist():
        amount = unit * n
        paid.append(div_round(amount.numerator, amount.denominator, "ceil")
                    if amount > 0 else 0)
        received.append(div_round(-amount.numerator, amount.denominator, "floor")
                        if amount < 0 else 0)
    return (np.array(paid, dtype=object if max(paid, default=0) >= _INT64_SAFE else np.int64),
            np.array(received,
                     dtype=object if max(received, default=0) >= _INT64_SAFE else np.int64))


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
    # slot order, as the payments have always been posted (the ledger's batch order)
    slots = np.sort(book.holders[m].view())
    pay, get = funding_quanta(book.st[slots, S_LOTS], unit.numerator, unit.denominator)
    payer = pay > 0
    receiver = get > 0
    pay_q = pay[payer].tolist()
    get_q = get[receiver].tolist()
    paid = sum(pay_q)
    received = sum(get_q)
    if max(paid, received) > MAX_QUANTA:
        # bounded before anything is posted: the ledger never refuses a validated batch
        raise RejectReason("amount_too_large",
                           f"funding of {format_quanta(max(paid, received), dec)} "
                           f"{inst.settle} at rate {ev.rate}")
    batch: list[Transfer] = []
    settle = inst.settle
    info = book.rows
    slot_rows = book.st[slots, S_ROW]
    for r, q in zip(slot_rows[payer].tolist(), pay_q, strict=True):
        lid = info[r].ledger_id
        if lid == INSURANCE:
            batch.extend(settlement_payment(state, lid, settle, q, "funding"))
        else:
            batch.append(Transfer(lid, CLEARING, settle, q, "funding"))
    batch.extend([Transfer(CLEARING, info[r].ledger_id, settle, q, "funding")
                  for r, q in zip(slot_rows[receiver].tolist(), get_q, strict=True)])
    if paid - received:
        batch.append(Transfer(CLEARING, ROUNDING, settle, paid - received, "rounding"))
    if batch:
        state.post(batch)
    rows = np.unique(slot_rows)
    if book.tracked[a]:
        for r in rows.tolist():
            state.sync_balance(r, a)
    else:
        # sync_balance of every holder's row at once (an untracked asset indexes no holders)
        balances = state.ledger.balances()
        name = book.asset_names[a]
        book.row_int[rows, a] = [balances.get((info[r].ledger_id, name), 0)
                                 for r in rows.tolist()]
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
