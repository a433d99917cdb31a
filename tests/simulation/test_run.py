"""Stress-lab runs through the real engine: seeded, invariant-checked, monotone in the crash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from solvency.sim.metrics import bad_debt_var, flatten, max_drawdown
from solvency.sim.run import build_paths, realized_vol, run_compare, run_monte_carlo, run_scenario
from solvency.sim.scenario import (
    DEFAULT_SCENARIO_TOML,
    Scenario,
    ScenarioError,
    default_scenario,
    load_scenario,
    parse_scenario,
)

REPO = Path(__file__).resolve().parents[2]

SMALL = """\
name = "small crash"
start = "2025-10-10T00:00:00Z"
horizon = "{horizon}"
step = "1m"

[seeds]
market = {seed}
population = 3

[run]
verify_every = {verify_every}

[market]
model = "crash"
correlation = [[1.0, 0.85], [0.85, 1.0]]

[market.markets.BTC-PERP]
start_price = 117000.0
vol_annual = {vol}
crash_at = "30m"
gap_fraction = {gap}
cascade_depth = {depth}
cascade_duration = "20m"
recovery_fraction = 0.5
recovery_half_life = "20m"

[market.markets.ETH-PERP]
start_price = 4010.0
vol_annual = {vol}
crash_at = "30m"
gap_fraction = {gap}
cascade_depth = {depth}
cascade_duration = "20m"

[population]
n_accounts = {n}
long_short_ratio = 1.2
entry_spread = 0.02
leverage = [
  {{ weight = 0.8, median = 8.0, sigma = 0.6 }},
  {{ weight = 0.2, median = 30.0, sigma = 0.5 }},
]

[population.open_interest_base]
BTC-PERP = 300.0
ETH-PERP = 6000.0

[venue]
preset = "{venue}"
insurance_fund = {fund}

[liquidity.BTC-PERP]
depth_per_bps_base = 0.5
daily_volume_base = 6000.0
min_depth_fraction = 0.02

[liquidity.ETH-PERP]
depth_per_bps_base = 10.0
daily_volume_base = 120000.0
min_depth_fraction = 0.02
"""


def small(**kw: object) -> Scenario:
    args: dict[str, object] = {"horizon": "2h", "seed": 11, "verify_every": 1, "vol": 0.4,
                               "gap": 0.02, "depth": 0.12, "n": 1500, "venue": "binance",
                               "fund": 50000}
    args.update(kw)
    return parse_scenario(SMALL.format(**args), source="small.toml")


def test_same_seed_same_metrics() -> None:
    a = run_scenario(small())
    b = run_scenario(small())
    drop = {"wall_s"}
    assert {k: v for k, v in a.metrics.items() if k not in drop} == {
        k: v for k, v in b.metrics.items() if k not in drop}
    np.testing.assert_array_equal(a.series.insurance_fund, b.series.insurance_fund)
    np.testing.assert_array_equal(a.series.mark["BTC-PERP"], b.series.mark["BTC-PERP"])
    assert a.metrics["liquidations"] > 0  # the case is not vacuous
    c = run_scenario(small(seed=12))
    assert not np.array_equal(a.series.index["BTC-PERP"], c.series.index["BTC-PERP"])


def test_no_price_move_liquidates_nobody() -> None:
    r = run_scenario(small(vol=0.0, gap=0.0, depth=0.0))
    assert r.metrics["liquidations"] == 0
    assert r.metrics["adl_count"] == 0
    assert r.metrics["bad_debt"] == 0.0
    assert r.metrics["insurance_fund_min"] == r.metrics["insurance_fund_start"] == 50_000.0
    assert r.metrics["conserved"] is True
    assert np.all(r.series.index["BTC-PERP"] == 117_000.0)


def test_deeper_crash_never_less_bad_debt_on_average() -> None:
    seeds = (1, 2, 3)
    means = []
    for depth in (0.04, 0.12, 0.18, 0.25, 0.3):
        bad = [run_scenario(small(seed=s, depth=depth, fund=0, horizon="90m")
                            ).metrics["bad_debt"] for s in seeds]
        means.append(float(np.mean(bad)))
    assert means == sorted(means), means
    assert means[0] == 0.0 and means[-1] > means[-2] > 0.0  # not vacuous


def test_invariants_hold_every_k_steps() -> None:
    r = run_scenario(small(verify_every=1, depth=0.3, fund=1000))
    assert r.metrics["conserved"] is True and r.metrics["violation"] is None
    assert (r.series.insurance_fund >= 0).all()
    assert r.metrics["points"] == small().n_steps + 1
    assert r.metrics["liquidations"] > 0


def test_impact_off_trade_price_is_the_index() -> None:
    # cascade amplification's denominator: the same path with impact off
    s = small(depth=0.2)
    paths = build_paths(s)
    off = run_scenario(s, impact=False, paths=paths)
    on = run_scenario(s, paths=paths)
    for m in s.markets:
        np.testing.assert_allclose(off.series.trade[m], off.series.index[m], rtol=0, atol=0)
        np.testing.assert_array_equal(on.series.index[m], off.series.index[m])
    assert off.metrics["cascade_amplification"] == pytest.approx(1.0)
    assert on.metrics["cascade_amplification"] >= 1.0
    assert on.metrics["liquidations"] > 0


def test_compare_and_monte_carlo() -> None:
    res = run_compare(small(horizon="75m"), ["binance", "dydx"])
    assert set(res) == {"binance", "dydx"}
    np.testing.assert_array_equal(res["binance"].series.index["BTC-PERP"],
                                  res["dydx"].series.index["BTC-PERP"])
    mc = run_monte_carlo(small(horizon="75m", n=500, fund=0, depth=0.2), 4)
    assert mc.summary["paths"] == 4
    assert mc.summary["var99_bad_debt"] >= mc.summary["var95_bad_debt"] >= 0
    assert [p["seed_market"] for p in mc.summary["per_path"]] == [11, 12, 13, 14]
    # issue 28 item 7: every metric of a run, per path (the sweep's columns) and summarized
    one = flatten({k: v for k, v in mc.runs[0].metrics.items() if k != "wall_s"})
    assert all(set(p) == set(one) for p in mc.summary["per_path"])
    assert mc.summary["per_path"][1] == flatten(
        {k: v for k, v in mc.runs[1].metrics.items() if k != "wall_s"})
    assert set(mc.runs[0].metrics) - {"wall_s"} <= set(mc.summary)
    bad = sorted(r.metrics["bad_debt"] for r in mc.runs)
    q = mc.summary["quantiles"]["bad_debt"]
    assert q["n"] == 4 and q["p50"] == pytest.approx((bad[1] + bad[2]) / 2)
    assert mc.summary["bad_debt"] == pytest.approx(sum(bad) / 4)


def test_bad_debt_var_is_the_order_statistic() -> None:
    x = np.arange(1.0, 101.0)  # 1..100: the 95 % quantile is the 95th smallest
    v = bad_debt_var(x)
    assert v["var95_bad_debt"] == 95.0 and v["var99_bad_debt"] == 99.0
    assert v["mean_bad_debt"] == 50.5


def test_helpers() -> None:
    assert max_drawdown(np.array([100.0, 120.0, 90.0, 130.0])) == pytest.approx(0.25)
    ts = np.arange(0, 5) * 60_000
    vol = realized_vol(ts, np.full(5, 100.0), 3)
    assert (vol == 0).all()


# ---------------------------------------------------------------- scenario files


def test_bundled_default_matches_file_and_shape() -> None:
    assert (REPO / "scenarios" / "default.toml").read_text(encoding="utf-8") == \
        DEFAULT_SCENARIO_TOML
    s = default_scenario()
    assert s.population.n_accounts >= 100_000
    assert s.n_steps == 12 * 60 * 4 and s.step_ms == 15_000
    assert s.markets == ("BTC-PERP", "ETH-PERP") and s.correlation is not None
    assert s.model == "crash"


@pytest.mark.parametrize(("text", "expect"), [
    pytest.param("name = 'x'\nhorizon = ", "invalid TOML", id="toml-syntax"),
    pytest.param(SMALL.replace('n_accounts = {n}', 'n_accounts = "many"'),
                 "population.n_accounts: Input should be a valid integer", id="wrong-type"),
    pytest.param(SMALL.replace("vol_annual = {vol}\ncrash_at", "volatility = 1\ncrash_at", 1),
                 "market.markets.BTC-PERP.volatility: unknown key; expected one of: cascade_depth",
                 id="unknown-key"),
    pytest.param(SMALL.replace('model = "crash"', 'model = "heston"'),
                 "market.model: Input should be", id="unknown-model"),
    pytest.param(SMALL.replace('preset = "{venue}"', 'preset = "nasdaq"'),
                 "venue: preset: unknown venue 'nasdaq'", id="unknown-preset"),
    pytest.param(SMALL.replace("cascade_depth = {depth}", "cascade_depth = 1.5", 1),
                 "market.markets.BTC-PERP", id="out-of-range"),
    pytest.param(SMALL.replace("[0.85, 1.0]]", "[0.85, 1.0], [0.0, 0.0]]"),
                 "market.correlation: must be 2x2", id="correlation-shape"),
    pytest.param(SMALL.replace("BTC-PERP = 300.0", "SOL-PERP = 300.0"),
                 "population.open_interest_base: markets ['SOL-PERP']", id="unknown-market"),
    pytest.param(SMALL.replace('horizon = "{horizon}"', 'horizon = "2 days"'),
                 "horizon: interval '2 days'", id="bad-duration"),
])
def test_malformed_scenario_precise_errors(text: str, expect: str) -> None:
    args = {"horizon": "2h", "seed": 1, "verify_every": 1, "vol": 0.4, "gap": 0.02,
            "depth": 0.1, "n": 100, "venue": "binance", "fund": 0}
    body = text.format(**args) if "{" in text else text
    with pytest.raises(ScenarioError) as info:
        parse_scenario(body, source="bad.toml")
    assert str(info.value).startswith("bad.toml: ")
    assert expect in str(info.value)


def test_replay_scenarios_resolve_shared_data(shared_data: Path) -> None:
    for name in ("crash_2025_10_10.toml", "crash_2021_05_19.toml"):
        s = load_scenario(REPO / "scenarios" / name)
        paths = build_paths(s)
        assert set(paths) == set(s.markets)
    s = load_scenario(REPO / "scenarios" / "crash_2025_10_10.toml")
    btc = build_paths(s)["BTC-PERP"].prices[0]
    assert btc.min() == pytest.approx(101_516.5)  # the 21:20 UTC wick is on the path


def test_missing_data_file_is_a_clear_error(tmp_path: Path) -> None:
    text = (REPO / "scenarios" / "crash_2025_10_10.toml").read_text(encoding="utf-8")
    (tmp_path / "scenarios").mkdir()
    f = tmp_path / "scenarios" / "x.toml"
    f.write_text(text.replace("../shared/data/", "../nowhere/"), encoding="utf-8")
    s = load_scenario(f)
    with pytest.raises(ScenarioError, match=r"data file not found: \.\./nowhere/"):
        build_paths(s)
