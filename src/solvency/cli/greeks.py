"""``solvency greeks FILE``: price and Greeks of every position of a portfolio file.

The file is a ``solvency margin`` portfolio (schema
:class:`~solvency.engine.portfolio.PortfolioFile`, ``docs/schema/portfolio-v1.json``:
unknown keys refused, exact decimals) whose ``markets`` may also declare options::

    {"venue": "deribit", "now": "2026-01-01T00:00:00Z", "rate": "0.0",
     "markets": {"BTC-C": {"type": "option", "underlying": "BTC", "kind": "call",
                           "strike": "100000", "expiry": "2026-01-31T08:00:00Z",
                           "settle": "USDC"}},
     "prices": {"BTC": "100000"},
     "vols": {"BTC-C": "0.6"},
     "account": {"positions": [{"market": "BTC-C", "size": "-10"},
                               {"market": "BTC-PERP", "size": "5"}]}}

Options are valued with Black-76 (the price given for the underlying is the forward),
time to expiry ACT/365; perpetual and future positions of the venue's markets count one
unit of delta per base unit (inverse contracts: their coin value ``contracts x
contract_size / F``, as Deribit's ``delta_total``). See ``docs/greeks_and_hedging.md``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

import numpy as np
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from solvency.adapters.eventlog import load_json_file
from solvency.cli.core_commands import file_venue, venue_option
from solvency.cli.tables import print_table
from solvency.core.model.events import EventError, parse_ts_ms
from solvency.core.model.instruments import Instrument
from solvency.core.model.presets import PRESETS, preset_names, venue_from_data
from solvency.core.model.venue import ConfigError, Venue, merge_config
from solvency.core.options.black76 import DAYS_PER_YEAR, RHO_PER_PERCENT, VEGA_PER_VOL_POINT
from solvency.core.options.exposure import cash_exposure, greeks_exposure
from solvency.engine.option_book import (
    EXPOSURE_COLUMNS,
    OptionBook,
    OptionBookError,
    OptionSpec,
    iso_ms,
    parse_option_market,
)
from solvency.engine.portfolio import PortfolioError, PortfolioFile, VenueFile, portfolio_model

__all__ = ["GreeksError", "evaluate_greeks", "greeks"]

_RAW = ("price", "delta", "gamma", "vega", "theta", "rho")

console = Console()
err = Console(stderr=True)


class GreeksError(ValueError):
    """A portfolio file that cannot be valued, naming the offending key."""


def _split_markets(m: PortfolioFile, venue: str | None, source: str,
                   venue_file: VenueFile | None = None) -> tuple[Venue, dict[str, OptionSpec]]:
    venue_name = venue or m.venue or "binance"
    if venue_file is None and venue_name not in PRESETS:
        raise GreeksError(f"venue: {venue_name!r} is not one of {preset_names()}")
    options: dict[str, OptionSpec] = {}
    overrides: dict[str, Any] = {}
    for name, entry in m.markets.items():
        if "type" in entry:
            options[name] = parse_option_market(name, entry, source=source)
        else:
            overrides[name] = {k: v for k, v in entry.items() if k != "open_interest"}
    if venue_file is None:
        v = venue_from_data({"preset": venue_name, "markets": overrides})
    else:  # the portfolio's overrides on top of the file's markets, as solvency margin
        v = venue_from_data(merge_config(venue_file.data, {"markets": overrides}))
    # the venue's own option markets (Deribit's, in the preset) are options of the file
    # too, so one portfolio file serves solvency margin and solvency greeks
    named = [*m.vols, *(p.market for p in m.account.positions)]
    for name in named:
        inst = v.resolve(name)
        if name in options or inst is None or inst.kind != "option":
            continue
        assert inst.strike is not None and inst.expiry_ms is not None
        assert inst.option_kind is not None
        options[name] = OptionSpec(
            name=name, underlying=inst.base, kind=inst.option_kind,
            strike=float(inst.strike), expiry_ms=inst.expiry_ms, settle=inst.settle,
            contract_size=float(inst.contract_size))
    return v, options


def _prices(m: PortfolioFile, v: Venue, options: Mapping[str, OptionSpec]) -> dict[
        str, float]:
    """Underlying price per base symbol; a market name gives its base's price."""
    out: dict[str, float] = {}
    known = set(v.assets) | {o.underlying for o in options.values()}
    by_market: dict[str, float] = {}
    for key, p in m.prices.items():
        inst = v.resolve(key)
        if inst is not None:
            by_market.setdefault(inst.base, float(p))
        elif key in known:
            out[key] = float(p)
        else:
            raise GreeksError(f"prices.{key}: not an underlying or a market of {v.name}")
    # a price given for the underlying itself wins over a market's
    return {**by_market, **out}


def _vols(m: PortfolioFile, options: Mapping[str, OptionSpec]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, sigma in m.vols.items():
        if key not in options:
            raise GreeksError(f"vols.{key}: not an option market of this file")
        out[key] = float(sigma)
    return out


def _positions(m: PortfolioFile, v: Venue, options: Mapping[str, OptionSpec]) -> tuple[
        OptionBook, list[tuple[Instrument, float]], list[str]]:
    book = OptionBook()
    perps: list[tuple[Instrument, float]] = []
    order: list[str] = []
    for i, pos in enumerate(m.account.positions):
        path = f"account.positions[{i}]"
        market = pos.market
        size = float(pos.size)
        if market in options:
            book.add(options[market], size)
            order.append("option")
            continue
        inst = v.resolve(market)
        if inst is None:
            raise GreeksError(f"{path}.market: unknown market {market!r}")
        if inst.kind not in ("linear_perp", "inverse_perp", "linear_future"):
            raise GreeksError(f"{path}.market: {market} is a venue {inst.kind} market; "
                              "declare options in 'markets' with type 'option'")
        perps.append((inst, size))
        order.append("perp")
    return book, perps, order


def _price_of(prices: Mapping[str, float], underlying: str, needed_by: str) -> float:
    if underlying not in prices:
        raise GreeksError(f"prices: no price for underlying {underlying!r} "
                          f"(needed by {needed_by})")
    return prices[underlying]


def _option_rows(book: OptionBook, prices: Mapping[str, float], vols: Mapping[str, float],
                 now_ms: int, rate: float) -> tuple[list[dict[str, Any]], np.ndarray]:
    for pos in book.positions:
        _price_of(prices, pos.spec.underlying, pos.spec.name)
        if pos.spec.name not in vols:
            raise GreeksError(f"vols.{pos.spec.name}: missing (mark vol per 1.00)")
    if not book.positions:
        return [], np.empty((0, len(EXPOSURE_COLUMNS)))
    g = book.greeks(prices=prices, vols=vols, now_ms=now_ms, rate=rate)
    exposure, coin_price = g.exposure.tolist(), g.price.tolist()
    rows = []
    for i, pos in enumerate(book.positions):
        s = pos.spec
        rows.append({"market": s.name, "type": "option", "underlying": s.underlying,
                     "settle": s.settle, "size": pos.size, "expiry": iso_ms(s.expiry_ms),
                     "time_to_expiry_yr": float(g.time_yr[i]), "price_unit": s.settle,
                     **{k: float(getattr(g, k)[i]) for k in _RAW},
                     "quote_greeks": _quote_greeks(exposure[i], coin_price[i],
                                                   inverse=s.inverse)})
    return rows, g.exposure


def _perp_rows(perps: list[tuple[Instrument, float]], prices: Mapping[str, float]) -> tuple[
        list[dict[str, Any]], np.ndarray]:
    rows = []
    exposure = np.zeros((len(perps), len(EXPOSURE_COLUMNS)))
    for i, (inst, size) in enumerate(perps):
        f = _price_of(prices, inst.base, inst.name)
        cs = float(inst.contract_size)
        delta = cs / f if inst.is_inverse else cs
        exposure[i, 0] = delta
        rows.append({"market": inst.name, "type": inst.kind, "underlying": inst.base,
                     "settle": inst.settle, "size": size,
                     "expiry": iso_ms(inst.expiry_ms) if inst.expiry_ms is not None else None,
                     "time_to_expiry_yr": None, "price_unit": inst.quote,
                     "price": f, "delta": delta, "gamma": 0.0, "vega": 0.0, "theta": 0.0,
                     "rho": 0.0,
                     "quote_greeks": _quote_greeks(exposure[i].tolist(), 0.0,
                                                   inverse=False)})
    return rows, exposure


def _quote_greeks(exposure: list[float], price_coin: float, *, inverse: bool) -> dict[
        str, float]:
    """One contract's Greeks as Deribit displays them, whatever the settlement.

    ``delta`` is the Black-76 delta in base units (Deribit's ticker ``greeks.delta``, "the
    Black Scholes Delta"); ``delta_net`` the amount that adds into the account's delta
    (for inverse options Deribit's net transaction delta ``delta - V_coin``, as its
    ``delta_total``; otherwise ``delta``); gamma per quote unit, vega/theta/rho in the
    quote currency (raw scales: per 1.00 vol, per year, per 1.00 rate).
    """
    d_net, gamma, vega, theta, rho = exposure
    return {"delta": d_net + price_coin if inverse else d_net, "delta_net": d_net,
            "gamma": gamma, "vega": vega, "theta": theta, "rho": rho}


def evaluate_greeks(data: Mapping[str, Any], venue: str | None = None, *,
                    source: str = "portfolio",
                    venue_file: VenueFile | None = None) -> dict[str, Any]:
    """Return the ``solvency greeks --json`` object of a portfolio.

    ``positions[]`` carry raw Greeks of ONE contract in its settlement currency (vega per
    1.00 vol, theta per year, rho per 1.00 rate); ``totals`` are size-weighted sums per
    underlying (delta in base units, gamma per quote unit, vega/theta/rho in the quote
    currency) and ``cash`` the quote-currency sums over underlyings (cash delta ``delta
    F``, cash gamma ``gamma F^2 / 100``).

    ``data`` is the parsed portfolio file (schema
    :class:`~solvency.engine.portfolio.PortfolioFile`, ``docs/schema/portfolio-v1.json``),
    ``source`` what error messages call it (the CLI passes its path). ``venue_file``
    (read by the caller) replaces the preset, the file's ``markets`` applying on top of
    it, as in ``solvency margin``.

    Raises
    ------
    GreeksError
        ``source: dotted.key: what was wrong``.
    """
    try:
        m = portfolio_model(data, source=source)
        return _evaluate(m, venue, source, venue_file)
    except (GreeksError, OptionBookError, ConfigError, PortfolioError) as exc:
        text = str(exc)
        raise GreeksError(text if text.startswith(f"{source}: ") else
                          f"{source}: {text}") from None


def _evaluate(m: PortfolioFile, venue: str | None, source: str,
              venue_file: VenueFile | None) -> dict[str, Any]:
    v, options = _split_markets(m, venue, source, venue_file)
    prices = _prices(m, v, options)
    vols = _vols(m, options)
    rate = float(m.rate)
    book, perps, order = _positions(m, v, options)
    now_ms = 0
    if book.positions:
        if m.now is None:
            raise GreeksError("now: required to value options (ISO-8601 UTC)")
        try:
            now_ms = parse_ts_ms(m.now)
        except EventError as exc:
            raise GreeksError(f"now: {exc.detail.removeprefix('ts: ')}") from None
    opt_rows, opt_exp = _option_rows(book, prices, vols, now_ms, rate)
    perp_rows, perp_exp = _perp_rows(perps, prices)
    opt_iter, perp_iter = iter(zip(opt_rows, opt_exp, strict=True)), iter(
        zip(perp_rows, perp_exp, strict=True))
    merged = [next(opt_iter) if kind == "option" else next(perp_iter) for kind in order]
    return _report(v.name, now_ms if book.positions else None, rate, prices, merged)


def _report(venue: str, now_ms: int | None, rate: float, prices: Mapping[str, float],
            merged: list[tuple[dict[str, Any], np.ndarray]]) -> dict[str, Any]:
    unds = sorted({row["underlying"] for row, _ in merged})
    index = {u: i for i, u in enumerate(unds)}
    exp = greeks_exposure(
        account=np.zeros(len(merged), dtype=np.int64),
        underlying=np.array([index[r["underlying"]] for r, _ in merged], dtype=np.int64),
        size=np.array([r["size"] for r, _ in merged], dtype=np.float64),
        greeks=np.array([e for _, e in merged], dtype=np.float64).reshape(
            len(merged), len(EXPOSURE_COLUMNS)),
        n_accounts=1, n_underlyings=len(unds))
    totals = {u: dict(zip(EXPOSURE_COLUMNS, exp.by_underlying[i].tolist(), strict=True))
              for u, i in index.items()}
    cash: dict[str, float] = {}
    if unds:
        c = cash_exposure(exp.by_account, np.array([prices[u] for u in unds]))
        cash = dict(zip(("delta", "gamma_1pct", "vega", "theta", "rho"),
                        c.venue.tolist(), strict=True))
    return {
        "venue": venue, "now": iso_ms(now_ms) if now_ms is not None else None, "rate": rate,
        "prices": dict(sorted(prices.items())),
        "positions": [row for row, _ in merged],
        "totals": totals,
        "cash": cash,
    }


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")  # [..] in a message is text
    return typer.Exit(2)


LIST_MAX_POSITIONS: Final = 30
"""Above this many positions the table view summarizes per underlying and expiry."""

# per-contract columns of the list and the CSV: header, quote_greeks key, screen scale
_SCREEN: Final = (("delta", "delta", 1.0), ("net delta", "delta_net", 1.0),
                  ("gamma", "gamma", 1.0), ("vega / vol pt", "vega", VEGA_PER_VOL_POINT),
                  ("theta / day", "theta", 1.0 / DAYS_PER_YEAR),
                  ("rho / 1%", "rho", RHO_PER_PERCENT))
_CSV_COLUMNS: Final = ("market", "type", "underlying", "expiry", "settle", "size", "price",
                       "price_unit", "delta", "delta_net", "gamma", "vega_per_vol_point",
                       "theta_per_day", "rho_per_pct")


def greeks(
    portfolio: Annotated[Path, typer.Argument(help="Portfolio JSON file.")],
    venue: Annotated[str | None, typer.Option(
        help="Venue preset or venue file (overrides the file's venue).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (raw Greeks).")] = False,
    positions: Annotated[bool, typer.Option(
        "--positions", help="List every position, however many (default: up to "
                            f"{LIST_MAX_POSITIONS}, else a summary per underlying and "
                            "expiry).")] = False,
    positions_csv: Annotated[Path | None, typer.Option(
        "--positions-csv", help="Write every position's Greeks to this CSV file.")] = None,
) -> None:
    """Price, delta, gamma, vega, theta and rho of every position, and totals.

    The venue (``--venue``, else the file's ``venue``) is a preset or a venue file, read
    as ``solvency margin`` reads it (the file's relative to the portfolio file).
    """
    try:
        given = venue_option(venue)
        data = load_json_file(portfolio)
        name, vfile = given if given is not None else (None, file_venue(data, portfolio))
        report = evaluate_greeks(data, name, source=str(portfolio), venue_file=vfile)
    except (ConfigError, GreeksError, PortfolioError) as exc:
        raise _fail(str(exc)) from None
    if positions_csv is not None:
        try:
            _write_csv(report["positions"], positions_csv)
        except OSError as exc:
            raise _fail(f"{positions_csv}: cannot write ({exc})") from None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    _print_tables(report, list_all=positions, csv_path=positions_csv)


def _fmt(x: float) -> str:
    return "0" if x == 0 else f"{x:.6g}" if math.isfinite(x) else str(x)


def _screen_values(row: Mapping[str, Any]) -> list[float]:
    q = row["quote_greeks"]
    return [float(q[key]) * scale for _, key, scale in _SCREEN]


def _write_csv(rows: list[Mapping[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(_CSV_COLUMNS)
        for r in rows:
            w.writerow([r["market"], r["type"], r["underlying"], r["expiry"] or "",
                        r["settle"], repr(r["size"]), repr(r["price"]), r["price_unit"],
                        *(repr(v) for v in _screen_values(r))])


_UNITS: Final = ("delta in base units (Black-76, as Deribit's ticker shows it; net delta = "
                 "delta - the option's coin price for inverse options, Deribit's net "
                 "transaction delta, the one that adds up); gamma per quote unit; vega, "
                 "theta, rho in the quote currency")


def _print_list(report: Mapping[str, Any]) -> None:
    rows = report["positions"]
    pos = Table(title=f"Greeks per contract ({report['venue']}, "
                      f"{report['now'] or 'no options'})", caption=_UNITS)
    for col in ("market", "size", "price", "price in", *(h for h, _, _ in _SCREEN)):
        pos.add_column(col, justify="right")
    for r in rows:
        pos.add_row(r["market"], _fmt(r["size"]), _fmt(r["price"]), r["price_unit"],
                    *(_fmt(v) for v in _screen_values(r)))
    print_table(console, pos)


def _group_key(row: Mapping[str, Any]) -> tuple[str, str]:
    if row["expiry"] is not None:
        return row["underlying"], row["expiry"]
    return row["underlying"], "perpetual"


def _print_summary(report: Mapping[str, Any], csv_path: Path | None) -> None:
    """Size-weighted sums per underlying and expiry: one line per group, not per position."""
    # per group: [positions, net delta, gamma, vega, theta, rho]; the Black-76 delta of
    # inverse options does not add (Deribit adds the net transaction delta)
    groups: dict[str, dict[str, list[float]]] = {}
    for r in report["positions"]:
        und, expiry = _group_key(r)
        acc = groups.setdefault(und, {}).setdefault(expiry, [0.0] * len(_SCREEN))
        acc[0] += 1
        for j, v in enumerate(_screen_values(r)[1:], start=1):
            acc[j] += r["size"] * v
    for und, by_expiry in sorted(groups.items()):
        # a light box: one line per expiry fits 80 columns with 6 significant digits
        table = Table(title=f"{und} per expiry ({report['venue']}, "
                            f"{report['now'] or 'no options'}), size-weighted sums",
                      box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("expiry", "count", *(h for h, _, _ in _SCREEN[1:])):
            table.add_column(col, justify="right")
        for expiry, acc in sorted(by_expiry.items()):
            # "2026-01-30 08:00Z": the time wraps under the date in a narrow console
            shown = expiry.replace("T", " ").replace(":00Z", "Z")
            table.add_row(shown, str(int(acc[0])), *(_fmt(v) for v in acc[1:]))
        print_table(console, table)
    n = len(report["positions"])
    where = (f"every position written to {csv_path}" if csv_path is not None
             else "--positions lists every one, --positions-csv FILE writes them")
    console.print(f"{n} positions summarized per underlying and expiry ({where}). "
                  + _UNITS + ".", soft_wrap=False)
    console.print()


def _print_tables(report: Mapping[str, Any], *, list_all: bool = False,
                  csv_path: Path | None = None) -> None:
    if list_all or len(report["positions"]) <= LIST_MAX_POSITIONS:
        _print_list(report)
    else:
        _print_summary(report, csv_path)
    tot = Table(title="Account totals per underlying (delta in base units, net; gamma per "
                      "quote unit; vega, theta, rho in the quote currency)")
    for col in ("underlying", "price", "delta", "gamma", "vega / vol pt", "theta / day",
                "rho / 1%"):
        tot.add_column(col, justify="right")
    for u, t in report["totals"].items():
        tot.add_row(u, _fmt(report["prices"][u]), _fmt(t["delta"]), _fmt(t["gamma"]),
                    _fmt(t["vega"] * VEGA_PER_VOL_POINT),
                    _fmt(t["theta"] / DAYS_PER_YEAR), _fmt(t["rho"] * RHO_PER_PERCENT))
    print_table(console, tot)
    cash = report["cash"]
    if cash:
        ct = Table(title="Cash totals, all underlyings, in the quote currency (delta x F; "
                         "gamma x F^2 / 100: change of cash delta for a 1% move)")
        for col in ("cash delta", "cash gamma / 1%", "vega / vol pt", "theta / day",
                    "rho / 1%"):
            ct.add_column(col, justify="right")
        ct.add_row(_fmt(cash["delta"]), _fmt(cash["gamma_1pct"]),
                   _fmt(cash["vega"] * VEGA_PER_VOL_POINT),
                   _fmt(cash["theta"] / DAYS_PER_YEAR), _fmt(cash["rho"] * RHO_PER_PERCENT))
        print_table(console, ct)
