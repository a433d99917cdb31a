"""Volatility models: EWMA (RiskMetrics 1996), GARCH/GJR via ``arch``, liquidation odds."""

from __future__ import annotations

import math
import warnings
from decimal import Context, Decimal, localcontext
from pathlib import Path

import numpy as np
import pytest
from arch import arch_model
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import signal, stats
from scipy.special import ndtr
from tests.conftest import missing

from solvency.core.volatility import (
    annualize_volatility,
    double_barrier_touch_probability,
    ewma_lambda_for_interval,
    ewma_margin_rates,
    ewma_variance,
    ewma_variance_reference,
    fit_garch,
    garch_filter,
    garch_forecast_variance,
    garch_step_variance,
    garch_term_variance,
    liquidation_probability,
    liquidation_probability_driftless,
    log_returns,
    realized_volatility,
    rolling_volatility,
)

DATA = Path(__file__).parents[3] / ".." / "shared" / "data"
BTC_1H = DATA / "btcusdt_binance_spot_1h_2017-08-17_2024-04-21.csv.gz"

# arch fits by scipy's SLSQP with tol=None, i.e. ftol = 1e-6, and SLSQP stops once "the
# absolute sum of the constraint violations" is below ftol (scipy.optimize, method='SLSQP').
# So arch's stationarity constraint alpha + gamma/2 + beta <= 1 holds only to 1e-6, and where
# inside that a fit on the bound lands is the optimizer's last digits, which move between
# versions: on 1,200 BTC days GARCH-t gives 1 + 2.1e-12 with arch 6.3.0 / scipy 1.11.1 and
# 1 + 8.4e-13 with arch 8.0.0 / scipy 1.17.1 (GJR: 1 - 1.5e-11 and 1 + 9.2e-13).
SLSQP_FTOL = 1e-6


def _btc_daily_returns() -> np.ndarray:
    if not BTC_1H.is_file():
        missing(f"real data {BTC_1H} not present (CI keeps ../shared beside the checkout)")
    import gzip

    with gzip.open(BTC_1H, "rt") as fh:
        rows = [line.split(",") for line in fh.read().splitlines()[1:]]
    ts = np.array([int(r[1]) for r in rows])
    close = np.array([float(r[5]) for r in rows])
    day = ts // 86_400_000
    last = np.flatnonzero(np.diff(day))  # last bar of each day
    return np.diff(np.log(close[last]))


# ---------------------------------------------------------------------------------- EWMA


def test_ewma_hand_computed_riskmetrics_recursion() -> None:
    # RiskMetrics (1996) eq. 5.3: v1 = 0.94 * 1e-4 + 0.06 * 0.01^2 = 1e-4;
    # v2 = 0.94 * 1e-4 + 0.06 * 0.02^2 = 1.18e-4.
    v = ewma_variance([0.01, -0.02, 0.0], 0.94, var0=1e-4)
    assert v == pytest.approx([1e-4, 1e-4, 1.18e-4], rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 60)),
           elements=st.floats(-0.5, 0.5)),
    st.floats(0.5, 0.999),
)
def test_ewma_kernel_equals_its_plain_twin(r: np.ndarray, lam: float) -> None:
    v0 = np.mean(r[:, :30] ** 2, axis=1)
    got = ewma_variance(r, lam)
    ref = ewma_variance_reference(r, lam, v0)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-300)


def test_ewma_equals_scipy_lfilter() -> None:
    rng = np.random.default_rng(0)
    r = rng.standard_normal((5, 300)) * 0.01
    v0 = np.full(5, 1e-4)
    lam = 0.97
    # v[t] = lam v[t-1] + (1-lam) r[t-1]^2 is an IIR filter of the lagged squared returns.
    zi = (lam * v0)[:, None]
    y, _ = signal.lfilter([1 - lam], [1, -lam], r[:, :-1] ** 2, axis=1, zi=zi)
    expected = np.concatenate([v0[:, None], y], axis=1)
    np.testing.assert_allclose(ewma_variance(r, lam, var0=v0), expected, rtol=1e-12)


def test_ewma_margin_rates_fuse_sigma_scale_and_floor() -> None:
    rng = np.random.default_rng(1)
    r = rng.standard_normal((3, 200)) * 0.02
    z = stats.norm.ppf(0.99)
    rates = ewma_margin_rates(r, lam=0.94, z=z, horizon_steps=4, multiplier=1.5, floor=0.05)
    ref = np.maximum(0.05, z * np.sqrt(ewma_variance(r, 0.94)) * 2 * 1.5)
    np.testing.assert_allclose(rates, ref, rtol=1e-12)
    out = np.empty_like(r)
    assert ewma_margin_rates(r, z=z, out=out) is not None
    np.testing.assert_allclose(out, z * np.sqrt(ewma_variance(r, 0.94)), rtol=1e-12)


@pytest.mark.parametrize(
    ("step_s", "lam"),
    [pytest.param(86_400, 0.94, id="riskmetrics1996-daily"),
     pytest.param(3_600, 0.94 ** (1 / 24), id="hourly-same-half-life"),
     pytest.param(7 * 86_400, 0.94**7, id="weekly")],
)
def test_ewma_lambda_for_interval_keeps_the_daily_half_life(step_s: float, lam: float) -> None:
    assert ewma_lambda_for_interval(step_s) == pytest.approx(lam, rel=1e-12)


@pytest.mark.parametrize(
    ("returns", "lam", "match"),
    [pytest.param([0.01, np.nan], 0.94, "NaN", id="nan"),
     pytest.param([0.01, np.inf], 0.94, "NaN", id="inf"),
     pytest.param([0.01], 1.0, "lam", id="lam=1"),
     pytest.param([], 0.94, "non-empty", id="empty")],
)
def test_ewma_rejects_bad_input(returns: list[float], lam: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ewma_variance(np.asarray(returns, dtype=float), lam, var0=1e-4)


def test_realized_and_rolling_volatility_by_hand() -> None:
    r = np.array([0.01, -0.02, 0.02, 0.0])
    assert realized_volatility(r) == pytest.approx(math.sqrt((1 + 4 + 4) * 1e-4 / 4))
    roll = rolling_volatility(r, 2)
    assert math.isnan(roll[0])
    assert roll[1:] == pytest.approx([0.01, math.sqrt(5e-4 / 2), math.sqrt(8e-4 / 2)])


def test_log_returns_and_annualization() -> None:
    assert log_returns([100.0, 110.0]) == pytest.approx([math.log(1.1)])
    with pytest.raises(ValueError, match="positive"):
        log_returns([100.0, -1.0])
    with pytest.raises(ValueError, match="NaN"):
        log_returns([100.0, np.nan])
    # 1 % per hour -> 0.01 * sqrt(8760) per year (365-day year, crypto trades 24/7).
    assert float(annualize_volatility(0.01, 3_600)) == pytest.approx(0.01 * math.sqrt(8760))


# --------------------------------------------------------------------------------- GARCH


@pytest.fixture(scope="module")
def btc_returns() -> np.ndarray:
    return _btc_daily_returns()[-1200:]


@pytest.mark.parametrize("kind", ["garch", "gjr"])
def test_garch_fit_agrees_with_arch_used_directly(btc_returns: np.ndarray, kind: str) -> None:
    # We wrap arch (Sheppard), we do not re-implement it: same model, same numbers. Both
    # sides run the same arch, optimizer and inputs in one process, so they agree to
    # rounding (the wrapper only divides by scale^2 = 1e4) on every version: tolerances of a
    # few ulp, not of the optimizer. Across versions the parameters move by up to ~1e-6 relative
    # (arch 6.3.0 / scipy 1.11.1 vs arch 8.0.0 / scipy 1.17.1), so nothing here is compared
    # with numbers fitted once and written down.
    r = btc_returns
    fit = fit_garch(r, kind)  # type: ignore[arg-type]
    direct = arch_model(r * 100, mean="Zero", vol="GARCH", p=1, o=1 if kind == "gjr" else 0,
                        q=1, dist="t", rescale=False).fit(disp="off")
    p = direct.params
    ours = [fit.omega, fit.alpha, fit.beta, fit.nu, fit.loglikelihood]
    theirs = [p["omega"] / 1e4, p["alpha[1]"], p["beta[1]"], p["nu"], direct.loglikelihood]
    if kind == "gjr":
        ours.append(fit.gamma)
        theirs.append(p["gamma[1]"])
    np.testing.assert_allclose(ours, theirs, rtol=1e-14, atol=0)  # omega ~ 3e-6: no atol
    np.testing.assert_allclose(np.sqrt(fit.conditional_variance) * 100,
                               direct.conditional_volatility, rtol=1e-14)
    # Crypto daily returns: persistent volatility and fat tails. arch bounds persistence at
    # 1 only to SLSQP's ftol (see SLSQP_FTOL): these fits sit on the bound, a hair either
    # side of 1 depending on the version.
    assert 0.8 < fit.persistence <= 1.0 + SLSQP_FTOL
    assert 2.0 < fit.nu < 10.0


@pytest.mark.parametrize("kind", ["garch", "gjr"])
def test_garch_warm_start_reaches_the_cold_optimum_in_fewer_iterations(
    btc_returns: np.ndarray, kind: str
) -> None:
    # Issue 23 item 8: a rolling refit starts from the previous fit's parameters (arch's
    # starting_values, https://arch.readthedocs.io/en/latest/univariate/generated/
    # arch.univariate.base.ARCHModel.fit.html). The window moves by 50 returns; the warm
    # fit must land on the same optimum (likelihood within SLSQP's tolerance on the scaled
    # problem: its ftol is 1e-6 relative on ~2,400 log-likelihood units) in fewer steps.
    prev = fit_garch(btc_returns[:-50], kind)  # type: ignore[arg-type]
    cold = fit_garch(btc_returns, kind)  # type: ignore[arg-type]
    warm = fit_garch(btc_returns, kind, start=prev)  # type: ignore[arg-type]
    assert warm.loglikelihood == pytest.approx(cold.loglikelihood, rel=1e-6)
    assert warm.persistence == pytest.approx(cold.persistence, abs=1e-4)
    assert warm.nu == pytest.approx(cold.nu, rel=1e-3)
    direct = arch_model(btc_returns * 100, mean="Zero", vol="GARCH", p=1,
                        o=1 if kind == "gjr" else 0, q=1, dist="t", rescale=False)
    # The start is the previous fit moved inside arch's stationarity constraint (arch
    # ignores, with a StartingValueWarning, a start outside it): no such warning here.
    shrink = min(1.0, (1.0 - 1e-6) / prev.persistence)
    sv = [prev.omega * 1e4, *(np.array([prev.alpha, *([prev.gamma] if kind == "gjr" else []),
                                        prev.beta]) * shrink), prev.nu]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        n_warm = direct.fit(disp="off", starting_values=np.asarray(sv)).optimization_result.nit
        fit_garch(btc_returns, kind, start=prev)  # type: ignore[arg-type]
    n_cold = direct.fit(disp="off").optimization_result.nit
    assert n_warm < n_cold
    with pytest.raises(ValueError, match="start"):
        fit_garch(btc_returns, "gjr" if kind == "garch" else "garch", start=prev)  # type: ignore[arg-type]


def test_garch_filter_and_forecasts_agree_with_arch(btc_returns: np.ndarray) -> None:
    fit = fit_garch(btc_returns, "gjr")
    np.testing.assert_allclose(garch_filter(fit, btc_returns), fit.conditional_variance,
                               rtol=1e-9)
    per_step = garch_forecast_variance(fit, btc_returns, 10)
    assert per_step[0] == pytest.approx(fit.next_variance, rel=1e-9)
    for h in (1, 5, 10):
        closed = garch_term_variance(fit.next_variance, omega=fit.omega,
                                     persistence=fit.persistence, horizon_steps=h)
        assert float(closed) == pytest.approx(float(per_step[:h].sum()), rel=1e-9)


def test_garch_fit_rejects_short_or_bad_series() -> None:
    with pytest.raises(ValueError, match="100"):
        fit_garch(np.zeros(50))
    with pytest.raises(ValueError, match="NaN"):
        fit_garch(np.r_[np.zeros(200), np.nan])
    with pytest.raises(ValueError, match="kind"):
        fit_garch(np.random.default_rng(0).standard_normal(200) * 0.01, "egarch")  # type: ignore[arg-type]


def test_garch_term_variance_unit_root_limit() -> None:
    # phi = 1: E[sigma^2_{t+k}] = sigma^2_{t+1} + (k - 1) omega.
    got = garch_term_variance(2.0, omega=0.5, persistence=1.0, horizon_steps=3)
    assert float(got) == 2.0 + 2.5 + 3.0


def _exact_term_and_step(v1: float, omega: float, phi: float, h: int) -> tuple[float, float]:
    # The GARCH(1,1) forecast recursion E[s2_{k+1}] = omega + phi E[s2_k] (Bollerslev
    # 1986, eq. 8), summed over k = 1..h in 60-digit decimal arithmetic (each float input
    # is converted exactly; 1440 steps lose nothing at 1e-16): the reference.
    with localcontext(Context(prec=60)):
        return _recursion(Decimal(v1), Decimal(omega), Decimal(phi), h)


def _recursion(v: Decimal, o: Decimal, p: Decimal, h: int) -> tuple[float, float]:
    total, step = Decimal(0), v
    for _ in range(h):
        total += step
        step = o + p * step
    step_h = v
    for _ in range(h - 1):
        step_h = o + p * step_h
    return float(total), float(step_h)


# Above 1 too: arch's fits on the bound land up to SLSQP_FTOL past it (1 + 2.1e-12 on BTC
# days with arch 6.3.0), and the forecast is then a slowly growing one, still exact.
_PERSISTENCES = [0.0, 0.3, 0.5, 0.9, 0.97, 0.99, 0.999, 1 - 1e-5, 1 - 1e-7, 1 - 1e-9,
                 1 - 4.1e-12, 1 - 1e-13, 1 - 1e-15, 1.0, 1 + 2.1e-12, 1 + SLSQP_FTOL]


@pytest.mark.parametrize("phi", _PERSISTENCES, ids=lambda p: f"phi={p!r}")
@pytest.mark.parametrize("h", [1, 2, 5, 10, 96, 1440])
def test_garch_term_variance_exact_for_every_persistence(phi: float, h: int) -> None:
    # The fit of issue 11 (arch 8.0.0, GJR on 1,200 BTC days): omega 2.08e-6 at
    # persistence 1 - 4.1e-12, next-step variance 1.1e-3. The vbar form lost 8 % at h = 96.
    v1, omega = 1.1e-3, 2.08e-6
    exact_term, exact_step = _exact_term_and_step(v1, omega, phi, h)
    got = float(garch_term_variance(v1, omega=omega, persistence=phi, horizon_steps=h))
    assert got == pytest.approx(exact_term, rel=1e-13)
    step = float(garch_step_variance(v1, omega=omega, persistence=phi, steps_ahead=h))
    assert step == pytest.approx(exact_step, rel=1e-13)


def test_garch_term_variance_vectorized_and_large_horizon() -> None:
    v = np.array([1e-4, 1e-3, 5e-2])
    got = garch_term_variance(v, omega=1e-6, persistence=0.95, horizon_steps=100_000)
    for i, vi in enumerate(v):
        g = (1 - 0.95**100_000) / 0.05
        assert got[i] == pytest.approx(g * vi + 1e-6 * (100_000 - g) / 0.05, rel=1e-13)
    with pytest.raises(ValueError, match="horizon_steps"):
        garch_term_variance(v, omega=1e-6, persistence=0.95, horizon_steps=0)
    with pytest.raises(ValueError, match="steps_ahead"):
        garch_step_variance(v, omega=1e-6, persistence=0.95, steps_ahead=0)


# ------------------------------------------------------------------ liquidation probability


@pytest.mark.parametrize(
    ("mark", "liq", "side", "sigma", "t", "expected"),
    [
        pytest.param(100.0, 90.0, 1, 0.5, 0.25, 2 * stats.norm.cdf(math.log(0.9) / 0.25),
                     id="reflection-long-2Phi"),
        pytest.param(100.0, 110.0, -1, 0.5, 0.25, 2 * stats.norm.cdf(-math.log(1.1) / 0.25),
                     id="reflection-short-2Phi"),
        pytest.param(100.0, np.nan, 1, 0.5, 1.0, 0.0, id="nan-liq-price-never"),
        pytest.param(100.0, 0.0, 1, 0.5, 1.0, 0.0, id="zero-liq-price-long-never"),
        pytest.param(100.0, 101.0, 1, 0.5, 1.0, 1.0, id="long-already-below-liq"),
        pytest.param(100.0, 99.0, -1, 0.5, 1.0, 1.0, id="short-already-above-liq"),
        pytest.param(100.0, 90.0, 1, 0.0, 1.0, 0.0, id="zero-vol"),
        pytest.param(100.0, 90.0, 1, 0.5, 0.0, 0.0, id="zero-horizon"),
        pytest.param(100.0, 90.0, 0, 0.5, 1.0, 0.0, id="flat"),
    ],
)
def test_liquidation_probability_cases(mark: float, liq: float, side: int, sigma: float,
                                       t: float, expected: float) -> None:
    got = liquidation_probability(mark, liq, side, sigma, t)
    assert float(got) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_liquidation_probability_is_vectorized_and_monotone() -> None:
    mark = np.full(5, 100.0)
    liq = np.array([50.0, 80.0, 90.0, 95.0, 99.0])
    p = liquidation_probability(mark, liq, np.ones(5), 0.8, 30 / 365)
    assert p.shape == (5,)
    assert np.all(np.diff(p) > 0)
    with pytest.raises(ValueError, match="mark"):
        liquidation_probability([-1.0], [0.5], [1], 0.5, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        liquidation_probability([1.0], [0.5], [1], -0.5, 1.0)


@pytest.mark.parametrize(("side", "liq", "mu"),
                         [pytest.param(1, 90.0, 0.3, id="long-up-drift"),
                          pytest.param(1, 90.0, -0.3, id="long-down-drift"),
                          pytest.param(-1, 110.0, 0.2, id="short-up-drift")])
def test_liquidation_probability_with_drift_matches_monte_carlo(
    side: int, liq: float, mu: float
) -> None:
    # Discretely monitored paths touch less than continuous ones: compare with the
    # barrier shifted by 0.5826 sigma sqrt(dt) (Broadie, Glasserman and Kou 1997).
    sigma, horizon, steps, paths = 0.6, 0.25, 250, 20_000
    dt = horizon / steps
    rng = np.random.default_rng(123)
    x = np.cumsum(mu * dt + sigma * math.sqrt(dt) * rng.standard_normal((paths, steps)), axis=1)
    b = math.log(liq / 100.0)
    hit = (x.min(axis=1) <= b) if side > 0 else (x.max(axis=1) >= b)
    shift = math.exp(-side * 0.5826 * sigma * math.sqrt(dt))
    p = float(liquidation_probability(100.0, liq * shift, side, sigma, horizon, drift=mu))
    se = math.sqrt(p * (1 - p) / paths)
    assert abs(hit.mean() - p) < 4 * se + 0.005


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    mark=st.floats(1e-3, 1e7),
    ratio=st.floats(0.01, 5.0),
    side=st.sampled_from([1.0, -1.0, 0.0]),
    sigma=st.floats(0.0, 5.0),
    horizon=st.floats(0.0, 2.0),
)
def test_driftless_kernel_agrees_with_its_numpy_twin(mark: float, ratio: float, side: float,
                                                     sigma: float, horizon: float) -> None:
    # The compiled view kernel (erfc) against liquidation_probability (scipy's ndtr), the
    # reference: 2 Phi(-|b| / (sigma sqrt T)) = erfc(|b| / (sigma sqrt(2 T))).
    liq = np.array([mark * ratio, np.nan, 0.0, mark])
    m = np.full(4, mark)
    sd = np.full(4, side)
    sg = np.full(4, sigma)
    got = liquidation_probability_driftless(m, liq, sd, sg, horizon)
    want = liquidation_probability(m, liq, sd, sg, horizon)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)


def test_driftless_probability_with_a_vanishing_volatility_is_zero() -> None:
    # sigma^2 underflows to 0 below ~1e-160: the numpy form once divided 0 by it (NaN)
    one = np.ones(1)
    for f in (liquidation_probability, liquidation_probability_driftless):
        got = f(one, np.array([2.0]), -one, np.array([6e-225]), 1.0)
        assert got.tolist() == [0.0]


def test_driftless_kernel_rejects_bad_inputs() -> None:
    one = np.ones(1)
    with pytest.raises(ValueError, match="mark"):
        liquidation_probability_driftless(np.array([np.nan]), one, one, one, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        liquidation_probability_driftless(one, one, one, np.array([-1.0]), 1.0)
    with pytest.raises(ValueError, match="horizon"):
        liquidation_probability_driftless(one, one, one, one, float("inf"))


def _stay_eigen(a: float, b: float, s: float) -> float:
    # P(a driftless BM from 0, variance s^2 at T, stays in (a, b)): the heat equation's
    # eigenfunction series on (a, b), independent of the code's method-of-images sum
    width = b - a
    return sum(4 / (n * math.pi) * math.sin(n * math.pi * -a / width)
               * math.exp(-(n * math.pi) ** 2 * s * s / (2 * width * width))
               for n in range(1, 4001, 2))


@pytest.mark.parametrize(("lower", "upper", "sigma", "horizon"), [
    (90.0, 112.0, 0.6, 30 / 365), (62.27, 114.72, 0.8, 30 / 365), (99.0, 101.0, 0.8, 1.0),
    (50.0, 200.0, 0.3, 1 / 365), (95.0, 130.0, 1.2, 0.25)])
def test_double_barrier_touch_matches_the_eigenfunction_series(
        lower: float, upper: float, sigma: float, horizon: float) -> None:
    p = float(double_barrier_touch_probability(100.0, lower, upper, sigma, horizon)[0])
    s = sigma * math.sqrt(horizon)
    a, b = math.log(lower / 100.0), math.log(upper / 100.0)
    assert p == pytest.approx(1 - _stay_eigen(a, b, s), abs=1e-9)
    one = [2 * float(ndtr(-abs(x) / s)) for x in (a, b)]
    assert max(one) - 1e-12 <= p <= min(1.0, sum(one)) + 1e-12


def test_double_barrier_touch_edges() -> None:
    f = double_barrier_touch_probability
    one_down = float(liquidation_probability(100.0, 90.0, 1, 0.6, 0.1))
    one_up = float(liquidation_probability(100.0, 115.0, -1, 0.6, 0.1))
    # an absent barrier (NaN or <= 0 below, inf above) gives the one-sided probability
    assert float(f(100.0, 90.0, math.inf, 0.6, 0.1)[0]) == pytest.approx(one_down, rel=1e-12)
    assert float(f(100.0, math.nan, 115.0, 0.6, 0.1)[0]) == pytest.approx(one_up, rel=1e-12)
    assert float(f(100.0, 0.0, 115.0, 0.6, 0.1)[0]) == pytest.approx(one_up, rel=1e-12)
    # a far barrier adds (almost) nothing; a mark at a barrier is touched; no vol: 0
    assert float(f(100.0, 90.0, 1e9, 0.6, 0.1)[0]) == pytest.approx(one_down, rel=1e-9)
    np.testing.assert_array_equal(f([100.0, 100.0, 100.0], [100.0, 90.0, math.nan],
                                    [110.0, 110.0, math.inf], [0.6, 0.0, 0.6], 0.1),
                                  [1.0, 0.0, 0.0])
    for bad in ((0.0, 0.6, 0.1), (100.0, -0.1, 0.1), (100.0, 0.6, -1.0)):
        with pytest.raises(ValueError):
            f(bad[0], 90.0, 110.0, bad[1], bad[2])
