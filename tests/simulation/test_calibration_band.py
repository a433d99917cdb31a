"""Issue 17 item 5: the 2025-10-10 binance replay holds its reported figures on a reduced
population, so a change that breaks the calibration fails CI in seconds.

What it runs: ``scenarios/crash_2025_10_10.toml`` (written by ``solvency calibrate
scenarios/calibration/2025_10_10.toml``: Binance USDT-M BTCUSDT/ETHUSDT perp 5m bars, the
population 15 % of Binance's open interest opened along the 28 days of Bybit hourly bars
before the window, the fund Binance's scaled to it) under the binance preset, with the
population reduced from 50,000 to 5,000 accounts (the same open interest, in fewer, larger
accounts) and the window cut to the crash evening, 2025-10-10 18:00 to 2025-10-11 00:00
UTC (the crash hour 21:00-22:00 inside it). With path-consistent entries the first hours
no longer liquidate a book drawn at the window's first price: the full two-day window at
5,000 accounts liquidates 11.48 %, the evening 11.49 %.

Reported, with sources (docs/crashes/2025-10-10.md, docs/validation.md):

* share of open interest liquidated: CoinGlass counted $19 bn over a $216 bn base ($123
  bn after a 43 % contraction, CoinDesk Research), about 9 % as the crash page and
  docs/validation.md state it (8.80 % unrounded), and puts the true total at $30-40 bn
  because of delayed disclosures (the page's source [1]). The band is issue 17's target,
  within x1.3 of 9 %: 6.92 % to 11.7 %. Before the mark stopped counting the lab's own
  impact twice (calibrate.py, step 3) the replay gave 15.6 % here and the band was the
  reported range 8.8 % to 18.5 %;
* Binance's fund used $188 M of $1.23 bn, 15.3 % (Binance Square, 2025-10); target within
  x2 of the share of the fund used.

Measured when written (5,000 accounts, this evening window, population seed 7): 11.49 %
liquidated (1.28x the 9 %; 1.31x the unrounded 8.80 %), fund used 8.90 % of its start
(0.58x); population seeds 8 and 9 give 12.04 % and 11.39 %. ADL still closes 131 M (3.2 %
of the open interest), not counted as liquidated: docs/validation.md says why.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from solvency.sim.run import run_scenario
from solvency.sim.scenario import parse_scenario_data

REPO = Path(__file__).resolve().parents[2]
# CoinGlass $19 bn over $216 bn of open interest, about 9 % (docs/validation.md's figure)
REPORTED_LIQUIDATED_SHARE = 0.09
TARGET_RATIO = 1.3  # issue 17: within x1.3 of the reported share
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
    share = m["liquidated_share_of_oi"]
    low = REPORTED_LIQUIDATED_SHARE / TARGET_RATIO
    assert low <= share <= REPORTED_LIQUIDATED_SHARE * TARGET_RATIO, share
    used = m["insurance_fund_used_share"] / REPORTED_FUND_USED_SHARE
    assert 1 / 2 <= used <= 2, m["insurance_fund_used_share"]
