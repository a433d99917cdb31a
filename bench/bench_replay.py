"""Replay at scale (issue 26). Run: ``python bench/bench_replay.py [--max-accounts N]``.

Generates seeded event logs with 1,000, 10,000, 100,000 and 1,000,000 accounts on the
``binance`` preset (one deposit per account, 3 fills per account on BTC-PERP and ETH-PERP,
a price move every 1,000 events) and prints, for each size, in one run:

* ``Engine.apply`` events/s over the parsed events (parsing excluded);
* ``solvency replay`` events/s on the same file through the CLI code path (reading and
  parsing the JSONL, applying, the summary with its top-N account lists), and the ratio
  to ``Engine.apply`` (target: within 1.5x);
* per-event cost against the smallest size (target: within 1.3x from 1,000 to 1,000,000);
* ``Engine.account_view`` per call on a held account (target: under 50 us at any size;
  wall clock and CPU time), the first call after an event (it recomputes the ADL ranks of
  the account's markets, vectorized over their holders) reported apart;
* the CPU time of every account's entry (``replay --accounts-out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("NUMBA_NUM_THREADS", "1")


from machine import describe
from solvency.adapters.eventlog import LineError, read_events
from solvency.core.model.events import Price
from solvency.core.model.presets import load_preset
from solvency.engine.engine import Engine
from solvency.engine.summary import account_entries, replay_summary

FILLS_PER_ACCOUNT = 3
T0_MS = 1_774_512_000_000


def write_log(path: Path, n_accounts: int, seed: int = 7) -> int:
    """Write a seeded replay log; return its event count."""
    rng = np.random.default_rng(seed)
    n_fills = n_accounts * FILLS_PER_ACCOUNT // 2  # two accounts per fill
    lines: list[str] = []
    ts = T0_MS
    btc, eth = 84_000.0, 3_200.0
    lines.append(json.dumps({"type": "price", "id": "p0", "ts": ts, "market": "BTC-PERP",
                             "price": f"{btc:.1f}"}))
    lines.append(json.dumps({"type": "price", "id": "p1", "ts": ts, "market": "ETH-PERP",
                             "price": f"{eth:.2f}"}))
    amounts = rng.integers(2_000, 50_000, n_accounts)
    for i in range(n_accounts):
        lines.append(f'{{"type":"deposit","id":"d{i}","ts":{ts},"account":"a{i}",'
                     f'"asset":"USDT","amount":"{amounts[i]}"}}')
    buyers = rng.integers(0, n_accounts, n_fills)
    sellers = (buyers + rng.integers(1, n_accounts, n_fills)) % n_accounts
    on_btc = rng.random(n_fills) < 0.6
    sizes_btc = rng.integers(1, 50, n_fills) / 1000.0
    sizes_eth = rng.integers(1, 200, n_fills) / 100.0
    moves = rng.normal(0.0, 2e-4, n_fills)
    for k in range(n_fills):
        ts += 10
        if k % 1000 == 999:
            btc *= 1.0 + float(moves[k])
            eth *= 1.0 + float(moves[k]) * 1.2
            lines.append(f'{{"type":"price","id":"pb{k}","ts":{ts},"market":"BTC-PERP",'
                         f'"price":"{btc:.1f}"}}')
            lines.append(f'{{"type":"price","id":"pe{k}","ts":{ts},"market":"ETH-PERP",'
                         f'"price":"{eth:.2f}"}}')
        if on_btc[k]:
            market, size, px = "BTC-PERP", f"{sizes_btc[k]:.3f}", f"{btc:.1f}"
        else:
            market, size, px = "ETH-PERP", f"{sizes_eth[k]:.2f}", f"{eth:.2f}"
        lines.append(f'{{"type":"fill","id":"f{k}","ts":{ts},"market":"{market}",'
                     f'"buyer":"a{buyers[k]}","seller":"a{sellers[k]}","size":"{size}",'
                     f'"price":"{px}"}}')
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def run_apply(path: Path) -> tuple[float, Engine]:
    events = [e for e in read_events(path) if not isinstance(e, LineError)]
    engine = Engine(load_preset("binance"))
    t = time.process_time()
    for ev in events:
        engine.apply(ev)
    return time.process_time() - t, engine


def run_cli(path: Path) -> tuple[float, dict[str, Any]]:
    # the CLI's own code path: read_events (parse), Engine.apply, replay_summary
    t = time.process_time()
    engine = Engine(load_preset("binance"))
    bad = 0
    for item in read_events(path):
        if isinstance(item, LineError):
            bad += 1
            continue
        engine.apply(item)
    summary = replay_summary(engine, bad)
    return time.process_time() - t, summary


def time_view(engine: Engine, account: str) -> tuple[float, float, float]:
    """(first call after an event, steady call: best of 5 rounds of 400 wall-clock, the
    same in this process's CPU time) in microseconds."""
    mark = engine.book.marks[engine.book.market_index["BTC-PERP"]]
    engine.apply(Price(id=f"view-{time.time_ns()}", market="BTC-PERP", price=mark))
    t = time.perf_counter()
    engine.account_view(account)
    first = (time.perf_counter() - t) * 1e6
    reps = 400
    wall = cpu = float("inf")
    for _ in range(5):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(reps):
            engine.account_view(account)
        cpu = min(cpu, (time.process_time() - c) / reps * 1e6)
        wall = min(wall, (time.perf_counter() - t) / reps * 1e6)
    return first, wall, cpu


def time_listing(engine: Engine) -> float:
    """CPU seconds of every account's entry (``replay --accounts-out``)."""
    t = time.process_time()
    for _ in account_entries(engine):
        pass
    return time.process_time() - t


def main() -> None:
    print(describe(), flush=True)
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max-accounts", type=int, default=1_000_000)
    ap.add_argument("--sizes", default="1000,10000,100000,1000000",
                    help="account counts, comma-separated (the first is the per-event "
                         "cost's baseline)")
    args = ap.parse_args()
    sizes = [n for n in (int(x) for x in args.sizes.split(",")) if n <= args.max_accounts]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm.jsonl"  # compile the numba kernels outside the timings
        write_log(warm, 200, seed=1)
        run_cli(warm)
        time_view(run_apply(warm)[1], "a0")
        for n in sizes:
            path = Path(tmp) / f"log_{n}.jsonl"
            n_events = write_log(path, n)
            t_apply, engine = run_apply(path)
            t_cli, summary = run_cli(path)
            assert summary["state_hash"] == engine.state_hash(), "CLI and apply disagree"
            first, steady, steady_cpu = time_view(engine, "a0")
            listing = time_listing(engine)
            rows.append((n, n_events, t_apply, t_cli))
            print(f"{n:>9,} accounts {n_events:>10,} events: apply {n_events / t_apply:>9,.0f}"
                  f" ev/s  cli {n_events / t_cli:>9,.0f} ev/s  cli/apply {t_cli / t_apply:4.2f}x"
                  f"  account_view {steady:6.1f} us wall {steady_cpu:6.1f} us CPU (first after"
                  f" an event {first:8.1f} us)  --accounts-out listing {listing:6.2f} s CPU",
                  flush=True)
    base = rows[0][2] / rows[0][1]
    print("per-event cost of Engine.apply against 1,000 accounts:")
    for n, n_events, t_apply, _ in rows:
        print(f"  {n:>9,}: {t_apply / n_events / base:4.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
