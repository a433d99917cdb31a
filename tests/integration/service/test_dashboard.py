"""The live dashboard (``GET /``) in a real browser: Debian's headless chromium, offline.

A real ``solvency serve`` process on 127.0.0.1 (SQLite, venue binance) and chromium with no
name resolution outside 127.0.0.1, driven over the Chrome DevTools Protocol (the
``websockets`` sync client; ``Page.navigate``, ``Runtime.evaluate``). The page logs in with
a ``read`` key; the bundled demo log is then posted event by event with another key, and
every out-event of the feed's kinds (margin calls, liquidations, ADL, ...) must show in
the page's live feed (``#feed li[data-seq]``) within one second of the POST's
acknowledgement. At the end the sequence number, insurance fund, breakers, accounts
nearest liquidation and margin-ratio histogram on the page are those of ``GET /v1/risk``;
the page made no request outside 127.0.0.1, never put the key in a URL, and raised no
JavaScript error. The server is then restarted: the page reconnects its stream from the
last sequence number it saw and shows what happens after the restart.

Chromium is required: without it the test fails with a message, unless
``SOLVENCY_SKIP_BROWSER=1`` says to skip it (as tests/simulation/test_report_render.py).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from solvency.client import Client
from tests.integration.service.server import ServerProcess, free_port, make_keys

DEMO = Path(__file__).resolve().parents[3] / "src" / "solvency" / "data" / "demo_events.jsonl"
FEED_TYPES = frozenset({"liquidation", "adl", "margin_call", "bad_debt", "socialized_loss",
                        "breaker", "system_state"})
LATENCY_LIMIT_S = 1.0


class Cdp:
    """One DevTools page session: commands answered in order; events kept in ``events``."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._id = 0

    def call(self, method: str, timeout: float = 15.0, **params: Any) -> dict[str, Any]:
        self._id += 1
        mid = self._id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"CDP {method}: no answer in {timeout} s")
            msg = json.loads(self.ws.recv(timeout=left))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"CDP {method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result
            if "method" in msg:
                self.events.append(msg)

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"page: {expression!r} threw "
                                 f"{r['exceptionDetails'].get('exception', r)}")
        return r.get("result", {}).get("value")

    def wait(self, expression: str, timeout: float = 10.0, every: float = 0.005) -> Any:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"page: {expression!r} still falsy after {timeout} s")
            time.sleep(every)

    def of(self, method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self.events if e["method"] == method]


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[Cdp]:
    """Headless chromium with a fresh profile, resolving no host name but 127.0.0.1."""
    port = free_port()
    profile = tmp_path / "chromium-profile"
    cmd = [chromium, "--headless", "--disable-gpu",
           # the sandbox needs user namespaces, which CI containers (run as root) lack
           "--no-sandbox", "--no-first-run", "--no-default-browser-check",
           "--disable-extensions", "--disable-background-networking", "--disable-sync",
           "--disable-component-update", "--disable-default-apps", "--mute-audio",
           # offline: no host name resolves; the dashboard is reached by IP literal
           "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
           f"--remote-debugging-port={port}", f"--user-data-dir={profile}", "about:blank"]
    log = tmp_path / "chromium.log"  # a file, not a pipe nobody reads (it would fill)
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        page_ws = None
        while page_ws is None:
            if proc.poll() is not None:
                err = log.read_text(errors="replace")[-2000:]
                pytest.fail(f"chromium exited {proc.returncode}: {err}")
            if time.monotonic() > deadline:
                pytest.fail("chromium's DevTools endpoint did not answer in 30 s")
            try:
                targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=1.0).json()
                page_ws = next((t["webSocketDebuggerUrl"] for t in targets
                                if t.get("type") == "page"), None)
            except (httpx.HTTPError, ValueError):
                pass
            if page_ws is None:
                time.sleep(0.1)
        # no keepalive pings: the test does not read while it waits on the server
        with connect(page_ws, max_size=None, max_queue=None, ping_interval=None,
                     open_timeout=10) as ws:
            cdp = Cdp(ws)
            for domain in ("Page", "Runtime", "Log", "Network"):
                cdp.call(f"{domain}.enable")
            yield cdp
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    db = f"sqlite:///{tmp_path / 'service.db'}"
    keys = make_keys(db)
    srv = ServerProcess(db, tmp_path, venue="binance")
    srv.start()
    try:
        yield srv, keys
    finally:
        srv.stop()


def _demo_events() -> list[dict[str, Any]]:
    lines = DEMO.read_text(encoding="utf-8").splitlines()
    return [json.loads(ln) for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _feed(cdp: Cdp) -> list[dict[str, str]]:
    return list(cdp.eval("""Array.from(document.querySelectorAll('#feed li[data-seq]'),
        li => ({seq: li.dataset.seq, type: li.dataset.type, account: li.dataset.account || '',
                market: li.dataset.market || '', event: li.dataset.event, text: li.textContent}))
    """))


def test_dashboard_live_in_chromium(browser: Cdp,
                                    server: tuple[ServerProcess, dict[str, str]]) -> None:
    srv, keys = server
    cdp = browser
    origin = srv.url  # http://127.0.0.1:PORT

    # -- the page, with its login box; nothing shown before a key is given
    cdp.call("Page.navigate", url=origin + "/")
    cdp.wait("document.readyState === 'complete' && !!window.Plotly")
    assert cdp.eval("!document.getElementById('login').hidden")
    assert cdp.eval("document.getElementById('dash').hidden")

    # -- a wrong key cannot log in (401; chromium logs the refused request) ...
    bad_from = len(cdp.events)
    cdp.eval("document.getElementById('key').value = 'slv_00000000_nope';"
             "document.getElementById('login').requestSubmit(); true")
    cdp.wait("document.getElementById('login-error').textContent.includes('refused')")
    bad_to = len(cdp.events)
    # ... the read key can: the dashboard and a live stream
    cdp.eval(f"document.getElementById('key').value = {json.dumps(keys['read'])};"
             "document.getElementById('login').requestSubmit(); true")
    cdp.wait("document.getElementById('conn').dataset.state === 'live'")
    assert cdp.eval("sessionStorage.getItem('solvency.key')") == keys["read"]
    assert cdp.eval("document.getElementById('seq').dataset.seq") == "0"

    # -- post the demo log one event at a time; each out-event of the feed's kinds shows
    latencies: list[tuple[int, str, float]] = []
    with Client(origin, keys["govern"]) as client:  # the demo has a params event
        for ev in _demo_events():
            res = client.submit(ev)
            acked = time.perf_counter()
            r0 = res["results"][0]
            if r0["status"] != "accepted":
                continue
            seq = r0["seq"]
            for o in r0["out"]:
                if o["type"] not in FEED_TYPES:
                    continue
                sel = (f"#feed li[data-seq='{seq}'][data-type='{o['type']}']"
                       f"[data-key='{seq}|{o['id']}']")
                cdp.wait(f"!!document.querySelector({json.dumps(sel)})",
                         timeout=LATENCY_LIMIT_S + 2)
                latencies.append((seq, o["type"], time.perf_counter() - acked))
        restart_from = len(cdp.events)
        post_restart = _restart_and_resume(cdp, srv, client)
        restart_to = len(cdp.events)
        risk = client.risk()

    kinds = {k for _, k, _ in latencies}
    assert {"liquidation", "adl", "margin_call"} <= kinds, kinds
    slow = [x for x in latencies if x[2] > LATENCY_LIMIT_S]
    assert not slow, f"out-events later than {LATENCY_LIMIT_S} s on the page: {slow}"
    worst = max(x[2] for x in latencies)
    liq = [x[2] for x in latencies if x[1] == "liquidation"]
    print(f"\ndashboard: {len(latencies)} feed events, POST ack -> DOM worst "
          f"{worst * 1000:.0f} ms, liquidations worst {max(liq) * 1000:.0f} ms, median "
          f"{sorted(x[2] for x in latencies)[len(latencies) // 2] * 1000:.0f} ms; "
          f"after a restart {post_restart * 1000:.0f} ms")

    # -- the feed: newest first, each item once, with its account, market and amounts
    feed = _feed(cdp)
    seqs = [int(f["seq"]) for f in feed]
    assert seqs == sorted(seqs, reverse=True)
    liqs = [f for f in feed if f["type"] == "liquidation"]
    assert liqs and all(f["market"] and f["account"] and " @ " in f["text"] for f in liqs)

    # -- the numbers on the page are those of GET /v1/risk at the same sequence number
    cdp.wait(f"document.getElementById('seq').dataset.seq === '{risk['seq']}'", timeout=5)
    page = cdp.eval("""({
        fund: Object.fromEntries(Array.from(document.querySelectorAll('#fund tbody tr'),
            tr => [tr.dataset.asset, tr.querySelector('td.fund').dataset.value])),
        coverage: Object.fromEntries(Array.from(document.querySelectorAll('#fund tbody tr'),
            tr => [tr.dataset.asset, tr.querySelector('td.coverage').dataset.value])),
        breakers: Object.fromEntries(Array.from(document.querySelectorAll(
            '#breakers tbody tr'), tr => [tr.dataset.market, tr.dataset.state])),
        nearest: Array.from(document.querySelectorAll('#nearest tbody tr[data-account]'),
            tr => tr.dataset.account),
        streamSeq: document.getElementById('stream-seq').dataset.seq,
        ratio: document.getElementById('chart-ratio').data[0].y,
        fundPoints: document.getElementById('chart-fund').data.map(t => t.y.length),
        fundTraces: document.getElementById('chart-fund').data.map(t => t.name),
        ratioBars: document.querySelectorAll('#chart-ratio .bars path').length,
        fundLines: document.querySelectorAll('#chart-fund .scatterlayer path.js-line').length,
        url: location.href,
    })""")
    assert page["fund"] == risk["insurance_fund"]
    assert {a: c for a, c in page["coverage"].items() if c} == risk["insurance_coverage"]
    assert page["breakers"] == risk["breakers"]
    assert page["nearest"] == [a["account"] for a in risk["nearest_liquidation"]]
    assert page["ratio"] == risk["margin_ratio_histogram"]["counts"]
    # the stream (not only the polled recent list) brought the feed up to its newest item
    assert seqs[0] <= int(page["streamSeq"]) <= risk["seq"]
    assert cdp.eval("document.querySelectorAll('#feed li[data-live=\"1\"]').length") > 0
    assert not any(k in page["url"] for k in keys.values())
    # the fund over time: a trace per asset and one for coverage, many points, drawn
    assert "USDT fund" in page["fundTraces"] and "USDT coverage" in page["fundTraces"]
    assert min(page["fundPoints"]) >= 3, page["fundPoints"]
    assert page["fundLines"] >= len(page["fundTraces"])
    assert page["ratioBars"] >= 1

    # -- offline and discreet: only 127.0.0.1, the key in no URL, no JavaScript error
    host = origin.split("//", 1)[1]
    urls = [p["request"]["url"] for p in cdp.of("Network.requestWillBeSent")]
    urls += [p["url"] for p in cdp.of("Network.webSocketCreated")]
    urls += cdp.eval("performance.getEntriesByType('resource').map(e => e.name)")
    assert any(u.startswith(f"ws://{host}/v1/stream?from_seq=") for u in urls), urls
    assert any(u == f"{origin}/static/plotly.js" for u in urls), urls
    outside = [u for u in urls if not (u.startswith((f"http://{host}/", f"ws://{host}/"))
                                       or u.startswith(("data:", "blob:", "about:")))]
    assert not outside, f"requests outside 127.0.0.1: {outside}"
    assert not [u for u in urls if any(k in u for k in keys.values())], "a key in a URL"
    # the refused login and the restart fail requests on purpose (chromium logs them)
    expected = (range(bad_from, bad_to), range(restart_from, restart_to))
    kept = [e for i, e in enumerate(cdp.events) if not any(i in w for w in expected)]

    def of(method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in kept if e["method"] == method]

    failed = [p for p in of("Network.loadingFailed") if not p.get("canceled")]
    assert not failed, failed
    handshakes = cdp.of("Network.webSocketHandshakeResponseReceived")
    assert len(handshakes) >= 2 and all(  # the first connection and the one after restart
        {k.lower(): v for k, v in h["response"]["headers"].items()}
        .get("sec-websocket-protocol") == "bearer" for h in handshakes), handshakes
    errors = [e["exceptionDetails"] for e in cdp.of("Runtime.exceptionThrown")]
    errors += [c for c in cdp.of("Runtime.consoleAPICalled") if c["type"] in ("error", "assert")]
    errors += [e["entry"] for e in of("Log.entryAdded") if e["entry"]["level"] == "error"]
    assert not errors, f"JavaScript errors: {errors}"


def _restart_and_resume(cdp: Cdp, srv: ServerProcess, client: Client) -> float:
    """Restart the server (SIGTERM, same port); the page reconnects its stream from the
    last sequence number it saw and shows a margin call made after the restart. Returns
    that margin call's POST ack -> DOM time."""
    srv.stop()
    cdp.wait("document.getElementById('conn').dataset.state === 'reconnecting'", timeout=10)
    srv.start()
    cdp.wait("document.getElementById('conn').dataset.state === 'live'", timeout=15)
    # a new account one step from its margin: a fill, then a price move calls it
    ts = "2026-03-27T09:00:00Z"
    setup = [
        {"type": "deposit", "id": "dash-d1", "ts": ts, "account": "dash01", "asset": "USDT",
         "amount": "1000"},
        {"type": "deposit", "id": "dash-d2", "ts": ts, "account": "dash02", "asset": "USDT",
         "amount": "1000000"},
    ]
    res = client.submit(setup)
    assert all(r["status"] == "accepted" for r in res["results"]), res
    mark = 1901.20  # the demo log's last ETH-PERP price
    size = f"{(1000 * 15) / mark:.3f}"  # 15x: a 10% move breaches maintenance
    res = client.submit({"type": "fill", "id": "dash-f1", "ts": ts, "market": "ETH-PERP",
                         "buyer": "dash01", "seller": "dash02", "size": size,
                         "price": f"{mark:.2f}"})
    assert res["results"][0]["status"] == "accepted", res
    for n, drop in enumerate((0.97, 0.95, 0.93, 0.9, 0.85, 0.8), start=1):
        res = client.submit({"type": "price", "id": f"dash-p{n}", "ts": ts,
                             "market": "ETH-PERP", "price": f"{mark * drop:.2f}"})
        acked = time.perf_counter()
        r0 = res["results"][0]
        assert r0["status"] == "accepted", res
        hits = [o for o in r0["out"] if o["type"] in FEED_TYPES]
        if hits:
            o = hits[0]
            sel = f"#feed li[data-key='{r0['seq']}|{o['id']}']"
            cdp.wait(f"!!document.querySelector({json.dumps(sel)})",
                     timeout=LATENCY_LIMIT_S + 2)
            took = time.perf_counter() - acked
            assert took <= LATENCY_LIMIT_S, f"{o['type']} after the restart: {took:.3f} s"
            return took
    raise AssertionError("no margin call or liquidation after the restart")
