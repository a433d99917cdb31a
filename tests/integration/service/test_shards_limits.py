"""Shard processes under NATS's limits (issue 16, service/shard_node.py): a message over
the server's ``max_payload`` goes in parts and is put back together, and a shard that
waits for another shard's message stops with an error naming it within its deadline,
never hangs.

The server here is a real single-node ``nats-server`` started with ``max_payload`` 4 KiB
(1 MiB by default, where a shard of ~700 accounts reached it with its whole state): the
demo's states before its venue-wide events are ~11 KB a shard, so every one of them, and
every snapshot asked of a shard, crosses the limit. Before the parts, a publish over the
limit failed in a background future and every shard waited for its state for ever.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from solvency.cli.shard import shard_app
from solvency.core.model.presets import load_preset
from solvency.engine.engine import Engine
from solvency.engine.inputs import parse_input
from solvency.service.shard_node import Parts, ShardFeed, ShardNode, ShardStreamError
from solvency.service.shards import ShardedEngine, venue_summary
from tests.conftest import missing
from tests.integration.service.test_shards_nats import _compared, _objs, _wait_up

LIMIT = 4096
PRICE = {"type": "price", "id": "p1", "ts": "2026-03-26T08:01:00Z", "market": "BTC-PERP",
         "price": "84000.0"}


@pytest.fixture(scope="module")
def small_nats() -> Iterator[str]:
    """One JetStream server whose messages are at most 4 KiB."""
    from tests.nats import NatsUnavailable, nats_binary, running_nats

    try:
        nats_binary()
    except NatsUnavailable as exc:
        missing(str(exc))
    with running_nats(1, max_payload=LIMIT) as url:
        yield url


def test_parts_come_back_in_any_order_and_again() -> None:
    parts = Parts()
    assert parts.add(None, b"whole") == b"whole"
    h = [{"Solvency-Part": f"{i}/3", "Solvency-Key": "m"} for i in range(3)]
    assert parts.add(h[2], b"c") is None
    assert parts.add(h[0], b"a") is None
    assert parts.add(h[0], b"a") is None  # a restarted shard's, again
    assert parts.add(h[1], b"b") == b"abc"


def test_states_over_the_message_limit_gather_in_parts(small_nats: str) -> None:
    """The demo (a fund takeover, ADL, the fund's unwinds) through two shard nodes whose
    states before each venue-wide event are over the server's limit: they go in parts,
    and every event's out-events, every account and both states are one engine's; the
    shards' snapshots, also over the limit, come back in parts."""
    text = resources.files("solvency.data").joinpath("demo_events.jsonl").read_text()
    objs = _objs(text.splitlines())
    objs = objs[:next(i for i, o in enumerate(objs) if o["id"] == "e0075") + 1]
    venue = load_preset("binance")
    one, inproc = Engine(venue), ShardedEngine(venue, 2)
    want = []
    for obj in objs:
        ev = parse_input(obj)
        want.append(one.out_json(one.apply(ev)))
        inproc.apply(ev)
    assert len(inproc.venue_wide_events) == 5  # 3 past the book (ADL), 2 unwinds
    assert any(o["type"] == "adl" for out in want for o in out)

    nodes = [ShardNode(small_nats, "big2", k, 2, venue) for k in range(2)]

    async def run() -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(node.run(stop)) for node in nodes]
        feed = ShardFeed(small_nats, "big2", 2)
        await feed.connect()
        try:
            await _wait_up(feed, [0, 1], Path("."), 60)
            last = await feed.publish(objs)
            applied = asyncio.create_task(feed.wait_applied(last, timeout_s=120))
            await asyncio.wait([applied, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:  # a shard that stopped on an error: its error here
                if task.done():
                    applied.cancel()
                    task.result()
            await applied
            return ([await feed.status(k, snapshot=True) for k in range(2)],
                    await feed.out_events(last))
        finally:
            await feed.close()
            stop.set()
            await asyncio.gather(*tasks)

    states, outs = asyncio.run(run())
    assert all(node.error is None for node in nodes), [node.error for node in nodes]
    # every venue-wide event's state went in parts (and the flags, verdicts did not)
    assert [node.split_messages for node in nodes] >= [len(inproc.venue_wide_events)] * 2
    assert all(len(json.dumps(s["snapshot"])) > LIMIT for s in states)
    for m, expected in enumerate(want, 1):
        assert _compared(outs.get(m, [])) == _compared(expected), objs[m - 1]["id"]
    engines = [Engine.restore(s["snapshot"]["engine"]) for s in states]
    assert venue_summary(engines) == venue_summary([one])
    assert [s["state_hash"] for s in states] == [e.state_hash() for e in inproc.shards]


def test_a_silent_shard_stops_the_other_within_its_deadline(small_nats: str) -> None:
    """Shard 0 of 2 runs alone: after a price it waits for shard 1's venue-wide flag,
    and 1 s later stops with an error naming it (the feed reports it); before, it
    waited for ever."""
    errors: list[str] = []
    node = ShardNode(small_nats, "alone2", 0, 2, load_preset("binance"), wait_s=1.0,
                     on_error=errors.append)

    async def run() -> tuple[str, float]:
        stop = asyncio.Event()
        task = asyncio.create_task(node.run(stop))
        feed = ShardFeed(small_nats, "alone2", 2)
        await feed.connect()
        try:
            await _wait_up(feed, [0], Path("."), 60)
            t0 = time.monotonic()
            last = await feed.publish([PRICE])
            with pytest.raises(RuntimeError) as exc:
                await feed.wait_applied(last, timeout_s=60)
            return str(exc.value), time.monotonic() - t0
        finally:
            await feed.close()
            stop.set()
            await asyncio.gather(task)

    message, took = asyncio.run(run())
    assert message == ("shard 0: input event 1: no venue-wide flag from shard 1 within "
                       "1 s (a shard down or a message lost): stopped"), message
    assert errors == [message.removeprefix("shard 0: ")]
    assert 1.0 <= took < 30.0
    assert node.m == 0  # the event is not counted as processed: a restart redoes it


def test_an_unstored_message_stops_the_shard_at_once(small_nats: str) -> None:
    """Shard 0 of 2 publishes its verdict and flag for a price while the verdict stream
    is gone: JetStream refuses them, and the shard stops at once (not at its 60 s
    deadline) with :class:`ShardStreamError` naming the message (before: the refusal
    sat in a background future while the shard waited for the other's flag)."""
    node = ShardNode(small_nats, "gone2", 0, 2, load_preset("binance"), wait_s=60.0)

    async def run() -> tuple[BaseException | None, float]:
        stop = asyncio.Event()
        task = asyncio.create_task(node.run(stop))
        feed = ShardFeed(small_nats, "gone2", 2)
        await feed.connect()
        try:
            await _wait_up(feed, [0], Path("."), 60)
            await feed._js.delete_stream("gone2-v")
            t0 = time.monotonic()
            await feed.publish([PRICE])
            done, _ = await asyncio.wait([task], timeout=50)
            assert done, "the shard did not stop on an unstored message"
            return task.exception(), time.monotonic() - t0
        finally:
            await feed.close()
            stop.set()
            if not task.done():
                await asyncio.gather(task, return_exceptions=True)

    error, took = asyncio.run(run())
    assert isinstance(error, ShardStreamError), error
    assert str(error).startswith("shard 0: JetStream did not store its message 1:0:"), error
    assert took < 50.0


def test_shard_run_prints_the_error_and_exits_1(small_nats: str) -> None:
    """`solvency shard run` alone of 2 with --wait-timeout 0.5: the error is printed as
    soon as the shard stops, and the command exits 1 on SIGTERM with no traceback (run
    in this process; a thread feeds it a price, waits until the shard reports its error,
    then sends the signal)."""
    failures: list[BaseException] = []

    async def feed_and_stop() -> None:
        feed = ShardFeed(small_nats, "cli2", 2)
        await feed.connect()
        try:
            await _wait_up(feed, [0], Path("."), 60)
            await feed.publish([PRICE])
            deadline = time.monotonic() + 60
            while not (await feed.status(0))["error"]:
                assert time.monotonic() < deadline, "the shard never stopped"
                await asyncio.sleep(0.05)
        finally:
            await feed.close()

    def side() -> None:
        try:
            asyncio.run(feed_and_stop())
        except BaseException as exc:  # shown by the test below
            failures.append(exc)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # the command's handler stops it

    thread = threading.Thread(target=side)
    thread.start()
    try:
        result = CliRunner().invoke(shard_app, [
            "run", "--shard", "0/2", "--stream", small_nats, "--stream-name", "cli2",
            "--wait-timeout", "0.5"], env={"COLUMNS": "200"})
    finally:
        thread.join(90)
    assert not failures, failures
    text = " ".join(result.output.split())
    assert result.exit_code == 1, text
    assert ("error: shard 0/2: input event 1: no venue-wide flag from shard 1 within "
            "0.5 s") in text, text
    assert text.count("no venue-wide flag") == 2  # at once, and at the exit
    assert "Traceback" not in text, text
    assert result.exception is None or isinstance(result.exception, SystemExit), text
