"""VaR and ES: published closed forms, hand-computed order statistics, FHS and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import integrate, stats

from solvency.core.var import (
    empirical_var_es_losses,
    fhs_var_es,
    full_revaluation_pnl,
    historical_var_es,
    linear_pnl,
    monte_carlo_var_es,
    normal_var_es,
    student_t_var_es,
)


@pytest.mark.parametrize(
    ("conf", "var", "es"),
    [
        # McNeil, Frey and Embrechts (2005), Example 2.18: standard normal.
        pytest.param(0.99, 2.3263478740408408, 2.665214220345808, id="mfe2005-normal-99"),
        pytest.param(0.975, 1.959963984540054, 2.3378027922014133, id="frtb-normal-97.5=2.338"),
        pytest.param(0.95, 1.6448536269514722, 2.0627128075074257, id="mfe2005-normal-95"),
    ],
)
def test_normal_var_es_closed_form(conf: float, var: float, es: float) -> None:
    v, e = normal_var_es(1.0, conf)
    assert float(v) == pytest.approx(var, rel=1e-9)
    assert float(e) == pytest.approx(es, rel=1e-9)
    v2, e2 = normal_var_es(0.02, conf, mu=0.001)
    assert float(v2) == pytest.approx(-0.001 + 0.02 * var, rel=1e-9)
    assert float(e2) == pytest.approx(-0.001 + 0.02 * es, rel=1e-9)


@pytest.mark.parametrize("nu", [pytest.param(n, id=f"mfe2005-t{n}") for n in (3.0, 4.0, 8.0)])
def test_student_t_es_equals_the_integral_of_the_quantile(nu: float) -> None:
    # ES_alpha = 1/(1-alpha) int_alpha^1 VaR_u du (Acerbi and Tasche 2002).
    conf = 0.99
    v, e = student_t_var_es(1.0, nu, conf, standardized=False)
    integral, _ = integrate.quad(lambda u: stats.t.ppf(u, nu), conf, 1.0, limit=200)
    assert float(v) == pytest.approx(stats.t.ppf(conf, nu), rel=1e-12)
    assert float(e) == pytest.approx(integral / (1 - conf), rel=1e-6)
    vs, es_ = student_t_var_es(1.0, nu, conf, standardized=True)
    c = math.sqrt((nu - 2) / nu)
    assert float(vs) == pytest.approx(c * float(v), rel=1e-12)
    assert float(es_) == pytest.approx(c * float(e), rel=1e-12)


def test_t4_var_matches_the_t_table() -> None:
    # Student-t table: t_{0.99, 4} = 3.747.
    assert float(student_t_var_es(1.0, 4.0, 0.99, standardized=False)[0]) == pytest.approx(
        3.747, abs=5e-4)


def test_historical_var_es_on_1000_ranked_losses() -> None:
    # Losses 1..1000: VaR99 is the 990th smallest (11th largest), ES99 the mean of the 10
    # largest (991..1000) = 995.5.
    pnl = -np.arange(1.0, 1001.0)
    var, es = historical_var_es(np.random.default_rng(1).permutation(pnl), 0.99)
    assert var == 990.0
    assert es == pytest.approx(995.5)


def test_historical_var_es_with_a_fractional_tail() -> None:
    # n = 250 at 99 %: m = ceil(247.5) = 248, VaR = L(248); ES = [(L249 + L250)/250 +
    # (248/250 - 0.99) L248] / 0.01 = 0.4 L249 + 0.4 L250 + 0.2 L248.
    losses = np.arange(1.0, 251.0)
    var, es = empirical_var_es_losses(losses, 0.99)
    assert var == 248.0
    assert es == pytest.approx(0.4 * 249 + 0.4 * 250 + 0.2 * 248)


def _es_reference(losses: np.ndarray, conf: float) -> tuple[float, float]:
    # Plain twin: sort and integrate the empirical quantile function over (conf, 1].
    s = np.sort(losses)
    n = s.size
    total = 0.0
    for i in range(n):
        lo, hi = max(i / n, conf), (i + 1) / n
        if hi > lo:
            total += (hi - lo) * s[i]
    var = float(np.quantile(losses, conf, method="inverted_cdf"))
    return var, total / (1 - conf)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.integers(1, 400), elements=st.floats(-1e6, 1e6)),
    st.sampled_from([0.9, 0.95, 0.975, 0.99, 0.999]),
)
def test_empirical_var_es_equal_their_sorted_twin(losses: np.ndarray, conf: float) -> None:
    var, es = empirical_var_es_losses(losses, conf)
    rv, re = _es_reference(losses, conf)
    assert var == pytest.approx(rv)
    assert es == pytest.approx(re, rel=1e-9, abs=1e-6)
    assert es >= var - 1e-6


def test_historical_var_es_vectorized_over_portfolios() -> None:
    rng = np.random.default_rng(7)
    pnl = rng.standard_normal((50, 1000))
    var, es = historical_var_es(pnl, 0.99)
    for i in (0, 17, 49):
        v1, e1 = historical_var_es(pnl[i], 0.99)
        assert np.asarray(var)[i] == v1 and np.asarray(es)[i] == pytest.approx(e1)


@pytest.mark.parametrize(
    "bad", [pytest.param([], id="empty"), pytest.param([1.0, np.nan], id="nan"),
            pytest.param([np.inf], id="inf")],
)
def test_historical_var_rejects_bad_samples(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        historical_var_es(np.asarray(bad), 0.99)


def test_insurance_fund_loss_sample() -> None:
    # A loss sample used directly (e.g. simulated insurance-fund draws): losses are positive.
    losses = np.concatenate([np.zeros(980), np.arange(1.0, 21.0)])
    var, es = empirical_var_es_losses(losses, 0.99)
    assert var == 10.0  # 990th smallest
    assert es == pytest.approx(np.mean(np.arange(11.0, 21.0)))


def test_fhs_with_constant_sigma_is_historical_simulation() -> None:
    # Barone-Adesi et al. (1999): with a constant filter the rescaling is the identity.
    rng = np.random.default_rng(3)
    r = rng.standard_t(4, 1000) * 0.02
    sigma = np.full(1000, 0.02)
    var, es = fhs_var_es(r, sigma, 0.02, 0.99)
    hv, he = empirical_var_es_losses(-np.expm1(r), 0.99)
    assert var == pytest.approx(hv) and es == pytest.approx(he)
    # Doubling today's volatility doubles the log-return scenarios.
    var2, _ = fhs_var_es(r, sigma, 0.04, 0.99)
    assert var2 == pytest.approx(float(np.asarray(empirical_var_es_losses(
        -np.expm1(2 * r), 0.99)[0])))


# Square-root-of-time: Basel Committee on Banking Supervision (1996), "Amendment to the
# Capital Accord to incorporate market risks", B.4 (c): a VaR over a shorter period may be
# scaled up "by the square root of time"; FHS: Barone-Adesi, Giannopoulos and Vosper (1999).
# Residuals: the 2,000 normal quantiles (skew 0, excess kurtosis -0.01), so a sum of h
# bootstrap draws is normal with variance h * var(eps) up to Monte Carlo error.
_EPS = stats.norm.ppf((np.arange(2000) + 0.5) / 2000)


@pytest.mark.parametrize("h", [4, 9, 25])
def test_fhs_square_root_of_time_rule_scales_the_log_return_quantile(h: int) -> None:
    # Without an rng the h-step scenarios are sqrt(h) times the one-step ones. A quantile
    # commutes with a monotone map, so on the log-return scale -log(1 - VaR) scales by
    # exactly sqrt(h): the reference is the one-step VaR, computed from the sorted sample.
    r, sigma = 0.01 * _EPS, np.full(2000, 0.01)
    var_1, _ = fhs_var_es(r, sigma, 0.02, 0.99)
    var_h, es_h = fhs_var_es(r, sigma, 0.02, 0.99, horizon_steps=h)
    log_var_1 = -0.02 * np.sort(_EPS)[2000 - 1980]  # the 1,980th smallest loss
    assert -math.log1p(-var_1) == pytest.approx(log_var_1, rel=1e-12)
    assert -math.log1p(-var_h) == pytest.approx(math.sqrt(h) * log_var_1, rel=1e-12)
    assert es_h > var_h


def _lognormal_var_es(sd: float, conf: float) -> tuple[float, float]:
    """VaR and ES of the loss ``1 - exp(R)``, ``R ~ N(0, sd^2)``: ``q = -sd z``,
    ``ES = 1 - exp(sd^2 / 2) Phi(z' - sd) / Phi(z')`` with ``z' = q / sd`` (the lognormal
    partial expectation ``E[e^R; R < q] = exp(sd^2 / 2) Phi(q / sd - sd)``)."""
    z = float(stats.norm.ppf(1.0 - conf))
    return (-math.expm1(sd * z),
            1.0 - math.exp(sd * sd / 2) * float(stats.norm.cdf(z - sd)) / (1.0 - conf))


@pytest.mark.parametrize("h", [4, 9])
def test_fhs_multi_step_bootstrap_matches_square_root_of_time_on_normal_residuals(
    h: int,
) -> None:
    # The bootstrap sums h residuals drawn with replacement at today's sigma (0.02): the
    # sum is N(0, h var(eps)), so VaR and ES are the lognormal ones at sd = 0.02 sqrt(h var).
    # 100,000 paths: the 99 % quantile's standard error is sqrt(0.99 * 0.01 / 1e5) / phi(z)
    # = 0.5 % of it, ES's about 0.7 %; held to 2 % and 3 %. Summing h - 1 or h + 1 draws
    # moves VaR by 5 % (h = 9) to 13 % (h = 4), one-step sigma 0.01 instead of 0.02 by 50 %.
    r, sigma = 0.01 * _EPS, np.full(2000, 0.01)
    a = fhs_var_es(r, sigma, 0.02, 0.99, horizon_steps=h, rng=np.random.default_rng(5),
                   n_paths=100_000)
    b = fhs_var_es(r, sigma, 0.02, 0.99, horizon_steps=h, rng=np.random.default_rng(5),
                   n_paths=100_000)
    assert a == b  # seeded
    var_ref, es_ref = _lognormal_var_es(0.02 * math.sqrt(h * float(np.var(_EPS))), 0.99)
    assert a[0] == pytest.approx(var_ref, rel=0.02)
    assert a[1] == pytest.approx(es_ref, rel=0.03)


def test_linear_pnl_and_full_revaluation_agree_for_linear_instruments() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((20, 3)) * 1000
    rets = rng.standard_normal((100, 3)) * 0.02
    spot = np.array([60_000.0, 3_000.0, 150.0])
    lin = linear_pnl(x, rets)
    full = full_revaluation_pnl(lambda s: s, spot, rets, x / spot)
    np.testing.assert_allclose(full, lin, rtol=1e-10, atol=1e-8)
    with pytest.raises(ValueError, match="align"):
        linear_pnl(x, rets[:, :2])


def test_full_revaluation_prices_options_with_the_black76_kernel() -> None:
    from solvency.core.options import black76 as b76  # in-repo: an import error must fail
    strikes = np.array([55_000.0, 60_000.0, 65_000.0])
    calls = np.array([False, True, True])

    def value(spots: np.ndarray) -> np.ndarray:
        s = np.repeat(spots[:, 0], 3)
        k = np.tile(strikes, spots.shape[0])
        c = np.tile(calls, spots.shape[0])
        out = b76.black76_price(forward=s, strike=k, time_yr=30 / 365, vol=0.6, rate=0.0,
                                is_call=c)
        return np.asarray(out.price).reshape(spots.shape[0], 3)

    rets = np.array([[-0.2], [0.0], [0.1]])
    q = np.array([[1.0, -2.0, 1.0]])
    pnl = full_revaluation_pnl(value, [60_000.0], rets, q)

    def bs(f: float, k: float, call: bool) -> float:  # Black (1976) by hand
        sd = 0.6 * math.sqrt(30 / 365)
        d1 = (math.log(f / k) + sd * sd / 2) / sd
        d2 = d1 - sd
        if call:
            return f * stats.norm.cdf(d1) - k * stats.norm.cdf(d2)
        return k * stats.norm.cdf(-d2) - f * stats.norm.cdf(-d1)

    def book(f: float) -> float:
        return bs(f, 55_000, False) - 2 * bs(f, 60_000, True) + bs(f, 65_000, True)

    expected = [book(60_000 * (1 + r)) - book(60_000) for r in (-0.2, 0.0, 0.1)]
    np.testing.assert_allclose(pnl[0], expected, rtol=1e-7, atol=1e-6)


def test_monte_carlo_var_matches_the_normal_closed_form() -> None:
    # Seeded: 200,000 draws; the tolerance covers the quantile's sampling error (~0.5 %).
    cov = np.array([[0.0004, 0.0001], [0.0001, 0.0009]])
    w = np.array([2.0, -1.0])
    sd = math.sqrt(w @ cov @ w)
    var, es = monte_carlo_var_es(w, cov, 0.99, rng=np.random.default_rng(42), n_sims=200_000)
    v_ref, e_ref = normal_var_es(sd, 0.99)
    assert var == pytest.approx(float(v_ref), rel=0.02)
    assert es == pytest.approx(float(e_ref), rel=0.02)
    again = monte_carlo_var_es(w, cov, 0.99, rng=np.random.default_rng(42), n_sims=200_000)
    assert again == (var, es)


def test_monte_carlo_student_t_matches_its_closed_form() -> None:
    cov = np.array([[0.0004]])
    var, _ = monte_carlo_var_es([1.0], cov, 0.99, rng=np.random.default_rng(9),
                                n_sims=400_000, nu=5.0)
    ref, _ = student_t_var_es(0.02, 5.0, 0.99)
    assert var == pytest.approx(float(ref), rel=0.02)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 300)),
           elements=st.sampled_from([-3.0, -1.0, 0.0, 0.5, 2.0]) | st.floats(-1e3, 1e3)),
    st.sampled_from([0.5, 0.9, 0.975, 0.99, 0.999]),
)
def test_tail_kernel_equals_the_partition_twin(pnl: np.ndarray, conf: float) -> None:
    # The compiled one-pass tail buffer (2-D input) against numpy.partition on -pnl.
    var, es = historical_var_es(pnl, conf)
    for i in range(pnl.shape[0]):
        rv, re = empirical_var_es_losses(-pnl[i], conf)
        assert np.asarray(var)[i] == rv
        assert np.asarray(es)[i] == pytest.approx(re, rel=1e-9, abs=1e-9)


def test_tail_kernel_rejects_nan_in_a_matrix() -> None:
    pnl = np.zeros((3, 100))
    pnl[1, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        historical_var_es(pnl, 0.99)
    with pytest.raises(ValueError, match="NaN"):
        historical_var_es(pnl, 0.5)  # the partition path
