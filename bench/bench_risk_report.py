"""Liquidations at risk (issue 18's risk report). Run: ``python bench/bench_risk_report.py
[--accounts N]``.

The engine benchmark's book (bench_engine.population: N accounts x 5 positions over 50
markets, heavy-tailed sizes, 2-8x leverage) answers 12 shocks (-30 .. +30 %) through
``engine.summary.liquidations_at_risk`` (the engine's own kernels on a scratch copy of the
row sums). Target: <= 1 s for 1,000,000 accounts. Beside it, in the same run: one full
re-margin of the book (``Book.remargin_all``), the floor of a shock done by re-margining.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench_engine import population, venue
from machine import describe
from solvency.engine.engine import Engine
from solvency.engine.summary import liquidations_at_risk

SHOCKS = (-0.30, -0.25, -0.20, -0.15, -0.10, -0.05, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30)


def main() -> None:
    print(describe(), flush=True)
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1_000_000)
    args = ap.parse_args()
    engine = Engine(venue())
    t0 = time.perf_counter()
    population(engine, args.accounts, np.random.default_rng(7))
    print(f"setup: {args.accounts:,} accounts x 5 positions in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    liquidations_at_risk(engine, SHOCKS[:1])  # JIT warm-up
    t0 = time.perf_counter()
    rows = liquidations_at_risk(engine, SHOCKS)
    took = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.book.remargin_all()
    full = time.perf_counter() - t0
    print(f"liquidations at risk, {len(SHOCKS)} shocks (+ the current marks): {took:.2f} s "
          f"(target <= 1 s at 1M accounts: {'met' if took <= 1 else f'missed by {took:.2f}x'}"
          f"); one full re-margin {full:.3f} s -> {took / ((len(SHOCKS) + 1) * full):.2f}x "
          "a re-margin per shock")
    for r in rows:
        print(f"  {r['shock']:>5}: {r['accounts']:>9,} accounts, notional {r['notional_usd']}")


if __name__ == "__main__":
    main()
