"""Acerbi and Szekely (2014), "Backtesting Expected Shortfall" (Risk, December 2014):
``Z1`` (eq. 6) and ``Z2`` (eq. 7) by hand, and their simulated p-values on series whose
answer is known (correctly specified normal losses: not rejected; forecasts scaled
down: rejected)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from solvency.core.backtest import acerbi_szekely, es_backtest, normal_es_from_var


def test_z1_z2_by_hand() -> None:
    # T = 4, p = 0.25, VaR 1, ES 2; losses 0.5, 3, 1.5, 0: exceptions at 3 and 1.5.
    # Z1 = (3/2 + 1.5/2) / 2 - 1 = 0.125; Z2 = (3/2 + 1.5/2) / (4 x 0.25) - 1 = 1.25
    z1, z2 = acerbi_szekely([0.5, 3.0, 1.5, 0.0], [1.0] * 4, [2.0] * 4, 0.25)
    assert float(z1) == pytest.approx(0.125, abs=1e-15)
    assert float(z2) == pytest.approx(1.25, abs=1e-15)
    z1, z2 = acerbi_szekely([0.5, 0.0], [1.0, 1.0], [2.0, 2.0], 0.25)
    assert math.isnan(float(z1)) and float(z2) == -1.0  # no exception: Z2 = -1


def test_normal_es_from_var() -> None:
    # N(0, 1) at p = 2.5 %: VaR 1.959964, ES phi(1.959964) / 0.025 = 2.337803
    es = normal_es_from_var([stats.norm.ppf(0.975)], 0.025)
    assert float(es[0]) == pytest.approx(2.3378027, abs=1e-6)
    # against the mean of the tail by quadrature
    tail = stats.norm.expect(lambda x: x, lb=stats.norm.ppf(0.975)) / 0.025
    assert float(es[0]) == pytest.approx(tail, rel=1e-9)


def _draws(rng: np.random.Generator, sigma: np.ndarray, sims: int) -> list[np.ndarray]:
    return [rng.standard_normal((sims // 2, sigma.size)) * sigma for _ in range(2)]


@pytest.mark.parametrize(("scale", "rejected"), [(1.0, False), (0.7, True)],
                         ids=["correct", "forecast-70pc"])
def test_simulated_p_values(scale: float, rejected: bool) -> None:
    p, t = 0.025, 1000
    rng = np.random.default_rng(11)
    sigma = 0.02 * np.exp(0.5 * np.sin(np.arange(t) / 50.0))  # time-varying volatility
    losses = rng.standard_normal(t) * sigma  # the true distribution
    var = scale * sigma * stats.norm.ppf(1 - p)  # the forecast (scaled down when 0.7)
    es = normal_es_from_var(var, p)
    res = es_backtest(losses, var, es, p, _draws(rng, var / stats.norm.ppf(1 - p), 1000))
    assert res.simulations == 1000 and res.forecast == "normal"
    if rejected:
        assert res.z2 > 0.5 and res.z2_p < 0.01
        assert res.z1 is not None and res.z1 > 0.05 and res.z1_p is not None
        assert res.z1_p < 0.01
    else:
        # E[Z2] = 0 under H0, sd about sqrt(ES2 / (T p ES^2))-ish ~ 0.2 here
        assert abs(res.z2) < 0.4 and res.z2_p > 0.05
        assert res.z1 is not None and abs(res.z1) < 0.2 and res.z1_p is not None
        assert res.z1_p > 0.05
