"""``solvency serve`` (the live risk service) and ``solvency keys`` (its API keys)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from solvency.adapters.store import SCOPES, EventStore, StoreError
from solvency.cli.tables import print_table
from solvency.service.app import AppConfig, create_app
from solvency.service.core import ServiceConfig

__all__ = ["follow", "keys_app", "serve"]

console = Console()
err = Console(stderr=True)

DEFAULT_DB = "sqlite:///solvency.db"

DbOption = Annotated[str, typer.Option(
    "--db", help="Store URL: sqlite:///PATH (default ./solvency.db) or "
                 "postgresql+psycopg://USER@HOST:PORT/DB.")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _now_ms() -> int:
    return int(datetime.now(tz=UTC).timestamp() * 1000)


def serve(
    db: DbOption = DEFAULT_DB,
    venue: Annotated[str | None, typer.Option(
        help="Venue preset or venue file (a new store: default binance; an existing "
             "store: must match the one it was created with).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind (127.0.0.1: this machine "
                                           "only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    snapshot_every: Annotated[int, typer.Option(
        min=0, help="Snapshot after this many events (0: only on clean shutdown).")
    ] = 100_000,
    pm_grid: Annotated[str | None, typer.Option(
        help="Scenario grid for portfolio-margin accounts: a shipped grid (deribit_pm, "
             "cme_span_16, paradex_pm) or a grid TOML file (a new store: default "
             "deribit_pm, recorded in the store; an existing store: must match the one "
             "it was created with).")] = None,
    max_body: Annotated[int, typer.Option(min=1024, help="Largest request body, bytes.")
    ] = 8 * 1024 * 1024,
    rate_limit: Annotated[float, typer.Option(
        min=0.001, help="Requests per second per API key (token bucket).")] = 5_000.0,
    rate_burst: Annotated[float, typer.Option(
        min=1.0, help="Requests a key may send at once before the rate applies.")
    ] = 10_000.0,
    stream_buffer: Annotated[int, typer.Option(
        min=1, help="Frames queued per stream client; a client further behind is closed "
                    "(code 4008) and resumes with from_seq.")] = 10_000,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")
    ] = "info",
    stream: Annotated[str | None, typer.Option(
        help="NATS URL(s), comma-separated (nats://127.0.0.1:4222): the event log of "
             "record on JetStream; the process holding the writer lease writes, the "
             "others follow (docs/scale_out.md).")] = None,
    stream_name: Annotated[str, typer.Option(help="JetStream stream name.")] = "solvency",
    stream_replicas: Annotated[int, typer.Option(
        min=1, max=5, help="JetStream replicas (3 on a 3-node NATS cluster).")] = 1,
    lease_ttl: Annotated[float, typer.Option(
        min=0.5, help="Seconds the writer lease outlives its writer (fail-over time).")
    ] = 3.0,
    takeover: Annotated[bool, typer.Option(
        "--takeover/--no-takeover", help="Take the writer lease when it is free.")] = True,
    advertise: Annotated[str | None, typer.Option(
        help="This process's URL, told to clients of the other replicas "
             "(default http://HOST:PORT).")] = None,
) -> None:
    """Run the risk engine as a service: HTTP API, stream, metrics and dashboard.

    Starts by recovering the state from the store (newest proven snapshot + the log),
    refuses to start if the store does not prove it, and snapshots on shutdown.
    docs/service.md has the routes and operations.
    """
    import uvicorn

    level = log_level.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise _fail(f"--log-level {log_level!r}: one of debug, info, warning, error")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        probe = EventStore(db)
        keys = [k for k in probe.list_keys() if k.revoked_ms is None]
        probe.close()
    except StoreError as exc:
        raise _fail(str(exc)) from None
    if not keys:
        err.print("[yellow]note:[/] the store has no API keys; create one with "
                  f"`solvency keys create --scope submit --scope read --db {db}`")
    fatal: list[str] = []

    def on_fatal(message: str) -> None:
        fatal.append(message)
        server.should_exit = True

    app = create_app(
        ServiceConfig(db=db, venue=venue, pm_grid=pm_grid, snapshot_every=snapshot_every,
                      stream=stream, stream_name=stream_name,
                      stream_replicas=stream_replicas, lease_ttl_s=lease_ttl,
                      takeover=takeover, advertise=advertise or f"http://{host}:{port}"),
        AppConfig(max_body_bytes=max_body, rate_per_s=rate_limit, rate_burst=rate_burst,
                  stream_buffer=stream_buffer),
        on_fatal=on_fatal)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level.lower(),
                            access_log=False, lifespan="on", ws="websockets")
    server = uvicorn.Server(config)
    server.run()
    if fatal:
        raise _fail(f"refusing to start: {fatal[0]}", 1)
    if not server.started:
        raise _fail("the service did not start (the reason is logged above)", 1)


def follow(
    stream: Annotated[str, typer.Option(
        help="NATS URL(s) of the stream to follow (nats://127.0.0.1:4222).")],
    db: DbOption = DEFAULT_DB,
    stream_name: Annotated[str, typer.Option(help="JetStream stream name.")] = "solvency",
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8001,
    snapshot_every: Annotated[int, typer.Option(min=0, help="Snapshot every N events.")
    ] = 100_000,
    takeover: Annotated[bool, typer.Option(
        "--takeover/--no-takeover",
        help="Become the writer when the writer's lease expires (a hot standby); "
             "--no-takeover: a read replica only.")] = True,
    lease_ttl: Annotated[float, typer.Option(min=0.5, help="Lease TTL, seconds.")] = 3.0,
    stream_replicas: Annotated[int, typer.Option(min=1, max=5, help="JetStream replicas.")
    ] = 1,
    advertise: Annotated[str | None, typer.Option(help="This process's URL.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """A replica: follow the stream into its own store, serve the read API, the stream
    and the dashboard, report its lag (GET /readyz, /metrics), and take over as the
    writer when the writer's lease expires. It accepts the API keys of its own --db
    (register the writer's keys there with `solvency keys create --token`)."""
    serve(db=db, venue=None, host=host, port=port, snapshot_every=snapshot_every,
          pm_grid=None, max_body=8 * 1024 * 1024, rate_limit=5_000.0,
          rate_burst=10_000.0, stream_buffer=10_000, log_level=log_level, stream=stream,
          stream_name=stream_name, stream_replicas=stream_replicas, lease_ttl=lease_ttl,
          takeover=takeover, advertise=advertise)


keys_app = typer.Typer(help="API keys of the service: create, list, revoke.",
                       no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    scope: Annotated[list[str], typer.Option(
        help="read, submit or govern (repeat for several).")],
    db: DbOption = DEFAULT_DB,
    label: Annotated[str, typer.Option(help="A note to tell keys apart.")] = "",
    token: Annotated[str | None, typer.Option(
        help="Register this existing key (slv_<id>_<secret>) instead of a new one: the "
             "same key on a writer's store and its replicas' stores.")] = None,
) -> None:
    """Create a key and print it on stdout, once: only its hash is stored."""
    bad = sorted(set(scope) - set(SCOPES))
    if bad:
        raise _fail(f"unknown scope {bad[0]!r}; known: {', '.join(SCOPES)}")
    try:
        store = EventStore(db)
        rec, token = store.create_key(scope, label=label, now_ms=_now_ms(), token=token)
        store.close()
    except StoreError as exc:
        raise _fail(str(exc)) from None
    err.print(f"key {rec.id} ({', '.join(sorted(rec.scopes))}) created; it is shown once:")
    typer.echo(token)


@keys_app.command("list")
def keys_list(db: DbOption = DEFAULT_DB) -> None:
    """List keys (id, scopes, label, created, revoked); never the keys themselves."""
    try:
        store = EventStore(db)
        keys = store.list_keys()
        store.close()
    except StoreError as exc:
        raise _fail(str(exc)) from None
    table = Table(title=f"API keys ({len(keys)})")
    for col in ("id", "scopes", "label", "created (UTC)", "revoked (UTC)"):
        table.add_column(col)
    for k in keys:
        table.add_row(k.id, ",".join(sorted(k.scopes)), k.label, _iso(k.created_ms),
                      _iso(k.revoked_ms) if k.revoked_ms is not None else "")
    print_table(console, table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `solvency keys list`).")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Revoke a key: it stops working at once (a running service checks on each use)."""
    try:
        store = EventStore(db)
        rec = store.revoke_key(key_id, _now_ms())
        store.close()
    except StoreError as exc:
        raise _fail(str(exc)) from None
    err.print(f"key {rec.id} revoked")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
