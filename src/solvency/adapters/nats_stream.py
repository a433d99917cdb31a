"""The event log on NATS JetStream: publish accepted events, follow them, hold the writer
lease (issue 16, hot replicas).

One JetStream stream per venue (``NAME``, subject ``NAME.events``, file storage) holds the
accepted events in sequence order; its stream sequence *is* the service's sequence number,
because only the writer publishes and every publish carries
``Nats-Expected-Last-Sequence: seq - 1``: a second writer (a stale one after a fail-over)
cannot append, it gets "wrong last sequence" (:class:`StreamFencedError`). Each message also
carries ``Nats-Msg-Id`` = the event id, so a publish retried after a lost answer is
de-duplicated by the server within its duplicate window.

The writer lease is a key in a JetStream key-value bucket (``NAME-lease``) whose entries
expire after ``ttl`` seconds: the writer creates it and refreshes it every ``ttl / 3``;
when the writer dies its entry expires and a replica's ``create`` succeeds.

nats-py is asyncio-only; the service's writer is a thread. :class:`JetStreamLog` runs its
own event loop in a daemon thread and offers blocking calls (the engine stays
single-threaded; only the network waits happen on the loop).

A Kafka adapter (confluent-kafka) would offer the same four calls: ``publish`` with an
idempotent producer and a transactional fence, ``fetch`` from a partition offset, and a
lease in a compacted topic or ZooKeeper/KRaft; nothing above this module knows which.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.js import api

import nats
from solvency.adapters.store import LogRow

__all__ = ["JetStreamLog", "StreamError", "StreamFencedError", "connect", "decode_row",
           "encode_row"]

T = TypeVar("T")


class StreamError(Exception):
    """The stream could not be reached or answered an error (message says which)."""


class StreamFencedError(StreamError):
    """A publish was refused because the stream moved on: another writer appended."""


def encode_row(row: LogRow) -> bytes:
    """A log row as a stream message body (the chain is each store's own)."""
    return json.dumps({"seq": row.seq, "id": row.event_id, "type": row.type,
                       "payload": row.payload, "received_ms": row.received_ms,
                       "key_id": row.key_id, "out": row.out},
                      separators=(",", ":")).encode()


def decode_row(data: bytes, stream_seq: int) -> LogRow:
    """A stream message body back to a log row; its ``seq`` must be the stream's."""
    try:
        d = json.loads(data)
        row = LogRow(int(d["seq"]), str(d["id"]), str(d["type"]), str(d["payload"]),
                     int(d["received_ms"]), d["key_id"], str(d["out"]), "")
    except (ValueError, KeyError, TypeError) as exc:
        raise StreamError(f"stream message {stream_seq}: not a solvency log row "
                          f"({type(exc).__name__}: {exc})") from None
    if row.seq != stream_seq:
        raise StreamError(f"stream message {stream_seq} carries seq {row.seq}")
    return row


async def connect(url: str, *, timeout_s: float = 10.0) -> Any:
    """A NATS connection that reconnects for ever once made; ConnectionError when no
    server of ``url`` (comma-separated) answers within ``timeout_s`` (nats-py would retry
    the first connection for ever, printing each failure)."""
    last: list[BaseException] = []

    async def quiet(exc: Exception) -> None:  # nats-py prints a traceback per failure
        last[:] = [exc]

    try:
        return await asyncio.wait_for(nats.connect(
            servers=url.split(","), connect_timeout=3, max_reconnect_attempts=-1,
            reconnect_time_wait=0.2, error_cb=quiet), timeout_s)
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        why = last[0] if last else exc
        raise ConnectionError(f"cannot connect to NATS at {url}: "
                              f"{type(why).__name__}: {why}") from None



class JetStreamLog:
    """Blocking facade over a JetStream stream and its lease bucket."""

    def __init__(self, url: str, name: str, *, replicas: int = 1, lease_ttl_s: float = 3.0,
                 timeout_s: float = 5.0) -> None:
        self.url, self.name, self.subject = url, name, f"{name}.events"
        self.replicas, self.lease_ttl_s, self.timeout_s = replicas, lease_ttl_s, timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="solvency-nats",
                                        daemon=True)
        self._thread.start()
        self._nc: Any = None
        self._js: Any = None
        self._kv: Any = None
        self._sub: Any = None
        self._sub_next = 0
        self._lease_rev = 0
        self._run(self._connect(), timeout=45.0)

    # ------------------------------------------------------------------ plumbing

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout if timeout is not None else self.timeout_s * 4)
        except StreamError:
            raise
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            fut.cancel()
            raise StreamError(f"stream {self.name} at {self.url}: "
                              f"{type(exc).__name__}: {exc}") from None

    async def _connect(self) -> None:
        try:
            self._nc = await connect(self.url)
        except ConnectionError as exc:
            raise StreamError(str(exc)) from None
        self._js = self._nc.jetstream(timeout=self.timeout_s)
        # a cluster that just started elects its JetStream leaders first: retry a while
        deadline = asyncio.get_running_loop().time() + 30.0
        while True:
            try:
                await self._ensure()
                return
            except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError,
                    nats.js.errors.NoStreamResponseError) as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise StreamError(f"JetStream at {self.url} not ready: "
                                      f"{type(exc).__name__}: {exc}") from None
                await asyncio.sleep(0.25)

    async def _ensure(self) -> None:
        """Create the stream and the lease bucket, or bind to them."""
        config = api.StreamConfig(name=self.name, subjects=[self.subject],
                                  storage=api.StorageType.FILE, num_replicas=self.replicas,
                                  duplicate_window=120.0)
        try:
            await self._js.add_stream(config)
        except nats.js.errors.BadRequestError:
            info = await self._js.stream_info(self.name)  # exists with other settings
            if info.config.subjects != [self.subject]:
                raise StreamError(f"stream {self.name} exists with subjects "
                                  f"{info.config.subjects}") from None
        bucket = f"{self.name}-lease"
        try:
            self._kv = await self._js.create_key_value(
                bucket=bucket, ttl=self.lease_ttl_s, history=1, replicas=self.replicas)
        except nats.js.errors.BadRequestError:
            self._kv = await self._js.key_value(bucket)

    def close(self) -> None:
        """Drain the connection and stop the loop."""
        async def _close() -> None:
            if self._nc is not None:
                await self._nc.close()
        with contextlib.suppress(StreamError):
            self._run(_close(), timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # ------------------------------------------------------------------ the log

    def last_seq(self) -> int:
        """The stream's last sequence number (0 for an empty stream)."""
        async def _last() -> int:
            info = await self._js.stream_info(self.name)
            return int(info.state.last_seq)
        return self._run(_last())

    def publish(self, rows: Sequence[LogRow]) -> None:
        """Append rows (consecutive seqs continuing the stream); returns once JetStream
        stored all of them (on every replica it needs). :class:`StreamFencedError` if
        the stream's last sequence is not ``rows[0].seq - 1`` (another writer)."""
        async def _pub() -> None:
            # pipelined: one request each, sent in order on one connection; the server
            # checks each expected-last-sequence in that order
            acks = await asyncio.gather(*(self._js.publish(
                self.subject, encode_row(r),
                headers={"Nats-Msg-Id": r.event_id,
                         "Nats-Expected-Last-Sequence": str(r.seq - 1)})
                for r in rows), return_exceptions=True)
            for r, ack in zip(rows, acks, strict=True):
                if isinstance(ack, nats.js.errors.APIError) and ack.err_code == 10071:
                    raise StreamFencedError(f"publish seq {r.seq}: the stream moved on "
                                            "(another writer)")
                if isinstance(ack, BaseException):
                    raise StreamError(f"publish seq {r.seq}: {type(ack).__name__}: {ack}")
                if int(ack.seq) != r.seq:
                    raise StreamFencedError(f"publish seq {r.seq}: stored as "
                                            f"{ack.seq}" + (" (duplicate id)"
                                                            if ack.duplicate else ""))
        self._run(_pub())

    def fetch(self, after_seq: int, limit: int = 2_000, wait_s: float = 0.2) -> list[LogRow]:
        """Rows after ``after_seq`` in order (up to ``limit``; waits up to ``wait_s`` for
        the first)."""
        async def _fetch() -> list[LogRow]:
            if self._sub is None or self._sub_next != after_seq + 1:
                if self._sub is not None:
                    await self._sub.unsubscribe()
                self._sub = await self._js.subscribe(
                    self.subject, ordered_consumer=True,
                    config=api.ConsumerConfig(
                        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                        opt_start_seq=after_seq + 1))
                self._sub_next = after_seq + 1
            rows: list[LogRow] = []
            timeout = wait_s
            while len(rows) < limit:
                try:
                    msg = await self._sub.next_msg(timeout=timeout)
                except nats.errors.TimeoutError:
                    break
                seq = int(msg.metadata.sequence.stream)
                rows.append(decode_row(msg.data, seq))
                self._sub_next = seq + 1
                timeout = 0.001 if rows else wait_s
            return rows
        return self._run(_fetch(), timeout=wait_s + self.timeout_s * 4)

    # ------------------------------------------------------------------ the lease

    def lease_holder(self) -> dict[str, Any] | None:
        """Who holds the writer lease (its JSON value), or ``None`` when it is free."""
        async def _get() -> dict[str, Any] | None:
            try:
                entry = await self._kv.get("writer")
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                return None
            if entry.value is None:
                return None
            value: dict[str, Any] = json.loads(entry.value)
            return value
        return self._run(_get())

    def acquire(self, holder: dict[str, Any]) -> bool:
        """Take the lease if it is free (expired or never held)."""
        async def _acquire() -> bool:
            try:
                self._lease_rev = await self._kv.create("writer", json.dumps(holder).encode())
            except nats.js.errors.KeyWrongLastSequenceError:
                return False
            return True
        return self._run(_acquire())

    def refresh(self, holder: dict[str, Any]) -> bool:
        """Extend the lease; ``False`` if it was lost (expired and taken, or gone)."""
        async def _refresh() -> bool:
            try:
                self._lease_rev = await self._kv.update(
                    "writer", json.dumps(holder).encode(), last=self._lease_rev)
            except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.APIError):
                return False
            return True
        return self._run(_refresh())

    def release(self) -> None:
        """Give the lease up (clean shutdown) so a replica takes over at once."""
        async def _release() -> None:
            with contextlib.suppress(nats.js.errors.APIError):
                await self._kv.delete("writer", last=self._lease_rev)
        with contextlib.suppress(StreamError):
            self._run(_release(), timeout=5)
