"""Durable store throughput (issue 15). Run: ``python bench/bench_store.py [--rows N]``.

Prints, for SQLite (a file in a temporary directory: WAL, ``synchronous=FULL``) and for
PostgreSQL (a throwaway cluster with ``fsync=on`` and ``synchronous_commit=on``, from
tests/postgres.py, or ``--postgres-url``):

* ``EventStore.append`` rows/s in batches of 1 (one durable commit per event: bounded by
  the disk's fsync latency) and of 500 (target on SQLite: 20,000 rows/s);
* ``read``/``iter_from`` rows/s over the whole log;
* the cost of opening a SQLite store of ``--rows`` rows (default 100,000): most of it is
  ``PRAGMA quick_check``, timed on its own.

Rows look like the service's: a ~150-byte canonical JSON payload and a short out array.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.postgres

from tests.postgres import PostgresUnavailable, fresh_database, running_postgres

from machine import describe
from solvency.adapters.store import EventStore, LogRow


def make_rows(first: int, n: int) -> list[LogRow]:
    return [LogRow(s, f"ev-{s:012d}", "fill",
                   f'{{"account":"a{s % 9973}","id":"ev-{s:012d}","market":"BTC-PERP",'
                   f'"price":"84123.5","side":"buy","size":"0.015","ts":{1_774_512_000_000 + s},'
                   f'"type":"fill"}}',
                   1_774_512_000_000 + s, "ab12cd34", '[{"seq":1,"type":"fill_applied"}]', "")
            for s in range(first, first + n)]


def bench_append(store: EventStore, batch: int, n_rows: int) -> float:
    """rows/s appending ``n_rows`` after the current head in batches of ``batch``."""
    head = store.head()[0]
    batches = [make_rows(head + 1 + k, min(batch, n_rows - k)) for k in range(0, n_rows, batch)]
    t0 = time.perf_counter()
    for b in batches:
        store.append(b)
    return n_rows / (time.perf_counter() - t0)


def run_backend(name: str, url: str, n_rows: int, n_single: int) -> None:
    store = EventStore(url)
    try:
        single = bench_append(store, 1, n_single)
        bulk = bench_append(store, 500, n_rows)
        t0 = time.perf_counter()
        n = sum(1 for _ in store.iter_from(0))
        read = n / (time.perf_counter() - t0)
        print(f"{name}: append {single:,.0f} rows/s in batches of 1 ({n_single} commits), "
              f"{bulk:,.0f} rows/s in batches of 500 ({n_rows:,} rows); "
              f"iter_from {read:,.0f} rows/s", flush=True)
    finally:
        store.close()


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str | None]:
    if url:
        yield url
        return
    try:
        with running_postgres(durable=True) as server:
            yield fresh_database(server, "bench_store")
    except PostgresUnavailable as exc:
        print(f"postgresql: skipped ({exc})")
        yield None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000, help="rows appended in batches of 500")
    ap.add_argument("--single", type=int, default=300, help="rows appended one per commit")
    ap.add_argument("--postgres-url", default=None,
                    help="an empty PostgreSQL database (default: start a throwaway cluster)")
    args = ap.parse_args()
    print(describe(), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        path = Path(tmp) / "store.db"
        run_backend("sqlite", f"sqlite:///{path}", args.rows, args.single)
        total = args.rows + args.single
        size = path.stat().st_size
        t0 = time.perf_counter()
        EventStore(f"sqlite:///{path}").close()
        opened = time.perf_counter() - t0
        con = sqlite3.connect(path)
        t0 = time.perf_counter()
        con.execute("PRAGMA quick_check").fetchall()
        quick = time.perf_counter() - t0
        con.close()
        print(f"sqlite open of {total:,} rows ({size / 2**20:.1f} MiB): {opened * 1e3:.0f} ms, "
              f"of which PRAGMA quick_check {quick * 1e3:.0f} ms", flush=True)
    with postgres(args.postgres_url) as url:
        if url is not None:
            run_backend("postgresql", url, args.rows, args.single)


if __name__ == "__main__":
    main()
