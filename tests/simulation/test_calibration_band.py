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
  bn after a 43 % contraction, CoinDesk Research), 8.80 % (docs/validation.md rounds it
  to about 9 %), and puts the true total at $30-40 bn because of delayed disclosures (the
  page's source [1]). Issue 17's target is within x1.3 of 8.80 %: 6.77 % to 11.44 %. It
  is missed (docs/validation.md, "Calibrated crash windows"): population seed 7 gives
  11.49 % (1.306x), seeds 8 and 9 12.04 % (1.368x) and 11.39 % (1.294x). This test is a
  regression guard on that calibrated figure: each seed must stay within 1x to 1.4x of
  the unrounded 8.80 %, 8.80 % to 12.32 %, a band inside the one it had before this
  calibration (the reported range, 8.8 % to 18.5 %). Before the mark stopped counting
  the lab's own impact twice (calibrate.py, step 3) the replay gave 15.6 % here;
* Binance's fund used $188 M of $1.23 bn, 15.3 % (Binance Square, 2025-10); target within
  x2 of the share of the fund used.

Measured when written (5,000 accounts, this evening window): liquidated 11.49 %, 12.04 %,
11.39 % of the open interest for population seeds 7, 8, 9; fund used 8.90 %, 10.36 %,
8.51 % of its start (0.58x, 0.68x, 0.56x). The lab's arbitrageur is not liquidated here
(``agents_liquidated_notional`` 0), so counting the population alone (review 2, item 4)
leaves these figures as they were. ADL still closes 131 M (3.2 % of the open interest at
seed 7), not counted as liquidated: docs/validation.md says why.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from solvency.sim.run import run_scenario
from solvency.sim.scenario import parse_scenario_data

REPO = Path(__file__).resolve().parents[2]
REPORTED_LIQUIDATED_SHARE = 19.0 / 216.0  # CoinGlass $19 bn over $216 bn of open interest
REGRESSION_RATIO = 1.4  # not issue 17's x1.3 (missed); inside the earlier 8.8-18.5 %
REPORTED_FUND_USED_SHARE = 188.0 / 1230.0  # Binance: $188 M of $1.23 bn


@pytest.mark.parametrize("population_seed", [7, 8, 9])
def test_2025_10_10_binance_inside_its_band(shared_data: Path, population_seed: int) -> None:
    path = REPO / "scenarios" / "crash_2025_10_10.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data["population"]["n_accounts"] = 5_000
    data["seeds"]["population"] = population_seed
    for market in data["market"]["markets"].values():
        market["start"] = "2025-10-10T18:00:00Z"
        market["end"] = "2025-10-11T00:00:00Z"
    scenario = parse_scenario_data(data, source=str(path), base_dir=REPO)
    m = run_scenario(scenario, venue="binance").metrics
    assert m["conserved"] is True
    assert m["agents_liquidated_notional"] == 0.0
    ratio = m["liquidated_share_of_oi"] / REPORTED_LIQUIDATED_SHARE
    assert 1.0 <= ratio <= REGRESSION_RATIO, (m["liquidated_share_of_oi"], ratio)
    used = m["insurance_fund_used_share"] / REPORTED_FUND_USED_SHARE
    assert 1 / 2 <= used <= 2, m["insurance_fund_used_share"]
