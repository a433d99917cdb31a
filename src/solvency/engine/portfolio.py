"""Margin of one account from a portfolio description (``solvency margin FILE``).

The portfolio is loaded into a real :class:`~solvency.engine.engine.Engine` (collateral
deposited, positions seeded at their entry prices, marks applied), so the numbers it
prints are the engine's own: the same kernels, the same liquidation-price search.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np

from solvency.core.margin.kernels import OUT_COLLATERAL, OUT_MM
from solvency.core.model.events import Deposit, EventError, Price, parse_ts_ms
from solvency.core.model.presets import PRESETS, preset_names, venue_from_data
from solvency.core.model.venue import ConfigError
from solvency.core.units import UnitError, parse_decimal
from solvency.engine.base import format_number
from solvency.engine.engine import Engine, RejectReason

__all__ = ["PortfolioError", "asset_price_sources", "evaluate_portfolio",
           "load_portfolio_engine", "parse_horizon_days"]

ACCOUNT = "portfolio"


class PortfolioError(ValueError):
    """A portfolio file that cannot be evaluated, naming the offending key."""


def _dec(value: object, path: str) -> Decimal:
    try:
        return parse_decimal(value, field=path)
    except UnitError as exc:
        raise PortfolioError(str(exc)) from None


def _obj(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PortfolioError(f"{path}: expected an object")
    return value


def load_portfolio_engine(data: Mapping[str, Any], venue: str | None = None) -> Engine:
    """Build an engine holding the portfolio's account (see module docstring)."""
    data = _obj(data, "portfolio")
    extra = set(data) - {"venue", "markets", "prices", "account", "now", "rate", "vols",
                         "volatility", "horizon"}
    if extra:
        raise PortfolioError(f"portfolio: unknown keys {sorted(extra)}")
    venue_name = venue or data.get("venue", "binance")
    if not isinstance(venue_name, str) or venue_name not in PRESETS:
        raise PortfolioError(f"venue: {venue_name!r} is not one of {preset_names()}")
    markets = dict(_obj(data.get("markets", {}), "markets"))
    oi: dict[str, Decimal] = {}
    overrides: dict[str, Any] = {}
    for name, ov in markets.items():
        ov = dict(_obj(ov, f"markets.{name}"))
        if "open_interest" in ov:
            oi[name] = _dec(ov.pop("open_interest"), f"markets.{name}.open_interest")
            if oi[name] < 0:
                raise PortfolioError(f"markets.{name}.open_interest: must be >= 0")
        overrides[name] = ov
    try:
        v = venue_from_data({"preset": venue_name, "markets": overrides})
    except ConfigError as exc:
        raise PortfolioError(str(exc)) from None
    engine = Engine(v)
    if data.get("now") is not None:
        try:
            engine.clock_ms = parse_ts_ms(data["now"])
        except EventError as exc:
            raise PortfolioError(f"now: {exc.detail}") from None
    prices = _obj(data.get("prices", {}), "prices")
    for i, (market, price) in enumerate(sorted(prices.items())):
        if engine.venue.resolve(market) is None:
            raise PortfolioError(f"prices.{market}: unknown market")
        p = _dec(price, f"prices.{market}")
        if p <= 0:
            raise PortfolioError(f"prices.{market}: must be > 0")
        _apply(engine, Price(id=f"px{i}", price=p, market=market), f"prices.{market}")
    _price_coins_by_inverse_markets(engine)
    account = _obj(data.get("account"), "account")
    extra = set(account) - {"mode", "collateral", "positions"}
    if extra:
        raise PortfolioError(f"account: unknown keys {sorted(extra)}")
    mode = account.get("mode", "cross")
    if mode not in ("cross", "isolated"):
        raise PortfolioError(f"account.mode: {mode!r} is not cross or isolated")
    collateral = _obj(account.get("collateral", {}), "account.collateral")
    engine.accounts[ACCOUNT] = mode
    engine.ensure_cross_row(ACCOUNT)
    for i, (asset, amount) in enumerate(sorted(collateral.items())):
        q = _dec(amount, f"account.collateral.{asset}")
        if q < 0:
            raise PortfolioError(f"account.collateral.{asset}: must be >= 0")
        if q > 0:
            _require_price(engine, asset, f"account.collateral.{asset}")
            _apply(engine, Deposit(id=f"dep{i}", account=ACCOUNT, asset=asset, amount=q),
                   f"account.collateral.{asset}")
    positions = account.get("positions", [])
    if not isinstance(positions, list):
        raise PortfolioError("account.positions: expected a list")
    seen: dict[str, str] = {}
    for i, pos in enumerate(positions):
        _seed(engine, _obj(pos, f"account.positions[{i}]"), mode, f"account.positions[{i}]",
              seen)
    vols = _obj(data.get("volatility", {}), "volatility")
    for name, value in vols.items():
        inst = engine.venue.resolve(name)
        if inst is None:
            raise PortfolioError(f"volatility.{name}: unknown market")
        sigma = _dec(value, f"volatility.{name}")
        if sigma <= 0:
            raise PortfolioError(f"volatility.{name}: must be > 0 (annualized, e.g. 0.6)")
        engine.vol_var_annual[engine.book.market_index[inst.name]] = float(sigma) * float(sigma)
    for name, value in oi.items():
        inst = engine.venue.resolve(name)
        if inst is None:
            raise PortfolioError(f"markets.{name}: unknown market")
        m = engine.book.market_index[inst.name]
        engine.book.set_oi(m, int(value / inst.lot_size))
    return engine


def _apply(engine: Engine, event: Price | Deposit, path: str) -> None:
    out = engine.apply(event)
    for o in out:
        if o.type == "rejected":
            raise PortfolioError(f"{path}: {getattr(o, 'reason', '')}: {getattr(o, 'detail', '')}")


def _price_coins_by_inverse_markets(engine: Engine) -> None:
    """Value a coin whose own price market has no price by a priced inverse market that
    settles in it (the first by name): an inverse-only portfolio needs no other price.

    The coin is then linked to that market, so the liquidation-price search moves the
    coin's USD value with the inverse mark, as a coin-margined account's value moves.
    """
    book = engine.book
    for a, sym in enumerate(book.asset_names):
        link = int(book.asset_link[a])
        if link < 0 or book.marks[link] is not None:
            continue
        for m in sorted(range(len(book.market_names)), key=lambda k: book.market_names[k]):
            inst = book.instruments[m]
            mark = book.marks[m]
            if inst.is_inverse and inst.settle == sym and mark is not None:
                book.asset_link[a] = m
                book.set_mark(m, mark)
                break


def asset_price_sources(engine: Engine, assets: list[str]) -> dict[str, dict[str, str]]:
    """USD price of each of ``assets`` and where it comes from (a market, or ``fixed``)."""
    book = engine.book
    out: dict[str, dict[str, str]] = {}
    for sym in assets:
        a = book.asset_index[sym]
        link = int(book.asset_link[a])
        exact = book.asset_price_exact[a]
        out[sym] = {"usd": str(exact) if exact is not None else format_number(
                        float(book.asset_price[a])),
                    "market": book.market_names[link] if link >= 0 else "fixed"}
    return out


def _require_price(engine: Engine, asset: str, path: str) -> None:
    """Refuse an asset that has no USD price (it would make every total NaN)."""
    book = engine.book
    a = book.asset_index.get(asset)
    if a is None or math.isfinite(float(book.asset_price[a])):
        return  # an unknown asset is refused by the deposit with its own reason
    link = int(book.asset_link[a])
    market = book.market_names[link] if link >= 0 else None
    hint = f": give prices.{market}" if market is not None else ""
    raise PortfolioError(f"{path}: no USD price for {asset}{hint}")


def _seed(engine: Engine, pos: Mapping[str, Any], mode: str, path: str,
          seen: dict[str, str]) -> None:
    extra = set(pos) - {"market", "size", "entry_price", "margin"}
    if extra:
        raise PortfolioError(f"{path}: unknown keys {sorted(extra)}")
    market = pos.get("market")
    if not isinstance(market, str):
        raise PortfolioError(f"{path}.market: required")
    inst = engine.venue.resolve(market)
    if inst is None:
        raise PortfolioError(f"{path}.market: unknown market {market!r}")
    if inst.name in seen:
        # one net position per market, as a venue holds it (one-way mode): two entries
        # would be merged at an averaged entry the file does not state
        raise PortfolioError(f"{path}.market: {inst.name} already has a position "
                             f"({seen[inst.name]}); give one net position per market")
    seen[inst.name] = path
    if engine.book.marks[engine.book.market_index[inst.name]] is None:
        raise PortfolioError(f"{path}: no price given for market {market} in 'prices'")
    _require_price(engine, inst.settle, f"{path}.market")
    size = _dec(pos.get("size"), f"{path}.size")
    entry = _dec(pos.get("entry_price"), f"{path}.entry_price")
    margin = pos.get("margin")
    if mode == "cross" and margin is not None:
        raise PortfolioError(f"{path}.margin: only isolated positions carry their own margin")
    try:
        if mode == "isolated":
            if margin is None:
                raise PortfolioError(f"{path}.margin: required for an isolated position")
            m_amt = _dec(margin, f"{path}.margin")
            if m_amt <= 0:
                raise PortfolioError(f"{path}.margin: must be > 0")
            _apply(engine, Deposit(id=f"{path}.margin", account=ACCOUNT, asset=inst.settle,
                                   amount=m_amt), f"{path}.margin")
            engine.seed_position(ACCOUNT, inst.name, size, entry)
            engine.transfer_isolated(ACCOUNT, inst.name, m_amt)
        else:
            engine.seed_position(ACCOUNT, inst.name, size, entry)
    except RejectReason as rej:
        raise PortfolioError(f"{path}: {rej.reason}: {rej.detail}") from None


_UNITS = {"m": 1 / 1440, "h": 1 / 24, "d": 1.0}


def parse_horizon_days(text: object) -> float:
    """Parse a horizon like ``"30m"``, ``"8h"``, ``"1d"`` (or a number of days)."""
    if isinstance(text, int | Decimal) and not isinstance(text, bool):
        days = float(text)
    elif isinstance(text, str) and text[-1:] in _UNITS:
        try:
            days = float(Decimal(text[:-1])) * _UNITS[text[-1]]
        except ArithmeticError:
            raise PortfolioError(f"horizon: {text!r} is not like 30m, 8h or 1d") from None
    else:
        raise PortfolioError(f"horizon: {text!r} is not like 30m, 8h or 1d")
    if not 0 < days < float("inf"):
        raise PortfolioError(f"horizon: {text!r} must be positive and finite")
    return days


def _horizon_label(text: object) -> str:
    """The horizon as the file gives it (``"8h"``), a bare number as days (``"0.5d"``)."""
    return text if isinstance(text, str) else f"{text}d"


def _given_entries(data: Mapping[str, Any], engine: Engine) -> dict[str, str]:
    """Entry price of each market as the file states it (one position per market)."""
    out: dict[str, str] = {}
    for i, pos in enumerate(data["account"].get("positions", [])):
        inst = engine.venue.resolve(pos["market"])
        if inst is not None:
            out[inst.name] = str(_dec(pos.get("entry_price"),
                                      f"account.positions[{i}].entry_price"))
    return out


def _row_health(engine: Engine) -> dict[str, tuple[float, float]]:
    """(collateral, maintenance margin) in USD of each of the account's margin rows."""
    rows = engine.rows_of(ACCOUNT)
    out = engine.book.remargin_rows(np.array(rows, dtype=np.int64))
    return {engine.book.rows[r].name: (float(out[i, OUT_COLLATERAL]), float(out[i, OUT_MM]))
            for i, r in enumerate(rows)}


def _below(coll: float, mm: float) -> bool:
    # the engine's trigger (kernels.touch_rows): collateral under a positive requirement
    return mm > 0.0 and coll < mm


def _margin_ratio(coll: float, mm: float) -> str | None:
    """Maintenance / collateral; 0 without a requirement, None without positive
    collateral (equity at or below zero: no ratio, the account is past liquidation)."""
    if mm <= 0.0:
        return "0"
    return format_number(mm / coll) if coll > 0.0 else None


def evaluate_portfolio(data: Mapping[str, Any], venue: str | None = None) -> dict[str, Any]:
    """Return the margin report of a portfolio (the ``solvency margin --json`` object).

    Numbers are decimal strings in USD, except ``positions[].size`` (contracts),
    ``entry_price`` (as the file gives it), ``liquidation_price`` and ``recovery_price``
    (quote per base), ``volatility`` (annualized) and ``liquidation_probability`` (0..1,
    the chance the mark touches the liquidation price within ``horizon``, default one
    day). A margin row (the cross account, or one isolated position) whose collateral is
    below its maintenance margin is ``liquidatable`` now: its positions have no
    ``liquidation_price``, probability 1, and ``recovery_price``, the mark at which the
    row would be back at maintenance (``null`` if none).
    """
    engine = load_portfolio_engine(data, venue)
    horizon_text = data.get("horizon", "1d")
    horizon = parse_horizon_days(horizon_text)
    view = engine.account_view(ACCOUNT, horizon_days=horizon)
    health = _row_health(engine)
    entries = _given_entries(data, engine)
    below = [(name, c, m) for name, (c, m) in health.items() if _below(c, m)]
    coll = sum(c for c, _ in health.values())
    mm = sum(m for _, m in health.values())
    positions = []
    for p in view["positions"]:
        entry = {k: p[k] for k in ("market", "size", "entry_price", "mark_price", "notional",
                                   "initial_margin", "maintenance_margin",
                                   "liquidation_price", "unrealized_pnl", "volatility",
                                   "liquidation_probability")}
        entry["entry_price"] = entries.get(p["market"], p["entry_price"])
        now = _below(*health[p["row"]])
        entry["liquidatable"] = now
        entry["recovery_price"] = p["liquidation_price"] if now else None
        if now:
            entry["liquidation_price"] = None
            entry["liquidation_probability"] = "1"
        positions.append(entry)
    settles = {engine.venue.markets[p["market"]].settle for p in positions}
    held = {sym for sym in view["equity"]} | settles
    return {
        "venue": engine.venue.name,
        "mode": view["mode"],
        "liquidatable": bool(below),
        "equity": view["equity_usd"],
        "collateral": view["collateral_usd"],
        "initial_margin": view["initial_margin"],
        "maintenance_margin": view["maintenance_margin"],
        "margin_ratio": _margin_ratio(coll, mm),
        "maintenance_shortfall": format_number(sum(m - c for _, c, m in below)),
        "free_collateral": view["free_collateral"],
        "below_maintenance": [
            {"row": "account" if name == ACCOUNT else f"isolated {name.split('/', 1)[1]}",
             "collateral": format_number(c), "maintenance_margin": format_number(m)}
            for name, c, m in below],
        "asset_prices": asset_price_sources(engine, sorted(held)),
        "horizon": _horizon_label(horizon_text),
        "horizon_days": horizon,
        "positions": positions,
    }
