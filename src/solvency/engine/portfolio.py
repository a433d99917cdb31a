"""Margin of one account from a portfolio description (``solvency margin FILE``).

The portfolio is loaded into a real :class:`~solvency.engine.engine.Engine` (collateral
deposited, positions seeded at their entry prices, marks applied), so the numbers it
prints are the engine's own: the same kernels, the same liquidation-price search.

The file's edge schema is :class:`PortfolioFile` (pydantic, unknown keys refused at every
depth, exact decimals), published as ``docs/schema/portfolio-v1.json``; ``solvency
greeks`` reads the same format.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any, Final, Literal, NamedTuple

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

from solvency.core.liquidation.bitmex import bitmex_isolated
from solvency.core.margin.kernels import OUT_COLLATERAL, OUT_MM, S_LOTS
from solvency.core.margin.models import TieredModel
from solvency.core.model.events import (
    AccountMode,
    Deposit,
    EventError,
    Fill,
    Price,
    Vol,
    Withdraw,
    parse_ts_ms,
)
from solvency.core.model.instruments import Instrument
from solvency.core.model.presets import PRESETS, preset_names, venue_from_data
from solvency.core.model.venue import ConfigError, margin_model_to_data, merge_config
from solvency.core.portfolio import ScenarioGrid
from solvency.core.schema import DecimalText, Num, format_errors
from solvency.core.units import UnitError, parse_decimal
from solvency.engine.base import format_number
from solvency.engine.engine import Engine, RejectReason
from solvency.engine.joint import JointError, JointSpec, joint_liquidation, terminal_probability
from solvency.engine.option_book import OptionMarketEntry
from solvency.engine.pretrade import Order

__all__ = ["PortfolioAccount", "PortfolioError", "PortfolioFile", "PortfolioPosition",
           "VenueFile",
           "asset_price_sources", "bitmex_liquidation", "evaluate_portfolio",
           "load_portfolio_engine", "max_order_size",
           "parse_horizon_days", "portfolio_model", "shock_table"]

ACCOUNT = "portfolio"


class PortfolioError(ValueError):
    """A portfolio file that cannot be evaluated, naming the file and the offending key."""


class VenueFile(NamedTuple):
    """A venue file that the caller has read (the engine does no IO): its path as given,
    and its parsed data (``{"preset": NAME, ...overrides}`` or a full venue). It takes
    the place of the portfolio's preset; the portfolio's ``markets`` overrides apply on
    top of it."""

    path: str
    data: Mapping[str, Any]


# ============================================================================ schema

_FORBID: Final = ConfigDict(extra="forbid", frozen=True)
_Name = Annotated[str, Strict(), StringConstraints(min_length=1)]
_Positive = Annotated[Decimal, Num(gt=0, text_ok=True)]
_NonNeg = Annotated[Decimal, Num(ge=0, text_ok=True)]
_OVERRIDE_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "not": {"required": ["type"]},  # an entry with a type is an option declaration
    "description": "Overrides of one of the venue's markets: the keys of a venue file's "
                   "market entry (checked by the venue's own rules), and open_interest "
                   "(base units, >= 0) for OI-scaled margin."}


def _markets_schema() -> dict[str, Any]:
    option = OptionMarketEntry.model_json_schema(mode="validation")
    option["title"] = "option market (solvency greeks)"
    return {"type": "object", "description": "Markets by name: an option declared for "
            "`solvency greeks`, or overrides of a venue market.",
            "additionalProperties": {"anyOf": [option, _OVERRIDE_SCHEMA]}}


class PortfolioPosition(BaseModel):
    """One entry of ``account.positions``: a net position in one market."""

    model_config = _FORBID
    market: _Name = Field(description="A market of the venue, or an option declared in "
                                      "markets (solvency greeks).")
    size: DecimalText = Field(description="Signed contracts: positive long, negative short.")
    entry_price: _Positive | None = Field(
        None, description="Average entry price (required by solvency margin).")
    margin: _Positive | None = Field(
        None, description="Margin of an isolated position (isolated accounts only).")


class PortfolioAccount(BaseModel):
    """The ``account`` table: margin mode, collateral and positions."""

    model_config = _FORBID
    mode: Literal["cross", "isolated", "portfolio"] = "cross"
    collateral: dict[str, _NonNeg] = Field(default_factory=dict,
                                           description="Deposited amount per asset.")
    positions: list[PortfolioPosition] = Field(default_factory=list)


class PortfolioFile(BaseModel):
    """A portfolio file of ``solvency margin`` and ``solvency greeks``, version 1.

    Numbers are exact decimals, written as JSON numbers or decimal strings (strings keep
    every digit whatever writes the file). Unknown keys are refused at every depth except
    inside a venue market's overrides, which the venue's own rules check.
    """

    model_config = _FORBID
    venue: _Name | None = Field(None, description="Venue preset (default binance), or "
                                                  "for solvency margin a venue file by "
                                                  "its path relative to this file; "
                                                  "--venue overrides it.")
    markets: Annotated[dict[str, dict[str, Any]], WithJsonSchema(_markets_schema())] = Field(
        default_factory=dict)
    prices: dict[str, _Positive] = Field(
        default_factory=dict, description="Mark price per market (or, for solvency "
                                          "greeks, per underlying).")
    account: PortfolioAccount
    now: Annotated[Any, WithJsonSchema({
        "anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}],
        "description": "Valuation time: ISO-8601 UTC (...Z) or epoch milliseconds."})] = None
    rate: DecimalText = Field(Decimal(0), description="Risk-free rate (solvency greeks).")
    vols: dict[str, _Positive] = Field(
        default_factory=dict, description="Implied volatility per option market "
                                          "(annualized, 0.6 = 60 %).")
    volatility: dict[str, _Positive] = Field(
        default_factory=dict, description="Annualized volatility per market, for the "
                                          "liquidation probability (solvency margin).")
    horizon: Annotated[Any, WithJsonSchema({
        "anyOf": [{"type": "string", "pattern": "^\\s*[0-9.]+[mhd]\\s*$"},
                  {"type": "number", "exclusiveMinimum": 0}],
        "description": "Horizon of the liquidation probability: 30m, 8h, 1d or days."})
    ] = None


def portfolio_model(data: object, *, source: str = "portfolio") -> PortfolioFile:
    """Validate a parsed portfolio file against :class:`PortfolioFile`.

    Raises
    ------
    PortfolioError
        ``source: dotted.key: what was expected``, one line per problem (a misspelt key
        is answered with the closest expected one).
    """
    try:
        return PortfolioFile.model_validate(data)
    except ValidationError as exc:
        raise PortfolioError(format_errors(source, exc, PortfolioFile)) from None


def _named(source: str, exc: ValueError) -> PortfolioError:
    text = str(exc)
    if isinstance(exc, ConfigError):
        # the venue's errors name keys of the venue data built from this file's markets
        text = text.removeprefix("venue: ")
    return PortfolioError(text if text.startswith(f"{source}: ") else f"{source}: {text}")


def _dec(value: object, path: str) -> Decimal:
    try:
        return parse_decimal(value, field=path)
    except UnitError as exc:
        raise PortfolioError(str(exc)) from None


def load_portfolio_engine(data: Mapping[str, Any], venue: str | None = None, *,
                          source: str = "portfolio", mode: str | None = None,
                          pm_grid: ScenarioGrid | None = None,
                          venue_file: VenueFile | None = None,
                          trades: Sequence[tuple[str, Decimal, Decimal | None]] = (),
                          moves: Sequence[tuple[str, Decimal]] = ()) -> Engine:
    """Build an engine holding the portfolio's account (see module docstring).

    ``data`` is the parsed file (schema :class:`PortfolioFile`, published as
    ``docs/schema/portfolio-v1.json``); ``source`` names it in error messages;
    ``venue_file`` replaces the preset (``venue`` and the file's ``venue`` are then
    not read). ``moves`` and then ``trades`` are applied as :func:`evaluate_portfolio`
    applies them, so the engine is the one its report describes.

    Raises
    ------
    PortfolioError
        ``source: dotted.key: what was wrong``.
    """
    engine = _load(portfolio_model(data, source=source), venue, source, mode, pm_grid,
                   venue_file=venue_file)
    _what_if(engine, moves, trades, source)
    return engine


def _load(m: PortfolioFile, venue: str | None, source: str, mode: str | None = None,
          pm_grid: ScenarioGrid | None = None, shock: Decimal = Decimal(0), *,
          venue_file: VenueFile | None = None) -> Engine:
    if mode is not None:
        if mode not in ("cross", "isolated", "portfolio"):
            raise PortfolioError(f"mode: {mode!r} is not one of cross, isolated, portfolio")
        m = m.model_copy(update={"account": m.account.model_copy(update={"mode": mode})})
    try:
        return _build(m, venue, pm_grid, shock, venue_file)
    except (PortfolioError, ConfigError) as exc:
        raise _named(source, exc) from None


def _build(m: PortfolioFile, venue: str | None,
           pm_grid: ScenarioGrid | None = None, shock: Decimal = Decimal(0),
           venue_file: VenueFile | None = None) -> Engine:
    venue_name = venue or m.venue or "binance"
    if venue_file is None and venue_name not in PRESETS:
        raise PortfolioError(f"venue: {venue_name!r} is not one of {preset_names()}")
    oi: dict[str, Decimal] = {}
    overrides: dict[str, Any] = {}
    for name, entry in m.markets.items():
        ov = dict(entry)
        if ov.get("type") == "option":
            raise PortfolioError(f"markets.{name}: options are valued by solvency greeks, "
                                 "not margined by solvency margin")
        if "open_interest" in ov:
            oi[name] = _dec(ov.pop("open_interest"), f"markets.{name}.open_interest")
            if oi[name] < 0:
                raise PortfolioError(f"markets.{name}.open_interest: must be >= 0")
        overrides[name] = ov
    if venue_file is None:
        v = venue_from_data({"preset": venue_name, "markets": overrides})
    else:  # the portfolio's overrides on top of the file's markets, key by key
        v = venue_from_data(merge_config(venue_file.data, {"markets": overrides}))
    portfolio = m.account.mode == "portfolio"
    if portfolio and pm_grid is None:
        raise PortfolioError("account.mode: portfolio margin needs a scenario grid "
                             "(--pm-grid NAME|FILE)")
    engine = Engine(v, pm_grid=pm_grid if portfolio else None)
    if m.now is not None:
        try:
            engine.clock_ms = parse_ts_ms(m.now)
        except EventError as exc:
            raise PortfolioError(f"now: {exc.detail}") from None
    _mark(engine, m, shock)
    _price_coins_by_inverse_markets(engine)
    account = m.account
    if portfolio:
        _apply(engine, AccountMode(id="mode", account=ACCOUNT, mode="portfolio",
                                   ts_ms=engine.clock_ms), "account.mode")
    else:
        engine.accounts[ACCOUNT] = account.mode
        engine.ensure_cross_row(ACCOUNT)
    for i, (asset, q) in enumerate(sorted(account.collateral.items())):
        if q > 0:
            _require_price(engine, asset, f"account.collateral.{asset}")
            _apply(engine, Deposit(id=f"dep{i}", account=ACCOUNT, asset=asset, amount=q),
                   f"account.collateral.{asset}")
    seen: dict[str, str] = {}
    for i, pos in enumerate(account.positions):
        _seed(engine, pos, account.mode, f"account.positions[{i}]", seen)
    for name, sigma in m.volatility.items():
        inst = engine.venue.resolve(name)
        if inst is None:
            raise PortfolioError(f"volatility.{name}: unknown market")
        engine.vol_var_annual[engine.book.market_index[inst.name]] = float(sigma) * float(sigma)
    for name, value in oi.items():
        inst = engine.venue.resolve(name)
        if inst is None:
            raise PortfolioError(f"markets.{name}: unknown market")
        mi = engine.book.market_index[inst.name]
        engine.book.set_oi(mi, int(value / inst.lot_size))
    return engine


def _mark(engine: Engine, m: PortfolioFile, shock: Decimal = Decimal(0)) -> None:
    """Apply the file's prices, underlyings before options (an option's mark needs its
    underlying's), then its option vols: a vol gives the option its Black-76 mark at the
    underlying's price and ``now``, as the engine marks options (ACT/365, rate 0).

    ``shock`` moves every price by that fraction (``-0.1``: -10 %), rounded half-even to
    the market's tick; options priced by a vol are re-marked at the moved underlying."""
    resolved = []
    for market, p in m.prices.items():
        inst = engine.venue.resolve(market)
        if inst is None:
            raise PortfolioError(f"prices.{market}: unknown market")
        if shock:
            if inst.kind == "option":
                raise PortfolioError(f"prices.{market}: an option's price cannot be "
                                     "shocked; give its vol in 'vols' so the shock "
                                     "re-prices it")
            tick = inst.tick_size
            p = max(tick, (p * (1 + shock) / tick).to_integral_value(ROUND_HALF_EVEN) * tick)
        resolved.append((inst.kind == "option", market, p))
    for i, (_, market, p) in enumerate(sorted(resolved)):
        _apply(engine, Price(id=f"px{i}", price=p, market=market), f"prices.{market}")
    if m.rate != 0:
        raise PortfolioError("rate: solvency margin marks options as the venue does, at "
                             "rate 0; 'rate' is read by solvency greeks")
    for i, (market, iv) in enumerate(sorted(m.vols.items())):
        inst = engine.venue.resolve(market)
        if inst is None:
            raise PortfolioError(f"vols.{market}: unknown market")
        if inst.kind != "option":
            raise PortfolioError(f"vols.{market}: not an option market (give its price "
                                 "in 'prices')")
        if market in m.prices or inst.name in m.prices:
            raise PortfolioError(f"vols.{market}: give the option's price or its vol, "
                                 "not both")
        if m.now is None:
            raise PortfolioError(f"vols.{market}: a vol needs 'now' (the valuation time "
                                 "that sets the option's time to expiry)")
        _apply(engine, Vol(id=f"iv{i}", market=inst.name, iv=iv, ts_ms=engine.clock_ms),
               f"vols.{market}")


def _apply(engine: Engine, event: Price | Deposit | Vol | AccountMode, path: str) -> None:
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


def _seed(engine: Engine, pos: PortfolioPosition, mode: str, path: str,
          seen: dict[str, str]) -> None:
    market = pos.market
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
    if pos.entry_price is None:
        raise PortfolioError(f"{path}.entry_price: missing (required)")
    size, entry = pos.size, pos.entry_price
    if mode != "isolated" and pos.margin is not None:
        raise PortfolioError(f"{path}.margin: only isolated positions carry their own margin")
    try:
        if mode == "isolated":
            if pos.margin is None:
                raise PortfolioError(f"{path}.margin: required for an isolated position")
            m_amt = pos.margin
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


def _given_entries(m: PortfolioFile, engine: Engine) -> dict[str, str]:
    """Entry price of each market as the file states it (one position per market)."""
    out: dict[str, str] = {}
    for pos in m.account.positions:
        inst = engine.venue.resolve(pos.market)
        if inst is not None and pos.entry_price is not None:
            out[inst.name] = str(pos.entry_price)
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


def evaluate_portfolio(data: Mapping[str, Any], venue: str | None = None, *,
                       source: str = "portfolio", mode: str | None = None,
                       pm_grid: ScenarioGrid | None = None,
                       shock: Decimal = Decimal(0),
                       trades: Sequence[tuple[str, Decimal, Decimal | None]] = (),
                       horizon: str | None = None, joint: JointSpec | None = None,
                       moves: Sequence[tuple[str, Decimal]] = (),
                       venue_file: VenueFile | None = None,
                       ) -> dict[str, Any]:
    """Return the margin report of a portfolio (the ``solvency margin --json`` object).

    Numbers are decimal strings in USD, except ``positions[].size`` (contracts),
    ``entry_price`` (as the file gives it), ``liquidation_price`` and ``recovery_price``
    (quote per base), ``volatility`` (annualized) and ``liquidation_probability`` (0..1,
    the chance the mark touches the liquidation price within ``horizon``, default one
    day). A margin row (the cross account, or one isolated position) whose collateral is
    below its maintenance margin is ``liquidatable`` now: its positions have no
    ``liquidation_price``, probability 1, and ``recovery_price``, the mark at which the
    row would be back at maintenance (``null`` if none).

    ``data`` is the parsed file (schema :class:`PortfolioFile`), ``source`` what it is
    called in error messages (the CLI passes its path). ``horizon`` (``"8h"``) overrides
    the file's. With ``joint``, the report adds ``joint_liquidation``: the probability that
    the account is liquidatable at the horizon's end under correlated moves of its markets
    (:func:`~solvency.engine.joint.joint_liquidation`), and each position its
    ``terminal_probability`` alone, for comparison. ``moves`` (``(asset, signed amount)``)
    move collateral into (positive) or out of (negative) the account before the
    ``trades``, as the engine's deposits and withdrawals (a withdrawal that would leave
    the account below initial margin is refused with the engine's reason).
    ``venue_file`` (a :class:`VenueFile`) replaces the preset.

    Raises
    ------
    PortfolioError
        ``source: dotted.key: what was wrong``.
    """
    m = portfolio_model(data, source=source)
    engine = _load(m, venue, source, mode, pm_grid, shock, venue_file=venue_file)
    _what_if(engine, moves, trades, source)
    horizon_text = horizon if horizon is not None else (
        m.horizon if m.horizon is not None else "1d")
    try:
        horizon_days = parse_horizon_days(horizon_text)
    except PortfolioError as exc:
        raise _named(source, exc) from None
    view = engine.account_view(ACCOUNT, horizon_days=horizon_days)
    health = _row_health(engine)
    entries = _given_entries(m, engine)
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
        if joint is not None:
            entry["terminal_probability"] = "1" if now else format_number(
                terminal_probability(float(p["mark_price"]), None if p["liquidation_price"]
                                     is None else float(p["liquidation_price"]),
                                     Decimal(p["size"]) > 0, float(p["volatility"]),
                                     horizon_days / 365.0))
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
        "horizon_days": horizon_days,
        "positions": positions,
        **({"joint_liquidation": _joint(engine, joint, horizon_days, source)}
           if joint is not None else {}),
        **({"portfolio_margin": _pm_breakdown(engine)}
           if engine.accounts.get(ACCOUNT) == "portfolio" else {}),
    }


def _joint(engine: Engine, joint: JointSpec, horizon_days: float,
           source: str) -> dict[str, Any]:
    try:
        out = joint_liquidation(engine, ACCOUNT, names=joint.names, matrix=joint.matrix,
                                horizon_days=horizon_days, paths=joint.paths,
                                seed=joint.seed)
    except JointError as exc:
        raise _named(source, PortfolioError(str(exc))) from None
    return {**out, "correlation_source": joint.source}


def _pm_breakdown(engine: Engine) -> dict[str, Any]:
    """The scenario-grid requirement of the account, part by part (``PortfolioMargin.
    breakdown``: the engine's own computation), money as decimal strings: USD, or a
    coin pool's coin (its ``pnl_currency``) with ``requirement_usd`` beside it."""
    b = engine.portfolio_margin.breakdown(engine.book, engine.ivs, engine.clock_ms or 0,
                                          engine.rows_of(ACCOUNT)[0])
    out: dict[str, Any] = {k: b[k] for k in ("grid", "title", "source", "combine")}
    out["mm_factor"] = format_number(b["mm_factor"])
    out["im_factor"] = format_number(b["im_factor"])
    out["maintenance_margin"] = format_number(b["maintenance_margin"])
    out["initial_margin"] = format_number(b["initial_margin"])
    out["pnl_currency"] = b["pnl_currency"]
    out["underlyings"] = [_pm_underlying(u) for u in b["underlyings"]]
    return out


def _pm_underlying(u: dict[str, Any]) -> dict[str, Any]:
    # a coin pool's losses and charges are in the coin: 10 significant digits (6
    # decimals would cut a BTC amount to 1e-6 BTC)
    money = format_number if u["pnl_currency"] == "USD" else (lambda x: f"{x:.10g}")
    return {
        "underlying": u["underlying"], "pnl_currency": u["pnl_currency"],
        "price": format_number(u["price"]), "price_range": format_number(u["price_range"]),
        "worst_scenario": u["worst_scenario"],
        **{k: money(u[k]) for k in ("scan_loss", "delta_charge", "roll_charge",
                                    "short_option_minimum", "requirement")},
        "requirement_usd": format_number(u["requirement_usd"]),
        "scenarios": [{"price_move": format_number(sc["price_move"]),
                       "vol_move": format_number(sc["vol_move"]),
                       "weight": format_number(sc["weight"]),
                       "loss": money(sc["loss"])} for sc in u["scenarios"]]}


_COUNTERPARTY: Final = "what-if-counterparty"


def _what_if(engine: Engine, moves: Sequence[tuple[str, Decimal]],
             trades: Sequence[tuple[str, Decimal, Decimal | None]], source: str) -> None:
    """Apply a portfolio's what-if collateral moves, then its trades, to ``engine``; a
    refusal names the portfolio file."""
    try:
        _move(engine, moves)
        _trade(engine, trades)
    except PortfolioError as exc:
        raise _named(source, exc) from None


def _move(engine: Engine, moves: Sequence[tuple[str, Decimal]]) -> None:
    """Move collateral into or out of the account through the engine's deposit and
    withdrawal (the venue's rule: a withdrawal must leave initial margin); a refused one
    is refused with the engine's reason."""
    for i, (asset, amount) in enumerate(moves):
        if asset not in engine.venue.assets:
            raise PortfolioError(f"--move {asset}: unknown asset; known: "
                                 f"{', '.join(sorted(engine.venue.assets))}")
        event: Deposit | Withdraw = (
            Deposit(id=f"whatif-move{i}", account=ACCOUNT, asset=asset, amount=amount,
                    ts_ms=engine.clock_ms) if amount > 0 else
            Withdraw(id=f"whatif-move{i}", account=ACCOUNT, asset=asset, amount=-amount,
                     ts_ms=engine.clock_ms))
        for o in engine.apply(event):
            if o.type == "rejected":
                raise PortfolioError(f"--move {asset}:{amount}: rejected "
                                     f"{getattr(o, 'reason', '')}: {getattr(o, 'detail', '')}")


def _trade(engine: Engine, trades: Sequence[tuple[str, Decimal, Decimal | None]]) -> None:
    """Book what-if trades as fills of the account against a funded counterparty, through
    the engine's own fill path (its checks, realized PnL, margin); a rejected one is
    refused with the engine's reason."""
    funded: set[str] = set()
    for i, (market, size, price) in enumerate(trades):
        inst = engine.venue.resolve(market)
        if inst is None:
            raise PortfolioError(f"--add {market}: unknown market")
        mark = engine.book.marks[engine.book.market_index[inst.name]]
        at = price if price is not None else mark
        if at is None:
            raise PortfolioError(f"--add {market}: no price for the market; give one "
                                 f"(--add {market}:{size}@PRICE) or a price in the file")
        if inst.settle not in funded:
            _apply(engine, Deposit(id=f"whatif-dep{i}", account=_COUNTERPARTY,
                                   asset=inst.settle, amount=Decimal(10**9),
                                   ts_ms=engine.clock_ms), f"--add {market}")
            funded.add(inst.settle)
        buyer, seller = (ACCOUNT, _COUNTERPARTY) if size > 0 else (_COUNTERPARTY, ACCOUNT)
        out = engine.apply(Fill(id=f"whatif{i}", market=inst.name, buyer=buyer,
                                seller=seller, size=abs(size), price=at,
                                ts_ms=engine.clock_ms))
        for o in out:
            if o.type == "rejected":
                raise PortfolioError(f"--add {market}:{size}: rejected "
                                     f"{getattr(o, 'reason', '')}: {getattr(o, 'detail', '')}")


def shock_table(data: Mapping[str, Any], shocks: list[Decimal], venue: str | None = None,
                *, source: str = "portfolio", mode: str | None = None,
                pm_grid: ScenarioGrid | None = None,
                venue_file: VenueFile | None = None) -> list[dict[str, Any]]:
    """The account under each price shock (every market's price moved by the same
    fraction, options priced by a vol re-marked; entries and collateral amounts as in the
    file): ``shock``, ``equity``, ``collateral``, ``maintenance_margin``,
    ``margin_ratio``, ``maintenance_shortfall``, ``liquidatable`` (the engine's own
    valuation of the moved book, :func:`evaluate_portfolio` at each shock)."""
    rows = []
    for shock in shocks:
        if not shock > -1:
            raise _named(source, PortfolioError(
                f"shock: {shock} must be above -100 %"))
        r = evaluate_portfolio(data, venue, source=source, mode=mode, pm_grid=pm_grid,
                               shock=shock, venue_file=venue_file)
        rows.append({"shock": str(shock), **{k: r[k] for k in (
            "equity", "collateral", "maintenance_margin", "margin_ratio",
            "maintenance_shortfall", "liquidatable")}})
    return rows


def _leverage_override(inst: Instrument, leverage: Decimal
                       ) -> tuple[dict[str, Any], Decimal | None]:
    """The market's tiers at a chosen leverage: initial margin ``notional / leverage`` in
    every bracket whose maximum leverage (``1 / imr``) allows it, and the notional cap
    where the first bracket that does not begins (None: every bracket allows it)."""
    if not isinstance(inst.margin, TieredModel):
        raise PortfolioError(f"--max-size {inst.name}@{leverage}: a chosen leverage applies "
                             "to a market of leverage brackets (tiered margin); give "
                             f"--max-size {inst.name} for the venue's own margin")
    data = margin_model_to_data(inst.margin)
    kept, cap = [], None
    for tier, t in zip(data["tiers"], inst.margin.tiers, strict=True):
        if t.imr * leverage > 1:
            cap = t.floor
            break
        kept.append({**tier, "imr": str(1 / leverage), "initial_amount": "0"})
    if not kept:
        raise PortfolioError(f"--max-size {inst.name}@{leverage}: above the market's "
                             f"maximum leverage {1 / inst.margin.tiers[0].imr:g}")
    return {"model": "tiered", "continuous_initial": data["continuous_initial"],
            "tiers": kept}, cap


def max_order_size(data: Mapping[str, Any], market: str, leverage: Decimal | None = None,
                   venue: str | None = None, *, source: str = "portfolio",
                   mode: str | None = None, pm_grid: ScenarioGrid | None = None,
                   venue_file: VenueFile | None = None) -> dict[str, Any]:
    """Return the largest buy and the largest sell the account can add in ``market`` at
    its mark, in whole lots, as the engine's own pre-trade check answers
    (:meth:`~solvency.engine.engine.Engine.preview_order`: free collateral after the order
    at the venue's tiered initial margin, its leverage brackets, position limits).

    With ``leverage`` (Binance's chosen leverage), the market's initial margin is
    ``notional / leverage`` (Binance: "Initial Margin = Notional Position Value /
    Leverage") in the brackets whose maximum leverage allows it, the engine margining the
    account with those tiers, and the position's notional may not pass the floor of the
    first bracket that does not (there the leverage must be lowered).

    The size is found by doubling then bisection on lots: ``size`` is accepted and one
    more lot is not, for the reason given in ``limited_by``. Each side is
    ``{"size", "notional", "limited_by", "detail"}`` (contracts, USD at the mark).

    Raises
    ------
    PortfolioError
        An unknown market, no price, or a leverage the market cannot take.
    """
    m = portfolio_model(data, source=source)
    engine = _load(m, venue, source, mode, pm_grid, venue_file=venue_file)
    inst = engine.venue.resolve(market)
    if inst is None:
        raise _named(source, PortfolioError(f"--max-size {market}: unknown market"))
    cap = None
    if leverage is not None:
        if not (leverage.is_finite() and leverage > 0):
            raise _named(source, PortfolioError(
                f"--max-size {market}@{leverage}: leverage must be > 0"))
        try:
            margin, cap = _leverage_override(inst, leverage)
        except PortfolioError as exc:
            raise _named(source, exc) from None
        entry = {**m.markets.get(inst.name, m.markets.get(market, {})), **margin}
        markets = {k: v for k, v in m.markets.items() if k not in (market, inst.name)}
        m = m.model_copy(update={"markets": {**markets, inst.name: entry}})
        engine = _load(m, venue, source, mode, pm_grid, venue_file=venue_file)
    mi = engine.book.market_index[inst.name]
    mark = engine.book.marks[mi]
    if mark is None:
        raise _named(source, PortfolioError(f"--max-size {market}: no price for the "
                                            "market in 'prices'"))
    book = engine.book
    held = Decimal(sum(int(book.st[book.slot_of(r, mi), S_LOTS]) for r in
                       engine.rows_of(ACCOUNT) if book.slot_of(r, mi) >= 0))
    out: dict[str, Any] = {"market": inst.name, "price": str(mark),
                           "leverage": None if leverage is None else str(leverage),
                           "notional_cap": None if cap is None else str(cap)}
    for side in ("buy", "sell"):
        out[side] = _largest(engine, inst, side, held, mark, cap)
    return out


def _notional_usd(inst: Instrument, contracts: Decimal, mark: Decimal) -> Decimal:
    """Quote notional of ``contracts`` (inverse contracts are quote-valued)."""
    if inst.is_inverse:
        return abs(contracts) * inst.contract_size
    return abs(contracts) * inst.contract_size * mark


def _largest(engine: Engine, inst: Instrument, side: Literal["buy", "sell"], held_lots: Decimal,
             mark: Decimal, cap: Decimal | None) -> dict[str, Any]:
    sign = 1 if side == "buy" else -1

    def verdict(lots: int) -> tuple[str, str]:
        after = (held_lots + sign * lots) * inst.lot_size
        if cap is not None and _notional_usd(inst, after, mark) > cap:
            return ("leverage_bracket", f"position notional after above {cap}, where the "
                    "chosen leverage exceeds the bracket's maximum")
        _, reason, detail = engine.preview_order(Order(
            id="max-size", account=ACCOUNT, market=inst.name, side=side,
            size=lots * inst.lot_size))
        return reason, detail

    hi = 1
    while not verdict(hi)[0]:
        hi *= 2
    lo = hi // 2  # accepted (0: none is)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if verdict(mid)[0]:
            hi = mid
        else:
            lo = mid
    reason, detail = verdict(lo + 1)
    size = lo * inst.lot_size
    return {"size": str(size), "notional": str(_notional_usd(inst, size, mark)),
            "limited_by": reason, "detail": detail}


def bitmex_liquidation(data: Mapping[str, Any], venue: str | None = None, *,
                       source: str = "portfolio", taker_fee: Decimal = Decimal("0.00075"),
                       funding_rate: Decimal = Decimal(0)) -> dict[str, Any]:
    """BitMEX's own liquidation and bankruptcy prices of each isolated position, the taker
    fee to close and the funding to the next settlement included
    (:func:`solvency.core.liquidation.bitmex.bitmex_isolated`; ``solvency margin --fees``).

    Each position's ``margin`` is its ``posMargin`` (initial margin and the reserved fee
    to close); the maintenance rate is that of the BitMEX risk limit holding the
    position's entry value. Amounts are in the settlement asset.

    Raises
    ------
    PortfolioError
        Another venue, or an account not in isolated mode.
    """
    m = portfolio_model(data, source=source)
    name = venue or m.venue or "binance"
    if name != "bitmex":
        raise _named(source, PortfolioError(
            f"--fees: BitMEX's liquidation price with fees and funding; the venue is "
            f"{name} (give --venue bitmex)"))
    if m.account.mode != "isolated":
        raise _named(source, PortfolioError(
            "--fees: BitMEX's formula is for isolated positions (account.mode isolated, "
            "each position with its margin)"))
    if not (taker_fee.is_finite() and 0 <= taker_fee < 1 and funding_rate.is_finite()
            and abs(funding_rate) < 1):
        raise _named(source, PortfolioError("--taker-fee in [0, 1) and --funding-rate in "
                                            "(-1, 1)"))
    engine = _load(m, venue, source)
    view = {p["market"]: p for p in engine.account_view(ACCOUNT)["positions"]}
    rows = []
    for pos in m.account.positions:
        inst = engine.venue.resolve(pos.market)
        assert inst is not None and pos.entry_price is not None and pos.margin is not None
        decimals = engine.venue.assets[inst.settle].decimals
        scale = 10 ** decimals
        cost_units = abs(pos.size) * inst.contract_size * (
            1 / pos.entry_price if inst.is_inverse else pos.entry_price)
        assert isinstance(inst.margin, TieredModel)
        tier = [t for t in inst.margin.tiers if t.floor <= cost_units][-1]
        margin_q = int((pos.margin * scale).to_integral_value(ROUND_HALF_EVEN))
        b = bitmex_isolated(pos.size, pos.entry_price, margin_q, inverse=inst.is_inverse,
                            contract_size=inst.contract_size, scale=scale,
                            tick=inst.tick_size, mmr=tier.mmr, taker_fee=taker_fee,
                            funding_rate=funding_rate)

        def units(q: int, d: int = decimals) -> str:
            return str(Decimal(q).scaleb(-d))

        rows.append({
            "market": inst.name, "settle": inst.settle, "size": str(pos.size),
            "entry_price": str(pos.entry_price), "maintenance_rate": str(tier.mmr),
            "cost": units(b.cost), "margin": units(b.margin),
            "commission": units(b.commission), "funding": units(b.funding),
            "maintenance": units(b.maintenance),
            "liquidation_price": None if b.liquidation_price is None
            else str(b.liquidation_price),
            "bankrupt_price": None if b.bankrupt_price is None else str(b.bankrupt_price),
            "engine_liquidation_price": view[inst.name]["liquidation_price"]})
    return {"taker_fee": str(taker_fee), "funding_rate": str(funding_rate),
            "positions": rows}
