"""Input readers (issue 23): market data CSV and event lines. Run: ``python bench/bench_inputs.py``.

Market data (item 5), best of ``--repeat`` runs and the first run apart:

* ``read_ohlcv`` (pyarrow.csv into arrays, vectorised checks) against ``read_ohlcv_lines``
  (the per-line reader it falls back to) on the 58,419-row hourly BTC file of
  ``../shared/data`` (target: about 10x), and the arrays checked identical;
* ``read_book_depth`` against its per-line reader on the 28,790-row bookDepth file.

Event lines (item 2): per-event microseconds of

* the hand-written parser, ``parse_event_line`` (``json_object`` with ``Decimal`` numbers,
  then ``parse_event``), the one the engine uses;
* pydantic: ``json.loads(line, parse_float=Decimal)`` then ``validate_python`` of the
  published event-line models (``solvency.core.model.event_schema``, the schema of
  ``docs/schema/event-v1.json``: ``extra="forbid"``, the parser's rules), then the
  engine's frozen dataclass (``to_event``); pydantic's own JSON reader is not measured:
  it reads numbers through float and loses digits;
* ``Engine.apply`` of the same events (binance preset, 1,000 accounts), for scale.

Every line of the workload and of the demo log is parsed by both and the events compared
equal before anything is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import numpy as np

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

from bench_replay import write_log
from machine import describe
from solvency.adapters.ohlcv import read_ohlcv, read_ohlcv_lines
from solvency.core.model import events as ev
from solvency.core.model.event_schema import EVENT_LINE, to_event
from solvency.core.model.presets import load_preset
from solvency.engine.engine import Engine
from solvency.sim.market import _depth_lines, read_book_depth

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HOURLY = "btcusdt_binance_spot_1h_2017-08-17_2024-04-21.csv.gz"
BOOK_DEPTH = "btcusdt_binance_um_bookdepth_2025-10-10.csv.gz"


def best(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(first run, best of the others) in seconds."""
    times = []
    for _ in range(repeat + 1):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times[0], min(times[1:])


def bench_csv(repeat: int) -> None:
    path = DATA / HOURLY
    fast, slow = read_ohlcv(path), read_ohlcv_lines(path)
    same = all(np.array_equal(getattr(fast, k), getattr(slow, k))
               for k in ("ts_ms", "open", "high", "low", "close", "volume"))
    f0, f = best(lambda: read_ohlcv(path), repeat)
    s0, s = best(lambda: read_ohlcv_lines(path), max(1, repeat // 3))
    print(f"OHLCV {HOURLY} ({len(fast):,} rows, identical arrays: {same})")
    print(f"  pyarrow + numpy checks : {f * 1e3:8.1f} ms best (first {f0 * 1e3:.1f} ms)")
    print(f"  per-line reader        : {s * 1e3:8.1f} ms best (first {s0 * 1e3:.1f} ms)")
    print(f"  ratio                  : {s / f:8.1f}x (target about 10x)")
    dpath = DATA / BOOK_DEPTH
    a, b = read_book_depth(dpath), _depth_lines(dpath)
    same = all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    f0, f = best(lambda: read_book_depth(dpath), repeat)
    s0, s = best(lambda: _depth_lines(dpath), max(1, repeat // 3))
    print(f"bookDepth {BOOK_DEPTH} ({a[0].size:,} rows, identical arrays: {same})")
    print(f"  pyarrow + numpy checks : {f * 1e3:8.1f} ms best (first {f0 * 1e3:.1f} ms)")
    print(f"  per-line reader        : {s * 1e3:8.1f} ms best (first {s0 * 1e3:.1f} ms)")
    print(f"  ratio                  : {s / f:8.1f}x")


def pydantic_event(line: str) -> ev.InputEvent:
    """json.loads with Decimal numbers, the published event-line models, the dataclass."""
    return to_event(EVENT_LINE.validate_python(json.loads(line, parse_float=Decimal)))


def _lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.strip() and ln[0] != "#"]


def bench_events(repeat: int, n_accounts: int) -> None:
    demo = Path(ev.__file__).resolve().parents[2] / "data" / "demo_events.jsonl"
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "events.jsonl"
        write_log(log, n_accounts)
        lines = _lines(log)
    for line in [*lines, *_lines(demo)]:
        a, b = ev.parse_event_line(line), pydantic_event(line)
        if a != b:
            sys.exit(f"the two parsers disagree on {line}: {a} != {b}")
    n = len(lines)
    _, hand = best(lambda: [ev.parse_event_line(ln) for ln in lines], repeat)
    _, pyd = best(lambda: [pydantic_event(ln) for ln in lines], repeat)
    _, loads = best(lambda: [json.loads(ln, parse_float=Decimal) for ln in lines], repeat)
    events = [ev.parse_event_line(ln) for ln in lines]

    def apply() -> None:
        engine = Engine(load_preset("binance"))
        for e in events:
            engine.apply(e)

    _, app = best(apply, max(1, repeat // 2))
    print(f"event lines: {n:,} (deposits, fills, prices; {n_accounts:,} accounts), both "
          "parsers agree on every line and on the demo log")
    print(f"  hand-written parse_event_line     : {hand / n * 1e6:6.2f} us/event")
    print(f"  json.loads + pydantic + dataclass : {pyd / n * 1e6:6.2f} us/event "
          f"({pyd / hand:.2f}x the hand-written; json.loads alone {loads / n * 1e6:.2f} us)")
    print(f"  Engine.apply                      : {app / n * 1e6:6.2f} us/event")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--accounts", type=int, default=1_000)
    args = parser.parse_args()
    import pyarrow
    import pydantic
    print(describe() + f" | pyarrow {pyarrow.__version__}, pydantic {pydantic.__version__}")
    if not (DATA / HOURLY).is_file():
        sys.exit(f"{DATA / HOURLY}: not present (../shared/data beside the checkout)")
    bench_csv(args.repeat)
    bench_events(args.repeat, args.accounts)


if __name__ == "__main__":
    main()
