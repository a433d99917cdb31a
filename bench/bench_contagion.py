"""Several venues linked (issue 22): the lockstep linked run of three venues beside each
venue's single-venue run, in the same process and the same run.

The bundled default scenario (a synthetic 2025-10-10-shaped crash, 12 h of 1-minute
steps) with ``--accounts`` accounts per venue, under ``binance``, ``dydx`` and
``hyperliquid``: first each venue alone (``run_scenario``), then the three in lockstep
with the liquidity and traders links (``run_linked``: arbitrageurs with 50 M USD of
capital and a 1-minute latency, 20 % of the accounts one trader with a wallet of 0.5x its
collateral and a 10-minute transfer delay; all assumed). The figures are CPU time
(the machine is shared: process time, not wall), after a small warm-up run that
compiles the kernels. The issue's targets: the linked run in at most 3x one single-venue
run; with the links off, at most 1.1x the sum of the single-venue runs (the runs alone
*are* the unlinked run: ``run_venues`` with no link runs each venue's single-venue run).

Run: ``.venv/bin/python bench/bench_contagion.py --accounts 10000``. With ``--scenario
scenarios/crash_2025_10_10.toml`` the same three venues run the real 2025-10-10 window
(Binance's perp bars, that file's calibrated population resized to ``--accounts``) instead
of the bundled default: the issue's "same window".
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from machine import describe
from solvency.sim.contagion import run_linked
from solvency.sim.run import build_paths, run_scenario
from solvency.sim.scenario import (
    LinksSpec,
    LiquidityLinkSpec,
    TradersLinkSpec,
    VenueSpec,
    default_scenario,
    load_scenario,
)

PRESETS = ("binance", "dydx", "hyperliquid")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--scenario", default=None,
                        help="A single-venue scenario file (default: the bundled default).")
    args = parser.parse_args()
    print(describe())
    base = default_scenario() if args.scenario is None else load_scenario(args.scenario)
    print(f"scenario: {args.scenario or 'bundled default'}, {args.accounts:,} accounts a venue")
    scenario = replace(
        base, population=replace(base.population, n_accounts=args.accounts),
        venues=tuple(VenueSpec(p, p) for p in PRESETS),
        links=LinksSpec(("liquidity", "traders"), LiquidityLinkSpec(5e7, 60_000, 0.0),
                        TradersLinkSpec(0.2, 0.5, 600_000, 0.4)))
    warm = replace(scenario, population=replace(base.population, n_accounts=200))
    paths = build_paths(scenario)
    run_linked(warm, {p: (warm, p) for p in PRESETS}, ("liquidity", "traders"), paths)
    alone: dict[str, float] = {}
    for p in PRESETS:
        t = time.process_time()
        res = run_scenario(scenario, venue=p, paths=paths)
        alone[p] = time.process_time() - t
        print(f"{p} alone: {alone[p]:.2f} s CPU, {res.metrics['liquidations']:,} "
              f"liquidations, {res.metrics['points']} points")
    t = time.process_time()
    linked, link = run_linked(scenario, {p: (scenario, p) for p in PRESETS},
                              ("liquidity", "traders"), paths)
    cpu = time.process_time() - t
    print(f"three venues linked (liquidity, traders): {cpu:.2f} s CPU, liquidations "
          + ", ".join(f"{p} {r.metrics['liquidations']:,}" for p, r in linked.items())
          + f"; arbitrageurs' gross max {link['arbitrage']['gross_max']:,.0f} USD, "
          f"{link['traders']['transfers']:,} wallet transfers")
    one = max(alone.values())
    total = sum(alone.values())
    print(f"linked / the slowest single-venue run: {cpu / one:.2f}x (target <= 3x)")
    print(f"linked / the sum of the single-venue runs: {cpu / total:.2f}x "
          "(links off: the sum itself, 1.00x, target <= 1.1x)")


if __name__ == "__main__":
    main()
