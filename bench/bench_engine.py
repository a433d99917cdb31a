"""Core engine benchmarks (issue: core engine). Run: ``python bench/bench_engine.py``.

Prints, for one core:
* full re-margin of 1,000,000 cross accounts x 5 positions across 50 markets with tiered
  maintenance margin (target <= 50 ms), and the ratio against a plain-Python per-account
  loop over the reference twins measured on a sample in the same run;
* a mark-price update of one market with ~100,000 holders through ``Engine.apply``
  (target <= 5 ms), beside its baseline in the same run: the same re-mark and valuation
  by the two kernels it used before issue 12 (``apply_slots`` then ``evaluate_rows``, no
  prefetch), and where the time of one update goes (``--profile``: cProfile of 20
  updates);
* fills per second through ``Engine.apply`` (target >= 50,000/s);
* ``--rules N``: the full re-margin of N accounts x 5 positions on the same book with every
  market under each margin rule, side by side in one run: Binance tiers (float rule),
  dYdX (``oi_scaled``, decided in integers, with OI caps so the scaling runs), Drift
  (``size_premium``, integers and the exact root) and Drift with its weight on positive
  unrealized PnL (issue 24: the integer rules must not cost more than they must).
Times are the best of several runs, wall clock and this process's CPU time (the second
is what other jobs on a shared machine move least). Use ``--accounts N`` for a smaller
run.
"""

from __future__ import annotations

import argparse
import os
import time
from decimal import Decimal
from typing import Any

import numpy as np

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

from machine import describe
from solvency.core.margin.kernels import S_ROW, apply_slots, evaluate_rows
from solvency.core.margin.models import TieredModel
from solvency.core.model.events import Fill, Price
from solvency.core.model.presets import PRESETS
from solvency.core.model.venue import build_venue
from solvency.engine.engine import Engine

N_MARKETS = 50
TICK = Decimal("0.1")


RULES: dict[str, dict[str, Any]] = {
    "tiered (Binance, float rule)": {
        "model": "tiered", "tiers": PRESETS["binance"]["markets"]["BTC-PERP"]["tiers"]},
    "oi_scaled (dYdX, integers)": {
        "model": "oi_scaled", "imr": "0.05", "maintenance_fraction": "0.6",
        "open_interest_lower_cap": "1000000", "open_interest_upper_cap": "1000000000000"},
    "size_premium (Drift, integers)": {
        "model": "size_premium", "imr": "0.1", "mmr": "0.05", "imf_factor": "0.00025"},
    # Drift's weight on positive unrealized PnL on (issue 24 item 3): the haircut reads
    # each position's cost basis (entries within 10 % of the mark: about half in profit)
    "size_premium + PnL weight (Drift)": {
        "model": "size_premium", "imr": "0.1", "mmr": "0.05", "imf_factor": "0.00025",
        "unrealized_pnl_initial_asset_weight": "0.8",
        "unrealized_pnl_maintenance_asset_weight": "0.95",
        "unrealized_pnl_imf_factor": "0.001"},
}


def venue(n_markets: int = N_MARKETS, rule: str = "tiered (Binance, float rule)") -> Any:
    markets = {
        f"M{i:02d}-PERP": {"kind": "linear_perp", "base": f"M{i:02d}", "quote": "USDT",
                           "tick_size": "0.1", "lot_size": "0.001", **RULES[rule]}
        for i in range(n_markets)
    }
    return build_venue({"name": "bench", "assets": {"USDT": {"decimals": 6, "price_usd": "1"}},
                        "markets": markets, "liquidation": {"policy": "close_all"}})


def population(engine: Engine, n_accounts: int, rng: np.random.Generator) -> None:
    marks = rng.uniform(100, 100_000, N_MARKETS).round(1)
    for m in range(N_MARKETS):
        engine.apply(Price(id=f"mark{m}", market=f"M{m:02d}-PERP",
                           price=Decimal(str(marks[m]))))
    k = 5
    # 5 distinct markets per account: argsort of random keys
    picks = np.argsort(rng.random((n_accounts, N_MARKETS)), axis=1)[:, :k]
    pos_account = np.repeat(np.arange(n_accounts), k)
    pos_market = picks.ravel()
    notional = rng.lognormal(mean=8.0, sigma=1.5, size=n_accounts * k)  # heavy-tailed USD
    lots = np.maximum(1, (notional / marks[pos_market] / 0.001)).astype(np.int64)
    lots *= np.where(rng.random(n_accounts * k) < 0.5, 1, -1)
    entry = marks[pos_market] * rng.uniform(0.9, 1.1, n_accounts * k)
    ticks = np.maximum(1, np.round(entry / 0.1)).astype(np.int64)
    acct_notional = np.bincount(pos_account, weights=np.abs(lots) * 0.001 * marks[pos_market],
                                minlength=n_accounts)
    collateral = (acct_notional / rng.uniform(2, 8, n_accounts) * 1e6).astype(np.int64) + 10**6
    names = [f"a{i}" for i in range(n_accounts)]
    engine.load_book(names, "USDT", collateral, pos_account, pos_market, lots, ticks)


def python_baseline(engine: Engine, sample: int) -> float:
    """Plain-Python per-account loop over the reference twins: seconds per account."""
    book = engine.book
    models = [i.margin for i in book.instruments]
    t0 = time.perf_counter()
    for r in range(sample):
        mm_total = 0.0
        im_total = 0.0
        equity = float(book.row_int[r, 0]) / 1e6
        s = int(book.row_first[r])
        while s >= 0:
            m = int(book.slot_market[s])
            mark = float(book.mk[m, 3])
            size = int(book.slot_lots[s]) * 0.001
            value = size * mark
            model = models[m]
            assert isinstance(model, TieredModel)
            im, mm = model.requirement(abs(value), abs(size), 0.0)
            equity += value
            mm_total += mm
            im_total += im
            s = int(book.slot_next[s])
    return (time.perf_counter() - t0) / sample


def best_of(fn: Any, repeat: int) -> float:
    return best_wall_cpu(fn, repeat)[0]


def best_wall_cpu(fn: Any, repeat: int) -> tuple[float, float]:
    """Best wall-clock and best CPU time of ``repeat`` calls, in seconds."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        c0 = time.process_time()
        fn()
        cpu = min(cpu, time.process_time() - c0)
        wall = min(wall, time.perf_counter() - t0)
    return wall, cpu


def two_pass_baseline(engine: Engine, m: int) -> None:
    """The price update's re-mark and valuation as before issue 12: ``apply_slots`` then
    ``evaluate_rows`` over the market's holders (same results, no prefetch)."""
    book = engine.book
    slots = book.holders[m].view()
    apply_slots(slots, book.st, book.row_int, book.mk, book.mki, book.tiers, book.ascale)
    rows = book.st[slots, S_ROW]
    out = np.empty((rows.shape[0], 4))
    evaluate_rows(rows, book.row_int, book.asset_price, book.ascale, book.atier_start,
                  book.atier_count, book.atiers, out, book.pm)


def profile_updates(update: Any, n: int) -> None:
    """cProfile of ``n`` price updates: where the time of one goes."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        update()
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(12)


def bench_fills(n_fills: int, rng: np.random.Generator) -> tuple[float, int]:
    engine = Engine(venue(5))
    for m in range(5):
        engine.apply(Price(id=f"p{m}", market=f"M{m:02d}-PERP", price=Decimal("1000.0")))
    from solvency.core.model.events import Deposit

    n_acc = 1000
    for i in range(n_acc):
        engine.apply(Deposit(id=f"d{i}", account=f"t{i}", asset="USDT",
                             amount=Decimal(1_000_000)))
    buyers = rng.integers(0, n_acc, n_fills)
    sellers = (buyers + rng.integers(1, n_acc, n_fills)) % n_acc
    markets = rng.integers(0, 5, n_fills)
    sizes = rng.integers(1, 500, n_fills)
    prices = rng.integers(9_900, 10_100, n_fills)
    events = [Fill(id=f"f{i}", market=f"M{int(markets[i]):02d}-PERP", buyer=f"t{buyers[i]}",
                   seller=f"t{sellers[i]}", size=Decimal(int(sizes[i])) * Decimal("0.001"),
                   price=Decimal(int(prices[i])) * TICK, fee_buyer=Decimal("0.01"),
                   fee_seller=Decimal("-0.002"))
              for i in range(n_fills)]
    engine.apply(events[0])  # compile
    t0 = time.perf_counter()
    c0 = time.process_time()
    rejected = 0
    for e in events[1:]:
        out = engine.apply(e)
        if out and out[0].type == "rejected":
            rejected += 1
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    engine.verify()
    return (n_fills - 1) / dt, (n_fills - 1) / cpu, rejected


def bench_rules(n_accounts: int, only: str = "") -> None:
    """Full re-margin of the same book under each rule, best CPU time of 9 (side by side)."""
    cpu: dict[str, float] = {}
    for rule in RULES:
        if only and not rule.startswith(only):
            continue
        engine = Engine(venue(rule=rule))
        population(engine, n_accounts, np.random.default_rng(7))
        book = engine.book
        book.remargin_all()  # warm-up (JIT cache)
        cpu[rule] = best_wall_cpu(book.remargin_all, 9)[1]
    base = cpu.get("tiered (Binance, float rule)", 0.0)
    for rule, t in cpu.items():
        ratio = f", {t / base:.2f}x the float rule" if base else ""
        print(f"  full re-margin, {n_accounts:,} accounts x 5, {rule}: {t * 1e3:.1f} ms CPU "
              f"({t / (5 * n_accounts) * 1e9:.1f} ns/position{ratio})")


def main() -> None:
    print(describe(), flush=True)
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1_000_000)
    ap.add_argument("--fills", type=int, default=100_000)
    ap.add_argument("--profile", action="store_true", help="cProfile 20 price updates")
    ap.add_argument("--rules", type=int, default=0, metavar="N",
                    help="also re-margin N accounts under each margin rule, side by side")
    ap.add_argument("--rules-only", action="store_true", help="only the --rules section")
    ap.add_argument("--rule", default="", help="with --rules: only the rule named so "
                    "(tiered, oi_scaled, size_premium)")
    args = ap.parse_args()
    if args.rules:
        print("re-margin by rule:")
        bench_rules(args.rules, args.rule)
        if args.rules_only:
            return
    rng = np.random.default_rng(7)
    engine = Engine(venue())
    t0 = time.perf_counter()
    population(engine, args.accounts, rng)
    print(f"setup: {args.accounts:,} accounts x 5 positions over {N_MARKETS} markets loaded "
          f"in {time.perf_counter() - t0:.1f} s")
    book = engine.book
    book.remargin_all()  # warm-up (JIT cache)
    full, full_cpu = best_wall_cpu(book.remargin_all, 7)
    n_rows = len(book.rows)
    rows_all = np.arange(n_rows, dtype=np.int64)
    _, value_cpu = best_wall_cpu(lambda: book.aggregate(rows_all), 7)
    per_acc_py = python_baseline(engine, 2000)
    py_full = per_acc_py * args.accounts
    print(f"full re-margin: {full * 1e3:.1f} ms wall, {full_cpu * 1e3:.1f} ms CPU for "
          f"{args.accounts:,} accounts ({full_cpu / (5 * args.accounts) * 1e9:.1f} ns/position;"
          f" of which valuing the {n_rows:,} rows {value_cpu * 1e3:.1f} ms; target <= 50 ms"
          f" at 1M)")
    print(f"  plain-Python per-account loop (sample of 2,000, scaled): {py_full:.2f} s "
          f"-> kernel is {py_full / full:.0f}x faster")
    holders = len(book.holders[0])
    seq = iter(range(10**9))
    mark = float(book.mk[0, 3])
    calls: list[int] = []

    def update() -> None:
        i = next(seq)
        px = Decimal(str(round(mark * (1 + 0.001 * ((i % 7) - 3)), 1)))
        calls.append(len(engine.apply(Price(id=f"u{i}", market="M00-PERP", price=px))))

    update()
    two_pass_baseline(engine, 0)  # compile
    one, one_cpu = best_wall_cpu(update, 9)
    kernel, kernel_cpu = best_wall_cpu(lambda: book.mark_market(0), 9)
    base, base_cpu = best_wall_cpu(lambda: two_pass_baseline(engine, 0), 9)
    print(f"price update of one market with {holders:,} holders: {one * 1e3:.2f} ms wall, "
          f"{one_cpu * 1e3:.2f} ms CPU (target <= 5 ms; margin-call out-events per update: "
          f"{min(calls[1:])}-{max(calls[1:])})")
    print(f"  re-mark + valuation kernel (mark_holders, prefetch): {kernel * 1e3:.2f} ms wall,"
          f" {kernel_cpu * 1e3:.2f} ms CPU; baseline two passes (apply_slots + "
          f"evaluate_rows): {base * 1e3:.2f} ms wall, {base_cpu * 1e3:.2f} ms CPU -> "
          f"{base / kernel:.1f}x")
    if args.profile:
        profile_updates(update, 20)
    rate, cpu_rate, rejected = bench_fills(args.fills, rng)
    # wall clock and this process's CPU time: on a shared machine the second is the one
    # that other processes do not move
    print(f"fills through Engine.apply: {rate:,.0f} fills/s wall, {cpu_rate:,.0f} fills/s "
          f"of CPU time ({rejected} rejected; target >= 50,000/s)")


if __name__ == "__main__":
    main()
