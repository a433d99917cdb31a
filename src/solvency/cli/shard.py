"""``solvency shard``: account-sharded engines on NATS JetStream (docs/scale_out.md).

``solvency shard run --shard K/N`` runs one shard; ``solvency shard feed EVENTS.jsonl``
appends a log to the venue's input stream, waits for the shards and prints each shard's
state hash, the hash over the shards and the venue digest, checked against one engine
that replays the same file (:func:`~solvency.service.shards.venue_digest`);
``solvency shard status`` and ``solvency shard account NAME`` ask the running shards.
"""

from __future__ import annotations

import asyncio
import json
import signal
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import nats.errors
import typer
from rich.console import Console

from solvency.adapters.eventlog import load_venue
from solvency.adapters.proofs import (
    Liabilities,
    ProofSet,
    load_reserves,
    proofs_from,
    write_proofs,
)
from solvency.core.model.events import EventError, json_object
from solvency.core.model.venue import ConfigError
from solvency.core.proofs import ProofError
from solvency.engine.engine import Engine
from solvency.engine.inputs import parse_input
from solvency.service.shard_node import ShardFeed, ShardNode, ShardStreamError
from solvency.service.shards import (
    UnshardableError,
    parse_shard,
    shard_of,
    sharded_liabilities,
    shards_hash,
    venue_digest,
)

__all__ = ["shard_app"]

shard_app = typer.Typer(help="Account-sharded engines on NATS JetStream.",
                        no_args_is_help=True)
err = Console(stderr=True)

StreamOption = Annotated[str, typer.Option(
    "--stream", help="NATS server URL(s), comma-separated (nats://127.0.0.1:4222).")]
NameOption = Annotated[str, typer.Option(
    "--stream-name", help="The venue's stream name (streams NAME-in and NAME-v).")]
ReplicasOption = Annotated[int, typer.Option(
    "--stream-replicas", min=1, help="Copies of each stream (3 on a 3-node cluster).")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@shard_app.command("run")
def run(
    shard: Annotated[str, typer.Option("--shard", help="This shard and the count: K/N.")],
    stream: StreamOption = "nats://127.0.0.1:4222",
    stream_name: NameOption = "solvency",
    venue: Annotated[str, typer.Option("--venue", help="Preset name or venue file.")] = (
        "binance"),
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", help="Folder of this shard's snapshot (shard-K.json).")] = None,
    snapshot_every: Annotated[int, typer.Option(
        "--snapshot-every", min=1, help="Input events between snapshots.")] = 5_000,
    stream_replicas: ReplicasOption = 1,
    wait_timeout: Annotated[float, typer.Option(
        "--wait-timeout", min=0.1,
        help="Seconds to wait for the other shards' messages of one event; past it the "
             "shard stops with an error naming what did not come.")] = 120.0,
) -> None:
    """Run shard K of N: apply its accounts' events and every broadcast from the stream.

    A shard that stops on an error (another shard silent past --wait-timeout, a message
    JetStream did not store, a different venue) prints it at once, keeps answering
    `shard status` with it, and exits 1 when stopped (3 for a stream error)."""
    try:
        k, n = parse_shard(shard)
        v = load_venue(venue)
    except (ValueError, ConfigError) as exc:
        raise _fail(str(exc)) from None
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
    try:
        node = ShardNode(stream, stream_name, k, n, v, state_dir=state_dir,
                         snapshot_every=snapshot_every, replicas=stream_replicas,
                         wait_s=wait_timeout, on_error=lambda message: err.print(
                             f"[bold red]error:[/] shard {k}/{n}: {message}"))
    except (ValueError, KeyError, UnshardableError) as exc:
        raise _fail(f"shard {k}/{n}: {exc}") from None
    except OSError as exc:
        raise _fail(f"{state_dir}: {exc.strerror}") from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await node.run(stop)

    try:
        asyncio.run(main())
    except (ConnectionError, ShardStreamError) as exc:
        raise _fail(str(exc), 3) from None
    except (OSError, nats.errors.Error) as exc:
        raise _fail(f"NATS at {stream}: {exc or type(exc).__name__}", 3) from None
    if node.error:
        raise _fail(node.error, 1)


@shard_app.command("feed")
def feed(
    events: Annotated[Path, typer.Argument(help="JSON Lines of input events.")],
    shards: Annotated[int, typer.Option("--shards", min=1, help="Shard count N.")],
    stream: StreamOption = "nats://127.0.0.1:4222",
    stream_name: NameOption = "solvency",
    venue: Annotated[str, typer.Option(
        "--venue", help="Preset or file, to check the digest against one engine.")] = (
        "binance"),
    check: Annotated[bool, typer.Option(
        "--check/--no-check", help="Also replay the log through one engine and compare "
                                   "the venue digest.")] = True,
    timeout_s: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = 300.0,
    stream_replicas: ReplicasOption = 1,
) -> None:
    """Append EVENTS to the venue's input stream; wait for the shards; print the hashes."""
    objs: list[dict[str, Any]] = []
    try:
        for i, line in enumerate(events.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    obj = json_object(line)
                    parse_input(obj)  # refused here, before anything is sent
                except EventError as exc:
                    raise _fail(f"{events}:{i}: {exc}") from None
                objs.append(obj)
    except OSError as exc:
        raise _fail(f"{events}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise _fail(f"{events}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        one = Engine(load_venue(venue)) if check else None
    except ConfigError as exc:
        raise _fail(str(exc)) from None

    async def main() -> dict[str, Any]:
        f = ShardFeed(stream, stream_name, shards, replicas=stream_replicas)
        await f.connect()
        try:
            last = await f.publish(objs)
            await f.wait_applied(last, timeout_s=timeout_s)
            states = [await f.status(k, snapshot=True) for k in range(shards)]
        finally:
            await f.close()
        engines = [Engine.restore(s["snapshot"]["engine"]) for s in states]
        return {"seq": last, "fed": len(objs), "shards": {s["k"]: s["state_hash"] for s in states},
                "shards_hash": shards_hash([s["state_hash"] for s in states]),
                "venue_digest": venue_digest(engines)}

    result = _run_async(main(), stream)
    if one is not None and result["seq"] == result["fed"]:  # one engine replays this file
        for obj in objs:
            one.apply(parse_input(obj))
        result["one_engine_digest"] = venue_digest([one])
        result["equal"] = result["one_engine_digest"] == result["venue_digest"]
    print(json.dumps(result, indent=2))
    if result.get("equal") is False:
        raise _fail("the shards' venue digest differs from one engine's", 1)


def _run_async(coro: Any, stream: str) -> Any:
    try:
        return asyncio.run(coro)
    except EventError as exc:
        raise _fail(str(exc)) from None
    except RuntimeError as exc:  # a shard stopped (its error named) or diverged
        raise _fail(str(exc), 1) from None
    except (TimeoutError, ConnectionError) as exc:
        raise _fail(str(exc), 3) from None
    except (OSError, nats.errors.Error) as exc:
        raise _fail(f"NATS at {stream}: {exc or type(exc).__name__}", 3) from None


@shard_app.command("status")
def status(
    shards: Annotated[int, typer.Option("--shards", min=1, help="Shard count N.")],
    stream: StreamOption = "nats://127.0.0.1:4222",
    stream_name: NameOption = "solvency",
) -> None:
    """Each shard's input event reached, state hash and error; the hash over the shards."""

    async def main() -> dict[str, Any]:
        f = ShardFeed(stream, stream_name, shards)
        await f.connect()
        try:
            log = await f.last_seq()
            got = [await f.status(k) for k in range(shards)]
        finally:
            await f.close()
        return {"log": log, "shards": got,
                "shards_hash": shards_hash([g["state_hash"] for g in got])}

    print(json.dumps(_run_async(main(), stream), indent=2))


@shard_app.command("account")
def account(
    name: Annotated[str, typer.Argument(help="Account id.")],
    shards: Annotated[int, typer.Option("--shards", min=1, help="Shard count N.")],
    stream: StreamOption = "nats://127.0.0.1:4222",
    stream_name: NameOption = "solvency",
) -> None:
    """An account's margin, equity and positions, from the shard that holds it."""

    async def main() -> dict[str, Any] | None:
        f = ShardFeed(stream, stream_name, shards)
        await f.connect()
        try:
            return await f.account(name)
        finally:
            await f.close()

    view = _run_async(main(), stream)
    if view is None:
        raise _fail(f"no account {name!r} on shard {shard_of(name, shards)}/{shards}", 1)
    print(json.dumps(view, indent=2, default=str))


def shard_proofs(engines: list[Engine], *, seq: int, seed: bytes,
                 reserves: dict[str, Decimal] | None = None) -> ProofSet:
    """A proof of liabilities over the shards (docs/proofs.md): one Merkle sum tree over
    every account's owed balances, each from its shard, accounts by name; the root names
    the hash over the shards' state hashes."""
    first = engines[0]
    owed = sharded_liabilities(engines)
    clock = first.clock_ms
    taken = Liabilities(owed, seq, shards_hash([e.state_hash() for e in engines]), clock,
                        first.venue.name,
                        {a: first.venue.assets[a].decimals for a in owed["assets"]})
    return proofs_from(taken, seed=seed, reserves=reserves)


@shard_app.command("prove")
def prove(
    shards: Annotated[int, typer.Option("--shards", min=1, help="Shard count N.")],
    stream: StreamOption = "nats://127.0.0.1:4222",
    stream_name: NameOption = "solvency",
    out: Annotated[Path, typer.Option(help="Output folder: root.json and proofs/.")
    ] = Path("proofs"),
    reserves: Annotated[Path | None, typer.Option(
        help="Declared holdings per asset (JSON object): adds the reserve ratio.")] = None,
    seed_file: Annotated[Path | None, typer.Option(
        help="Secret salt seed (created if missing).")] = None,
) -> None:
    """Publish a proof of liabilities over the running shards (as solvency prove does
    for one engine), read when every shard is at the same input event."""
    from solvency.cli.proofs import _seed  # one seed rule for both commands

    try:
        held = load_reserves(reserves) if reserves is not None else None
    except (ConfigError, OSError) as exc:
        raise _fail(str(exc)) from None

    async def main() -> list[dict[str, Any]]:
        f = ShardFeed(stream, stream_name, shards)
        await f.connect()
        try:
            await f.wait_applied(await f.last_seq(), timeout_s=60)
            return [await f.status(k, snapshot=True) for k in range(shards)]
        finally:
            await f.close()

    states = _run_async(main(), stream)
    at = {s["m"] for s in states}
    if len(at) != 1:
        raise _fail(f"the shards moved on while being read (at {sorted(at)}): prove when "
                    "the stream is quiet", 3)
    engines = [Engine.restore(s["snapshot"]["engine"]) for s in states]
    try:
        proofs = shard_proofs(engines, seq=at.pop(), seed=_seed(seed_file), reserves=held)
        n = write_proofs(proofs, out)
    except (ConfigError, ProofError, OSError) as exc:
        raise _fail(str(exc)) from None
    root = proofs.root
    typer.echo(f"root {root['root']} over {n:,} accounts at input event {root['seq']} "
               f"({shards} shards, hash over the shards {root['state_hash'][:16]})")
    for asset, total in root["totals_display"].items():
        ratio = root.get("reserve_ratio", {}).get(asset)
        typer.echo(f"  {asset}: liabilities {total}" + (f", reserve ratio {ratio}"
                                                         if ratio else ""))
    typer.echo(f"wrote {out / 'root.json'} and {n:,} proofs in {out / 'proofs'}")
