"""Summaries of an engine's state: what ``solvency replay --json`` prints and what the
service's ``GET /v1/state`` answers (one function, so the two cannot drift apart)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import numpy as np

from solvency.core.margin.kernels import (
    MK_MARK,
    MKI_SETTLE,
    OUT_COLLATERAL,
    OUT_MM,
    S_LOTS,
    S_MARKET,
    S_ROW,
    S_VALUE,
    evaluate_rows,
)
from solvency.core.margin.stress import shock_rows_many
from solvency.core.units import format_quanta
from solvency.engine.base import format_number
from solvency.engine.engine import Engine
from solvency.engine.views import adl_rank_table_of

__all__ = [
    "SHOCKS",
    "account_entries",
    "account_entry",
    "liabilities",
    "liquidations_at_risk",
    "replay_summary",
]


def account_entry(engine: Engine, account: str) -> dict[str, Any]:
    """Equity, margin ratio, positions and ADL ranks of one account."""
    view = engine.account_view(account)
    return {
        "equity": view["equity"],
        "margin_ratio": view["margin_ratio"],
        "positions": {p["market"]: p["size"] for p in view["positions"]},
        "adl_rank": {p["market"]: p["adl_rank"] for p in view["positions"]},
    }


def account_entries(engine: Engine) -> Iterator[dict[str, Any]]:
    """``{"account": name, **account_entry(engine, name)}`` for every account with a
    deposit, in name order: what ``--accounts-out`` writes and ``--all-accounts`` lists.

    The same entries as :func:`account_entry` (a test holds them equal) without an
    :meth:`Engine.account_view` per account, which also computes each position's
    liquidation price and probability (a bisection per position) that the entry drops:
    the margin totals come from one valuation of every row, per-account sums from
    ``np.add.at``/``np.bincount`` over the book's row -> account index, the ledger balances
    from one pass over its non-zero entries, the ADL ranks from each market's rank table
    (one ``searchsorted`` per market). What is left per account is building its entry.
    """
    book = engine.book
    n_rows = len(book.rows)
    n_acc = len(book.account_names)
    n_a = len(book.asset_names)
    # the integers as account_view leaves them (a full re-mark gives the incremental
    # sums exactly), portfolio rows' grid requirements refreshed, then one valuation
    book.remargin_all()
    pm_rows = np.flatnonzero(~np.isnan(book.pm[:n_rows, 0]))
    engine.refresh_pm(pm_rows)
    out = book.aggregate(np.arange(n_rows, dtype=np.int64))
    acct = book.row_account[:n_rows]
    coll = np.bincount(acct, weights=out[:, OUT_COLLATERAL], minlength=n_acc).tolist()
    mm = np.bincount(acct, weights=out[:, OUT_MM], minlength=n_acc).tolist()
    pos = np.zeros((n_acc, n_a), dtype=np.int64)
    np.add.at(pos, acct, book.row_int[:n_rows, n_a:2 * n_a])
    # cash: the ledger balances of each row's ledger account, summed per account
    rows_of_lid: dict[str, list[int]] = {}
    for r, row in enumerate(book.rows):
        rows_of_lid.setdefault(row.ledger_id, []).append(r)
    cash: dict[tuple[int, int], int] = {}
    asset_index = book.asset_index
    for (lid, sym), q in engine.ledger.balances().items():
        a = asset_index.get(sym)
        if a is None or not q:
            continue
        for r in rows_of_lid.get(lid, ()):
            key = (int(acct[r]), a)
            cash[key] = cash.get(key, 0) + q
    # live slots, each with its account; ADL ranks from the markets' rank tables
    live = np.flatnonzero(book.st[: book.n_slots, S_ROW] >= 0)
    slot_rank = np.full(book.n_slots, -1, dtype=np.int64)
    for m in np.unique(book.st[live, S_MARKET]).tolist():
        t_slots, t_ranks = adl_rank_table_of(engine, m)
        slot_rank[t_slots] = t_ranks
    settle_of = np.asarray(engine.settle_asset, dtype=np.int64)
    has_settle = np.zeros((n_acc, n_a), dtype=np.bool_)
    has_settle[acct[book.st[live, S_ROW]], settle_of[book.st[live, S_MARKET]]] = True
    show = has_settle.copy()
    for acc_i, a in cash:
        show[acc_i, a] = True
    scale = book.asset_scale
    names = book.asset_names
    pos_list = pos.tolist()
    show_list = show.tolist()
    for account in sorted(engine.accounts):
        i = book.account_number.get(account)
        if i is None:  # no row: account_entry would raise KeyError too
            raise KeyError(account)
        equity = {names[a]: format_number((cash.get((i, a), 0) + pos_list[i][a]) / scale[a])
                  for a in range(n_a) if show_list[i][a]}
        c, mmi = coll[i], mm[i]
        positions: dict[str, str] = {}
        ranks: dict[str, int | None] = {}
        held = []
        for r in book.account_rows.get(account, []):
            rname = book.rows[r].name
            for sl in book.row_slots(r):
                held.append((rname, book.market_names[int(book.st[sl, S_MARKET])], sl))
        held.sort(key=lambda x: (x[0], x[1]))
        for _, market, sl in held:
            m = int(book.st[sl, S_MARKET])
            positions[market] = str(Decimal(int(book.st[sl, S_LOTS]))
                                    * book.instruments[m].lot_size)
            rank = int(slot_rank[sl])
            ranks[market] = rank if rank >= 0 else None
        yield {"account": account, "equity": equity,
               "margin_ratio": format_number(
                   mmi / c if c > 0 else (float("inf") if mmi > 0 else 0.0)),
               "positions": positions, "adl_rank": ranks}


def _ranked(overview: dict[str, Any], key: str, keep: np.ndarray, top: int) -> list[int]:
    """Indices of the ``top`` accounts by ``key`` (descending, ties by name) within
    ``keep``: one lexsort over all accounts, no Python loop over them."""
    idx = np.flatnonzero(keep)
    if idx.shape[0] == 0 or top <= 0:
        return []
    names = np.array(overview["names"], dtype=object)[idx]
    order = np.lexsort((names, -overview[key][idx]))[:top]
    return [int(i) for i in idx[order]]


def _listed(engine: Engine, overview: dict[str, Any], picks: list[int]) -> list[dict[str, Any]]:
    out = []
    for i in picks:
        name = overview["names"][i]
        out.append({"account": name,
                    "equity_usd": f"{overview['equity_usd'][i]:.2f}",
                    "maintenance_margin_usd": f"{overview['maintenance_margin'][i]:.2f}",
                    "notional_usd": f"{overview['notional_usd'][i]:.2f}",
                    **account_entry(engine, name)})
    return out


def replay_summary(engine: Engine, line_errors: int, *, top: int = 10,
                   all_accounts: bool = False,
                   stress: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``solvency replay --json`` object for an engine after a replay.

    Per-account detail is bounded: the ``top`` accounts nearest liquidation (highest
    maintenance margin / collateral) and the ``top`` largest (gross notional), chosen
    from one vectorized pass over every account (:meth:`Engine.accounts_overview`); the
    full per-account map ``accounts`` only with ``all_accounts`` (documented in
    docs/cli.md). Engine-run accounts (``__insurance__`` and the like) are counted in the
    ledger lines, not listed. With ``stress`` (the arguments of :func:`fund_coverage`)
    the summary adds ``fund_coverage``.
    """
    overview = engine.accounts_overview()
    user = ~overview["system"]
    at_risk = user & (overview["maintenance_margin"] > 0)
    summary_accounts: dict[str, Any] = {
        "account_count": int(user.sum()),
        "accounts_nearest_liquidation": _listed(
            engine, overview, _ranked(overview, "margin_ratio", at_risk, top)),
        "accounts_largest": _listed(
            engine, overview,
            _ranked(overview, "notional_usd", user & (overview["notional_usd"] > 0), top)),
    }
    if all_accounts:
        summary_accounts["accounts"] = {e.pop("account"): e for e in account_entries(engine)}
    liq = engine.liquidator
    try:
        engine.verify()
        conserved = True
    except Exception:  # any broken invariant is reported, not hidden
        conserved = False
    totals = engine.ledger.totals()
    return {
        "venue": engine.venue.name,
        "events": engine.counts["events"] + line_errors,
        "applied": engine.counts["applied"],
        "rejected": engine.counts["rejected"] + line_errors,
        "duplicates": engine.counts["duplicates"],
        **summary_accounts,
        "open_interest": engine.open_interest(),
        "ledger_totals": {a: _amount(engine, a, q) for a, q in totals.items()},
        "fee_pool": {a: _amount(engine, a, engine.ledger.balance("sys:fees", a))
                     for a in sorted(engine.book.asset_names)},
        "rounding": {a: _amount(engine, a, engine.ledger.balance("sys:rounding", a))
                     for a in sorted(engine.book.asset_names)},
        "liquidations": liq.counts["steps"],
        "adl": liq.counts["adl"],
        "insurance_fund": {a: _amount(engine, a, engine.ledger.balance("sys:insurance", a))
                           for a in sorted(engine.book.asset_names)},
        "bad_debt": {a: _amount(engine, a, -engine.ledger.balance("sys:bad_debt", a))
                     for a in sorted(engine.book.asset_names)},
        "insurance_coverage": {a: f"{engine.coverage(a):.6g}"
                               for a in sorted(engine.book.asset_names)
                               if engine.open_interest_quanta(a) > 0},
        "fee_share_ppm": engine.fee_share_ppm,
        # venue-wide only: per account it would grow with the book (`solvency greeks`
        # gives one portfolio's, --accounts-out every account's positions)
        "greeks": {"venue": engine.greeks_exposure(per_account=False)["venue"]},
        "liquidation_counts": dict(liq.counts),
        "withdrawals_blocked": sorted(liq.blocked_assets),
        "conserved": conserved,
        **({"fund_coverage": fund_coverage(engine, **stress)} if stress is not None else {}),
        "state_hash": engine.state_hash(),
    }


def fund_coverage(engine: Engine, *, asset: str, var99: Decimal, es99: Decimal | None = None,
                  runs: int | None = None, source: str = "given") -> dict[str, Any]:
    """The insurance fund's coverage of the stress lab's bad-debt VaR99 (issue 14): the
    fund's balance in ``asset`` (exact) over ``var99``, the bad debt in ``asset`` that a
    stress-lab sweep exceeds in 1 % of its runs (``solvency sweep``; or a figure given),
    and over ``es99``, the mean of that worst 1 %, when known.

    ``coverage_var99`` is ``fund / var99`` to 6 significant digits (``"inf"`` when the
    VaR is 0: nothing to cover); ``covered`` is ``fund >= var99``, exactly.

    Raises
    ------
    ValueError
        An asset the venue does not have, or a negative or non-finite VaR/ES.
    """
    if asset not in engine.venue.assets:
        raise ValueError(f"--stress-asset: {asset!r} is not an asset of "
                         f"{engine.venue.name} ({', '.join(sorted(engine.venue.assets))})")
    for name, x in (("VaR99", var99), ("ES99", es99)):
        if x is not None and not (x.is_finite() and x >= 0):
            raise ValueError(f"bad-debt {name}: {x} must be a finite amount >= 0")
    quanta = engine.ledger.balance("sys:insurance", asset)
    fund = Decimal(quanta).scaleb(-engine.venue.assets[asset].decimals)

    def ratio(x: Decimal | None) -> str | None:
        if x is None:
            return None
        return "inf" if x == 0 else f"{fund / x:.6g}"

    return {"asset": asset, "insurance_fund": _amount(engine, asset, quanta),
            "bad_debt_var99": str(var99), "bad_debt_es99": None if es99 is None else str(es99),
            "runs": runs, "source": source, "coverage_var99": ratio(var99),
            "coverage_es99": ratio(es99), "covered": fund >= var99}


def _amount(engine: Engine, asset: str, quanta: int) -> str:
    return format_quanta(quanta, engine.venue.assets[asset].decimals)


def liabilities(engine: Engine) -> dict[str, Any]:
    """What the venue owes each account, per asset, in quanta: its equity per asset
    (ledger balance plus the value of its positions settled in that asset, over all its
    rows), floored at zero. Engine-run accounts (``__insurance__`` and the like) are the
    venue's own and not listed. Returns ``assets``, ``accounts`` (book order), ``owed``
    (int64, accounts x assets) and ``negative`` (accounts in negative equity in some
    asset, with the shortfall: counted and reported, never hidden in the tree).

    Exact: the book's per-row integers (balances mirror the ledger; position values are
    the slot caches at the current marks), summed per account with ``np.add.at``.
    """
    book = engine.book
    n_rows = len(book.rows)
    n_a = len(book.asset_names)
    ri = book.row_int[:n_rows]
    equity = ri[:, :n_a] + ri[:, n_a:2 * n_a]
    acct = book.row_account[:n_rows]
    n_acc = len(book.account_names)
    per = np.zeros((n_acc, n_a), dtype=np.int64)
    np.add.at(per, acct, equity)
    system = np.zeros(n_acc, dtype=np.bool_)
    system[acct[book.row_system[:n_rows]]] = True
    keep = np.flatnonzero(~system)
    names = [book.account_names[i] for i in keep]
    per = per[keep]
    neg_rows = np.flatnonzero((per < 0).any(axis=1))
    negative = {names[i]: {book.asset_names[a]: format_quanta(
        int(-per[i, a]), engine.venue.assets[book.asset_names[a]].decimals)
        for a in range(n_a) if per[i, a] < 0} for i in neg_rows}
    return {"assets": list(book.asset_names), "accounts": names,
            "owed": np.maximum(per, 0), "negative": negative}


SHOCKS = (-0.30, -0.20, -0.10, -0.05, 0.05, 0.10, 0.20, 0.30)
"""The moves ``liquidations_at_risk`` reports by default (a risk report's rows)."""


def liquidations_at_risk(engine: Engine, shocks: Sequence[float] = SHOCKS
                         ) -> list[dict[str, Any]]:
    """Per shock (every non-option market's mark times ``1 + shock`` at once, coins priced
    by those marks with them): the accounts that would be liquidatable (collateral below
    maintenance margin, as the liquidator's trigger), their positions' notional in USD at
    the shocked marks (all of it: the most a venue with full closes would liquidate), and
    their shortfall below zero equity (the bad debt if nothing could be closed before).

    The book is not changed: positions are re-margined by the engine's own kernels into a
    scratch copy of the row sums (``core.margin.stress.shock_rows_many``), then valued by the
    engine's ``evaluate_rows``. Option premiums are not repriced (the portfolio-margin
    grids do that); portfolio-margined rows keep their current scenario requirement.
    """
    book = engine.book
    n = len(book.rows)
    rows = np.arange(n, dtype=np.int64)
    system = book.row_system[:n]
    acct = book.row_account[:n]
    option = np.array([inst.is_option for inst in book.instruments], dtype=np.bool_)
    base_marks = book.mk[:, MK_MARK].copy()
    linked = book.asset_link >= 0
    linked_option = option[book.asset_link[linked]]

    def chunk(ks: list[float]) -> list[dict[str, Any]]:
        if ks == [0.0]:  # the current marks: the book's own sums, nothing to re-mark
            live = np.flatnonzero(book.st[: book.n_slots, S_ROW] >= 0)
            a = book.mki[book.st[live, S_MARKET], MKI_SETTLE]
            usd = np.abs(book.st[live, S_VALUE]) / book.ascale[a] * book.asset_price[a]
            base = np.bincount(book.st[live, S_ROW], weights=usd, minlength=n)
            long_usd = np.where(book.st[live, S_LOTS] > 0, usd, 0.0)
            base_long = np.bincount(book.st[live, S_ROW], weights=long_usd, minlength=n)
            return [_at_risk_row(0.0, book.aggregate(rows), acct, system, base, base_long)]
        k = len(ks)
        factor = 1.0 + np.asarray(ks)[:, None]
        marks = np.where((option | ~np.isfinite(base_marks))[None, :], base_marks[None, :],
                         base_marks[None, :] * factor)
        px = np.repeat(book.asset_price[None, :], k, axis=0)
        px[:, linked] = np.where(linked_option[None, :], px[:, linked],
                                 px[:, linked] * factor)
        row2 = np.repeat(book.row_int[None, :n], k, axis=0)
        notional = np.zeros((k, n))
        long_notional = np.zeros((k, n))
        shock_rows_many(book.n_slots, book.st, row2, marks, book.mk, book.mki, book.tiers,
                        book.ascale, px, notional, long_notional)
        answers = []
        for j, shock in enumerate(ks):
            out = np.empty((n, 4))
            evaluate_rows(rows, row2[j], px[j], book.ascale, book.atier_start,
                          book.atier_count, book.atiers, out, book.pm)
            answers.append(_at_risk_row(shock, out, acct, system, notional[j],
                                        long_notional[j]))
        return answers

    # one pass over the positions per chunk of shocks (the slot table is read once for
    # the chunk); chunks run on a thread each (the kernels release the GIL and only read
    # the book; each chunk has its own scratch copies). The answers do not depend on it.
    todo = list(shocks)
    size = max(1, -(-len(todo) // max(1, min(4, os.cpu_count() or 1))))
    chunks = [[0.0]] + [todo[i:i + size] for i in range(0, len(todo), size)]
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        return [row for part in pool.map(chunk, chunks) for row in part]


def _at_risk_row(shock: float, out: Any, acct: Any, system: Any,
                 notional: Any, long_notional: Any) -> dict[str, Any]:
    coll, mm, equity = out[:, 1], out[:, 3], out[:, 0]
    liq = (coll < mm) & (mm > 0) & ~system
    total = float(notional[liq].sum())
    long = float(long_notional[liq].sum())
    return {
        "shock": f"{shock:+.0%}",
        "accounts": int(np.unique(acct[liq]).shape[0]),
        "rows": int(liq.sum()),
        "notional_usd": f"{total:.2f}",
        # the liquidatable rows' long positions and short ones (the liquidation map's
        # two sides; a row holding both counts each position on its side)
        "long_notional_usd": f"{long:.2f}",
        "short_notional_usd": f"{max(total - long, 0.0):.2f}",
        "shortfall_usd": f"{max(0.0, float(-np.minimum(equity[liq], 0.0).sum())):.2f}",
    }
