"""Issue 17 item 4: ``open_interest_start_notional`` and ``liquidated_share_of_oi``
computed by hand on four accounts.

The book (seed 5, checked below): two longs (3.256 and 6.744 BTC) and two shorts (6.514
and 3.486 BTC) on BTC-PERP, 10 BTC a side, every account at 20x, index and mark 100,000.
The index gaps 4.8 % down at minute 10 (no volatility, no cascade) and stays at 95,200:
equity 0.2 % of notional, below Binance's 0.4 % maintenance margin of the first tier and
above bankruptcy, so both longs are closed in full through the book at minute 10 and
nobody else is. Impact off, a uniform book of 1,000 BTC per basis point priced in bands
of 5 bps (sim/market.py): 10 BTC fill in the first band, at its far edge,
``95,200 x (1 - 0.0005) = 95,152.4``.

By hand: open interest one side = 10 BTC x 100,000 = 1,000,000 USDT (what venues report:
one side, at the start marks); liquidated notional = 10 x 95,152.4 = 951,524 USDT;
share = 0.951524. The older ``liquidated_share`` divides by the users' long + short,
20 BTC x 100,000 = 2,000,000.
"""

from __future__ import annotations

import pytest

from solvency.cli.simulate import _TABLE_ROWS
from solvency.sim.population import generate_population
from solvency.sim.report import headline
from solvency.sim.run import run_scenario
from solvency.sim.scenario import parse_scenario

FOUR = """\
name = "four accounts"
start = "2025-10-10T00:00:00Z"
horizon = "20m"
step = "1m"

[seeds]
market = 1
population = 5

[market]
model = "crash"

[market.markets.BTC-PERP]
start_price = 100000.0
vol_annual = 0.0
crash_at = "10m"
gap_fraction = 0.048
cascade_depth = 0.0
cascade_duration = "1m"
recovery_fraction = 0.0
recovery_half_life = "20m"

[population]
n_accounts = 4
long_short_ratio = 1.0
entry_spread = 0.0
leverage = [{ weight = 1.0, median = 20.0, sigma = 0.01 }]

[population.open_interest_base]
BTC-PERP = 10.0

[venue]
preset = "binance"
insurance_fund = 100000

[liquidity.BTC-PERP]
depth_per_bps_base = 1000.0
daily_volume_base = 6000.0
"""


def test_open_interest_and_liquidated_share_by_hand() -> None:
    scenario = parse_scenario(FOUR, source="four.toml")
    pop = generate_population(scenario.population, scenario.venue(None, step_ms=60_000),
                              {"BTC-PERP": 100_000.0}, scenario.seed_population)
    assert pop.pos_lots.tolist() == [3256, -6514, -3486, 6744]  # lots of 0.001 BTC
    r = run_scenario(scenario, impact=False)
    m = r.metrics
    assert m["conserved"] is True and m["adl_count"] == 0 and m["bad_debt"] == 0.0
    assert m["accounts_liquidated"] == 2  # acct0 and acct3, the longs
    assert m["open_interest_start_notional"] == pytest.approx(10 * 100_000.0, rel=1e-12)
    assert m["open_interest_start_notional_by_market"] == {
        "BTC-PERP": pytest.approx(1_000_000.0, rel=1e-12)}
    assert m["liquidated_notional"] == pytest.approx(10 * 95_152.4, rel=1e-12)
    assert m["liquidated_share_of_oi"] == pytest.approx(0.951524, rel=1e-12)
    assert m["liquidated_share_of_oi_by_market"] == {
        "BTC-PERP": pytest.approx(0.951524, rel=1e-12)}
    assert m["open_interest_start"] == pytest.approx(2_000_000.0, rel=1e-12)
    assert m["liquidated_share"] == pytest.approx(0.475762, rel=1e-12)
    # only the two longs were liquidated: all of the liquidated notional closed longs
    assert m["liquidated_long_share"] == 1.0
    assert r.series.liq_notional_long.sum() == r.series.liq_notional.sum()
    # shown: the report's headline and the terminal summary carry both, with units
    h = headline(m)
    assert h["liquidated_share_of_oi"] == m["liquidated_share_of_oi"]
    assert h["open_interest_start_notional"] == m["open_interest_start_notional"]
    shown = {(key, unit) for _, rows in _TABLE_ROWS for key, _, unit in rows}
    assert {("liquidated_share_of_oi", "share"),
            ("open_interest_start_notional", "amount")} <= shown


def test_fund_positions_are_gross_not_halved() -> None:
    # the one-side halving above is for open interest only: the fund's positions are its
    # gross notional. A 20 % gap at 20x takes acct3's long past bankruptcy; the fund
    # takes over what the book does not close (engine counter fund_takeover), and holds
    # it at the 80,000 mark until it unwinds: its gross notional is lots x 0.001 x 80,000.
    r = run_scenario(parse_scenario(FOUR.replace("gap_fraction = 0.048",
                                                 "gap_fraction = 0.2"), source="four.toml"),
                     impact=False)
    m = r.metrics
    assert m["engine_counts"]["fund_takeover"] == 1
    held = r.series.insurance_fund_positions
    assert held.max() == m["insurance_fund_positions_max"] == pytest.approx(80_000.0)
