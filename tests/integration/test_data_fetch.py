"""``solvency data fetch|funding|open-interest`` through ccxt against a real local HTTP server.

ccxt makes every request itself, over its own HTTP path (``requests``), with each venue's
endpoints pointed at a ``ThreadingHTTPServer`` on 127.0.0.1 by ``--base-url`` (which rewrites
ccxt's ``urls['api']``). The server replays small hand-written bodies from ``fixtures/`` in
each venue's documented response format: the markets (``fixtures/markets/``: Binance
``exchangeInfo``, Bybit ``instruments-info``, OKX ``public/instruments``, Deribit
``get_currencies``/``get_instruments``, Hyperliquid ``spotMeta``/``metaAndAssetCtxs``, dYdX
``perpetualMarkets``), the candles, funding and open-interest history (sources in
docs/data_fetch.md). No test touches the network.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from solvency.adapters.fetch import (
    FetchError,
    HttpPolicy,
    default_filename,
    fetch_klines,
    gap_report,
    parse_utc_ms,
    resolve_request,
)
from solvency.adapters.ohlcv import read_ohlcv
from solvency.cli.data import EXIT_DOWNLOAD_FAILED
from solvency.cli.main import app

FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
SERVER_LIFETIME_S = 60.0  # a watchdog stops the server even if a test hangs
FAST = ["--sleep", "0", "--backoff", "0", "--timeout", "5"]


@dataclass
class Reply:
    """One scripted answer: a status, a fixture file (or literal bytes) and headers."""

    status: int
    body: str | bytes
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else (FIXTURES / self.body).read_bytes()


@dataclass
class Route:
    """Answer requests to ``path`` whose parameters hold ``match``; replies are used in
    order, the last one repeats."""

    path: str
    match: dict[str, str]
    replies: list[Reply]


# The markets each venue's ccxt class loads first (only the market type asked for).
MARKET_ROUTES: list[tuple[str, dict[str, str], str]] = [
    ("/api/v3/exchangeInfo", {}, "binance_spot_exchangeinfo.json"),
    ("/fapi/v1/exchangeInfo", {}, "binance_usdm_exchangeinfo.json"),
    ("/v5/market/instruments-info", {"category": "spot"}, "bybit_spot_instruments.json"),
    ("/v5/market/instruments-info", {"category": "linear"}, "bybit_linear_instruments.json"),
    ("/api/v5/public/instruments", {"instType": "SPOT"}, "okx_spot_instruments.json"),
    ("/api/v5/public/instruments", {"instType": "SWAP"}, "okx_swap_instruments.json"),
    ("/api/v2/public/get_currencies", {}, "deribit_currencies.json"),
    ("/api/v2/public/get_instruments", {}, "deribit_instruments.json"),
    ("/info", {"type": "spotMeta"}, "hyperliquid_spot_meta.json"),
    ("/info", {"type": "metaAndAssetCtxs"}, "hyperliquid_meta_and_asset_ctxs.json"),
    ("/info", {"type": "meta"}, "hyperliquid_meta.json"),  # older ccxt's currencies
    ("/info", {"type": "spotMetaAndAssetCtxs"}, "hyperliquid_spot_meta_and_asset_ctxs.json"),
    ("/v4/perpetualMarkets", {}, "dydx_perpetual_markets.json"),
]
MARKET_PATHS = {p for p, _, _ in MARKET_ROUTES}
MARKET_TYPES = {m["type"] for p, m, _ in MARKET_ROUTES if p == "/info"}


class FixtureServer:
    """A ThreadingHTTPServer on 127.0.0.1 (port 0) that replays scripted replies.

    GET parameters come from the query; a POST's (Hyperliquid's ``/info``) from its JSON
    body, the keys of its ``req`` object included.
    """

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, params: dict[str, str]) -> None:
                url = urllib.parse.urlsplit(self.path)
                params.update(urllib.parse.parse_qsl(url.query))
                reply = outer.answer(url.path, params)
                body = reply.payload()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._reply({})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                doc = json.loads(raw or b"{}")
                flat = {**doc, **doc.get("req", {})} if isinstance(doc, dict) else {}
                self._reply({k: str(v) for k, v in flat.items() if k != "req"})

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep pytest output clean

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        for path, match, name in MARKET_ROUTES:
            self.route(path, match, Reply(200, "markets/" + name))

    def route(self, path: str, match: dict[str, str], *replies: Reply) -> None:
        self.routes.append(Route(path, match, list(replies)))

    def answer(self, path: str, query: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append((path, query))
            for r in self.routes:
                if r.path == path and all(query.get(k) == v for k, v in r.match.items()):
                    return r.replies.pop(0) if len(r.replies) > 1 else r.replies[0]
        missing = json.dumps({"code": -1, "msg": f"no fixture for {path} {query}"})
        return Reply(404, missing.encode())

    def data_requests(self) -> list[tuple[str, dict[str, str]]]:
        """The requests after the markets were loaded."""
        return [(p, q) for p, q in self.requests if (p not in MARKET_PATHS or p == "/info")
                and q.get("type") not in MARKET_TYPES]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FixtureServer]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = FixtureServer()
    thread = threading.Thread(target=srv.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    watchdog = threading.Timer(SERVER_LIFETIME_S, srv.httpd.shutdown)
    thread.start()
    watchdog.start()
    try:
        yield srv
    finally:
        watchdog.cancel()
        srv.httpd.shutdown()
        srv.httpd.server_close()
        thread.join(timeout=5)


def _ok(name: str) -> Reply:
    return Reply(200, name)


def _run(server: FixtureServer, command: str, args: list[str], out: Path) -> dict[str, object]:
    res = runner.invoke(app, ["data", command, *args, "--out", str(out),
                              "--base-url", server.url, "--json", *FAST])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def _fetch(server: FixtureServer, args: list[str], out: Path) -> dict[str, object]:
    return _run(server, "fetch", args, out)


def _route_binance_spot_btc(server: FixtureServer) -> None:
    # windows of 3 bars: [00:00, 03:00), [03:00, 06:00), [06:00, 08:00)
    path = "/api/v3/klines"
    server.route(path, {"symbol": "BTCUSDT", "startTime": str(T0)},
                 _ok("binance_spot_btcusdt_1h_page1.json"))  # 00, 01, 02
    server.route(path, {"symbol": "BTCUSDT", "startTime": str(T0 + 3 * H)},
                 _ok("binance_spot_btcusdt_1h_page2.json"))  # 02 (before since), 03, 05
    server.route(path, {"symbol": "BTCUSDT"}, _ok("binance_empty.json"))


SPOT_CSV = """\
timestamp,timestamp_ms,open,high,low,close,volume
2024-01-01T00:00:00Z,1704067200000,42283.58,42554.57,42261.02,42475.23,1271.68108
2024-01-01T01:00:00Z,1704070800000,42475.23,42775.0,42431.65,42613.56,1196.37856
2024-01-01T02:00:00Z,1704074400000,42613.57,42638.41,42500.0,42581.1,685.20627
2024-01-01T03:00:00Z,1704078000000,42581.09,42586.64,42230.08,42330.49,794.81462
2024-01-01T05:00:00Z,1704085200000,42399.98,42540.0,42380.0,42473.53,601.33452
"""


# --------------------------------------------------------------------------- success


def test_binance_spot_pages_dedupes_sorts_reports_the_gap_and_writes_the_csv_exactly(
    server: FixtureServer, tmp_path: Path,
) -> None:
    _route_binance_spot_btc(server)
    out = tmp_path / "btc.csv"
    report = _fetch(server, ["binance", "BTCUSDT", "1h", "2024-01-01", "2024-01-01T08:00",
                             "--page", "3"], out)

    assert out.read_bytes() == SPOT_CSV.encode()  # the shared-data layout, byte for byte
    bars = read_ohlcv(out)
    assert bars.ts_ms.tolist() == [T0, T0 + H, T0 + 2 * H, T0 + 3 * H, T0 + 5 * H]
    assert report["bars"] == 5 and report["missing"] == 1 and report["duplicates"] == 0
    assert report["gaps"] == [{"start": "2024-01-01T04:00:00Z", "bars": 1}]
    assert report["missing_head"] == 0 and report["missing_tail"] == 2  # 06:00 and 07:00
    assert report["ccxt_symbol"] == "BTC/USDT" and report["market"] == "spot"
    assert report["requests"] == 4 and report["retries"] == 0  # exchangeInfo + 3 windows
    # ccxt's request of each window: startTime .. until (inclusive), limit = --page
    data = server.data_requests()
    assert [(q["startTime"], q["endTime"]) for _, q in data] == [
        (str(T0), str(T0 + 3 * H - 1)), (str(T0 + 3 * H), str(T0 + 6 * H - 1)),
        (str(T0 + 6 * H), str(T0 + 8 * H - 1))]
    assert {(q["interval"], q["limit"]) for _, q in data} == {("1h", "3")}
    assert [p for p, _ in server.requests[:1]] == ["/api/v3/exchangeInfo"]


@pytest.mark.parametrize(
    ("symbol", "extra"),
    [pytest.param("BTCUSDT.P", [], id="suffix-.P"),
     pytest.param("BTCUSDT-PERP", [], id="suffix-PERP"),
     pytest.param("BTC/USDT:USDT", [], id="ccxt-unified-symbol"),
     pytest.param("btcusdt", ["--market", "usdm"], id="market-option")],
)
def test_binance_usdm_uses_fapi(server: FixtureServer, tmp_path: Path, symbol: str,
                                extra: list[str]) -> None:
    path = "/fapi/v1/klines"
    server.route(path, {"symbol": "BTCUSDT", "startTime": str(T0)},
                 _ok("binance_usdm_btcusdt_1h_page1.json"))
    server.route(path, {"symbol": "BTCUSDT", "startTime": str(T0 + 2 * H)},
                 _ok("binance_usdm_btcusdt_1h_page2.json"))
    out = tmp_path / "perp.csv"
    report = _fetch(server, ["binance", symbol, "1h", "2024-01-01T00:00:00Z",
                             "2024-01-01T04:00:00Z", "--page", "2", *extra], out)
    assert report["market"] == "usdm" and report["ccxt_symbol"] == "BTC/USDT:USDT"
    assert report["requests"] == 3  # fapi exchangeInfo + 2 windows
    assert {p for p, _ in server.requests} == {"/fapi/v1/exchangeInfo", path}
    bars = read_ohlcv(out)
    assert bars.ts_ms.tolist() == [T0 + i * H for i in range(4)]
    assert bars.low.tolist() == [42289.6, 42458.1, 42521.1, 42254.4]


def test_429_then_success_is_retried(server: FixtureServer, tmp_path: Path) -> None:
    server.route("/api/v3/klines", {"symbol": "ETHUSDT"},
                 Reply(429, "binance_error_429.json", {"Retry-After": "0"}),
                 _ok("binance_spot_ethusdt_1h.json"))
    out = tmp_path / "eth.csv"
    report = _fetch(server, ["binance", "ETHUSDT", "1h", "2024-01-01", "2024-01-01T02:00"], out)
    assert report["requests"] == 3 and report["retries"] == 1 and report["bars"] == 2
    assert read_ohlcv(out).open.tolist() == [2281.87, 2293.57]


def test_bybit_linear_newest_first_pages_into_gzip(server: FixtureServer,
                                                   tmp_path: Path) -> None:
    path = "/v5/market/kline"
    server.route(path, {"start": str(T0)}, _ok("bybit_linear_btcusdt_1h_page2.json"))
    server.route(path, {"start": str(T0 + 3 * H)}, _ok("bybit_linear_btcusdt_1h_page1.json"))
    out = tmp_path / "bybit.csv.gz"
    report = _fetch(server, ["bybit", "BTCUSDT.P", "60m", "2024-01-01", "2024-01-01T06:00",
                             "--page", "3"], out)
    assert report["missing"] == 0 and report["interval"] == "1h" and report["bars"] == 6
    data = server.data_requests()
    assert [(q["start"], q["end"]) for _, q in data] == [
        (str(T0), str(T0 + 3 * H - 1)), (str(T0 + 3 * H), str(T0 + 6 * H - 1))]
    assert {(q["category"], q["interval"], q["limit"]) for _, q in data} == {
        ("linear", "60", "3")}
    with gzip.open(out, "rt") as fh:
        assert fh.readline().strip() == "timestamp,timestamp_ms,open,high,low,close,volume"
    bars = read_ohlcv(out)
    assert bars.ts_ms.tolist() == [T0 + i * H for i in range(6)]
    assert bars.close.tolist() == [42500.5, 42637.0, 42604.2, 42349.9, 42410.1, 42480.0]


# Each venue's candles for 2024-01-01 00:00-03:00, through ccxt: the request ccxt sends
# (path and the parameters that place the window) and the CSV written, byte for byte.
VENUE_CASES = [
    pytest.param(
        "deribit", "BTC-PERPETUAL", "/api/v2/public/get_tradingview_chart_data",
        {"instrument_name": "BTC-PERPETUAL", "resolution": "60",
         "start_timestamp": str(T0 - 1), "end_timestamp": str(T0 + 3 * H - 1)},
        "deribit_btc_perpetual_1h.json", "n/a", "BTC/USD:BTC",
        ["2024-01-01T00:00:00Z,1704067200000,42305.0,42580.0,42281.0,42497.5,41.39416546",
         "2024-01-01T01:00:00Z,1704070800000,42497.5,42795.5,42452.5,42635.0,52.10223872",
         "2024-01-01T02:00:00Z,1704074400000,42635.0,42660.0,42515.0,42601.5,20.87456109"],
        id="deribit"),
    pytest.param(
        "okx", "BTC-USDT-SWAP", "/api/v5/market/history-candles",
        {"instId": "BTC-USDT-SWAP", "bar": "1H", "before": str(T0 - 1),
         "after": str(T0 + 3 * H - 1)},
        "okx_swap_btc_usdt_1h.json", "usdm", "BTC/USDT:USDT",
        ["2024-01-01T00:00:00Z,1704067200000,42313.9,42586.1,42290.2,42502.9,10733.64",
         "2024-01-01T01:00:00Z,1704070800000,42502.9,42801.0,42458.8,42640.1,11821.17",
         "2024-01-01T02:00:00Z,1704074400000,42640.1,42668.0,42519.9,42606.3,6480.21"],
        id="okx-volume-in-coins-not-contracts"),
    pytest.param(
        "hyperliquid", "BTC", "/info",
        {"type": "candleSnapshot", "coin": "BTC", "interval": "1h", "startTime": str(T0),
         "endTime": str(T0 + 3 * H - 1)},
        "hyperliquid_btc_1h.json", "usdm", "BTC/USDC:USDC",
        ["2024-01-01T00:00:00Z,1704067200000,42316.0,42590.0,42288.0,42505.0,1287.35461",
         "2024-01-01T01:00:00Z,1704070800000,42505.0,42803.0,42455.0,42641.0,1402.11274",
         "2024-01-01T02:00:00Z,1704074400000,42641.0,42667.0,42517.0,42607.0,702.40813"],
        id="hyperliquid-post"),
    pytest.param(
        "dydx", "BTC-USD", "/v4/candles/perpetualMarkets/BTC-USD",
        {"resolution": "1HOUR", "fromIso": "2024-01-01T00:00:00.000Z",
         "toIso": "2024-01-01T02:59:59.999Z", "limit": "1000"},
        "dydx_btc_usd_1h.json", "n/a", "BTC/USDC:USDC",
        ["2024-01-01T00:00:00Z,1704067200000,42318.0,42589.0,42287.0,42503.0,488.0312",
         "2024-01-01T01:00:00Z,1704070800000,42503.0,42806.0,42452.0,42643.0,512.9004",
         "2024-01-01T02:00:00Z,1704074400000,42643.0,42669.0,42516.0,42604.0,301.2741"],
        id="dydx-newest-first"),
]


@pytest.mark.parametrize(
    ("venue", "symbol", "path", "match", "fixture", "market", "unified", "rows"), VENUE_CASES)
def test_each_venue_through_ccxt(
    server: FixtureServer, tmp_path: Path, venue: str, symbol: str, path: str,
    match: dict[str, str], fixture: str, market: str, unified: str, rows: list[str],
) -> None:
    server.route(path, match, _ok(fixture))
    out = tmp_path / "bars.csv"
    report = _fetch(server, [venue, symbol, "1h", "2024-01-01", "2024-01-01T03:00"], out)
    assert report["bars"] == 3 and report["market"] == market
    assert report["ccxt_symbol"] == unified
    assert out.read_text() == "\n".join(
        ["timestamp,timestamp_ms,open,high,low,close,volume", *rows]) + "\n"
    assert [p for p, _ in server.data_requests()] == [path]


def test_default_output_name_and_human_summary(server: FixtureServer, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _route_binance_spot_btc(server)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["data", "fetch", "binance", "BTCUSDT", "1h", "2024-01-01",
                              "2024-01-01T08:00", "--base-url", server.url, "--page", "3",
                              *FAST])
    assert res.exit_code == 0, res.output
    out = tmp_path / "btcusdt_binance_spot_1h_2024-01-01_2024-01-01.csv"
    assert out.is_file() and len(read_ohlcv(out)) == 5
    assert "wrote 5 bars" in res.stdout and "gap at 2024-01-01T04:00:00Z: 1 row" in res.stdout


# --------------------------------------------------------------------------- funding, OI

FUNDING_CASES = [
    pytest.param("binance", "BTCUSDT.P", "/fapi/v1/fundingRate",
                 "binance_usdm_btcusdt_funding.json",
                 [(T0, "0.00037409"), (T0 + 8 * H, "0.00029573"), (T0 + 16 * H + 1, "0.0001")],
                 id="binance"),
    pytest.param("bybit", "BTCUSDT.P", "/v5/market/funding/history",
                 "bybit_linear_btcusdt_funding.json",
                 [(T0, "0.00037522"), (T0 + 8 * H, "0.00029911"), (T0 + 16 * H, "0.0001")],
                 id="bybit"),
    pytest.param("okx", "BTC-USDT-SWAP", "/api/v5/public/funding-rate-history",
                 "okx_swap_btc_usdt_funding.json",
                 [(T0, "0.000396804"), (T0 + 8 * H, "0.000341527"), (T0 + 16 * H, "0.0001")],
                 id="okx"),
    pytest.param("deribit", "BTC-PERPETUAL", "/api/v2/public/get_funding_rate_history",
                 "deribit_btc_perpetual_funding.json",
                 [(T0, "0.000301"), (T0 + H, "0.000287"), (T0 + 2 * H, "0.000255")],
                 id="deribit-interest_8h"),
    pytest.param("hyperliquid", "BTC", "/info", "hyperliquid_btc_funding.json",
                 [(T0 + 30, "1.25e-05"), (T0 + H + 62, "4.13e-05"),
                  (T0 + 2 * H + 12, "2.38e-05")], id="hyperliquid"),
    pytest.param("dydx", "BTC-USD", "/v4/historicalFunding/BTC-USD",
                 "dydx_btc_usd_funding.json",
                 [(T0 + 122, "1.25e-05"), (T0 + H + 317, "2.13e-05"),
                  (T0 + 2 * H + 504, "8.1e-06")], id="dydx"),
]


@pytest.mark.parametrize(("venue", "symbol", "path", "fixture", "rows"), FUNDING_CASES)
def test_funding_history_of_each_venue(
    server: FixtureServer, tmp_path: Path, venue: str, symbol: str, path: str, fixture: str,
    rows: list[tuple[int, str]],
) -> None:
    server.route(path, {"type": "fundingHistory"} if venue == "hyperliquid" else {},
                 _ok(fixture))
    out = tmp_path / "funding.csv"
    report = _run(server, "funding", [venue, symbol, "2024-01-01", "2024-01-02"], out)
    iso = {t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t // 1000)) for t, _ in rows}
    assert out.read_text() == "".join(
        ["timestamp,timestamp_ms,funding_rate\n",
         *(f"{iso[t]},{t},{rate}\n" for t, rate in rows)])
    assert report["kind"] == "funding" and report["bars"] == 3
    assert [p for p, _ in server.data_requests()] == [path]


OI_CASES = [
    pytest.param("binance", "/futures/data/openInterestHist", "binance_usdm_btcusdt_oi_1h.json",
                 ["2024-01-01T00:00:00Z,1704067200000,80123.456,3390321755.3488",
                  "2024-01-01T01:00:00Z,1704070800000,80410.113,3428687394.969",
                  "2024-01-01T03:00:00Z,1704078000000,79877.021,3403217624.101"],
                 1, id="binance-with-a-gap"),
    pytest.param("bybit", "/v5/market/open-interest", "bybit_linear_btcusdt_oi_1h.json",
                 ["2024-01-01T00:00:00Z,1704067200000,51876.331,",
                  "2024-01-01T01:00:00Z,1704070800000,52311.204,",
                  "2024-01-01T02:00:00Z,1704074400000,52011.522,"],
                 0, id="bybit-amount-only"),
    pytest.param("okx", "/api/v5/rubik/stat/contracts/open-interest-history",
                 "okx_swap_btc_usdt_oi_1h.json",
                 ["2024-01-01T00:00:00Z,1704067200000,26984.1245,1141829311.7",
                  "2024-01-01T01:00:00Z,1704070800000,27205.5312,1160142256.1",
                  "2024-01-01T02:00:00Z,1704074400000,27131.2589,1156041234.5"],
                 0, id="okx-contracts-to-coins"),
]


@pytest.mark.parametrize(("venue", "path", "fixture", "rows", "missing"), OI_CASES)
def test_open_interest_history(server: FixtureServer, tmp_path: Path, venue: str, path: str,
                               fixture: str, rows: list[str], missing: int) -> None:
    server.route(path, {}, _ok(fixture))
    out = tmp_path / "oi.csv"
    symbol = "BTC-USDT-SWAP" if venue == "okx" else "BTCUSDT"
    report = _run(server, "open-interest", [venue, symbol, "1h", "2024-01-01",
                                            "2024-01-01T04:00"], out)
    assert out.read_text() == "\n".join(
        ["timestamp,timestamp_ms,open_interest,open_interest_value", *rows]) + "\n"
    assert report["kind"] == "open_interest" and report["missing"] == missing
    assert [p for p, _ in server.data_requests()] == [path]


def test_open_interest_refused_where_not_served() -> None:
    for venue in ("deribit", "hyperliquid", "dydx"):
        res = runner.invoke(app, ["data", "open-interest", venue, "BTC", "1h", "2024-01-01",
                                  "2024-01-02"])
        assert res.exit_code == 2, res.output
        assert f"open-interest history is not served by {venue}" in " ".join(
            res.output.split())


# --------------------------------------------------------------------------- errors


def _routes_for(server: FixtureServer, case: str) -> None:
    spot = "/api/v3/klines"
    table: dict[str, tuple[str, Reply]] = {
        "truncated": (spot, _ok("binance_malformed_truncated.json")),
        "bad-field": (spot, _ok("binance_malformed_field.json")),
        "bad-shape": (spot, _ok("binance_malformed_shape.json")),
        "bad-ohlc": (spot, _ok("binance_bad_ohlc.json")),
        "empty": (spot, _ok("binance_empty.json")),
        "invalid-symbol": (spot, Reply(400, "binance_error_invalid_symbol.json")),
        "503-forever": (spot, Reply(503, "binance_error_503.json")),
        "418-banned": (spot, Reply(418, b'{"code": -1003, "msg": "Way too many requests; '
                                         b'IP banned until 1704067800000."}')),
        "bybit-retcode": ("/v5/market/kline", _ok("bybit_error_symbol.json")),
        "deribit-error": ("/api/v2/public/get_tradingview_chart_data",
                          Reply(400, "deribit_error_instrument.json")),
        "markets-truncated": ("/api/v3/exchangeInfo", Reply(200, b'{"symbols": [')),
        "markets-503": ("/api/v3/exchangeInfo", Reply(503, "binance_error_503.json")),
    }
    if case in table:
        path, reply = table[case]
        server.routes.insert(0, Route(path, {}, [reply]))


BTC_DAY = ["BTCUSDT", "1h", "2024-01-01", "2024-01-01T02:00"]


@pytest.mark.parametrize(
    ("case", "args", "code", "fragment"),
    [
        pytest.param("", ["kraken", *BTC_DAY], 2,
                     "'kraken' is not one of", id="unknown-venue"),  # click's Choice
        pytest.param("", ["binance", "BTCUSDT", "7m", "2024-01-01", "2024-01-02"], 2,
                     "interval '7m' is not served by binance: expected one of 1m, 3m, 5m",
                     id="bad-interval"),
        pytest.param("", ["bybit", "BTCUSDT", "8h", "2024-01-01", "2024-01-02"], 2,
                     "interval '8h' is not served by bybit", id="interval-not-on-venue"),
        pytest.param("", ["dydx", "BTC-USD", "3m", "2024-01-01", "2024-01-02"], 2,
                     "interval '3m' is not served by dydx: expected one of 1m, 5m, 15m, 30m, "
                     "1h, 4h, 1d", id="interval-from-ccxt-timeframes"),
        pytest.param("", ["binance", "BTCUSDT", "hourly", "2024-01-01", "2024-01-02"], 2,
                     "interval 'hourly' is not served by binance", id="interval-garbage"),
        pytest.param("", ["binance", "BTCUSDT", "1h", "2024-01-02", "2024-01-01"], 2,
                     "END 2024-01-01T00:00:00Z is not after START 2024-01-02T00:00:00Z",
                     id="end-before-start"),
        pytest.param("", ["binance", "BTCUSDT", "1h", "2024-01-01", "2024-01-01"], 2,
                     "is not after START", id="empty-window"),
        pytest.param("", ["binance", "BTCUSDT", "1h", "yesterday", "2024-01-01"], 2,
                     "START 'yesterday': expected an ISO-8601 date or datetime",
                     id="bad-start"),
        pytest.param("", ["binance", "BTCUSDT.P", "1h", "2024-01-01", "2024-01-02",
                          "--market", "spot"], 2,
                     "names a USD-M perpetual but --market is spot", id="market-conflict"),
        pytest.param("", ["deribit", "BTC-PERPETUAL", "1h", "2024-01-01", "2024-01-02",
                          "--market", "usdm"], 2,
                     "--market applies to binance, bybit, okx, hyperliquid only",
                     id="market-on-deribit"),
        pytest.param("", ["binance", "BTCUSDT", "1h", "2024-01-01", "2024-01-02",
                          "--market", "coinm"], 2,
                     "'coinm' is not one of", id="bad-market"),
        pytest.param("", ["binance", *BTC_DAY, "--page", "0"], 2,
                     "Invalid value for '--page'", id="bad-page"),
        pytest.param("truncated", ["binance", *BTC_DAY], 3,
                     "binance: malformed response from http", id="malformed-truncated-json"),
        pytest.param("truncated", ["binance", *BTC_DAY], 3,
                     "not JSON (Unterminated string", id="malformed-json-position"),
        pytest.param("markets-truncated", ["binance", *BTC_DAY], 3,
                     "/api/v3/exchangeInfo: not JSON (Expecting value", id="malformed-markets"),
        pytest.param("bad-field", ["binance", *BTC_DAY], 3,
                     "/api/v3/klines?interval=1h&limit=1000&symbol=BTCUSDT&startTime="
                     "1704067200000&endTime=1704074399999: candle 1: high None is missing or "
                     "not a number", id="malformed-field"),
        pytest.param("bad-shape", ["binance", *BTC_DAY], 3,
                     "expected the body to be an array, got dict", id="malformed-shape"),
        pytest.param("bad-ohlc", ["binance", *BTC_DAY], 3,
                     "binance BTCUSDT 1h: bar 2024-01-01T01:00:00Z: high 42500.0 < close "
                     "42613.56", id="ohlc-inconsistent"),
        pytest.param("empty", ["binance", *BTC_DAY], 3,
                     "no closed bars between 2024-01-01T00:00:00Z and 2024-01-01T02:00:00Z",
                     id="no-bars"),
        pytest.param("", ["binance", "DOGEUSDT", *BTC_DAY[1:]], 3,
                     "binance: no spot market 'DOGEUSDT' (2 markets loaded; e.g. BTCUSDT, "
                     "ETHUSDT)", id="symbol-not-listed"),
        pytest.param("invalid-symbol", ["binance", *BTC_DAY], 3,
                     "binance: HTTP 400 from http", id="venue-error-400"),
        pytest.param("invalid-symbol", ["binance", *BTC_DAY], 3,
                     ": -1121 Invalid symbol.", id="venue-error-message"),
        pytest.param("418-banned", ["binance", *BTC_DAY], 3,
                     "HTTP 418 from", id="418-not-retried"),
        pytest.param("503-forever", ["binance", *BTC_DAY, "--retries", "2"], 3,
                     "after 3 attempts; last: HTTP 503 (-1008 Service Unavailable.)",
                     id="5xx-retries-exhausted"),
        pytest.param("markets-503", ["binance", *BTC_DAY, "--retries", "1"], 3,
                     "gave up on http", id="markets-5xx-retried-then-exhausted"),
        pytest.param("bybit-retcode", ["bybit", *BTC_DAY], 3,
                     "retCode 10001 Not supported symbols", id="bybit-retcode"),
        pytest.param("deribit-error", ["deribit", "BTC-PERPETUAL", "1h", "2024-01-01",
                                       "2024-01-01T02:00"], 3,
                     "HTTP 400 from", id="deribit-error"),
        pytest.param("deribit-error", ["deribit", "BTC-PERPETUAL", "1h", "2024-01-01",
                                       "2024-01-01T02:00"], 3,
                     "-32602 Invalid params (instrument not found)", id="deribit-reason"),
    ],
)
def test_errors_exit_non_zero_with_a_precise_message(
    server: FixtureServer, tmp_path: Path, case: str, args: list[str], code: int,
    fragment: str,
) -> None:
    _routes_for(server, case)
    out = tmp_path / "out.csv"
    res = runner.invoke(app, ["data", "fetch", *args, "--out", str(out),
                              "--base-url", server.url, *FAST])
    assert res.exit_code == code, res.output
    assert fragment in " ".join(res.output.split()), res.output
    assert "Traceback" not in res.output
    assert not out.exists()
    assert not list(tmp_path.iterdir())  # no partial file either


def test_retries_count_attempts_as_documented(server: FixtureServer, tmp_path: Path) -> None:
    _routes_for(server, "503-forever")
    res = runner.invoke(app, ["data", "fetch", "binance", *BTC_DAY, "--out",
                              str(tmp_path / "x.csv"), "--base-url", server.url, "--retries",
                              "2", *FAST])
    assert res.exit_code == EXIT_DOWNLOAD_FAILED
    assert [p for p, _ in server.data_requests()] == ["/api/v3/klines"] * 3  # retries + 1


def test_choices_are_listed_and_refused_by_the_parser(tmp_path: Path) -> None:
    # issue 23 item 7: --help lists the venues and markets; a wrong one never reaches
    # the adapter (exit 2, the usage error)
    from solvency.adapters.fetch import MARKETS, VENUES
    from solvency.cli.data import FetchMarket, FetchVenue

    assert tuple(v.value for v in FetchVenue) == VENUES  # the adapter's own lists
    assert tuple(m.value for m in FetchMarket) == MARKETS
    wide = {"COLUMNS": "200"}
    text = " ".join(runner.invoke(app, ["data", "fetch", "--help"], env=wide).output.split())
    assert "binance|bybit|okx|deribit|hyperliquid|dydx" in text and "spot|usdm" in text
    res = runner.invoke(app, ["data", "fetch", "Binance", *BTC_DAY, "--market", "SPOT",
                              "--base-url", "http://127.0.0.1:9", "--retries", "0",
                              "--out", str(tmp_path / "x.csv")],
                        env=wide)
    assert "is not one of" not in res.output  # case-insensitive choices
    for args in (["kraken", *BTC_DAY], ["binance", *BTC_DAY, "--market", "coinm"]):
        res = runner.invoke(app, ["data", "fetch", *args], env=wide)
        assert res.exit_code == 2
        assert "is not one of" in " ".join(res.output.split()), res.output


def test_existing_output_needs_force(server: FixtureServer, tmp_path: Path) -> None:
    server.route("/api/v3/klines", {"symbol": "ETHUSDT"}, _ok("binance_spot_ethusdt_1h.json"))
    out = tmp_path / "eth.csv"
    out.write_text("keep me\n")
    args = ["data", "fetch", "binance", "ETHUSDT", "1h", "2024-01-01", "2024-01-01T02:00",
            "--out", str(out), "--base-url", server.url, *FAST]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "exists; pass --force" in res.output
    assert out.read_text() == "keep me\n"
    res = runner.invoke(app, [*args, "--force"])
    assert res.exit_code == 0, res.output
    assert len(read_ohlcv(out)) == 2


def test_bad_base_url_is_rejected() -> None:
    res = runner.invoke(app, ["data", "fetch", "binance", *BTC_DAY, "--base-url",
                              "file:///etc"])
    assert res.exit_code == 2 and "expected http:// or https://" in res.output


# --------------------------------------------------------------------------- library


def test_backoff_doubles_and_honours_retry_after(server: FixtureServer) -> None:
    server.route("/api/v3/klines", {"symbol": "ETHUSDT"},
                 Reply(503, "binance_error_503.json"), Reply(502, b"<html>bad gateway</html>"),
                 Reply(429, "binance_error_429.json", {"Retry-After": "7"}),
                 Reply(500, b""), _ok("binance_spot_ethusdt_1h.json"))
    slept: list[float] = []
    req = resolve_request("binance", "ETHUSDT", "1h", "2024-01-01", "2024-01-01T02:00",
                          base_url=server.url)
    policy = HttpPolicy(retries=5, backoff_s=0.5, backoff_max_s=4.0, pause_s=0.0,
                        sleep=slept.append, timeout_s=5)
    result = fetch_klines(req, policy=policy)
    # 0.5, 1.0, then Retry-After 7 capped at 4.0, then 0.5 * 2**3 = 4.0 capped.
    assert slept == [0.5, 1.0, 4.0, 4.0]
    assert result.report.retries == 4 and len(result.bars) == 2


def test_pause_between_requests_uses_injected_sleep(server: FixtureServer) -> None:
    _route_binance_spot_btc(server)
    slept: list[float] = []
    req = resolve_request("binance", "BTCUSDT", "1h", "2024-01-01", "2024-01-01T08:00",
                          base_url=server.url)
    fetch_klines(req, policy=HttpPolicy(pause_s=0.25, sleep=slept.append, timeout_s=5,
                                        page=3))
    assert slept == [0.25, 0.25, 0.25]  # before each of the 3 pages, not before the markets


def test_unresolvable_host_fails_at_once_with_the_download_exit_code(tmp_path: Path) -> None:
    # `.invalid` never resolves (RFC 6761 section 6.4), with or without a network: no
    # retries, no backoff (the defaults would wait 0.5+1+2+4+8 s), exit 3 as docs/cli.md
    # documents for a failed download (1 is for broken engine invariants).
    out = tmp_path / "out.csv"
    t0 = time.perf_counter()
    res = runner.invoke(app, ["data", "fetch", "binance", *BTC_DAY, "--out", str(out),
                              "--base-url", "http://nonexistent.invalid"])
    elapsed_s = time.perf_counter() - t0
    assert res.exit_code == EXIT_DOWNLOAD_FAILED == 3, res.output
    text = " ".join(res.output.split())
    assert "cannot resolve the host of http://nonexistent.invalid/api/v3/exchangeInfo" in text
    assert "not retried" in text
    assert elapsed_s < 2.0
    assert not out.exists()


def test_resolver_failure_is_not_retried() -> None:
    slept: list[float] = []
    req = resolve_request("bybit", *BTC_DAY, base_url="http://venue.invalid")
    with pytest.raises(FetchError, match=r"cannot resolve the host of http://venue\.invalid"):
        fetch_klines(req, policy=HttpPolicy(retries=5, sleep=slept.append))
    assert slept == []


def test_network_error_is_retried_then_reported() -> None:
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    url = f"http://127.0.0.1:{probe.server_address[1]}"
    probe.server_close()  # nothing listens there now: connection refused
    slept: list[float] = []
    req = resolve_request("binance", *BTC_DAY, base_url=url)
    with pytest.raises(FetchError, match=r"after 3 attempts; last: network error"):
        fetch_klines(req, policy=HttpPolicy(retries=2, backoff_s=0.1, sleep=slept.append,
                                            timeout_s=2))
    assert slept == [0.1, 0.2]


def test_still_open_bar_is_dropped(server: FixtureServer) -> None:
    server.route("/api/v3/klines", {"symbol": "ETHUSDT"}, _ok("binance_spot_ethusdt_1h.json"))
    req = resolve_request("binance", "ETHUSDT", "1h", "2024-01-01", "2024-01-01T02:00",
                          base_url=server.url)
    now = T0 + H + 30 * 60_000  # 01:30: the 01:00 bar is still open
    result = fetch_klines(req, policy=HttpPolicy(pause_s=0, timeout_s=5), now_ms=now)
    assert [k.ts_ms for k in result.bars] == [T0]
    assert result.report.dropped_open == 1 and result.report.missing_tail == 0


@pytest.mark.parametrize(
    ("text", "ms"),
    [pytest.param("2024-01-01", T0, id="date"),
     pytest.param("2024-01-01T06:00", T0 + 6 * H, id="naive-is-utc"),
     pytest.param("2024-01-01T06:00:00Z", T0 + 6 * H, id="zulu"),
     pytest.param("2024-01-01T07:00:00+01:00", T0 + 6 * H, id="offset-converted")],
)
def test_parse_utc_ms(text: str, ms: int) -> None:
    assert parse_utc_ms(text) == ms


def test_gap_report_counts_missing_bars() -> None:
    assert gap_report([T0, T0 + H, T0 + 4 * H, T0 + 6 * H], H) == (
        3, ((T0 + 2 * H, 2), (T0 + 5 * H, 1)))
    assert gap_report([T0], H) == (0, ())


def test_default_filename_follows_shared_data_naming() -> None:
    req = resolve_request("binance", "BTC/USDT:USDT", "5m", "2025-10-08", "2025-10-14")
    assert default_filename(req) == "btcusdt_binance_usdm_5m_2025-10-08_2025-10-14.csv"
    req = resolve_request("deribit", "BTC-PERPETUAL", "1d", "2024-01-01", "2024-02-01")
    assert default_filename(req) == "btc_perpetual_deribit_1d_2024-01-01_2024-02-01.csv"
    req = resolve_request("okx", "BTC-USDT-SWAP", "", "2024-01-01", "2024-02-01",
                          kind="funding")
    assert default_filename(req) == "btc_usdt_swap_okx_usdm_funding_2024-01-01_2024-02-01.csv"
    req = resolve_request("bybit", "BTCUSDT", "1h", "2024-01-01", "2024-02-01",
                          kind="open_interest")
    assert default_filename(req) == "btcusdt_bybit_usdm_oi_1h_2024-01-01_2024-02-01.csv"


def test_ccxt_is_imported_only_by_the_data_commands() -> None:
    # ccxt costs about a second of imports (docs/data_fetch.md): `import solvency.cli.main`
    # and so every other command must not pay it. No module imports ccxt at its top (the
    # adapter loads it with importlib inside the download), and the data command's own
    # modules load neither ccxt nor requests (a fresh interpreter: 0.3 s of CPU, where
    # importing all of solvency.cli.main would take 3.5 s).
    src = Path(__file__).resolve().parents[2] / "src" / "solvency"
    tops = [p for p in src.rglob("*.py")
            if re.search(r"^\s*(import|from)\s+ccxt\b", p.read_text(), re.MULTILINE)]
    assert tops == []
    code = ("import sys, solvency.cli.data; "
            "print(sorted(m for m in ('ccxt', 'requests') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "[]"


def test_funding_pages_in_hour_windows_and_keeps_one_row_per_time(
    server: FixtureServer, tmp_path: Path,
) -> None:
    # --page 8: windows of 8 funding hours; the venue answers each with every row from its
    # start on (ccxt drops those before `since`, none after `until`), so the 08:00 and
    # 16:00 rates come twice and once more: kept once each, counted as duplicates.
    server.route("/fapi/v1/fundingRate", {}, _ok("binance_usdm_btcusdt_funding.json"))
    out = tmp_path / "funding.csv"
    res = runner.invoke(app, ["data", "funding", "binance", "BTCUSDT", "2024-01-01",
                              "2024-01-02", "--page", "8", "--out", str(out), "--base-url",
                              server.url, *FAST])
    assert res.exit_code == 0, res.output
    assert [q["startTime"] for _, q in server.data_requests()] == [
        str(T0), str(T0 + 8 * H), str(T0 + 16 * H)]
    assert [q["endTime"] for _, q in server.data_requests()] == [
        str(T0 + 8 * H - 1), str(T0 + 16 * H - 1), str(T0 + 24 * H - 1)]
    assert len(out.read_text().splitlines()) == 4  # header + 3 rates
    text = " ".join(res.stdout.split())
    assert "wrote 3 funding rates to" in text and "(BTC/USDT:USDT)" in text
    assert "duplicates dropped 3" in text and "4 request(s)" in text


def test_a_rate_limit_in_the_body_is_retried(server: FixtureServer, tmp_path: Path) -> None:
    # Bybit answers a rate limit with HTTP 200 and retCode 10006 (ccxt: RateLimitExceeded)
    limited = (b'{"retCode": 10006, "retMsg": "Too many visits!", "result": {}, '
               b'"retExtInfo": {}, "time": 1704096000123}')
    server.route("/v5/market/kline", {}, Reply(200, limited),
                 _ok("bybit_linear_btcusdt_1h_page2.json"))
    out = tmp_path / "bybit.csv"
    report = _fetch(server, ["bybit", "BTCUSDT.P", "1h", "2024-01-01", "2024-01-01T03:00"], out)
    assert report["retries"] == 1 and report["bars"] == 3
