"""Account shards as processes on NATS JetStream: the shard node and the feed.

The in-process :class:`~solvency.service.shards.ShardedEngine` holds the rules (routing,
legs, time, the merged out-events); this module runs them as one process per shard, fed
by one replicated log (docs/scale_out.md, "Account shards"):

* ``NAME-in`` (subject ``NAME.in``): the venue's input events in order, one per message;
  its stream sequence is the event's venue sequence number ``m``. The feed
  (:class:`ShardFeed`, ``solvency shard feed``) appends, fenced by
  ``Nats-Expected-Last-Sequence`` like the service's writer.
* ``NAME-v`` (subjects ``NAME.v.K``): what each shard decided. A shard publishes, per
  event it is a target of, its verdict (accepted or not, and its out-events); for a
  cross-shard fill first its *vote* (its leg passed its checks or not), then, once both
  votes are in and both passed, the out-events of its leg; and the out-events of time
  passing on events it was not a target of. Message ids ``m:K:kind`` make a restarted
  shard's re-publishing a no-op. Each is published to JetStream with its acknowledgement
  awaited in the background, and all of them before a snapshot is written: a shard killed
  after its snapshot never leaves a verdict unstored that its restart would not publish
  again (it resumes after the snapshot). At start, each shard also publishes its venue's
  fingerprint (``0:K:venue:FP``); a shard that sees another's differ stops with an error
  naming both (shards of one venue must run the same rules).

Every shard reads every input event. An event of another shard with a timestamp moves
this shard's clock only once that shard's verdict says it was accepted (one engine does
not move its clock for a rejected event); so a shard waits for that verdict before the
next event. An event of another shard without a timestamp changes nothing here whatever
its verdict; the shard goes on at once and keeps it *pending* until the verdict comes,
waiting for it only where it matters: before a later event with the same id (a duplicate
if it was accepted). That keeps N shards exactly equal to one engine; timestamped events
still make the shards advance in lockstep (docs/scale_out.md).

The venue-wide decision (the fund, ADL, socialized loss: service/shards.py): after an
accepted timestamped event every shard publishes a flag (``m:K:g``, what of its part
needed the whole venue, or null) and waits for all N. If one is set, every shard goes
back to its state before the event, publishes it (``m:K:s``), waits for all N, and
applies :func:`~solvency.service.shards.decide_venue_wide` over them, a pure function:
each keeps its part, and shard 0 publishes the event's out-events (``m:0:w``).

A message over the server's limit (a state, a snapshot reply) goes in parts
(:func:`split_body`, :class:`Parts`); every wait for other shards' messages has a deadline
(``wait_s``), past which the shard stops with an error naming what did not come.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import nats.errors
import nats.js.errors
from nats.js import api

import nats
from solvency.adapters.nats_stream import connect
from solvency.core.model.events import EventError, Fill, Rejected
from solvency.core.model.venue import Venue
from solvency.engine.engine import Engine
from solvency.engine.fills import SHARD_CLEARING
from solvency.engine.inputs import parse_input
from solvency.service.core import canonical, venue_fingerprint
from solvency.service.shards import (
    FUND_SHARD,
    BirthKey,
    GlobalViewNeededError,
    ShardDivergenceError,
    check_shardable,
    decide_venue_wide,
    genesis,
    names_clearing,
    record_births,
    refuse_global,
    refuse_unshardable,
    restore_like,
    route,
    shard_of,
)

__all__ = ["PART_HEADER", "Parts", "ShardFeed", "ShardNode", "ShardStreamError",
           "ensure_streams", "merge_out_json", "split_body"]

_DUP_WINDOW_S: Final = 3600.0


async def ensure_streams(js: Any, name: str, replicas: int = 1) -> None:
    """Create the input and verdict streams of ``name`` (or bind to them)."""
    for stream, subjects in ((f"{name}-in", [f"{name}.in"]), (f"{name}-v", [f"{name}.v.*"])):
        config = api.StreamConfig(name=stream, subjects=subjects,
                                  storage=api.StorageType.FILE, num_replicas=replicas,
                                  duplicate_window=_DUP_WINDOW_S)
        deadline = asyncio.get_running_loop().time() + 30.0
        while True:
            try:
                await js.add_stream(config)
                break
            except nats.js.errors.BadRequestError:
                break  # exists
            except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError,
                    nats.js.errors.NoStreamResponseError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.25)


class _StoppedError(Exception):
    """Asked to stop while waiting for other shards' verdicts."""


class ShardStreamError(RuntimeError):
    """JetStream did not store a message the shard published (the message says which):
    the shard stops; its restart publishes it again from its last snapshot."""


PART_HEADER: Final = "Solvency-Part"
"""Header of a message sent in parts: ``I/C``, part I of C (from 0)."""
KEY_HEADER: Final = "Solvency-Key"
"""Header naming the message a part belongs to (its parts share it)."""
_HEADROOM: Final = 2048  # the headers, under the server's limit on a whole message


def split_body(data: bytes, max_payload: int) -> list[bytes]:
    """``data`` in pieces that each fit a NATS message of ``max_payload`` bytes (the
    server's limit, 1 MiB by default, headers included): one piece when it fits."""
    size = max(256, max_payload - _HEADROOM)
    if len(data) <= size:
        return [data]
    return [data[i:i + size] for i in range(0, len(data), size)]


class Parts:
    """Puts messages sent in parts (:data:`PART_HEADER`) back together; a message not
    in parts passes through. Parts may come in any order, and again (a restarted
    shard's, the same bytes)."""

    def __init__(self) -> None:
        self._got: dict[str, dict[int, bytes]] = {}

    def add(self, headers: Mapping[str, str] | None, data: bytes) -> bytes | None:
        """The whole message once its last part came; None before."""
        part = (headers or {}).get(PART_HEADER)
        if part is None:
            return data
        i, _, count = part.partition("/")
        key = (headers or {}).get(KEY_HEADER, "")
        got = self._got.setdefault(key, {})
        got[int(i)] = data
        if len(got) < int(count):
            return None
        del self._got[key]
        return b"".join(got[j] for j in range(int(count)))


class ShardNode:
    """One shard: an engine over the accounts of shard ``k`` of ``n``.

    Parameters
    ----------
    url, name
        NATS server URL(s) (comma-separated) and the venue's stream name.
    k, n
        This shard and the shard count.
    venue
        The venue every shard runs.
    state_dir
        Where the shard keeps its snapshot (``shard-K.json``); None: none, a restart
        replays the whole log.
    snapshot_every
        Events between snapshots.
    wait_s
        The longest wait for the other shards' messages of one event (votes, flags,
        states); past it the shard stops with an error naming what did not come.
    part_bytes
        Split messages above this many bytes (None: the server's limit, less room for
        the headers).
    on_error
        Called once with the error that stopped the shard (the CLI prints it at once).
    """

    def __init__(self, url: str, name: str, k: int, n: int, venue: Venue, *,
                 state_dir: Path | None = None, snapshot_every: int = 5_000,
                 replicas: int = 1, checkpoint_every: int = 50, wait_s: float = 120.0,
                 part_bytes: int | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.url, self.name, self.k, self.n = url, name, k, n
        self.venue, self.replicas = venue, replicas
        self.state_dir, self.snapshot_every = state_dir, snapshot_every
        self.wait_s, self.part_bytes, self.on_error = wait_s, part_bytes, on_error
        self.split_messages = 0  # messages this shard published in parts
        # the flag barrier after each timestamped event: how many, and the wall time
        # spent waiting in them (bench/bench_stream.py reads both from the status)
        self.barriers, self.barrier_s = 0, 0.0
        self._unstored: ShardStreamError | None = None
        self._parts = Parts()
        self.engine = Engine(venue)
        self.m = 0  # last input event processed
        self.seen: set[str] = set()  # ids accepted anywhere in the venue
        self._error: str | None = None
        self.error_at: int | None = None  # the input event the error stopped it at
        self._at = 0  # the input event being processed
        self._votes: dict[int, dict[int, bool]] = {}
        # events of other shards without a timestamp, applied here as "nothing happens"
        # before their owners' verdicts came: m -> (id, targets); settled (the id added to
        # the accepted ones or not) when the verdicts come
        self._pending: dict[int, tuple[str, list[int]]] = {}
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._nc: Any = None
        self._js: Any = None
        # JetStream publish acknowledgements not yet awaited (all are before a snapshot)
        self._acks: list[asyncio.Future[Any]] = []
        self._venue_fp = venue_fingerprint(venue.raw)
        self.births: dict[str, BirthKey] = {}  # this shard's rows' creation (shards.py)
        # the venue-wide decision: each shard's flag per event (what needed the whole
        # venue, or None), and each shard's state before a flagged event
        self._flags: dict[int, dict[int, str | None]] = {}
        self._states: dict[int, dict[int, dict[str, Any]]] = {}
        self.checkpoint_every = checkpoint_every
        self._base: dict[str, Any] = {}
        self._ops: list[tuple[Any, ...]] = []
        self._recover()
        self._checkpoint()

    @property
    def error(self) -> str | None:
        """Why the shard stopped (None: running)."""
        return self._error

    @error.setter
    def error(self, message: str | None) -> None:
        first = self._error is None and message is not None
        self._error = message
        if first and self.on_error is not None:
            self.on_error(message or "")

    # ------------------------------------------------------------------ state

    @property
    def _snap_path(self) -> Path | None:
        return None if self.state_dir is None else self.state_dir / f"shard-{self.k}.json"

    def _recover(self) -> None:
        path = self._snap_path
        if path is not None and path.exists():
            data = json.loads(path.read_text())
            if (data["k"], data["n"]) != (self.k, self.n):
                raise ValueError(f"{path} belongs to shard {data['k']}/{data['n']}")
            self.engine = Engine.restore(data["engine"])
            self.m, self.seen = int(data["m"]), set(data["seen"])
            self.births = {str(x): (int(a), int(b), int(c))
                           for x, (a, b, c) in data.get("births", {}).items()}
            self._pending = {int(m): (str(i), [int(t) for t in ts])
                             for m, i, ts in data.get("pending", [])}
            if self.engine.state_hash() != data["state_hash"]:
                raise ValueError(f"{path}: the restored engine does not hash to its record")
            return
        check_shardable(self.engine)
        for ev in genesis(self.engine, self.k):
            self.engine.apply(ev)

    def snapshot(self) -> dict[str, Any]:
        """This shard's state: the input event it reached, the venue's accepted ids, the
        events whose verdicts it has not had yet, and the engine."""
        return {"k": self.k, "n": self.n, "m": self.m, "seen": sorted(self.seen),
                "births": dict(sorted(self.births.items())),
                "pending": [[m, i, ts] for m, (i, ts) in sorted(self._pending.items())],
                "state_hash": self.engine.state_hash(), "engine": self.engine.snapshot()}

    def _checkpoint(self) -> None:
        # the engine's state, and what it applied since: the shard goes back to its state
        # before an event by restoring this and applying those again
        self._base = self.engine.snapshot()
        self._ops = []

    def _save(self) -> None:
        path = self._snap_path
        if path is None:
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    # ------------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Follow the input stream until ``stop`` is set (or forever)."""
        stop = self._stop = stop or asyncio.Event()
        self._nc = await connect(self.url)
        js = self._js = self._nc.jetstream(timeout=10)
        await ensure_streams(js, self.name, self.replicas)
        await js.subscribe(f"{self.name}.v.*", ordered_consumer=True, cb=self._on_verdict,
                           pending_msgs_limit=1_000_000, pending_bytes_limit=1 << 30)
        await js.publish(f"{self.name}.v.{self.k}", canonical(
            {"m": 0, "k": self.k, "venue": self._venue_fp, "venue_name": self.venue.name,
             }).encode(), headers={"Nats-Msg-Id": f"0:{self.k}:venue:{self._venue_fp}"})
        sub = await js.subscribe(
            f"{self.name}.in", ordered_consumer=True, pending_msgs_limit=1_000_000,
            pending_bytes_limit=1 << 30,
            config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                                      opt_start_seq=self.m + 1))
        # answered once started: a shard that answers has published its venue and
        # follows both streams
        await self._nc.subscribe(f"{self.name}.q.{self.k}", cb=self._on_query)
        since_snap = 0
        wake = asyncio.create_task(self._wake_on(stop))
        interrupted = False  # mid-event: the engine may be past self.m, no snapshot
        try:
            while not stop.is_set() and self.error is None:
                try:
                    msg = await sub.next_msg(timeout=0.25)
                except nats.errors.TimeoutError:
                    self._raise_unstored()
                    continue
                m = int(msg.metadata.sequence.stream)
                if m <= self.m:
                    continue
                try:
                    await self._process(m, msg.data)
                except _StoppedError:
                    interrupted = True
                    break
                since_snap += 1
                if since_snap >= self.snapshot_every:
                    await self._confirm()
                    self._save()
                    since_snap = 0
            # stopped or failed: keep answering queries until told to stop
            await stop.wait()
        finally:
            wake.cancel()
            stored = True
            try:
                await self._confirm()  # the verdicts published so far
            except Exception:  # not stored: the restart publishes them again
                stored = False
            if self.error is None and stored and not interrupted:
                self._save()
            with contextlib.suppress(Exception):
                await self._nc.close()  # drain() would wait 30 s for the push consumers

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._changed.set()  # a wait for votes that will not come ends

    async def _on_query(self, msg: Any) -> None:
        """Answer ``NAME.q.K``: empty: progress and state hash; ``progress``: without the
        hash (a snapshot of every row: `wait_applied` polls); ``snapshot``: the whole
        state too; ``account:NAME``: that account's view (when it lives here)."""
        body: dict[str, Any] = {"k": self.k, "m": self.m, "error": self.error,
                                "error_at": self.error_at,
                                "barriers": self.barriers, "barrier_s": self.barrier_s}
        if msg.data != b"progress":  # the hash values every row: not for polling
            body["state_hash"] = self.engine.state_hash()
        if msg.data == b"snapshot":
            body["snapshot"] = self.snapshot()
        elif msg.data.startswith(b"account:"):
            account = msg.data[len(b"account:"):].decode(errors="replace")
            try:
                body["account"] = self.engine.account_view(account)
            except KeyError:
                body["account"] = None
        data = json.dumps(body, default=str).encode()
        parts = split_body(data, self.part_bytes or self._nc.max_payload)
        for i, part in enumerate(parts):  # a snapshot over the message limit: in parts
            await self._nc.publish(msg.reply, part, headers=None if len(parts) == 1 else {
                PART_HEADER: f"{i}/{len(parts)}", KEY_HEADER: msg.reply})

    async def _on_verdict(self, msg: Any) -> None:
        data = self._parts.add(msg.headers, msg.data)
        if data is None:  # a part of a message whose other parts have not all come
            return
        d = json.loads(data)
        if "venue" in d:
            if d["venue"] != self._venue_fp and self.error is None:
                self.error = (f"shard {d['k']} runs venue {d.get('venue_name')!r} "
                              f"(fingerprint {str(d['venue'])[:12]}), this shard "
                              f"{self.venue.name!r} ({self._venue_fp[:12]}): every shard "
                              "of a stream must run the same --venue")
                self.error_at = self.m
                self._changed.set()
            return
        m = int(d["m"])
        if int(d["k"]) == self.k:  # its own flag, state or vote: taken when it sent it
            return
        if "g" in d or "state" in d:
            if m > self.m:  # of an event not yet processed here
                if "g" in d:
                    self._flags.setdefault(m, {})[int(d["k"])] = d["g"]
                else:
                    self._states.setdefault(m, {})[int(d["k"])] = d
                self._changed.set()
            return
        # votes of events already processed are not needed, except of pending ones
        if "ok" in d and (m > self.m or m in self._pending):
            self._votes.setdefault(m, {})[int(d["k"])] = bool(d["ok"])
            self._settle(m)
            self._changed.set()

    def _settle(self, m: int) -> None:
        """A pending event whose targets' votes are all in: its id is accepted if all
        passed."""
        if m not in self._pending:
            return
        event_id, targets = self._pending[m]
        got = self._votes.get(m, {})
        if all(t in got for t in targets):
            if all(got[t] for t in targets):
                self.seen.add(event_id)
            del self._pending[m]
            self._votes.pop(m, None)

    async def _wait(self, ready: Callable[[], bool], m: int,
                    what: Callable[[], str]) -> None:
        """Wait until ``ready()``, at most :attr:`wait_s` seconds: past it (a shard down,
        a message lost) the shard stops with an error naming what did not come; a
        verdict JetStream did not store stops it at once (:class:`ShardStreamError`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while True:
            if self._stop.is_set():
                raise _StoppedError
            self._raise_unstored()
            if ready():
                return
            left = deadline - loop.time()
            if left <= 0:
                self.error = (f"input event {m}: no {what()} within {self.wait_s:g} s "
                              "(a shard down or a message lost): stopped")
                self.error_at = m
                raise _StoppedError
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def _missing(self, got: Mapping[int, object], kind: str,
                 among: Sequence[int] | None = None) -> str:
        ks = [k for k in (range(self.n) if among is None else among) if k not in got]
        return f"{kind} from shard{'s' if len(ks) > 1 else ''} {', '.join(map(str, ks))}"

    async def _resolve(self, event_id: str) -> None:
        """Wait for the verdicts of the pending events with ``event_id`` (before deciding
        whether an event with that id is a duplicate)."""
        for m in sorted(m for m, (i, _) in self._pending.items() if i == event_id):
            await self._wait_pending(m)

    async def _wait_pending(self, m: int) -> None:
        targets = self._pending[m][1]
        await self._wait(lambda: m not in self._pending, m,
                         lambda: self._missing(self._votes.get(m, {}), "verdict", targets))

    async def _wait_votes(self, m: int, targets: Sequence[int]) -> bool:
        return all((await self._wait_all(m, targets)).values())

    async def _wait_all(self, m: int, targets: Sequence[int]) -> dict[int, bool]:
        await self._wait(lambda: all(t in self._votes.get(m, {}) for t in targets), m,
                         lambda: self._missing(self._votes.get(m, {}), "verdict", targets))
        got = self._votes.pop(m, {})
        return {t: got[t] for t in targets}

    async def _publish(self, m: int, kind: str, body: dict[str, Any]) -> None:
        """Publish to the verdict stream; a body over the server's message limit goes in
        parts (:func:`split_body`). Each part's acknowledgement is awaited in the
        background: a refusal wakes the shard's waits, which stop it with
        :class:`ShardStreamError` (and every acknowledgement is awaited before a
        snapshot)."""
        data = canonical({"m": m, "k": self.k, **body}).encode()
        ident = f"{m}:{self.k}:{kind}"
        what = f"{ident} ({len(data):,} bytes)"
        parts = split_body(data, self.part_bytes or self._nc.max_payload)
        if len(parts) > 1:
            self.split_messages += 1
        for i, part in enumerate(parts):
            headers = {"Nats-Msg-Id": ident}
            if len(parts) > 1:
                headers = {"Nats-Msg-Id": f"{ident}:{i}", PART_HEADER: f"{i}/{len(parts)}",
                           KEY_HEADER: ident}
            fut = asyncio.ensure_future(self._js.publish(
                f"{self.name}.v.{self.k}", part, headers=headers))
            fut.add_done_callback(functools.partial(self._on_ack, what=what))
            self._acks.append(fut)
        if len(self._acks) >= 2_000:
            await self._confirm()

    def _on_ack(self, fut: asyncio.Future[Any], *, what: str) -> None:
        if fut.cancelled() or fut.exception() is None or self._unstored is not None:
            return
        exc = fut.exception()
        self._unstored = ShardStreamError(
            f"shard {self.k}: JetStream did not store its message {what}: "
            f"{type(exc).__name__}: {exc}")
        self._changed.set()  # a wait for the others stops now, not at its deadline

    def _raise_unstored(self) -> None:
        if self._unstored is not None:
            raise self._unstored

    async def _confirm(self) -> None:
        """Await the acknowledgements of the verdicts published so far (raises when
        JetStream did not store one: the shard stops, and its restart publishes them
        again from its last snapshot, de-duplicated by their message ids)."""
        acks = list(self._acks)
        if acks:
            try:
                await asyncio.gather(*acks)  # a failure keeps them listed: not stored
            except Exception:
                self._raise_unstored()  # the same, naming the message
                raise
            del self._acks[:len(acks)]

    async def _process(self, m: int, data: bytes) -> None:
        """One input event: this shard's part, or the verdict it waits for."""
        self._at = m
        try:
            ev = parse_input(json.loads(data))
        except (EventError, ValueError) as exc:
            self.error = f"input event {m}: {exc}"  # the feed publishes parsed events only
            self.error_at = m
            return
        if self._pending:
            await self._resolve(ev.id)
        if ev.id in self.seen:
            self.m = m
            return
        legs = route(ev, self.n)
        targets = [k for k, _ in legs]
        mine = [leg for k, leg in legs if k == self.k]
        out: list[Any] = []
        if not mine and ev.ts_ms is None:
            # another shard's event without a timestamp changes nothing here whatever its
            # verdict (the clock does not move); only its id's acceptance is needed, and
            # only by a later event with the same id: do not wait for it
            self._pending[m] = (ev.id, targets)
            self._settle(m)
            self.m = m
            return
        if len(self._ops) >= self.checkpoint_every:
            self._checkpoint()
        n_ops, n_rows = len(self._ops), len(self.engine.book.rows)
        self.engine.liquidator.venue_wide = None
        if isinstance(ev, Fill) and len(legs) == 2:
            ok, out = await self._cross_fill(m, ev, targets, mine)
        elif mine:
            # a change to open-interest-scaled margin: refused before it is applied, by
            # every shard alike (the same markets), so nothing to replay
            refused = refuse_unshardable(self.engine, mine[0])
            if refused is not None:
                out = [refused]
            else:
                out = self.engine.apply(mine[0])
                self._ops.append(("apply", mine[0]))
            ok = not any(isinstance(o, Rejected) and o.event == ev.id for o in out)
            await self._publish(m, "v", {"ok": ok, "out": self.engine.out_json(out)})
            if ok and self.engine.liquidator.venue_wide is None:
                self._refuse(ev.id, out)
            out = []
        else:
            ok = await self._wait_votes(m, targets)
            if ok and ev.ts_ms is not None:
                out = self.engine.pass_time(ev.ts_ms, ev.id)
                self._ops.append(("pass_time", ev.ts_ms, ev.id))
        need = self.engine.liquidator.venue_wide
        if ok and ev.ts_ms is not None:
            # every shard ran this event (its part, or time passing): all say whether
            # their part needed the whole venue, and all wait for all (a barrier)
            t0 = asyncio.get_running_loop().time()
            await self._publish(m, "g", {"g": need})
            self._flags.setdefault(m, {})[self.k] = need
            flags = await self._wait_flags(m)
            self.barriers += 1
            self.barrier_s += asyncio.get_running_loop().time() - t0
            wide = next((f for _, f in sorted(flags.items()) if f is not None), None)
            if wide is not None:
                await self._venue_wide(m, ev, targets, n_ops, wide)
                self.seen.add(ev.id)
                self.m = m
                self._votes.pop(m, None)
                return
        elif ok and need is not None:
            # the other shards went on past it without waiting (no timestamp)
            self.error = (f"input event {m} ({ev.id}): {need} needs the venue-wide view, "
                          "and an event without a timestamp cannot gather it")
            self.error_at = m
            return
        order = targets + [j for j in range(self.n) if j not in targets]
        record_births(self.births, self.engine, n_rows, (m, order.index(self.k)))
        if out:
            await self._publish(m, "o", {"out": self.engine.out_json(out)})
        if ok:
            self.seen.add(ev.id)
            self._refuse(ev.id, out)
        self.m = m
        self._votes.pop(m, None)  # the other targets' votes of an event this shard applied

    async def _wait_flags(self, m: int) -> dict[int, str | None]:
        await self._wait(lambda: len(self._flags.get(m, {})) == self.n, m,
                         lambda: self._missing(self._flags.get(m, {}), "venue-wide flag"))
        return self._flags.pop(m)

    async def _venue_wide(self, m: int, ev: Any, targets: list[int], n_ops: int,
                          wide: str) -> None:
        """Event ``m`` over the gathered venue: this shard's state before it (its
        checkpoint and what it applied since, applied again) to every shard, every
        shard's from them, and :func:`~solvency.service.shards.decide_venue_wide` over
        them all, a pure function: every shard computes the same result and keeps its
        part; shard 0 publishes the event's out-events (``wide``)."""
        back = restore_like(self.engine, self._base)
        for op in self._ops[:n_ops]:
            if op[0] == "apply":
                back.apply(op[1])
            else:
                back.pass_time(op[1], op[2])
        before = back.snapshot()
        await self._publish(m, "s", {"state": before, "births": self.births})
        self._states.setdefault(m, {})[self.k] = {"births": dict(self.births)}  # `before`: below
        await self._wait(lambda: len(self._states.get(m, {})) == self.n, m,
                         lambda: self._missing(self._states.get(m, {}), "state"))
        states = self._states.pop(m)
        births: dict[str, BirthKey] = {}
        for k in range(self.n):
            for name, (a, b, c) in states[k]["births"].items():
                key = (int(a), int(b), int(c))
                births[name] = min(births.get(name, key), key)
        olds = [before if k == self.k else states[k]["state"] for k in range(self.n)]
        out, snaps = decide_venue_wide(self.engine, olds, births, ev, targets, m)
        self.engine = restore_like(self.engine, snaps[self.k])
        self.births = {r[0]: births[r[0]] for r in snaps[self.k]["rows"] if r[0] in births}
        if self.k == FUND_SHARD:
            await self._publish(m, "w", {"wide": wide, "out": self.engine.out_json(out)})
        self._checkpoint()

    def _refuse(self, event_id: str, out: list[Any]) -> None:
        try:
            refuse_global(event_id, out)
        except GlobalViewNeededError as exc:
            self.error, self.error_at = str(exc), self._at

    async def _cross_fill(self, m: int, ev: Fill, targets: list[int],
                          mine: list[Any]) -> tuple[bool, list[Any]]:
        if not mine:
            ok = await self._wait_votes(m, targets)
            if ok and ev.ts_ms is not None:
                self._ops.append(("pass_time", ev.ts_ms, ev.id))
                return ok, self.engine.pass_time(ev.ts_ms, ev.id)
            return ok, []
        clock = self.engine.clock_ms
        rej: Rejected | None
        if ev.ts_ms is not None and clock is not None and ev.ts_ms < clock:
            rej = Rejected(id=f"rejected:{ev.id}", event=ev.id, reason="out_of_order",
                           detail=f"ts {ev.ts_ms} is before the engine clock {clock}")
        else:
            rej = self.engine.check_fill(mine[0])
        await self._publish(m, "v", {"ok": rej is None})
        self._votes.setdefault(m, {})[self.k] = rej is None
        got = await self._wait_all(m, targets)
        if not all(got.values()):
            # one engine checks the buyer's side first: the first refusing target answers
            first = next(t for t in targets if not got[t])
            if first == self.k and rej is not None:
                await self._publish(m, "o", {"out": self.engine.out_json([rej])})
            return False, []
        out = self.engine.apply(mine[0])
        self._ops.append(("apply", mine[0]))
        if any(isinstance(o, Rejected) for o in out):
            self.error = f"input event {m}: leg rejected after both shards passed it"
            self.error_at = m
        return True, out


class ShardFeed:
    """The writer's side: appends input events to ``NAME.in`` and reads the shards'
    verdicts and states."""

    def __init__(self, url: str, name: str, n: int, *, replicas: int = 1) -> None:
        self.url, self.name, self.n, self.replicas = url, name, n, replicas
        self._nc: Any = None
        self._js: Any = None
        self.duplicates = 0
        """Verdicts :meth:`out_events` found twice (identical: a restarted shard's own,
        published again after the stream's duplicate window)."""

    async def connect(self) -> None:
        """Connect and make sure the streams exist."""
        self._nc = await connect(self.url)
        self._js = self._nc.jetstream(timeout=10)
        await ensure_streams(self._js, self.name, self.replicas)

    async def close(self) -> None:
        """Drain the connection."""
        if self._nc is not None:
            await self._nc.drain()

    async def last_seq(self) -> int:
        """How many input events the log holds."""
        info = await self._js.stream_info(f"{self.name}-in")
        return int(info.state.last_seq)

    async def publish(self, events: Sequence[dict[str, Any]], *, chunk: int = 500) -> int:
        """Append events (JSON objects, parsed first: a bad one is refused before any
        is sent) in order; return the last venue sequence number."""
        for i, obj in enumerate(events):
            try:
                named = names_clearing(parse_input(obj))
            except EventError as exc:
                raise EventError(exc.reason, f"event {i}: {exc.detail}") from None
            if named is not None:  # only the shards book against their clearing account
                raise EventError("system_account",
                                 f"event {i}: {named} {SHARD_CLEARING} is run by the shards")
        last = await self.last_seq()
        for start in range(0, len(events), chunk):
            part = events[start:start + chunk]
            acks = await asyncio.gather(*(self._js.publish(
                f"{self.name}.in", canonical(obj).encode(),
                headers={"Nats-Expected-Last-Sequence": str(last + i)})
                for i, obj in enumerate(part)))
            last += len(part)
            if int(acks[-1].seq) != last:
                raise RuntimeError(f"stream {self.name}-in: stored as {acks[-1].seq}, "
                                   f"expected {last} (another writer?)")
        return last

    async def status(self, k: int, *, snapshot: bool = False, hashed: bool = True,
                     timeout_s: float = 5.0) -> dict[str, Any]:
        """Shard ``k``'s progress (``m``, ``error``, its flag barriers), its
        ``state_hash`` (unless ``hashed`` is False), and its state (a state over the
        message limit comes in parts)."""
        if not snapshot:
            reply = await self._nc.request(f"{self.name}.q.{k}",
                                           b"" if hashed else b"progress", timeout=timeout_s)
            got: dict[str, Any] = json.loads(reply.data)
            return got
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox)
        parts = Parts()
        deadline = asyncio.get_running_loop().time() + timeout_s
        try:
            await self._nc.publish(f"{self.name}.q.{k}", b"snapshot", reply=inbox)
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise nats.errors.TimeoutError
                msg = await sub.next_msg(timeout=left)
                if (msg.headers or {}).get("Status") == "503":
                    raise nats.errors.NoRespondersError
                data = parts.add(msg.headers, msg.data)
                if data is not None:
                    got = json.loads(data)
                    return got
        finally:
            await sub.unsubscribe()

    async def wait_applied(self, m: int, *, timeout_s: float = 120.0) -> list[dict[str, Any]]:
        """Wait until every shard reached input event ``m``; their statuses (polled
        without the state hash, which values every row; returned with it). Raises
        RuntimeError naming a shard that stopped with an error, TimeoutError."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            got = []
            for k in range(self.n):
                try:
                    got.append(await self.status(k, hashed=False, timeout_s=1.0))
                except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                    got.append({"k": k, "m": -1, "error": None})
            failed = [g for g in got if g.get("error")]
            if failed:  # the first in the log: later ones may follow from it
                g = min(failed, key=lambda g: (g.get("error_at") or 0, g["k"]))
                raise RuntimeError(f"shard {g['k']}: {g['error']}")
            if all(g["m"] >= m for g in got):  # polled without hashes; once with them
                return [await self.status(k, timeout_s=30.0) for k in range(self.n)]
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"shards at {[g['m'] for g in got]}, waiting for {m}")
            await asyncio.sleep(0.05)

    async def out_events(self, upto: int) -> dict[int, list[dict[str, Any]]]:
        """Every input event's out-events over the shards (the market's news once, from
        shard 0), read back from the verdict stream up to input event ``upto``."""
        info = await self._js.stream_info(f"{self.name}-v")
        total = int(info.state.last_seq)
        sub = await self._js.subscribe(f"{self.name}.v.*", ordered_consumer=True,
                                       pending_msgs_limit=1_000_000,
                                       pending_bytes_limit=1 << 30)
        per: dict[int, list[list[dict[str, Any]]]] = {}
        wide: dict[int, list[dict[str, Any]]] = {}
        verdicts: dict[int, set[bool]] = {}
        first: dict[tuple[int, int, str], bytes] = {}
        self.duplicates = 0
        try:
            parts = Parts()
            for _ in range(total):
                msg = await sub.next_msg(timeout=10)
                data = parts.add(msg.headers, msg.data)
                if data is None:  # a part of a message sent in parts
                    continue
                d = json.loads(data)
                if "venue" in d:  # a shard's venue fingerprint at its start
                    continue
                m = int(d["m"])
                kind = next((x for x in ("ok", "g", "state", "wide") if x in d), "out")
                key = (m, int(d["k"]), kind)
                if key in first:  # a restarted shard's again, past the duplicate window
                    if first[key] != data:
                        raise ShardDivergenceError(
                            f"input event {m}: shard {d['k']} published two verdicts")
                    self.duplicates += 1
                    continue
                first[key] = data
                if kind in ("g", "state"):  # the venue-wide decision's flags and states
                    continue
                if kind == "wide":  # the event decided over the gathered venue
                    wide[m] = d["out"]
                    continue
                if m <= upto:
                    per.setdefault(m, [[] for _ in range(self.n)])[int(d["k"])].extend(
                        d.get("out", []))
                    if "ok" in d and "out" in d:  # a verdict (a cross-fill vote has no out)
                        verdicts.setdefault(m, set()).add(bool(d["ok"]))
        finally:
            await sub.unsubscribe()
        split = [m for m, oks in verdicts.items() if len(oks) > 1]
        if split:
            raise ShardDivergenceError(f"input event {min(split)}: accepted by some shards, "
                                       "rejected by others")
        # an event decided over the gathered venue: its out-events are that decision's
        # (what the shards published before they knew it needed the venue is dropped)
        merged = {m: merge_out_json(shards) for m, shards in sorted(per.items())}
        merged.update({m: out for m, out in wide.items() if m <= upto})
        return dict(sorted(merged.items()))

    async def account(self, account: str, *, timeout_s: float = 5.0) -> dict[str, Any] | None:
        """``account``'s view, asked of the shard that holds it (None: no such account)."""
        reply = await self._nc.request(f"{self.name}.q.{shard_of(account, self.n)}",
                                       f"account:{account}".encode(), timeout=timeout_s)
        got: dict[str, Any] | None = json.loads(reply.data)["account"]
        return got


def merge_out_json(per_shard: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """JSON twin of :func:`~solvency.service.shards.merge_out`: accounts' events from every
    shard, the market's news from shard 0, a rejection once, settlements summed."""
    out: list[dict[str, Any]] = []
    settled: dict[str, int] = {}
    for k, got in enumerate(per_shard):
        for o in got:
            if o.get("type") == "settled":
                at = settled.get(str(o["market"]))
                if at is None:
                    settled[str(o["market"])] = len(out)
                    out.append(dict(o))
                else:
                    prev = out[at]
                    for f in ("paid", "received", "rounding"):
                        prev[f] = str(_dec(prev[f]) + _dec(o[f]))
            elif o.get("type") == "rejected":
                if o not in out:  # a broadcast event every shard rejected: once
                    out.append(o)
            elif k == FUND_SHARD or "account" in o:
                out.append(o)
    return out


def _dec(x: object) -> Any:
    from decimal import Decimal

    return Decimal(str(x))
