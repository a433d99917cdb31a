"""The lab's arbitrageur on the crash windows: the population's and the agents' liquidated
share of open interest, with the arbitrageur on and off (review 2, item 4;
docs/validation.md, "Why the replay liquidated 1.8x").

Runs ``scenarios/crash_2021_05_19.toml`` under bitmex and ``crash_2020_03_12.toml`` under
binance, the whole window, with the population reduced to ``--accounts`` (default 5,000),
and prints one line per run: ``liquidated_share_of_oi`` (the population's),
``agents_liquidated_share_of_oi`` and notional, and the arbitrageur's trades.

    PYTHONPATH=src:. python scripts/arbitrage_windows.py [--accounts 5000]
"""

from __future__ import annotations

import argparse
import time
import tomllib
from pathlib import Path

from solvency.sim.run import run_scenario
from solvency.sim.scenario import parse_scenario_data

REPO = Path(__file__).resolve().parents[1]
WINDOWS = (("2021_05_19", "bitmex"), ("2020_03_12", "binance"))


def run(name: str, venue: str, *, arbitrage: bool, accounts: int) -> str:
    path = REPO / "scenarios" / f"crash_{name}.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data["population"]["n_accounts"] = accounts
    if not arbitrage:
        data["agents"]["arbitrage"]["enabled"] = False
    t0 = time.process_time()
    m = run_scenario(parse_scenario_data(data, source=str(path), base_dir=REPO),
                     venue=venue).metrics
    return (f"{name} {venue} arbitrageur {'on ' if arbitrage else 'off'}: population "
            f"{m['liquidated_share_of_oi']:.2%}, agents {m['agents_liquidated_share_of_oi']:.2%}"
            f" ({m['agents_liquidated_notional'] / 1e6:,.1f} M), arb trades "
            f"{m['arb_trades']}, volume {m['arb_volume_notional'] / 1e6:,.1f} M, "
            f"conserved {m['conserved']}, {time.process_time() - t0:.1f} s CPU")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--accounts", type=int, default=5_000)
    args = ap.parse_args()
    for name, venue in WINDOWS:
        for arbitrage in (True, False):
            print(run(name, venue, arbitrage=arbitrage, accounts=args.accounts), flush=True)


if __name__ == "__main__":
    main()
