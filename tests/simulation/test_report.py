"""The report's figures from a run's outputs: headline, verdict, units, Monte Carlo summary.

Table-driven cases on hand-made metrics and series: each verdict check passes at its
threshold and fails just above it, a missing figure fails, a broken invariant fails, and a
Monte Carlo summary is judged on its 95th percentile over paths. The scenario's
``[report]`` table is validated by the pydantic model (a typo is refused with its key).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from solvency.sim.metrics import QUANTILES, StepSeries, fan, flatten, summarize, summarize_paths
from solvency.sim.report import format_value, headline, label_of, verdict
from solvency.sim.scenario import ScenarioError, parse_scenario
from tests.simulation.test_run import SMALL

BASE: dict[str, Any] = {
    "bad_debt": 0.0, "insurance_fund_used": 30.0, "insurance_fund_used_share": 0.3,
    "liquidated_share": 0.1, "liquidated_notional": 1000.0, "accounts_liquidated": 5,
    "accounts": 100, "adl_notional": 0.0, "adl_count": 0, "adl_haircut": 0.0,
    "cascade_amplification": 1.2, "conserved": True, "settle_asset": "USDT"}


def _failed(metrics: dict[str, Any], thresholds: dict[str, float]) -> list[str]:
    return [c.name for c in verdict(metrics, thresholds) if not c.ok]


@pytest.mark.parametrize(("change", "thresholds", "failed"), [
    pytest.param({}, {}, [], id="solvent-no-thresholds"),
    pytest.param({"bad_debt": 0.01}, {}, ["bad debt"], id="any-bad-debt-fails-by-default"),
    pytest.param({"bad_debt": 5.0}, {"bad_debt_max": 5}, [], id="bad-debt-at-its-limit"),
    pytest.param({}, {"fund_used_max": 0.3}, [], id="fund-used-at-its-limit"),
    pytest.param({}, {"fund_used_max": 0.29}, ["fund used"], id="fund-used-above"),
    pytest.param({}, {"liquidated_share_max": 0.05}, ["open interest liquidated"],
                 id="oi-liquidated-above"),
    pytest.param({}, {"accounts_liquidated_max": 0.04}, ["accounts liquidated"],
                 id="accounts-liquidated-above"),  # 5 / 100 = 5 %
    pytest.param({"adl_notional": 10.0}, {"adl_notional_max": 9.99}, ["ADL notional"],
                 id="adl-above"),
    pytest.param({}, {"cascade_amplification_max": 1.1}, ["cascade amplification"],
                 id="cascade-above"),
    pytest.param({"cascade_amplification": None}, {"cascade_amplification_max": 2},
                 ["cascade amplification"], id="undefined-figure-fails"),
    pytest.param({"conserved": False}, {}, ["every invariant held"],
                 id="broken-invariant-fails"),
])
def test_verdict(change: dict[str, Any], thresholds: dict[str, float],
                 failed: list[str]) -> None:
    assert _failed(BASE | change, thresholds) == failed


def test_verdict_of_monte_carlo_uses_the_95th_percentile() -> None:
    # the mean fund used (0.3) is within 0.4, the 95th percentile over paths (0.45) is not
    quantiles = {"insurance_fund_used_share": {"p05": 0.1, "p50": 0.3, "p95": 0.45, "n": 20},
                 "bad_debt": {"p05": 0.0, "p50": 0.0, "p95": 0.0, "n": 20}}
    mc = BASE | {"quantiles": quantiles}
    assert _failed(mc, {"fund_used_max": 0.4}) == ["fund used"]
    assert _failed(mc, {"fund_used_max": 0.45}) == []


def test_headline_reads_the_metrics() -> None:
    h = headline(BASE)
    assert h["accounts_liquidated_share"] == 0.05
    assert h["bad_debt"] == 0.0 and h["cascade_amplification"] == 1.2
    assert headline(BASE | {"accounts": 0})["accounts_liquidated_share"] is None


@pytest.mark.parametrize(("value", "unit", "text"), [
    pytest.param(1234567.891, "amount", "1,234,567.89 USDT", id="amount-keeps-every-digit"),
    pytest.param(0.12345, "share", "12.35%", id="share"),
    pytest.param(1.0468, "ratio", "1.047x", id="ratio"),
    pytest.param(12_345, "count", "12,345", id="count"),
    pytest.param(3_723_000, "duration", "1h 02m 03s", id="duration"),
    pytest.param(1_760_131_200_000, "time", "2025-10-10 21:20:00 UTC", id="time-utc"),
    pytest.param(None, "amount", "-", id="missing"),
    pytest.param(float("nan"), "share", "-", id="nan"),
    pytest.param(False, "flag", "NO", id="flag"),
])
def test_format_value(value: Any, unit: Any, text: str) -> None:
    assert format_value(value, unit, "USDT") == text


def test_labels_of_dotted_keys() -> None:
    assert label_of("price_drawdown.BTC-PERP") == ("Market and cascade",
                                                    "index drawdown BTC-PERP", "share")
    assert label_of("not_a_metric")[0] == "Other"  # nothing dropped


def _series() -> StepSeries:
    ts = 1_760_054_400_000 + 60_000 * np.arange(6, dtype=np.int64)
    s = StepSeries.empty(ts, ("BTC-PERP",))
    s.index["BTC-PERP"][:] = [100.0, 110.0, 99.0, 88.0, 95.0, 97.0]
    s.mark["BTC-PERP"][:] = s.index["BTC-PERP"]
    s.trade["BTC-PERP"][:] = s.index["BTC-PERP"]
    s.insurance_fund[:] = [1000.0, 1000.0, 900.0, 700.0, 750.0, 800.0]
    s.insurance_fund_equity[:] = [1000.0, 1000.0, 850.0, 600.0, 750.0, 800.0]
    s.notional[:] = 10_000.0
    s.notional_market["BTC-PERP"][:] = 10_000.0
    s.liq_count[:] = [0, 0, 2, 3, 0, 0]
    s.liq_notional[:] = [0.0, 0.0, 500.0, 1500.0, 0.0, 0.0]
    s.liq_notional_market["BTC-PERP"][:] = s.liq_notional
    return s


def test_headline_figures_from_the_series() -> None:
    s = _series()
    m = summarize(s, conserved=True, accounts_liquidated=3)
    ts = [int(t) for t in s.ts_ms]
    assert m["insurance_fund_used"] == 400.0  # 1,000 at the start, equity low 600
    assert m["insurance_fund_used_share"] == 0.4
    assert m["liquidated_share"] == 0.2  # 2,000 of 10,000
    assert m["liquidated_notional_by_market"] == {"BTC-PERP": 2000.0}
    assert m["first_liquidation_ms"] == ts[2]
    assert m["insurance_fund_low_ms"] == ts[3]
    assert m["crash_window_ms"] == {"peak": ts[1], "low": ts[3]}  # 110 -> 88
    assert m["first_adl_ms"] is None


def test_monte_carlo_summary_keeps_every_metric() -> None:
    paths = [{"bad_debt": float(b), "conserved": True, "venue": "binance",
              "price_drawdown": {"BTC-PERP": d}, "cascade_amplification": c}
             for b, d, c in ((0.0, 0.1, 1.0), (10.0, 0.2, None), (30.0, 0.3, 1.2))]
    out = summarize_paths(paths)
    assert out["bad_debt"] == pytest.approx(40 / 3)
    assert out["price_drawdown"] == {"BTC-PERP": pytest.approx(0.2)}
    assert out["conserved"] is True and out["venue"] == "binance"
    assert out["cascade_amplification"] is None  # undefined on one path: no mean
    q = out["quantiles"]
    assert q["bad_debt"] == {"p05": 1.0, "p25": 5.0, "p50": 10.0, "p75": 20.0, "p95": 28.0,
                             "n": 3}  # numpy's linear interpolation
    assert q["cascade_amplification"]["n"] == 2
    assert set(flatten(paths[0])) == {"bad_debt", "conserved", "venue",
                                      "price_drawdown.BTC-PERP", "cascade_amplification"}


def test_fan_quantiles_per_point() -> None:
    paths = [np.array([1.0, 2.0, 3.0]), np.array([3.0, 4.0]), np.array([2.0, 6.0, 9.0])]
    q = fan(paths)
    assert q.shape == (len(QUANTILES), 3)
    np.testing.assert_allclose(q[2], [2.0, 4.0, 6.0])  # medians; the short path ends early


def _scenario(report: str) -> str:
    return SMALL.format(horizon="75m", seed=5, verify_every=15, vol=0.4, gap=0.02,
                        depth=0.15, n=300, venue="binance", fund=20000) + report


def test_report_thresholds_are_read_and_checked() -> None:
    s = parse_scenario(_scenario("[report]\nfund_used_max = 0.5\nbad_debt_max = 0\n"),
                       source="s.toml")
    assert dict(s.report) == {"fund_used_max": 0.5, "bad_debt_max": 0.0}


@pytest.mark.parametrize(("table", "message"), [
    pytest.param("fund_usde_max = 0.5", "report.fund_usde_max", id="typo-refused"),
    pytest.param("fund_used_max = 1.5", "report.fund_used_max", id="share-above-one"),
    pytest.param("bad_debt_max = -1", "report.bad_debt_max", id="negative"),
    pytest.param('fund_used_max = "half"', "report.fund_used_max", id="not-a-number"),
])
def test_report_thresholds_refused(table: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message.replace(".", r"\.")):
        parse_scenario(_scenario(f"[report]\n{table}\n"), source="s.toml")


def test_per_market_table_divides_by_one_side_of_open_interest() -> None:
    """The per-market table shows the run's own open_interest_start_notional_by_market
    and liquidated_share_of_oi_by_market (one side, as the headline), not a share of the
    users' long + short."""
    from solvency.sim.report import ReportRun, _per_market_html

    m = {"price_drawdown": {"BTC-PERP": 0.1},
         "open_interest_start_notional_by_market": {"BTC-PERP": 1_000_000.0},
         "open_interest_start_by_market": {"BTC-PERP": 2_000_000.0},
         "liquidated_notional_by_market": {"BTC-PERP": 951_524.0},
         "liquidated_share_of_oi_by_market": {"BTC-PERP": 0.951524}}
    html = _per_market_html({"binance": ReportRun(metrics=m, series=None)})  # type: ignore[arg-type]
    assert "open interest at the start (one side)" in html
    assert format_value(1_000_000.0, "amount", "USDT").split()[0] in html
    assert format_value(0.951524, "share") in html  # 95.15%, not 47.58% of long + short
    assert format_value(0.475762, "share") not in html
