"""Stress-lab benchmark: the bundled default scenario end to end through the real engine.

Run: ``python bench/bench_simulate.py`` (one core: numba is pinned to one thread).

The default is a synthetic 2025-10-10-shaped crash: 100,000 accounts, BTC-PERP and
ETH-PERP correlated, 12 hours of 15-second steps (2,880 steps, 5,760 ``Price`` events), the
binance preset with :class:`~solvency.sim.market.ImpactLiquidity` as its liquidity port.
Prints the wall time against the 60 s target and throughput. It then runs the same
scenario on the grid the stress-lab issue names for this benchmark, 2 days of 1-minute
steps (start 00:00, the crash at 21:00; also 2,880 steps), and prints that figure too
(``--no-minute-grid`` skips it). The default itself uses 15-second steps: with 1-minute
steps the cascade jumps past the 0.4 % maintenance margin in one step, so liquidations
start beyond bankruptcy (docs/stress_models.md, the default's calibration).
``--accounts N`` and ``--horizon 6h`` make smaller runs;
``--baseline`` also times the same book and steps on a flat price (no liquidation:
mark updates and re-margining alone), measured in the same process, and prints the ratio.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

from machine import describe
from solvency.sim.run import run_scenario
from solvency.sim.scenario import DEFAULT_SCENARIO_TOML, parse_scenario

TARGET_S = 60.0


MINUTE_GRID = (('start = "2025-10-10T16:00:00Z"', 'start = "2025-10-10T00:00:00Z"'),
               ('horizon = "12h"', 'horizon = "2d"'), ('step = "15s"', 'step = "1m"'),
               ('crash_at = "5h"', 'crash_at = "21h"'), ("verify_every = 240",
                                                          "verify_every = 60"),
               ("vol_window = 120", "vol_window = 30"))


def _minute_grid(text: str) -> str:
    for old, new in MINUTE_GRID:
        if old not in text:
            raise SystemExit(f"bench_simulate: the default no longer has {old!r}")
        text = text.replace(old, new)
    return text


def _scenario(accounts: int | None, horizon: str | None, *, flat: bool = False,
              minute: bool = False) -> object:
    text = _minute_grid(DEFAULT_SCENARIO_TOML) if minute else DEFAULT_SCENARIO_TOML
    if flat:
        for key in ("gap_fraction", "cascade_depth", "vol_annual"):
            text = "\n".join(f"{key} = 0.0" if line.startswith(f"{key} =") else line
                             for line in text.splitlines()) + "\n"
    if accounts is not None:
        text = text.replace("n_accounts = 100000", f"n_accounts = {accounts}")
    if horizon is not None:
        text = text.replace('horizon = "12h"', f'horizon = "{horizon}"')
    return parse_scenario(text, source="default")


def main() -> None:
    print(describe(), flush=True)
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--accounts", type=int, default=None)
    ap.add_argument("--horizon", default=None)
    ap.add_argument("--baseline", action="store_true")
    ap.add_argument("--no-minute-grid", action="store_true")
    args = ap.parse_args()
    scenario = _scenario(args.accounts, args.horizon)
    # warm the numba kernels on a tiny run so compile time is not counted
    run_scenario(parse_scenario(DEFAULT_SCENARIO_TOML.replace(
        "n_accounts = 100000", "n_accounts = 200").replace('horizon = "12h"', 'horizon = "2h"')
        .replace('crash_at = "5h"', 'crash_at = "1h"'), source="warmup"))
    t0 = time.perf_counter()
    res = run_scenario(scenario)  # type: ignore[arg-type]
    wall = time.perf_counter() - t0
    m = res.metrics
    n_steps = m["points"] - 1
    n_events = n_steps * len(res.series.index)
    print(f"default scenario: {m['accounts']:,} accounts, {m['positions']:,} positions, "
          f"{n_steps:,} steps, {n_events:,} price events")
    print(f"  liquidations {m['liquidations']:,}  ADL fills {m['adl_count']:,}  "
          f"bad debt {m['bad_debt']:,.2f}  fund min {m['insurance_fund_min']:,.2f}  "
          f"conserved {m['conserved']}")
    print(f"  wall {wall:.1f} s  (target <= {TARGET_S:.0f} s on one core: "
          f"{'OK' if wall <= TARGET_S else 'MISSED'}, {wall / TARGET_S:.2f}x of target)")
    print(f"  {n_events / wall:,.0f} price events/s, "
          f"{m['positions'] * n_events / len(res.series.index) / wall / 1e6:,.1f} M "
          "position re-margins/s")
    if not args.no_minute_grid:
        minute = _scenario(args.accounts, None, minute=True)
        t2 = time.perf_counter()
        mres = run_scenario(minute)  # type: ignore[arg-type]
        mwall = time.perf_counter() - t2
        mm = mres.metrics
        print(f"same scenario on 2 days of 1-minute steps ({mm['points'] - 1:,} steps): "
              f"wall {mwall:.1f} s ({'OK' if mwall <= TARGET_S else 'MISSED'} against "
              f"{TARGET_S:.0f} s); liquidations {mm['liquidations']:,}, ADL fills "
              f"{mm['adl_count']:,}, fund min {mm['insurance_fund_min']:,.2f}, "
              f"conserved {mm['conserved']}")
    if args.baseline:
        # same book and steps on a flat price: mark updates and re-margining only
        flat = _scenario(args.accounts, args.horizon, flat=True)
        t1 = time.perf_counter()
        quiet = run_scenario(flat)  # type: ignore[arg-type]
        base = time.perf_counter() - t1
        print(f"  baseline (flat price: re-margin only, {quiet.metrics['liquidations']} "
              f"liquidations): {base:.1f} s; full run / baseline = {wall / base:.2f}x")

if __name__ == "__main__":
    main()
