"""Backtest statistics against hand computations, the Basel 1996 table and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from solvency.core.backtest import (
    BASEL_PLUS_FACTOR_250,
    backtest,
    christoffersen_independence,
    conditional_coverage,
    exceptions,
    kupiec_pof,
    position_loss,
    traffic_light_bounds,
    traffic_light_zone,
    transition_counts,
)
from solvency.core.volatility import ewma_variance


def _kupiec_by_hand(x: int, n: int, p: float) -> float:
    # Kupiec (1995) eq. for LR_POF written out term by term.
    phat = x / n
    l0 = (n - x) * math.log(1 - p) + (x * math.log(p) if x else 0.0)
    l1 = ((n - x) * math.log(1 - phat) if x < n else 0.0) + (x * math.log(phat) if x else 0.0)
    return -2.0 * (l0 - l1)


@pytest.mark.parametrize(
    ("x", "n", "p", "lr"),
    [
        pytest.param(5, 250, 0.01, 1.956809788230622, id="kupiec1995-250d-5exc"),
        pytest.param(0, 250, 0.01, 5.025167926750726, id="kupiec1995-250d-0exc=-2n*ln(0.99)"),
        pytest.param(20, 1000, 0.01, 7.827239152922488, id="kupiec1995-1000d-20exc"),
        pytest.param(3, 250, 0.01, _kupiec_by_hand(3, 250, 0.01), id="kupiec1995-250d-3exc"),
        pytest.param(250, 250, 0.01, -2 * 250 * math.log(0.01), id="kupiec1995-all-exceptions"),
        pytest.param(13, 500, 0.05, _kupiec_by_hand(13, 500, 0.05), id="kupiec1995-500d-95pct"),
    ],
)
def test_kupiec_pof_matches_hand_computation(x: int, n: int, p: float, lr: float) -> None:
    got, pval = kupiec_pof(x, n, p)
    assert got == pytest.approx(lr, rel=1e-12, abs=1e-12)
    assert pval == pytest.approx(stats.chi2.sf(lr, 1), rel=1e-12)


def test_kupiec_pof_is_zero_at_the_nominal_rate() -> None:
    lr, pval = kupiec_pof(10, 1000, 0.01)
    assert lr == pytest.approx(0.0, abs=1e-12)
    assert pval == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("x", "n", "p"),
    [pytest.param(-1, 10, 0.01, id="negative"), pytest.param(11, 10, 0.01, id="x>n"),
     pytest.param(1, 10, 0.0, id="p=0"), pytest.param(1, 10, 1.0, id="p=1"),
     pytest.param(0, 0, 0.01, id="n=0")],
)
def test_kupiec_pof_rejects_bad_input(x: int, n: int, p: float) -> None:
    with pytest.raises(ValueError):
        kupiec_pof(x, n, p)


def test_christoffersen_hand_example_with_equal_transition_probabilities() -> None:
    # Christoffersen (1998): pi01 = pi11 = pi = 1/3 gives LR_ind = 0 exactly.
    e = [0, 0, 1, 1, 0, 0, 0, 1, 0, 0]
    assert transition_counts(e) == (4, 2, 2, 1)
    lr, pval = christoffersen_independence(e)
    assert lr == pytest.approx(0.0, abs=1e-12)
    assert pval == pytest.approx(1.0)


def test_christoffersen_hand_example_with_clustered_exceptions() -> None:
    e = [0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    n00, n01, n10, n11 = transition_counts(e)
    assert (n00, n01, n10, n11) == (5, 1, 1, 2)
    # Christoffersen (1998) eq. for LR_ind with pi01 = 1/6, pi11 = 2/3, pi = 1/3.
    l0 = 6 * math.log(2 / 3) + 3 * math.log(1 / 3)
    l1 = 5 * math.log(5 / 6) + math.log(1 / 6) + math.log(1 / 3) + 2 * math.log(2 / 3)
    lr, pval = christoffersen_independence(e)
    assert lr == pytest.approx(-2 * (l0 - l1), rel=1e-12)
    assert pval == pytest.approx(stats.chi2.sf(-2 * (l0 - l1), 1), rel=1e-12)


@pytest.mark.parametrize(
    "e",
    [pytest.param([0] * 50, id="no-exceptions"), pytest.param([1] * 5, id="only-exceptions"),
     pytest.param([1], id="single")],
)
def test_christoffersen_degenerate_series_give_zero(e: list[int]) -> None:
    assert christoffersen_independence(e)[0] == pytest.approx(0.0, abs=1e-12)


def test_conditional_coverage_is_the_sum_with_two_degrees_of_freedom() -> None:
    e = np.zeros(250, dtype=bool)
    e[[10, 11, 12, 100, 200, 201]] = True
    lr_uc, _ = kupiec_pof(6, 250, 0.01)
    lr_ind, _ = christoffersen_independence(e)
    lr_cc, p_cc = conditional_coverage(e, 0.01)
    assert lr_cc == pytest.approx(lr_uc + lr_ind, rel=1e-12)
    assert p_cc == pytest.approx(stats.chi2.sf(lr_uc + lr_ind, 2), rel=1e-12)


# Basel Committee (1996), "Supervisory framework for the use of backtesting...", Table 1:
# 250 observations at 99 %: cumulative probability and zone per number of exceptions.
BASEL_1996_TABLE = [
    (0, 0.0811, "green"), (1, 0.2858, "green"), (2, 0.5432, "green"), (3, 0.7581, "green"),
    (4, 0.8922, "green"), (5, 0.9588, "yellow"), (6, 0.9863, "yellow"),
    (7, 0.9960, "yellow"), (8, 0.9989, "yellow"), (9, 0.9997, "yellow"),
    (10, 0.9999, "red"), (11, 0.99999, "red"), (25, 1.0, "red"),
]


@pytest.mark.parametrize(
    ("x", "cum", "zone"), [pytest.param(*row, id=f"basel1996-250d-{row[0]}exc")
                           for row in BASEL_1996_TABLE],
)
def test_traffic_light_matches_basel_1996_table(x: int, cum: float, zone: str) -> None:
    got_zone, got_cum = traffic_light_zone(x, 250, 0.01)
    assert got_zone == zone
    assert got_cum == pytest.approx(cum, abs=6e-5)


@pytest.mark.parametrize(
    ("n", "p", "bounds"),
    [pytest.param(250, 0.01, (5, 10), id="basel1996-250d-99pct"),
     pytest.param(500, 0.01, (9, 15), id="binomial-500d-99pct"),
     pytest.param(1000, 0.01, (15, 24), id="binomial-1000d-99pct"),
     pytest.param(100, 0.01, (3, 6), id="binomial-100d-99pct")],
)
def test_traffic_light_bounds_follow_binomial_cumulative_probabilities(
    n: int, p: float, bounds: tuple[int, int]
) -> None:
    yellow, red = traffic_light_bounds(n, p)
    assert (yellow, red) == bounds
    assert stats.binom.cdf(yellow, n, p) >= 0.95 > stats.binom.cdf(yellow - 1, n, p)
    assert stats.binom.cdf(red, n, p) >= 0.9999 > stats.binom.cdf(red - 1, n, p)


def test_basel_plus_factors_cover_the_yellow_zone() -> None:
    # Basel (1996) Table 2: plus factors 0.40 .. 0.85 for 5 .. 9 exceptions.
    assert sorted(BASEL_PLUS_FACTOR_250) == list(range(5, 10))
    assert BASEL_PLUS_FACTOR_250[5] == 0.40 and BASEL_PLUS_FACTOR_250[9] == 0.85


@given(n=st.integers(1, 3000), p=st.sampled_from([0.001, 0.01, 0.025, 0.05]))
def test_zone_is_monotone_in_the_exception_count(n: int, p: float) -> None:
    order = {"green": 0, "yellow": 1, "red": 2}
    yellow, red = traffic_light_bounds(n, p)
    xs = sorted({0, max(0, yellow - 1), yellow, min(n, red), n} & set(range(n + 1)))
    zones = [order[traffic_light_zone(x, n, p)[0]] for x in xs]
    assert zones == sorted(zones)


@given(st.lists(st.booleans(), min_size=1, max_size=300))
def test_statistics_are_non_negative_and_p_values_in_unit_interval(e: list[bool]) -> None:
    res = backtest(e, 0.01)
    assert res.kupiec_lr >= 0 and res.christoffersen_lr >= 0
    for pv in (res.kupiec_p, res.christoffersen_p, res.conditional_coverage_p):
        assert 0.0 <= pv <= 1.0
    assert res.exceptions == sum(e) and res.observations == len(e)


def test_backtest_result_serializes_the_json_keys() -> None:
    d = backtest([False] * 245 + [True] * 5, 0.01).to_dict()
    for key in ("observations", "exceptions", "kupiec_lr", "kupiec_p", "christoffersen_lr",
                "conditional_coverage_lr", "zone"):
        assert key in d
    assert d["zone"] == "yellow"


def test_position_loss_and_exceptions() -> None:
    r = np.log([0.9, 1.1])
    assert position_loss(r, "long") == pytest.approx([0.1, -0.1])
    assert position_loss(r, "short") == pytest.approx([-0.1, 0.1])
    assert exceptions([0.1, 0.05], [0.08, 0.08]).tolist() == [True, False]
    with pytest.raises(ValueError, match="shape"):
        exceptions([0.1], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        exceptions([np.nan], [0.1])
    with pytest.raises(ValueError, match="side"):
        position_loss(r, "flat")  # type: ignore[arg-type]


# ------------------------------------------------------------- Monte Carlo rejection rates


def _simulate_riskmetrics(reps: int, n: int, lam: float, seed: int) -> tuple[
        np.ndarray, np.ndarray]:
    # Returns from the RiskMetrics (1996) IGARCH process itself: r_t = sigma_t e_t with
    # sigma^2_{t+1} = lam sigma^2_t + (1 - lam) r_t^2, so EWMA with the same lam and seed
    # variance is the correctly specified model.
    rng = np.random.default_rng(seed)
    var = np.full(reps, 0.02**2)
    r = np.empty((reps, n))
    for t in range(n):
        r[:, t] = np.sqrt(var) * rng.standard_normal(reps)
        var = lam * var + (1 - lam) * r[:, t] ** 2
    return r, np.full(reps, 0.02**2)


def _rejection_rate(multiplier: float, reps: int = 2000, n: int = 500) -> tuple[float, float]:
    p, lam, level = 0.01, 0.94, 0.05
    z = stats.norm.ppf(1 - p)
    r, v0 = _simulate_riskmetrics(reps, n, lam, seed=20240805)
    sigma = np.sqrt(ewma_variance(r, lam, var0=v0))
    exc = -r > z * sigma * multiplier
    counts = exc.sum(axis=1)
    rejected = np.array([kupiec_pof(int(c), n, p)[1] < level for c in counts])
    # Exact rejection probability of the Kupiec test at this n under the true exception rate.
    p_true = stats.norm.cdf(-z * multiplier)
    xs = np.arange(n + 1)
    reject_x = np.array([kupiec_pof(int(x), n, p)[1] < level for x in xs])
    exact = float(stats.binom.pmf(xs, n, p_true)[reject_x].sum())
    return float(rejected.mean()), exact


def test_correctly_specified_model_is_rejected_at_about_the_nominal_rate() -> None:
    # Kupiec (1995) at 5 % on 500 steps: the exact size of the discrete test is computed
    # from the binomial law; the Monte Carlo rate must sit within 4 binomial SE of it.
    rate, exact = _rejection_rate(1.0)
    se = math.sqrt(exact * (1 - exact) / 2000)
    assert 0.02 < exact < 0.09
    assert abs(rate - exact) < 4 * se


def test_under_scaled_model_is_rejected_most_of_the_time() -> None:
    # sigma x 0.7: the true exception rate is Phi(-0.7 z) = 5.2 %, five times nominal.
    rate, exact = _rejection_rate(0.7)
    se = math.sqrt(max(exact * (1 - exact), 1e-4) / 2000)
    assert exact > 0.99
    assert rate > 0.95
    assert abs(rate - exact) < 4 * se + 1e-3
