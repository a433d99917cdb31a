"""Fills: a trade between two accounts, checked for margin and settled exactly.

Accounting follows dYdX v4: a fill moves ``size x price`` of the settlement asset from
buyer to seller (inverse markets: the coin value, payer rounded up and receiver down, the
remainder to the rounding account), fees go to the fee pool and the insurance fund's
share to the fund, and each side's position and cost basis move; realized PnL is reported
from the cost basis, never posted. A side whose risk grows must hold initial margin after
the fill (an isolated side tops its bucket up from its cross balance).

This is the hot path (tens of thousands of fills a second): the checks and the commit are
inlined in :func:`apply_fill`, the few helpers are plain functions, and the valuation
reuses the engine's scratch buffers.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Final

import numpy as np

from solvency.core.ledger.ledger import CLEARING, FEES, INSURANCE, ROUNDING, Transfer
from solvency.core.margin.kernels import OUT_COLLATERAL, OUT_IM, S_LOTS
from solvency.core.model.events import Fill, OutEvent
from solvency.core.units import MAX_QUANTA, PPM, div_round
from solvency.engine.accounts import release_bucket
from solvency.engine.base import (
    EngineState,
    RejectReason,
    cross_ledger_id,
    isolated_row_name,
    on_grid,
)
from solvency.engine.context import PositionChange
from solvency.engine.insurance import review_fee_share
from solvency.engine.liquidation import INSURANCE_ROW
from solvency.engine.valuation import revalue_fill

__all__ = ["SHARD_CLEARING", "apply_fill", "fill_side", "open_interest_after", "risk_grows"]


SHARD_CLEARING: Final = "__shard_clearing__"
"""An account shard's counterparty of the legs of fills across shards
(service/shards.py). A reduce-only market does not refuse its side: one engine checks
only the two traders' sides, and each shard checks its trader's."""

def fill_side(state: EngineState, account: str, m: int, market: str, delta_lots: int,
              fee_quanta: int) -> PositionChange:
    """One side of a trade: the account's row in market ``m`` (its isolated bucket in
    isolated mode) and its position before and after ``delta_lots``."""
    mode = state.accounts.get(account)
    if mode is None:
        raise RejectReason("unknown_account", f"account {account!r} has no deposit")
    book = state.book
    if mode == "isolated":
        name = isolated_row_name(account, market)
        isolated = True
    else:
        name = account
        isolated = False
    r = book.row_index.get(name, -1)
    if r < 0:
        return PositionChange(account, r, name, "u:" + name, isolated, 0, delta_lots,
                              fee_quanta, -1)
    s = book.pos_slot.get(r * book.n_markets + m, -1)
    old = book.st.item(s, S_LOTS) if s >= 0 else 0
    return PositionChange(account, r, name, "u:" + name, isolated, old, old + delta_lots,
                          fee_quanta, s)


def apply_fill(state: EngineState, ev: Fill, *, check_only: bool = False) -> list[OutEvent]:
    """Apply a fill: validate, check margin of the sides whose risk grows, post, move.

    ``check_only``: stop after the checks (raise :class:`RejectReason` or return ``[]``)
    with nothing changed: a sharded venue asks both shards before either books its leg."""
    book = state.book
    m = state.market_by_name.get(ev.market, -1)
    if m < 0:
        m, _ = state.resolve_market(ev.market)
    inst = book.instruments[m]
    if book.expired[m] or (inst.expiry_ms is not None and state.clock_ms is not None
                           and state.clock_ms >= inst.expiry_ms):
        raise RejectReason("market_expired", f"market {inst.name} has expired")
    buyer_name, seller_name = ev.buyer, ev.seller
    if buyer_name == seller_name:
        raise RejectReason("self_trade", f"buyer and seller are both {buyer_name!r}")
    if INSURANCE_ROW in (buyer_name, seller_name):
        # the fund trades only through the waterfall: its money is sys:insurance, and a
        # fill would move it through a phantom u:__insurance__ account instead
        # (__market__ and __backstop__ may trade: the stress lab's book and arbitrageur)
        raise RejectReason("system_account", f"{INSURANCE_ROW} is run by the engine")
    market = inst.name
    mode = state.feeds.mode(market) if state.feeds.used else "normal"
    if mode == "halted":
        raise RejectReason("market_halted", f"market {market} is halted")
    a = state.settle_asset[m]
    if book.marks[m] is None or math.isnan(book.asset_price.item(a)):
        raise RejectReason("no_mark", f"market {market} has no mark price yet")
    lots = on_grid(ev.size, inst.lot_size, "size", "invalid_size")
    ticks = on_grid(ev.price, inst.tick_size, "price", "price_off_tick")
    fee_b = state.amount_quanta(ev.fee_buyer, a, "fee_buyer") if ev.fee_buyer else 0
    fee_s = state.amount_quanta(ev.fee_seller, a, "fee_seller") if ev.fee_seller else 0
    buyer = fill_side(state, buyer_name, m, market, lots, fee_b)
    seller = fill_side(state, seller_name, m, market, -lots, fee_s)
    settle = inst.settle
    tv = state.tick_value_quanta[m]
    # --- money of the trade, exact
    if tv == 0 and inst.is_inverse:
        inverse = True
        dec = state.asset_decimals[a]
        coin = Fraction(lots) * Fraction(inst.lot_size) * Fraction(inst.contract_size) / (
            Fraction(ev.price)) * 10**dec
        pay = div_round(coin.numerator, coin.denominator, "ceil")
        get = div_round(coin.numerator, coin.denominator, "floor")
        # inverse long receives coin: seller pays (rounded up), buyer gets (rounded down)
        flow_b, flow_s = get, -pay
        cost_b, cost_s = -get, pay
        per_lot = tv or 1
    else:
        inverse = False
        pay = get = lots * ticks * tv
        flow_b, flow_s = -pay, pay
        cost_b, cost_s = pay, -pay
        per_lot = ticks * (tv or 1)
    if get <= 0:
        # an inverse trade's coin value (rounded down) or a linear one's below one
        # quantum of the settlement asset: nothing to post to the receiving side
        raise RejectReason("size_too_small", f"{ev.size} at {ev.price} on {market} is "
                           f"worth less than one quantum of {settle}")
    b_before, b_after = buyer.lots_before, buyer.lots_after
    s_before, s_after = seller.lots_before, seller.lots_after
    if (pay > MAX_QUANTA or abs(b_after) * per_lot > MAX_QUANTA
            or abs(s_after) * per_lot > MAX_QUANTA):
        big = buyer if pay > MAX_QUANTA or abs(b_after) * per_lot > MAX_QUANTA \
            else seller
        raise RejectReason("size_too_large", f"position of {big.account} too large")
    oi_after = book.oi_lots[m]
    if b_after > 0:
        oi_after += b_after
    if b_before > 0:
        oi_after -= b_before
    if s_after > 0:
        oi_after += s_after
    if s_before > 0:
        oi_after -= s_before
    # --- margin: a side whose risk grows must hold initial margin after the fill
    # (risk_grows, inlined: the buyer is checked first, then the seller)
    iso_topups: dict[str, int] = {}
    if abs(b_after) > abs(b_before) or (b_before != 0 and b_after != 0
                                        and (b_before > 0) != (b_after > 0)):
        if mode == "reduce_only" and not (buyer_name == SHARD_CLEARING and state.shard):
            raise _reduce_only(market, buyer)
        _check_side_margin(state, buyer, m, a, flow_b - fee_b, oi_after, iso_topups)
    if abs(s_after) > abs(s_before) or (s_before != 0 and s_after != 0
                                        and (s_before > 0) != (s_after > 0)):
        if mode == "reduce_only" and not (seller_name == SHARD_CLEARING and state.shard):
            raise _reduce_only(market, seller)
        _check_side_margin(state, seller, m, a, flow_s - fee_s, oi_after, iso_topups)
    if check_only:
        return []
    # --- commit
    for side in (buyer, seller):
        if side.row < 0:
            side.row = book.add_row(side.row_name, side.account, m if side.isolated else -1,
                                    side.ledger_id, not side.isolated)
    batch: list[Transfer] = []
    if iso_topups:
        for side in (buyer, seller):
            top = iso_topups.get(side.ledger_id, 0)
            if top:
                batch.append(Transfer(cross_ledger_id(side.account), side.ledger_id,
                                      settle, top, "isolated_margin"))
    if inverse:
        batch.append(Transfer(seller.ledger_id, CLEARING, settle, pay, "fill"))
        batch.append(Transfer(CLEARING, buyer.ledger_id, settle, get, "fill"))
        if pay != get:
            batch.append(Transfer(CLEARING, ROUNDING, settle, pay - get, "rounding"))
    else:
        batch.append(Transfer(buyer.ledger_id, seller.ledger_id, settle, pay, "fill"))
    share = state.fee_share_ppm
    for side in (buyer, seller):
        fee = side.fee_quanta
        if fee > 0:
            # the insurance fund's share of fees, rounded down (the rest to the pool)
            to_fund = fee * share // PPM if share else 0
            if to_fund:
                batch.append(Transfer(side.ledger_id, INSURANCE, settle, to_fund,
                                      "fee_insurance"))
            if fee - to_fund:
                batch.append(Transfer(side.ledger_id, FEES, settle, fee - to_fund, "fee"))
        elif fee < 0:
            batch.append(Transfer(FEES, side.ledger_id, settle, -fee, "rebate"))
    state.post(batch)
    ledger = state.ledger
    traded = state.fill_traded_slots
    traded.clear()
    for side, cost in ((buyer, cost_b), (seller, cost_s)):
        s = state.move_position(side, m, cost)
        if s >= 0:
            traded.append(s)
        book.set_balance(side.row, a, ledger.balance(side.ledger_id, settle))
    br, sr = buyer.row, seller.row
    if iso_topups:
        touched = {br, sr}
        for side in (buyer, seller):
            if side.isolated and side.ledger_id in iso_topups:
                cross = book.row_index[side.account]
                state.sync_balance(cross, a)
                touched.add(cross)
        uniq = sorted(touched)
        rows = state.fill_rows[: len(uniq)]
        rows[:] = uniq
    else:
        rows = state.fill_two_rows
        rows[0], rows[1] = (br, sr) if br < sr else (sr, br)
    book.set_oi(m, oi_after)
    out = revalue_fill(state, traded, rows, ev.id)
    for side in (buyer, seller):
        if side.isolated and side.lots_after == 0:
            out.extend(release_bucket(state, side, a, ev.id))
    if state.fee_policy is not None:
        out.extend(review_fee_share(state, settle, ev.id))
    return out


def open_interest_after(state: EngineState, m: int, buyer: PositionChange,
                        seller: PositionChange) -> int:
    """One side's open interest of market ``m`` (lots) once both sides have traded."""
    oi = state.book.oi_lots[m]
    for side in (buyer, seller):
        oi += max(side.lots_after, 0) - max(side.lots_before, 0)
    return oi


def risk_grows(lots_before: int, lots_after: int) -> bool:
    """Whether a position grows or flips side (then initial margin applies)."""
    return abs(lots_after) > abs(lots_before) or (
        lots_before != 0 and lots_after != 0 and (lots_before > 0) != (lots_after > 0))


def _reduce_only(market: str, side: PositionChange) -> RejectReason:
    return RejectReason("market_reduce_only", f"market {market} is reduce-only: "
                        f"{side.account} would grow a position")


def _check_side_margin(state: EngineState, side: PositionChange, m: int, a: int, dq: int,
                       oi_after: int, iso_topups: dict[str, int]) -> None:
    """Reject a side below initial margin after the fill; an isolated side's shortfall
    becomes a top-up from its cross balance (rounded up), itself checked."""
    book = state.book
    delta = side.lots_after - side.lots_before
    after = state.whatif(side.row, not side.isolated, m, delta, oi_after, a, dq,
                         trade_cost_quanta=-(dq + side.fee_quanta))
    im_after = float(after[OUT_IM])
    if state.n_pm_rows and side.row >= 0 and not np.isnan(book.pm[side.row, 0]):
        # portfolio margin: the grid's initial margin with the trade included
        im_after = float(state.pm_requirements(
            np.array([side.row], dtype=np.int64), extra=(m, delta))[0][0])
    free = after[OUT_COLLATERAL] - im_after
    if not side.isolated:
        if not free >= 0.0:
            # the requirement that decided, the grid's for a portfolio-margined row
            raise RejectReason(
                "insufficient_initial_margin",
                f"{side.account}: collateral {after[OUT_COLLATERAL]:.2f} USD after the "
                f"fill is below initial margin {im_after:.2f} USD")
        return
    # isolated: top the bucket up from the account's cross balance, rounded up
    px = float(book.asset_price[a])
    short_settle = max(0.0, -free) / px
    top = int(np.ceil(short_settle * 10 ** state.asset_decimals[a])) + (1 if free < 0 else 0)
    if top <= 0:
        return
    cross = book.row_index.get(side.account, -1)
    have = state.wallet_quanta(cross, a) if cross >= 0 else 0
    if cross < 0 or have < top:
        raise RejectReason("insufficient_initial_margin",
                           f"{side.account}: isolated margin needs {top} quanta of "
                           f"{book.asset_names[a]}, the account holds {have}")
    cross_after = state.whatif(cross, True, -1, 0, 0, a, -top)
    if not cross_after[OUT_COLLATERAL] - cross_after[OUT_IM] >= 0.0:
        raise RejectReason("insufficient_initial_margin",
                           f"{side.account}: moving isolated margin would leave the "
                           "cross account below initial margin")
    iso_topups[side.ledger_id] = top
