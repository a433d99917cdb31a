"""``solvency data``: download public market data into the lab's CSV layout."""

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
    HttpPolicy,
    default_filename,
    fetch_klines,
    resolve_request,
    write_klines_csv,
)

__all__ = ["EXIT_DOWNLOAD_FAILED", "data_app", "fetch"]

EXIT_DOWNLOAD_FAILED = 3
"""Exit status when the download fails (network, venue error, bad data, unwritable output);
docs/cli.md reserves 1 for broken engine invariants."""

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

data_app = typer.Typer(
    help="Download public market data (OHLCV klines) into the lab's CSV layout.",
    no_args_is_help=True,
)


class FetchVenue(StrEnum):
    """The venues ``solvency data fetch`` downloads from (``--help`` lists them)."""

    BINANCE = "binance"
    BYBIT = "bybit"
    DERIBIT = "deribit"


class FetchMarket(StrEnum):
    """``--market``: spot, or the USD-M perpetual (binance /fapi, bybit linear)."""

    SPOT = "spot"
    USDM = "usdm"


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _summary(report: FetchReport, out: Path) -> None:
    d = report.to_dict()
    console.print(f"wrote {d['bars']} bars to {escape(str(out))}")
    console.print(f"  {d['venue']} {d['market']} {escape(d['symbol'])} {d['interval']}: "
                  f"{d['first']} .. {d['last']} (window {d['start']} .. {d['end']})")
    console.print(f"  missing {d['missing']} inside, {d['missing_head']} before the first "
                  f"bar, {d['missing_tail']} after the last; {len(d['gaps'])} gap(s)")
    for gap in d["gaps"][:10]:
        console.print(f"    gap at {gap['start']}: {gap['bars']} bar(s)")
    console.print(f"  duplicates dropped {d['duplicates']}, open bar dropped "
                  f"{d['dropped_open']}, outside window {d['dropped_outside']}; "
                  f"{d['requests']} request(s), {d['retries']} retry(ies)")


@data_app.command("fetch")
def fetch(
    venue: Annotated[FetchVenue, typer.Argument(help="The venue.", case_sensitive=False)],
    symbol: Annotated[str, typer.Argument(
        help="BTCUSDT; BTCUSDT.P / BTCUSDT-PERP / BTC/USDT:USDT for the USD-M perpetual; "
             "deribit instrument names such as BTC-PERPETUAL.")],
    interval: Annotated[str, typer.Argument(help="Bar interval: 1m, 5m, 15m, 1h, 4h, 1d ...")],
    start: Annotated[str, typer.Argument(help="First bar open time, ISO-8601 UTC (inclusive).")],
    end: Annotated[str, typer.Argument(help="End of the window, ISO-8601 UTC (exclusive).")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output CSV (.csv.gz to compress). Default: "
                            "SYMBOL_VENUE_MARKET_INTERVAL_START_END.csv in the current folder.")
    ] = None,
    market: Annotated[FetchMarket | None, typer.Option(
        case_sensitive=False,
        help="spot or usdm (binance /fapi, bybit category=linear). Default: from the "
             "symbol suffix, else spot.")] = None,
    base_url: Annotated[str | None, typer.Option(
        help="Replace the venue host, e.g. a mirror or a local test server.")] = None,
    sleep: Annotated[float, typer.Option(
        help="Seconds to pause between page requests (rate-limit friendly).")] = 0.2,
    retries: Annotated[int, typer.Option(help="Retries on HTTP 429/5xx or network errors.")] = 5,
    backoff: Annotated[float, typer.Option(
        help="First retry delay in seconds; doubles each retry (Retry-After wins).")] = 0.5,
    timeout: Annotated[float, typer.Option(help="Per-request timeout in seconds.")] = 30.0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")
                     ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Download OHLCV klines from a venue's public REST API into a CSV file.

    Pages through the venue's kline endpoint and retries HTTP 429/5xx with backoff.
    Deduplicates, sorts, drops the still-open bar, validates every bar, reports gaps.
    Exits 2 on bad arguments, 3 when the download or its data fails (a host that does
    not resolve fails at once, without retries).
    """
    try:
        req = resolve_request(venue.value, symbol, interval, start, end,
                              market=market.value if market is not None else None,
                              base_url=base_url)
        policy = HttpPolicy(timeout_s=timeout, retries=retries, backoff_s=backoff,
                            pause_s=sleep)
    except FetchError as exc:
        raise _fail(str(exc), 2) from None
    path = out if out is not None else Path(default_filename(req))
    if path.exists() and not force:
        raise _fail(f"{path} exists; pass --force to overwrite", 2)
    try:
        result = fetch_klines(req, policy=policy)
    except FetchError as exc:
        raise _fail(str(exc), EXIT_DOWNLOAD_FAILED) from None
    try:
        write_klines_csv(path, result.bars)
    except OSError as exc:
        raise _fail(f"{path}: cannot write ({exc})", EXIT_DOWNLOAD_FAILED) from None
    if as_json:
        typer.echo(json.dumps({**result.report.to_dict(), "out": str(path)}))
    else:
        _summary(result.report, path)
