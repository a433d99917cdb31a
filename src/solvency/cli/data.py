"""``solvency data``: download public market data into the lab's CSV layouts (via ccxt)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from solvency.adapters.fetch import (
    FetchError,
    FetchReport,
    FetchRequest,
    FetchResult,
    HttpPolicy,
    Kind,
    default_filename,
    fetch_funding,
    fetch_klines,
    fetch_open_interest,
    resolve_request,
    write_funding_csv,
    write_klines_csv,
    write_open_interest_csv,
)

__all__ = ["EXIT_DOWNLOAD_FAILED", "data_app", "fetch", "funding", "open_interest"]

EXIT_DOWNLOAD_FAILED = 3
"""Exit status when the download fails (network, venue error, bad data, unwritable output);
docs/cli.md reserves 1 for broken engine invariants."""

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

data_app = typer.Typer(
    help="Download public market data (OHLCV, funding rates, open interest) into CSV files.",
    no_args_is_help=True,
)


class FetchVenue(StrEnum):
    """The venues ``solvency data`` downloads from (``--help`` lists them)."""

    BINANCE = "binance"
    BYBIT = "bybit"
    OKX = "okx"
    DERIBIT = "deribit"
    HYPERLIQUID = "hyperliquid"
    DYDX = "dydx"


class FetchMarket(StrEnum):
    """``--market``: spot, or the USD-margined (linear) perpetual."""

    SPOT = "spot"
    USDM = "usdm"


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _summary(report: FetchReport, out: Path) -> None:
    d = report.to_dict()
    what = {"ohlcv": "bars", "funding": "funding rates",
            "open_interest": "open-interest rows"}[report.kind]
    console.print(f"wrote {d['bars']} {what} to {escape(str(out))}")
    console.print(f"  {d['venue']} {d['market']} {escape(d['symbol'])} "
                  f"({escape(d['ccxt_symbol'])}) {d['interval']}: "
                  f"{d['first']} .. {d['last']} (window {d['start']} .. {d['end']})")
    if report.kind != "funding":
        console.print(f"  missing {d['missing']} inside, {d['missing_head']} before the first "
                      f"row, {d['missing_tail']} after the last; {len(d['gaps'])} gap(s)")
        for gap in d["gaps"][:10]:
            console.print(f"    gap at {gap['start']}: {gap['bars']} row(s)")
    console.print(f"  duplicates dropped {d['duplicates']}, open bar dropped "
                  f"{d['dropped_open']}, outside window {d['dropped_outside']}; "
                  f"{d['requests']} request(s), {d['retries']} retry(ies)")


VenueArg = Annotated[FetchVenue, typer.Argument(help="The venue.", case_sensitive=False)]
SymbolArg = Annotated[str, typer.Argument(
    help="A ccxt symbol (BTC/USDT, BTC/USDT:USDT) or the venue's name: BTCUSDT, BTCUSDT.P, "
         "BTC-USDT-SWAP (okx), BTC-PERPETUAL (deribit), BTC (hyperliquid), BTC-USD (dydx).")]
StartArg = Annotated[str, typer.Argument(help="Start of the window, ISO-8601 UTC (inclusive).")]
EndArg = Annotated[str, typer.Argument(help="End of the window, ISO-8601 UTC (exclusive).")]
OutOpt = Annotated[Path | None, typer.Option(
    "--out", "-o", help="Output CSV (.csv.gz to compress). Default: a name from the "
                        "symbol, venue, market, interval and dates in the current folder.")]
MarketOpt = Annotated[FetchMarket | None, typer.Option(
    case_sensitive=False,
    help="spot or usdm (the linear perpetual) on binance, bybit, okx and hyperliquid. "
         "Default: from the symbol suffix, else spot for bars (hyperliquid: usdm) and usdm "
         "for funding and open interest.")]
BaseUrlOpt = Annotated[str | None, typer.Option(
    help="Replace the venue host in every endpoint, e.g. a mirror or a local test server.")]
SleepOpt = Annotated[float, typer.Option(
    help="Seconds to pause between requests (rate-limit friendly).")]
RetriesOpt = Annotated[int, typer.Option(help="Retries on HTTP 429/5xx or network errors.")]
BackoffOpt = Annotated[float, typer.Option(
    help="First retry delay in seconds; doubles each retry (Retry-After wins).")]
TimeoutOpt = Annotated[float, typer.Option(help="Per-request timeout in seconds.")]
PageOpt = Annotated[int | None, typer.Option(
    help="Rows per request (default: the venue's maximum).", min=1)]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


def _run(kind: Kind, venue: FetchVenue, symbol: str, interval: str, start: str, end: str,
         out: Path | None, market: FetchMarket | None, base_url: str | None, sleep: float,
         retries: int, backoff: float, timeout: float, page: int | None, force: bool,
         as_json: bool) -> None:
    try:
        req = resolve_request(venue.value, symbol, interval, start, end, kind=kind,
                              market=market.value if market is not None else None,
                              base_url=base_url)
        policy = HttpPolicy(timeout_s=timeout, retries=retries, backoff_s=backoff,
                            pause_s=sleep, page=page)
    except FetchError as exc:
        raise _fail(str(exc), 2) from None
    path = out if out is not None else Path(default_filename(req))
    if path.exists() and not force:
        raise _fail(f"{path} exists; pass --force to overwrite", 2)
    try:
        result = _download(req, policy)
    except FetchError as exc:
        raise _fail(str(exc), EXIT_DOWNLOAD_FAILED) from None
    try:
        if kind == "ohlcv":
            write_klines_csv(path, result.bars)
        elif kind == "funding":
            write_funding_csv(path, result.funding)
        else:
            write_open_interest_csv(path, result.open_interest)
    except OSError as exc:
        raise _fail(f"{path}: cannot write ({exc})", EXIT_DOWNLOAD_FAILED) from None
    if as_json:
        typer.echo(json.dumps({**result.report.to_dict(), "out": str(path)}))
    else:
        _summary(result.report, path)


def _download(req: FetchRequest, policy: HttpPolicy) -> FetchResult:
    if req.kind == "funding":
        return fetch_funding(req, policy=policy)
    if req.kind == "open_interest":
        return fetch_open_interest(req, policy=policy)
    return fetch_klines(req, policy=policy)


@data_app.command("fetch")
def fetch(
    venue: VenueArg,
    symbol: SymbolArg,
    interval: Annotated[str, typer.Argument(help="Bar interval: 1m, 5m, 15m, 1h, 4h, 1d ...")],
    start: StartArg,
    end: EndArg,
    out: OutOpt = None,
    market: MarketOpt = None,
    base_url: BaseUrlOpt = None,
    sleep: SleepOpt = 0.2,
    retries: RetriesOpt = 5,
    backoff: BackoffOpt = 0.5,
    timeout: TimeoutOpt = 30.0,
    page: PageOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Download OHLCV bars from a venue's public API (through ccxt) into a CSV file.

    Pages through the venue's candles and retries HTTP 429/5xx with backoff.
    Deduplicates, sorts, drops the still-open bar, validates every bar, reports gaps.
    Exits 2 on bad arguments, 3 when the download or its data fails (a host that does
    not resolve fails at once, without retries).
    """
    _run("ohlcv", venue, symbol, interval, start, end, out, market, base_url, sleep,
         retries, backoff, timeout, page, force, as_json)


@data_app.command("funding")
def funding(
    venue: VenueArg,
    symbol: SymbolArg,
    start: StartArg,
    end: EndArg,
    out: OutOpt = None,
    market: MarketOpt = None,
    base_url: BaseUrlOpt = None,
    sleep: SleepOpt = 0.2,
    retries: RetriesOpt = 5,
    backoff: BackoffOpt = 0.5,
    timeout: TimeoutOpt = 30.0,
    page: PageOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Download a perpetual's funding-rate history (through ccxt) into a CSV file.

    timestamp,timestamp_ms,funding_rate; the rate per funding period as the venue reports
    it. Exit codes as `data fetch`.
    """
    _run("funding", venue, symbol, "", start, end, out, market, base_url, sleep, retries,
         backoff, timeout, page, force, as_json)


@data_app.command("open-interest")
def open_interest(
    venue: VenueArg,
    symbol: SymbolArg,
    interval: Annotated[str, typer.Argument(help="Period: 5m, 15m, 30m, 1h, 4h, 1d ...")],
    start: StartArg,
    end: EndArg,
    out: OutOpt = None,
    market: MarketOpt = None,
    base_url: BaseUrlOpt = None,
    sleep: SleepOpt = 0.2,
    retries: RetriesOpt = 5,
    backoff: BackoffOpt = 0.5,
    timeout: TimeoutOpt = 30.0,
    page: PageOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Download a perpetual's open-interest history (binance, bybit, okx) into a CSV file.

    timestamp,timestamp_ms,open_interest,open_interest_value (base units or contracts, and
    quote; empty where the venue gives one only). Exit codes as `data fetch`.
    """
    _run("open_interest", venue, symbol, interval, start, end, out, market, base_url, sleep,
         retries, backoff, timeout, page, force, as_json)
