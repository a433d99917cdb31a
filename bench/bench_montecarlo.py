"""Monte Carlo benchmark: 1,000 paths of a 1-day crash on a 2-worker Dask LocalCluster.

Run: ``python bench/bench_montecarlo.py`` (``--paths N`` to scale down,
``--baseline-paths M`` to time the one-worker baseline on fewer paths).

The scenario is ``scenarios/mc_1day.toml``: 10,000 accounts, BTC-PERP and ETH-PERP,
1 day of 1-minute steps (1,440 steps, 2,880 ``Price`` events a path), the default
scenario's crash at 12:00 UTC, the binance preset. Each path is one task of
:func:`solvency.sim.sweep.run_sweep` (market seed ``seeds.market + i``, same population).

Measured in the same process, each on its own ``LocalCluster(processes=True,
threads_per_worker=1)`` whose workers have already run a small warm-up scenario (numba
kernels loaded, imports done; cluster start-up is printed apart, not counted):

* the baseline: 1 worker;
* the subject: 2 workers.

Prints paths/s of each, the speed-up (2 workers over 1) and the parallel efficiency
(speed-up / 2), the mean time of one path on a worker, the bad-debt VaR of the run and
whether the paths both runs share gave identical metrics. Per run it also prints how busy
the workers were (task time over wall time: Dask's scheduling gaps) and the tasks' CPU
share (CPU time over task time: below 100 % when other processes took the cores), with
the machine's load average: on a shared 2-core machine the 2-worker figure is bounded by
the cores actually free.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster

from machine import describe
from solvency.sim.sweep import SweepBase, SweepResult, plan_sweep, run_sweep

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "scenarios" / "mc_1day.toml"


def _warm_up() -> float:
    """Run a 200-account, 2-hour version of the scenario (imports, numba kernels)."""
    from solvency.sim.run import run_scenario
    from solvency.sim.scenario import parse_scenario

    text = SCENARIO.read_text(encoding="utf-8").replace(
        "n_accounts = 10000", "n_accounts = 200").replace(
        'horizon = "1d"', 'horizon = "2h"').replace('crash_at = "12h"', 'crash_at = "1h"')
    t0 = time.perf_counter()
    run_scenario(parse_scenario(text, source="warm-up"))
    return time.perf_counter() - t0


def _run(base: SweepBase, paths: int, workers: int) -> tuple[SweepResult, float]:
    plan = plan_sweep(base, (), paths)
    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        client.run(_warm_up)
        start = time.perf_counter() - t0
        done = {"n": 0, "t": time.perf_counter()}

        def progress(n: int, total: int) -> None:
            if n % max(total // 10, 1) == 0 or n == total:
                rate = n / (time.perf_counter() - done["t"])
                print(f"    {n:>5}/{total} paths  {rate:.2f} paths/s", flush=True)

        res = run_sweep(plan, client=client, progress=progress)
    return res, start


def _line(label: str, res: SweepResult, start: float) -> float:
    n = len(res.rows)
    rate = n / res.wall_s
    workers = res.workers or 1
    print(f"  {label}: {n:,} paths in {res.wall_s:,.1f} s = {rate:.3f} paths/s "
          f"(cluster start + warm-up {start:.1f} s, not counted)")
    # busy: the workers ran tasks this share of the wall time (1.0: no scheduling gaps);
    # CPU share: of their run time, the tasks had a core this share (1.0: no contention)
    print(f"      mean path on a worker {res.task_wall_s / n:.2f} s wall, "
          f"{res.task_cpu_s / n:.2f} s CPU; workers busy "
          f"{res.task_wall_s / (res.wall_s * workers):.0%}, CPU share "
          f"{res.task_cpu_s / res.task_wall_s:.0%}")
    return rate


def _same(a: SweepResult, b: SweepResult) -> bool:
    n = min(len(a.rows), len(b.rows))
    return a.rows[:n] == b.rows[:n]


def main() -> None:
    print(describe(), flush=True)
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paths", type=int, default=1000, help="paths on 2 workers")
    ap.add_argument("--baseline-paths", type=int, default=None,
                    help="paths on 1 worker (default: --paths)")
    ap.add_argument("--scenario", type=Path, default=SCENARIO)
    args = ap.parse_args()
    base = SweepBase.from_file(args.scenario)
    n1 = args.baseline_paths or args.paths
    s = base.scenario()
    print(f"Monte Carlo: {s.name}: {s.population.n_accounts:,} accounts, "
          f"{s.n_steps:,} steps of {s.step_ms // 1000} s, {len(s.markets)} markets; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    print(f"  1 worker ({n1:,} paths):")
    one, start1 = _run(base, n1, 1)
    print(f"  2 workers ({args.paths:,} paths):")
    two, start2 = _run(base, args.paths, 2)
    r1 = _line("1 worker ", one, start1)
    r2 = _line("2 workers", two, start2)
    agg: dict[str, Any] = two.points[0]
    print(f"  speed-up 2 workers / 1 worker = {r2 / r1:.2f}x "
          f"(parallel efficiency {r2 / r1 / 2:.0%}); load average now "
          f"{os.getloadavg()[0]:.2f}")
    print(f"  2-worker run: VaR95 bad debt {agg['var95_bad_debt']:,.2f}, VaR99 "
          f"{agg['var99_bad_debt']:,.2f}, mean liquidations {agg['liquidations']:,.1f}, "
          f"mean ADL fills {agg['adl_count']:,.1f}, conserved {agg['conserved']}")
    print(f"  shared paths identical on 1 and 2 workers: {_same(one, two)}")


if __name__ == "__main__":
    main()
