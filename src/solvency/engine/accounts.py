"""Accounts: deposits and withdrawals, margin modes, isolated buckets.

An account has a cross row (``u:<account>`` in the ledger) and, in ``isolated`` mode, one
bucket row per market (``<account>/<market>``) holding that position's margin. A
``portfolio`` account's cross row is margined on the scenario grid
(``portfolio_margin.py``). Handlers validate first and change the state after; each ends
by valuing the rows it touched (``valuation.check_rows``).
"""

from __future__ import annotations

import numpy as np

from solvency.core.ledger.ledger import EXTERNAL, Transfer
from solvency.core.margin.kernels import OUT_COLLATERAL, OUT_IM
from solvency.core.model.events import (
    AccountMode,
    Deposit,
    IsolatedMargin,
    OutEvent,
    Withdraw,
)
from solvency.core.units import MAX_QUANTA, format_quanta, from_quanta
from solvency.engine.base import (
    EngineState,
    RejectReason,
    cross_ledger_id,
    isolated_row_name,
)
from solvency.engine.context import PositionChange
from solvency.engine.liquidation import SYSTEM_ROWS
from solvency.engine.valuation import check_rows

__all__ = [
    "apply_account_mode",
    "apply_deposit",
    "apply_isolated_margin",
    "apply_withdraw",
    "release_bucket",
    "set_portfolio",
]


def apply_deposit(state: EngineState, ev: Deposit) -> list[OutEvent]:
    """Credit an account (created on its first deposit), the fund or the backstop vault."""
    a = state.resolve_asset(ev.asset)
    q = state.amount_quanta(ev.amount, a, "amount")
    if np.isnan(state.book.asset_price[a]) and (a in state.collateral.rules
                                                 or _has_positions(state, ev.account)):
        # an asset valued by rule before its sources report, or a coin priced by a market
        # with no mark yet into an account with positions: its collateral would be NaN,
        # never below maintenance. (An account without positions may hold a coin before
        # its mark: a fill needs its collateral, which a NaN never covers.)
        raise RejectReason("no_price", f"{ev.asset} has no price yet")
    if state.ledger.balance(state.ledger_id_of(ev.account), ev.asset) + q > MAX_QUANTA:
        # the book mirrors balances in int64: bound them before anything is created
        raise RejectReason("balance_too_large",
                           f"{ev.account}'s {ev.asset} balance would exceed "
                           f"{format_quanta(MAX_QUANTA, state.asset_decimals[a])}")
    if ev.account in SYSTEM_ROWS:
        # capitalising the insurance fund or the backstop vault
        r = state.system_row(ev.account)
    else:
        r = state.ensure_cross_row(ev.account)
    state.accounts.setdefault(ev.account, "cross")
    # the fund's deposits are cash (sys:insurance), not its row's position account
    state.post([Transfer(EXTERNAL, state.ledger_id_of(ev.account), ev.asset, q, "deposit")])
    state.sync_balance(r, a)
    return check_rows(state, np.array([r], dtype=np.int64), ev.id)


def _has_positions(state: EngineState, account: str) -> bool:
    r = state.book.row_index.get(account, -1)
    return r >= 0 and bool(state.book.row_nslots[r] > 0)


def apply_withdraw(state: EngineState, ev: Withdraw) -> list[OutEvent]:
    """Pay out of an account's cross balance if what stays covers initial margin."""
    book = state.book
    a = state.resolve_asset(ev.asset)
    state.require_user_account(ev.account)
    q = state.amount_quanta(ev.amount, a, "amount")
    r = book.row_index[ev.account]
    have = state.wallet_quanta(r, a)
    if have < q:
        raise RejectReason("insufficient_balance",
                           f"{ev.account} holds "
                           f"{from_quanta(have, state.asset_decimals[a])} "
                           f"{ev.asset}, asked {ev.amount}")
    if book.row_nslots[r] > 0 or state.has_negative_balance(r):
        book.refresh(np.array(book.row_slots(r), dtype=np.int64))
        after = state.whatif(r, True, -1, 0, 0, a, -q)
        im_after = after[OUT_IM]
        if not np.isnan(book.pm[r, 0]):
            im_after = state.pm_requirements(np.array([r], dtype=np.int64))[0][0]
        if not after[OUT_COLLATERAL] - im_after >= 0.0:
            raise RejectReason(
                "insufficient_initial_margin",
                f"withdrawal would leave collateral {after[OUT_COLLATERAL]:.2f} USD "
                f"below initial margin {im_after:.2f} USD")
    state.post([Transfer(cross_ledger_id(ev.account), EXTERNAL, ev.asset, q, "withdraw")])
    state.sync_balance(r, a)
    return check_rows(state, np.array([r], dtype=np.int64), ev.id)


def apply_account_mode(state: EngineState, ev: AccountMode) -> list[OutEvent]:
    """Set an account's margin mode (only while it holds no position)."""
    if ev.account.startswith("__"):
        raise RejectReason("system_account", f"{ev.account} is run by the engine")
    current = state.accounts.get(ev.account)
    if current is not None and current != ev.mode and _has_open_positions(state,
                                                                           ev.account):
        raise RejectReason("open_positions",
                           f"{ev.account} has open positions; close them to change mode")
    if ev.mode == "portfolio" and state.portfolio_margin.grid is None:
        raise RejectReason("no_portfolio_grid",
                           "this engine has no scenario grid for portfolio margin")
    state.accounts[ev.account] = ev.mode
    r = state.ensure_cross_row(ev.account)
    set_portfolio(state, r, ev.mode == "portfolio")
    return []


def set_portfolio(state: EngineState, r: int, on: bool) -> None:
    """Switch row ``r`` in or out of portfolio margin (``Book.pm``: 0 or NaN)."""
    book = state.book
    was = not np.isnan(book.pm[r, 0])
    book.pm[r] = 0.0 if on else np.nan
    book.row_int[r, 4 * len(book.asset_names) + 1] = 1 if on else 0
    state.n_pm_rows += int(on) - int(was)


def _has_open_positions(state: EngineState, account: str) -> bool:
    return any(state.book.row_nslots[r] > 0 for r in state.rows_of(account))


def apply_isolated_margin(state: EngineState, ev: IsolatedMargin) -> list[OutEvent]:
    """Move margin between an account's cross balance and one of its isolated buckets
    (``amount`` > 0: into the bucket), if the source keeps its initial margin."""
    book = state.book
    state.require_user_account(ev.account)
    m, inst = state.resolve_market(ev.market)
    r = book.row_index.get(isolated_row_name(ev.account, inst.name), -1)
    if r < 0 or book.slot_of(r, m) < 0:
        raise RejectReason("no_isolated_position",
                           f"{ev.account} has no isolated position in {inst.name}")
    a = state.settle_asset[m]
    q = state.amount_quanta(abs(ev.amount), a, "amount")
    cross = book.row_index[ev.account]
    src, dst = (cross, r) if ev.amount > 0 else (r, cross)
    src_id = book.rows[src].ledger_id
    have = state.wallet_quanta(src, a)
    if have < q:
        raise RejectReason("insufficient_balance",
                           f"{src_id} holds "
                           f"{format_quanta(have, state.asset_decimals[a])} "
                           f"{inst.settle}")
    book.refresh(np.array(book.row_slots(src), dtype=np.int64))
    after = state.whatif(src, src == cross, -1, 0, 0, a, -q)
    if not after[OUT_COLLATERAL] - after[OUT_IM] >= 0.0:
        raise RejectReason("insufficient_initial_margin",
                           "moving the margin would leave the source below initial margin")
    state.post([Transfer(src_id, book.rows[dst].ledger_id, inst.settle, q,
                         "isolated_margin")])
    state.sync_balance(src, a)
    state.sync_balance(dst, a)
    return check_rows(state, np.array(sorted((src, dst)), dtype=np.int64), ev.id)


def release_bucket(state: EngineState, side: PositionChange, a: int,
                   cause: str) -> list[OutEvent]:
    """Return an emptied isolated bucket's margin to the account's cross balance."""
    asset = state.book.asset_names[a]
    left = state.ledger.balance(side.ledger_id, asset)
    if left <= 0:
        return []
    state.post([Transfer(side.ledger_id, cross_ledger_id(side.account), asset, left,
                         "isolated_release")])
    state.sync_balance(side.row, a)
    cross = state.book.row_index[side.account]
    state.sync_balance(cross, a)
    return check_rows(state, np.array([cross, side.row], dtype=np.int64), cause)
