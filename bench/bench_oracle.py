"""Oracle and pre-trade benchmarks, each beside a naive baseline measured in the same run.

* pre-trade: :func:`check_order` on one core with a simple in-memory view (target
  >= 50,000 orders/s);
* oracle aggregation: 100 markets x 5 sources per tick with the numba kernel (target
  < 1 ms), against a naive per-market Python loop (sorting lists, plain median).

Run: ``.venv/bin/python bench/bench_oracle.py``.
"""

from __future__ import annotations

import math
import statistics
import time
from decimal import Decimal

import numpy as np

from machine import describe
from solvency.core.oracle.kernels import aggregate
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


if __name__ == "__main__":
    print(describe(), flush=True)
    bench_aggregate()
    bench_pretrade()
