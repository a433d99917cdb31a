"""kill -9 recovery and corrupt stores, on SQLite and on PostgreSQL (issue 15).

A real ``solvency serve`` process takes the bundled demo and a seeded workload of more
than 10,000 events in batches; it is killed with SIGKILL at 20 or more random points,
most of them while a batch is in flight. After each restart the client resubmits from its
last acknowledged event (duplicates are expected and answered ``duplicate``). At the end
the service's ``state_hash`` must equal that of an uninterrupted ``solvency replay`` of the
events its log accepted, and every acknowledged event must be in the log at the sequence
number it was acknowledged with.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import threading
import uuid
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from solvency.adapters.store import EventStore
from solvency.cli.main import app
from solvency.core.model.events import json_object
from solvency.service.core import RiskService, ServiceConfig, parse_items
from tests.integration.service.server import ServerProcess, make_keys
from tests.integration.service.workload import workload
from tests.postgres import fresh_database

DEMO = [ln for ln in resources.files("solvency.data").joinpath("demo_events.jsonl")
        .read_text().splitlines() if ln.strip() and not ln.startswith("#")]

KILLS = 22


def _sqlite(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'kill.db'}"


def submit_with_kills(srv: ServerProcess, key: str, lines: list[str], *, seed: int,
                      kills: int) -> tuple[dict[str, int], dict[str, int]]:
    """Post ``lines`` in random batches while SIGKILLing the server at random moments;
    returns ``({event id: acknowledged seq}, counters)``."""
    rng = random.Random(seed)
    acked: dict[str, int] = {}
    stats = {"kills": 0, "in_flight": 0, "duplicates": 0, "batches": 0}
    # kill before these batch numbers (spread over the run), after a random delay
    n_batches = max(2 * kills, len(lines) // 150)
    plan = sorted(rng.sample(range(1, n_batches), kills))
    pos = 0
    batch_no = 0
    client = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}"},
                          timeout=60)
    while pos < len(lines):
        size = rng.randrange(1, 300)
        chunk = lines[pos:pos + size]
        timer: threading.Timer | None = None
        if plan and batch_no >= plan[0]:
            plan.pop(0)
            timer = threading.Timer(rng.uniform(0.0, 0.03), srv.kill9)
            timer.start()
        batch_no += 1
        try:
            r = client.post("/v1/events", content="\n".join(chunk))
        except httpx.HTTPError:
            r = None
        if timer is not None:
            timer.join()
            stats["kills"] += 1
            if r is None:
                stats["in_flight"] += 1
        if r is None:
            srv.kill9()
            srv.start()
            client.close()
            client = httpx.Client(base_url=srv.url,
                                  headers={"Authorization": f"Bearer {key}"}, timeout=60)
            continue  # resubmit from the last acknowledged batch
        assert r.status_code in (200, 422), r.text
        stats["batches"] += 1
        for res in r.json()["results"]:
            if res["status"] == "accepted":
                assert res["id"] not in acked
                acked[res["id"]] = res["seq"]
            elif res["status"] == "duplicate":
                stats["duplicates"] += 1
                if res["id"] in acked:
                    assert acked[res["id"]] == res["seq"]
                else:  # committed, but its answer died with the server
                    acked[res["id"]] = res["seq"]
        pos += size
    client.close()
    return acked, stats


def replayed_hash(db: str, tmp: Path) -> str:
    """``solvency replay --json`` of the events in the log, in sequence order."""
    path = tmp / "accepted.jsonl"
    with EventStore(db) as store, path.open("w") as fh:
        for row in store.iter_from(0):
            fh.write(row.payload + "\n")
    res = CliRunner().invoke(app, ["replay", str(path), "--venue", "binance", "--json",
                                   "--strict"])
    assert res.exit_code == 0, res.output
    return str(json.loads(res.stdout)["state_hash"])


def run_kill9(db: str, tmp: Path) -> None:
    keys = make_keys(db)
    srv = ServerProcess(db, tmp, args=("--snapshot-every", "1500"))
    srv.start()
    try:
        # the workload starts an hour after the demo's last event
        lines = DEMO + workload(7, 10_500, start_ms=1_774_602_000_000)
        acked, stats = submit_with_kills(srv, keys["govern"], lines, seed=11, kills=KILLS)
        assert stats["kills"] >= 20 and stats["in_flight"] >= 5, stats
        assert stats["duplicates"] > 0, stats
        assert len(acked) > 9_000, (len(acked), stats)  # most of the workload applies
        state = httpx.get(srv.url + "/v1/state",
                          headers={"Authorization": f"Bearer {keys['read']}"}, timeout=30).json()
        assert state["conserved"] is True
        assert state["liquidations"] > 0 and state["adl"] > 0, state  # the crash bit
        assert srv.stop() == 0
    finally:
        srv.kill9()
    with EventStore(db) as store:
        head, _ = store.head()
        assert head == state["seq"] == len(acked)
        for event_id, seq in acked.items():
            row = store.find(event_id)
            assert row is not None and row.seq == seq, event_id
        assert store.snapshots(), "a clean shutdown leaves a snapshot"
    assert replayed_hash(db, tmp) == state["state_hash"]
    # and a restart from the shutdown snapshot serves the same state
    srv.start()
    try:
        again = httpx.get(srv.url + "/v1/state",
                          headers={"Authorization": f"Bearer {keys['read']}"}, timeout=30).json()
        assert again["state_hash"] == state["state_hash"] and again["seq"] == state["seq"]
    finally:
        srv.stop()


@pytest.mark.slow
def test_kill9_recovery_sqlite(tmp_path: Path) -> None:
    run_kill9(_sqlite(tmp_path), tmp_path)


@pytest.mark.slow
def test_kill9_recovery_postgresql(tmp_path: Path, postgres_url: str) -> None:
    run_kill9(fresh_database(postgres_url, f"kill9_{uuid.uuid4().hex[:8]}"), tmp_path)


# ---------------------------------------------------------------- corrupt stores


def _seeded_store(db: str, tmp: Path, *, snapshot_every: int = 60) -> tuple[dict, str]:
    """A store with the demo log in four commit groups, a snapshot every
    ``snapshot_every`` events and one at the clean shutdown. Built in process (the
    service's own RiskService, no HTTP): the refusals below are what is under test."""
    keys = make_keys(db)
    svc = RiskService(ServiceConfig(db=db, venue="binance", snapshot_every=snapshot_every))
    svc.start()
    for i in range(0, len(DEMO), 40):
        res = svc.submit(parse_items([json_object(ln) for ln in DEMO[i:i + 40]]),
                         None).result(timeout=60)
        assert {r.status for r in res} <= {"accepted", "rejected", "duplicate"}
    good = svc.read(svc.engine.state_hash).result(timeout=60)
    svc.stop()
    return keys, good


def _start_expect_refusal(db: str, tmp: Path, *needles: str) -> str:
    srv = ServerProcess(db, tmp, venue=None)
    srv.start(wait=False)
    code = srv.wait_exit(120)
    log = srv.log()
    assert code != 0, log
    for needle in needles:
        assert needle in log, log
    assert "Traceback" not in log.split("==== start")[-1], log
    return log


def _served_hash(db: str, tmp: Path, keys: dict) -> tuple[str, str]:
    """Start a service on the store (in process) and return its state hash and what its
    recovery said."""
    svc = RiskService(ServiceConfig(db=db))
    svc.start()
    try:
        return svc.read(svc.engine.state_hash).result(timeout=60), svc.recovery_note
    finally:
        svc.stop(snapshot=False)


def _sql(db: str) -> Callable[[str, tuple], None]:
    def run(sql: str, args: tuple = ()) -> None:
        if db.startswith("sqlite"):
            con = sqlite3.connect(db.removeprefix("sqlite:///"))
            con.execute(sql.replace("%s", "?"), args)
            con.commit()
            con.close()
        else:
            import psycopg

            with psycopg.connect(db.replace("postgresql+psycopg", "postgresql")) as con:
                con.execute(sql, args)  # type: ignore[arg-type]
    return run


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        yield _sqlite(tmp_path)
    else:
        yield fresh_database(request.getfixturevalue("postgres_url"),
                             f"corrupt_{uuid.uuid4().hex[:8]}")


def test_a_snapshot_that_does_not_hash_falls_back_and_says_so(store_url: str,
                                                              tmp_path: Path) -> None:
    keys, good = _seeded_store(store_url, tmp_path)
    with EventStore(store_url) as store:
        newest = store.snapshots()[0]
        body = store.load_snapshot(newest.seq)
    body["engine"]["clock_ms"] += 1  # a well-formed snapshot of another state
    _sql(store_url)("DELETE FROM snapshots WHERE seq = %s", (newest.seq,))
    with EventStore(store_url) as store:  # stored with a valid checksum, the old hash
        store.save_snapshot(newest.seq, newest.state_hash, body, 0)
    got, note = _served_hash(store_url, tmp_path, keys)
    assert got == good
    assert f"snapshot at seq {newest.seq}" in note and "falling back" in note
    # the recovery names what diverged: the clock is in the sequence section
    assert "sections differing: sequence" in note, note


def test_a_snapshot_with_bad_bytes_falls_back(store_url: str, tmp_path: Path) -> None:
    keys, good = _seeded_store(store_url, tmp_path)
    with EventStore(store_url) as store:
        newest = store.snapshots()[0]
    _sql(store_url)("UPDATE snapshots SET body_sha256 = %s WHERE seq = %s",
                    ("0" * 64, newest.seq))
    got, note = _served_hash(store_url, tmp_path, keys)
    assert got == good and "checksum" in note


def test_a_log_row_edited_by_hand_is_refused(store_url: str, tmp_path: Path) -> None:
    _seeded_store(store_url, tmp_path, snapshot_every=1_000_000)
    with EventStore(store_url) as store:
        row = store.read(100, limit=1)[0]
    obj = json.loads(row.payload)
    for field in ("amount", "price", "size", "rate"):
        if field in obj:
            obj[field] = "1"
            break
    else:
        obj["ts"] = obj["ts"]
    edited = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    # drop the shutdown snapshot so that the edited row must be replayed
    _sql(store_url)("DELETE FROM snapshots", ())
    _sql(store_url)("UPDATE events SET payload = %s WHERE seq = %s", (edited, row.seq))
    _start_expect_refusal(store_url, tmp_path, f"seq {row.seq}", "chain")


def test_a_truncated_sqlite_file_is_refused(tmp_path: Path) -> None:
    db = _sqlite(tmp_path)
    _seeded_store(db, tmp_path)
    path = Path(db.removeprefix("sqlite:///"))
    for extra in ("-wal", "-shm"):
        Path(str(path) + extra).unlink(missing_ok=True)
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.truncate(size // 2)
    _start_expect_refusal(db, tmp_path, "error")


def test_a_different_venue_is_refused(tmp_path: Path) -> None:
    db = _sqlite(tmp_path)
    _seeded_store(db, tmp_path)
    srv = ServerProcess(db, tmp_path, venue="dydx", full_cli=True)  # the real command
    srv.start(wait=False)
    assert srv.wait_exit(120) != 0
    assert "differs" in srv.log()


def test_sigterm_snapshots_and_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db = _sqlite(tmp_path)
    keys = make_keys(db)
    srv = ServerProcess(db, tmp_path, args=("--snapshot-every", "0"))
    srv.start()
    r = httpx.post(srv.url + "/v1/events", content="\n".join(DEMO[:50]),
                   headers={"Authorization": f"Bearer {keys['govern']}"}, timeout=30)
    seq = r.json()["seq"]
    os.kill(srv.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
    srv.proc.wait()  # type: ignore[union-attr]
    with EventStore(db) as store:
        assert store.head()[0] == seq and not store.snapshots()
    srv.start()
    assert srv.stop() == 0
    with EventStore(db) as store:
        assert [s.seq for s in store.snapshots()] == [seq]
