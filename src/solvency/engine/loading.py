"""Direct loaders: import an existing book without events and without margin checks.

For portfolio files (``solvency margin``), simulated populations and benchmarks: they
change the state outside :meth:`~solvency.engine.engine.Engine.apply` (so they bump the
state epoch that views cache on) but move money exactly as the events would, through
balanced ledger batches, so every invariant still holds afterwards.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np

from solvency.core.ledger.ledger import CLEARING, EXTERNAL, ROUNDING, Transfer
from solvency.core.units import MAX_QUANTA, div_round
from solvency.engine.base import (
    EngineState,
    RejectReason,
    cross_ledger_id,
    isolated_row_name,
    on_grid,
)
from solvency.engine.fills import fill_side, open_interest_after

__all__ = ["STREET", "load_book", "seed_position", "transfer_isolated"]

STREET = "__street__"
"""Default counterparty of seeded positions (the rest of the market)."""


def seed_position(state: EngineState, account: str, market: str, size: Decimal,
                  entry_price: Decimal, *, counterparty: str = STREET) -> None:
    """Load an existing position at its entry price, skipping margin checks.

    For importing a book (portfolio files, simulated populations): the opposite side
    goes to ``counterparty`` so open interest stays balanced, and the entry value
    moves between the two exactly like a fill (payer rounded up, receiver down, the
    remainder to the rounding account). Raises :class:`RejectReason` on bad input.
    """
    # every check before the first change: a refused seed leaves the state as it was
    m, inst = state.resolve_market(market)
    state.require_account(account)
    if not size.is_finite():
        raise RejectReason("invalid_size", f"size {size}")
    if size == 0:
        raise RejectReason("invalid_size", "size must not be zero")
    lots = on_grid(abs(size), inst.lot_size, "size", "invalid_size")
    if not entry_price.is_finite() or entry_price <= 0:
        raise RejectReason("non_positive", f"entry_price {entry_price}")
    if counterparty == account:
        raise RejectReason("invalid_field", f"counterparty {counterparty!r} is the account "
                                            "itself: its position would cancel")
    a = state.settle_asset[m]
    dec = state.asset_decimals[a]
    value = (Fraction(lots) * Fraction(inst.lot_size) * Fraction(inst.contract_size)
             * 10**dec)
    value = value / Fraction(entry_price) if inst.is_inverse else value * Fraction(
        entry_price)
    pay = div_round(value.numerator, value.denominator, "ceil")
    get = div_round(value.numerator, value.denominator, "floor")
    if get <= 0:
        raise RejectReason("size_too_small", f"{size} at {entry_price} on {inst.name} is "
                                             f"worth less than one quantum of {inst.settle}")
    delta = lots if size > 0 else -lots
    after = [fill_side(state, account, m, inst.name, delta, 0).lots_after]
    if counterparty in state.accounts:
        after.append(fill_side(state, counterparty, m, inst.name, -delta, 0).lots_after)
    if pay > MAX_QUANTA or max(abs(x) for x in after) * value / lots > MAX_QUANTA:
        raise RejectReason("size_too_large", f"{size} at {entry_price} on {inst.name}: the "
                                             "position would exceed what the ledger holds")
    state.epoch += 1
    if counterparty not in state.accounts:
        state.accounts[counterparty] = "cross"
        state.ensure_cross_row(counterparty)
    buyer, seller = (account, counterparty) if size > 0 else (counterparty, account)
    b = fill_side(state, buyer, m, inst.name, lots, 0)
    sd = fill_side(state, seller, m, inst.name, -lots, 0)
    payer, receiver = (sd, b) if inst.is_inverse else (b, sd)
    for side in (b, sd):
        if side.row < 0:
            side.row = state.book.add_row(side.row_name, side.account,
                                          m if side.isolated else -1, side.ledger_id,
                                          not side.isolated)
    batch = [Transfer(payer.ledger_id, CLEARING, inst.settle, pay, "seed"),
             Transfer(CLEARING, receiver.ledger_id, inst.settle, get, "seed")]
    if pay != get:
        batch.append(Transfer(CLEARING, ROUNDING, inst.settle, pay - get, "rounding"))
    oi_after = open_interest_after(state, m, b, sd)
    state.post(batch)
    state.move_position(payer, m, pay)
    state.move_position(receiver, m, -get)
    for side in (b, sd):
        state.sync_balance(side.row, a)
    state.book.set_oi(m, oi_after)
    state.book.remargin_rows(np.array(sorted({b.row, sd.row}), dtype=np.int64))


def load_book(state: EngineState, accounts: list[str], asset: str,
              collateral_quanta: np.ndarray, pos_account: np.ndarray, pos_market: np.ndarray,
              pos_lots: np.ndarray, entry_ticks: np.ndarray, *,
              counterparty: str = STREET) -> None:
    """Bulk-load new cross accounts with collateral and linear positions (vectorized).

    For populations of many accounts (benchmarks, the stress lab). Positions are in
    linear markets settled in ``asset``, at entry prices on the tick grid, so every
    amount is exact: an account's balance is ``collateral - sum(lots x ticks x
    tick_value)`` and ``counterparty`` holds the opposite side. Margin is not checked.
    """
    state.epoch += 1
    book = state.book
    a = state.resolve_asset(asset)
    names = list(accounts)
    if len(set(names)) != len(names) or any(n in state.accounts for n in names):
        raise RejectReason("invalid_field", "accounts must be new and distinct")
    markets = np.unique(pos_market)
    tv = np.zeros(len(book.market_names), dtype=np.int64)
    for m in markets.tolist():
        inst = book.instruments[m]
        if inst.is_inverse or inst.settle != asset:
            raise RejectReason("invalid_field", f"{inst.name} is not linear in {asset}")
        tv[m] = inst.tick_value_quanta(state.asset_decimals[a])
    if (entry_ticks <= 0).any() or (pos_lots == 0).any():
        raise RejectReason("invalid_size", "entries must be > 0 and sizes non-zero")
    cost = pos_lots.astype(np.int64) * entry_ticks.astype(np.int64) * tv[pos_market]
    net_cost = np.zeros(len(names), dtype=np.int64)
    np.add.at(net_cost, pos_account, cost)
    if counterparty not in state.accounts:
        state.accounts[counterparty] = "cross"
        state.ensure_cross_row(counterparty)
    street = book.row_index[counterparty]
    batch: list[Transfer] = []
    for name, q, c in zip(names, collateral_quanta.tolist(), net_cost.tolist(),
                          strict=True):
        lid = cross_ledger_id(name)
        if q > 0:
            batch.append(Transfer(EXTERNAL, lid, asset, int(q), "deposit"))
        if c > 0:
            batch.append(Transfer(lid, cross_ledger_id(counterparty), asset, c, "seed"))
        elif c < 0:
            batch.append(Transfer(cross_ledger_id(counterparty), lid, asset, -c, "seed"))
    state.post(batch)
    rows = book.bulk_add(names, True, pos_account.astype(np.int64),
                         pos_market.astype(np.int64), pos_lots.astype(np.int64),
                         cost.astype(np.int64))
    for name in names:
        state.accounts[name] = "cross"
    led = state.ledger
    book.row_int[rows, a] = np.array([led.balance(cross_ledger_id(n), asset)
                                      for n in names], dtype=np.int64)
    if book.tracked[a]:
        book.asset_holders[a].extend(rows)
    # the counterparty takes the other side of every market
    for m in markets.tolist():
        sel = pos_market == m
        lots = -int(pos_lots[sel].sum())
        mcost = -int(cost[sel].sum())
        s = book.slot_of(street, m)
        if s < 0:
            s = book.open_slot(street, m)
        old = int(book.slot_lots[s])
        book.slot_lots[s] = old + lots
        book.slot_cost[s] = int(book.slot_cost[s]) + mcost
        if book.slot_lots[s] == 0:
            book.close_slot(s)
        longs = int(pos_lots[sel & (pos_lots > 0)].sum()) + max(old + lots, 0) - max(old, 0)
        book.set_oi(m, book.oi_lots[m] + longs)
    state.sync_balance(street, a)
    book.remargin_all()


def transfer_isolated(state: EngineState, account: str, market: str,
                      amount: Decimal) -> None:
    """Move collateral from an account into an isolated bucket without margin checks."""
    state.epoch += 1
    m, inst = state.resolve_market(market)
    book = state.book
    r = book.row_index.get(isolated_row_name(account, inst.name), -1)
    if r < 0:
        raise RejectReason("no_isolated_position", f"{account} has no bucket in {market}")
    a = state.settle_asset[m]
    q = state.amount_quanta(amount, a, "margin")
    if q <= 0:
        raise RejectReason("non_positive", f"margin {amount}")
    state.post([Transfer(cross_ledger_id(account), book.rows[r].ledger_id, inst.settle,
                         q, "isolated_margin")])
    state.sync_balance(r, a)
    state.sync_balance(book.row_index[account], a)
