"""``solvency margin`` (one venue or several), ``solvency rebalance``, ``solvency replay``
and ``solvency venues``."""

from __future__ import annotations

import json
from decimal import Decimal
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from solvency.adapters.correlation import (
    CorrelationError,
    estimate_correlation,
    load_correlation,
)
from solvency.adapters.eventlog import (
    LineError,
    load_json_file,
    load_venue,
    read_events,
    write_events,
)
from solvency.adapters.grids import load_grid
from solvency.adapters.risk_report import bad_debt_from_sweep
from solvency.cli.tables import print_table
from solvency.core.liquidation.policy import policy_to_data
from solvency.core.model.events import Rejected
from solvency.core.model.presets import PRESETS, load_preset, preset_names
from solvency.core.model.venue import ConfigError, margin_model_to_data
from solvency.core.portfolio import GridError
from solvency.engine.engine import Engine, EngineError
from solvency.engine.joint import JointSpec
from solvency.engine.multivenue import (
    DEFAULT_CONFIDENCE,
    evaluate_venues,
    is_multi_venue,
    option_liquidation_underlying,
    rebalance_venues,
)
from solvency.engine.portfolio import (
    PortfolioError,
    VenueFile,
    bitmex_liquidation,
    evaluate_portfolio,
    load_portfolio_engine,
    max_order_size,
    parse_horizon_days,
    shock_table,
)
from solvency.engine.summary import account_entries, replay_summary

__all__ = ["DEMO_EVENTS", "file_venue", "margin", "rebalance", "replay", "replay_summary",
           "venue_option", "venues"]

console = Console()
err = Console(stderr=True)

DEMO_EVENTS = "demo_events.jsonl"
LIQUIDATABLE_EXIT = 4
"""`solvency margin`: the account is already below maintenance (docs/cli.md)."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")  # [..] in a message is text
    return typer.Exit(code)


def margin(
    portfolio: Annotated[Path, typer.Argument(help="Portfolio JSON file.")],
    venue: Annotated[str | None, typer.Option(
        help="Venue preset or venue file (overrides the file's venue).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    mode: Annotated[MarginMode | None, typer.Option(
        "--mode", help="Margin mode (overrides the file's account.mode).")] = None,
    pm_grid: Annotated[str, typer.Option(
        "--pm-grid", help="Scenario grid of portfolio mode: a shipped name (deribit_pm, "
                          "cme_span_16, paradex_pm) or a grid TOML file.")] = "deribit_pm",
    shock: Annotated[str | None, typer.Option(
        "--shock", help="Price shocks to value the account under, all markets at once: "
                        "'-10%,-20%,-30%' or '-0.1,0.05'.")] = None,
    add: Annotated[list[str] | None, typer.Option(
        "--add", help="What-if trade MARKET:SIZE[@PRICE] (signed size, at the mark when "
                      "no price), booked through the engine before the report; "
                      "repeatable.")] = None,
    move: Annotated[list[str] | None, typer.Option(
        "--move", help="What-if collateral move ASSET:AMOUNT (positive: deposited into "
                       "the account, negative: withdrawn, refused below initial margin), "
                       "before any --add; repeatable.")] = None,
    horizon: Annotated[str | None, typer.Option(
        "--horizon", help="Horizon of the liquidation probabilities: 30m, 8h, 1d "
                          "(overrides the file's).")] = None,
    corr: Annotated[str | None, typer.Option(
        "--corr", help="Joint probability of liquidation under correlated moves: a JSON "
                       "file {markets, matrix}, or 'estimate' (from --corr-prices).")
    ] = None,
    corr_prices: Annotated[list[str] | None, typer.Option(
        "--corr-prices", help="MARKET=FILE: a market's OHLCV CSV for --corr estimate; "
                              "repeatable.")] = None,
    paths: Annotated[int, typer.Option(
        "--paths", min=1, help="Monte Carlo scenarios of --corr.")] = 100_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --corr's scenarios.")] = 0,
    fees: Annotated[bool, typer.Option(
        "--fees", help="bitmex, isolated: BitMEX's liquidation price with the taker fee to "
                       "close and the funding to the next settlement.")] = False,
    taker_fee: Annotated[str, typer.Option(
        "--taker-fee", help="Taker fee rate of --fees (XBTUSD: 0.00075).")] = "0.00075",
    funding_rate: Annotated[str, typer.Option(
        "--funding-rate", help="Next funding rate of --fees (positive: longs pay).")] = "0",
    max_size: Annotated[list[str] | None, typer.Option(
        "--max-size", help="MARKET[@LEVERAGE]: the largest buy and sell the account can "
                           "add at the mark (venue's tiered margin, or notional / "
                           "LEVERAGE within the brackets allowing it); repeatable.")
    ] = None,
) -> None:
    """Margin, liquidation prices and free collateral of one account.

    In portfolio mode the report adds the scenario grid's breakdown: per underlying the
    loss of every scenario, the worst one, each charge (delta, roll, short-option
    minimum) and the requirement. Exits 4 (after printing the full report) when the
    account, or one of its isolated positions, is already below maintenance margin.
    """
    try:
        given = venue_option(venue)
        data = load_json_file(portfolio)
        if is_multi_venue(data):
            _margin_venues(data, portfolio, as_json, horizon,
                           _joint_spec(corr, corr_prices or [], paths, seed), single_options={
                "--venue": venue, "--mode": mode, "--shock": shock, "--add": add,
                "--move": move, "--fees": fees or None, "--max-size": max_size})
            return
        venue, vfile = given if given is not None else (None, file_venue(data, portfolio))
        grid = load_grid(pm_grid)
        mode_value = None if mode is None else mode.value
        trades = [_parse_trade(t) for t in add or []]
        moves = [_parse_move(t) for t in move or []]
        joint = _joint_spec(corr, corr_prices or [], paths, seed)
        report = evaluate_portfolio(data, venue, source=str(portfolio), mode=mode_value,
                                    pm_grid=grid, trades=trades, horizon=horizon,
                                    joint=joint, moves=moves, venue_file=vfile)
        option_liquidation_underlying(report, load_portfolio_engine(
            data, venue, source=str(portfolio), mode=mode_value, pm_grid=grid,
            venue_file=vfile, trades=trades, moves=moves))
        if moves:
            report["what_if_collateral"] = [{"asset": a, "amount": str(q)} for a, q in moves]
        if trades:
            report["what_if"] = [{"market": m_, "size": str(q), "price": None if p is None
                                  else str(p)} for m_, q, p in trades]
        if fees:
            if vfile is not None:
                raise PortfolioError(f"--fees: BitMEX's own formula; the venue is the file "
                                     f"{vfile.path} (give --venue bitmex)")
            report["bitmex_fees"] = bitmex_liquidation(
                data, venue, source=str(portfolio), taker_fee=_rate(taker_fee, "--taker-fee"),
                funding_rate=_rate(funding_rate, "--funding-rate"))
        if max_size:
            report["max_size"] = [
                max_order_size(data, mkt, lev, venue, source=str(portfolio),
                               mode=mode_value, pm_grid=grid, venue_file=vfile)
                for mkt, lev in (_parse_max_size(t) for t in max_size)]
        if shock is not None:
            report["shocks"] = shock_table(data, _parse_shocks(shock), venue,
                                           source=str(portfolio), mode=mode_value,
                                           pm_grid=grid, venue_file=vfile)
    except (ConfigError, PortfolioError, GridError, CorrelationError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_margin(report)
        if "joint_liquidation" in report:
            _print_joint(report)
        if "portfolio_margin" in report:
            _print_pm(report["portfolio_margin"])
        if "shocks" in report:
            _print_shocks(report["shocks"])
        if "max_size" in report:
            _print_max_size(report["max_size"])
        if "bitmex_fees" in report:
            _print_bitmex(report["bitmex_fees"])
    if report["liquidatable"]:
        raise typer.Exit(LIQUIDATABLE_EXIT)


def _read_venue_file(path: Path, name: str, key: str) -> VenueFile:
    """A venue file (JSON or TOML) that a ``venue`` names, read and checked by the venue
    file's rules; every error is keyed ``key`` (exit 2)."""
    if not path.is_file():
        raise PortfolioError(f"{key}: unknown venue {name!r}: neither a preset "
                             f"({', '.join(preset_names())}) nor a file ({path} not found)")
    try:
        venue_data = load_json_file(path)
        if not isinstance(venue_data, dict):
            raise ConfigError(f"{path}: a venue file must hold an object")
        load_venue(str(path))  # the venue file's own rules, its errors keyed by its path
    except ConfigError as exc:
        raise PortfolioError(f"{key}: {exc}") from None
    return VenueFile(str(path), venue_data)


def venue_option(venue: str | None) -> tuple[str | None, VenueFile | None] | None:
    """``--venue NAME|FILE`` of a single-venue file (``None``: not given)."""
    if venue is None:
        return None
    if venue in PRESETS:
        return venue, None
    return None, _read_venue_file(Path(venue), venue, "--venue")


def file_venue(data: Any, portfolio: Path) -> VenueFile | None:
    """A single-venue file's ``venue`` when it names a venue file (relative to the
    portfolio file's folder); ``None`` for a preset or none."""
    name = data.get("venue") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name or name in PRESETS:
        return None
    return _read_venue_file(portfolio.parent / name, name, f"{portfolio}: venue")


def venue_files(data: Any, portfolio: Path) -> dict[int, VenueFile]:
    """Read the venue file of each entry of a multi-venue file whose ``venue`` is not a
    preset: a JSON or TOML venue file by its path relative to the portfolio file's
    folder (an absolute path stays itself). A missing or bad file is refused as
    ``venues[i].venue``."""
    entries = data.get("venues") if isinstance(data, dict) else None
    out: dict[int, VenueFile] = {}
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        name = entry.get("venue") if isinstance(entry, dict) else None
        if isinstance(name, str) and name and name not in PRESETS:
            out[i] = _read_venue_file(portfolio.parent / name, name,
                                      f"{portfolio}: venues[{i}].venue")
    return out


def _margin_venues(data: Any, portfolio: Path, as_json: bool, horizon: str | None,
                   corr: JointSpec | None, *, single_options: dict[str, Any]) -> None:
    """``solvency margin`` on a multi-venue file: each venue's report, then the
    liquidation ladder (solvency.engine.multivenue; docs/contagion.md), with ``corr``
    the other underlyings moving with each one."""
    for flag, value in single_options.items():
        if value:
            raise PortfolioError(f"{flag}: applies to a single-venue file, not to one "
                                 "with 'venues'")
    report = evaluate_venues(data, source=str(portfolio), horizon=horizon,
                             venue_files=venue_files(data, portfolio), corr=corr)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        for v in report["venues"]:
            console.print(f"[bold]{escape(v['name'])}[/]")
            _print_margin(v)
        _print_ladder(report)
    if report["liquidatable"]:
        raise typer.Exit(LIQUIDATABLE_EXIT)


def rebalance(
    portfolio: Annotated[Path, typer.Argument(help="Multi-venue portfolio JSON file "
                                                   "(a 'venues' list).")],
    delay: Annotated[str | None, typer.Option(
        "--delay", help="Transfer time (30m, 8h, 1d): the withdrawal leaves at once, the "
                        "deposit lands after it, while the price may move (see "
                        "--move-during-delay, --confidence).")] = None,
    move_during_delay: Annotated[str | None, typer.Option(
        "--move-during-delay", help="The price move, either way, allowed while a "
                                    "transfer travels: '15%' or '0.15' (default: the "
                                    "underlying's volatility over the delay at "
                                    "--confidence).")] = None,
    confidence: Annotated[float | None, typer.Option(
        "--confidence", help="--delay without --move-during-delay: the move touched with "
                             "probability 1 - CONFIDENCE within the delay (default "
                             f"{DEFAULT_CONFIDENCE}).")] = None,
    corr: Annotated[str | None, typer.Option(
        "--corr", help="Correlation of the underlyings (a JSON file {markets, matrix}, or "
                       "'estimate' from --corr-prices): each ladder moves the others "
                       "by their beta, as solvency margin --corr does.")] = None,
    corr_prices: Annotated[list[str] | None, typer.Option(
        "--corr-prices", help="MARKET=FILE: a market's OHLCV CSV for --corr estimate; "
                              "repeatable.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Collateral transfers between venues that maximize the smallest distance to
    liquidation, each withdrawal leaving the venue's initial margin, with the
    liquidation ladder before and after (docs/contagion.md)."""
    try:
        data = load_json_file(portfolio)
        if not is_multi_venue(data):
            raise PortfolioError(f"{portfolio}: venues: missing (rebalance needs a "
                                 "multi-venue file)")
        days = None if delay is None else parse_horizon_days(delay)
        if days is None and move_during_delay is not None:
            raise PortfolioError("--move-during-delay: needs --delay")
        move = None if move_during_delay is None else _delay_move(move_during_delay)
        if confidence is not None:
            if days is None:
                raise PortfolioError("--confidence: needs --delay")
            if move is not None:
                raise PortfolioError("--confidence: sets the move during the delay from "
                                     "the volatility; --move-during-delay gives it: one "
                                     "or the other")
            if not 0.0 < confidence < 1.0:
                raise PortfolioError(f"--confidence {confidence}: must be in (0, 1)")
        report = rebalance_venues(data, source=str(portfolio), delay_days=days,
                                  move_during_delay=move,
                                  confidence=(DEFAULT_CONFIDENCE if confidence is None
                                              else confidence),
                                  venue_files=venue_files(data, portfolio),
                                  corr=_joint_spec(corr, corr_prices or [], 1, 0))
    except (ConfigError, PortfolioError, CorrelationError) as exc:
        raise _fail(str(exc).replace("horizon:", "--delay:", 1)) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title="Transfers (stablecoins taken 1:1)")
    for col in ("from", "to", "amount"):
        table.add_column(col, justify="right" if col == "amount" else "left")
    for t in report["transfers"]:
        table.add_row(f"{t['from']} ({t['from_asset']})", f"{t['to']} ({t['to_asset']})",
                      t["amount"])
    if report["transfers"]:
        print_table(console, table)
    else:
        console.print("No transfer raises the smallest distance to liquidation.",
                      markup=False)
    dist = Table(title="Distance to liquidation (fraction of the mark, either way)")
    for col in ("venue", "before", "after"):
        dist.add_column(col, justify="left" if col == "venue" else "right")
    for name, d in report["distance_before"].items():
        dist.add_row(name, d, report["distance_after"][name])
    dist.add_row("smallest", report["min_distance_before"], report["min_distance_after"])
    print_table(console, dist)
    if "min_distance_during" in report:
        _print_landing(report, delay)
    console.print("[bold]Before[/]")
    _print_ladder(report["before"])
    console.print("[bold]After[/]")
    _print_ladder(report["after"])


def _delay_move(text: str) -> Decimal:
    """'15%' or '0.15' -> 0.15, exact; a fraction in (0, 1)."""
    raw = text.strip()
    pct = raw.endswith("%")
    value = _rate(raw[:-1] if pct else raw, "--move-during-delay")
    value = value / 100 if pct else value
    if not 0 < value < 1:
        raise PortfolioError(f"--move-during-delay {text!r}: must be between 0 and 100 %")
    return value


def _print_landing(report: dict[str, Any], delay: str | None) -> None:
    console.print(f"During the transfer ({delay}): smallest distance "
                  f"{report['min_distance_during']} (the withdrawals have left, the "
                  "deposits have not landed)", markup=False)
    for name, sides in report["lost_in_flight"].items():
        console.print(f"{name}: liquidated before a transfer could land ({', '.join(sides)} "
                      "within the move during the delay); left out of the rebalance",
                      markup=False)
    table = Table(title=f"At landing ({delay}), after the move during the delay")
    for col in ("underlying", "side", "move", "liquidated in flight",
                "then (venue: move from today, further move from landing)", "move from"):
        table.add_column(col, justify="right" if col == "move" else "left")
    for base, land in report["landing"].items():
        for side in ("down", "up"):
            s = land[side]
            rest = "; ".join(f"{st['venue']}: {st['move']}, {st['from_landing']}"
                             for st in s["ladder"])
            table.add_row(base, side, s["move"], ", ".join(s["liquidated_in_flight"]) or "-",
                          rest or "-", land["source"])
    print_table(console, table)
    kept = report["min_distance_kept"]
    console.print("Smallest distance after, over the venues not lost in flight: "
                  + (kept if kept is not None else
                     "none: every venue is liquidated before a transfer could land"),
                  markup=False)


def _print_ladder(report: dict[str, Any]) -> None:
    for base, others in report.get("ladder_comove", {}).items():
        if others:
            console.print(f"Ladder of {base}: " + ", ".join(
                f"{o} log move x {beta}" for o, beta in others.items())
                + f" (correlation {report['correlation_source']})", markup=False)
    for base, sides in report["ladder"].items():
        for side, steps in sides.items():
            table = Table(title=f"Liquidation ladder: {base} {side} (scan "
                                f"+-{report['ladder_range']} in steps of "
                                f"{report['ladder_step']}, crossings refined)")
            for col in ("#", "venue", "move", "prices", "fee rate", "closed notional",
                        "cost", "others then (margin ratio, further move to liq.)"):
                table.add_column(col, justify="left" if col in ("venue", "prices") or
                                 col.startswith("others") else "right")
            for i, st in enumerate(steps, 1):
                others = "; ".join(
                    f"{o['venue']}: " + ("liquidated" if o["liquidated"] else
                                         f"{o['margin_ratio'] or 'none'}, "
                                         f"{o['distance'] or 'none in range'}")
                    for o in st["others"])
                table.add_row(str(i), st["venue"], st["move"],
                              ", ".join(f"{k} {v}" for k, v in st["prices"].items()),
                              st["liquidation_fee_rate"], st["closed_notional"],
                              st["cost"], others or "-")
            if not steps:
                console.print(f"Liquidation ladder: {base} {side}: no venue liquidated "
                              f"within +-{report['ladder_range']}", markup=False)
            else:
                print_table(console, table)


def _joint_spec(corr: str | None, prices: list[str], paths: int,
                seed: int) -> JointSpec | None:
    if corr is None:
        if prices:
            raise PortfolioError("--corr-prices: used only with --corr estimate")
        return None
    if corr != "estimate":
        if prices:
            raise PortfolioError("--corr-prices: used only with --corr estimate")
        return load_correlation(Path(corr), paths=paths, seed=seed)
    files: dict[str, Path] = {}
    for item in prices:
        name, sep, file = item.partition("=")
        if not sep or not name.strip() or not file.strip():
            raise PortfolioError(f"--corr-prices {item!r}: expected MARKET=FILE")
        files[name.strip()] = Path(file.strip())
    return estimate_correlation(files, paths=paths, seed=seed)


def _print_joint(report: dict[str, Any]) -> None:
    j = report["joint_liquidation"]
    table = Table(title=f"Probability of liquidation within {report['horizon']} "
                        "(terminal: below maintenance at the horizon's end)")
    table.add_column("market")
    table.add_column("volatility", justify="right")
    table.add_column("alone (terminal)", justify="right")
    table.add_column("alone (first passage)", justify="right")
    vols = dict(zip(j["markets"], j["volatility"], strict=True))
    for p in report["positions"]:
        table.add_row(p["market"], vols.get(p["market"], p["volatility"]),
                      p["terminal_probability"], p["liquidation_probability"])
    table.add_row("account, jointly", "", j["probability"], "")
    print_table(console, table)
    console.print(f"joint: {j['probability']} +/- {j['standard_error']} (Monte Carlo, "
                  f"{j['paths']} scenarios, seed {j['seed']}); correlation of "
                  f"{', '.join(j['markets'])}: {j['correlation']} ({j['correlation_source']})",
                  markup=False, highlight=False, soft_wrap=True)


def _rate(text: str, flag: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except ArithmeticError:
        raise PortfolioError(f"{flag} {text!r}: not a number") from None
    if not value.is_finite():
        raise PortfolioError(f"{flag} {text!r}: not a finite number")
    return value


def _print_bitmex(b: dict[str, Any]) -> None:
    table = Table(title=f"BitMEX liquidation with fees and funding (taker {b['taker_fee']}, "
                        f"funding {b['funding_rate']}; amounts in the settlement asset)")
    for col in ("market", "size", "entry", "cost", "margin", "fee to close", "funding",
                "maintenance", "liq. price", "bankrupt", "engine liq. (no fees)"):
        table.add_column(col, justify="left" if col == "market" else "right")
    for p in b["positions"]:
        table.add_row(p["market"], p["size"], p["entry_price"], p["cost"], p["margin"],
                      p["commission"], p["funding"], p["maintenance"],
                      p["liquidation_price"] or "none", p["bankrupt_price"] or "none",
                      p["engine_liquidation_price"] or "none")
    print_table(console, table)


def _parse_max_size(text: str) -> tuple[str, Decimal | None]:
    """'BTC-PERP' or 'BTC-PERP@20' -> (market, leverage or None)."""
    market, at, lev_text = text.partition("@")
    lev = None
    if at:
        try:
            lev = Decimal(lev_text.strip())
        except ArithmeticError:
            lev = Decimal("NaN")
        if not (lev.is_finite() and lev > 0):
            raise PortfolioError(f"--max-size {text!r}: expected MARKET[@LEVERAGE], a "
                                 "leverage > 0")
    if not market.strip():
        raise PortfolioError(f"--max-size {text!r}: expected MARKET[@LEVERAGE]")
    return market.strip(), lev


def _print_max_size(rows: list[dict[str, Any]]) -> None:
    table = Table(title="Largest order the account can add at the mark (contracts; "
                        "notional USD)")
    for col in ("market", "leverage", "side", "size", "notional", "limited by"):
        table.add_column(col, justify="left" if col in ("market", "limited by") else "right")
    for r in rows:
        for side in ("buy", "sell"):
            s = r[side]
            table.add_row(r["market"], r["leverage"] or "venue tiers", side, s["size"],
                          s["notional"], f"{s['limited_by']}: {s['detail']}")
    print_table(console, table)


def _parse_trade(text: str) -> tuple[str, Decimal, Decimal | None]:
    """'BTC-PERP:0.5' or 'BTC-PERP:-0.5@98000' -> (market, signed size, price or None)."""
    market, sep, rest = text.partition(":")
    size_text, at, price_text = rest.partition("@")
    try:
        size = Decimal(size_text.strip())
        price = Decimal(price_text.strip()) if at else None
    except ArithmeticError:
        size = Decimal("NaN")
        price = None
    if (not sep or not market.strip() or not size.is_finite() or size == 0
            or (price is not None and not (price.is_finite() and price > 0))):
        raise PortfolioError(f"--add {text!r}: expected MARKET:SIZE[@PRICE], a non-zero "
                             "signed size and a positive price")
    return market.strip(), size, price


def _parse_move(text: str) -> tuple[str, Decimal]:
    """'USDT:-500' -> ('USDT', Decimal('-500')); refused with the text when malformed."""
    asset, sep, amount_text = text.partition(":")
    try:
        amount = Decimal(amount_text.strip())
    except ArithmeticError:
        amount = Decimal("NaN")
    if not sep or not asset.strip() or not amount.is_finite() or amount == 0:
        raise PortfolioError(f"--move {text!r}: expected ASSET:AMOUNT, a non-zero signed "
                             "amount (positive: deposit, negative: withdrawal)")
    return asset.strip(), amount


def _parse_shocks(text: str) -> list[Decimal]:
    """'-10%,-20%' or '-0.1,0.05' -> fractions, exact; refused with the bad item."""
    out = []
    for item in text.split(","):
        raw = item.strip()
        pct = raw.endswith("%")
        try:
            value = Decimal(raw[:-1] if pct else raw)
        except ArithmeticError:
            raise PortfolioError(f"--shock: {raw!r} is not a number") from None
        if not value.is_finite():
            raise PortfolioError(f"--shock: {raw!r} is not a finite number")
        out.append(value / 100 if pct else value)
    return out


def _print_shocks(rows: list[dict[str, Any]]) -> None:
    table = Table(title="Under price shocks (every market moved at once; USD)")
    for col in ("shock", "equity", "collateral", "maintenance margin", "margin ratio",
                "shortfall", "liquidatable"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{Decimal(r['shock']) * 100:+}%", r["equity"], r["collateral"],
                      r["maintenance_margin"], r["margin_ratio"] or "none",
                      r["maintenance_shortfall"], "yes" if r["liquidatable"] else "no")
    print_table(console, table)


class MarginMode(StrEnum):
    cross = "cross"
    isolated = "isolated"
    portfolio = "portfolio"


def _print_pm(pm: dict[str, Any]) -> None:
    coin = pm.get("pnl_currency") == "coin"
    unit = "losses and charges in each row's P&L currency, requirement USD at its " \
        "price" if coin else "USD"
    parts = Table(title=f"Portfolio margin ({pm['grid']}, {pm['combine']}; {unit})")
    cols = ["underlying", "price", "worst scenario", "scan loss", "delta", "roll",
            "short option min.", "requirement"]
    for col in cols[:1] + (["P&L in"] if coin else []) + cols[1:] + (
            ["requirement USD"] if coin else []):
        parts.add_column(col, justify="right")
    for u in pm["underlyings"]:
        worst = u["worst_scenario"]
        sc = u["scenarios"][worst] if worst >= 0 else None
        label = "none" if sc is None else (
            f"#{worst}: price {float(sc['price_move']):+.2%}, vol {sc['vol_move']}")
        cells = [u["underlying"], u["price"], label, u["scan_loss"], u["delta_charge"],
                 u["roll_charge"], u["short_option_minimum"], u["requirement"]]
        if coin:
            cells = [cells[0], u["pnl_currency"], *cells[1:], u["requirement_usd"]]
        parts.add_row(*cells)
    print_table(console, parts)
    console.print(f"maintenance margin {pm['maintenance_margin']} (x mm_factor "
                  f"{pm['mm_factor']}), initial {pm['initial_margin']} (x im_factor "
                  f"{pm['im_factor']}); every scenario's loss in --json", markup=False,
                  highlight=False, soft_wrap=True)


def _print_margin(report: dict[str, Any]) -> None:
    summary = Table(title=f"Account margin ({report['venue']}, {report['mode']})")
    cols = ("equity", "collateral", "initial_margin", "maintenance_margin", "margin_ratio",
            "free_collateral")
    for col in cols:
        summary.add_column(col.replace("_", " "), justify="right")
    summary.add_row(*(report[c] if report[c] is not None else "none" for c in cols))
    print_table(console, summary)
    for row in report["below_maintenance"]:
        console.print(f"LIQUIDATABLE now: {row['row']} collateral {row['collateral']} is "
                      f"below maintenance margin {row['maintenance_margin']}",
                      markup=False, highlight=False, soft_wrap=True)
    pos = Table(title="Positions (USD unless noted)")
    for col in ("market", "size", "entry", "mark", "notional", "IM", "MM", "uPnL",
                "liq. price", f"P(liq) {report['horizon']}"):
        pos.add_column(col, justify="right")
    options = []
    for p in report["positions"]:
        if "liquidation_underlying" in p:  # an option: the price of its underlying
            options.append(p)
            liq = ("now" if p["liquidatable"] else
                   f"{p['liquidation_underlying']} {p['liquidation_underlying_price']}"
                   if p["liquidation_underlying_price"] else "none")
        else:
            liq = (f"now (recovers at {p['recovery_price'] or 'no price'})"
                   if p["liquidatable"] else p["liquidation_price"] or "none")
        pos.add_row(p["market"], p["size"], p["entry_price"], p["mark_price"], p["notional"],
                    p["initial_margin"], p["maintenance_margin"], p["unrealized_pnl"],
                    liq, p["liquidation_probability"] or "none")
    print_table(console, pos)
    if options:
        premiums = ", ".join(f"{p['market']} {p['liquidation_premium']}"
                             for p in options if p["liquidation_premium"])
        console.print("An option's liq. price is its underlying's price at which its "
                      "margin row is liquidated, the option re-marked from its vol"
                      + (f" (premium then: {premiums})" if premiums else "")
                      + "; none: no vol to re-mark it, or none within +-50 %.",
                      markup=False, highlight=False, soft_wrap=True)


def replay(
    events: Annotated[Path | None, typer.Argument(
        help="Event file (JSON Lines). Default: the bundled demo.")] = None,
    venue: Annotated[str, typer.Option(help="Venue preset name or venue file.")] = "binance",
    out: Annotated[Path | None, typer.Option(help="Write out-events here (JSONL).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    pm_grid: Annotated[str, typer.Option(
        help="Scenario grid for accounts in portfolio mode: a shipped grid (deribit_pm, "
             "cme_span_16, paradex_pm) or a grid TOML file (docs/schema/grid-v1.json).")
    ] = "deribit_pm",
    top: Annotated[int, typer.Option(
        min=0, help="Accounts listed nearest liquidation and largest by notional.")] = 10,
    all_accounts: Annotated[bool, typer.Option(
        "--all-accounts", help="Also list every account (the JSON key 'accounts').")] = False,
    accounts_out: Annotated[Path | None, typer.Option(
        help="Write every account's equity, margin ratio, positions and ADL ranks here "
             "(JSONL, one account a line).")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 1 if any line or event was rejected, or the file is empty.")
    ] = False,
    stress_var: Annotated[str | None, typer.Option(
        "--stress-var", help="Bad-debt VaR99 the insurance fund should cover: a `solvency "
                             "sweep --out` folder (or its sweep.csv), or an amount; adds "
                             "fund_coverage.")] = None,
    stress_asset: Annotated[str, typer.Option(
        "--stress-asset", help="Asset of --stress-var's bad debt (the fund's balance in "
                               "it is compared).")] = "USDT",
) -> None:
    """Apply an event log to the engine; print the summary and write out-events.

    Rejected lines and events are counted (and listed in --out); by default they do not
    change the exit code, with --strict they do.
    """
    try:
        v = load_venue(venue)
        grid = load_grid(pm_grid)
    except (ConfigError, GridError, KeyError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if events is None:
        src = resources.files("solvency.data").joinpath(DEMO_EVENTS)
        with resources.as_file(src) as p:
            path = Path(p)
            engine, outs, bad = _run(v, path, grid)
    else:
        if not events.exists():
            raise _fail(f"{events}: no such file")
        path = events
        engine, outs, bad = _run(v, events, grid)
    if out is not None:
        write_events(out, outs)
    if accounts_out is not None:
        with accounts_out.open("w", encoding="utf-8") as fh:
            for entry in account_entries(engine):
                fh.write(json.dumps(entry) + "\n")
    try:
        stress = _stress(stress_var, stress_asset)
        summary = replay_summary(engine, bad, top=top, all_accounts=all_accounts,
                                 stress=stress)
    except (ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, outs)
    total, rejected = summary["events"], summary["rejected"]
    if total == 0:
        err.print(f"no events in {path.name}")
    elif rejected:
        err.print(f"{rejected} of {total} events rejected ({bad} unparsable lines); "
                  "reasons in --out")
    if not summary["conserved"]:
        raise typer.Exit(1)
    if strict and (total == 0 or rejected):
        raise typer.Exit(1)


def _stress(text: str | None, asset: str) -> dict[str, Any] | None:
    """--stress-var: a sweep folder or CSV (VaR99, ES99 and runs from its bad_debt
    column), or an amount (VaR99 only)."""
    if text is None:
        return None
    path = Path(text)
    if path.exists():
        b = bad_debt_from_sweep(path)
        return {"asset": asset, "var99": Decimal(b["var99"]), "es99": Decimal(b["es99"]),
                "runs": b["runs"], "source": b["source"]}
    try:
        var = Decimal(text)
    except ArithmeticError:
        raise ValueError(f"--stress-var {text!r}: neither a sweep folder or CSV nor an "
                         "amount") from None
    return {"asset": asset, "var99": var, "source": "--stress-var"}


def _run(venue: Any, path: Path, grid: Any) -> tuple[Engine, list[Any], int]:
    engine = Engine(venue, pm_grid=grid)
    outs: list[Any] = []
    bad = 0
    try:
        for item in read_events(path):
            if isinstance(item, LineError):
                bad += 1
                outs.append(Rejected(id=f"line{item.line}", event=f"line:{item.line}",
                                     reason=item.reason, detail=item.detail))
                continue
            outs.extend(engine.apply(item))
    except UnicodeDecodeError as exc:
        raise _fail(f"{path}: not UTF-8 text ({exc.reason})") from None
    except EngineError as exc:
        raise _fail(f"engine invariant broken: {exc}", code=1) from None
    return engine, outs, bad


def _print_summary(summary: dict[str, Any], outs: list[Any]) -> None:
    head = Table(title=f"Replay on {summary['venue']}")
    cols = ("events", "applied", "rejected", "duplicates", "liquidations", "adl",
            "conserved")
    for col in cols:
        head.add_column(col, justify="right")
    head.add_row(*(str(summary[c]) for c in cols))
    print_table(console, head)
    _print_accounts(f"Nearest liquidation (top {len(summary['accounts_nearest_liquidation'])}"
                    f" of {summary['account_count']} accounts)",
                    summary["accounts_nearest_liquidation"])
    _print_accounts("Largest by notional", summary["accounts_largest"])
    if "accounts" in summary:
        acc = Table(title="Accounts")
        acc.add_column("account")
        acc.add_column("equity")
        acc.add_column("margin ratio", justify="right")
        acc.add_column("positions")
        for name, a in summary["accounts"].items():
            acc.add_row(name, ", ".join(f"{v} {k}" for k, v in a["equity"].items()),
                        a["margin_ratio"],
                        ", ".join(f"{k} {v}" for k, v in a["positions"].items()))
        print_table(console, acc)
    kinds: dict[str, int] = {}
    for o in outs:
        kinds[o.type] = kinds.get(o.type, 0) + 1
    led = Table(title="Ledger and out-events")
    led.add_column("asset")
    led.add_column("total (= deposits - withdrawals)", justify="right")
    led.add_column("fee pool", justify="right")
    led.add_column("rounding", justify="right")
    led.add_column("insurance fund", justify="right")
    led.add_column("bad debt", justify="right")
    for a, v in summary["ledger_totals"].items():
        led.add_row(a, v, summary["fee_pool"][a], summary["rounding"][a],
                    summary["insurance_fund"][a], summary["bad_debt"][a])
    print_table(console, led)
    console.print("out-events: " + (", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
                                    or "none"))
    cov = summary.get("fund_coverage")
    if cov is not None:
        es = ("" if cov["bad_debt_es99"] is None else f", ES99 {cov['bad_debt_es99']} "
              f"(coverage {cov['coverage_es99']})")
        verdict = "covered" if cov["covered"] else "NOT covered"
        console.print(f"fund coverage of stressed bad debt: insurance fund "
                      f"{cov['insurance_fund']} {cov['asset']} / VaR99 {cov['bad_debt_var99']}"
                      f" = {cov['coverage_var99']} ({verdict}){es}; from {cov['source']}",
                      markup=False, highlight=False, soft_wrap=True)
    console.print(f"state hash: {summary['state_hash']}", soft_wrap=True)  # never folded


def _print_accounts(title: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    table = Table(title=title)
    table.add_column("account")
    table.add_column("margin ratio", justify="right")
    table.add_column("equity (USD)", justify="right")
    table.add_column("notional (USD)", justify="right")
    table.add_column("positions")
    for a in rows:
        table.add_row(a["account"], a["margin_ratio"], a["equity_usd"], a["notional_usd"],
                      ", ".join(f"{k} {v}" for k, v in a["positions"].items()))
    print_table(console, table)


def venues(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List venue presets, their markets and margin parameters."""
    data: dict[str, Any] = {}
    for name in preset_names():
        v = load_preset(name)
        data[name] = {
            "source": v.source, "as_of": v.as_of, "margin_call_ratio": str(v.margin_call_ratio),
            "markets": {
                m.name: {"kind": m.kind, "settle": m.settle, "aliases": list(m.aliases),
                         "contract_size": str(m.contract_size), "tick_size": str(m.tick_size),
                         "lot_size": str(m.lot_size), **margin_model_to_data(m.margin)}
                for m in v.markets.values()
            },
            # the whole policy as a venue file's liquidation section states it
            "liquidation": policy_to_data(v.policy) if v.policy is not None else None,
        }
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(title="Venue presets")
    for col in ("venue", "market", "kind", "settle", "model", "first tier IM / MM", "as of"):
        table.add_column(col)
    for name, v in data.items():
        for mname, m in v["markets"].items():
            if m["model"] == "tiered":
                first = f"{m['tiers'][0]['imr']} / {m['tiers'][0]['mmr']}"
            elif m["model"] == "oi_scaled":
                first = f"{m['imr']} / x{m['maintenance_fraction']}"
            elif m["model"] == "option_standard":
                first = f"{m['im_base']} / {m['mm_base']} (+ mark, shorts)"
            else:
                first = f"{m['imr']} / {m['mmr']}"
            table.add_row(name, mname, m["kind"], m["settle"], m["model"], first, v["as_of"])
    print_table(console, table)
    print_table(console, _policy_table(data))


def _policy_table(data: dict[str, Any]) -> Table:
    """Each preset's liquidation policy: sizing, penalty and the waterfall's steps."""
    table = Table(title="Liquidation policies (venue file: liquidation, docs/liquidation.md)")
    for col in ("venue", "sizing", "penalty ppm liquidator / fund", "fund takes over",
                "backstop", "ADL", "socialize", "fund capacity", "as of"):
        table.add_column(col)
    for name, v in data.items():
        p = v["liquidation"]
        if p is None:
            continue
        table.add_row(name, p["sizing"],
                      f"{p['liquidator_fee_ppm']} / {p['insurance_fee_ppm']} "
                      f"({p['penalty_priority']})",
                      "yes" if p["fund_takeover"] else "no",
                      "yes" if p["backstop"] else "no", p["adl_ranking"], p["socialize"],
                      p["fund_capacity"], p["as_of"])
    return table
