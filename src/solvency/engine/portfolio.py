"""Margin of one account from a portfolio description (``solvency margin FILE``).

The portfolio is loaded into a real :class:`~solvency.engine.engine.Engine` (collateral
deposited, positions seeded at their entry prices, marks applied), so the numbers it
prints are the engine's own: the same kernels, the same liquidation-price search.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from solvency.core.model.events import Deposit, EventError, Price, parse_ts_ms
from solvency.core.model.presets import PRESETS, preset_names, venue_from_data
from solvency.core.model.venue import ConfigError
from solvency.core.units import UnitError, parse_decimal
from solvency.engine.engine import Engine, RejectReason

__all__ = ["PortfolioError", "evaluate_portfolio", "load_portfolio_engine",
           "parse_horizon_days"]

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
            _apply(engine, Deposit(id=f"dep{i}", account=ACCOUNT, asset=asset, amount=q),
                   f"account.collateral.{asset}")
    positions = account.get("positions", [])
    if not isinstance(positions, list):
        raise PortfolioError("account.positions: expected a list")
    for i, pos in enumerate(positions):
        _seed(engine, _obj(pos, f"account.positions[{i}]"), mode, f"account.positions[{i}]")
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


def _seed(engine: Engine, pos: Mapping[str, Any], mode: str, path: str) -> None:
    extra = set(pos) - {"market", "size", "entry_price", "margin"}
    if extra:
        raise PortfolioError(f"{path}: unknown keys {sorted(extra)}")
    market = pos.get("market")
    if not isinstance(market, str):
        raise PortfolioError(f"{path}.market: required")
    inst = engine.venue.resolve(market)
    if inst is None:
        raise PortfolioError(f"{path}.market: unknown market {market!r}")
    if engine.book.marks[engine.book.market_index[inst.name]] is None:
        raise PortfolioError(f"{path}: no price given for market {market} in 'prices'")
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


def evaluate_portfolio(data: Mapping[str, Any], venue: str | None = None) -> dict[str, Any]:
    """Return the margin report of a portfolio (the ``solvency margin --json`` object).

    Numbers are decimal strings in USD, except ``positions[].size`` (contracts),
    ``liquidation_price`` (quote per base; ``null`` when no price liquidates),
    ``volatility`` (annualized) and ``liquidation_probability`` (0..1, the chance the
    mark touches the liquidation price within ``horizon``, default one day).
    """
    engine = load_portfolio_engine(data, venue)
    horizon = parse_horizon_days(data.get("horizon", "1d"))
    view = engine.account_view(ACCOUNT, horizon_days=horizon)
    return {
        "venue": engine.venue.name,
        "mode": view["mode"],
        "equity": view["equity_usd"],
        "collateral": view["collateral_usd"],
        "initial_margin": view["initial_margin"],
        "maintenance_margin": view["maintenance_margin"],
        "margin_ratio": view["margin_ratio"],
        "free_collateral": view["free_collateral"],
        "horizon_days": horizon,
        "positions": [
            {k: p[k] for k in ("market", "size", "entry_price", "mark_price", "notional",
                               "initial_margin", "maintenance_margin", "liquidation_price",
                               "unrealized_pnl", "volatility", "liquidation_probability")}
            for p in view["positions"]
        ],
    }
