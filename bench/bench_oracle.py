"""Oracle and pre-trade benchmarks, each beside a naive baseline measured in the same run.

* pre-trade through the engine: ``order`` events through :meth:`Engine.apply` on a book
  of 10,000 accounts x 5 positions over 50 markets (the real path: the engine's view of
  the book, the what-if margin, the rate limit, the ``order`` out-event; target >= 50,000
  orders/s of CPU time), and :func:`check_order` on one core with a simple in-memory
  dict view beside it (the stub figure: what the checks cost without the engine);
* oracle aggregation: 100 markets x 5 sources per tick with the numba kernel (target
  < 1 ms), against a naive per-market Python loop (sorting lists, plain median).

Run: ``.venv/bin/python bench/bench_oracle.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from collections import Counter
from decimal import Decimal

import numpy as np

from bench_engine import N_MARKETS, population, venue
from machine import describe
from solvency.core.oracle.kernels import aggregate
from solvency.engine.engine import Engine
from solvency.engine.pretrade import (
    LeverageTier,
    MarketLimits,
    Order,
    RateLimiter,
    check_order,
)

LIMITS = MarketLimits(price_band=0.05, size_max=100.0, notional_max_quote=1e7,
                      position_max=1e3, oi_max=1e6,
                      leverage_tiers=(LeverageTier(250_000.0, 50.0),
                                      LeverageTier(1e7, 20.0)))


class View:
    """Plain dict-backed view: what an engine adapter looks like."""

    def __init__(self) -> None:
        self.marks = {"BTC": 50_000.0}
        self.pos: dict[tuple[str, str], float] = {}
        self.limiter = RateLimiter(1_000_000, 1_000)

    def limits(self, market: str) -> MarketLimits | None:
        return LIMITS if market == "BTC" else None

    def mode(self, market: str) -> str:
        return "normal"

    def mark(self, market: str) -> float | None:
        return self.marks.get(market)

    def position(self, account: str, market: str) -> float:
        return self.pos.get((account, market), 0.0)

    def open_interest(self, market: str) -> float:
        return 1_000.0

    def leverage(self, account: str, market: str) -> float:
        return 10.0

    def free_collateral_after(self, account: str, market: str, delta: float,
                              price: float) -> float:
        return 1e6 - abs(self.position(account, market) + delta) * price / 10.0

    def exceeds_ledger(self, account: str, market: str, delta: float,
                       price: float) -> bool:
        return False

    def rate_limited(self, account: str, now_ms: int) -> bool:
        return self.limiter.would_exceed(account, now_ms)


def naive_check(order: Order, view: View) -> str | None:
    """Baseline: the same checks in Decimal arithmetic (what a first version does)."""
    mark = Decimal(str(view.mark(order.market)))
    price = order.price or mark
    if abs(price / mark - 1) > Decimal("0.05"):
        return "price_outside_band"
    if order.size > Decimal(100):
        return "order_size_too_large"
    if order.size * price > Decimal(10) ** 7:
        return "order_notional_too_large"
    pos = Decimal(str(view.position(order.account, order.market)))
    new = pos + (order.size if order.side == "buy" else -order.size)
    if abs(new) > 1000:
        return "position_limit"
    if Decimal(1_000_000) - abs(new) * price / 10 < 0:
        return "insufficient_initial_margin"
    return None


def bench_pretrade(n: int = 200_000) -> None:
    view = View()
    rng = np.random.default_rng(1)
    orders = [Order(id=str(i), account=f"a{i % 1000}", market="BTC",
                    side="buy" if rng.random() < 0.5 else "sell",
                    size=Decimal(str(round(float(rng.uniform(0.01, 5.0)), 3))),
                    price=Decimal(str(round(50_000 * float(rng.uniform(0.97, 1.03)), 1))),
                    ts_ms=i) for i in range(n)]
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        for o in orders:
            check_order(o, view, o.ts_ms)
        best = min(best, time.perf_counter() - t0)
    t0 = time.perf_counter()
    for o in orders[: n // 4]:
        naive_check(o, view)
    naive = (time.perf_counter() - t0) / (n // 4)
    rate = n / best
    print(f"pre-trade check_order: {rate:,.0f} orders/s ({best / n * 1e6:.2f} us/order, "
          f"target >= 50,000/s) | naive Decimal checks: {1 / naive:,.0f} orders/s | "
          f"ratio {rate * naive:.1f}x")


def naive_aggregate(prices: np.ndarray, ts: np.ndarray, now: int) -> list[float]:
    """Baseline: per-market Python loop, list filtering and statistics.median."""
    out = []
    for m in range(prices.shape[0]):
        fresh = [float(p) for p, t in zip(prices[m], ts[m], strict=True)
                 if math.isfinite(p) and p > 0 and now - t <= 30_000]
        if not fresh:
            out.append(math.nan)
            continue
        med = statistics.median(fresh)
        kept = [p for p in fresh if abs(p / med - 1) <= 0.05]
        out.append(statistics.median(kept) if kept else math.nan)
    return out


def bench_aggregate(n_m: int = 100, n_s: int = 5, reps: int = 2_000) -> None:
    rng = np.random.default_rng(2)
    prices = 100.0 * (1 + 0.001 * rng.standard_normal((n_m, n_s)))
    prices[rng.random((n_m, n_s)) < 0.05] = np.nan
    ts = rng.integers(0, 40_000, (n_m, n_s)).astype(np.int64)
    weights = np.ones((n_m, n_s))
    jump = np.zeros((n_m, n_s), dtype=np.bool_)
    idx, cnt, spr = np.empty(n_m), np.empty(n_m, dtype=np.int64), np.empty(n_m)
    code = np.empty((n_m, n_s), dtype=np.int64)
    aggregate(prices, ts, weights, jump, 40_000, 30_000, 5_000, 0.05, idx, cnt, spr, code)
    t0 = time.perf_counter()
    for _ in range(reps):
        aggregate(prices, ts, weights, jump, 40_000, 30_000, 5_000, 0.05, idx, cnt, spr, code)
    fast = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    for _ in range(20):
        naive_aggregate(prices, ts, 40_000)
    slow = (time.perf_counter() - t0) / 20
    print(f"oracle aggregate {n_m} markets x {n_s} sources: {fast * 1e6:.1f} us/tick "
          f"(target < 1,000 us) | naive per-market loop: {slow * 1e6:.0f} us/tick | "
          f"ratio {slow / fast:.0f}x")


def engine_orders(engine: Engine, n_accounts: int, n: int,
                  rng: np.random.Generator) -> list[Order]:
    """``n`` limit orders of random accounts in random markets near the mark, a quarter
    of them market orders; timestamps 1 ms apart (no account nears the rate limit)."""
    book = engine.book
    marks = [float(p) if p is not None else 1.0 for p in book.marks]
    accounts = rng.integers(0, n_accounts, n)
    markets = rng.integers(0, N_MARKETS, n)
    notional = rng.lognormal(mean=7.0, sigma=1.5, size=n)
    band = rng.uniform(-0.02, 0.02, n)
    sides = rng.random(n) < 0.5
    limit = rng.random(n) < 0.75
    base = (engine.clock_ms or 0) + 1
    orders = []
    for i in range(n):
        m = int(markets[i])
        mark = marks[m]
        size = max(1, round(float(notional[i]) / mark / 0.001)) * Decimal("0.001")
        price = (Decimal(str(round(mark * (1 + float(band[i])), 1))) if limit[i] else None)
        orders.append(Order(id=f"o{i}", account=f"a{int(accounts[i])}",
                            market=book.market_names[m], side="buy" if sides[i] else "sell",
                            size=size, price=price, ts_ms=base + i))
    return orders


def bench_pretrade_engine(n_accounts: int = 10_000, n: int = 50_000,
                          profile: bool = False) -> None:
    """``order`` events through :meth:`Engine.apply` on a real book: CPU time per order."""
    rng = np.random.default_rng(3)
    engine = Engine(venue())
    population(engine, n_accounts, rng)
    orders = engine_orders(engine, n_accounts, n, rng)
    engine.apply(orders[0])  # compile
    reasons: Counter[str] = Counter()
    t0 = time.perf_counter()
    c0 = time.process_time()
    for o in orders[1:]:
        reasons[engine.apply(o)[0].reason or "accepted"] += 1
    cpu = time.process_time() - c0
    wall = time.perf_counter() - t0
    engine.verify()
    top = ", ".join(f"{k} {v:,}" for k, v in reasons.most_common())
    print(f"pre-trade through Engine.apply ({n_accounts:,} accounts x 5 positions, "
          f"{N_MARKETS} markets): {(n - 1) / cpu:,.0f} orders/s of CPU time, "
          f"{(n - 1) / wall:,.0f}/s wall ({cpu / (n - 1) * 1e6:.1f} us/order CPU; target "
          f">= 50,000/s) | answers: {top}")
    if profile:
        import cProfile
        import pstats

        more = engine_orders(engine, n_accounts, 20_000, rng)
        more = [dataclasses.replace(o, id=f"p{o.id}") for o in more]
        prof = cProfile.Profile()
        prof.enable()
        for o in more:
            engine.apply(o)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--orders", type=int, default=50_000)
    ap.add_argument("--profile", action="store_true",
                    help="cProfile 20,000 orders through the engine")
    args = ap.parse_args()
    print(describe(), flush=True)
    bench_aggregate()
    bench_pretrade_engine(args.accounts, args.orders, args.profile)
    bench_pretrade()
