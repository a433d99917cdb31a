"""Profile one stress-lab run over a real window and break its time down by stage.

Run: ``python bench/profile_sim.py [--accounts 10000] [--start 2021-05-19T00:00:00Z]
[--horizon 24h] [--prices FILE] [--out run.prof]`` (one core: numba pinned to one thread).

The run is the bundled default scenario (its calibrated population, liquidity and agents)
replayed over real 1-minute bars (``--prices``, default the 2021-05-16..20 Binance BTC/USDT
file of ``../shared/data``; ETH-PERP follows BTC's relative moves, as
``solvency simulate --prices`` does), on the window ``[start, start + horizon)``, with the
population cut to ``--accounts``. It runs under :mod:`cProfile` and prints, for each stage,
the cumulative time of its entry points (stages nest: the engine's price sweep holds the
liquidations it triggers, which hold ADL) and its share of the run, then the functions with
the most time of their own. cProfile's per-call overhead inflates Python-heavy stages
(agents, recorder) against numpy/numba ones; the shares are a map, not a benchmark.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

from machine import describe
from solvency.sim.run import run_scenario
from solvency.sim.scenario import DEFAULT_SCENARIO_TOML, parse_scenario

REPO = Path(__file__).resolve().parents[1]
PRICES = REPO.parent / "shared" / "data" / "btcusdt_binance_spot_1m_2021-05-16_2021-05-20.csv"

# (stage, [(path suffix, function name)]): cumulative time summed over the entry points
STAGES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("run (run_scenario)", (("sim/run.py", "run_scenario"),)),
    ("engine: every event (Engine.apply)", (("engine/engine.py", "apply"),)),
    ("engine sweeps: price events (marks.apply_price)", (("engine/marks.py", "apply_price"),)),
    ("  re-mark and re-margin of holders (marking.mark_holders, numba)",
     (("core/margin/marking.py", "mark_holders"),)),
    ("  mark bookkeeping (volatility tracker, breakers: _track_volatility)",
     (("engine/marks.py", "_track_volatility"),)),
    ("  liquidation (Liquidator.sweep)", (("engine/liquidation.py", "sweep"),)),
    ("    closes through the book (Liquidator._book_close)",
     (("engine/liquidation.py", "_book_close"),)),
    ("      book quotes: walk of the impact book (ImpactLiquidity.quote)",
     (("sim/market.py", "quote"),)),
    ("    fills of the closes (fills.apply_fill)", (("engine/fills.py", "apply_fill"),)),
    ("    ADL (Liquidator._adl_queue)", (("engine/liquidation.py", "_adl_queue"),)),
    ("engine: funding payments (funding.apply_funding)",
     (("engine/funding.py", "apply_funding"),)),
    ("agents: every call from the run loop, engine calls included (sim/agents.py)",
     (("sim/agents.py", "before_prices"), ("sim/agents.py", "after_prices"),
      ("sim/agents.py", "record"), ("sim/agents.py", "apply"))),
    ("book: impact model (ImpactLiquidity.advance, trade/oracle price)",
     (("sim/market.py", "advance"), ("sim/market.py", "trade_price"),
      ("sim/market.py", "oracle_price"))),
    ("recorder: series (_Recorder.state, _Recorder.events)",
     (("sim/run.py", "state"), ("sim/run.py", "events"))),
    ("recorder: who was hit (_rows_snapshot, liquidations_at_risk)",
     (("sim/run.py", "_rows_snapshot"), ("engine/summary.py", "liquidations_at_risk"))),
    ("checks (_check_invariants: Engine.verify, flat accounts)",
     (("sim/run.py", "_check_invariants"),)),
    ("setup (population, load, top-up)",
     (("sim/population.py", "generate_population"), ("sim/population.py", "load_population"),
      ("sim/run.py", "_top_up"))),
    ("metrics (summarize)", (("sim/metrics.py", "summarize"),)),
)


def scenario_text(accounts: int, start: str, horizon: str) -> str:
    text = re.sub(r"(?m)^n_accounts = .*$", f"n_accounts = {accounts}", DEFAULT_SCENARIO_TOML)
    text = re.sub(r'(?m)^start = ".*"$', f'start = "{start}"', text)
    return re.sub(r'(?m)^horizon = ".*"$', f'horizon = "{horizon}"', text)


def stage_times(stats: pstats.Stats) -> list[tuple[str, float]]:
    table = stats.stats  # type: ignore[attr-defined]
    out = []
    for name, entries in STAGES:
        total = 0.0
        for (path, _line, func), (_cc, _nc, _tt, ct, _callers) in table.items():
            if any(path.replace("\\", "/").endswith(sfx) and func == fn for sfx, fn in entries):
                total += ct
        out.append((name, total))
    return out


def apply_by_caller(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Engine.apply's cumulative time split by the function that called it."""
    table = stats.stats  # type: ignore[attr-defined]
    out: list[tuple[str, float]] = []
    for (path, _line, func), (*_, callers) in table.items():
        if path.replace("\\", "/").endswith("engine/engine.py") and func == "apply":
            for (cpath, _cl, cfunc), (*_, ct) in callers.items():
                out.append((f"{Path(cpath).parent.name}/{Path(cpath).name}:{cfunc}", ct))
    return sorted(out, key=lambda x: -x[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--start", default="2021-05-19T00:00:00Z")
    ap.add_argument("--horizon", default="24h")
    ap.add_argument("--prices", default=str(PRICES))
    ap.add_argument("--out", default=None, help="write the raw profile here (pstats)")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--cpu", action="store_true",
                    help="time with the process's CPU clock (time.process_time) instead of "
                         "the wall clock: on a machine shared with other work the shares "
                         "are then this process's own")
    args = ap.parse_args()
    print(describe())
    with open("/proc/loadavg") if Path("/proc/loadavg").exists() else open(os.devnull) as f:
        print(f"load average at start: {f.read().strip() or '?'}")
    scenario = parse_scenario(scenario_text(args.accounts, args.start, args.horizon),
                              source="default.toml", base_dir=REPO / "scenarios"
                              ).with_prices({"BTC-PERP": args.prices})
    # warm-up on a small book and a short window: numba compiles outside the profile
    run_scenario(parse_scenario(scenario_text(1000, "2021-05-19T12:30:00Z", "2h"),
                                source="default.toml",
                                base_dir=REPO / "scenarios"
                                ).with_prices({"BTC-PERP": args.prices}))
    prof = cProfile.Profile(time.process_time) if args.cpu else cProfile.Profile()
    t0, c0 = time.perf_counter(), time.process_time()
    prof.enable()
    res = run_scenario(scenario)
    prof.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    m = res.metrics
    print(f"window {args.start} + {args.horizon}, {m['points']:,} points, "
          f"{m['accounts']:,} accounts, {m['positions']:,} positions: {wall:.1f} s wall, "
          f"{cpu:.1f} s CPU under cProfile; liquidations {m['liquidations']:,}, "
          f"ADL fills {m['adl_count']:,}, conserved {m['conserved']}")
    stats = pstats.Stats(prof)
    times = stage_times(stats)
    run_total = times[0][1] or 1.0
    clock = "CPU" if args.cpu else "wall"
    print(f"{'stage (' + clock + ' time)':<66} {'cum s':>8} {'share':>7}")
    for name, t in times:
        print(f"{name:<66} {t:8.2f} {t / run_total:7.1%}")
    agents = dict(times)[STAGES[next(i for i, st in enumerate(STAGES)
                                     if st[0].startswith("agents"))][0]]
    via = sum(t for name, t in apply_by_caller(stats) if name.startswith("sim/agents.py"))
    print(f"{'agents, own (the above less Engine.apply called from sim/agents.py)':<66} "
          f"{agents - via:8.2f} {(agents - via) / run_total:7.1%}")
    print("\nEngine.apply by caller:")
    for name, t in apply_by_caller(stats):
        print(f"  {name:<64} {t:8.2f} {t / run_total:7.1%}")
    if args.out:
        prof.dump_stats(args.out)
    print(f"\ntop {args.top} functions by own time:")
    stats.sort_stats("tottime").print_stats(args.top)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
