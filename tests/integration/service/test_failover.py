"""Hot replicas on NATS JetStream (issue 16): a 3-node NATS cluster and two solvency
processes on 127.0.0.1. The writer is killed with SIGKILL at random points while a client
sends 10,000+ events; the replica takes the writer lease and goes on; the killed process
comes back as a follower. At the end: no acknowledged event is lost, none is applied
twice, both processes hold the same ``state_hash`` at the same sequence number, equal to
an uninterrupted ``solvency replay`` of the stream's events. Fail-over times are printed.
"""

from __future__ import annotations

import json
import random
import threading
import time
from importlib import resources
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from solvency.adapters.store import EventStore
from solvency.cli.main import app
from tests.integration.service.server import ServerProcess
from tests.integration.service.workload import workload

DEMO = [ln for ln in resources.files("solvency.data").joinpath("demo_events.jsonl")
        .read_text().splitlines() if ln.strip() and not ln.startswith("#")]
KILLS = 4


def ready(srv: ServerProcess) -> dict | None:
    try:
        r = httpx.get(srv.url + "/readyz", timeout=2)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def writer_of(servers: list[ServerProcess], timeout: float = 60.0) -> ServerProcess:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for srv in servers:
            info = ready(srv)
            if info is not None and info.get("role") == "writer":
                return srv
        time.sleep(0.05)
    raise AssertionError("no writer: " + "\n".join(s.log()[-3000:] for s in servers))


@pytest.mark.slow
def test_writer_killed_replica_takes_over(tmp_path: Path, nats_cluster: str) -> None:
    dbs = [f"sqlite:///{tmp_path / f'node{i}.db'}" for i in range(2)]
    with EventStore(dbs[0]) as store:
        _, key = store.create_key(["read", "submit", "govern"])
    with EventStore(dbs[1]) as store:
        store.create_key(["read", "submit", "govern"], token=key)  # the same key on both
    args = ("--stream", nats_cluster, "--stream-name", "failover", "--stream-replicas", "3",
            "--lease-ttl", "1.5", "--snapshot-every", "2000")
    servers = []
    for i, db in enumerate(dbs):
        (tmp_path / f"n{i}").mkdir()
        servers.append(ServerProcess(db, tmp_path / f"n{i}", args=args))
    servers[0].start()
    writer_of(servers[:1])
    servers[1].start()
    lines = DEMO + workload(3, 10_200, start_ms=1_774_602_000_000)
    rng = random.Random(5)
    kill_at = sorted(rng.sample(range(5, len(lines) // 150), KILLS))
    acked: dict[str, int] = {}
    failovers: list[float] = []
    pos, batch_no = 0, 0
    headers = {"Authorization": f"Bearer {key}"}
    try:
        while pos < len(lines):
            current = writer_of(servers)
            size = rng.randrange(1, 300)
            timer = None
            if kill_at and batch_no >= kill_at[0]:
                kill_at.pop(0)
                timer = threading.Timer(rng.uniform(0.0, 0.02), current.kill9)
                timer.start()
            batch_no += 1
            try:
                r = httpx.post(current.url + "/v1/events", headers=headers, timeout=60,
                               content="\n".join(lines[pos:pos + size]))
            except httpx.HTTPError:
                r = None
            if timer is not None:
                timer.join()
                killed_at = time.monotonic()
                other = next(s for s in servers if s is not current)
                assert writer_of([other]) is other
                failovers.append(time.monotonic() - killed_at)
                current.start()  # back as a follower
                continue
            if r is None or r.status_code == 503:
                time.sleep(0.05)
                continue  # resubmit from the last acknowledged batch to the writer
            assert r.status_code in (200, 422), r.text
            for res in r.json()["results"]:
                if res["status"] in ("accepted", "duplicate"):
                    assert acked.setdefault(res["id"], res["seq"]) == res["seq"], res
            pos += size
        head = max(acked.values())
        # both processes level with the stream, same state
        hashes = {}
        deadline = time.monotonic() + 60
        for srv in servers:
            while True:
                info = ready(srv)
                if info is not None and info["seq"] == head and info["lag"] == 0:
                    break
                assert time.monotonic() < deadline, srv.log()[-3000:]
                time.sleep(0.05)
            st = httpx.get(srv.url + "/v1/state", headers=headers, timeout=30).json()
            assert st["conserved"] is True and st["seq"] == head
            hashes[srv.url] = st["state_hash"]
        assert len(set(hashes.values())) == 1, hashes
        assert len(failovers) == KILLS
        print(f"fail-over times (s): {', '.join(f'{t:.2f}' for t in failovers)}")
    finally:
        for srv in servers:
            srv.stop()
    # every acknowledged event in each store's log at its seq; none twice (ids unique)
    for db in dbs:
        with EventStore(db) as store:
            assert store.head()[0] == head == len(acked)
            for event_id, seq in acked.items():
                row = store.find(event_id)
                assert row is not None and row.seq == seq
    path = tmp_path / "accepted.jsonl"
    with EventStore(dbs[0]) as store, path.open("w") as fh:
        for row in store.iter_from(0):
            fh.write(row.payload + "\n")
    res = CliRunner().invoke(app, ["replay", str(path), "--venue", "binance", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["state_hash"] == next(iter(hashes.values()))
