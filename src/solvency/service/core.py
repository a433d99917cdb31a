"""The risk service without its HTTP face: one engine, one durable log, one writer thread.

:class:`RiskService` owns an :class:`~solvency.engine.engine.Engine` and an
:class:`~solvency.adapters.store.EventStore`. Every change goes through one writer thread
(the engine is single-threaded and deterministic): submissions and reads are queued to it;
it applies a group of submitted events, commits their log rows in one transaction, and
only then answers them (an event is acknowledged only once it is durable). Reads run on
the same thread between groups, so they always see the last *committed* state and say
which sequence number that is.

Start-up is recovery: the newest snapshot whose state hashes to the ``state_hash``
recorded with it, then a replay of the log after it, checking the log's hash chain row by
row and that each event gives the out-events recorded with it. Anything that does not
prove out is refused with a message naming the sequence number (a bad snapshot falls back
to the one before it, and says so); the service never serves a state it cannot prove.

Only accepted events are logged (a rejected event changes nothing, so there is nothing to
replay). Sequence numbers are the log's: 1, 2, 3, ... with no gaps. Idempotency is by
event id: a second submission of a logged id with the same canonical payload answers
``duplicate`` with the original sequence number; with another payload, ``rejected
id_conflict``.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from solvency.adapters.eventlog import load_venue
from solvency.adapters.grids import grid_text
from solvency.adapters.nats_stream import StreamError
from solvency.adapters.store import EventStore, LogRow, StoreError
from solvency.core.model.events import EventError, Rejected
from solvency.core.model.venue import ConfigError, build_venue
from solvency.core.portfolio import GridError, parse_grid
from solvency.engine.engine import Engine, EngineError
from solvency.engine.inputs import AnyInput, parse_input

__all__ = [
    "STREAM_TYPES",
    "NotWriterError",
    "Outcome",
    "RecoveryError",
    "RiskService",
    "ServiceConfig",
    "ServiceFailedError",
    "canonical",
]

log = logging.getLogger("solvency.service")

T = TypeVar("T")

STREAM_TYPES = frozenset({"liquidation", "adl", "margin_call", "bad_debt", "socialized_loss",
                          "breaker", "system_state", "collateral_exchanged", "fund_unwind"})
"""Out-event types the risk view keeps in its recent list (``GET /v1/risk``)."""

RECENT = 200


class NotWriterError(RuntimeError):
    """This process follows the stream; another holds the writer lease (``writer`` is
    its advertised URL when known)."""

    def __init__(self, message: str, writer: str = "") -> None:
        super().__init__(message)
        self.writer = writer


class ServiceFailedError(RuntimeError):
    """The service stopped serving (a failed commit or an engine defect): restart it."""


class RecoveryError(RuntimeError):
    """The store does not prove a state: the service refuses to start (message names
    the sequence number)."""


def canonical(obj: object) -> str:
    """Canonical JSON text of an event object: sorted keys, no spaces, decimals as
    strings (the engine's parser reads them back exactly)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_default,
                      ensure_ascii=False)


def _diverged(engine: Engine, recorded: object) -> str:
    """``"; sections differing: a, b"`` between an engine and the section hashes recorded
    with its snapshot (in section order: the first named is the first that differs)."""
    if not isinstance(recorded, dict):
        return ""
    try:
        now = engine.section_hashes()
    except EngineError as exc:
        return f"; sections unreadable: {exc}"
    names = [k for k, v in now.items() if recorded.get(k) != v]
    return f"; sections differing: {', '.join(names)}" if names else ""


def _venue_text(raw: object) -> str:
    """The venue's data as JSON text in its own key order: the engine's market order
    follows the order of the venue's markets, so the keys must not be sorted."""
    return json.dumps(raw, separators=(",", ":"), default=_default, ensure_ascii=False)


def venue_fingerprint(raw: object) -> str:
    """SHA-256 of a venue's data (:func:`_venue_text`): equal for the same rules however
    they were given (a preset's name or a file with its data)."""
    return hashlib.sha256(_venue_text(raw).encode()).hexdigest()


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """How the service runs (``solvency serve`` options)."""

    db: str = "sqlite:///solvency.db"
    venue: str | None = None  # None: the store's own (binance for a new store)
    pm_grid: str | None = None
    snapshot_every: int = 100_000
    max_batch: int = 2_000
    keep_snapshots: int = 3
    # the event log on NATS JetStream (issue 16): None = this store only
    stream: str | None = None
    stream_name: str = "solvency"
    stream_replicas: int = 1
    lease_ttl_s: float = 3.0
    takeover: bool = True  # may this process take the writer lease when it is free
    advertise: str = ""  # this process's URL, told to clients of the other replicas


@dataclass(slots=True)
class Outcome:
    """What happened to one submitted event."""

    id: str
    status: str  # accepted | duplicate | rejected
    seq: int | None = None
    reason: str = ""
    detail: str = ""
    out: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """The JSON object the API answers for this event."""
        d: dict[str, object] = {"id": self.id, "status": self.status}
        if self.seq is not None:
            d["seq"] = self.seq
        if self.reason:
            d["reason"] = self.reason
            d["detail"] = self.detail
        d["out"] = self.out
        return d


@dataclass(slots=True)
class _Item:
    """One event of a submission: parsed, or the reason it could not be."""

    raw_id: str
    event: AnyInput | None
    payload: str
    error: EventError | None = None


@dataclass(slots=True)
class _Write:
    items: list[_Item]
    key_id: str | None
    future: cf.Future[list[Outcome]]


@dataclass(slots=True)
class _Read:
    fn: Callable[[], Any]
    future: cf.Future[Any]


@dataclass(slots=True)
class _Replicate:
    """Rows read from the stream, to apply in order (a follower)."""

    rows: list[LogRow]


@dataclass(slots=True)
class _Role:
    """Become the writer (after the stream thread took the lease and caught up) or a
    follower (the lease was lost)."""

    role: str


_STOP = object()


def parse_items(objs: Iterable[object]) -> list[_Item]:
    """Parse event objects (already decoded JSON) into submission items; a bad one
    becomes an item carrying its :class:`EventError`, the rest stand."""
    items: list[_Item] = []
    for obj in objs:
        raw_id = ""
        if isinstance(obj, dict):
            rid = obj.get("id")
            raw_id = rid if isinstance(rid, str) else ""
        try:
            ev = parse_input(obj)  # type: ignore[arg-type]
        except EventError as exc:
            items.append(_Item(raw_id, None, "", exc))
            continue
        items.append(_Item(ev.id, ev, canonical(obj)))
    return items


class RiskService:
    """The engine behind a durable log and one writer thread (see the module doc)."""

    def __init__(self, config: ServiceConfig, *,
                 on_commit: Callable[[list[tuple[int, str, str]]], None] | None = None,
                 clock_ms: Callable[[], int] | None = None) -> None:
        self.config = config
        self.on_commit = on_commit
        self._clock = clock_ms or (lambda: int(time.time() * 1000))
        # a key revoked by `solvency keys revoke` (another process) stops working within
        # two seconds; a hot client pays scrypt once per two seconds, not per request
        self.store = EventStore(config.db, key_cache_ttl_s=2.0)
        self.ready = False
        self.recovery_note = ""
        self.engine: Engine
        self.seq = 0
        self.chain = ""
        self.snapshot_seq = 0
        self.recent: deque[dict[str, object]] = deque(maxlen=RECENT)
        self.stats: dict[str, Any] = {
            "accepted": 0, "duplicates": 0, "rejected": {}, "commits": 0,
            "apply_s": deque(maxlen=4096), "commit_s": deque(maxlen=4096),
        }
        self._observers: list[Callable[[str, float], None]] = []
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None
        # the stream (issue 16): this process's role, and where the stream stands
        self.role = "writer" if config.stream is None else "follower"
        self.stream: Any = None  # JetStreamLog when config.stream is set
        self.stream_last = 0
        self.writer_url = ""
        self.instance = f"{config.advertise or 'solvency'}#{uuid.uuid4().hex[:8]}"
        self._follower: threading.Thread | None = None
        self._stopping = threading.Event()
        self.failovers = 0
        self.promoted_at: float | None = None
        self._grid_cache: Any = None

    # ------------------------------------------------------------------ recovery

    def _grid(self) -> Any:
        """The portfolio-margin grid, recorded in the store as the venue is: a new store
        records the grid it starts with (--pm-grid, default deribit_pm); a restart uses
        the recorded one, and a --pm-grid whose text differs is refused (a restart under
        another grid would margin, and so liquidate, differently from the log)."""
        if self._grid_cache is not None:
            return self._grid_cache
        asked = self.config.pm_grid
        stored = self.store.get_meta("pm_grid")
        try:
            text = grid_text(asked or "deribit_pm") if asked is not None or stored is None \
                else stored
        except (KeyError, ValueError, OSError) as exc:
            raise RecoveryError(f"pm grid {asked!r}: {exc}") from None
        if stored is None:
            self.store.set_meta("pm_grid", text)
            self.store.set_meta("pm_grid_name", str(asked or "deribit_pm"))
        elif text != stored:
            raise RecoveryError(
                f"the store at {self.store.display_url} was created with pm grid "
                f"{self.store.get_meta('pm_grid_name')!r}; --pm-grid {asked!r} differs "
                "(omit --pm-grid to use the store's, or use another --db)")
        try:
            self._grid_cache = parse_grid(text, where=f"pm grid "
                                          f"{self.store.get_meta('pm_grid_name')}")
        except (GridError, ValueError) as exc:
            raise RecoveryError(f"the pm grid does not load: {exc}") from None
        return self._grid_cache

    def _genesis(self) -> Engine:
        stored = self.store.get_meta("venue")
        if self.config.venue is not None:
            try:
                venue = load_venue(self.config.venue)
            except ConfigError as exc:
                raise RecoveryError(str(exc)) from None
            text = _venue_text(venue.raw)
            if stored is None:
                self.store.set_meta("venue", text)
                self.store.set_meta("venue_name", venue.name)
            elif stored != text:
                raise RecoveryError(
                    f"the store at {self.store.display_url} was created for venue "
                    f"{self.store.get_meta('venue_name')!r}; --venue {self.config.venue!r} "
                    "differs (omit --venue to use the store's, or use another --db)")
        elif stored is None:
            venue = load_venue("binance")
            self.store.set_meta("venue", _venue_text(venue.raw))
            self.store.set_meta("venue_name", venue.name)
        else:
            try:
                # the venue as it was built (its raw data: complete, with its preset)
                venue = build_venue(json.loads(stored), source="the store's venue")
            except (ConfigError, ValueError) as exc:
                raise RecoveryError(f"the store's venue does not load: {exc}") from None
        return Engine(venue, pm_grid=self._grid())

    def recover(self) -> str:
        """Bring the engine to the log's head, proving every step; returns a one-line
        account of what was done (also in :attr:`recovery_note`)."""
        started = time.perf_counter()
        genesis = self._genesis()  # checks --venue against the store even with snapshots
        head_seq, head_chain = self.store.head()
        notes: list[str] = []
        engine: Engine | None = None
        base_seq = 0
        for info in self.store.snapshots():
            if info.seq > head_seq:
                notes.append(f"snapshot at seq {info.seq} is past the log head {head_seq}; "
                             "skipped")
                continue
            try:
                body = self.store.load_snapshot(info.seq)
                if body.get("chain") != self.store.chain_at(info.seq):
                    raise RecoveryError(f"snapshot at seq {info.seq}: the log's chain at "
                                        "that seq differs from the one it recorded")
                candidate = Engine.restore(body["engine"], pm_grid=self._grid())
                got = candidate.state_hash()
                if got != info.state_hash:
                    raise RecoveryError(f"snapshot at seq {info.seq}: state hashes to "
                                        f"{got[:12]}, recorded {info.state_hash[:12]}"
                                        + _diverged(candidate, body.get("sections")))
            except (StoreError, RecoveryError, EngineError, KeyError, TypeError,
                    ValueError) as exc:
                notes.append(f"{exc}; falling back to an older snapshot")
                log.warning("recovery: %s; falling back to an older snapshot", exc)
                continue
            engine, base_seq = candidate, info.seq
            break
        if engine is None:
            engine = genesis
        prev = self.store.chain_at(base_seq)
        count = 0
        for row in self.store.iter_from(base_seq):
            self._replay_row(engine, row, prev)
            prev = row.chain
            count += 1
        if base_seq + count != head_seq or prev != head_chain:
            raise RecoveryError(f"log: replay reached seq {base_seq + count}, the head is "
                                f"seq {head_seq}")
        try:
            engine.verify()
        except EngineError as exc:
            raise RecoveryError(f"state at seq {head_seq} does not verify: {exc}") from None
        self.engine, self.seq, self.chain, self.snapshot_seq = (engine, head_seq, head_chain,
                                                               base_seq)
        self._fill_recent()
        where = f"snapshot at seq {base_seq}" if base_seq else "an empty engine"
        note = (f"recovered seq {head_seq} from {where} + {count:,} logged events in "
                f"{time.perf_counter() - started:.2f} s; state_hash "
                f"{engine.state_hash()[:16]}")
        if notes:
            note += " (" + "; ".join(notes) + ")"
        self.recovery_note = note
        log.info("%s", note)
        return note

    def _replay_row(self, engine: Engine, row: LogRow, prev: str | None) -> None:
        if prev is not None:  # the local log's chain (stream rows carry none)
            try:
                self.store.verify_chain([row], prev)
            except StoreError as exc:
                raise RecoveryError(str(exc)) from None
        try:
            ev = parse_input(json.loads(row.payload, parse_float=Decimal))
        except (EventError, ValueError) as exc:
            raise RecoveryError(f"log row seq {row.seq}: payload does not parse: "
                                f"{exc}") from None
        if ev.id != row.event_id:
            raise RecoveryError(f"log row seq {row.seq}: event id {ev.id!r} differs from "
                                f"the row's {row.event_id!r}")
        out = engine.apply(ev)
        if out and isinstance(out[0], Rejected) and out[0].event == ev.id:
            raise RecoveryError(f"log row seq {row.seq}: event {ev.id!r} is rejected on "
                                f"replay ({out[0].reason}: {out[0].detail})")
        text = canonical(engine.out_json(out))
        if text != row.out:
            raise RecoveryError(f"log row seq {row.seq}: event {ev.id!r} gives other "
                                "out-events than were recorded (the engine or the log "
                                "changed)")

    def _fill_recent(self) -> None:
        start = max(0, self.seq - 5_000)
        for row in self.store.iter_from(start):
            self._note_recent(row.seq, json.loads(row.out))

    def _note_recent(self, seq: int, out: list[dict[str, object]]) -> None:
        for o in out:
            if o.get("type") in STREAM_TYPES:
                self.recent.append({"seq": seq, **o})

    # ------------------------------------------------------------------ thread

    def start(self) -> None:
        """Recover, then start the writer thread (and, on a stream, the follower
        thread); :attr:`ready` once it runs."""
        self.recover()
        if self.config.stream is not None:
            self._connect_stream()
        self._thread = threading.Thread(target=self._run, name="solvency-writer",
                                        daemon=True)
        self._thread.start()
        if self.stream is not None:
            self._follower = threading.Thread(target=self._follow, name="solvency-follow",
                                              daemon=True)
            self._follower.start()
        self.ready = True

    def stop(self, *, snapshot: bool = True) -> None:
        """Drain the queue, take a snapshot (clean shutdown) and close the store; on a
        stream, give the writer lease up so a replica takes over at once."""
        self._stopping.set()
        if self._follower is not None:
            self._follower.join(10)
            self._follower = None
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if self.stream is not None:
            if self.role == "writer":
                self.stream.release()
            self.stream.close()
            self.stream = None
        if snapshot and self.ready and self._failed is None and self.seq > self.snapshot_seq:
            self.snapshot()
        self.ready = False
        self.store.close()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            jobs = [job]
            events = len(job.items) if isinstance(job, _Write) else 0
            while events < self.config.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                jobs.append(nxt)
                if isinstance(nxt, _Write):
                    events += len(nxt.items)
            # in arrival order; consecutive submissions commit as one group
            group: list[_Write] = []
            for j in [*jobs, None]:
                if isinstance(j, _Write):
                    group.append(j)
                    continue
                if group:
                    try:
                        self._write(group)
                    except Exception as exc:  # an engine defect: stop serving, never hang
                        self._fail(exc, group)
                    group = []
                if isinstance(j, _Read):
                    self._answer(j)
                elif isinstance(j, _Replicate):
                    self._replicate(j.rows)
                elif isinstance(j, _Role):
                    self._set_role(j.role)
            if any(j is _STOP for j in jobs):
                return

    def _fail(self, exc: BaseException, writes: list[_Write]) -> None:
        """The engine raised while applying (a defect: it validates before it mutates,
        so this should not happen): its state may be half-changed, so the service stops
        serving it. The log holds only committed events: a restart recovers the last
        proven state."""
        self._failed = exc
        self.ready = False
        log.error("the engine raised while applying a group (%s: %s); the service stops "
                  "serving; restart it to recover the last committed state",
                  type(exc).__name__, exc, exc_info=exc)
        for w in writes:
            if not w.future.done():
                w.future.set_exception(ServiceFailedError(f"the service failed at seq "
                                                     f"{self.seq + 1}: restart it"))

    def _answer(self, job: _Read) -> None:
        if self._failed is not None:
            job.future.set_exception(ServiceFailedError("the service failed: restart it"))
            return
        try:
            job.future.set_result(job.fn())
        except Exception as exc:  # a view's error goes to its caller, not the thread
            job.future.set_exception(exc)

    # ------------------------------------------------------------------ writes

    def submit(self, items: list[_Item], key_id: str | None) -> cf.Future[list[Outcome]]:
        """Queue a submission; the future resolves once its accepted events are durable."""
        fut: cf.Future[list[Outcome]] = cf.Future()
        if self._failed is not None:
            fut.set_exception(ServiceFailedError("the service failed: restart it"))
            return fut
        self._queue.put(_Write(items, key_id, fut))
        return fut

    def read(self, fn: Callable[[], T]) -> cf.Future[T]:
        """Run ``fn`` on the writer thread against the last committed state."""
        fut: cf.Future[T] = cf.Future()
        self._queue.put(_Read(fn, fut))
        return fut

    def _write(self, writes: list[_Write]) -> None:
        if self._failed is not None:
            for w in writes:
                w.future.set_exception(ServiceFailedError("the service failed: restart it"))
            return
        if self.role != "writer":
            for w in writes:
                w.future.set_exception(self._not_writer())
            return
        engine = self.engine
        rows: list[LogRow] = []
        pending: dict[str, tuple[int, str]] = {}
        answers: list[list[Outcome]] = []
        now = self._clock()
        t0 = time.perf_counter()
        seq = self.seq
        for w in writes:
            res: list[Outcome] = []
            for it in w.items:
                if it.event is None:
                    err = it.error
                    assert err is not None
                    res.append(Outcome(it.raw_id, "rejected", reason=err.reason,
                                       detail=err.detail))
                    self._count_reject(err.reason)
                    continue
                ev = it.event
                if ev.id in pending or ev.id in engine.seen_ids:
                    res.append(self._duplicate(ev.id, it.payload, pending))
                    continue
                out = engine.apply(ev)
                if out and isinstance(out[0], Rejected) and out[0].event == ev.id:
                    rej = out[0]
                    res.append(Outcome(ev.id, "rejected", reason=rej.reason,
                                       detail=rej.detail, out=engine.out_json(out)))
                    self._count_reject(rej.reason)
                    continue
                seq += 1
                out_json = engine.out_json(out)
                rows.append(LogRow(seq, ev.id, ev.type, it.payload, now, w.key_id,
                                   canonical(out_json), ""))
                pending[ev.id] = (seq, it.payload)
                res.append(Outcome(ev.id, "accepted", seq=seq, out=out_json))
            answers.append(res)
        t1 = time.perf_counter()
        if rows and self.stream is not None:
            try:
                self.stream.publish(rows)
            except StreamError as exc:
                # fenced (another writer) or the stream is gone: the engine holds events
                # the log of record may not; rebuild from what is durable, then follow
                log.warning("publish at seq %d failed (%s); this process now follows",
                            rows[0].seq, exc)
                self._reload()
                for w in writes:
                    w.future.set_exception(self._not_writer())
                return
        try:
            if rows:
                stored = self.store.append(rows)
                self.chain = stored[-1].chain
        except StoreError as exc:
            # the engine holds events the log does not: stop serving this state
            self._failed = exc
            self.ready = False
            log.error("commit failed at seq %d: %s; the service stops serving",
                      self.seq + 1, exc)
            for w in writes:
                w.future.set_exception(ServiceFailedError(f"commit failed at seq {self.seq + 1}: "
                                                     f"{exc}; restart the service"))
            return
        t2 = time.perf_counter()
        self.seq = seq
        self.stats["accepted"] += len(rows)
        self.stats["commits"] += 1
        self.stats["apply_s"].append(t1 - t0)
        self.stats["commit_s"].append(t2 - t1)
        for fn in self._observers:
            fn("apply", t1 - t0)
            fn("commit", t2 - t1)
        for w, res in zip(writes, answers, strict=True):
            w.future.set_result(res)
        self._after_commit(rows)

    def _after_commit(self, rows: list[LogRow]) -> None:
        """What follows a durable commit, written or replicated: the recent list, the
        stream frames, and a snapshot when one is due."""
        frames = [(r.seq, r.event_id, r.out) for r in rows if r.out != "[]"]
        for seq, _, out in frames:
            self._note_recent(seq, json.loads(out))
        if frames and self.on_commit is not None:
            self.on_commit(frames)
        if self.config.snapshot_every > 0 and self.seq - self.snapshot_seq >= (
                self.config.snapshot_every):
            self.snapshot()

    def _duplicate(self, event_id: str, payload: str,
                   pending: dict[str, tuple[int, str]]) -> Outcome:
        if event_id in pending:
            seq, logged = pending[event_id]
        else:
            row = self.store.find(event_id)
            if row is None:
                # seen by the engine but not in the log: a system id, or a log that
                # lost rows (recovery would have refused the latter)
                self._count_reject("duplicate_id")
                return Outcome(event_id, "rejected", reason="id_conflict",
                               detail="the id is taken by an engine event")
            seq, logged = row.seq, row.payload
        if logged != payload:
            self._count_reject("id_conflict")
            return Outcome(event_id, "rejected", reason="id_conflict",
                           detail=f"id {event_id!r} was logged at seq {seq} with "
                                  "other content")
        self.stats["duplicates"] += 1
        return Outcome(event_id, "duplicate", seq=seq)

    def _count_reject(self, reason: str) -> None:
        rej: dict[str, int] = self.stats["rejected"]
        rej[reason] = rej.get(reason, 0) + 1

    def observe(self, fn: Callable[[str, float], None]) -> None:
        """Call ``fn(kind, seconds)`` after each commit (the metrics' latency
        histograms: ``apply`` and ``commit``)."""
        self._observers.append(fn)

    # ------------------------------------------------------------------ the stream

    def _connect_stream(self) -> None:
        """Connect to the stream and bring the local store level with it (a new stream
        is seeded with the local log; a local log the stream does not have is refused)."""
        from solvency.adapters.nats_stream import JetStreamLog

        cfg = self.config
        assert cfg.stream is not None
        try:
            self.stream = JetStreamLog(cfg.stream, cfg.stream_name,
                                       replicas=cfg.stream_replicas,
                                       lease_ttl_s=cfg.lease_ttl_s)
            last = self.stream.last_seq()
        except StreamError as exc:
            raise RecoveryError(str(exc)) from None
        if self.seq > last:
            if last != 0:
                raise RecoveryError(
                    f"the local store is at seq {self.seq}, the stream {cfg.stream_name} "
                    f"only at {last}: this store does not belong to that stream")
            log.info("seeding the empty stream %s with the local log (%d events)",
                     cfg.stream_name, self.seq)
            for start in range(0, self.seq, 2_000):
                rows = self.store.read(start, limit=2_000)
                try:
                    self.stream.publish(rows)
                except StreamError as exc:
                    raise RecoveryError(f"seeding the stream: {exc}") from None
            last = self.seq
        self.stream_last = last

    def _not_writer(self) -> NotWriterError:
        where = f"; the writer is {self.writer_url}" if self.writer_url else ""
        return NotWriterError(f"this process follows the stream (at seq {self.seq}){where}",
                              self.writer_url)

    def _follow(self) -> None:
        """The follower thread: read the stream into the writer thread's queue, watch
        the lease, take it when it is free (then catch up fully before writing), and
        refresh it while writing."""
        stream = self.stream
        holder = {"id": self.instance, "url": self.config.advertise}
        enqueued = self.seq
        next_lease = 0.0
        period = self.config.lease_ttl_s / 3
        while not self._stopping.is_set():
            try:
                if self.role == "writer":
                    if not stream.refresh(holder):
                        log.warning("lost the writer lease; following again")
                        self._queue.put(_Role("follower"))
                        enqueued = -1
                    self._stopping.wait(period)
                    continue
                if enqueued < 0:  # demoted: restart from what the writer thread holds
                    time.sleep(0.05)
                    if self.role != "follower":
                        continue
                    enqueued = self.seq
                rows = stream.fetch(enqueued, 2_000, wait_s=0.1)
                if rows:
                    self._queue.put(_Replicate(rows))
                    enqueued = rows[-1].seq
                now = time.monotonic()
                if now >= next_lease:
                    next_lease = now + min(0.5, period)
                    self.stream_last = stream.last_seq()
                    current = stream.lease_holder()
                    self.writer_url = str(current.get("url", "")) if current else ""
                    if current is None and self.config.takeover and stream.acquire(holder):
                        started = time.perf_counter()
                        # the lease fences other writers: drain the stream, then write
                        while enqueued < stream.last_seq():
                            more = stream.fetch(enqueued, 2_000, wait_s=0.5)
                            if more:
                                self._queue.put(_Replicate(more))
                                enqueued = more[-1].seq
                        self._queue.put(_Role("writer"))
                        log.info("took the writer lease at seq %d (catch-up %.3f s)",
                                 enqueued, time.perf_counter() - started)
            except StreamError as exc:
                log.warning("stream: %s", exc)
                self._stopping.wait(0.5)

    def _set_role(self, role: str) -> None:
        if role == self.role:
            return
        if role == "follower":
            self._reload()
            return
        self.role = "writer"
        self.writer_url = self.config.advertise
        self.failovers += 1
        self.promoted_at = time.time()
        log.info("now the writer at seq %d", self.seq)

    def _reload(self) -> None:
        """Rebuild the engine from the local store (which holds only what the stream
        stored) and follow."""
        self.role = "follower"
        self.recover()

    def _replicate(self, rows: list[LogRow]) -> None:
        """Apply rows from the stream, proving each gives its recorded out-events, then
        store them locally (a follower)."""
        if self._failed is not None:
            return
        engine = self.engine
        fresh = [r for r in rows if r.seq > self.seq]
        if not fresh:
            return
        if fresh[0].seq != self.seq + 1:
            log.warning("stream gap: at seq %d, next row seq %d; reloading", self.seq,
                        fresh[0].seq)
            self._reload()
            return
        try:
            for row in fresh:
                self._replay_row(engine, row, None)
        except RecoveryError as exc:
            self._failed = exc
            self.ready = False
            log.error("replica diverged: %s; it stops serving", exc)
            return
        stored = self.store.append(fresh)
        self.chain = stored[-1].chain
        self.seq = fresh[-1].seq
        self.stats["accepted"] += len(fresh)
        self._after_commit(fresh)

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> int:
        """Snapshot the state at the current sequence number (writer thread or stopped
        service only); returns that number."""
        # the section hashes too, so a snapshot that does not prove out says what
        # diverged (ledger, positions, marks, ...: Engine.section_hashes)
        body = {"engine": self.engine.snapshot(), "chain": self.chain, "seq": self.seq,
                "sections": self.engine.section_hashes()}
        self.store.save_snapshot(self.seq, self.engine.state_hash(), body, self._clock())
        self.store.prune_snapshots(self.config.keep_snapshots)
        self.snapshot_seq = self.seq
        log.info("snapshot at seq %d", self.seq)
        return self.seq

    # ------------------------------------------------------------------ stream

    def frames_after(self, seq: int, batch: int = 5_000) -> Iterator[tuple[int, str, str]]:
        """Logged out-events after ``seq`` as ``(seq, event_id, out_json)``, from the
        store (the stream's catch-up)."""
        for row in self.store.iter_from(seq, batch=batch):
            if row.out != "[]":
                yield row.seq, row.event_id, row.out
