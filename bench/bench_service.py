"""The live service under load (issue 15). Run: ``python bench/bench_service.py
[--accounts N] [--quick] [--json PATH] [--profile]``.

For each backend (SQLite: a file in a temporary directory, WAL, ``synchronous=FULL``;
PostgreSQL: a throwaway cluster from tests/postgres.py with ``fsync=on``; durable commits
on both), against a real ``solvency serve`` child process on 127.0.0.1:

0. set-up: a book of ``--accounts`` accounts (default 100,000): an oracle round per
   market, a deposit per account, a market maker, and fills giving a third of the
   accounts a position, POSTed as JSON Lines in batches of 2,000 from one client (itself
   a figure: batched ingest of the set-up); then SIGTERM (clean shutdown: a snapshot) and
   a restart, so the timed phases start from a warm book. The restart's recovery (the
   snapshot alone) is timed by the server and printed.
1. batched ingest: a mixed workload (fills between traders and a market maker and
   between traders, deposits, oracle rounds of 3-5 sources) in batches of 500 and of
   2,000 events per POST from ``--clients`` threads: events/s and p50/p99 of submit ->
   acknowledgement per request;
2. single-event requests from ``--single-clients`` threads: requests/s, p50/p99;
3. submit -> out-event on the stream: a stream client stays connected through phases
   1-2; for each event that produced out-events, the time from the start of its POST
   to the arrival of its frame;
4. ``GET /v1/accounts/{id}`` (accounts holding a position) p50/p99 from one thread
   while batched ingest (batches of 500) runs in the others;
5. recovery: the store is topped up to ``--recovery-events`` logged events after its
   last snapshot (the server runs with ``--snapshot-every 0``), the server is killed
   (SIGKILL: no shutdown snapshot), and ``RiskService(...).recover()`` is timed in this
   process; events/s of the replay (the snapshot's restore taken out) and the time a
   1,000,000-event replay would take at that rate;
6. ``Engine.apply`` in process over the same logged events from the same snapshot
   (parsing excluded): the ceiling for (1).

Workload: fills and deposits carry no ``ts`` (the engine takes events without one; with
one, concurrent clients' batches would arrive out of order against each other and be
refused ``out_of_order``); oracle reports carry increasing timestamps and come from one
client (the feed). An oracle round of one market every ``--oracle-every`` events.
The rate limit is raised out of the way (``--rate-limit``): it is a per-key policy, not
a cost. ``--profile`` runs one more batched phase (SQLite, batches of 2,000) under
cProfile (the writer thread and the event-loop thread) and prints where the time goes.

Targets (issue 15; one core, durable commits): batched >= 20,000 events/s with p99
acknowledgement <= 20 ms; single >= 2,000 requests/s with p99 <= 10 ms; account GET p99
<= 5 ms under load; recovery of 1,000,000 events <= 30 s. Ratios are measured / target.
The load generator runs in this process on the same machine as the server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pstats
import random
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.*

import httpx
import numpy as np
from tests.integration.service.server import ServerProcess, make_keys
from tests.postgres import PostgresUnavailable, fresh_database, running_postgres

from machine import describe
from solvency.adapters.grids import load_grid
from solvency.adapters.store import EventStore
from solvency.core.model.events import Rejected
from solvency.engine.engine import Engine
from solvency.engine.inputs import parse_input
from solvency.service.core import RiskService, ServiceConfig

START_MS = 1_774_512_000_000
SOURCES = ("binance", "coinbase", "okx", "bybit", "kraken")
PLACES = {"BTC-PERP": 1, "ETH-PERP": 2}
SERVER_ARGS = ("--snapshot-every", "0", "--rate-limit", "1000000", "--rate-burst",
               "1000000", "--stream-buffer", "10000000")

TARGETS = {  # figure: (target, "min" | "max", unit)
    "batched events/s": (20_000.0, "min", "ev/s"),
    "batched p99 ack": (20.0, "max", "ms"),
    "single requests/s": (2_000.0, "min", "req/s"),
    "single p99 ack": (10.0, "max", "ms"),
    "account GET p99": (5.0, "max", "ms"),
    "recovery of 1M": (30.0, "max", "s"),
}


# ---------------------------------------------------------------------------- workload


class Workload:
    """Seeded event objects for one book: the set-up, then mixed traffic."""

    def __init__(self, accounts: int, seed: int = 15, oracle_every: int = 200) -> None:
        self.n = accounts
        self.rng = random.Random(seed)
        self.oracle_every = oracle_every
        self.px = {"BTC-PERP": 84_000.0, "ETH-PERP": 2_000.0}
        self.ts = START_MS
        self.rounds = 0
        self.holders = list(range(0, accounts, 3))  # the accounts the set-up gives a position

    def _price(self, m: str, jitter: float) -> str:
        return f"{self.px[m] * (1 + self.rng.uniform(-jitter, jitter)):.{PLACES[m]}f}"

    def oracle_round(self, m: str) -> list[dict[str, object]]:
        self.rounds += 1
        self.ts += 250
        self.px[m] *= 1 + self.rng.gauss(0, 0.0005)
        return [{"type": "oracle", "id": f"o{self.rounds}-{src}", "ts": self.ts,
                 "source": src, "market": m, "price": self._price(m, 0.0003)}
                for src in self.rng.sample(SOURCES, self.rng.randrange(3, 6))]

    def setup(self) -> list[dict[str, object]]:
        ev = self.oracle_round("BTC-PERP") + self.oracle_round("ETH-PERP")
        ev += [{"type": "deposit", "id": f"d{i}", "account": f"a{i}", "asset": "USDT",
                "amount": str(self.rng.randrange(2_000, 30_000))} for i in range(self.n)]
        ev.append({"type": "deposit", "id": "d-mm", "account": "mm", "asset": "USDT",
                   "amount": "100000000000"})
        ev.append({"type": "deposit", "id": "d-fund", "account": "__insurance__",
                   "asset": "USDT", "amount": "10000000"})
        for i in self.holders:
            m = "BTC-PERP" if i % 2 else "ETH-PERP"
            size = "0.010" if m == "BTC-PERP" else "0.50"
            buyer, seller = (f"a{i}", "mm") if (i // 3) % 2 else ("mm", f"a{i}")
            ev.append({"type": "fill", "id": f"sf{i}", "market": m, "buyer": buyer,
                       "seller": seller, "size": size, "price": self._price(m, 0.0)})
        return ev

    def traffic(self, tag: str, n: int, *, feed: bool, share: int = 1
                ) -> list[dict[str, object]]:
        """``n`` events of client ``tag``; ``feed``: this client also sends the oracle
        rounds (one every ``oracle_every // share`` of its events, so that with
        ``share`` clients there is one round every ``oracle_every`` events overall)."""
        rng, out, k = self.rng, [], 0
        every = max(1, self.oracle_every // share)
        while len(out) < n:
            k += 1
            if feed and k % every == 0:
                out += self.oracle_round(rng.choice(("BTC-PERP", "ETH-PERP")))
                continue
            a = f"a{rng.randrange(self.n)}"
            if rng.random() < 0.75:
                m = rng.choice(("BTC-PERP", "ETH-PERP"))
                size = (f"{rng.randrange(1, 30) / 1000:.3f}" if m == "BTC-PERP"
                        else f"{rng.randrange(1, 100) / 100:.2f}")
                buyer, seller = (a, "mm") if rng.random() < 0.5 else ("mm", a)
                if rng.random() < 0.2:
                    other = f"a{rng.randrange(self.n)}"
                    if other != a:
                        buyer, seller = a, other
                out.append({"type": "fill", "id": f"{tag}-{k}", "market": m, "buyer": buyer,
                            "seller": seller, "size": size, "price": self._price(m, 0.0005)})
            else:
                out.append({"type": "deposit", "id": f"{tag}-{k}", "account": a,
                            "asset": "USDT", "amount": str(rng.randrange(100, 5_000))})
        return out


def jsonl(events: list[dict[str, object]]) -> bytes:
    return ("\n".join(json.dumps(e, separators=(",", ":")) for e in events) + "\n").encode()


# ---------------------------------------------------------------------------- clients


@dataclass
class StreamWatch:
    """A stream client in a thread: the arrival time of each frame by event id."""

    url: str
    key: str
    arrivals: dict[str, float] = field(default_factory=dict)
    frames: int = 0
    error: str = ""

    def start(self) -> None:
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("stream did not connect")

    def _run(self) -> None:
        from websockets.sync.client import connect

        ws_url = "ws" + self.url[len("http"):] + "/v1/stream"
        try:
            with connect(ws_url, additional_headers={"Authorization": f"Bearer {self.key}"},
                         max_size=None) as ws:
                self._ready.set()
                while not self._stop.is_set():
                    try:
                        text = ws.recv(timeout=0.2)
                    except TimeoutError:
                        continue
                    now = time.perf_counter()
                    # the event id without decoding the whole frame (its out array)
                    m = re.match(r'\{"seq":\d+,"event":"([^"]*)"', text)
                    if m:
                        self.arrivals[m.group(1)] = now
                    self.frames += 1
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self._ready.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def post_batches(url: str, key: str, batches: list[list[dict[str, object]]],
                 sent: dict[str, float], lat: list[float], counts: dict[str, int],
                 lock: threading.Lock) -> None:
    """POST each batch as JSON Lines; record per-request latency, per-event POST start
    (for the stream), and result statuses."""
    bodies = [jsonl(b) for b in batches]
    with httpx.Client(base_url=url, timeout=120.0,
                      headers={"Authorization": f"Bearer {key}",
                               "Content-Type": "application/x-ndjson"}) as http:
        for batch, body in zip(batches, bodies, strict=True):
            t0 = time.perf_counter()
            r = http.post("/v1/events", content=body)
            t1 = time.perf_counter()
            if r.status_code not in (200, 422):
                raise RuntimeError(f"POST /v1/events: {r.status_code} {r.text[:300]}")
            results = r.json()["results"]
            local: dict[str, int] = {}
            for res in results:
                local[res["status"]] = local.get(res["status"], 0) + 1
            with lock:
                lat.append(t1 - t0)
                for e in batch:
                    sent[str(e["id"])] = t0
                for k, v in local.items():
                    counts[k] = counts.get(k, 0) + v


@dataclass
class Phase:
    name: str
    events: int
    seconds: float
    requests: int
    lat: list[float]
    counts: dict[str, int]
    stream: list[float]

    @property
    def ev_s(self) -> float:
        return self.events / self.seconds

    @property
    def req_s(self) -> float:
        return self.requests / self.seconds


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q)) if xs else float("nan")


def run_phase(name: str, server: ServerProcess, key: str, per_client: list[list[list[dict[
        str, object]]]], watch: StreamWatch | None) -> Phase:
    sent: dict[str, float] = {}
    lat: list[float] = []
    counts: dict[str, int] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(batches: list[list[dict[str, object]]]) -> None:
        try:
            post_batches(server.url, key, batches, sent, lat, counts, lock)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(b,)) for b in per_client]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise errors[0]
    stream: list[float] = []
    if watch is not None:
        time.sleep(0.5)  # the last frames
        stream = [watch.arrivals[i] - s for i, s in sent.items() if i in watch.arrivals]
    n = sum(len(b) for c in per_client for b in c)
    return Phase(name, n, seconds, len(lat), lat, counts, stream)


def split(events: list[dict[str, object]], size: int) -> list[list[dict[str, object]]]:
    return [events[k:k + size] for k in range(0, len(events), size)]


def batched_load(wl: Workload, tag: str, clients: int, events: int, batch: int
                 ) -> list[list[list[dict[str, object]]]]:
    per = events // clients
    return [split(wl.traffic(f"{tag}c{c}", per, feed=c == 0, share=clients), batch)
            for c in range(clients)]


def get_accounts(url: str, key: str, holders: list[int], stop: threading.Event,
                 lat: list[float]) -> None:
    rng = random.Random(3)
    with httpx.Client(base_url=url, timeout=60.0,
                      headers={"Authorization": f"Bearer {key}"}) as http:
        while not stop.is_set():
            a = f"a{rng.choice(holders)}"
            t0 = time.perf_counter()
            r = http.get(f"/v1/accounts/{a}")
            lat.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"GET /v1/accounts/{a}: {r.status_code} {r.text[:200]}")


def recovered_note(server: ServerProcess) -> tuple[int, float]:
    """(events replayed, seconds) of the server's last recovery, from its log."""
    notes = re.findall(r"\+ ([\d,]+) logged events in ([\d.]+) s", server.log_path.read_text())
    if not notes:
        raise RuntimeError(f"no recovery note in the server log:\n{server.log()}")
    n, s = notes[-1]
    return int(n.replace(",", "")), float(s)


# ---------------------------------------------------------------------------- backend


@dataclass
class Result:
    backend: str
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    workload: Workload | None = None


def say(msg: str) -> None:
    print(msg, flush=True)


def run_backend(name: str, db: str, workdir: Path, args: argparse.Namespace,
                profile_dir: Path | None = None) -> Result:
    res = Result(name)
    f = res.figures
    keys = make_keys(db)
    server = ServerProcess(db, workdir, args=SERVER_ARGS)
    wl = res.workload = Workload(args.accounts, oracle_every=args.oracle_every)
    try:
        # 0. set-up over HTTP, one client, batches of 2,000
        server.start()
        setup = wl.setup()
        ph = run_phase("setup", server, keys["submit"], [split(setup, 2_000)], None)
        if ph.counts.get("accepted", 0) != len(setup):
            raise RuntimeError(f"set-up not all accepted: {ph.counts}")
        f["setup events"] = ph.events
        f["setup events/s"] = ph.ev_s
        say(f"[{name}] set-up: {ph.events:,} events in {ph.seconds:.1f} s "
            f"({ph.ev_s:,.0f} ev/s, batches of 2,000, one client)")
        t0 = time.perf_counter()
        if server.stop() != 0:
            raise RuntimeError(f"server did not stop cleanly:\n{server.log()}")
        stop_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        server.start(timeout=600)
        start_s = time.perf_counter() - t0
        _, restore_s = recovered_note(server)
        f["snapshot restore s"] = restore_s
        say(f"[{name}] SIGTERM (drain + snapshot) {stop_s:.1f} s; restart to ready "
            f"{start_s:.1f} s, of which recovery from the snapshot {restore_s:.2f} s")
        with EventStore(db) as store:
            snap_seq = store.snapshots()[0].seq
        # warm-up (numba kernels, connections), untimed
        run_phase("warm-up", server, keys["submit"],
                  batched_load(wl, "warm", 1, min(4_000, args.batch_events // 4), 500), None)

        if profile_dir is not None:
            return res  # the profiled server is started by run_profile

        watch = StreamWatch(server.url, keys["read"])
        watch.start()
        # 1. batched ingest
        for batch in (500, 2_000):
            load = batched_load(wl, f"b{batch}-", args.clients, args.batch_events, batch)
            ph = run_phase(f"batched {batch}", server, keys["submit"], load, watch)
            f[f"batched {batch} events/s"] = ph.ev_s
            f[f"batched {batch} p50 ack ms"] = pct(ph.lat, 50)
            f[f"batched {batch} p99 ack ms"] = pct(ph.lat, 99)
            f[f"batched {batch} stream p50 ms"] = pct(ph.stream, 50)
            f[f"batched {batch} stream p99 ms"] = pct(ph.stream, 99)
            f[f"batched {batch} results"] = ph.counts
            say(f"[{name}] batched {batch}/POST x {args.clients} clients: {ph.events:,} "
                f"events in {ph.seconds:.1f} s: {ph.ev_s:,.0f} ev/s, ack p50 "
                f"{pct(ph.lat, 50):.1f} ms p99 {pct(ph.lat, 99):.1f} ms ({ph.requests} "
                f"requests); stream p50 {pct(ph.stream, 50):.1f} ms p99 "
                f"{pct(ph.stream, 99):.1f} ms ({len(ph.stream):,} events with frames); "
                f"{ph.counts}")
        # 2. single-event requests
        per = args.single_requests // args.single_clients
        load = [split(wl.traffic(f"s{c}-", per, feed=c == 0, share=args.single_clients), 1)
                for c in range(args.single_clients)]
        ph = run_phase("single", server, keys["submit"], load, watch)
        f["single requests/s"] = ph.req_s
        f["single p50 ack ms"] = pct(ph.lat, 50)
        f["single p99 ack ms"] = pct(ph.lat, 99)
        f["single stream p50 ms"] = pct(ph.stream, 50)
        f["single stream p99 ms"] = pct(ph.stream, 99)
        f["single results"] = ph.counts
        say(f"[{name}] single events x {args.single_clients} clients: {ph.requests:,} "
            f"requests in {ph.seconds:.1f} s: {ph.req_s:,.0f} req/s, ack p50 "
            f"{pct(ph.lat, 50):.2f} ms p99 {pct(ph.lat, 99):.2f} ms; stream p50 "
            f"{pct(ph.stream, 50):.2f} ms p99 {pct(ph.stream, 99):.2f} ms "
            f"({len(ph.stream):,} events with frames); {ph.counts}")
        watch.stop()
        f["stream frames"] = watch.frames
        if watch.error:
            res.notes.append(f"stream: {watch.error}")
        # 4. account GETs under batched load (batches of 500, the other threads)
        stop_get = threading.Event()
        get_lat: list[float] = []
        getter = threading.Thread(target=get_accounts, args=(
            server.url, keys["read"], wl.holders, stop_get, get_lat))
        getter.start()
        load = batched_load(wl, "g-", args.clients, args.batch_events, 500)
        ph = run_phase("batched 500 + GET", server, keys["submit"], load, None)
        stop_get.set()
        getter.join()
        f["account GET p50 ms"] = pct(get_lat, 50)
        f["account GET p99 ms"] = pct(get_lat, 99)
        f["account GET count"] = len(get_lat)
        f["batched 500 under GET events/s"] = ph.ev_s
        say(f"[{name}] GET /v1/accounts/{{id}} under batched load ({ph.ev_s:,.0f} ev/s): "
            f"{len(get_lat):,} GETs, p50 {pct(get_lat, 50):.1f} ms p99 "
            f"{pct(get_lat, 99):.1f} ms")
        # 5. recovery: top up to --recovery-events after the snapshot, kill -9, recover
        with EventStore(db) as store:
            logged = store.head()[0] - snap_seq
        short = args.recovery_events - logged
        if short > 0:
            ph = run_phase("top-up", server, keys["submit"],
                           batched_load(wl, "t-", args.clients, int(short * 1.02) + 100,
                                        2_000), None)
            say(f"[{name}] top-up for recovery: {ph.events:,} events at {ph.ev_s:,.0f} "
                "ev/s (batches of 2,000)")
        server.kill9()
        svc = RiskService(ServiceConfig(db=db, venue="binance", snapshot_every=0))
        try:
            t0 = time.perf_counter()
            note = svc.recover()
            rec_s = time.perf_counter() - t0
        finally:
            svc.store.close()
        m = re.search(r"\+ ([\d,]+) logged events", note)
        replayed = int(m.group(1).replace(",", "")) if m else 0
        replay_rate = replayed / max(rec_s - restore_s, 1e-9)
        f["recovery events"] = replayed
        f["recovery s"] = rec_s
        f["recovery replay events/s"] = replay_rate
        f["recovery of 1M s (extrapolated)"] = restore_s + 1_000_000 / replay_rate
        say(f"[{name}] recovery: {replayed:,} logged events after the snapshot in "
            f"{rec_s:.1f} s (snapshot restore {restore_s:.2f} s; replay "
            f"{replay_rate:,.0f} ev/s); 1,000,000 events would take "
            f"{f['recovery of 1M s (extrapolated)']:.0f} s")
        # 6. Engine.apply in process over the same logged events from the same snapshot
        with EventStore(db) as store:
            body = store.load_snapshot(snap_seq)
            evs = [parse_input(json.loads(r.payload, parse_float=Decimal))
                   for r in store.iter_from(snap_seq)]
        engine = Engine.restore(body["engine"], pm_grid=load_grid("deribit_pm"))
        rejected = 0
        t0 = time.perf_counter()
        for ev in evs:
            out = engine.apply(ev)
            rejected += bool(out and isinstance(out[0], Rejected))
        apply_s = time.perf_counter() - t0
        f["engine apply events/s"] = len(evs) / apply_s
        say(f"[{name}] Engine.apply in process over the same {len(evs):,} events: "
            f"{len(evs) / apply_s:,.0f} ev/s ({rejected} rejected: "
            f"{'as logged' if rejected == 0 else 'DIFFERS from the log'})")
    finally:
        server.kill9()
    return res


# ---------------------------------------------------------------------------- profile

PROFILED_ENTRY = """
import cProfile, sys, typer
from uvicorn.server import Server
from solvency.service import core
from solvency.cli.serve import serve
out = sys.argv.pop(1)
run = core.RiskService._run
def _run(self):
    p = cProfile.Profile(); p.enable()
    try:
        run(self)
    finally:
        p.disable(); p.dump_stats(out + "/writer.prof")
core.RiskService._run = _run
serve_ = Server._serve
async def _serve(self, *a, **k):
    p = cProfile.Profile(); p.enable()
    try:
        await serve_(self, *a, **k)
    finally:
        p.disable(); p.dump_stats(out + "/loop.prof")
Server._serve = _serve
typer.run(serve)
"""


class ProfiledServer(ServerProcess):
    """``solvency serve`` with cProfile on its writer thread and its event loop."""

    def __init__(self, db: str, workdir: Path, out: Path) -> None:
        super().__init__(db, workdir, args=SERVER_ARGS)
        self.out = out

    def start(self, *, wait: bool = True, timeout: float = 600.0) -> None:
        import subprocess

        cmd = [sys.executable, "-c", PROFILED_ENTRY, str(self.out), "--db", self.db,
               "--port", str(self.port), "--venue", "binance", *self.args]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.workdir,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        if wait:
            self.wait_ready(timeout)


PROFILE_GROUPS = {  # label: functions whose cumulative time it is (file suffix, name)
    "writer": [
        ("engine apply (Engine.apply)", "engine/engine.py", "apply"),
        ("out-events to JSON (Engine.out_json)", "engine/engine.py", "out_json"),
        ("canonical JSON of out-events", "service/core.py", "canonical"),
        ("commit (EventStore.append)", "adapters/store.py", "append"),
        ("stream + recent list after commit", "service/core.py", "_note_recent"),
        ("reads answered on the writer", "service/core.py", "_answer"),
    ],
    "loop": [
        ("body decode (JSON Lines -> objects)", "service/app.py", "_decode_body"),
        ("event parsing (parse_items: parse_input + canonical)", "service/core.py",
         "parse_items"),
        ("answer JSON (Outcome.to_json)", "service/core.py", "to_json"),
        ("answer rendering (JSONResponse)", "starlette/responses.py", "render"),
        ("API-key check (scrypt, verify_key)", "adapters/store.py", "verify_key"),
        ("HTTP parsing (h11/httptools data_received)", "protocols/http", "data_received"),
        ("stream frames (websocket send)", "protocols/websockets", "send"),
    ],
}


def profile_summary(path: Path, which: str, wall: float) -> list[str]:
    st = pstats.Stats(str(path))
    raw: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
    lines = []
    for label, suffix, fn in PROFILE_GROUPS[which]:
        cum = sum(v[3] for (file, _line, name), v in raw.items()
                  if name == fn and file.replace("\\", "/").find(suffix) >= 0)
        lines.append(f"  {label:<55} {cum:7.2f} s  {cum / wall * 100:5.1f} % of the phase")
    top = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:12]
    lines.append(f"  top {which} functions by own time:")
    for (file, line, name), v in top:
        short = "/".join(Path(file).parts[-2:])
        lines.append(f"    {v[2]:7.2f} s own {v[3]:7.2f} s cum  {name} ({short}:{line})")
    return lines


def run_profile(workdir: Path, args: argparse.Namespace) -> list[str]:
    db = f"sqlite:///{workdir / 'profile.db'}"
    wl = run_backend("sqlite-profile", db, workdir, args, profile_dir=workdir).workload
    assert wl is not None
    out = workdir / "prof"
    out.mkdir()
    server = ProfiledServer(db, workdir, out)
    keys = make_keys(db)
    server.start()
    try:
        run_phase("warm-up", server, keys["submit"], batched_load(wl, "pw", 1, 2_000, 500),
                  None)
        load = batched_load(wl, "p-", args.clients, args.batch_events, 2_000)
        ph = run_phase("profiled batched 2000", server, keys["submit"], load, None)
    finally:
        server.stop()
    lines = [f"profile: batched 2,000/POST x {args.clients} clients under cProfile: "
             f"{ph.events:,} events in {ph.seconds:.1f} s ({ph.ev_s:,.0f} ev/s; cProfile "
             "slows it); cumulative time per part:", " writer thread:"]
    lines += profile_summary(out / "writer.prof", "writer", ph.seconds)
    lines.append(" event-loop thread (HTTP, parsing, answers):")
    lines += profile_summary(out / "loop.prof", "loop", ph.seconds)
    return lines


# ---------------------------------------------------------------------------- report


def verdict(figure: str, value: float) -> tuple[str, str, str]:
    target, kind, unit = TARGETS[figure]
    ok = value >= target if kind == "min" else value <= target
    sign = ">=" if kind == "min" else "<="
    return (f"{sign} {target:,.0f} {unit}", "met" if ok else "MISSED", f"{value / target:.2f}x")


def table(results: list[Result]) -> list[str]:
    rows = [("backend", "figure", "measured", "target", "verdict", "meas/target")]
    for r in results:
        f = r.figures
        if "batched 500 events/s" not in f:
            continue

        def add(fig: str, label: str, value: float, shown: str, r: Result = r) -> None:
            if fig in TARGETS:
                rows.append((r.backend, label, shown, *verdict(fig, value)))
            else:
                rows.append((r.backend, label, shown, "", "", ""))
        for b in (500, 2_000):
            add("batched events/s", f"batched {b}/POST events/s",
                f[f"batched {b} events/s"], f"{f[f'batched {b} events/s']:,.0f}")
            add("batched p99 ack", f"batched {b}/POST p99 ack",
                f[f"batched {b} p99 ack ms"],
                f"{f[f'batched {b} p99 ack ms']:.1f} ms (p50 {f[f'batched {b} p50 ack ms']:.1f})")
            add("", f"batched {b}/POST submit->frame",
                0.0, f"p50 {f[f'batched {b} stream p50 ms']:.0f} ms p99 "
                     f"{f[f'batched {b} stream p99 ms']:.0f} ms")
        add("single requests/s", "single-event requests/s", f["single requests/s"],
            f"{f['single requests/s']:,.0f}")
        add("single p99 ack", "single-event p99 ack", f["single p99 ack ms"],
            f"{f['single p99 ack ms']:.1f} ms (p50 {f['single p50 ack ms']:.1f})")
        add("", "single-event submit->frame", 0.0,
            f"p50 {f['single stream p50 ms']:.1f} ms p99 {f['single stream p99 ms']:.1f} ms")
        add("account GET p99", "GET account p99 under load", f["account GET p99 ms"],
            f"{f['account GET p99 ms']:.1f} ms (p50 {f['account GET p50 ms']:.1f})")
        add("recovery of 1M", "recovery of 1M events", f["recovery of 1M s (extrapolated)"],
            f"{f['recovery of 1M s (extrapolated)']:.0f} s (extrapolated from "
            f"{f['recovery events']:,}: {f['recovery replay events/s']:,.0f} ev/s)")
        add("", "Engine.apply in process (ceiling)", 0.0,
            f"{f['engine apply events/s']:,.0f} ev/s (batched 2,000 = "
            f"{f['batched 2000 events/s'] / f['engine apply events/s']:.2f}x of it)")
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str | None]:
    if url:
        yield url
        return
    try:
        with running_postgres(durable=True) as server:
            yield fresh_database(server, "bench_service")
    except PostgresUnavailable as exc:
        say(f"postgresql: skipped ({exc})")
        yield None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=None, help="book size (default 100,000)")
    ap.add_argument("--quick", action="store_true", help="5,000 accounts, small phases "
                                                         "(about a minute per backend)")
    ap.add_argument("--clients", type=int, default=3, help="batched-ingest client threads")
    ap.add_argument("--single-clients", type=int, default=6)
    ap.add_argument("--batch-events", type=int, default=None,
                    help="events per batched phase (default 40,000; quick 8,000)")
    ap.add_argument("--single-requests", type=int, default=None,
                    help="single-event requests (default 6,000; quick 1,500)")
    ap.add_argument("--recovery-events", type=int, default=None,
                    help="logged events after the snapshot to recover (default 100,000; "
                         "quick 20,000); the 1M figure is extrapolated from it")
    ap.add_argument("--oracle-every", type=int, default=200,
                    help="one oracle round (3-5 reports) every N events")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--postgres-url", default=None,
                    help="an empty PostgreSQL database (default: a throwaway cluster)")
    ap.add_argument("--profile", action="store_true",
                    help="also profile one batched phase (SQLite) and print where time goes")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()
    quick = args.quick
    args.accounts = args.accounts or (5_000 if quick else 100_000)
    args.batch_events = args.batch_events or (8_000 if quick else 40_000)
    args.single_requests = args.single_requests or (1_500 if quick else 6_000)
    args.recovery_events = args.recovery_events or (20_000 if quick else 100_000)
    machine = describe()
    say(machine)
    say(f"book {args.accounts:,} accounts; batched phases {args.batch_events:,} events x "
        f"{args.clients} clients; single {args.single_requests:,} requests x "
        f"{args.single_clients} clients; oracle round every {args.oracle_every} events")
    results: list[Result] = []
    profile: list[str] = []
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        if "sqlite" in backends:
            work = Path(tmp) / "sqlite"
            work.mkdir()
            results.append(run_backend("sqlite", f"sqlite:///{work / 'store.db'}", work, args))
        if "postgresql" in backends:
            with postgres(args.postgres_url) as url:
                if url is not None:
                    work = Path(tmp) / "pg"
                    work.mkdir()
                    results.append(run_backend("postgresql", url, work, args))
        if args.profile:
            work = Path(tmp) / "profile"
            work.mkdir()
            profile = run_profile(work, args)
    say("")
    say(machine)
    for line in table(results):
        say(line)
    for r in results:
        for n in r.notes:
            say(f"note ({r.backend}): {n}")
    for line in profile:
        say(line)
    if args.json is not None:
        args.json.write_text(json.dumps({
            "machine": machine, "date": time.strftime("%Y-%m-%d"),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "results": {r.backend: r.figures for r in results},
            "notes": {r.backend: r.notes for r in results if r.notes},
            "profile": profile}, indent=2, default=str))
        say(f"wrote {args.json}")


if __name__ == "__main__":
    main()
