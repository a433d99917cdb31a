"""Collateral valued by rule (issue 22): one report of a collateral asset's own book,
re-margining every account that holds it, beside a mark move of a market every one of
them holds a position in (the baseline: the engine's price update), in the same run.

The book: ``N`` accounts of the ``binance-2025-10-10`` preset, each long or short
0.010 BTC-PERP (at 100,000) and holding 0.30-0.60 WBETH. Both updates move a price by
one small step (WBETH's own book 4,280 -> 4,279.99 and back; BTC 100,000 -> 99,999.9 and
back), so nothing is liquidated: the figures are the valuation of the ``N`` holders and
the liquidator's trigger over them, CPU time (the machine is shared: process time, not
wall), the median of ``--repeat`` pairs of updates.

Run: ``.venv/bin/python bench/bench_collateral.py --accounts 100000``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from decimal import Decimal

import numpy as np

from machine import describe
from solvency.core.model.events import Deposit, Price
from solvency.core.model.presets import load_preset
from solvency.core.oracle import OracleReport
from solvency.engine.engine import Engine

T0 = 1_760_000_000_000


def build(n: int) -> Engine:
    """``n`` accounts holding WBETH and one BTC-PERP position each."""
    e = Engine(load_preset("binance-2025-10-10"))
    e.apply(Price(id="eth", market="ETH-PERP", price=Decimal(4000), ts_ms=T0))
    e.apply(Price(id="btc", market="BTC-PERP", price=Decimal(100_000), ts_ms=T0))
    e.apply(OracleReport(id="b0", source="book", price=Decimal(4280), ts_ms=T0,
                         asset="WBETH"))
    names = [f"a{i}" for i in range(n)]
    m = e.book.market_index["BTC-PERP"]
    lots = np.where(np.arange(n) % 2 == 0, 10, -10).astype(np.int64)  # 0.010 BTC
    e.load_book(names, "USDT", np.full(n, 2_000 * 10**6, dtype=np.int64),
                np.arange(n, dtype=np.int64), np.full(n, m, dtype=np.int64), lots,
                np.full(n, 1_000_000, dtype=np.int64))  # 100,000 / tick 0.1
    rng = np.random.default_rng(7)
    for i, w in enumerate(rng.integers(30, 61, size=n).tolist()):
        e.apply(Deposit(id=f"w{i}", account=names[i], asset="WBETH",
                        amount=Decimal(w) / 100, ts_ms=T0))
    return e


def timed(e: Engine, event: object) -> tuple[float, list[object]]:
    """CPU seconds of one ``Engine.apply`` and its out-events."""
    start = time.process_time()
    out = e.apply(event)  # type: ignore[arg-type]
    return time.process_time() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    print(describe())
    t = time.process_time()
    e = build(args.accounts)
    print(f"book: {args.accounts:,} accounts holding WBETH and a BTC-PERP position "
          f"(built in {time.process_time() - t:.1f} s CPU)")
    holders = e.book.asset_holders[e.book.asset_index["WBETH"]].view().shape[0]
    coll: list[float] = []
    mark: list[float] = []
    ts = T0 + 1_000
    for k in range(args.repeat):
        for price in ("4279.99", "4280"):
            ts += 1_000
            cpu, out = timed(e, OracleReport(id=f"r{k}{price}", source="book",
                                             price=Decimal(price), ts_ms=ts, asset="WBETH"))
            assert not [o for o in out if getattr(o, "type", "") == "liquidation"]
            coll.append(cpu)
        for price in ("99999.9", "100000"):
            ts += 1_000
            cpu, _ = timed(e, Price(id=f"m{k}{price}", market="BTC-PERP",
                                    price=Decimal(price), ts_ms=ts))
            mark.append(cpu)
    c, m_ = statistics.median(coll), statistics.median(mark)
    print(f"WBETH book report, {holders:,} holders re-margined: {c * 1e3:.2f} ms CPU "
          f"(median of {len(coll)})")
    print(f"BTC-PERP mark move, the same accounts (baseline): {m_ * 1e3:.2f} ms CPU "
          f"(median of {len(mark)})")
    print(f"ratio collateral / mark: {c / m_:.2f}x")
    e.verify()


if __name__ == "__main__":
    main()
