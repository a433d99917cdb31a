"""Account shards on NATS JetStream (issue 16): events/s through 1, 2 and 4 shard
processes, the stream's own publish and consume rates, one engine in this process, and a
shard's fail-over (killed -9 and restarted from its snapshot), on this machine.

    python bench/bench_stream.py [--events 4000] [--shards 1,2,4]

A single-node JetStream server is started in a temporary folder (tests/nats.py). The
workload is bench_service.py's fill-heavy one: deposits, then 75 % fills (an account
against the market maker or another account, so most fills cross shards), 25 % deposits,
an oracle round every 200 events. For each shard count, N ``solvency shard run`` processes
are started and seen answering first (start-up is not timed); then the events are appended
(``ShardFeed.publish``) and the clock runs until every shard has applied the last one.
Printed per shard count: events/s (wall), the shards' CPU seconds per 1,000 events (from
/proc, user + system, all shard processes together) and the ratio to one shard measured in
the same run; every shard count's venue digest is checked against one engine's.

What it can and cannot show: the shards advance in lockstep (a shard waits for the owner's
verdict on each event it does not own: docs/scale_out.md), every shard reads every event,
and this VM has 2 cores shared with other jobs, so N shards here measure the protocol's
cost, not scaling. The CPU per event and the stream's own rate are the figures that
project to a machine with a core per shard.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.*

from tests.nats import running_nats

from bench_service import Workload
from machine import describe
from solvency.adapters.nats_stream import connect
from solvency.core.model.presets import load_preset
from solvency.engine.engine import Engine
from solvency.engine.inputs import parse_input
from solvency.service.core import canonical
from solvency.service.shard_node import ShardFeed, ensure_streams
from solvency.service.shards import venue_digest

ENTRY = "from solvency.cli.shard import shard_app; shard_app()"


def say(msg: str) -> None:
    print(msg, flush=True)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_shard(k: int, n: int, url: str, name: str, state: Path) -> subprocess.Popen[bytes]:
    log = (state / f"{name}-{k}.log").open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-c", ENTRY, "run", "--shard", f"{k}/{n}", "--stream", url,
             "--stream-name", name, "--state-dir", str(state / name), "--snapshot-every",
             "1000"], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        log.close()


async def wait_up(feed: ShardFeed, ks: list[int], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    for k in ks:
        while True:
            try:
                await feed.status(k, timeout_s=1.0)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"shard {k} did not come up") from None
                await asyncio.sleep(0.05)


async def stream_rate(url: str, objs: list[dict[str, Any]]) -> tuple[float, float]:
    """The stream alone: append ``objs`` as the feed does (fenced, 500 in flight), then
    read them back with an ordered consumer as a shard does; (publish/s, consume/s)."""
    nc = await connect(url)
    js = nc.jetstream(timeout=10)
    await ensure_streams(js, "raw")
    data = [canonical(o).encode() for o in objs]
    t0 = time.perf_counter()
    for start in range(0, len(data), 500):
        await asyncio.gather(*(js.publish("raw.in", d, headers={
            "Nats-Expected-Last-Sequence": str(start + i)})
            for i, d in enumerate(data[start:start + 500])))
    pub = len(data) / (time.perf_counter() - t0)
    sub = await js.subscribe("raw.in", ordered_consumer=True, pending_msgs_limit=1_000_000,
                             pending_bytes_limit=1 << 30)
    t0 = time.perf_counter()
    for _ in data:
        await sub.next_msg(timeout=10)
    con = len(data) / (time.perf_counter() - t0)
    await nc.close()
    return pub, con


async def run_shards(url: str, n: int, setup: list[dict[str, Any]],
                     objs: list[dict[str, Any]], state: Path, kill: bool) -> dict[str, Any]:
    name = f"b{n}{'k' if kill else ''}"
    procs = [start_shard(k, n, url, name, state) for k in range(n)]
    feed = ShardFeed(url, name, n)
    await feed.connect()
    out: dict[str, Any] = {"n": n}
    try:
        await wait_up(feed, list(range(n)))
        # the set-up (deposits, oracle rounds, a fill per third account) is not timed:
        # it also compiles the kernels in every shard
        await feed.wait_applied(await feed.publish(setup), timeout_s=600)
        bar0 = [await feed.status(k, hashed=False) for k in range(n)]
        cpu0 = sum(cpu_s(p.pid) for p in procs)
        t0 = time.perf_counter()
        last = await feed.publish(objs)
        first = last - len(objs)
        out["publish_s"] = time.perf_counter() - t0
        if kill:  # shard n-1 killed -9 halfway, restarted at once
            victim = n - 1
            while (await feed.status(victim))["m"] < first + len(objs) // 2:
                await asyncio.sleep(0.01)
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            t_kill = time.perf_counter()
            procs[victim] = start_shard(victim, n, url, name, state)
            await wait_up(feed, [victim])
            out["restart_s"] = time.perf_counter() - t_kill
            await feed.wait_applied(last, timeout_s=600)
            out["back_s"] = time.perf_counter() - t_kill
        else:
            await feed.wait_applied(last, timeout_s=600)
        wall = time.perf_counter() - t0
        cpu = sum(cpu_s(p.pid) for p in procs) - cpu0
        states = [await feed.status(k, snapshot=True) for k in range(n)]
        if not kill:  # the flag barrier after each timestamped event (a restart resets)
            out["barriers"] = states[0]["barriers"] - bar0[0]["barriers"]
            out["barrier_ms"] = [(s["barrier_s"] - b["barrier_s"]) * 1000 / max(
                1, s["barriers"] - b["barriers"]) for s, b in zip(states, bar0, strict=True)]
        out.update(wall=wall, ev_s=len(objs) / wall, cpu_per_1k=cpu / len(objs) * 1000,
                   digest=venue_digest([Engine.restore(s["snapshot"]["engine"])
                                        for s in states]))
    finally:
        await feed.close()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=4_000)
    ap.add_argument("--accounts", type=int, default=2_000)
    ap.add_argument("--shards", default="1,2,4")
    ap.add_argument("--timestamped", action="store_true",
                    help="give every timed fill and deposit the time of the last oracle "
                         "round: every event is then a flag barrier, and a shard waits "
                         "for the owner's verdict on each event it does not own")
    args = ap.parse_args()
    say(describe())
    say(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    wl = Workload(args.accounts)
    setup = wl.setup()
    ts = wl.ts  # the set-up's last oracle round
    objs = wl.traffic("f", args.events, feed=True)
    if args.timestamped:
        for o in objs:
            ts = o.setdefault("ts", ts)
    venue = load_preset("binance")
    one = Engine(venue)
    for o in setup:
        one.apply(parse_input(o))
    events = [parse_input(o) for o in objs]
    t0 = time.perf_counter()
    for ev in events:
        one.apply(ev)
    one_s = time.perf_counter() - t0
    want = venue_digest([one])
    fills = sum(o["type"] == "fill" for o in objs)
    timed = sum("ts" in o for o in objs)
    say(f"workload: {len(setup):,} set-up events (not timed), then {len(objs):,} timed "
        f"({fills:,} fills; {timed:,} with a timestamp), {args.accounts:,} accounts")
    say(f"one engine in this process (parsed events, no stream): "
        f"{len(objs) / one_s:,.0f} events/s")
    # a shard's checkpoint (a whole snapshot every 50 events it applies) and the restore
    # a venue-wide event starts from, at the whole venue's size (an upper bound on one
    # shard's): CPU time, best of 3
    snap_s, rest_s = [], []
    for _ in range(3):
        c0 = time.process_time()
        snap = one.snapshot()
        c1 = time.process_time()
        Engine.restore(snap, like=venue)
        snap_s.append(c1 - c0)
        rest_s.append(time.process_time() - c1)
    say(f"checkpoint at {len(one.book.rows):,} rows: snapshot {min(snap_s) * 1000:.1f} ms, "
        f"restore {min(rest_s) * 1000:.1f} ms CPU (a shard snapshots every 50 events it "
        f"applies: {min(snap_s) * 1000 / 50:.2f} ms an event)")
    counts = [int(x) for x in args.shards.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp, running_nats(1) as url:
        pub, con = asyncio.run(stream_rate(url, setup + objs))
        say(f"JetStream alone (1 node, file storage): publish {pub:,.0f} msg/s "
            f"(fenced, 500 in flight), ordered-consumer read {con:,.0f} msg/s")
        results = []
        for n in counts:
            r = asyncio.run(run_shards(url, n, setup, objs, Path(tmp), kill=False))
            ok = "equal" if r["digest"] == want else "DIFFERENT"
            results.append(r)
            say(f"{n} shard{'s' if n > 1 else ' '}: {r['ev_s']:8,.0f} events/s "
                f"({r['wall']:.2f} s), shards' CPU {r['cpu_per_1k']:.2f} s per 1,000 "
                f"events, {r['ev_s'] / results[0]['ev_s']:.2f}x {counts[0]} shard(s); "
                f"venue digest {ok} to one engine's")
            say(f"   flag barriers: {r['barriers']:,} (one per timestamped event), wall "
                f"time in each from publishing the flag to holding all {n}: "
                + ", ".join(f"shard {k} {ms:.2f} ms" for k, ms in enumerate(r["barrier_ms"]))
                + f" (x {r['barriers']:,} = {max(r['barrier_ms']) * r['barriers'] / 1000:.2f}"
                f" s of the {r['wall']:.2f} s)")
        n = counts[-1] if counts[-1] > 1 else 2
        r = asyncio.run(run_shards(url, n, setup, objs, Path(tmp), kill=True))
        ok = "equal" if r["digest"] == want else "DIFFERENT"
        base = (f" vs {results[counts.index(n)]['wall']:.2f} s uninterrupted"
                if n in counts else "")
        say(f"fail-over, {n} shards, shard {n - 1} killed -9 halfway and restarted: up "
            f"again (process start, snapshot read, subscribed) {r['restart_s']:.2f} s "
            f"after the kill, every shard at the last event {r['back_s']:.2f} s after it "
            f"(whole run {r['wall']:.2f} s{base}); venue digest {ok}")
    if len(counts) > 1 and counts[0] == 1 and 2 in counts:
        two = results[counts.index(2)]["ev_s"] / results[0]["ev_s"]
        say(f"target 2 shards >= 1.7x one shard: {two:.2f}x "
            f"{'met' if two >= 1.7 else 'MISSED'} (see the docstring: lockstep shards "
            "on 2 shared cores)")


if __name__ == "__main__":
    main()
