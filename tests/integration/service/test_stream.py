"""``WS /v1/stream`` against a real server (issue 15): a client that connects at sequence
N receives exactly the logged out-events after N, in order, across a server restart; a
client that falls behind is closed with 4008 and resumes; a bad key is refused with a
code that says so."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from solvency.adapters.store import EventStore
from solvency.client import Client
from tests.integration.service.server import ServerProcess, make_keys

DEMO = [ln for ln in resources.files("solvency.data").joinpath("demo_events.jsonl")
        .read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def logged_frames(db: str, after: int) -> list[tuple[int, str, list]]:
    """What the stream must send after ``after``: the log's non-empty out-events."""
    with EventStore(db) as store:
        return [(r.seq, r.event_id, json.loads(r.out)) for r in store.iter_from(after)
                if r.out != "[]"]


def read_until(ws_url: str, key: str, head: int) -> Iterator[dict]:
    with connect(ws_url, additional_headers={"Authorization": f"Bearer {key}"},
                 open_timeout=10, max_size=None) as ws:
        while True:
            frame = json.loads(ws.recv(timeout=10))
            yield frame
            if frame["seq"] >= head:
                return


def post(srv: ServerProcess, key: str, lines: list[str]) -> int:
    r = httpx.post(srv.url + "/v1/events", content="\n".join(lines),
                   headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert r.status_code == 200, r.text
    return int(r.json()["seq"])


def test_from_seq_exactly_the_out_events_after_n_across_a_restart(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    keys = make_keys(db)
    srv = ServerProcess(db, tmp_path)
    srv.start()
    try:
        head1 = post(srv, keys["govern"], DEMO[:70])
        n = 25
        ws_url = srv.url.replace("http", "ws") + f"/v1/stream?from_seq={n}"
        got = [(f["seq"], f["event"], f["out"]) for f in read_until(ws_url, keys["read"],
                                                                     logged_frames(db, 0)[-1][0])]
        assert got == logged_frames(db, n) and got and got[0][0] > n
        last = got[-1][0]
        assert srv.stop() == 0
        srv.start()
        head2 = post(srv, keys["govern"], DEMO[70:])
        assert head2 > head1
        ws_url = srv.url.replace("http", "ws") + f"/v1/stream?from_seq={last}"
        rest = [(f["seq"], f["event"], f["out"]) for f in read_until(
            ws_url, keys["read"], logged_frames(db, 0)[-1][0])]
        assert rest == logged_frames(db, last)
        assert got + rest == logged_frames(db, n)  # in order, none missing, none twice
        # live: a client connected now gets the next commit's out-events as they happen
        with Client(srv.url, keys["read"]) as c:
            frames = c.stream(from_seq=c.state()["seq"], timeout=10)
            price = {"type": "price", "id": "live1", "ts": "2026-03-28T00:00:00Z",
                     "market": "BTC-PERP", "price": "81000"}
            with Client(srv.url, keys["submit"]) as sub:
                seq = sub.submit(price)["results"][0]["seq"]
            frame = next(frames)
            assert frame["seq"] == seq and frame["event"] == "live1"
            frames.close()
    finally:
        srv.stop()


def test_a_client_that_falls_behind_is_closed_4008_and_resumes(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'b.db'}"
    keys = make_keys(db)
    srv = ServerProcess(db, tmp_path, args=("--stream-buffer", "3"))
    srv.start()
    try:
        ws_url = srv.url.replace("http", "ws") + "/v1/stream?from_seq=0"
        with connect(ws_url, additional_headers={"Authorization": f"Bearer {keys['read']}"},
                     open_timeout=10) as ws:
            post(srv, keys["govern"], DEMO)  # one commit with far more than 3 frames
            seen = []
            with pytest.raises(ConnectionClosed) as exc:
                while True:
                    seen.append(json.loads(ws.recv(timeout=10))["seq"])
            assert exc.value.rcvd is not None and exc.value.rcvd.code == 4008
            resume = exc.value.rcvd.reason.rsplit("=", 1)[1]
            assert int(resume) == (seen[-1] if seen else 0)
        # resuming from there delivers the rest (catch-up from the log is not buffered)
        head = logged_frames(db, 0)[-1][0]
        ws_url = srv.url.replace("http", "ws") + f"/v1/stream?from_seq={resume}"
        rest = [f["seq"] for f in read_until(ws_url, keys["read"], head)]
        assert seen + rest == [s for s, _, _ in logged_frames(db, 0)]
    finally:
        srv.stop()


def test_stream_refuses_bad_keys_with_a_code(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'k.db'}"
    make_keys(db)
    with EventStore(db) as store:
        _, submit_only = store.create_key(["submit"])
    srv = ServerProcess(db, tmp_path)
    srv.start()
    try:
        base = srv.url.replace("http", "ws") + "/v1/stream"
        for headers, code in (({}, 4401), ({"Authorization": "Bearer nope"}, 4401),
                              ({"Authorization": f"Bearer {submit_only}"}, 4401)):
            with connect(base, additional_headers=headers, open_timeout=10) as ws:
                with pytest.raises(ConnectionClosed) as exc:
                    ws.recv(timeout=10)
                assert exc.value.rcvd is not None and exc.value.rcvd.code == code
        with connect(base + "?from_seq=abc",
                     additional_headers={"Authorization": f"Bearer {make_keys(db)['read']}"},
                     open_timeout=10) as ws, pytest.raises(ConnectionClosed) as exc:
            ws.recv(timeout=10)
        assert exc.value.rcvd is not None and exc.value.rcvd.code == 4400
    finally:
        srv.stop()
