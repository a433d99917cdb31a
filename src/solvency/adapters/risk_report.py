"""The standard risk report (schema ``solvency.risk-report/v1``): what a venue publishes
about its own risk, built from the engine's exact state and kernels.

``docs/schema/risk-report-v1.json`` is the JSON Schema (a copy ships in the package and
every report is validated against it before it is written or served). Contents: per market
open interest and the long/short split, the leverage distribution, the insurance fund and
its coverage, liquidations at risk under ±5..30 % moves (the engine's own margin kernels on
the live book: :func:`solvency.engine.summary.liquidations_at_risk`), bad-debt VaR99 and
ES99 from a stress-lab sweep when one is given, ADL exposure by queue rank, breaker states
and the proof-of-liabilities root when one was built.
"""

from __future__ import annotations

import csv
import json
import math
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from solvency.core.margin.kernels import S_VALUE
from solvency.core.model.venue import ConfigError
from solvency.core.var import empirical_var_es_losses
from solvency.engine.engine import Engine
from solvency.engine.summary import SHOCKS, fund_coverage, liquidations_at_risk

__all__ = ["SCHEMA_ID", "bad_debt_from_sweep", "risk_report", "schema", "validate"]

SCHEMA_ID = "solvency.risk-report/v1"
LEVERAGE_EDGES = (0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0)


def schema() -> dict[str, Any]:
    """The report's JSON Schema (the package's copy of docs/schema/risk-report-v1.json)."""
    text = resources.files("solvency.data").joinpath("risk-report-v1.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def validate(report: dict[str, Any]) -> None:
    """Raise ``ConfigError`` naming the first place a report breaks its schema."""
    import jsonschema

    try:
        jsonschema.validate(report, schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise ConfigError(f"risk report at {where}: {exc.message}") from None


def bad_debt_from_sweep(folder: Path) -> dict[str, Any]:
    """VaR99 and ES99 of bad debt over every run of a sweep (``DIR/sweep.csv`` from
    ``solvency sweep --out DIR``, or that CSV file itself), with the sample size."""
    path = folder if folder.is_file() else folder / "sweep.csv"
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not rows or "bad_debt" not in rows[0]:
        raise ConfigError(f"{path}: no bad_debt column (written by `solvency sweep --out`)")
    try:
        x = np.array([float(r["bad_debt"]) for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise ConfigError(f"{path}: bad_debt: {exc}") from None
    var, es = empirical_var_es_losses(x, 0.99)
    return {"var99": f"{float(var):.2f}", "es99": f"{float(es):.2f}", "runs": int(x.shape[0]),
            "source": str(path)}


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def risk_report(engine: Engine, seq: int, *, bad_debt: dict[str, Any] | None = None,
                proof_root: dict[str, Any] | None = None,
                stress_asset: str | None = None) -> dict[str, Any]:
    """The report of ``engine`` at sequence number ``seq`` (validated).

    With ``bad_debt`` (:func:`bad_debt_from_sweep`) and ``stress_asset``, the bad-debt
    entry adds the insurance fund's coverage of it in that asset
    (:func:`solvency.engine.summary.fund_coverage`: ``asset``, ``insurance_fund``,
    ``coverage_var99``, ``coverage_es99``, ``covered``).
    """
    if bad_debt is not None and stress_asset is not None:
        cov = fund_coverage(engine, asset=stress_asset, var99=Decimal(bad_debt["var99"]),
                            es99=Decimal(bad_debt["es99"]))
        bad_debt = {**bad_debt, **{k: cov[k] for k in (
            "asset", "insurance_fund", "coverage_var99", "coverage_es99", "covered")}}
    book = engine.book
    overview = engine.accounts_overview()
    user = ~overview["system"]
    live = np.flatnonzero(book.slot_row[: book.n_slots] >= 0)
    live = live[~book.row_system[book.slot_row[live]]]
    m_of = book.slot_market[live]
    lots = book.slot_lots[live]
    settle = np.asarray(engine.settle_asset, dtype=np.int64)[m_of]
    usd = np.abs(book.st[live, S_VALUE]).astype(np.float64) / book.ascale[settle] * (
        book.asset_price[settle])
    n_m = len(book.market_names)
    longs = lots > 0
    oi = engine.open_interest()
    markets = []
    for m, name in enumerate(book.market_names):
        mine = m_of == m
        markets.append({
            "market": name,
            "open_interest": oi.get(name, "0"),
            "long_notional_usd": f"{float(usd[mine & longs].sum()):.2f}",
            "short_notional_usd": f"{float(usd[mine & ~longs].sum()):.2f}",
            "long_positions": int((mine & longs).sum()),
            "short_positions": int((mine & ~longs).sum()),
            "breaker": str(engine.feeds.breakers.state(name)),
        })
    eq = overview["equity_usd"]
    notional = overview["notional_usd"]
    holding = user & (notional > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lev = np.where(eq > 0, notional / eq, np.inf)
    counts, _ = np.histogram(lev[holding & np.isfinite(lev)], bins=[*LEVERAGE_EDGES, np.inf])
    adl = []
    for m in range(n_m):
        slots, ranks = engine.liquidator.adl_rank_table(m)
        if slots.shape[0] == 0:
            continue
        a = engine.settle_asset[m]
        v = np.abs(book.st[slots, S_VALUE]).astype(np.float64) / book.ascale[a] * (
            book.asset_price[a])
        for rank in range(1, 6):
            sel = ranks == rank
            if sel.any():
                adl.append({"market": book.market_names[m], "rank": rank,
                            "positions": int(sel.sum()),
                            "notional_usd": f"{float(v[sel].sum()):.2f}"})
    assets = sorted(book.asset_names)
    ledger = engine.ledger
    report: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "venue": engine.venue.name,
        "seq": seq,
        "state_hash": engine.state_hash(),
        "as_of": _iso(engine.clock_ms),
        "accounts": int(user.sum()),
        "markets": markets,
        "leverage_distribution": {
            "edges": [f"{e:g}" for e in LEVERAGE_EDGES] + ["inf"],
            "accounts": [int(c) for c in counts],
            "negative_equity_accounts": int((holding & ~np.isfinite(lev)).sum()),
        },
        "insurance_fund": {a: _amount(engine, a, ledger.balance("sys:insurance", a))
                           for a in assets},
        "insurance_coverage": {a: _ratio(engine.coverage(a)) for a in assets
                               if engine.open_interest_quanta(a) > 0},
        "liquidations_at_risk": liquidations_at_risk(engine, SHOCKS),
        "bad_debt": bad_debt,
        "adl_exposure": adl,
        "withdrawals_blocked": sorted(engine.liquidator.blocked_assets),
        "proof_of_liabilities": (None if proof_root is None else
                                 {k: proof_root[k] for k in ("root", "seq", "accounts",
                                                             "totals")}),
    }
    validate(report)
    return report


def _amount(engine: Engine, asset: str, quanta: int) -> str:
    from solvency.core.units import format_quanta

    return format_quanta(quanta, engine.venue.assets[asset].decimals)


def _ratio(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.6g}"
