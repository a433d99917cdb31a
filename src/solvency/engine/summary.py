"""Summaries of an engine's state: what ``solvency replay --json`` prints and what the
service's ``GET /v1/state`` answers (one function, so the two cannot drift apart)."""

from __future__ import annotations

from typing import Any

import numpy as np

from solvency.core.units import format_quanta
from solvency.engine.engine import Engine

__all__ = ["account_entry", "liabilities", "replay_summary"]


def account_entry(engine: Engine, account: str) -> dict[str, Any]:
    """Equity, margin ratio, positions and ADL ranks of one account."""
    view = engine.account_view(account)
    return {
        "equity": view["equity"],
        "margin_ratio": view["margin_ratio"],
        "positions": {p["market"]: p["size"] for p in view["positions"]},
        "adl_rank": {p["market"]: p["adl_rank"] for p in view["positions"]},
    }


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
                   all_accounts: bool = False) -> dict[str, Any]:
    """The ``solvency replay --json`` object for an engine after a replay.

    Per-account detail is bounded: the ``top`` accounts nearest liquidation (highest
    maintenance margin / collateral) and the ``top`` largest (gross notional), chosen
    from one vectorized pass over every account (:meth:`Engine.accounts_overview`); the
    full per-account map ``accounts`` only with ``all_accounts`` (documented in
    docs/cli.md). Engine-run accounts (``__insurance__`` and the like) are counted in the
    ledger lines, not listed.
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
        summary_accounts["accounts"] = {a: account_entry(engine, a)
                                        for a in sorted(engine.accounts)}
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
        "state_hash": engine.state_hash(),
    }


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
