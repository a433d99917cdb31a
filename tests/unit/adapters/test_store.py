"""The durable store (solvency.adapters.store) on SQLite and on a real PostgreSQL server.

Every behaviour the live service relies on is checked on both backends: the PostgreSQL
server is a throwaway cluster (tests/postgres.py) that CI installs, so these tests fail
there rather than skip when it is missing.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from solvency.adapters.store import (
    GENESIS,
    METADATA,
    EventStore,
    LogRow,
    StoreError,
    chain_of,
)
from tests.postgres import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to an empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    server = request.getfixturevalue("postgres_url")
    return fresh_database(server, f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(url: str) -> Iterator[EventStore]:
    s = EventStore(url)
    yield s
    s.close()


def rows(first: int, n: int, prefix: str = "e") -> list[LogRow]:
    return [LogRow(seq=s, event_id=f"{prefix}{s}", type="price",
                   payload=f'{{"id":"{prefix}{s}","price":"{100 + s}","type":"price"}}',
                   received_ms=1_700_000_000_000 + s, key_id=None if s % 2 else "abcd1234",
                   out='[{"type":"ack"}]', chain="")
            for s in range(first, first + n)]


def raw(url: str, sql: str, **params: object) -> list[tuple[object, ...]]:
    """Run SQL outside the store (the tamperer's view), committing."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            res = conn.execute(sa.text(sql), params)
            return [tuple(r) for r in res] if res.returns_rows else []
    finally:
        engine.dispose()


# -- the log --------------------------------------------------------------------------


def test_append_read_head_iter(store: EventStore) -> None:
    assert store.head() == (0, GENESIS)
    assert store.count() == 0
    assert store.read(0) == []
    done = store.append(rows(1, 25))
    assert [r.seq for r in done] == list(range(1, 26))
    assert all(len(r.chain) == 64 for r in done)
    done += store.append(rows(26, 1))
    assert store.head() == (26, done[-1].chain)
    assert store.count() == 26
    assert store.read(0) == done
    assert store.read(10, limit=5) == done[10:15]
    assert store.read(26) == []
    assert store.read(0, limit=0) == []
    assert list(store.iter_from(0, batch=7)) == done
    assert list(store.iter_from(20, batch=3)) == done[20:]
    assert list(store.iter_from(0, batch=26)) == done  # exact multiple of the page
    assert store.find("e7") == done[6]
    assert store.find("nope") is None
    assert store.append([]) == []
    # key_id None and a value round-trip
    assert done[0].key_id is None and done[1].key_id == "abcd1234"


def test_chain_is_computed_and_verifiable(store: EventStore) -> None:
    done = store.append(rows(1, 10))
    prev = GENESIS
    for r in done:
        assert r.chain == hashlib.sha256(
            f"{prev}\n{r.seq}\n{r.event_id}\n{r.payload}".encode()).hexdigest()
        prev = r.chain
    assert store.chain_at(0) == GENESIS
    assert store.chain_at(4) == done[3].chain
    with pytest.raises(StoreError, match="seq 11: not in the log"):
        store.chain_at(11)
    # pages verify with the previous page's last chain
    store.verify_chain(store.read(0, 4), GENESIS)
    store.verify_chain(store.read(4), store.chain_at(4))
    # the caller's chain is ignored: the store computes it
    more = store.append([LogRow(11, "x", "t", "{}", 0, None, "[]", "f" * 64)])
    assert more[0].chain == chain_of(done[-1].chain, 11, "x", "{}")


def test_verify_chain_names_an_edited_row(store: EventStore, url: str) -> None:
    store.append(rows(1, 10))
    raw(url, "UPDATE events SET payload = :p WHERE seq = 6", p='{"price":"1"}')
    with pytest.raises(StoreError, match=r"^log row seq 6: chain mismatch \(edited or corrupt\)$"):
        store.verify_chain(store.iter_from(0), GENESIS)
    # a deleted row is named too
    raw(url, "DELETE FROM events WHERE seq = 3")
    with pytest.raises(StoreError, match="log row seq 4: follows seq 2"):
        store.verify_chain(store.read(0), GENESIS)


def test_gapless_seq_is_enforced(store: EventStore) -> None:
    store.append(rows(1, 3))
    with pytest.raises(StoreError, match="seq 5: expected seq 4"):
        store.append(rows(5, 2))
    with pytest.raises(StoreError, match="seq 3: expected seq 4"):
        store.append(rows(3, 2, prefix="x"))
    gap = rows(4, 3)
    del gap[1]
    with pytest.raises(StoreError, match="seq 6: expected seq 5"):
        store.append(gap)
    assert store.count() == 3  # nothing of a refused batch is written
    store.append(rows(4, 1))
    assert store.head()[0] == 4


def test_duplicate_event_id(store: EventStore) -> None:
    store.append(rows(1, 5))
    batch = rows(6, 3)
    batch[2] = LogRow(8, "e2", "price", "{}", 0, None, "[]", "")
    with pytest.raises(StoreError, match="seq 8: event id 'e2' is already in the log at seq 2"):
        store.append(batch)
    batch = [*rows(6, 2), LogRow(8, "e6", "price", "{}", 0, None, "[]", "")]
    with pytest.raises(StoreError, match=r"seq 8: duplicate event id 'e6' in the batch"):
        store.append(batch)
    assert store.count() == 5
    with pytest.raises(StoreError, match="empty event id"):
        store.append([LogRow(6, "", "price", "{}", 0, None, "[]", "")])


def test_reads_from_threads_while_writing(store: EventStore) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                got = store.read(0)
                assert [r.seq for r in got] == list(range(1, len(got) + 1))
                store.find("e1")
                store.head()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for k in range(20):
            store.append(rows(1 + 10 * k, 10))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert store.count() == 200


# -- snapshots and meta ---------------------------------------------------------------


def test_snapshot_roundtrip_and_prune(store: EventStore) -> None:
    body = {"accounts": {"a1": {"USDT": "12.5"}}, "seq": 10, "n": [1, 2.5, None], "z": "é"}
    info = store.save_snapshot(10, "h10", body, created_ms=123)
    assert info.seq == 10 and info.state_hash == "h10" and info.created_ms == 123
    assert info.size_bytes > 0
    assert store.load_snapshot(10) == body
    for seq in (20, 30, 40):
        store.save_snapshot(seq, f"h{seq}", {"seq": seq}, created_ms=seq)
    store.save_snapshot(30, "h30b", {"seq": 31}, created_ms=31)  # replaces seq 30
    assert [s.seq for s in store.snapshots()] == [40, 30, 20, 10]
    assert store.load_snapshot(30) == {"seq": 31}
    assert store.snapshots()[1].state_hash == "h30b"
    store.prune_snapshots(keep=2)
    assert [s.seq for s in store.snapshots()] == [40, 30]
    with pytest.raises(StoreError, match="snapshot at seq 10: not stored"):
        store.load_snapshot(10)
    store.prune_snapshots(keep=0)
    assert store.snapshots() == []


def test_snapshot_corruption_is_detected(store: EventStore, url: str) -> None:
    store.save_snapshot(5, "h", {"x": list(range(100))}, created_ms=0)
    raw(url, "UPDATE snapshots SET body = :b WHERE seq = 5", b=b"\x78\x01garbage")
    with pytest.raises(StoreError, match=r"^snapshot at seq 5: checksum mismatch$"):
        store.load_snapshot(5)
    # consistent checksum over bytes that are not zlib: still a clean error
    bad = b"not zlib at all"
    raw(url, "UPDATE snapshots SET body = :b, body_sha256 = :h WHERE seq = 5", b=bad,
        h=hashlib.sha256(bad).hexdigest())
    with pytest.raises(StoreError, match="snapshot at seq 5: cannot decompress"):
        store.load_snapshot(5)


def test_meta(store: EventStore) -> None:
    assert store.get_meta("venue") is None
    store.set_meta("venue", "binance")
    store.set_meta("venue", "okx")
    store.set_meta("engine", "1")
    assert store.get_meta("venue") == "okx" and store.get_meta("engine") == "1"


# -- API keys -------------------------------------------------------------------------


def test_keys_create_verify_revoke_list(store: EventStore) -> None:
    rec, token = store.create_key(["submit", "read"], label="desk A", now_ms=1000)
    assert token.startswith(f"slv_{rec.id}_")
    assert len(rec.id) == 8 and int(rec.id, 16) >= 0
    assert rec.scopes == frozenset({"read", "submit"}) and rec.label == "desk A"
    assert store.verify_key(token) == rec
    assert store.verify_key(token) == rec  # cached path
    rec2, token2 = store.create_key(["govern"], now_ms=2000)
    assert store.list_keys() == [rec, rec2]
    revoked = store.revoke_key(rec.id, now_ms=3000)
    assert revoked.revoked_ms == 3000
    assert store.verify_key(token) is None  # the cache is dropped on revoke
    assert store.revoke_key(rec.id, now_ms=4000).revoked_ms == 3000  # idempotent
    assert store.verify_key(token2) == rec2
    assert [k.revoked_ms for k in store.list_keys()] == [3000, None]
    with pytest.raises(StoreError, match="unknown scope 'admin'"):
        store.create_key(["read", "admin"])
    with pytest.raises(StoreError, match="at least one scope"):
        store.create_key([])
    with pytest.raises(StoreError, match="no key with id 'ffffffff'"):
        store.revoke_key("ffffffff", now_ms=1)


def test_wrong_and_malformed_tokens(store: EventStore) -> None:
    rec, token = store.create_key(["read"])
    secret = token.split("_", 2)[2]
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for bad in (f"slv_{rec.id}_{flipped}", f"slv_00000000_{secret}", "", "slv_", "Bearer x",
                token + " ", token.upper(), f"slv_{rec.id}_{secret}!", token[:-30],
                f"slv_ABCDEF12_{secret}", "slv_" + "é" * 60):
        assert store.verify_key(bad) is None, bad
    assert store.verify_key(token) == rec


def test_key_is_never_stored_in_clear(store: EventStore, url: str, tmp_path: Path) -> None:
    _, token = store.create_key(["read", "submit"], label="ops")
    secret = token.split("_", 2)[2]
    dump = "\n".join(repr(raw(url, f"SELECT * FROM {t}")) for t in
                     ("api_keys", "meta", "events", "snapshots"))
    assert secret not in dump and token not in dump
    if store.dialect == "sqlite":
        store.close()
        for f in tmp_path.glob("store.db*"):
            assert secret.encode() not in f.read_bytes()


def test_revoked_key_never_verifies_from_another_process_view(url: str) -> None:
    a = EventStore(url, key_cache_ttl_s=0.0)
    b = EventStore(url)
    try:
        rec, token = a.create_key(["read"])
        assert a.verify_key(token) == rec
        b.revoke_key(rec.id, now_ms=5)  # another process: a has no cache to drop
        assert a.verify_key(token) is None
    finally:
        a.close()
        b.close()


# -- opening, migrations, bad files ---------------------------------------------------


def test_migrations_idempotent_and_recorded(url: str) -> None:
    s1 = EventStore(url)
    s1.append(rows(1, 3))
    s1.close()
    s2 = EventStore(url)  # second open: upgrade head is a no-op, data intact
    assert s2.count() == 3
    s2.close()
    assert raw(url, "SELECT version_num FROM alembic_version") == [("0001",)]
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), METADATA)
    finally:
        engine.dispose()
    assert diff == []  # store.py's tables are exactly what the migration creates


def test_closed_store_refuses(url: str) -> None:
    s = EventStore(url)
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.head()


def test_foreign_database_refused(url: str) -> None:
    raw(url, "CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    with pytest.raises(StoreError, match=r"not a solvency store .*orders"):
        EventStore(url)


def test_newer_schema_refused(url: str) -> None:
    EventStore(url).close()
    raw(url, "UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="revision 9999 is not known"):
        EventStore(url)


def test_postgres_errors_are_one_line_and_masked(postgres_url: str) -> None:
    password = sa.make_url(postgres_url).password
    assert password
    with pytest.raises(StoreError) as err:
        EventStore(postgres_url.rsplit("/", 1)[0] + "/no_such_db")
    msg = str(err.value)
    assert password not in msg and "***" in msg and "no_such_db" in msg
    assert "\n" not in msg


def test_sqlite_text_file_refused(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("these are not the events you are looking for\n" * 200)
    with pytest.raises(StoreError, match=r"notes.txt: not a solvency store / file is not a "
                                         r"database"):
        EventStore(f"sqlite:///{f}")


def test_sqlite_truncated_file_refused(tmp_path: Path) -> None:
    f = tmp_path / "store.db"
    s = EventStore(f"sqlite:///{f}")
    for k in range(4):
        s.append(rows(1 + 500 * k, 500))
    s.save_snapshot(2000, "h", {"blob": "x" * 50_000}, created_ms=0)
    s.close()
    assert not Path(f"{f}-wal").exists() or Path(f"{f}-wal").stat().st_size == 0
    size = f.stat().st_size
    with f.open("r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(StoreError, match=r"store.db: not a solvency store / database disk "
                                         r"image is malformed"):
        EventStore(f"sqlite:///{f}")


def test_sqlite_missing_directory_and_bad_urls(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        EventStore(f"sqlite:///{tmp_path / 'no' / 'store.db'}")
    with pytest.raises(StoreError, match="cannot open: unable to open database file"):
        EventStore(f"sqlite:///{tmp_path}")  # a directory
    with pytest.raises(StoreError, match="unsupported database 'mysql'"):
        EventStore("mysql://u:p@h/db")
    with pytest.raises(StoreError, match="not a database URL"):
        EventStore("not a url")


def test_sqlite_pragmas(tmp_path: Path) -> None:
    s = EventStore(f"sqlite:///{tmp_path / 's.db'}")
    try:
        with s._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        s.close()


def test_sqlite_in_memory(tmp_path: Path) -> None:
    s = EventStore("sqlite://")
    try:
        s.append(rows(1, 3))
        assert s.count() == 3
    finally:
        s.close()
