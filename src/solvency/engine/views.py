"""Read-only views of the engine's state, for the CLI, the stress lab and the service.

None of these changes the exact state: they re-mark and value rows (float estimates the
book re-derives anyway) and answer with plain JSON-able data.

* :func:`account_view` - one account: equity per asset, margin, each position with its
  liquidation price, the probability of reaching it and its ADL rank;
* :func:`accounts_overview` - per-account totals of every account, vectorized;
* :func:`greeks_exposure` - delta, gamma, vega and theta per account and underlying;
* :func:`open_interest` - one side's open interest per market;
* :func:`signed_size_sums` - per market, the sum of signed lots (0: every trade has two
  sides; ``Engine.verify`` checks it).
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np

from solvency.core.margin.kernels import (
    OUT_COLLATERAL,
    OUT_EQUITY,
    OUT_IM,
    OUT_MM,
    S_COST,
    S_IM,
    S_LOTS,
    S_MARKET,
    S_MM,
    S_VALUE,
)
from solvency.core.options import black76_greeks
from solvency.core.options.exposure import greeks_exposure as core_greeks_exposure
from solvency.core.volatility import liquidation_probability_driftless
from solvency.engine.base import MS_PER_YEAR, EngineState, format_number
from solvency.engine.liquidation import adl_rank_in
from solvency.engine.marks import volatility

__all__ = [
    "account_view",
    "accounts_overview",
    "adl_rank_of",
    "adl_rank_table_of",
    "greeks_exposure",
    "open_interest",
    "signed_size_sums",
]


def account_view(state: EngineState, account: str, *, horizon_days: float = 1.0) -> dict[str, Any]:
    """Margin, equity and positions of an account (all its rows).

    Each position carries its liquidation price and the probability that the mark
    reaches it within ``horizon_days`` under the market's EWMA volatility (first
    passage of a driftless log-price Brownian motion), both computed for all of the
    account's positions in one kernel call. The account's rows come from the book's
    account index: the cost is in the account's own rows and positions, not the
    book's size, except for each position's ADL rank, which depends on every holder of
    its market: :func:`adl_rank_of` computes a market's ranks once per state change
    (vectorized over its holders) and answers from that table until the next one.

    Written for a few rows and positions (issue 26: under 50 us): one gather of the
    account's slot and row records into Python lists, one call of each kernel, and no
    numpy operation per position.
    """
    rows = state.rows_of(account)
    if not rows:
        raise KeyError(account)
    book = state.book
    arr = np.array(rows, dtype=np.int64)
    row_of_slot: list[int] = []
    slot_list: list[int] = []
    for r in rows:
        slots = book.row_slots(r)
        row_of_slot.extend([r] * len(slots))
        slot_list.extend(slots)
    slot_arr = np.array(slot_list, dtype=np.int64)
    if slot_list:
        book.refresh(slot_arr)
    pm = book.pm
    pm_rows = [r for r in rows if not math.isnan(pm[r, 0])]
    if pm_rows:
        state.refresh_pm(np.array(pm_rows, dtype=np.int64))
    out = book.aggregate(arr)
    positions = _position_views(state, row_of_slot, slot_list, slot_arr, horizon_days)
    n_a = len(book.asset_names)
    balance = state.ledger.balance
    row_list = book.rows
    ledger_ids = [row_list[r].ledger_id for r in rows]
    row_sums = book.row_int[arr, n_a:2 * n_a].tolist()
    settles = {p["settle"] for p in positions}
    scales = book.asset_scale
    equity: dict[str, str] = {}
    for a, sym in enumerate(book.asset_names):
        if len(ledger_ids) == 1:  # the common case: one row, one ledger account
            cash = balance(ledger_ids[0], sym)
        else:
            cash = sum([balance(lid, sym) for lid in ledger_ids])
        if cash or sym in settles:
            pos_value = sum([v[a] for v in row_sums])
            equity[sym] = format_number((cash + pos_value) / scales[a])
    # the four columns summed over the account's rows in row order, as numpy's axis-0
    # reduction does (first row, then each next one added): no array call for a few rows
    row_totals = out.tolist()
    totals = row_totals[0]
    for more in row_totals[1:]:
        totals = [x + y for x, y in zip(totals, more, strict=True)]
    coll, mm, im = totals[OUT_COLLATERAL], totals[OUT_MM], totals[OUT_IM]
    return {
        "account": account,
        "mode": state.accounts.get(account, "cross"),
        "equity": equity,
        "equity_usd": format_number(totals[OUT_EQUITY]),
        "collateral_usd": format_number(coll),
        "initial_margin": format_number(im),
        "maintenance_margin": format_number(mm),
        "margin_ratio": format_number(
            mm / coll if coll > 0 else (float("inf") if mm > 0 else 0.0)),
        "free_collateral": format_number(coll - im),
        "positions": positions,
    }


def _position_views(state: EngineState, row_list: list[int], slot_list: list[int],
                    slot_arr: Any, horizon_days: float) -> list[dict[str, Any]]:
    """The position entries of :func:`account_view` (slot ``slot_list[i]`` of row
    ``row_list[i]``), sorted by (row, market)."""
    if not slot_list:
        return []
    book = state.book
    row_arr = np.array(row_list, dtype=np.int64)
    liq = book.liquidation_prices(row_arr, slot_arr)
    records = book.st[slot_arr].tolist()  # market, row, lots, next, cost, value, im, mm
    markets = [rec[S_MARKET] for rec in records]
    vols = [volatility(state, m) for m in markets]
    marks = book.marks
    # mark, side and volatility in one array: its rows are C-contiguous 1-D inputs
    inputs = np.array([[float(marks[m] or 0) for m in markets],
                       [1.0 if rec[S_LOTS] > 0 else -1.0 for rec in records], vols])
    prob = liquidation_probability_driftless(inputs[0], liq, inputs[1], inputs[2],
                                             horizon_days / 365.0).tolist()
    liq_list = liq.tolist()
    positions = []
    for i, (r, s, m) in enumerate(zip(row_list, slot_list, markets, strict=True)):
        rec = records[i]
        view = _position_view(state, r, rec, rec[S_COST], liq_list[i], vols[i], prob[i])
        view["adl_rank"] = adl_rank_of(state, m, s)
        positions.append(view)
    if len(positions) > 1:
        positions.sort(key=lambda p: (p["row"], p["market"]))
    return positions


def _position_view(state: EngineState, r: int, rec: list[int], cost_q: int, liq: float,
                   vol: float, prob: float) -> dict[str, Any]:
    """One position of :func:`account_view` (``rec``: its slot record, ``cost_q``: its
    cost basis in quanta): size, prices, margin, PnL, liquidation."""
    book = state.book
    m = rec[S_MARKET]
    inst = book.instruments[m]
    a = state.settle_asset[m]
    px = float(book.asset_price[a])
    scale = book.asset_scale[a]
    lots = rec[S_LOTS]
    contracts = Decimal(lots) * inst.lot_size
    cost = cost_q / scale
    value, im, mm = rec[S_VALUE] / scale, rec[S_IM] / scale, rec[S_MM] / scale
    notional = abs(value)
    if inst.kind == "inverse_perp":  # Instrument.is_inverse, without the property call
        entry = abs(float(contracts) * float(inst.contract_size) / cost) if cost else 0.0
    else:
        entry = cost / (float(contracts) * float(inst.contract_size)) if lots else 0.0
    row = book.rows[r]
    fmt = format_number
    return {
        "market": inst.name,
        "row": row.name,
        "isolated": row.market >= 0,
        "size": str(contracts),
        "entry_price": fmt(entry),
        "mark_price": str(book.marks[m]),
        "settle": inst.settle,
        "notional": fmt(notional * px),
        "initial_margin": fmt(im * px),
        "maintenance_margin": fmt(mm * px),
        "unrealized_pnl": fmt((value - cost) * px),
        "liquidation_price": None if math.isnan(liq) else fmt(liq),
        "volatility": fmt(vol),
        "liquidation_probability": fmt(prob),
    }


# A market's holders scored once per state change (a valuation of their rows), one slot's
# rank is then a count over them (a few numpy passes); the rank table adds an argsort of
# rows and a lexsort of scores, ~4x the scoring (bench/bench_account_view.py), after which
# a rank is a binary search. The first ranks asked after a state change are counted, from
# this many on the table is built and read.
ADL_COUNTS_BEFORE_TABLE = 32


def adl_rank_of(state: EngineState, m: int, s: int) -> int | None:
    """ADL queue quintile of slot ``s`` in market ``m`` (None: not ranked).

    From the market's rank table when it is current (:func:`adl_rank_table_of`);
    otherwise the first :data:`ADL_COUNTS_BEFORE_TABLE` asks after a state change count
    the one slot's rank over the market's holders, scored once for that state
    (``liquidation.adl_rank_in``, the same quintile: no sort of the whole market for one
    account's view, issue 26), and the next one builds the table.
    """
    hit = state.adl_rank_cache.get(m)
    if hit is None or hit[0] != state.epoch:
        counted = state.adl_rank_counts.get(m)
        if counted is None or counted[0] != state.epoch:
            counted = (state.epoch, 0, state.liquidator.adl_scored_holders(m))
        if counted[1] < ADL_COUNTS_BEFORE_TABLE:
            state.adl_rank_counts[m] = (state.epoch, counted[1] + 1, counted[2])
            return adl_rank_in(counted[2], s)
        state.adl_rank_counts.pop(m, None)
    slots, ranks = adl_rank_table_of(state, m)
    i = int(slots.searchsorted(s))
    if i < slots.shape[0] and slots.item(i) == s:
        return int(ranks.item(i))
    return None


def adl_rank_table_of(state: EngineState, m: int) -> tuple[Any, Any]:
    """Market ``m``'s ranked slots (ascending) and their ADL quintiles, computed once per
    state change (``state.epoch``) and kept until the next one."""
    hit = state.adl_rank_cache.get(m)
    if hit is None or hit[0] != state.epoch:
        slots, ranks = state.liquidator.adl_rank_table(m)
        hit = (state.epoch, slots, ranks)
        state.adl_rank_cache[m] = hit
    return hit[1], hit[2]


def accounts_overview(state: EngineState) -> dict[str, Any]:
    """Per-account margin totals of every account, vectorized over rows and slots.

    Returns ``names`` (list, book order) and float64 arrays of the same length:
    ``equity_usd``, ``collateral_usd``, ``initial_margin``, ``maintenance_margin``,
    ``margin_ratio`` (maintenance / collateral; inf with margin and no collateral, 0
    with neither), ``notional_usd`` (gross position notional) and ``positions``
    (count), plus ``system`` (bool, engine-run accounts). One full re-margin and
    ``np.bincount`` over the book's row -> account index: no loop over accounts.
    """
    book = state.book
    n_rows = len(book.rows)
    n_acc = len(book.account_names)
    out = book.remargin_all()
    acct = book.row_account[:n_rows]
    cols = {name: np.bincount(acct, weights=out[:, k], minlength=n_acc)
            for name, k in (("equity_usd", OUT_EQUITY), ("collateral_usd", OUT_COLLATERAL),
                            ("initial_margin", OUT_IM), ("maintenance_margin", OUT_MM))}
    coll, mm = cols["collateral_usd"], cols["maintenance_margin"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(coll > 0, mm / coll, np.where(mm > 0, np.inf, 0.0))
    live = np.flatnonzero(book.slot_row[: book.n_slots] >= 0)
    settle = np.asarray(state.settle_asset, dtype=np.int64)[book.slot_market[live]]
    usd = (np.abs(book.st[live, S_VALUE]).astype(np.float64) / book.ascale[settle]
           * book.asset_price[settle])
    slot_acct = acct[book.slot_row[live]]
    system = np.zeros(n_acc, dtype=np.bool_)
    system[acct[book.row_system[:n_rows]]] = True
    return {
        "names": list(book.account_names), **cols, "margin_ratio": ratio,
        "notional_usd": np.bincount(slot_acct, weights=usd, minlength=n_acc),
        "positions": np.bincount(slot_acct, minlength=n_acc), "system": system,
    }


def greeks_exposure(state: EngineState, *, per_account: bool = True) -> dict[str, Any]:
    """Delta, gamma, vega and theta per account and underlying, and venue-wide.

    Per contract and then size-weighted (``core/options/exposure.py``): perpetuals
    and futures count delta only (``contract_size`` coin, or ``contract_size / mark``
    for inverse contracts); options use Black-76 at the underlying's mark, their mark
    volatility and the engine clock: delta in coin (coin-settled options: Deribit's net
    delta, Black delta less the premium in coin), gamma per coin, vega per 1.00 vol
    and theta per year in USD. Engine-run rows are included (they hold risk too).
    """
    book = state.book
    live = np.flatnonzero(book.st[: book.n_slots, 1] >= 0)
    underlyings = sorted({inst.base for inst in book.instruments})
    u_index = {u: i for i, u in enumerate(underlyings)}
    names = ("delta", "gamma", "vega", "theta")
    if live.shape[0] == 0:
        return {"by_account": {}, "venue": {}}
    # accounts numbered in name order (the book numbers them by first appearance)
    book_names = np.array(book.account_names, dtype=object)
    order = np.argsort(book_names, kind="stable")
    accounts = [str(x) for x in book_names[order]]
    rank = np.empty(order.shape[0], dtype=np.int64)
    rank[order] = np.arange(order.shape[0])
    insts = book.instruments
    markets = book.st[live, 0]
    cv = np.array([float(i.contract_size) for i in insts])[markets]
    inverse = np.array([i.is_inverse for i in insts], dtype=np.bool_)[markets]
    option = np.array([i.is_option for i in insts], dtype=np.bool_)[markets]
    mark = book.mk[markets, 3]
    greeks = np.zeros((live.shape[0], 4))
    # futures and perpetuals: delta only, vectorized (contract_size coin, or / mark inverse)
    with np.errstate(divide="ignore", invalid="ignore"):
        greeks[:, 0] = np.where(inverse, cv / mark, cv)
    keep = np.ones(live.shape[0], dtype=np.bool_)
    now = state.clock_ms or 0
    for i in np.flatnonzero(option).tolist():  # options only: Black-76 per contract
        m = int(markets[i])
        inst = insts[m]
        u = book.market_index[str(inst.underlying)]
        f = float(book.marks[u] or 0)
        iv = state.ivs.get(m)
        t = max((inst.expiry_ms or 0) - now, 0) / MS_PER_YEAR
        if iv is None or f <= 0 or t <= 0:
            keep[i] = False
            continue
        g = black76_greeks(forward=f, strike=float(inst.strike or 0), time_yr=t,
                           vol=float(iv), rate=0.0, is_call=inst.option_kind == "call")
        delta = float(g.delta[0]) - (float(g.price[0]) / f if inst.coin_settled else 0.0)
        c = float(cv[i])
        greeks[i] = (delta * c, float(g.gamma[0]) * c, float(g.vega[0]) * c,
                     float(g.theta[0]) * c)
    if not keep.any():
        return {"by_account": {}, "venue": {}}
    sel = live[keep]
    acc = rank[book.row_account[book.st[sel, 1]]]
    und_of_market = np.array([u_index[i.base] for i in insts], dtype=np.int64)
    und = und_of_market[book.st[sel, 0]]
    size = book.st[sel, S_LOTS].astype(np.float64) * np.array(book.lot_size)[book.st[sel, 0]]
    exp = core_greeks_exposure(account=acc, underlying=und, size=size, greeks=greeks[keep],
                               n_accounts=len(accounts), n_underlyings=len(underlyings))
    by_account: dict[str, Any] = {}
    nonzero = exp.by_account != 0
    holders: list[int] = (np.flatnonzero(nonzero.any(axis=(1, 2))).tolist() if per_account
                          else [])
    for ai in holders:
        by_account[accounts[ai]] = {
            u: {k: f"{float(exp.by_account[ai, ui, j]):.12g}" for j, k in enumerate(names)}
            for u, ui in u_index.items() if nonzero[ai, ui].any()}
    held = set(und.tolist())
    venue = {u: {k: f"{float(exp.by_underlying[ui, j]):.12g}" for j, k in enumerate(names)}
             for u, ui in u_index.items() if ui in held}
    return {"by_account": by_account, "venue": venue}


def open_interest(state: EngineState) -> dict[str, str]:
    """One side's open interest per market, in contracts."""
    return {name: str(Decimal(state.book.oi_lots[m]) * state.book.instruments[m].lot_size)
            for m, name in enumerate(state.book.market_names)}


def signed_size_sums(state: EngineState) -> dict[str, int]:
    """Sum of signed lots per market (0 when every trade has two sides)."""
    book = state.book
    live = np.flatnonzero(book.slot_row[: book.n_slots] >= 0)
    sums = np.zeros(len(book.market_names), dtype=np.int64)
    np.add.at(sums, book.slot_market[live], book.slot_lots[live])
    return {name: int(sums[m]) for m, name in enumerate(book.market_names)}
