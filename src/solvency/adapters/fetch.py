"""Download public market data from venues through ccxt into the lab's CSV layouts.

OHLCV bars are written in the repository's market-data format (``../shared/data/README.md``)::

    timestamp,timestamp_ms,open,high,low,close,volume
    2024-01-01T00:00:00Z,1704067200000,42283.58,42554.57,42261.02,42475.23,1271.68

with ``timestamp`` the bar OPEN time in UTC, so :func:`solvency.adapters.ohlcv.read_ohlcv`
reads it back unchanged. Funding-rate history (``timestamp,timestamp_ms,funding_rate``) and
open-interest history (``timestamp,timestamp_ms,open_interest,open_interest_value``) have
layouts of their own (docs/data_fetch.md).

The venues' endpoints, symbols, interval codes, request parameters and response parsing are
ccxt's (https://github.com/ccxt/ccxt, ``fetch_ohlcv``, ``fetch_funding_rate_history``,
``fetch_open_interest_history``): Binance, Bybit, OKX, Deribit, Hyperliquid and dYdX (v4).
ccxt is imported inside the functions that need it, so ``import solvency`` does not pay for
its ~1 s of imports. What stays here is what ccxt does not do, each part saying why:

* paging in fixed windows of the venue's page size, the same scheme on every venue (ccxt's
  ``paginate`` option retries every error three times, a typo in a symbol included, and
  stops at a fixed number of calls);
* retries with backoff on HTTP 429 and 5xx and network errors only, honouring
  ``Retry-After``, and a host name that does not resolve failing at once (ccxt does not
  retry, and its exception classes do not separate a 400 from a 503: both are
  ``ExchangeNotAvailable``; the HTTP status comes from the session ccxt is given);
* a check that each body is JSON of the shape the venue documents (ccxt's ``safe_*``
  accessors turn a changed shape into an empty page, which would read as "no data");
* deduplication, the window ``START <= t < END``, dropping the still-open bar, validating
  each bar and the gap report, and writing the CSV.
"""

from __future__ import annotations

import csv
import functools
import gzip
import importlib
import itertools
import json
import math
import socket
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal, TextIO

from solvency.adapters.ohlcv import OhlcvError, parse_interval_ms

__all__ = [
    "KINDS",
    "MARKETS",
    "VENUES",
    "FetchError",
    "FetchReport",
    "FetchRequest",
    "FetchResult",
    "FundingRate",
    "HttpPolicy",
    "Kind",
    "Kline",
    "Market",
    "OpenInterest",
    "Venue",
    "default_filename",
    "fetch_funding",
    "fetch_klines",
    "fetch_open_interest",
    "gap_report",
    "parse_utc_ms",
    "resolve_request",
    "supported_intervals",
    "validate_klines",
    "write_funding_csv",
    "write_klines_csv",
    "write_open_interest_csv",
]

Venue = Literal["binance", "bybit", "okx", "deribit", "hyperliquid", "dydx"]
Market = Literal["spot", "usdm"]
Kind = Literal["ohlcv", "funding", "open_interest"]
VENUES: Final[tuple[Venue, ...]] = ("binance", "bybit", "okx", "deribit", "hyperliquid", "dydx")
MARKETS: Final[tuple[Market, ...]] = ("spot", "usdm")
KINDS: Final[tuple[Kind, ...]] = ("ohlcv", "funding", "open_interest")

_MIN: Final = 60_000
_HOUR: Final = 3_600_000
_DAY: Final = 86_400_000
# Venues where --market picks spot or the USD-margined (linear) perpetual, the default when
# neither --market nor a symbol suffix says, and the ccxt market type loaded for each (ccxt's
# options['fetchMarkets'] types: loading only that type costs one markets request, not four).
# Deribit and dYdX take instrument names of one kind (Deribit's BTC-PERPETUAL, dYdX's BTC-USD).
_DEFAULT_MARKET: Final[dict[Venue, Market]] = {
    "binance": "spot", "bybit": "spot", "okx": "spot", "hyperliquid": "usdm"}
_CCXT_TYPE: Final[dict[tuple[Venue, Market], str]] = {
    ("binance", "spot"): "spot", ("binance", "usdm"): "linear",
    ("bybit", "spot"): "spot", ("bybit", "usdm"): "linear",
    ("okx", "spot"): "spot", ("okx", "usdm"): "swap",
    ("hyperliquid", "spot"): "spot", ("hyperliquid", "usdm"): "swap",
}
# Rows per request, each venue's documented maximum for the endpoint ccxt calls (ccxt passes
# `limit` through): Binance klines 1000 (/fapi 1500), fundingRate 1000, openInterestHist 500;
# Bybit kline 1000, funding/history 200, open-interest 200; OKX history-candles 100,
# funding-rate-history 100, rubik open-interest-history 100; Deribit chart data 1000 (ccxt's
# default), funding history 744; Hyperliquid candleSnapshot 5000, fundingHistory 500; dYdX
# indexer candles and historicalFunding 1000 (docs/data_fetch.md lists the sources).
_PAGE: Final[dict[Kind, dict[Venue, int]]] = {
    "ohlcv": {"binance": 1000, "bybit": 1000, "okx": 100, "deribit": 1000,
              "hyperliquid": 1000, "dydx": 1000},
    "funding": {"binance": 1000, "bybit": 200, "okx": 100, "deribit": 744,
                "hyperliquid": 500, "dydx": 1000},
    "open_interest": {"binance": 500, "bybit": 200, "okx": 100},
}
# Open-interest history: the venues that serve it (ccxt's has['fetchOpenInterestHistory'])
# and the periods their endpoints take (Binance openInterestHist `period`, Bybit
# open-interest `intervalTime`, OKX rubik `period`).
_OI_INTERVALS: Final[dict[Venue, tuple[int, ...]]] = {
    "binance": (5 * _MIN, 15 * _MIN, 30 * _MIN, _HOUR, 2 * _HOUR, 4 * _HOUR, 6 * _HOUR,
                12 * _HOUR, _DAY),
    "bybit": (5 * _MIN, 15 * _MIN, 30 * _MIN, _HOUR, 4 * _HOUR, _DAY),
    "okx": (5 * _MIN, _HOUR, _DAY),
}
# Funding is paid at most once an hour on all six venues (Binance, Bybit, OKX: every 1-8 h;
# Deribit's history is hourly; Hyperliquid and dYdX: hourly), so a window of `page` hours
# never holds more rows than one request returns.
_FUNDING_STEP_MS: Final = _HOUR
# Where each venue's response keeps its rows (JSON keys from the top), for the shape check.
_ROWS_AT: Final[dict[Kind, dict[Venue, tuple[str, ...]]]] = {
    "ohlcv": {"binance": (), "bybit": ("result", "list"), "okx": ("data",),
              "deribit": ("result", "ticks"), "hyperliquid": (), "dydx": ("candles",)},
    "funding": {"binance": (), "bybit": ("result", "list"), "okx": ("data",),
                "deribit": ("result",), "hyperliquid": (), "dydx": ("historicalFunding",)},
    "open_interest": {"binance": (), "bybit": ("result", "list"), "okx": ("data",)},
}
# Symbol suffixes that name a USD-M perpetual: TradingView's ".P", the common "-PERP" and
# "_PERP", ccxt's settle suffix ("BTC/USDT:USDT") and OKX's "-SWAP".
_PERP_SUFFIXES: Final = (".P", "-PERP", "_PERP", ":USDT", ":USDC", "-SWAP")
# Timeframes with no fixed length (a month) or below the lab's resolution (1s).
_NOT_OFFERED: Final = frozenset({"1s", "1M", "3M"})
_USER_AGENT: Final = "solvency-data-fetch/0.2 (+https://github.com/solvency)"


class FetchError(ValueError):
    """A download that cannot go on; the message names the venue, request and reason."""


@dataclass(frozen=True, slots=True)
class Kline:
    """One bar: open time in epoch ms, prices in quote units, volume in base units."""

    ts_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class FundingRate:
    """One funding rate as the venue reports it, at its time in epoch ms (a fraction)."""

    ts_ms: int
    rate: float


@dataclass(frozen=True, slots=True)
class OpenInterest:
    """Open interest at a time: in base units or contracts, and in quote; None if not given."""

    ts_ms: int
    amount: float | None
    value: float | None


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """How to talk to a venue: timeout, retries, backoff, the pause between pages, page size.

    The delay before retry ``k`` (1-based) is ``min(backoff_max_s, backoff_s * 2**(k-1))``,
    or the server's ``Retry-After`` seconds when it sends one (capped the same way).
    ``page`` replaces the venue's rows per request (default: the venue's maximum).
    """

    timeout_s: float = 30.0
    retries: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    pause_s: float = 0.2
    sleep: Callable[[float], None] = time.sleep
    page: int | None = None

    def __post_init__(self) -> None:
        """Reject settings that would hang or spin."""
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise FetchError(f"timeout {self.timeout_s} s: must be > 0")
        if self.retries < 0:
            raise FetchError(f"retries {self.retries}: must be >= 0")
        if min(self.backoff_s, self.backoff_max_s, self.pause_s) < 0:
            raise FetchError("backoff and pause seconds must be >= 0")
        if self.page is not None and self.page < 1:
            raise FetchError(f"page {self.page}: must be >= 1")


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """A validated download request (build it with :func:`resolve_request`).

    ``symbol`` is the name as given, upper-cased and (on Binance and Bybit) without a
    perpetual suffix or slash; ``market`` is ``n/a`` on Deribit and dYdX. ``interval`` is
    empty for funding rates.
    """

    venue: Venue
    market: str
    symbol: str
    interval: str
    interval_ms: int
    start_ms: int
    end_ms: int
    base_url: str | None
    kind: Kind = "ohlcv"
    given: str = ""

    @property
    def timeframe(self) -> str:
        """Return ccxt's name of the interval (``1h``), ccxt's key to the venue's own code."""
        return _ccxt_timeframes(self.venue)[self.interval_ms]


@dataclass(frozen=True, slots=True)
class FetchReport:
    """What a download did and what is missing from it.

    ``missing`` counts absent bars between the first and last bar (the data README's
    definition); ``missing_head`` those between START and the first bar, ``missing_tail``
    the closed bars between the last bar and END. ``gaps`` lists ``(first missing open
    time ms, bars missing)`` in time order. Funding rates come at the venue's own times:
    their ``missing*`` and ``gaps`` are 0 and empty.
    """

    venue: str
    market: str
    symbol: str
    interval: str
    start_ms: int
    end_ms: int
    bars: int
    first_ms: int
    last_ms: int
    missing: int
    missing_head: int
    missing_tail: int
    gaps: tuple[tuple[int, int], ...]
    duplicates: int
    dropped_open: int
    dropped_outside: int
    requests: int
    retries: int
    kind: str = "ohlcv"
    ccxt_symbol: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready values (times also as ISO-8601 UTC)."""
        return {
            "kind": self.kind, "venue": self.venue, "market": self.market,
            "symbol": self.symbol, "ccxt_symbol": self.ccxt_symbol,
            "interval": self.interval, "start": _iso(self.start_ms), "end": _iso(self.end_ms),
            "bars": self.bars, "first": _iso(self.first_ms), "last": _iso(self.last_ms),
            "missing": self.missing, "missing_head": self.missing_head,
            "missing_tail": self.missing_tail,
            "gaps": [{"start": _iso(t), "bars": n} for t, n in self.gaps],
            "duplicates": self.duplicates, "dropped_open": self.dropped_open,
            "dropped_outside": self.dropped_outside, "requests": self.requests,
            "retries": self.retries,
        }


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The validated rows in time order and the report on them."""

    bars: tuple[Kline, ...]
    report: FetchReport
    funding: tuple[FundingRate, ...] = ()
    open_interest: tuple[OpenInterest, ...] = ()


@dataclass(slots=True)
class _Counters:
    retries: int = 0
    calls: int = 0
    pages: list[int] = field(default_factory=list)


# --------------------------------------------------------------------------- inputs


def _ccxt() -> Any:
    # Imported here, not at the top: ccxt loads ~1 s of modules that no other command needs
    # (python -X importtime; docs/data_fetch.md). Typed Any: mypy does not analyse ccxt.
    return importlib.import_module("ccxt")


@functools.cache
def _ccxt_timeframes(venue: Venue) -> dict[int, str]:
    frames: dict[str, str] = getattr(_ccxt(), venue)().timeframes
    out: dict[int, str] = {}
    for name in frames:
        if name in _NOT_OFFERED:
            continue
        try:
            out[parse_interval_ms(name)] = name
        except OhlcvError:
            continue
    return out


def supported_intervals(venue: Venue, kind: Kind = "ohlcv") -> tuple[str, ...]:
    """Return the intervals a venue serves, in the lab's notation (``1m``, ``1h``, ``1d``).

    OHLCV: ccxt's timeframes for the venue (without ``1s`` and months). Open interest: the
    periods of the venue's open-interest endpoint. Funding rates take no interval.
    """
    if kind == "funding":
        return ()
    if kind == "open_interest":
        return tuple(_lab_interval(ms) for ms in _OI_INTERVALS.get(venue, ()))
    return tuple(_lab_interval(ms) for ms in sorted(_ccxt_timeframes(venue)))


def _lab_interval(ms: int) -> str:
    for unit, size in (("w", 7 * _DAY), ("d", _DAY), ("h", _HOUR), ("m", _MIN)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc_ms(text: str, *, name: str = "time") -> int:
    """Parse an ISO-8601 date or datetime into epoch ms; naive values are UTC.

    ``2024-01-01``, ``2024-01-01T06:00``, ``2024-01-01T06:00:00Z`` and
    ``2024-01-01T07:00:00+01:00`` are accepted (the last is converted to UTC).

    Raises
    ------
    FetchError
        If the text is not an ISO-8601 date or datetime.
    """
    t = text.strip()
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise FetchError(
            f"{name} {text!r}: expected an ISO-8601 date or datetime in UTC, "
            "e.g. 2024-01-01 or 2024-01-01T06:00:00Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)


def _split_symbol(venue: Venue, symbol: str, market: str | None,
                  kind: Kind) -> tuple[str, str]:
    s = symbol.strip()
    if not s:
        raise FetchError("symbol is empty")
    if venue not in _DEFAULT_MARKET:
        if market is not None:
            raise FetchError(f"--market applies to {', '.join(_DEFAULT_MARKET)} only; {venue} "
                             "takes an instrument name such as "
                             f"{'BTC-PERPETUAL' if venue == 'deribit' else 'BTC-USD'}")
        return s.upper(), "n/a"
    if market is not None and market not in MARKETS:
        raise FetchError(f"market {market!r}: expected one of {', '.join(MARKETS)}")
    upper = s.upper()
    implied: Market | None = "usdm" if upper.endswith(_PERP_SUFFIXES) else None
    if market is not None and implied is not None and market != implied:
        raise FetchError(f"symbol {symbol!r} names a USD-M perpetual but --market is {market}")
    default: Market = "usdm" if kind != "ohlcv" else _DEFAULT_MARKET[venue]
    chosen: str = market if market is not None else implied or default
    if kind != "ohlcv" and chosen == "spot":
        raise FetchError(f"{kind.replace('_', '-')} history exists for perpetuals: "
                         f"{symbol!r} on --market spot has none")
    if venue in ("binance", "bybit"):
        # The venues' own ids (BTCUSDT): the suffix and a slash are dropped.
        for suffix in _PERP_SUFFIXES:
            if upper.endswith(suffix):
                upper = upper[: -len(suffix)]
                break
        upper = upper.replace("/", "")
        if not upper.isalnum():
            raise FetchError(f"symbol {symbol!r}: expected letters and digits, e.g. BTCUSDT")
    return upper, chosen


def _check_base_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise FetchError(f"base URL {url!r}: expected http:// or https://host[:port]")
    return url.rstrip("/")


def resolve_request(
    venue: str, symbol: str, interval: str, start: str, end: str, *,
    market: str | None = None, base_url: str | None = None, kind: Kind = "ohlcv",
) -> FetchRequest:
    """Validate the command-line inputs into a :class:`FetchRequest` (no network).

    Parameters
    ----------
    venue : str
        ``binance``, ``bybit``, ``okx``, ``deribit``, ``hyperliquid`` or ``dydx``.
    symbol : str
        A ccxt unified symbol (``BTC/USDT``, ``BTC/USDT:USDT``) or the venue's own name
        (``BTCUSDT``, ``BTC-USDT-SWAP``, ``BTC-PERPETUAL``, ``BTC-USD``; Hyperliquid's coin
        ``BTC``). ``.P``, ``-PERP``, ``_PERP``, ``:USDT``, ``:USDC`` and ``-SWAP`` select the
        USD-M perpetual where a venue has both.
    interval : str
        Lab notation: ``1m``, ``5m``, ``1h``, ``4h``, ``1d`` ... (see
        :func:`supported_intervals`); ignored for funding rates.
    start, end : str
        ISO-8601 dates or datetimes (UTC); the window is ``start <= time < end``.
    market : {"spot", "usdm"}, optional
        Binance, Bybit, OKX and Hyperliquid: spot or the linear perpetual. Default: from the
        symbol suffix, else spot for OHLCV (perpetual on Hyperliquid, and for funding and
        open interest).
    base_url : str, optional
        Replace the venue's host in every ccxt endpoint (a mirror, or a local test server).
    kind : {"ohlcv", "funding", "open_interest"}
        What to download.

    Raises
    ------
    FetchError
        Unknown venue or market, unsupported interval, unparsable or reversed times, a
        venue that does not serve the kind.
    """
    v = venue.strip().lower()
    if v not in VENUES:
        raise FetchError(f"unknown venue {venue!r}: expected one of {', '.join(VENUES)}")
    ven: Venue = v
    if kind == "open_interest" and ven not in _OI_INTERVALS:
        raise FetchError(f"open-interest history is not served by {ven} (ccxt has no "
                         f"fetchOpenInterestHistory for it): use one of "
                         f"{', '.join(_OI_INTERVALS)}")
    sym, mkt = _split_symbol(ven, symbol, market, kind)
    iv_ms = 0
    label = ""
    if kind != "funding":
        allowed = supported_intervals(ven, kind)
        try:
            iv_ms = parse_interval_ms(interval)
        except OhlcvError:
            iv_ms = -1
        if iv_ms <= 0 or _lab_interval(iv_ms) not in allowed:
            what = "" if kind == "ohlcv" else " for open interest"
            raise FetchError(f"interval {interval!r} is not served by {ven}{what}: expected "
                             f"one of {', '.join(allowed)}")
        label = _lab_interval(iv_ms)
    start_ms = parse_utc_ms(start, name="START")
    end_ms = parse_utc_ms(end, name="END")
    if end_ms <= start_ms:
        raise FetchError(f"END {_iso(end_ms)} is not after START {_iso(start_ms)}")
    base = _check_base_url(base_url) if base_url else None
    return FetchRequest(venue=ven, market=mkt, symbol=sym, interval=label, interval_ms=iv_ms,
                        start_ms=start_ms, end_ms=end_ms, base_url=base, kind=kind,
                        given=symbol.strip())


def default_filename(req: FetchRequest) -> str:
    """Return the shared-data style name: ``btcusdt_binance_spot_1h_2024-01-01_2024-01-02.csv``.

    Funding rates: ``btcusdt_binance_usdm_funding_...``; open interest:
    ``btcusdt_binance_usdm_oi_1h_...``.
    """
    sym = "".join(c if c.isalnum() else "_" for c in req.symbol.lower())
    day = "%Y-%m-%d"
    first = datetime.fromtimestamp(req.start_ms / 1000, tz=UTC).strftime(day)
    last = datetime.fromtimestamp(req.end_ms / 1000, tz=UTC).strftime(day)
    market = "" if req.market == "n/a" else f"_{req.market}"
    what = {"ohlcv": req.interval, "funding": "funding",
            "open_interest": f"oi_{req.interval}"}[req.kind]
    return f"{sym}_{req.venue}{market}_{what}_{first}_{last}.csv"


# --------------------------------------------------------------------------- HTTP via ccxt


def _recording_session() -> Any:
    """Return a ``requests.Session`` for ccxt that keeps what ccxt does not: each response's
    status, headers, URL and body (for the retry decision, ``Retry-After``, the messages and
    the JSON check), and the number of requests. ccxt sends every request through
    ``exchange.session.request``; the HTTP path is otherwise ccxt's own."""
    requests = importlib.import_module("requests")  # a dependency of ccxt

    class RecordingSession(requests.Session):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.headers["User-Agent"] = _USER_AGENT
            self.count = 0
            self.clear()

        def clear(self) -> None:
            self.status: int | None = None
            self.url = ""
            self.reply_headers: dict[str, str] = {}
            self.body = b""
            self.malformed = ""

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            self.status, self.url, self.reply_headers, self.body = None, url, {}, b""
            resp = super().request(method, url, *args, **kwargs)
            self.status = int(resp.status_code)
            self.reply_headers = dict(resp.headers.items())
            self.body = bytes(resp.content)
            problem = _json_problem(self.body) if 200 <= self.status < 300 else ""
            if problem and not self.malformed:  # the first, of the requests of one call
                self.malformed = f"{url}: {problem}"
            return resp

    return RecordingSession()


def _json_problem(body: bytes) -> str:
    try:
        json.loads(body)
    except UnicodeDecodeError:
        return "not UTF-8"
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    return ""


def _rehost(urls: Any, base: str) -> Any:
    # --base-url: every endpoint ccxt knows for the venue, on another scheme and host, with
    # its path kept (ccxt's own `urls['api']`, templates such as https://api.{hostname} too).
    if isinstance(urls, dict):
        return {k: _rehost(v, base) for k, v in urls.items()}
    if isinstance(urls, str):
        path = urllib.parse.urlsplit(urls.replace("{hostname}", "host")).path
        return base + path
    return urls


def _exchange(req: FetchRequest, policy: HttpPolicy) -> tuple[Any, Any]:
    ccxt = _ccxt()
    # ccxt's own throttle is off: --sleep paces the pages, with a sleep the tests inject.
    ex = getattr(ccxt, req.venue)({"timeout": max(1, round(policy.timeout_s * 1000)),
                                   "enableRateLimit": False})
    session = _recording_session()
    ex.session = session
    if req.base_url:
        ex.urls["api"] = _rehost(ex.urls["api"], req.base_url)
    kind = _CCXT_TYPE.get((req.venue, req.market))  # type: ignore[arg-type]
    if kind is not None:
        option = ex.options.get("fetchMarkets")
        if isinstance(option, dict):
            option["types"] = [kind]
        else:  # ccxt before 4.4.x kept a bare list
            ex.options["fetchMarkets"] = [kind]
    return ex, session


def _error_text(body: bytes) -> str:
    # The venues' error payloads: Binance and OKX {"code","msg"}, Bybit {"retCode","retMsg"},
    # Deribit JSON-RPC {"error": {"code","message","data": {"reason"}}}, dYdX {"errors": [..]}.
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body[:200].decode("utf-8", "replace").strip() or "(empty body)"
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict):
            doc = err
        errors = doc.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            doc = errors[0]
        if "retCode" in doc:
            return f"retCode {doc['retCode']} {doc.get('retMsg', '')}".rstrip()
        code = doc.get("code")
        msg = doc.get("msg", doc.get("message"))
        data = doc.get("data")
        if isinstance(data, dict) and "reason" in data:  # Deribit's detail
            msg = f"{msg} ({data['reason']})"
        if msg is not None and msg != "":
            return f"{code} {msg}" if code is not None else str(msg)
    return json.dumps(doc)[:200]


def _retry_after_s(headers: dict[str, str]) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP-date Retry-After: fall back to our own backoff


def _unresolved(exc: BaseException) -> bool:
    # ccxt raises NetworkError from requests' ConnectionError, which holds urllib3's
    # MaxRetryError(reason=NameResolutionError), caused by socket.gaierror. Without a
    # network, or for a misspelt host, getaddrinfo fails in milliseconds and would fail the
    # same way after every backoff: retrying only makes the user wait.
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, socket.gaierror) or type(e).__name__ == "NameResolutionError":
            return True
        todo.extend((e.__cause__, e.__context__, getattr(e, "reason", None), *e.args))
    return False


def _call(venue: str, session: Any, policy: HttpPolicy, counters: _Counters,
          fn: Callable[[], Any], check: Callable[[Any], None] | None = None) -> Any:
    """Run one ccxt call with our retries; map every failure to a precise FetchError.

    ``check`` inspects a 2xx body (the venue's documented shape) before ccxt's result, or
    ccxt's parser's own exception, is trusted.
    """
    ccxt = _ccxt()
    if counters.calls and policy.pause_s > 0:
        policy.sleep(policy.pause_s)  # be gentle with the venue's per-IP weight limits
    counters.calls += 1
    attempt = 0
    while True:
        attempt += 1
        session.clear()
        try:
            result = fn()
        except Exception as exc:  # ccxt's errors, requests' and a parser's on odd data
            if session.malformed:
                raise FetchError(f"{venue}: malformed response from {session.malformed}"
                                 ) from None
            status: int | None = session.status
            url = session.url or "(no request sent)"
            if status is None and _unresolved(exc):
                raise FetchError(
                    f"{venue}: cannot resolve the host of {url} ({_root_cause(exc)}); not "
                    "retried: check the name, --base-url or the network") from None
            if status is None and not isinstance(exc, ccxt.NetworkError):
                raise FetchError(f"{venue}: {exc}") from None  # ccxt refused before sending
            if status is None:
                problem = f"network error ({_root_cause(exc)})"
            elif status == 429 or status >= 500:
                problem = f"HTTP {status} ({_error_text(session.body)})"
            elif status >= 300:
                raise FetchError(f"{venue}: HTTP {status} from {url}: "
                                 f"{_error_text(session.body)}") from None
            elif isinstance(exc, ccxt.RateLimitExceeded):  # a rate limit in the body
                problem = f"rate limited ({_error_text(session.body)})"
            elif isinstance(exc, ccxt.BaseError):  # the venue's error in a 2xx body
                raise FetchError(f"{venue}: error from {url}: "
                                 f"{_error_text(session.body)}") from None
            else:
                if check is not None:
                    check(session)
                raise FetchError(f"{venue}: malformed response from {url}: "
                                 f"{type(exc).__name__}: {exc}") from None
            if attempt > policy.retries:
                raise FetchError(f"{venue}: gave up on {url} after {attempt} attempts; "
                                 f"last: {problem}") from None
            counters.retries += 1
            after = _retry_after_s(session.reply_headers) if status is not None else None
            delay = policy.backoff_s * 2 ** (attempt - 1) if after is None else after
            policy.sleep(min(policy.backoff_max_s, delay))
            continue
        if session.malformed:
            raise FetchError(f"{venue}: malformed response from {session.malformed}")
        if check is not None:
            check(session)
        return result


def _root_cause(exc: BaseException) -> str:
    inner: BaseException = exc
    while inner.__cause__ is not None:
        inner = inner.__cause__
    reason = getattr(inner, "reason", None)
    if isinstance(reason, BaseException):
        inner = reason
        while inner.__cause__ is not None:
            inner = inner.__cause__
    return str(inner) or type(inner).__name__


def _check_shape(req: FetchRequest, session: Any) -> None:
    # ccxt reads a page with safe_* accessors, so a body of another shape reads as an empty
    # page; the venue's documented shape is checked here so that it fails with its reason.
    path = _ROWS_AT[req.kind][req.venue]
    node: Any = json.loads(session.body)
    where = "the body"
    for key in path:
        if not isinstance(node, dict) or key not in node:
            if req.venue == "deribit" and isinstance(node, dict) and node.get(
                    "status") == "no_data":
                return  # Deribit's empty window: {"result": {"status": "no_data"}}
            raise FetchError(f"{req.venue}: malformed response from {session.url}: expected "
                             f"an object with {'.'.join(path)}, got {type(node).__name__}")
        node, where = node[key], ".".join(path)
    if not isinstance(node, list):
        raise FetchError(f"{req.venue}: malformed response from {session.url}: expected "
                         f"{where} to be an array, got {type(node).__name__}")


def _find_market(ex: Any, req: FetchRequest) -> dict[str, Any]:
    """The ccxt market of the request: a unified symbol as given, else the venue's id (or
    Hyperliquid's coin) among the markets of the wanted type."""
    markets: dict[str, dict[str, Any]] = ex.markets or {}
    wanted = req.market

    def fits(m: dict[str, Any]) -> bool:
        if wanted == "spot":
            return bool(m.get("spot"))
        if wanted == "usdm":
            return bool(m.get("swap")) and bool(m.get("linear"))
        return True

    if req.given in markets and fits(markets[req.given]):
        return markets[req.given]
    key = req.symbol.upper()
    found = [m for m in markets.values() if fits(m) and (
        str(m.get("id", "")).upper() == key or str(m.get("symbol", "")).upper() == key
        or (m.get("swap") and str(m.get("baseName", "")).upper() == key))]
    if len(found) == 1:
        return found[0]
    kind = "" if wanted == "n/a" else f" {wanted}"
    if not found:
        some = ", ".join(sorted(str(m.get("id")) for m in markets.values() if fits(m))[:5])
        raise FetchError(f"{req.venue}: no{kind} market {req.given!r} "
                         f"({len(markets)} markets loaded{'; e.g. ' + some if some else ''})")
    raise FetchError(f"{req.venue}: {req.given!r} names several{kind} markets: "
                     f"{', '.join(sorted(m['symbol'] for m in found))}; give one of them")


def _windows(req: FetchRequest, step_ms: int, page: int) -> list[tuple[int, int]]:
    # Fixed windows of `page` rows, [since, until] inclusive, so that every venue returns
    # each window whole whichever way it pages (Bybit and dYdX serve newest first).
    span = page * step_ms
    return [(s, min(s + span, req.end_ms) - 1) for s in range(req.start_ms, req.end_ms, span)]


def _download(req: FetchRequest, policy: HttpPolicy,
              method: Callable[[Any, str, int, int, int], Any]) -> tuple[list[Any], _Counters,
                                                                         Any, dict[str, Any]]:
    counters = _Counters()
    ex, session = _exchange(req, policy)
    _call(req.venue, session, policy, counters, ex.load_markets)
    market = _find_market(ex, req)
    step = _FUNDING_STEP_MS if req.kind == "funding" else req.interval_ms
    page = policy.page or _PAGE[req.kind][req.venue]
    rows: list[Any] = []
    for since, until in _windows(req, step, page):
        got = _call(req.venue, session, policy, counters,
                    functools.partial(method, ex, market["symbol"], since, until, page),
                    functools.partial(_check_shape, req))
        if not isinstance(got, list):
            raise FetchError(f"{req.venue}: malformed response from {session.url}: ccxt "
                             f"returned {type(got).__name__}, not a list")
        counters.pages.append(len(got))
        rows.extend((session.url, i, r) for i, r in enumerate(got))
    return rows, counters, session, market


# --------------------------------------------------------------------------- checks


def _number(value: object, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FetchError(f"{where}: {name} {value!r} is missing or not a number")
    x = float(value)
    if not math.isfinite(x):
        raise FetchError(f"{where}: {name} {value!r} is not finite")
    return x


def _timestamp(value: object, where: str) -> int:
    x = _number(value, where, "time")
    if x != int(x) or x < 0:
        raise FetchError(f"{where}: time {value!r} is not a whole number of ms")
    return int(x)


def _kline(url: str, i: int, row: object, venue: str) -> Kline:
    where = f"{venue}: malformed response from {url}: candle {i}"
    if not isinstance(row, Sequence) or isinstance(row, str) or len(row) < 6:
        raise FetchError(f"{where}: expected [time, open, high, low, close, volume], "
                         f"got {row!r:.80}")
    ts = _timestamp(row[0], where)
    o, h, lo, c, v = (_number(row[k], where, n) for k, n in
                      enumerate(("open", "high", "low", "close", "volume"), start=1))
    return Kline(ts, o, h, lo, c, v)


# validate_klines, gap_report and _dedupe follow (unchanged from the urllib version).
def validate_klines(bars: tuple[Kline, ...] | list[Kline], interval_ms: int, *,
                    label: str = "") -> None:
    """Check each bar and the grid; raise :class:`FetchError` naming the first bad bar.

    A bar needs ``0 < low <= min(open, close)``, ``max(open, close) <= high`` and
    ``volume >= 0``; bars must be strictly increasing in time and on the grid of the first
    bar (open times differ by whole intervals).
    """
    prefix = f"{label}: " if label else ""
    for i, k in enumerate(bars):
        at = f"{prefix}bar {_iso(k.ts_ms)}"
        if min(k.open, k.high, k.low, k.close) <= 0.0:
            raise FetchError(f"{at}: prices must be > 0 (open {k.open}, high {k.high}, "
                             f"low {k.low}, close {k.close})")
        if k.high < max(k.open, k.close, k.low):
            worst = max(("open", k.open), ("close", k.close), ("low", k.low),
                        key=lambda p: p[1])
            raise FetchError(f"{at}: high {k.high} < {worst[0]} {worst[1]}")
        if k.low > min(k.open, k.close):
            worst = min(("open", k.open), ("close", k.close), key=lambda p: p[1])
            raise FetchError(f"{at}: low {k.low} > {worst[0]} {worst[1]}")
        if k.volume < 0.0:
            raise FetchError(f"{at}: volume {k.volume} < 0")
        if i and k.ts_ms <= bars[i - 1].ts_ms:
            raise FetchError(f"{at}: not after the previous bar {_iso(bars[i - 1].ts_ms)}")
        if (k.ts_ms - bars[0].ts_ms) % interval_ms:
            raise FetchError(f"{at}: not on the {_lab_interval(interval_ms)} grid of the "
                             f"first bar {_iso(bars[0].ts_ms)}")


def gap_report(ts_ms: list[int], interval_ms: int) -> tuple[int, tuple[tuple[int, int], ...]]:
    """Return the number of missing bars between consecutive open times, and each gap.

    ``missing = sum(diff / interval - 1)`` over consecutive sorted, on-grid open times;
    each gap is ``(first missing open time ms, bars missing)``.
    """
    gaps = tuple((a + interval_ms, (b - a) // interval_ms - 1)
                 for a, b in itertools.pairwise(ts_ms) if b - a > interval_ms)
    return sum(n for _, n in gaps), gaps


def _dedupe(bars: list[Kline]) -> tuple[list[Kline], int]:
    # Keep the last copy fetched of each open time: a later page holds the newer state
    # of a bar that was still open when an earlier page was served.
    by_ts: dict[int, Kline] = {}
    for k in bars:
        by_ts[k.ts_ms] = k
    return [by_ts[t] for t in sorted(by_ts)], len(bars) - len(by_ts)


# --------------------------------------------------------------------------- entry


def _now(now_ms: int | None) -> int:
    return round(time.time() * 1000) if now_ms is None else now_ms


def fetch_klines(req: FetchRequest, *, policy: HttpPolicy | None = None,
                 now_ms: int | None = None) -> FetchResult:
    """Download, deduplicate, sort, validate and gap-check the bars of ``req`` via ccxt.

    Parameters
    ----------
    req : FetchRequest
        From :func:`resolve_request`.
    policy : HttpPolicy, optional
        Timeout, retries, backoff, page pause, sleep and page size.
    now_ms : int, optional
        The current time in epoch ms (default: the wall clock); a bar whose close time
        ``open + interval`` is after it is still open and is dropped.

    Raises
    ------
    FetchError
        On an HTTP error, exhausted retries (``retries + 1`` attempts), a host name that
        does not resolve (at once, not retried), an unknown symbol, a malformed body, an
        invalid bar, or no bars.
    """
    if req.kind != "ohlcv":
        raise FetchError(f"fetch_klines: request is for {req.kind}")
    pol = policy or HttpPolicy()
    now = _now(now_ms)

    def ohlcv(ex: Any, symbol: str, since: int, until: int, page: int) -> Any:
        return ex.fetch_ohlcv(symbol, req.timeframe, since=since, limit=page,
                              params={"until": until})

    rows, counters, session, market = _download(req, pol, ohlcv)
    raw = [_kline(url, i, row, req.venue) for url, i, row in rows]
    inside = [k for k in raw if req.start_ms <= k.ts_ms < req.end_ms]
    bars, duplicates = _dedupe(inside)
    closed = [k for k in bars if k.ts_ms + req.interval_ms <= now]
    label = f"{req.venue} {req.symbol} {req.interval}"
    if not closed:
        raise FetchError(f"{label}: no closed bars between {_iso(req.start_ms)} and "
                         f"{_iso(req.end_ms)} ({session.count} requests)")
    validate_klines(closed, req.interval_ms, label=label)
    iv = req.interval_ms
    ts = [k.ts_ms for k in closed]
    missing, gaps = gap_report(ts, iv)
    first, last = ts[0], ts[-1]
    # Closed grid points after the last bar: open < END and open + interval <= now.
    tail = max(0, min((req.end_ms - 1 - last) // iv, (now - iv - last) // iv))
    report = FetchReport(
        venue=req.venue, market=req.market, symbol=req.symbol, interval=req.interval,
        start_ms=req.start_ms, end_ms=req.end_ms, bars=len(closed), first_ms=first,
        last_ms=last, missing=missing, missing_head=(first - req.start_ms) // iv,
        missing_tail=tail, gaps=gaps, duplicates=duplicates,
        dropped_open=len(bars) - len(closed), dropped_outside=len(raw) - len(inside),
        requests=session.count, retries=counters.retries, kind="ohlcv",
        ccxt_symbol=str(market["symbol"]))
    return FetchResult(tuple(closed), report)


def fetch_funding(req: FetchRequest, *, policy: HttpPolicy | None = None) -> FetchResult:
    """Download the funding-rate history of a perpetual in ``[START, END)`` via ccxt.

    Rates are the venue's (a fraction per funding period, as ccxt's ``fundingRate``), at the
    venue's funding times; duplicates are dropped (the last kept) and the rows sorted.

    Raises
    ------
    FetchError
        As :func:`fetch_klines`; also a rate that is not a finite number, or no rates.
    """
    if req.kind != "funding":
        raise FetchError(f"fetch_funding: request is for {req.kind}")
    pol = policy or HttpPolicy()

    def funding(ex: Any, symbol: str, since: int, until: int, page: int) -> Any:
        return ex.fetch_funding_rate_history(symbol, since=since, limit=page,
                                             params={"until": until})

    rows, counters, session, market = _download(req, pol, funding)
    parsed: list[FundingRate] = []
    for url, i, row in rows:
        where = f"{req.venue}: malformed response from {url}: funding rate {i}"
        if not isinstance(row, dict):
            raise FetchError(f"{where}: expected an object, got {row!r:.80}")
        parsed.append(FundingRate(_timestamp(row.get("timestamp"), where),
                                  _number(row.get("fundingRate"), where, "fundingRate")))
    inside = {r.ts_ms: r for r in parsed if req.start_ms <= r.ts_ms < req.end_ms}
    n_inside = sum(1 for r in parsed if req.start_ms <= r.ts_ms < req.end_ms)
    kept = [inside[t] for t in sorted(inside)]
    if not kept:
        raise FetchError(f"{req.venue} {req.symbol}: no funding rates between "
                         f"{_iso(req.start_ms)} and {_iso(req.end_ms)} ({session.count} "
                         "requests)")
    report = FetchReport(
        venue=req.venue, market=req.market, symbol=req.symbol, interval="", kind="funding",
        start_ms=req.start_ms, end_ms=req.end_ms, bars=len(kept), first_ms=kept[0].ts_ms,
        last_ms=kept[-1].ts_ms, missing=0, missing_head=0, missing_tail=0, gaps=(),
        duplicates=n_inside - len(kept), dropped_open=0,
        dropped_outside=len(parsed) - n_inside, requests=session.count,
        retries=counters.retries, ccxt_symbol=str(market["symbol"]))
    return FetchResult((), report, funding=tuple(kept))


def fetch_open_interest(req: FetchRequest, *, policy: HttpPolicy | None = None,
                        now_ms: int | None = None) -> FetchResult:
    """Download the open-interest history of a perpetual at ``interval`` steps via ccxt.

    Each row has ccxt's ``openInterestAmount`` (base units or contracts) and
    ``openInterestValue`` (quote), either of which a venue may leave out; rows must lie on
    the interval grid and not be negative, and missing steps are reported as gaps.

    Raises
    ------
    FetchError
        As :func:`fetch_klines`.
    """
    if req.kind != "open_interest":
        raise FetchError(f"fetch_open_interest: request is for {req.kind}")
    pol = policy or HttpPolicy()
    now = _now(now_ms)

    def interest(ex: Any, symbol: str, since: int, until: int, page: int) -> Any:
        return ex.fetch_open_interest_history(symbol, req.timeframe, since=since, limit=page,
                                              params={"until": until})

    rows, counters, session, market = _download(req, pol, interest)
    parsed: list[OpenInterest] = []
    for url, i, row in rows:
        where = f"{req.venue}: malformed response from {url}: open interest {i}"
        if not isinstance(row, dict):
            raise FetchError(f"{where}: expected an object, got {row!r:.80}")
        at = _timestamp(row.get("timestamp"), where)
        amount, value = (None if row.get(k) is None else _number(row.get(k), where, k)
                         for k in ("openInterestAmount", "openInterestValue"))
        if amount is not None and market.get("contract") and market.get("linear"):
            # ccxt counts OKX's open interest in contracts (0.01 BTC each): the CSV is in
            # the base asset everywhere, contracts x contractSize, in decimal.
            size = market.get("contractSize") or 1
            amount = float(Decimal(repr(amount)) * Decimal(repr(float(size))))
        if amount is None and value is None:
            raise FetchError(f"{where}: neither openInterestAmount nor openInterestValue")
        if min(x for x in (amount, value) if x is not None) < 0:
            raise FetchError(f"{req.venue} {req.symbol}: open interest at {_iso(at)} is "
                             f"negative ({amount}, {value})")
        parsed.append(OpenInterest(at, amount, value))
    inside = {r.ts_ms: r for r in parsed if req.start_ms <= r.ts_ms < req.end_ms}
    n_inside = sum(1 for r in parsed if req.start_ms <= r.ts_ms < req.end_ms)
    kept = [inside[t] for t in sorted(inside)]
    label = f"{req.venue} {req.symbol} open interest {req.interval}"
    if not kept:
        raise FetchError(f"{label}: no rows between {_iso(req.start_ms)} and "
                         f"{_iso(req.end_ms)} ({session.count} requests)")
    iv = req.interval_ms
    off = [r for r in kept if (r.ts_ms - kept[0].ts_ms) % iv]
    if off:
        raise FetchError(f"{label}: row {_iso(off[0].ts_ms)} is not on the {req.interval} "
                         f"grid of the first row {_iso(kept[0].ts_ms)}")
    ts = [r.ts_ms for r in kept]
    missing, gaps = gap_report(ts, iv)
    tail = max(0, min((req.end_ms - 1 - ts[-1]) // iv, (now - ts[-1]) // iv))
    report = FetchReport(
        venue=req.venue, market=req.market, symbol=req.symbol, interval=req.interval,
        kind="open_interest", start_ms=req.start_ms, end_ms=req.end_ms, bars=len(kept),
        first_ms=ts[0], last_ms=ts[-1], missing=missing,
        missing_head=max(0, (ts[0] - req.start_ms) // iv), missing_tail=tail, gaps=gaps,
        duplicates=n_inside - len(kept), dropped_open=0,
        dropped_outside=len(parsed) - n_inside, requests=session.count,
        retries=counters.retries, ccxt_symbol=str(market["symbol"]))
    return FetchResult((), report, open_interest=tuple(kept))


# --------------------------------------------------------------------------- CSV


def _open_out(path: Path, *, gz: bool) -> TextIO:
    if gz:
        return gzip.open(path, "wt", encoding="utf-8", newline="")
    return path.open("w", encoding="utf-8", newline="")


def _write_csv(path: str | Path, header: tuple[str, ...],
               rows: Sequence[tuple[object, ...]]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".part")
    with _open_out(tmp, gz=p.suffix == ".gz") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    tmp.replace(p)
    return p


def write_klines_csv(path: str | Path, bars: tuple[Kline, ...] | list[Kline]) -> Path:
    """Write bars in the shared-data layout (gzip if the name ends in ``.gz``).

    Header ``timestamp,timestamp_ms,open,high,low,close,volume``; ``timestamp`` is the
    ISO-8601 UTC open time (``YYYY-MM-DDTHH:MM:SSZ``). Floats are written with ``repr``,
    which reads back to the same value. The file is written to a temporary name and
    renamed, so a failed run leaves no partial file.
    """
    return _write_csv(path, ("timestamp", "timestamp_ms", "open", "high", "low", "close",
                             "volume"),
                      [(_iso(k.ts_ms), k.ts_ms, repr(k.open), repr(k.high), repr(k.low),
                        repr(k.close), repr(k.volume)) for k in bars])


def write_funding_csv(path: str | Path, rates: Sequence[FundingRate]) -> Path:
    """Write funding rates: ``timestamp,timestamp_ms,funding_rate`` (``repr`` floats)."""
    return _write_csv(path, ("timestamp", "timestamp_ms", "funding_rate"),
                      [(_iso(r.ts_ms), r.ts_ms, repr(r.rate)) for r in rates])


def write_open_interest_csv(path: str | Path, rows: Sequence[OpenInterest]) -> Path:
    """Write open interest: ``timestamp,timestamp_ms,open_interest,open_interest_value``.

    ``open_interest`` is in base units (contracts where the venue counts contracts),
    ``open_interest_value`` in the quote currency; a value the venue does not give is empty.
    """
    def cell(x: float | None) -> str:
        return "" if x is None else repr(x)

    return _write_csv(path, ("timestamp", "timestamp_ms", "open_interest",
                             "open_interest_value"),
                      [(_iso(r.ts_ms), r.ts_ms, cell(r.amount), cell(r.value)) for r in rows])
