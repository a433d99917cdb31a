"""The HTTP and WebSocket face of :class:`~solvency.service.core.RiskService` (FastAPI).

Routes, scopes and answers are in docs/service.md. Every answer that is not a success is
``{"error": {"reason": ..., "detail": ...}}`` with a 4xx/5xx status; no traceback ever
reaches a client. Request bodies are read raw and parsed by the engine's own event parser
(exact decimals, NaN and infinities refused): there is no second event schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from solvency.adapters.proofs import ProofSet, proofs_from, take_liabilities
from solvency.adapters.risk_report import risk_report
from solvency.adapters.store import KeyRecord, StoreError
from solvency.core.model.events import EventError, json_object
from solvency.core.model.venue import ConfigError
from solvency.engine.engine import EngineError
from solvency.engine.pretrade import parse_order
from solvency.service.core import (
    NotWriterError,
    Outcome,
    RecoveryError,
    RiskService,
    ServiceConfig,
    ServiceFailedError,
    parse_items,
)
from solvency.service.views import account_json, risk_json, state_json

__all__ = ["ApiError", "AppConfig", "create_app"]

log = logging.getLogger("solvency.service")

STREAM_CLOSE_BEHIND = 4008
"""WebSocket close code for a stream client that fell behind (its buffer filled): it
reconnects with ``from_seq`` = the last sequence number it received."""
STREAM_CLOSE_AUTH = 4401
STREAM_CLOSE_FROM = 4400


@dataclass(frozen=True, slots=True)
class AppConfig:
    """HTTP-side settings (``solvency serve`` options)."""

    max_body_bytes: int = 8 * 1024 * 1024
    rate_per_s: float = 5_000.0  # requests per key per second (token bucket)
    rate_burst: float = 10_000.0
    stream_buffer: int = 10_000  # frames queued per stream client before it is closed
    max_events_per_request: int = 100_000
    proof_interval_s: float = 10.0  # the proof tree is rebuilt at most this often


class ApiError(Exception):
    """An error answer: HTTP status, reason (machine-readable) and detail."""

    def __init__(self, status: int, reason: str, detail: str = "",
                 headers: dict[str, str] | None = None, body: dict[str, Any] | None = None
                 ) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status, self.reason, self.detail = status, reason, detail
        self.headers = headers
        self.body = body


def _error(status: int, reason: str, detail: str = "", headers: dict[str, str] | None = None,
           extra: dict[str, Any] | None = None) -> JSONResponse:
    content: dict[str, Any] = {"error": {"reason": reason, "detail": detail}}
    if extra:
        content.update(extra)
    return JSONResponse(content, status_code=status, headers=headers)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


_SHUTDOWN: tuple[int, str] = (-1, "shutdown")
_GONE: tuple[int, str] = (-2, "gone")  # the client closed or dropped the connection


@dataclass(slots=True)
class _Hub:
    """Stream subscribers: one bounded queue each; the writer never waits for them."""

    buffer: int
    clients: set[asyncio.Queue[tuple[int, str] | None]] = field(default_factory=set)

    def publish(self, frames: list[tuple[int, str, str]]) -> None:
        for q in list(self.clients):
            for seq, event_id, out in frames:
                if q.qsize() >= self.buffer:
                    # fell behind: drop it; the sender sees None and closes with 4008
                    self.clients.discard(q)
                    q.put_nowait(None)
                    break
                q.put_nowait((seq, _frame(seq, event_id, out)))

    def close_all(self) -> None:
        for q in list(self.clients):
            q.put_nowait(_SHUTDOWN)
        self.clients.clear()


def _frame(seq: int, event_id: str, out: str) -> str:
    return f'{{"seq":{seq},"event":{json.dumps(event_id)},"out":{out}}}'


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("solvency_events", "Submitted events by result",
                              ["result"], registry=r)
        self.rejections = Counter("solvency_rejections", "Rejected events by reason",
                                  ["reason"], registry=r)
        self.requests = Counter("solvency_http_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=r)
        buckets = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0)
        self.apply = Histogram("solvency_apply_seconds", "Engine time per commit group",
                               buckets=buckets, registry=r)
        self.commit = Histogram("solvency_commit_seconds", "Store commit time per group",
                                buckets=buckets, registry=r)
        self.ack = Histogram("solvency_ack_seconds", "Submit to acknowledgement",
                             buckets=buckets, registry=r)
        self.seq = Gauge("solvency_seq", "Last committed sequence number", registry=r)
        self.fund = Gauge("solvency_insurance_fund", "Insurance fund balance",
                          ["asset"], registry=r)
        self.liquidations = Gauge("solvency_liquidations", "Liquidation steps so far",
                                  registry=r)
        self.adl = Gauge("solvency_adl", "ADL steps so far", registry=r)
        self.clients = Gauge("solvency_stream_clients", "Connected stream clients",
                             registry=r)
        self.lag = Gauge("solvency_replica_lag", "Events in the stream not yet applied here",
                         registry=r)
        self.writer = Gauge("solvency_is_writer", "1 if this process holds the writer lease",
                            registry=r)

    def observe(self, kind: str, seconds: float) -> None:
        (self.apply if kind == "apply" else self.commit).observe(seconds)


def _decode_body(raw: bytes) -> list[object]:
    """The events of a request body: one JSON object, a JSON array of them, or JSON
    Lines. Raises :class:`ApiError` (400) for a body that is none of these."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "encoding", f"body is not UTF-8 ({exc.reason} at byte "
                                        f"{exc.start})") from None
    text = text.lstrip("\ufeff").strip()
    if not text:
        raise ApiError(400, "malformed", "empty body")
    if text.startswith("["):
        try:
            arr = json_object('{"a":' + text + "}")["a"]
        except EventError as exc:
            raise ApiError(400, exc.reason, exc.detail) from None
        if not isinstance(arr, list) or not arr:
            raise ApiError(400, "malformed", "an empty array")
        return list(arr)
    # blank lines and "#" comments are skipped, as in event files
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    objs: list[object] = []
    for n, line in enumerate(lines, start=1):
        try:
            objs.append(json_object(line))
        except EventError as exc:
            if len(lines) == 1:
                raise ApiError(400, exc.reason, exc.detail) from None
            objs.append(_BadLine(n, exc))
    return objs


@dataclass(frozen=True, slots=True)
class _BadLine:
    line: int
    error: EventError


def create_app(service_config: ServiceConfig, app_config: AppConfig | None = None,
               *, service: RiskService | None = None,
               on_fatal: Callable[[str], None] | None = None) -> FastAPI:
    """The FastAPI application. Recovery runs in the background at start-up
    (``/readyz`` answers 503 until it has finished); if the store does not prove a
    state, ``on_fatal(message)`` is called (``solvency serve`` exits with the message)
    and every route but the probes answers 503."""
    cfg = app_config or AppConfig()
    metrics = _Metrics()
    hub = _Hub(cfg.stream_buffer)
    buckets: dict[str, _Bucket] = {}
    holder: dict[str, RiskService] = {}
    loop_box: dict[str, asyncio.AbstractEventLoop] = {}
    fatal: dict[str, str] = {}

    def on_commit(frames: list[tuple[int, str, str]]) -> None:
        loop = loop_box.get("loop")
        if loop is not None:
            loop.call_soon_threadsafe(hub.publish, frames)

    def start() -> None:
        """Open the store and recover (off the event loop: /healthz answers meanwhile,
        /readyz says 503 until it is done)."""
        svc = service or RiskService(service_config, on_commit=on_commit)
        if service is not None:
            svc.on_commit = on_commit
        svc.observe(metrics.observe)
        holder["svc"] = svc
        svc.start()

    def started(task: asyncio.Task[None]) -> None:
        exc = task.exception() if not task.cancelled() else None
        if exc is None:
            log.info("ready: %s", holder["svc"].recovery_note)
            return
        known = isinstance(exc, RecoveryError | StoreError | EngineError | ConfigError)
        message = str(exc) if known else f"{type(exc).__name__}: {exc}"
        fatal["message"] = message
        log.error("refusing to start: %s", message)
        if on_fatal is not None:
            on_fatal(message)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop_box["loop"] = asyncio.get_running_loop()
        task: asyncio.Task[None] = asyncio.create_task(asyncio.to_thread(start))
        task.add_done_callback(started)
        try:
            yield
        finally:
            hub.close_all()
            with contextlib.suppress(Exception):
                await task
            svc = holder.get("svc")
            if svc is not None and svc.ready:
                await asyncio.to_thread(svc.stop)
            elif svc is not None:
                await asyncio.to_thread(svc.stop, snapshot=False)

    app = FastAPI(title="solvency", version="1", lifespan=lifespan,
                  summary="Risk engine service: events in, margin, liquidations and ADL out")

    def svc() -> RiskService:
        s = holder.get("svc")
        if s is None or not s.ready:
            raise ApiError(503, "not_ready", "recovery has not finished")
        return s

    # ---------------------------------------------------------------- errors

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.reason, exc.detail, exc.headers, exc.body)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http")
        return _error(exc.status_code, reason, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, "invalid", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error(500, "internal", "internal error (logged on the server)")

    # ---------------------------------------------------------------- auth

    def authenticate(request: Request) -> KeyRecord:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <key>",
                           {"WWW-Authenticate": "Bearer"})
        s = holder.get("svc")
        if s is None:
            raise ApiError(503, "not_ready", "recovery has not finished")
        rec = s.store.verify_key(token.strip())
        if rec is None:
            raise ApiError(401, "unauthorized", "unknown or revoked key",
                           {"WWW-Authenticate": "Bearer"})
        _rate(rec.id)
        request.state.key_id = rec.id
        return rec

    def _rate(key_id: str) -> None:
        now = time.monotonic()
        b = buckets.get(key_id)
        if b is None:
            b = buckets[key_id] = _Bucket(cfg.rate_burst, now)
        b.tokens = min(cfg.rate_burst, b.tokens + (now - b.stamp) * cfg.rate_per_s)
        b.stamp = now
        if b.tokens < 1.0:
            wait = (1.0 - b.tokens) / cfg.rate_per_s
            raise ApiError(429, "rate_limited",
                           f"over {cfg.rate_per_s:g} requests/s for key {key_id}",
                           {"Retry-After": f"{max(1, round(wait + 0.5))}"})
        b.tokens -= 1.0

    def need(scope: str) -> Any:
        def dep(rec: KeyRecord = Depends(authenticate)) -> KeyRecord:  # noqa: B008
            if scope not in rec.scopes:
                raise ApiError(403, "forbidden", f"key {rec.id} lacks the {scope!r} scope")
            return rec
        return Depends(dep)

    async def body_of(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > cfg.max_body_bytes:
            raise ApiError(413, "too_large", f"body of {int(length):,} bytes; the limit is "
                                             f"{cfg.max_body_bytes:,}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cfg.max_body_bytes:
                raise ApiError(413, "too_large",
                               f"body over the limit of {cfg.max_body_bytes:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def on_writer(fn: Any) -> Any:
        try:
            return await asyncio.wrap_future(svc().read(fn))
        except ServiceFailedError as exc:
            raise ApiError(503, "unavailable", str(exc)) from None

    # ---------------------------------------------------------------- routes

    @app.post("/v1/events", summary="Submit events (one, a JSON array, or JSON Lines)")
    async def post_events(request: Request, rec: KeyRecord = need("submit")) -> JSONResponse:  # noqa: B008
        started = time.perf_counter()
        raw = await body_of(request)
        objs = _decode_body(raw)
        if len(objs) > cfg.max_events_per_request:
            raise ApiError(413, "too_many_events", f"{len(objs):,} events; the limit is "
                                                   f"{cfg.max_events_per_request:,}")
        single = len(objs) == 1 and raw.lstrip()[:1] != b"["
        if "govern" not in rec.scopes and any(
                isinstance(o, dict) and o.get("type") == "params" for o in objs):
            raise ApiError(403, "forbidden",
                           f"key {rec.id} lacks the 'govern' scope that params events need")
        good = [o for o in objs if not isinstance(o, _BadLine)]
        items = parse_items(good)
        it = iter(items)
        ordered: list[Outcome | object] = []
        for o in objs:
            if isinstance(o, _BadLine):
                ordered.append(Outcome("", "rejected", reason=o.error.reason,
                                       detail=f"line {o.line}: {o.error.detail}"))
            else:
                ordered.append(next(it))
        s = svc()
        try:
            outcomes = await asyncio.wrap_future(s.submit(items, rec.id))
        except ServiceFailedError as exc:
            raise ApiError(503, "unavailable", str(exc)) from None
        except NotWriterError as exc:
            raise ApiError(503, "not_writer", str(exc), {"Retry-After": "1"},
                           {"writer": exc.writer}) from None
        oi = iter(outcomes)
        results = [o if isinstance(o, Outcome) else next(oi) for o in ordered]
        for r in results:
            metrics.events.labels(r.status).inc()
            if r.status == "rejected":
                metrics.rejections.labels(r.reason).inc()
        metrics.ack.observe(time.perf_counter() - started)
        body = {"seq": s.seq, "results": [r.to_json() for r in results]}
        if single and results[0].status == "rejected":
            r0 = results[0]
            return _error(422, r0.reason, r0.detail, extra=body)
        return JSONResponse(body)

    @app.get("/v1/state", summary="Sequence number, state hash, conservation, ledger totals")
    async def get_state(rec: KeyRecord = need("read")) -> JSONResponse:  # noqa: B008
        s = svc()
        return JSONResponse(await on_writer(lambda: state_json(s.engine, s.seq)))

    @app.get("/v1/accounts/{account}", summary="One account's margin, positions, ADL rank")
    async def get_account(account: str, rec: KeyRecord = need("read")) -> JSONResponse:  # noqa: B008
        s = svc()

        def view() -> dict[str, Any]:
            try:
                return account_json(s.engine, account, s.seq)
            except KeyError:
                raise ApiError(404, "unknown_account", f"no account {account!r}") from None
        return JSONResponse(await on_writer(view))

    @app.post("/v1/orders/check", summary="Pre-trade check of an order; changes nothing")
    async def check_order(request: Request, rec: KeyRecord = need("read")) -> JSONResponse:  # noqa: B008
        raw = await body_of(request)
        objs = _decode_body(raw)
        if len(objs) != 1 or isinstance(objs[0], _BadLine) or not isinstance(objs[0], dict):
            raise ApiError(400, "malformed", "one order object expected")
        obj = dict(objs[0])
        obj.setdefault("type", "order")
        obj.setdefault("id", "check")
        try:
            order = parse_order(obj)
        except EventError as exc:
            raise ApiError(422, exc.reason, exc.detail) from None
        s = svc()

        def check() -> dict[str, Any]:
            status, reason, detail = s.engine.preview_order(order)
            return {"seq": s.seq, "status": status, "reason": reason, "detail": detail}
        return JSONResponse(await on_writer(check))

    @app.get("/v1/risk", summary="Fund, coverage, OI, breakers, accounts nearest liquidation")
    async def get_risk(top: int = 10, rec: KeyRecord = need("read")) -> JSONResponse:  # noqa: B008
        if not 0 <= top <= 1000:
            raise ApiError(422, "invalid", "top must be between 0 and 1000")
        s = svc()
        return JSONResponse(await on_writer(
            lambda: risk_json(s.engine, s.seq, list(s.recent), top=top)))

    # ---------------------------------------------------------------- proofs

    proof_box: dict[str, Any] = {}
    proof_lock = asyncio.Lock()

    async def current_proofs() -> ProofSet:
        """The proof of liabilities at the latest sequence number, rebuilt at most every
        ``proof_interval_s`` (liabilities are taken on the writer thread, the tree is
        built off it); every proof served comes from the same tree as the root."""
        s = svc()
        async with proof_lock:
            cached: ProofSet | None = proof_box.get("set")
            fresh = cached is not None and (cached.root["seq"] == s.seq or (
                time.monotonic() - proof_box["at"] < cfg.proof_interval_s))
            if cached is not None and fresh:
                return cached
            taken = await on_writer(lambda: take_liabilities(s.engine, s.seq))
            if not taken.owed["accounts"]:
                raise ApiError(404, "no_accounts", "no accounts yet: nothing to prove")
            seed = await asyncio.to_thread(_proof_seed, s)
            built = await asyncio.to_thread(proofs_from, taken, seed=seed)
            proof_box.update(set=built, at=time.monotonic())
            return built

    @app.get("/v1/proofs/root", summary="The latest proof-of-liabilities root")
    async def proofs_root(rec: KeyRecord = need("read")) -> JSONResponse:  # noqa: B008
        return JSONResponse((await current_proofs()).root)

    @app.get("/v1/proofs/{account}", summary="An account's inclusion proof")
    async def proofs_account(account: str,
                             rec: KeyRecord = need("read")) -> JSONResponse:  # noqa: B008
        built = await current_proofs()
        try:
            index = built.tree.index_of(account)
        except KeyError:
            raise ApiError(404, "not_in_tree",
                           f"{account!r} is owed nothing at seq {built.root['seq']} (or is "
                           "unknown)") from None
        return JSONResponse(built.tree.proof(index))

    @app.get("/v1/risk-report", summary="The standard risk report (risk-report-v1)")
    async def get_risk_report(rec: KeyRecord = need("read")) -> JSONResponse:  # noqa: B008
        s = svc()
        cached: ProofSet | None = proof_box.get("set")
        root = cached.root if cached is not None and cached.root["seq"] == s.seq else None
        return JSONResponse(await on_writer(
            lambda: risk_report(s.engine, s.seq, proof_root=root)))

    @app.get("/metrics", include_in_schema=False)
    async def get_metrics() -> Response:
        s = holder.get("svc")
        if s is not None and s.ready:
            metrics.seq.set(s.seq)
            counts = s.engine.liquidator.counts
            metrics.liquidations.set(counts.get("steps", 0))
            metrics.adl.set(counts.get("adl", 0))
        metrics.clients.set(len(hub.clients))
        if s is not None and s.stream is not None:
            metrics.lag.set(max(0, s.stream_last - s.seq))
            metrics.writer.set(1 if s.role == "writer" else 0)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        s = holder.get("svc")
        if "message" in fatal:
            return _error(503, "recovery_failed", fatal["message"])
        if s is None or not s.ready:
            return _error(503, "not_ready", "recovery has not finished or the store failed")
        body: dict[str, Any] = {"ready": True, "seq": s.seq, "recovery": s.recovery_note,
                                "role": s.role}
        if s.stream is not None:
            body.update(stream=s.config.stream_name, stream_seq=s.stream_last,
                        lag=max(0, s.stream_last - s.seq), writer=s.writer_url,
                        failovers=s.failovers)
        return JSONResponse(body)

    @app.get("/", include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        page = resources.files("solvency.service").joinpath("static/dashboard.html")
        return HTMLResponse(page.read_text(encoding="utf-8"))

    @app.get("/static/plotly.js", include_in_schema=False)
    async def plotly_js() -> Response:
        from plotly.offline import get_plotlyjs

        return Response(get_plotlyjs(), media_type="application/javascript",
                        headers={"Cache-Control": "max-age=86400"})

    # ---------------------------------------------------------------- stream

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        token = ""
        header = ws.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
        protocols = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")
                     if p.strip()]
        subprotocol = None
        if not token and len(protocols) == 2 and protocols[0] == "bearer":
            # browsers cannot set headers on a WebSocket: the dashboard sends the key as
            # the second subprotocol (never in the URL, which logs would keep)
            token, subprotocol = protocols[1], "bearer"
        s = holder.get("svc")
        rec = s.store.verify_key(token) if (s is not None and token) else None
        # accept first, then close with a code that says why: a refused handshake reaches
        # a browser as an anonymous 1006
        await ws.accept(subprotocol=subprotocol)
        if s is None or not s.ready:
            await ws.close(code=1013, reason="not ready: recovery has not finished")
            return
        if rec is None or "read" not in rec.scopes:
            await ws.close(code=STREAM_CLOSE_AUTH, reason="a key with the read scope")
            return
        raw_from = ws.query_params.get("from_seq", "")
        if raw_from and not raw_from.isdigit():
            await ws.close(code=STREAM_CLOSE_FROM, reason="from_seq: a sequence number")
            return
        q: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        hub.clients.add(q)
        last = int(raw_from) if raw_from else s.seq

        async def watch() -> None:
            # the sender waits on its queue, not on the socket: without this, a client
            # that went away (or the server closing connections at shutdown) would leave
            # the handler waiting forever, and uvicorn waits for it before it exits
            with contextlib.suppress(Exception):  # a failed socket ends the stream too
                while (await ws.receive())["type"] != "websocket.disconnect":
                    pass
            q.put_nowait(_GONE)

        watcher = asyncio.create_task(watch())
        try:
            # catch up from the log, page by page, then serve live frames; frames the
            # catch-up already sent are skipped by sequence number
            while True:
                page = await asyncio.to_thread(_page, s, last)
                for seq, event_id, out in page:
                    await ws.send_text(_frame(seq, event_id, out))
                    last = seq
                if len(page) < 2_000:
                    break
            while True:
                item = await q.get()
                if item is None:
                    await ws.close(code=STREAM_CLOSE_BEHIND,
                                   reason=f"fell behind; reconnect with from_seq={last}")
                    return
                seq, text = item
                if item is _GONE:
                    return
                if item is _SHUTDOWN:
                    await ws.close(code=1001, reason="server shutting down; reconnect with "
                                                     f"from_seq={last}")
                    return
                if seq <= last:
                    continue
                await ws.send_text(text)
                last = seq
        except WebSocketDisconnect:
            return
        finally:
            hub.clients.discard(q)
            watcher.cancel()

    return app


def _proof_seed(service: RiskService) -> bytes:
    """The service's secret salt seed (created once, kept in the store's meta table)."""
    import secrets

    text = service.store.get_meta("proof_seed")
    if text is None:
        text = secrets.token_hex(32)
        service.store.set_meta("proof_seed", text)
    return bytes.fromhex(text)


def _page(service: RiskService, after: int, n: int = 2_000) -> list[tuple[int, str, str]]:
    """Up to ``n`` logged frames after ``after`` (the stream's catch-up, off the loop)."""
    out: list[tuple[int, str, str]] = []
    for frame in service.frames_after(after, batch=n):
        out.append(frame)
        if len(out) >= n:
            break
    return out
