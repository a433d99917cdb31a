"""Issue 17 item 5: the 2025-10-10 binance replay holds its reported figures on a reduced
population, so a change that breaks the calibration fails CI in seconds.

What it runs: ``scenarios/crash_2025_10_10.toml`` (Binance USDT-M BTCUSDT/ETHUSDT perp 5m
bars, the BTC book from the 2025-10-10 ``bookDepth`` file) under the binance preset, with
the population reduced from 50,000 to 5,000 accounts (the same open interest, in fewer,
larger accounts) and the window cut to the crash evening, 2025-10-10 18:00 to 2025-10-11
00:00 UTC (the crash hour 21:00-22:00 inside it). The full two-day window liquidates more
(docs/validation.md gives both): its first hours close the most levered accounts of a
book drawn at the window's first price (issue 17 item 2, not done).

Reported, with sources (docs/crashes/2025-10-10.md, docs/validation.md):

* share of open interest liquidated about 9 %: CoinGlass's $19 bn over a $216 bn base
  ($123 bn after a 43 % contraction, CoinDesk Research); target within x1.3;
* Binance's fund used $188 M of $1.23 bn, 15.3 % (Binance Square, 2025-10); target within
  x2 of the share of the fund used.

Measured when written (5,000 accounts, this evening window): 9.75 % liquidated (1.08x),
fund used 21.4 % of its start (1.40x).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from solvency.sim.run import run_scenario
from solvency.sim.scenario import parse_scenario_data

REPO = Path(__file__).resolve().parents[2]
REPORTED_LIQUIDATED_SHARE = 19.0 / 216.0  # CoinGlass $19 bn over $216 bn of open interest
REPORTED_FUND_USED_SHARE = 188.0 / 1230.0  # Binance: $188 M of $1.23 bn


def test_2025_10_10_binance_inside_its_band(shared_data: Path) -> None:
    path = REPO / "scenarios" / "crash_2025_10_10.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data["population"]["n_accounts"] = 5_000
    for market in data["market"]["markets"].values():
        market["start"] = "2025-10-10T18:00:00Z"
        market["end"] = "2025-10-11T00:00:00Z"
    scenario = parse_scenario_data(data, source=str(path), base_dir=REPO)
    m = run_scenario(scenario, venue="binance").metrics
    assert m["conserved"] is True
    liquidated = m["liquidated_share_of_oi"] / REPORTED_LIQUIDATED_SHARE
    assert 1 / 1.3 <= liquidated <= 1.3, m["liquidated_share_of_oi"]
    used = m["insurance_fund_used_share"] / REPORTED_FUND_USED_SHARE
    assert 1 / 2 <= used <= 2, m["insurance_fund_used_share"]
