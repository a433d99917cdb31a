"""One streamed pass of the CLI's path (read, parse, apply) over bench_replay's generated
log, timing ``Engine.apply`` apart, with progress every 250,000 events.

The 1,000,000-account figures of docs/benchmarks.md ("The 1,000,000-account replay")
came from this pass: ``python bench/bench_replay_streamed.py 1000 10000 1000000``. Unlike
bench_replay.py it keeps one engine and one pass per size, so the largest log fits in
memory and time; it prints the per-event CPU of apply and of the whole pass.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_replay as br
from machine import describe
from solvency.adapters.eventlog import LineError, read_events
from solvency.core.model.presets import load_preset
from solvency.engine.engine import Engine


def one_pass(n: int) -> None:
    """Write the ``n``-account log, then read, parse and apply it in one streamed pass."""
    pt = time.process_time
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.jsonl"
        c = pt()
        k = br.write_log(path, n)
        print(f"{n:,} accounts: {k:,} events written in {pt() - c:.1f} s CPU", flush=True)
        e = Engine(load_preset("binance"))
        applied = 0.0
        c0, w0, i = pt(), time.time(), 0
        for ev in read_events(path):
            if isinstance(ev, LineError):
                continue
            c = pt()
            e.apply(ev)
            applied += pt() - c
            i += 1
            if i % 250_000 == 0:
                print(f"  {i:,} events, {pt() - c0:.0f} s CPU, {time.time() - w0:.0f} s wall",
                      flush=True)
        total = pt() - c0
        print(f"{n:>9,} accounts {k:,} events: apply {applied:.1f} s CPU "
              f"({k / applied:,.0f} ev/s, {applied / k * 1e6:.1f} us/ev), read+parse+apply "
              f"{total:.1f} s ({k / total:,.0f} ev/s), ratio {total / applied:.2f}x, wall "
              f"{time.time() - w0:.0f} s", flush=True)
        first, steady, cpu = br.time_view(e, "a0")
        print(f"  account_view {cpu:.1f} us CPU ({steady:.1f} wall), first after an event "
              f"{first / 1000:.1f} ms", flush=True)


if __name__ == "__main__":
    print(describe(), flush=True)
    for arg in sys.argv[1:] or ["1000", "10000"]:
        one_pass(int(arg))
