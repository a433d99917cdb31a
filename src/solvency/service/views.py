"""What the service's read routes answer, computed from the engine on the writer thread.

Each function takes the engine (and the sequence number it reflects) and returns plain
JSON data; amounts are decimal strings in the asset's own units, as in the event log.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from solvency.core.units import format_quanta
from solvency.engine.engine import Engine
from solvency.engine.summary import replay_summary

__all__ = ["account_json", "risk_json", "state_json"]

RATIO_BINS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, np.inf)
"""Edges of the margin-ratio histogram (maintenance margin / collateral; >= 1 is
liquidatable)."""


def state_json(engine: Engine, seq: int) -> dict[str, Any]:
    """``GET /v1/state``: what ``solvency replay --json`` prints, at sequence ``seq``."""
    summary = replay_summary(engine, 0, top=0)
    for key in ("accounts_nearest_liquidation", "accounts_largest"):
        summary.pop(key, None)
    return {"seq": seq, **summary}


def account_json(engine: Engine, account: str, seq: int) -> dict[str, Any]:
    """``GET /v1/accounts/{id}``: equity, margin, positions with liquidation prices and
    ADL ranks (what ``solvency margin`` shows). ``KeyError`` for an unknown account."""
    view = engine.account_view(account)
    return {"seq": seq, "account": account, **view}


def _amount(engine: Engine, asset: str, quanta: int) -> str:
    return format_quanta(quanta, engine.venue.assets[asset].decimals)


def risk_json(engine: Engine, seq: int, recent: list[dict[str, object]], *,
              top: int = 10) -> dict[str, Any]:
    """``GET /v1/risk``: the fund and its coverage, open interest, breakers, the accounts
    nearest liquidation, the margin-ratio distribution and recent liquidations and ADL."""
    assets = sorted(engine.book.asset_names)
    overview = engine.accounts_overview()
    user = ~overview["system"]
    ratio = overview["margin_ratio"]
    at_risk = user & (overview["maintenance_margin"] > 0)
    idx = np.flatnonzero(at_risk)
    names = np.array(overview["names"], dtype=object)
    nearest: list[dict[str, Any]] = []
    if idx.shape[0] and top > 0:
        order = np.lexsort((names[idx], -ratio[idx]))[:top]
        for i in idx[order]:
            nearest.append({
                "account": str(names[i]),
                "margin_ratio": f"{float(ratio[i]):.6g}",
                "equity_usd": f"{float(overview['equity_usd'][i]):.2f}",
                "maintenance_margin_usd": f"{float(overview['maintenance_margin'][i]):.2f}",
                "notional_usd": f"{float(overview['notional_usd'][i]):.2f}",
            })
    finite = ratio[at_risk]
    counts, _ = np.histogram(np.nan_to_num(finite, nan=0.0, posinf=1e9), bins=RATIO_BINS)
    breakers = {name: str(engine.feeds.breakers.state(name))
                for name in engine.book.market_names}
    ledger = engine.ledger
    return {
        "seq": seq,
        "insurance_fund": {a: _amount(engine, a, ledger.balance("sys:insurance", a))
                           for a in assets},
        "insurance_coverage": {a: f"{engine.coverage(a):.6g}" for a in assets
                               if engine.open_interest_quanta(a) > 0},
        "bad_debt": {a: _amount(engine, a, -ledger.balance("sys:bad_debt", a))
                     for a in assets},
        "open_interest": engine.open_interest(),
        "breakers": breakers,
        "withdrawals_blocked": sorted(engine.liquidator.blocked_assets),
        "accounts": int(user.sum()),
        "accounts_at_risk": int(at_risk.sum()),
        "nearest_liquidation": nearest,
        "margin_ratio_histogram": {
            "edges": [f"{e:g}" for e in RATIO_BINS[:-1]] + ["inf"],
            "counts": [int(c) for c in counts],
        },
        "liquidation_counts": dict(engine.liquidator.counts),
        "recent": recent[-50:],
    }
