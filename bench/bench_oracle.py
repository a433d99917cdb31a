"""Oracle and pre-trade benchmarks, each beside a naive baseline measured in the same run.

* pre-trade through the engine: ``order`` events through :meth:`Engine.apply` on a book
  of 10,000 accounts x 5 positions over 50 markets (the real path: the engine's view of
  the book, the what-if margin, the rate limit, the ``order`` out-event; target >= 50,000
  orders/s of CPU time), and :func:`check_order` on one core with a simple in-memory
  dict view beside it (the stub figure: what the checks cost without the engine);
* oracle aggregation: 100 markets x 5 sources per tick with the numba kernel (target
  < 1 ms), against a naive per-market Python loop (sorting lists, plain median);
* resting orders (``--resting``): the same order stream through :meth:`Engine.apply` on
  the same book under Drift's ``worst_side`` rule with two resting orders per account
  (every order's margin check then values the worse side of each market with orders),
  beside the ``none`` rule and no resting orders, in the same process;
* ``--baseline DIR``: the no-resting-orders figure of this tree and of the checkout at
  ``DIR`` (e.g. a worktree of main), alternately in subprocesses, best of ``--rounds``.

Run: ``.venv/bin/python bench/bench_oracle.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from bench_engine import N_MARKETS, population, venue
from machine import describe
from solvency.core.model.venue import build_venue
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


def _worst_side_venue() -> Any:
    """:func:`bench_engine.venue` with Drift's open-order rule (worst side, 0.01 USD)."""
    return build_venue({**venue().raw, "margin": {"open_orders": "worst_side",
                                                  "open_order_margin_usd": "0.01"}})


def _orders_cpu(engine: Engine, orders: list[Order]) -> tuple[float, Counter[str]]:
    reasons: Counter[str] = Counter()
    c0 = time.process_time()
    for o in orders:
        reasons[engine.apply(o)[0].reason or "accepted"] += 1
    return time.process_time() - c0, reasons


def bench_resting(n_accounts: int = 10_000, n: int = 20_000, rounds: int = 3) -> None:
    """Orders/s through ``Engine.apply`` under the ``none`` rule without resting orders
    and under ``worst_side`` with two resting orders per account (a bid 1-3 % under the
    mark and an ask 1-3 % over it, in two of the account's markets), best of ``rounds``;
    the same book and order stream in both."""
    plain_best = rest_best = math.inf
    rested = 0
    reasons: Counter[str] = Counter()
    for _ in range(rounds):
        engines = []
        for kind in ("none", "worst_side"):
            rng = np.random.default_rng(3)
            engine = Engine(venue() if kind == "none" else _worst_side_venue())
            population(engine, n_accounts, rng)
            orders = engine_orders(engine, n_accounts, n, rng)
            engines.append((engine, orders))
        (plain, orders_p), (resting, orders_r) = engines
        rng = np.random.default_rng(4)
        book = resting.book
        marks = [float(p) if p is not None else 1.0 for p in book.marks]
        t0 = (resting.clock_ms or 0) + 1
        placed = 0
        for a in range(n_accounts):
            for j, side in enumerate(("buy", "sell")):
                m = int(rng.integers(0, N_MARKETS))
                away = float(rng.uniform(0.01, 0.03)) * (-1 if side == "buy" else 1)
                price = Decimal(str(round(marks[m] * (1 + away), 1)))
                size = max(1, round(float(rng.lognormal(6.0, 1.0)) / marks[m] / 0.001))
                out = resting.apply(Order(id=f"r{a}-{j}", account=f"a{a}",
                                          market=book.market_names[m], side=side,
                                          size=size * Decimal("0.001"), price=price,
                                          ts_ms=t0, rest=True))
                placed += out[0].type == "order"
        rested = placed
        # the stream after the placements' clock (same orders, later timestamps)
        shift = (resting.clock_ms or 0) - (plain.clock_ms or 0)
        later = [dataclasses.replace(o, ts_ms=(o.ts_ms or 0) + shift) for o in orders_r]
        plain.apply(orders_p[0])
        resting.apply(later[0])
        cpu_p, _ = _orders_cpu(plain, orders_p[1:])
        cpu_r, reasons = _orders_cpu(resting, later[1:])
        plain_best, rest_best = min(plain_best, cpu_p), min(rest_best, cpu_r)
        resting.verify()
    k = n - 1
    top = ", ".join(f"{key} {v:,}" for key, v in reasons.most_common(4))
    print(f"resting orders ({n_accounts:,} accounts x 5 positions, {rested:,} resting, "
          f"best of {rounds}): worst_side {k / rest_best:,.0f} orders/s CPU "
          f"({rest_best / k * 1e6:.1f} us/order) | none, no resting orders "
          f"{k / plain_best:,.0f}/s ({plain_best / k * 1e6:.1f} us) | ratio "
          f"{rest_best / plain_best:.2f}x the time | worst_side answers: {top}")


_RATE = re.compile(r"([\d,]+) orders/s of CPU time")


def _tree_rate(root: str, n_accounts: int, n: int) -> float:
    """Orders/s of CPU time of :func:`bench_pretrade_engine` run by the code at ``root``
    (its ``src`` and ``bench`` first on the path), in a fresh interpreter."""
    code = ("import sys; sys.path[:0] = [sys.argv[1] + '/src', sys.argv[1] + '/bench']; "
            "from bench_oracle import bench_pretrade_engine; "
            "bench_pretrade_engine(int(sys.argv[2]), int(sys.argv[3]))")
    out = subprocess.run([sys.executable, "-c", code, root, str(n_accounts), str(n)],
                         capture_output=True, text=True, check=True).stdout
    found = _RATE.search(out)
    if found is None:
        raise RuntimeError(f"no orders/s figure in the output of {root}: {out[-300:]}")
    return float(found.group(1).replace(",", ""))


def bench_baseline(baseline: str, n_accounts: int, n: int, rounds: int) -> None:
    """This tree's and ``baseline``'s orders/s without resting orders, alternately."""
    here = str(Path(__file__).resolve().parents[1])
    best = {"this tree": 0.0, "baseline": 0.0}
    for _ in range(rounds):
        best["baseline"] = max(best["baseline"], _tree_rate(baseline, n_accounts, n))
        best["this tree"] = max(best["this tree"], _tree_rate(here, n_accounts, n))
    print(f"orders through Engine.apply without resting orders, best of {rounds} "
          f"alternate runs: this tree {best['this tree']:,.0f}/s | baseline {baseline} "
          f"{best['baseline']:,.0f}/s | ratio {best['this tree'] / best['baseline']:.3f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--orders", type=int, default=50_000)
    ap.add_argument("--profile", action="store_true",
                    help="cProfile 20,000 orders through the engine")
    ap.add_argument("--resting", action="store_true",
                    help="only the resting-orders figure (worst_side vs none)")
    ap.add_argument("--baseline", metavar="DIR",
                    help="only the side-by-side: this tree vs the checkout at DIR")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(describe(), flush=True)
    if args.resting or args.baseline:
        if args.baseline:
            bench_baseline(args.baseline, args.accounts, args.orders, args.rounds)
        if args.resting:
            bench_resting(args.accounts, min(args.orders, 20_000), args.rounds)
        raise SystemExit(0)
    bench_aggregate()
    bench_pretrade_engine(args.accounts, args.orders, args.profile)
    bench_pretrade()
