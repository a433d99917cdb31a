"""Download public OHLCV klines from venue REST APIs into the lab's CSV layout.

The output is the repository's market-data format (``../shared/data/README.md``)::

    timestamp,timestamp_ms,open,high,low,close,volume
    2024-01-01T00:00:00Z,1704067200000,42283.58,42554.57,42261.02,42475.23,1271.68

with ``timestamp`` the bar OPEN time in UTC, so :func:`solvency.adapters.ohlcv.read_ohlcv`
reads it back unchanged. Supported endpoints (public, no key):

* ``binance`` spot ``GET /api/v3/klines`` and USD-M futures ``GET /fapi/v1/klines``,
  oldest first, paged forward by ``startTime`` with ``limit=1000``;
* ``bybit`` ``GET /v5/market/kline`` (``category=spot`` or ``linear``), newest first,
  paged backward by ``end`` with ``limit=1000``;
* ``deribit`` ``GET /api/v2/public/get_tradingview_chart_data``, column arrays, paged
  forward in windows of 1000 bars.

The window is half-open, ``START <= open time < END``. Every request goes through one
retrying GET (HTTP 429 and 5xx and network errors are retried with exponential backoff,
honouring ``Retry-After``; a host name that does not resolve is not retried, since no
backoff makes it resolve); the sleep function and the transport are injectable. The bars
are deduplicated, sorted, the still-open last bar is dropped, each bar is validated (OHLC
consistency, positive prices, non-negative volume, on the interval grid) and a gap report
counts the missing bars. Only the standard library does HTTP (``urllib.request``).
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import math
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, TextIO, cast

from solvency.adapters.ohlcv import OhlcvError, parse_interval_ms

__all__ = [
    "MARKETS",
    "VENUES",
    "FetchError",
    "FetchReport",
    "FetchRequest",
    "FetchResult",
    "HttpPolicy",
    "Kline",
    "Market",
    "Transport",
    "Venue",
    "default_filename",
    "fetch_klines",
    "gap_report",
    "parse_utc_ms",
    "resolve_request",
    "supported_intervals",
    "urllib_transport",
    "validate_klines",
    "write_klines_csv",
]

Venue = Literal["binance", "bybit", "deribit"]
Market = Literal["spot", "usdm"]
VENUES: Final[tuple[Venue, ...]] = ("binance", "bybit", "deribit")
MARKETS: Final[tuple[Market, ...]] = ("spot", "usdm")

Transport = Callable[[str, float], tuple[int, Mapping[str, str], bytes]]
"""``(url, timeout_s) -> (status, headers, body)``; non-2xx statuses are returned, not raised."""

_MIN: Final = 60_000
_HOUR: Final = 3_600_000
_DAY: Final = 86_400_000
# Lab interval (in ms) -> the venue's own interval code, from each venue's kline docs.
_INTERVAL_CODES: Final[dict[Venue, dict[int, str]]] = {
    "binance": {_MIN: "1m", 3 * _MIN: "3m", 5 * _MIN: "5m", 15 * _MIN: "15m",
                30 * _MIN: "30m", _HOUR: "1h", 2 * _HOUR: "2h", 4 * _HOUR: "4h",
                6 * _HOUR: "6h", 8 * _HOUR: "8h", 12 * _HOUR: "12h", _DAY: "1d",
                3 * _DAY: "3d", 7 * _DAY: "1w"},
    "bybit": {_MIN: "1", 3 * _MIN: "3", 5 * _MIN: "5", 15 * _MIN: "15", 30 * _MIN: "30",
              _HOUR: "60", 2 * _HOUR: "120", 4 * _HOUR: "240", 6 * _HOUR: "360",
              12 * _HOUR: "720", _DAY: "D", 7 * _DAY: "W"},
    "deribit": {_MIN: "1", 3 * _MIN: "3", 5 * _MIN: "5", 10 * _MIN: "10", 15 * _MIN: "15",
                30 * _MIN: "30", _HOUR: "60", 2 * _HOUR: "120", 3 * _HOUR: "180",
                6 * _HOUR: "360", 12 * _HOUR: "720", _DAY: "1D"},
}
_BASE_URLS: Final[dict[tuple[Venue, Market], str]] = {
    ("binance", "spot"): "https://api.binance.com",
    ("binance", "usdm"): "https://fapi.binance.com",
    ("bybit", "spot"): "https://api.bybit.com",
    ("bybit", "usdm"): "https://api.bybit.com",
    ("deribit", "spot"): "https://www.deribit.com",
}
_PATHS: Final[dict[tuple[Venue, Market], str]] = {
    ("binance", "spot"): "/api/v3/klines",
    ("binance", "usdm"): "/fapi/v1/klines",
    ("bybit", "spot"): "/v5/market/kline",
    ("bybit", "usdm"): "/v5/market/kline",
    ("deribit", "spot"): "/api/v2/public/get_tradingview_chart_data",
}
# Symbol suffixes that name a USD-M perpetual (stripped before the request): TradingView's
# ".P", the common "-PERP"/"_PERP", and CCXT's settle suffix ("BTC/USDT:USDT").
_PERP_SUFFIXES: Final = (".P", "-PERP", "_PERP", ":USDT", ":USDC")
_PAGE_BARS: Final = 1000
_USER_AGENT: Final = "solvency-data-fetch/0.1 (+https://github.com/solvency)"


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


def urllib_transport(url: str, timeout_s: float) -> tuple[int, Mapping[str, str], bytes]:
    """GET ``url`` with :mod:`urllib.request`; return status, headers and body.

    HTTP error statuses are returned (with their body) rather than raised; network
    failures and timeouts raise :class:`OSError`.
    """
    req = urllib.request.Request(
        url, headers={"User-Agent": _USER_AGENT, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return int(resp.status), dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), dict(exc.headers.items()), exc.read()


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """How to talk to a venue: timeout, retries, backoff and the pause between pages.

    The delay before retry ``k`` (1-based) is ``min(backoff_max_s, backoff_s * 2**(k-1))``,
    or the server's ``Retry-After`` seconds when it sends one (capped the same way).
    """

    timeout_s: float = 30.0
    retries: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    pause_s: float = 0.2
    sleep: Callable[[float], None] = time.sleep
    transport: Transport = urllib_transport

    def __post_init__(self) -> None:
        """Reject settings that would hang or spin."""
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise FetchError(f"timeout {self.timeout_s} s: must be > 0")
        if self.retries < 0:
            raise FetchError(f"retries {self.retries}: must be >= 0")
        if min(self.backoff_s, self.backoff_max_s, self.pause_s) < 0:
            raise FetchError("backoff and pause seconds must be >= 0")


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """A validated download request (build it with :func:`resolve_request`)."""

    venue: Venue
    market: Market
    symbol: str
    interval: str
    interval_ms: int
    start_ms: int
    end_ms: int
    base_url: str

    @property
    def venue_interval(self) -> str:
        """Return the venue's own code for the interval (``"60"`` on Bybit for 1h)."""
        return _INTERVAL_CODES[self.venue][self.interval_ms]


@dataclass(frozen=True, slots=True)
class FetchReport:
    """What a download did and what is missing from it.

    ``missing`` counts absent bars between the first and last bar (the data README's
    definition); ``missing_head`` those between START and the first bar, ``missing_tail``
    the closed bars between the last bar and END. ``gaps`` lists ``(first missing open
    time ms, bars missing)`` in time order.
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

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready values (times also as ISO-8601 UTC)."""
        return {
            "venue": self.venue, "market": self.market, "symbol": self.symbol,
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
    """The validated bars in time order and the report on them."""

    bars: tuple[Kline, ...]
    report: FetchReport


@dataclass(slots=True)
class _Counters:
    requests: int = 0
    retries: int = 0
    pages: list[int] = field(default_factory=list)


# --------------------------------------------------------------------------- inputs


def supported_intervals(venue: Venue) -> tuple[str, ...]:
    """Return the intervals a venue serves, in the lab's notation (``1m``, ``1h``, ``1d``)."""
    return tuple(_lab_interval(ms) for ms in sorted(_INTERVAL_CODES[venue]))


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


def _split_symbol(venue: Venue, symbol: str, market: str | None) -> tuple[str, Market]:
    s = symbol.strip().upper()
    if not s:
        raise FetchError("symbol is empty")
    if venue == "deribit":
        if market is not None:
            raise FetchError("--market applies to binance and bybit only; deribit takes an "
                             "instrument name such as BTC-PERPETUAL")
        return s, "spot"
    implied: Market | None = None
    for suffix in _PERP_SUFFIXES:
        if s.endswith(suffix):
            s, implied = s[: -len(suffix)], "usdm"
            break
    s = s.replace("/", "")
    if market is not None and market not in MARKETS:
        raise FetchError(f"market {market!r}: expected one of {', '.join(MARKETS)}")
    if market is not None and implied is not None and market != implied:
        raise FetchError(f"symbol {symbol!r} names a USD-M perpetual but --market is {market}")
    if not s.isalnum():
        raise FetchError(f"symbol {symbol!r}: expected letters and digits, e.g. BTCUSDT")
    chosen: Market = market if market is not None else implied or "spot"
    return s, chosen


def _check_base_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise FetchError(f"base URL {url!r}: expected http:// or https://host[:port]")
    return url.rstrip("/")


def resolve_request(
    venue: str, symbol: str, interval: str, start: str, end: str, *,
    market: str | None = None, base_url: str | None = None,
) -> FetchRequest:
    """Validate the command-line inputs into a :class:`FetchRequest`.

    Parameters
    ----------
    venue : str
        ``binance``, ``bybit`` or ``deribit``.
    symbol : str
        Venue symbol (``BTCUSDT``); ``BTCUSDT.P``, ``BTCUSDT-PERP`` or ``BTC/USDT:USDT``
        select the USD-M perpetual on binance and bybit. Deribit takes instrument names.
    interval : str
        Lab notation: ``1m``, ``5m``, ``1h``, ``4h``, ``1d`` ... (see
        :func:`supported_intervals`).
    start, end : str
        ISO-8601 dates or datetimes (UTC); the window is ``start <= open time < end``.
    market : {"spot", "usdm"}, optional
        Binance spot or USD-M futures; Bybit ``spot`` or ``linear``. Default: from the
        symbol suffix, else spot.
    base_url : str, optional
        Replace the venue's host (a mirror, a testnet, or a local test server).

    Raises
    ------
    FetchError
        Unknown venue or market, unsupported interval, unparsable or reversed times.
    """
    v = venue.strip().lower()
    if v not in VENUES:
        raise FetchError(f"unknown venue {venue!r}: expected one of {', '.join(VENUES)}")
    ven: Venue = v
    sym, mkt = _split_symbol(ven, symbol, market)
    allowed = supported_intervals(ven)
    try:
        iv_ms = parse_interval_ms(interval)
    except OhlcvError:
        iv_ms = -1
    if iv_ms not in _INTERVAL_CODES[ven]:
        raise FetchError(
            f"interval {interval!r} is not served by {ven}: expected one of {', '.join(allowed)}")
    start_ms = parse_utc_ms(start, name="START")
    end_ms = parse_utc_ms(end, name="END")
    if end_ms <= start_ms:
        raise FetchError(f"END {_iso(end_ms)} is not after START {_iso(start_ms)}")
    base = _check_base_url(base_url) if base_url else _BASE_URLS[(ven, mkt)]
    return FetchRequest(venue=ven, market=mkt, symbol=sym, interval=_lab_interval(iv_ms),
                        interval_ms=iv_ms, start_ms=start_ms, end_ms=end_ms, base_url=base)


def default_filename(req: FetchRequest) -> str:
    """Return the shared-data style name: ``btcusdt_binance_spot_1h_2024-01-01_2024-01-02.csv``."""
    sym = "".join(c if c.isalnum() else "_" for c in req.symbol.lower())
    day = "%Y-%m-%d"
    first = datetime.fromtimestamp(req.start_ms / 1000, tz=UTC).strftime(day)
    last = datetime.fromtimestamp(req.end_ms / 1000, tz=UTC).strftime(day)
    market = "" if req.venue == "deribit" else f"_{req.market}"
    return f"{sym}_{req.venue}{market}_{req.interval}_{first}_{last}.csv"


# --------------------------------------------------------------------------- HTTP


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP-date Retry-After: fall back to our own backoff


def _error_text(body: bytes) -> str:
    # The venues' error payloads: Binance {"code","msg"}, Bybit {"retCode","retMsg"},
    # Deribit JSON-RPC {"error": {"code","message"}}.
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body[:200].decode("utf-8", "replace").strip() or "(empty body)"
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict):
            doc = err
        code = doc.get("code", doc.get("retCode"))
        msg = doc.get("msg", doc.get("retMsg", doc.get("message")))
        data = doc.get("data")
        if isinstance(data, dict) and "reason" in data:  # Deribit's detail
            msg = f"{msg} ({data['reason']})"
        if msg is not None:
            return f"{code} {msg}" if code is not None else str(msg)
    return json.dumps(doc)[:200]


def _get_json(url: str, policy: HttpPolicy, counters: _Counters, venue: str) -> Any:
    attempt = 0
    while True:
        attempt += 1
        counters.requests += 1
        retry_after: float | None = None
        try:
            status, headers, body = policy.transport(url, policy.timeout_s)
        except OSError as exc:  # URLError, timeouts, refused connections
            if _unresolved(exc):
                raise FetchError(
                    f"{venue}: cannot resolve the host of {url} ({_reason(exc)}); not "
                    "retried: check the name, --base-url or the network") from None
            problem = f"network error ({exc})"
        else:
            if 200 <= status < 300:
                return _decode(body, url, venue)
            if status != 429 and status < 500:
                raise FetchError(f"{venue}: HTTP {status} from {url}: {_error_text(body)}")
            problem = f"HTTP {status} ({_error_text(body)})"
            retry_after = _retry_after_s(headers)
        if attempt > policy.retries:
            raise FetchError(f"{venue}: gave up on {url} after {attempt} attempts; "
                             f"last: {problem}")
        counters.retries += 1
        delay = policy.backoff_s * 2 ** (attempt - 1) if retry_after is None else retry_after
        policy.sleep(min(policy.backoff_max_s, delay))


def _unresolved(exc: OSError) -> bool:
    # urllib wraps the resolver's failure: URLError(reason=socket.gaierror(...)). Without a
    # network, or for a misspelt host, getaddrinfo fails in milliseconds and would fail the
    # same way after every backoff: retrying only makes the user wait.
    reason = getattr(exc, "reason", exc)
    return isinstance(reason, socket.gaierror)


def _reason(exc: OSError) -> str:
    reason = getattr(exc, "reason", exc)
    return str(reason)


def _decode(body: bytes, url: str, venue: str) -> Any:
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise FetchError(f"{venue}: malformed response from {url}: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise FetchError(f"{venue}: malformed response from {url}: not JSON ({exc.msg} at "
                         f"line {exc.lineno} column {exc.colno})") from None


# --------------------------------------------------------------------------- parsing


def _number(value: object, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FetchError(f"{where}: {name} {value!r} is not a number")
    try:
        x = float(value)
    except ValueError:
        raise FetchError(f"{where}: {name} {value!r} is not a number") from None
    if not math.isfinite(x):
        raise FetchError(f"{where}: {name} {value!r} is not finite")
    return x


def _timestamp(value: object, where: str) -> int:
    x = _number(value, where, "open time")
    if x != int(x) or x < 0:
        raise FetchError(f"{where}: open time {value!r} is not a whole number of ms")
    return int(x)


def _row_kline(row: object, where: str) -> Kline:
    if not isinstance(row, list) or len(row) < 6:
        raise FetchError(f"{where}: expected an array of at least 6 fields, got {row!r:.80}")
    ts = _timestamp(row[0], where)
    o, h, lo, c, v = (_number(row[i], where, n) for i, n in
                      enumerate(("open", "high", "low", "close", "volume"), start=1))
    return Kline(ts, o, h, lo, c, v)


def _binance_page(doc: Any, url: str) -> list[Kline]:
    where = f"binance: malformed response from {url}"
    if not isinstance(doc, list):
        raise FetchError(f"{where}: expected a JSON array of klines, got {type(doc).__name__}")
    return [_row_kline(row, f"{where}: kline {i}") for i, row in enumerate(doc)]


def _bybit_page(doc: Any, url: str) -> list[Kline]:
    where = f"bybit: malformed response from {url}"
    if not isinstance(doc, dict) or "retCode" not in doc:
        raise FetchError(f"{where}: expected an object with retCode and result")
    if doc["retCode"] != 0:
        raise FetchError(f"bybit: error from {url}: retCode {doc['retCode']} "
                         f"{doc.get('retMsg', '')}".rstrip())
    result = doc.get("result")
    rows = result.get("list") if isinstance(result, dict) else None
    if not isinstance(rows, list):
        raise FetchError(f"{where}: result.list is missing or not an array")
    return [_row_kline(row, f"{where}: result.list[{i}]") for i, row in enumerate(rows)]


def _deribit_page(doc: Any, url: str) -> list[Kline]:
    where = f"deribit: malformed response from {url}"
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        raise FetchError(f"deribit: error from {url}: {_error_text(json.dumps(doc).encode())}")
    result = doc.get("result") if isinstance(doc, dict) else None
    if not isinstance(result, dict):
        raise FetchError(f"{where}: expected a JSON-RPC object with a result")
    if result.get("status") == "no_data":
        return []
    names = ("ticks", "open", "high", "low", "close", "volume")
    cols = [result.get(n) for n in names]
    bad = [n for n, col in zip(names, cols, strict=True) if not isinstance(col, list)]
    if bad:
        raise FetchError(f"{where}: result.{bad[0]} is missing or not an array")
    lengths = {len(cast(list[Any], col)) for col in cols}
    if len(lengths) != 1:
        raise FetchError(f"{where}: arrays ticks/open/high/low/close/volume differ in length")
    rows = [list(r) for r in zip(*cast(list[list[Any]], cols), strict=True)]
    return [_row_kline(row, f"{where}: candle {i}") for i, row in enumerate(rows)]


# --------------------------------------------------------------------------- paging


def _url(req: FetchRequest, params: dict[str, str | int]) -> str:
    return f"{req.base_url}{_PATHS[(req.venue, req.market)]}?{urllib.parse.urlencode(params)}"


def _binance_pages(req: FetchRequest, get: Callable[[str], Any]) -> Iterator[list[Kline]]:
    # Oldest first; startTime and endTime are inclusive, so END (exclusive) becomes END - 1.
    start = req.start_ms
    while start < req.end_ms:
        url = _url(req, {"symbol": req.symbol, "interval": req.venue_interval,
                         "startTime": start, "endTime": req.end_ms - 1, "limit": _PAGE_BARS})
        page = _binance_page(get(url), url)
        if not page:
            return
        yield page
        last = max(k.ts_ms for k in page)
        if last < start:
            raise FetchError(f"binance: no progress at {url}: last bar {_iso(last)} is before "
                             f"startTime {_iso(start)}")
        start = last + req.interval_ms


def _bybit_pages(req: FetchRequest, get: Callable[[str], Any]) -> Iterator[list[Kline]]:
    # Newest first ("sort in reverse by startTime"): walk backward from END by `end`.
    category = "linear" if req.market == "usdm" else "spot"
    end = req.end_ms - 1
    while end >= req.start_ms:
        url = _url(req, {"category": category, "symbol": req.symbol,
                         "interval": req.venue_interval, "start": req.start_ms, "end": end,
                         "limit": _PAGE_BARS})
        page = _bybit_page(get(url), url)
        if not page:
            return
        yield page
        oldest = min(k.ts_ms for k in page)
        if oldest > end:
            raise FetchError(f"bybit: no progress at {url}: oldest bar {_iso(oldest)} is after "
                             f"end {_iso(end)}")
        end = oldest - 1


def _deribit_pages(req: FetchRequest, get: Callable[[str], Any]) -> Iterator[list[Kline]]:
    # Fixed windows of _PAGE_BARS bars; both timestamps inclusive. An empty window
    # ("no_data") is not the end: the instrument may start trading later in the range.
    span = _PAGE_BARS * req.interval_ms
    for start in range(req.start_ms, req.end_ms, span):
        stop = min(start + span, req.end_ms) - 1
        url = _url(req, {"instrument_name": req.symbol, "start_timestamp": start,
                         "end_timestamp": stop, "resolution": req.venue_interval})
        yield _deribit_page(get(url), url)


_PAGERS: Final[dict[Venue, Callable[[FetchRequest, Callable[[str], Any]],
                                    Iterator[list[Kline]]]]] = {
    "binance": _binance_pages, "bybit": _bybit_pages, "deribit": _deribit_pages,
}


# --------------------------------------------------------------------------- checks


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


def fetch_klines(req: FetchRequest, *, policy: HttpPolicy | None = None,
                 now_ms: int | None = None) -> FetchResult:
    """Download, deduplicate, sort, validate and gap-check the bars of ``req``.

    Parameters
    ----------
    req : FetchRequest
        From :func:`resolve_request`.
    policy : HttpPolicy, optional
        Timeout, retries, backoff, page pause, sleep and transport.
    now_ms : int, optional
        The current time in epoch ms (default: the wall clock); a bar whose close time
        ``open + interval`` is after it is still open and is dropped.

    Raises
    ------
    FetchError
        On an HTTP error, exhausted retries (``retries + 1`` attempts), a host name that
        does not resolve (at once, not retried), a malformed body, an invalid bar, or no
        bars.
    """
    pol = policy or HttpPolicy()
    now = round(time.time() * 1000) if now_ms is None else now_ms
    counters = _Counters()

    def get(url: str) -> Any:
        if counters.requests and pol.pause_s > 0:
            pol.sleep(pol.pause_s)  # be gentle with the venue's per-IP weight limits
        return _get_json(url, pol, counters, req.venue)

    raw: list[Kline] = []
    for page in _PAGERS[req.venue](req, get):
        counters.pages.append(len(page))
        raw.extend(page)
    inside = [k for k in raw if req.start_ms <= k.ts_ms < req.end_ms]
    bars, duplicates = _dedupe(inside)
    closed = [k for k in bars if k.ts_ms + req.interval_ms <= now]
    label = f"{req.venue} {req.symbol} {req.interval}"
    if not closed:
        raise FetchError(f"{label}: no closed bars between {_iso(req.start_ms)} and "
                         f"{_iso(req.end_ms)} ({counters.requests} requests)")
    validate_klines(closed, req.interval_ms, label=label)
    return FetchResult(tuple(closed), _report(req, closed, counters, now=now,
                                              duplicates=duplicates,
                                              dropped_open=len(bars) - len(closed),
                                              dropped_outside=len(raw) - len(inside)))


def _report(req: FetchRequest, bars: list[Kline], counters: _Counters, *, now: int,
            duplicates: int, dropped_open: int, dropped_outside: int) -> FetchReport:
    iv = req.interval_ms
    ts = [k.ts_ms for k in bars]
    missing, gaps = gap_report(ts, iv)
    first, last = ts[0], ts[-1]
    # Closed grid points after the last bar: open < END and open + interval <= now.
    tail = max(0, min((req.end_ms - 1 - last) // iv, (now - iv - last) // iv))
    return FetchReport(
        venue=req.venue, market="n/a" if req.venue == "deribit" else req.market,
        symbol=req.symbol, interval=req.interval, start_ms=req.start_ms, end_ms=req.end_ms,
        bars=len(bars), first_ms=first,
        last_ms=last, missing=missing, missing_head=(first - req.start_ms) // iv,
        missing_tail=tail, gaps=gaps, duplicates=duplicates, dropped_open=dropped_open,
        dropped_outside=dropped_outside, requests=counters.requests,
        retries=counters.retries,
    )


def _open_out(path: Path, *, gz: bool) -> TextIO:
    if gz:
        return gzip.open(path, "wt", encoding="utf-8", newline="")
    return path.open("w", encoding="utf-8", newline="")


def write_klines_csv(path: str | Path, bars: tuple[Kline, ...] | list[Kline]) -> Path:
    """Write bars in the shared-data layout (gzip if the name ends in ``.gz``).

    Header ``timestamp,timestamp_ms,open,high,low,close,volume``; ``timestamp`` is the
    ISO-8601 UTC open time (``YYYY-MM-DDTHH:MM:SSZ``). Floats are written with ``repr``,
    which reads back to the same value. The file is written to a temporary name and
    renamed, so a failed run leaves no partial file.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".part")
    with _open_out(tmp, gz=p.suffix == ".gz") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(("timestamp", "timestamp_ms", "open", "high", "low", "close", "volume"))
        for k in bars:
            w.writerow((_iso(k.ts_ms), k.ts_ms, repr(k.open), repr(k.high), repr(k.low),
                        repr(k.close), repr(k.volume)))
    tmp.replace(p)
    return p
