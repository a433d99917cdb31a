"""The durable store of the live risk service: event log, snapshots, metadata and API keys.

One schema on SQLite (a single file, for one machine) and PostgreSQL, through SQLAlchemy 2
Core. The event log is the source of truth: the engine's state is whatever replaying it
gives (DESIGN.md: a process killed at any point and restarted from its store reaches the
same state as one that never stopped), so the log is

* gapless (``seq`` 1, 2, 3, ... with no holes: a hole would be a lost event, and replay
  could not tell), checked on every append rather than assigned here, so the caller's
  in-memory view and the store can never disagree silently;
* durable on return from :meth:`EventStore.append` (SQLite ``synchronous=FULL`` in WAL
  mode, PostgreSQL ``synchronous_commit`` left at its default ``on``): an acknowledged
  event survives a power cut;
* hash-chained (:func:`chain_of`): each row's ``chain`` covers the previous row's chain,
  its seq, id and payload, so an edited, dropped or reordered row is caught on replay
  (:meth:`EventStore.verify_chain`) and named by seq, instead of silently yielding another
  state.

Snapshots only shorten replay; they are checksummed and a bad one is an error, never a
silent wrong state. Every failure surfaces as :class:`StoreError` with a one-line message
(the service shows it to users; a traceback would be useless to them).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

__all__ = [
    "GENESIS",
    "SCOPES",
    "EventStore",
    "KeyRecord",
    "LogRow",
    "SnapshotInfo",
    "StoreError",
    "chain_of",
]

GENESIS = "0" * 64
"""The chain value "before" seq 1."""

SCOPES = ("read", "submit", "govern")
"""API key scopes: read state, submit events, govern (keys, parameters, snapshots)."""

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# scrypt at n=2**14, r=8, p=1 costs ~16 MiB and tens of milliseconds: slow enough that a
# stolen table cannot be brute-forced cheaply (the secrets are 256-bit random anyway), and
# the per-process cache keeps hot requests from paying it each time.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SCRYPT_LEN = 2**14, 8, 1, 32
_TOKEN_RE = re.compile(r"slv_([0-9a-f]{8})_([A-Za-z0-9_-]{20,128})")
_IN_CHUNK = 500  # bound on bound parameters per IN (...) query: old SQLite allows 999


class StoreError(Exception):
    """A store failure, with a one-line message fit to show a user (names the seq if any)."""


class _ClashError(StoreError):
    """An append refused by a unique index (explained after the rollback)."""


@dataclass(frozen=True, slots=True)
class LogRow:
    """One row of the event log: the input event and what the engine emitted for it."""

    seq: int
    event_id: str
    type: str
    payload: str
    """Canonical JSON text of the input event (given by the caller)."""
    received_ms: int
    key_id: str | None
    out: str
    """JSON text of the out-events array the engine returned (given by the caller)."""
    chain: str
    """Hash chain (:func:`chain_of`); computed by :meth:`EventStore.append`, pass ``""``."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A stored snapshot of the engine state after ``seq``, without its body."""

    seq: int
    state_hash: str
    created_ms: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An API key as stored (never its secret)."""

    id: str
    scopes: frozenset[str]
    created_ms: int
    revoked_ms: int | None
    label: str


def chain_of(prev_chain: str, seq: int, event_id: str, payload: str) -> str:
    """``sha256(prev_chain + "\\n" + seq + "\\n" + event_id + "\\n" + payload)`` as hex.

    The newline separators make the fields unambiguous: an id ending in digits cannot be
    shifted into the seq. ``surrogatepass`` so that any Python string hashes (the database
    would then refuse the row with a clear error rather than this function crashing).
    """
    text = f"{prev_chain}\n{seq}\n{event_id}\n{payload}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# ---------------------------------------------------------------------------------------
# Tables (SQLAlchemy Core). The schema itself is created by the Alembic revisions in
# migrations/versions/; these objects only build queries, and a test checks they match.

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_md = sa.MetaData()
_meta = sa.Table(
    "meta", _md,
    sa.Column("key", sa.String(), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
)
_events = sa.Table(
    "events", _md,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=False),
    sa.Column("event_id", sa.String(), nullable=False),
    sa.Column("type", sa.String(), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("received_ms", sa.BigInteger(), nullable=False),
    sa.Column("key_id", sa.String(), nullable=True),
    sa.Column("out", sa.Text(), nullable=False),
    sa.Column("chain", sa.String(64), nullable=False),
    sa.Index("ix_events_event_id", "event_id", unique=True),
)
_snapshots = sa.Table(
    "snapshots", _md,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=False),
    sa.Column("state_hash", sa.String(), nullable=False),
    sa.Column("created_ms", sa.BigInteger(), nullable=False),
    sa.Column("body", sa.LargeBinary(), nullable=False),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("size_bytes", sa.BigInteger(), nullable=False),
)
_api_keys = sa.Table(
    "api_keys", _md,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("label", sa.Text(), nullable=False),
    sa.Column("scopes", sa.String(), nullable=False),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(128), nullable=False),
    sa.Column("created_ms", sa.BigInteger(), nullable=False),
    sa.Column("revoked_ms", sa.BigInteger(), nullable=True),
)
METADATA = _md
"""The tables as the code sees them (for tests comparing them with the migrated schema)."""

_EVENT_COLS = (
    _events.c.seq, _events.c.event_id, _events.c.type, _events.c.payload,
    _events.c.received_ms, _events.c.key_id, _events.c.out, _events.c.chain,
)
_KEY_COLS = (
    _api_keys.c.id, _api_keys.c.scopes, _api_keys.c.created_ms, _api_keys.c.revoked_ms,
    _api_keys.c.label,
)


def _one_line(exc: BaseException) -> str:
    """The driver's own message of a database error, on one line.

    SQLAlchemy's ``str()`` appends the SQL statement, its parameters (which may hold a
    payload or a key hash) and a documentation link; users need the driver's reason only.
    """
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines[:2]) if lines else type(exc).__name__


def _row(r: Any) -> LogRow:
    return LogRow(int(r[0]), r[1], r[2], r[3], int(r[4]), r[5], r[6], r[7])


def _key(r: Any) -> KeyRecord:
    scopes = frozenset(s for s in str(r[1]).split(",") if s)
    return KeyRecord(r[0], scopes, int(r[2]), None if r[3] is None else int(r[3]), r[4])


def _hash_token(token: str, salt: bytes) -> bytes:
    return hashlib.scrypt(token.encode("ascii"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R,
                          p=_SCRYPT_P, dklen=_SCRYPT_LEN, maxmem=64 * 1024 * 1024)


class EventStore:
    """The store behind one service: open with a URL, migrated to the latest schema.

    ``sqlite:///PATH`` or ``postgresql+psycopg://user:password@host:port/db``. Thread-safe:
    one Engine with a small pool, each call takes its own connection and transaction, so
    reads from request threads run beside the single writer (SQLite in WAL mode lets
    readers see the last committed state while a write is in progress). ``sqlite://`` /
    ``sqlite:///:memory:`` (tests) share one connection, so calls are serialized.

    ``key_cache_ttl_s``: how long a verified token is trusted without a database look-up.
    A revoke in this process drops it at once; one made by another process (an admin
    command against the same store) takes effect within this many seconds.
    """

    def __init__(self, url: str, *, key_cache_ttl_s: float = 60.0) -> None:
        self.url = url
        self._closed = False
        self._lock: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        self._key_cache: dict[bytes, tuple[float, KeyRecord]] = {}
        self._key_lock = threading.Lock()
        self._key_ttl = float(key_cache_ttl_s)
        try:
            parsed = sa.make_url(url)
        except (ArgumentError, ValueError) as exc:
            raise StoreError(f"store URL {url!r} is not a database URL ({exc})") from None
        self._display = parsed.render_as_string(hide_password=True)
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            self.dialect = "sqlite"
            self._engine = self._sqlite_engine(parsed)
        elif backend == "postgresql":
            self.dialect = "postgresql"
            if parsed.get_driver_name() != "psycopg":
                raise StoreError(f"store URL {self.display_url}: use the psycopg driver "
                                 "(postgresql+psycopg://user:password@host:port/db)")
            try:
                self._engine = sa.create_engine(parsed, pool_size=4, max_overflow=4,
                                                pool_pre_ping=True, pool_recycle=3600)
            except (SQLAlchemyError, ImportError, TypeError) as exc:
                raise StoreError(f"{self.display_url}: {_one_line(exc)}") from None
        else:
            raise StoreError(f"store URL {self.display_url}: unsupported database "
                             f"{backend!r} (use sqlite:///PATH or postgresql+psycopg://...)")
        # executemany straight to the driver: SQLAlchemy's per-row parameter processing
        # was a third of append's time, and these columns need no type conversion
        names = [c.name for c in _EVENT_COLS]
        marks = [f":{n}" if self.dialect == "sqlite" else f"%({n})s" for n in names]
        self._insert_sql = (f"INSERT INTO events ({', '.join(names)}) "
                            f"VALUES ({', '.join(marks)})")
        try:
            if self.dialect == "sqlite":
                self._check_sqlite()
            self._migrate()
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def display_url(self) -> str:
        """The URL with its password masked (``***``), for messages and logs."""
        return self._display

    # -- opening ---------------------------------------------------------------------

    def _sqlite_engine(self, parsed: sa.URL) -> Engine:
        """A SQLite engine in WAL mode with ``synchronous=FULL`` and real transactions.

        Python's sqlite3 module (legacy mode) neither begins a transaction before DDL nor
        lets us choose ``BEGIN IMMEDIATE``; it is set to autocommit and the ``begin``
        listener below issues BEGIN itself (SQLAlchemy's documented recipe), so the schema
        upgrade is atomic and a writer takes the write lock up front instead of failing
        with "database is locked" half-way when it upgrades a read lock.
        """
        database = parsed.database or ""
        memory = database in ("", ":memory:") or database.startswith("file::memory:")
        if not memory:
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(f"{self.display_url}: directory {parent} does not exist")
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False,
                                                   "timeout": 30.0}}
        if memory:
            kwargs["poolclass"] = StaticPool
            self._lock = threading.RLock()
        else:
            kwargs.update(pool_size=4, max_overflow=4)
        engine = sa.create_engine(parsed, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            try:
                cur.execute("PRAGMA foreign_keys=ON")
                if not memory:
                    mode = cur.execute("PRAGMA journal_mode=WAL").fetchone()
                    if mode is None or str(mode[0]).lower() != "wal":
                        raise sqlite3.OperationalError(
                            f"cannot switch to WAL journal mode (got {mode!r})")
                cur.execute("PRAGMA synchronous=FULL")
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("solvency_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    def _check_sqlite(self) -> None:
        """``PRAGMA quick_check`` on open: a damaged file fails here with one clear line.

        A truncated or partly overwritten file can otherwise open fine and fail on the
        first read of a missing page (or, worse, return a shorter log). quick_check walks
        every page but skips the index-content cross-check of ``integrity_check``: 35-70 ms
        for 100,000 log rows (31 MiB) on a 2-core dev box (bench/bench_store.py prints it).
        """
        try:
            with self._lock, self._engine.connect() as conn:
                rows = conn.exec_driver_sql("PRAGMA quick_check").fetchall()
        except (SQLAlchemyError, sqlite3.Error) as exc:
            msg = _one_line(exc)
            if "malformed" in msg or "not a database" in msg:
                raise StoreError(f"{self.display_url}: not a solvency store / {msg}") \
                    from None
            raise StoreError(f"{self.display_url}: cannot open: {msg}") from None
        problems = [str(r[0]) for r in rows if str(r[0]) != "ok"]
        if problems:
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            raise StoreError(f"{self.display_url}: not a solvency store / database disk "
                             f"image is malformed (quick_check: {problems[0]}{more})")

    def _migrate(self) -> None:
        """Bring the schema to the latest revision, refusing a database that is not ours.

        A database with tables but no ``alembic_version`` belongs to something else; one
        stamped with a revision this code does not know was written by a newer solvency.
        Either way, creating tables in it or reading it would be wrong.
        """
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
        script = ScriptDirectory.from_config(cfg)
        known = {rev.revision for rev in script.walk_revisions()}
        try:
            with self._tx(write=True, what="open") as conn:
                if self.dialect == "postgresql":
                    # serialize concurrent first opens of one database (two processes)
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(7365636179)"))
                tables = set(sa.inspect(conn).get_table_names())
                if tables and "alembic_version" not in tables:
                    names = ", ".join(sorted(tables)[:5])
                    raise StoreError(f"{self.display_url}: not a solvency store (it has "
                                     f"tables {names} and no alembic_version)")
                if "alembic_version" in tables:
                    current = conn.execute(
                        sa.text("SELECT version_num FROM alembic_version")).scalars().all()
                    unknown = [v for v in current if v not in known]
                    if unknown:
                        raise StoreError(
                            f"{self.display_url}: store schema revision {unknown[0]} is not "
                            "known to this solvency (written by a newer version?)")
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except CommandError as exc:
            raise StoreError(f"{self.display_url}: schema migration failed: "
                             f"{_one_line(exc)}") from None

    # -- plumbing --------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self, *, write: bool, what: str) -> Iterator[Connection]:
        """One connection and one transaction; database errors become :class:`StoreError`.

        ``what`` names the operation in the message (``append seq 12..511: ...``).
        """
        if self._closed:
            raise StoreError(f"{self.display_url}: {what}: the store is closed")
        try:
            with self._lock, self._engine.connect() as conn:
                if write:
                    conn.execution_options(solvency_write=True)
                with conn.begin():
                    yield conn
        except StoreError:
            raise
        except (SQLAlchemyError, sqlite3.Error) as exc:
            msg = _one_line(exc)
            if self.dialect == "sqlite" and (
                    "malformed" in msg or "not a database" in msg):
                msg = f"not a solvency store / {msg}"
            raise StoreError(f"{self.display_url}: {what}: {msg}") from None

    # -- the log ---------------------------------------------------------------------

    @staticmethod
    def _head(conn: Connection) -> tuple[int, str]:
        r = conn.execute(sa.select(_events.c.seq, _events.c.chain)
                         .order_by(_events.c.seq.desc()).limit(1)).first()
        return (0, GENESIS) if r is None else (int(r[0]), str(r[1]))

    def head(self) -> tuple[int, str]:
        """``(last seq, its chain)``, or ``(0, GENESIS)`` for an empty log."""
        with self._tx(write=False, what="head") as conn:
            return self._head(conn)

    def append(self, rows: Sequence[LogRow]) -> list[LogRow]:
        """Append ``rows`` in one transaction, durable on return; return them chained.

        The rows must carry ``seq = head+1, head+2, ...`` (checked, not assigned: the
        caller applied them to its engine in that order, so a mismatch means two writers
        or a lost write, which must stop the service rather than be papered over). Their
        ``chain`` is ignored and computed here. Event ids must be new (the idempotency
        key of a submitted event).
        """
        rows = list(rows)
        if not rows:
            return []
        for i, r in enumerate(rows):
            if not isinstance(r, LogRow):
                raise StoreError(f"append: item {i} is {type(r).__name__}, not a LogRow")
            if not isinstance(r.event_id, str) or not r.event_id:
                raise StoreError(f"append: log row seq {r.seq}: empty event id")
        span = (f"seq {rows[0].seq}" if len(rows) == 1
                else f"seq {rows[0].seq}..{rows[-1].seq}")
        seen: set[str] = set()
        for r in rows:
            if r.event_id in seen:
                raise StoreError(f"append: log row seq {r.seq}: duplicate event id "
                                 f"{r.event_id!r} in the batch")
            seen.add(r.event_id)
        try:
            return self._append(rows, span)
        except _ClashError:
            self._explain_clash(rows)
            raise

    def _append(self, rows: list[LogRow], span: str) -> list[LogRow]:
        with self._tx(write=True, what=f"append {span}") as conn:
            last, prev = self._head(conn)
            for i, r in enumerate(rows):
                if r.seq != last + 1 + i:
                    raise StoreError(
                        f"append: log row seq {r.seq}: expected seq {last + 1 + i} "
                        f"(the log is gapless; its head is seq {last})")
            out: list[LogRow] = []
            params: list[dict[str, Any]] = []
            for r in rows:
                prev = chain_of(prev, r.seq, r.event_id, r.payload)
                done = LogRow(r.seq, r.event_id, r.type, r.payload, r.received_ms,
                              r.key_id, r.out, prev)
                out.append(done)
                params.append({"seq": r.seq, "event_id": r.event_id, "type": r.type,
                               "payload": r.payload, "received_ms": r.received_ms,
                               "key_id": r.key_id, "out": r.out, "chain": prev})
            try:
                conn.exec_driver_sql(self._insert_sql, params)
            except IntegrityError:
                # raised through the transaction so that it rolls back: SQLite's
                # executemany has already inserted the rows before the clash
                raise _ClashError("append: refused by a unique index") from None
        return out

    def _explain_clash(self, rows: Sequence[LogRow]) -> None:
        """Name the row of a batch the unique index refused (the batch was rolled back).

        Looked up only after the insert failed, so the hot path pays no query for it.
        """
        ids = [r.event_id for r in rows]
        with self._tx(write=False, what="append") as conn:
            for k in range(0, len(ids), _IN_CHUNK):
                hit = conn.execute(
                    sa.select(_events.c.seq, _events.c.event_id)
                    .where(_events.c.event_id.in_(ids[k:k + _IN_CHUNK]))
                    .order_by(_events.c.seq).limit(1)).first()
                if hit is not None:
                    dup = next(r for r in rows if r.event_id == hit[1])
                    raise StoreError(
                        f"append: log row seq {dup.seq}: event id {hit[1]!r} is already "
                        f"in the log at seq {hit[0]}")
            last = self._head(conn)[0]
        raise StoreError(f"append: log row seq {rows[0].seq}: refused by the log's unique "
                         f"index (head is now seq {last}: another writer?)")

    def read(self, after_seq: int, limit: int = 10_000) -> list[LogRow]:
        """Up to ``limit`` rows with ``seq > after_seq``, ascending (``[]`` if limit <= 0)."""
        if limit <= 0:
            return []
        with self._tx(write=False, what=f"read after seq {after_seq}") as conn:
            res = conn.execute(sa.select(*_EVENT_COLS).where(_events.c.seq > after_seq)
                               .order_by(_events.c.seq).limit(limit))
            return [_row(r) for r in res]

    def iter_from(self, after_seq: int, batch: int = 10_000) -> Iterator[LogRow]:
        """Every row after ``after_seq``, ascending, read ``batch`` rows per query.

        Paged by seq rather than one long cursor so that no transaction (and, on SQLite,
        no WAL checkpoint) is held open while the caller replays; rows appended meanwhile
        are included, since each page starts after the last seq seen.
        """
        batch = max(1, int(batch))
        last = after_seq
        while True:
            page = self.read(last, batch)
            yield from page
            if len(page) < batch:
                return
            last = page[-1].seq

    @staticmethod
    def verify_chain(rows: Iterable[LogRow], prev_chain: str) -> None:
        """Check the hash chain of consecutive ``rows`` following a row whose chain is
        ``prev_chain`` (``GENESIS`` before seq 1; :meth:`chain_at` otherwise).

        Raises ``StoreError("log row seq N: chain mismatch (edited or corrupt)")`` at the
        first bad row; the continuation for the next page is the last row's ``chain``.
        """
        prev = prev_chain
        prev_seq: int | None = None
        for r in rows:
            if prev_seq is not None and r.seq != prev_seq + 1:
                raise StoreError(f"log row seq {r.seq}: follows seq {prev_seq} "
                                 "(gap in the log: a row was deleted)")
            if not hmac.compare_digest(chain_of(prev, r.seq, r.event_id, r.payload),
                                       r.chain):
                raise StoreError(f"log row seq {r.seq}: chain mismatch (edited or corrupt)")
            prev, prev_seq = r.chain, r.seq

    def chain_at(self, seq: int) -> str:
        """The chain of log row ``seq`` (``GENESIS`` for 0)."""
        if seq == 0:
            return GENESIS
        with self._tx(write=False, what=f"chain at seq {seq}") as conn:
            c = conn.execute(sa.select(_events.c.chain)
                             .where(_events.c.seq == seq)).scalar_one_or_none()
        if c is None:
            raise StoreError(f"log row seq {seq}: not in the log")
        return str(c)

    def find(self, event_id: str) -> LogRow | None:
        """The row of event ``event_id``, if logged."""
        with self._tx(write=False, what=f"find event {event_id!r}") as conn:
            r = conn.execute(sa.select(*_EVENT_COLS)
                             .where(_events.c.event_id == event_id)).first()
        return None if r is None else _row(r)

    def count(self) -> int:
        """Number of rows in the log."""
        with self._tx(write=False, what="count") as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(_events))
                       .scalar_one())

    # -- snapshots -------------------------------------------------------------------

    def save_snapshot(self, seq: int, state_hash: str, body: Mapping[str, Any],
                      created_ms: int) -> SnapshotInfo:
        """Store the engine state after ``seq`` (replacing one already at that seq).

        Canonical JSON (sorted keys, no spaces) compressed with zlib level 1: snapshots
        are written while the service runs, so speed matters more than the last few
        percent of size. The sha256 of the compressed bytes is kept beside them.
        """
        try:
            text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
            blob = zlib.compress(text.encode("utf-8", "surrogatepass"), 1)
        except (TypeError, ValueError, RecursionError) as exc:
            raise StoreError(f"snapshot at seq {seq}: state is not serializable ({exc})") \
                from None
        digest = hashlib.sha256(blob).hexdigest()
        with self._tx(write=True, what=f"save snapshot at seq {seq}") as conn:
            conn.execute(_snapshots.delete().where(_snapshots.c.seq == seq))
            conn.execute(_snapshots.insert().values(
                seq=seq, state_hash=state_hash, created_ms=created_ms, body=blob,
                body_sha256=digest, size_bytes=len(blob)))
        return SnapshotInfo(seq, state_hash, created_ms, len(blob))

    def snapshots(self) -> list[SnapshotInfo]:
        """Stored snapshots, newest (highest seq) first."""
        with self._tx(write=False, what="list snapshots") as conn:
            res = conn.execute(sa.select(_snapshots.c.seq, _snapshots.c.state_hash,
                                         _snapshots.c.created_ms, _snapshots.c.size_bytes)
                               .order_by(_snapshots.c.seq.desc()))
            return [SnapshotInfo(int(r[0]), r[1], int(r[2]), int(r[3])) for r in res]

    def load_snapshot(self, seq: int) -> dict[str, Any]:
        """The state body stored at ``seq``, checked against its sha256 first."""
        with self._tx(write=False, what=f"load snapshot at seq {seq}") as conn:
            r = conn.execute(sa.select(_snapshots.c.body, _snapshots.c.body_sha256)
                             .where(_snapshots.c.seq == seq)).first()
        if r is None:
            raise StoreError(f"snapshot at seq {seq}: not stored")
        blob = bytes(r[0])
        if not hmac.compare_digest(hashlib.sha256(blob).hexdigest(), str(r[1])):
            raise StoreError(f"snapshot at seq {seq}: checksum mismatch")
        try:
            data = json.loads(zlib.decompress(blob).decode("utf-8", "surrogatepass"))
        except zlib.error as exc:
            raise StoreError(f"snapshot at seq {seq}: cannot decompress ({exc})") from None
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise StoreError(f"snapshot at seq {seq}: body is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise StoreError(f"snapshot at seq {seq}: body is a {type(data).__name__}, "
                             "not an object")
        return data

    def prune_snapshots(self, keep: int = 3) -> None:
        """Delete all but the ``keep`` newest snapshots (the log keeps everything)."""
        if keep < 0:
            raise StoreError(f"prune snapshots: keep must be >= 0, not {keep}")
        with self._tx(write=True, what="prune snapshots") as conn:
            kept = conn.execute(sa.select(_snapshots.c.seq)
                                .order_by(_snapshots.c.seq.desc()).limit(keep)
                                ).scalars().all()
            q = _snapshots.delete()
            if kept:
                q = q.where(_snapshots.c.seq < min(kept))
            conn.execute(q)

    # -- meta ------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A metadata value (venue, engine version, ...), or None."""
        with self._tx(write=False, what=f"get meta {key!r}") as conn:
            v = conn.execute(sa.select(_meta.c.value)
                             .where(_meta.c.key == key)).scalar_one_or_none()
        return None if v is None else str(v)

    def set_meta(self, key: str, value: str) -> None:
        """Set a metadata value (update or insert, in one transaction)."""
        with self._tx(write=True, what=f"set meta {key!r}") as conn:
            res = conn.execute(_meta.update().where(_meta.c.key == key).values(value=value))
            if res.rowcount == 0:
                conn.execute(_meta.insert().values(key=key, value=value))

    # -- API keys --------------------------------------------------------------------

    def create_key(self, scopes: Iterable[str], label: str = "", now_ms: int = 0,
                   token: str | None = None) -> tuple[KeyRecord, str]:
        """A new key with ``scopes``; returns its record and the token (shown once).

        Token ``slv_<8 hex id>_<secret>``; only a salted scrypt hash of the whole token is
        stored, so the database (or a backup of it) never yields a usable key. With
        ``token``, that existing key is registered here (a replica's store accepting the
        writer's key); its id must be free.
        """
        if token is not None and _TOKEN_RE.fullmatch(token) is None:
            raise StoreError("create key: --token is not a key (slv_<8 hex>_<secret>)")
        if isinstance(scopes, str):
            scopes = [scopes]
        wanted = frozenset(scopes)
        bad = sorted(s for s in wanted if s not in SCOPES)
        if bad:
            raise StoreError(f"create key: unknown scope {bad[0]!r} "
                             f"(scopes: {', '.join(SCOPES)})")
        if not wanted:
            raise StoreError(f"create key: give at least one scope ({', '.join(SCOPES)})")
        with self._tx(write=True, what="create key") as conn:
            if token is not None:
                m = _TOKEN_RE.fullmatch(token)
                assert m is not None
                key_id = m.group(1)
                if conn.execute(sa.select(_api_keys.c.id)
                                .where(_api_keys.c.id == key_id)).first() is not None:
                    raise StoreError(f"create key: id {key_id} is taken in this store")
            else:
                for _ in range(20):
                    key_id = secrets.token_hex(4)
                    taken = conn.execute(sa.select(_api_keys.c.id)
                                         .where(_api_keys.c.id == key_id)).first()
                    if taken is None:
                        break
                else:  # pragma: no cover - 2**32 ids
                    raise StoreError("create key: no free key id after 20 draws")
                token = f"slv_{key_id}_{secrets.token_urlsafe(32)}"
            salt = secrets.token_bytes(16)
            conn.execute(_api_keys.insert().values(
                id=key_id, label=label, scopes=",".join(sorted(wanted)), salt=salt.hex(),
                hash=_hash_token(token, salt).hex(), created_ms=now_ms, revoked_ms=None))
        return KeyRecord(key_id, wanted, now_ms, None, label), token

    def verify_key(self, token: str) -> KeyRecord | None:
        """The record of a valid, unrevoked token, else None (malformed tokens included).

        Verified tokens are cached per process under their sha256 (never the token
        itself), so a hot client pays scrypt once per cache period, not per request.
        """
        if not isinstance(token, str):
            return None
        m = _TOKEN_RE.fullmatch(token)
        if m is None:
            return None
        tag = hashlib.sha256(token.encode("ascii")).digest()
        now = time.monotonic()
        with self._key_lock:
            hit = self._key_cache.get(tag)
        if hit is not None and now - hit[0] < self._key_ttl:
            return hit[1]
        with self._tx(write=False, what="verify key") as conn:
            r = conn.execute(sa.select(*_KEY_COLS, _api_keys.c.salt, _api_keys.c.hash)
                             .where(_api_keys.c.id == m.group(1))).first()
        if r is None or r[3] is not None:
            with self._key_lock:
                self._key_cache.pop(tag, None)
            return None
        try:
            salt, stored = bytes.fromhex(r[5]), bytes.fromhex(r[6])
        except ValueError:
            return None
        if not hmac.compare_digest(_hash_token(token, salt), stored):
            return None
        rec = _key(r)
        with self._key_lock:
            self._key_cache[tag] = (now, rec)
        return rec

    def list_keys(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""
        with self._tx(write=False, what="list keys") as conn:
            res = conn.execute(sa.select(*_KEY_COLS)
                               .order_by(_api_keys.c.created_ms, _api_keys.c.id))
            return [_key(r) for r in res]

    def revoke_key(self, key_id: str, now_ms: int) -> KeyRecord:
        """Revoke a key (idempotent: a revoked key keeps its first revocation time)."""
        with self._tx(write=True, what=f"revoke key {key_id!r}") as conn:
            conn.execute(_api_keys.update()
                         .where(_api_keys.c.id == key_id, _api_keys.c.revoked_ms.is_(None))
                         .values(revoked_ms=now_ms))
            r = conn.execute(sa.select(*_KEY_COLS).where(_api_keys.c.id == key_id)).first()
        with self._key_lock:
            for tag in [t for t, (_, rec) in self._key_cache.items() if rec.id == key_id]:
                del self._key_cache[tag]
        if r is None:
            raise StoreError(f"revoke key: no key with id {key_id!r}")
        return _key(r)

    # -- lifetime --------------------------------------------------------------------

    def close(self) -> None:
        """Close every pooled connection (SQLite checkpoints the WAL into the file)."""
        if not self._closed:
            self._closed = True
            with self._key_lock:
                self._key_cache.clear()
            self._engine.dispose()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EventStore({self.display_url!r})"
