"""``solvency data fetch`` against a real local HTTP server serving recorded-format bodies.

The fixtures under ``fixtures/`` are small hand-written bodies in each venue's documented
response format (Binance ``/api/v3/klines`` and ``/fapi/v1/klines``, Bybit
``/v5/market/kline``, Deribit ``public/get_tradingview_chart_data``; see
docs/data_fetch.md for the sources). No test touches the network.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
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
    """Answer requests to ``path`` whose query holds ``match``; replies are used in order,
    the last one repeats."""

    path: str
    match: dict[str, str]
    replies: list[Reply]


class FixtureServer:
    """A ThreadingHTTPServer on 127.0.0.1 (port 0) that replays scripted replies."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                reply = outer.answer(url.path, query)
                body = reply.payload()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep pytest output clean

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

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


def _fetch(server: FixtureServer, args: list[str], out: Path) -> dict[str, object]:
    res = runner.invoke(app, ["data", "fetch", *args, "--out", str(out),
                              "--base-url", server.url, "--json", *FAST])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def _route_binance_spot_btc(server: FixtureServer) -> None:
    path = "/api/v3/klines"
    server.route(path, {"symbol": "BTCUSDT", "startTime": str(T0)},
                 _ok("binance_spot_btcusdt_1h_page1.json"))
    server.route(path, {"symbol": "BTCUSDT", "startTime": str(T0 + 3 * H)},
                 _ok("binance_spot_btcusdt_1h_page2.json"))
    server.route(path, {"symbol": "BTCUSDT", "startTime": str(T0 + 6 * H)},
                 _ok("binance_empty.json"))


# --------------------------------------------------------------------------- success


def test_binance_spot_multi_page_dedupes_sorts_and_reports_the_gap(
    server: FixtureServer, tmp_path: Path,
) -> None:
    _route_binance_spot_btc(server)
    out = tmp_path / "btc.csv"
    report = _fetch(server, ["binance", "BTCUSDT", "1h", "2024-01-01", "2024-01-01T08:00"], out)

    bars = read_ohlcv(out)
    assert bars.ts_ms.tolist() == [T0, T0 + H, T0 + 2 * H, T0 + 3 * H, T0 + 5 * H]
    assert bars.close.tolist() == [42475.23, 42613.56, 42581.10, 42330.49, 42473.53]
    assert bars.volume[0] == 1271.68108
    assert out.read_text().splitlines()[:2] == [
        "timestamp,timestamp_ms,open,high,low,close,volume",
        "2024-01-01T00:00:00Z,1704067200000,42283.58,42554.57,42261.02,42475.23,1271.68108",
    ]
    assert report["bars"] == 5 and report["missing"] == 1 and report["duplicates"] == 1
    assert report["gaps"] == [{"start": "2024-01-01T04:00:00Z", "bars": 1}]
    assert report["missing_head"] == 0 and report["missing_tail"] == 2  # 06:00 and 07:00
    assert report["requests"] == 3 and report["retries"] == 0
    # Paged forward by startTime, END exclusive -> endTime END - 1 ms, limit 1000.
    assert [q["startTime"] for _, q in server.requests] == [str(T0), str(T0 + 3 * H),
                                                            str(T0 + 6 * H)]
    assert {(q["interval"], q["limit"], q["endTime"]) for _, q in server.requests} == {
        ("1h", "1000", str(T0 + 8 * H - 1))}


@pytest.mark.parametrize(
    ("symbol", "extra"),
    [pytest.param("BTCUSDT.P", [], id="suffix-.P"),
     pytest.param("BTCUSDT-PERP", [], id="suffix-PERP"),
     pytest.param("BTC/USDT:USDT", [], id="ccxt-settle-suffix"),
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
                             "2024-01-01T04:00:00Z", *extra], out)
    assert report["market"] == "usdm" and report["requests"] == 2  # END reached: no 3rd page
    assert {p for p, _ in server.requests} == {path}
    bars = read_ohlcv(out)
    assert bars.ts_ms.tolist() == [T0 + i * H for i in range(4)]
    assert bars.low.tolist() == [42289.6, 42458.1, 42521.1, 42254.4]


def test_429_then_success_is_retried(server: FixtureServer, tmp_path: Path) -> None:
    server.route("/api/v3/klines", {"symbol": "ETHUSDT"},
                 Reply(429, "binance_error_429.json", {"Retry-After": "0"}),
                 _ok("binance_spot_ethusdt_1h.json"))
    out = tmp_path / "eth.csv"
    report = _fetch(server, ["binance", "ETHUSDT", "1h", "2024-01-01", "2024-01-01T02:00"], out)
    assert report["requests"] == 2 and report["retries"] == 1 and report["bars"] == 2
    assert read_ohlcv(out).open.tolist() == [2281.87, 2293.57]


def test_bybit_linear_pages_backward_newest_first(server: FixtureServer,
                                                  tmp_path: Path) -> None:
    path = "/v5/market/kline"
    server.route(path, {"end": str(T0 + 6 * H - 1)}, _ok("bybit_linear_btcusdt_1h_page1.json"))
    server.route(path, {"end": str(T0 + 3 * H - 1)}, _ok("bybit_linear_btcusdt_1h_page2.json"))
    out = tmp_path / "bybit.csv.gz"
    report = _fetch(server, ["bybit", "BTCUSDT.P", "60m", "2024-01-01", "2024-01-01T06:00"],
                    out)
    assert report["requests"] == 2 and report["missing"] == 0 and report["interval"] == "1h"
    assert {(q["category"], q["interval"], q["start"], q["limit"])
            for _, q in server.requests} == {("linear", "60", str(T0), "1000")}
    with gzip.open(out, "rt") as fh:
        assert fh.readline().strip() == "timestamp,timestamp_ms,open,high,low,close,volume"
    bars = read_ohlcv(out)
    assert bars.ts_ms.tolist() == [T0 + i * H for i in range(6)]
    assert bars.close.tolist() == [42500.5, 42637.0, 42604.2, 42349.9, 42410.1, 42480.0]


def test_deribit_tradingview_chart_data(server: FixtureServer, tmp_path: Path) -> None:
    server.route("/api/v2/public/get_tradingview_chart_data",
                 {"instrument_name": "BTC-PERPETUAL", "resolution": "60",
                  "start_timestamp": str(T0), "end_timestamp": str(T0 + 3 * H - 1)},
                 _ok("deribit_btc_perpetual_1h.json"))
    out = tmp_path / "deribit.csv"
    report = _fetch(server, ["deribit", "BTC-PERPETUAL", "1h", "2024-01-01",
                             "2024-01-01T03:00"], out)
    assert report["bars"] == 3 and report["market"] == "n/a"
    bars = read_ohlcv(out)
    np.testing.assert_array_equal(bars.high, [42580.0, 42795.5, 42660.0])
    np.testing.assert_array_equal(bars.volume, [41.39416546, 52.10223872, 20.87456109])


def test_default_output_name_and_human_summary(server: FixtureServer, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _route_binance_spot_btc(server)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["data", "fetch", "binance", "BTCUSDT", "1h", "2024-01-01",
                              "2024-01-01T08:00", "--base-url", server.url, *FAST])
    assert res.exit_code == 0, res.output
    out = tmp_path / "btcusdt_binance_spot_1h_2024-01-01_2024-01-01.csv"
    assert out.is_file() and len(read_ohlcv(out)) == 5
    assert "wrote 5 bars" in res.stdout and "gap at 2024-01-01T04:00:00Z: 1 bar" in res.stdout


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
        "bybit-retcode": ("/v5/market/kline", _ok("bybit_error_symbol.json")),
        "deribit-error": ("/api/v2/public/get_tradingview_chart_data",
                          Reply(400, "deribit_error_instrument.json")),
    }
    if case in table:
        path, reply = table[case]
        server.route(path, {}, reply)


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
        pytest.param("", ["binance", "BTCUSDT", "1h", "2024-01-01", "2024-01-02",
                          "--market", "coinm"], 2,
                     "'coinm' is not one of", id="bad-market"),
        pytest.param("truncated", ["binance", *BTC_DAY], 3,
                     "binance: malformed response from", id="malformed-truncated-json"),
        pytest.param("truncated", ["binance", *BTC_DAY], 3,
                     "not JSON (Unterminated string", id="malformed-json-position"),
        pytest.param("bad-field", ["binance", *BTC_DAY], 3,
                     "kline 1: high 'n/a' is not a number", id="malformed-field"),
        pytest.param("bad-shape", ["binance", *BTC_DAY], 3,
                     "expected a JSON array of klines, got dict", id="malformed-shape"),
        pytest.param("bad-ohlc", ["binance", *BTC_DAY], 3,
                     "binance BTCUSDT 1h: bar 2024-01-01T01:00:00Z: high 42500.0 < close "
                     "42613.56", id="ohlc-inconsistent"),
        pytest.param("empty", ["binance", *BTC_DAY], 3,
                     "no closed bars between 2024-01-01T00:00:00Z and 2024-01-01T02:00:00Z",
                     id="no-bars"),
        pytest.param("invalid-symbol", ["binance", *BTC_DAY], 3,
                     ": -1121 Invalid symbol.", id="venue-error-400"),
        pytest.param("503-forever", ["binance", *BTC_DAY, "--retries", "2"], 3,
                     "after 3 attempts; last: HTTP 503 (-1008 Service Unavailable.)",
                     id="5xx-retries-exhausted"),
        pytest.param("bybit-retcode", ["bybit", *BTC_DAY], 3,
                     "retCode 10001 Not supported symbols", id="bybit-retcode"),
        pytest.param("deribit-error", ["deribit", "BTC-NOPE", "1h", "2024-01-01",
                                       "2024-01-01T02:00"], 3,
                     "HTTP 400 from", id="deribit-error"),
        pytest.param("deribit-error", ["deribit", "BTC-NOPE", "1h", "2024-01-01",
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
    assert not out.exists()
    assert not list(tmp_path.iterdir())  # no partial file either


def test_choices_are_listed_and_refused_by_the_parser(tmp_path: Path) -> None:
    # issue 23 item 7: --help lists the venues and markets; a wrong one never reaches
    # the adapter (exit 2, the usage error)
    from solvency.adapters.fetch import MARKETS, VENUES
    from solvency.cli.data import FetchMarket, FetchVenue

    assert tuple(v.value for v in FetchVenue) == VENUES  # the adapter's own lists
    assert tuple(m.value for m in FetchMarket) == MARKETS
    wide = {"COLUMNS": "200"}
    text = " ".join(runner.invoke(app, ["data", "fetch", "--help"], env=wide).output.split())
    assert "binance|bybit|deribit" in text and "spot|usdm" in text
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


def test_pause_between_pages_uses_injected_sleep(server: FixtureServer) -> None:
    _route_binance_spot_btc(server)
    slept: list[float] = []
    req = resolve_request("binance", "BTCUSDT", "1h", "2024-01-01", "2024-01-01T08:00",
                          base_url=server.url)
    fetch_klines(req, policy=HttpPolicy(pause_s=0.25, sleep=slept.append, timeout_s=5))
    assert slept == [0.25, 0.25]  # before page 2 and page 3, not before page 1


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
    assert "cannot resolve the host of http://nonexistent.invalid/api/v3/klines" in text
    assert "not retried" in text
    assert elapsed_s < 2.0
    assert not out.exists()


def test_resolver_failure_is_not_retried() -> None:
    calls: list[str] = []
    slept: list[float] = []

    def no_dns(url: str, timeout_s: float) -> tuple[int, dict[str, str], bytes]:
        calls.append(url)
        raise urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service "
                                                    "not known"))

    req = resolve_request("binance", *BTC_DAY, base_url="http://venue.example")
    with pytest.raises(FetchError, match=r"cannot resolve the host of http://venue\.example"):
        fetch_klines(req, policy=HttpPolicy(retries=5, sleep=slept.append, transport=no_dns))
    assert len(calls) == 1 and slept == []


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
