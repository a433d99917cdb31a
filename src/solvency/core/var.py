"""Value at Risk and Expected Shortfall: historical, parametric, FHS and Monte Carlo.

Sign convention: inputs are **P&L** (gains positive) unless a function says *losses*;
VaR and ES are reported as positive losses. ``confidence`` is the VaR level ``alpha``
(0.99 means the 1 % worst outcomes).

Empirical definitions (on ``n`` scenarios, losses sorted ``L(1) <= ... <= L(n)``,
``m = ceil(n * alpha)``): ``VaR = L(m)``, the smallest loss ``l`` with ``F_n(l) >= alpha``;
``ES = [sum_{i>m} L(i) / n + (m/n - alpha) L(m)] / (1 - alpha)``, the average of the
empirical quantile function above ``alpha`` (Acerbi and Tasche 2002, "On the coherence
of expected shortfall"). For ``n = 1000`` at 99 %: VaR is the 11th largest loss and ES the
mean of the 10 largest.

Sources: Jorion, *Value at Risk*, 3rd ed. (2007); McNeil, Frey and Embrechts,
*Quantitative Risk Management* (2005), sec. 2.2.4 (normal and Student-t ES);
Barone-Adesi, Giannopoulos and Vosper (1999), "VaR without correlations for portfolios of
derivative securities", *Journal of Futures Markets* 19(5) (filtered historical simulation).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = [
    "empirical_var_es_losses",
    "fhs_var_es",
    "full_revaluation_pnl",
    "historical_var_es",
    "linear_pnl",
    "monte_carlo_var_es",
    "normal_var_es",
    "student_t_var_es",
]

FloatArray = npt.NDArray[np.float64]
F = TypeVar("F", bound=Callable[..., Any])
# Above this many tail scenarios the insertion buffer loses to numpy's introselect.
_TAIL_KERNEL_MAX: Final = 64


def _jit(func: F) -> F:
    # Typed wrapper: numba's decorator is untyped, mypy strict would flag every kernel.
    return cast(F, numba.njit(cache=True, nogil=True, parallel=True)(func))


@_jit
def _lower_tail_kernel(x: FloatArray, k: int, var: FloatArray, tail: FloatArray) -> int:
    # Per row, keep the k+1 smallest values in a sorted buffer (one pass; most values are
    # rejected by one comparison with the buffer's largest). var = -(k+1)-th smallest,
    # tail = -(sum of the k smallest). Returns the count of rows with a non-finite value.
    rows, n = x.shape
    bad = np.zeros(rows, dtype=np.int64)
    for i in numba.prange(rows):
        buf = np.empty(k + 1)
        size = 0
        for j in range(n):
            v = x[i, j]
            if not math.isfinite(v):
                bad[i] = 1
                continue
            if size == k + 1 and v >= buf[k]:
                continue
            pos = size if size < k + 1 else k
            while pos > 0 and buf[pos - 1] > v:
                if pos < k + 1:
                    buf[pos] = buf[pos - 1]
                pos -= 1
            buf[pos] = v
            if size < k + 1:
                size += 1
        var[i] = -buf[k]
        acc = 0.0
        for j in range(k):
            acc += buf[j]
        tail[i] = -acc
    return int(bad.sum())


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: {confidence} must lie in (0, 1)")


def empirical_var_es_losses(
    losses: npt.ArrayLike, confidence: float
) -> tuple[FloatArray | float, FloatArray | float]:
    """Return empirical VaR and ES of loss samples along the last axis.

    Uses one ``numpy.partition`` per row (linear time, no full sort). Works for a loss
    sample such as an insurance fund's simulated losses (1-D) or for a scenario matrix
    ``(n_portfolios, n_scenarios)``.

    Raises
    ------
    ValueError
        If the sample is empty or holds NaN or infinity.
    """
    _check_confidence(confidence)
    loss = np.asarray(losses, dtype=np.float64)
    if loss.ndim == 0 or loss.shape[-1] == 0:
        raise ValueError("losses: empty sample")
    if not np.isfinite(loss).all():
        raise ValueError("losses: contains NaN or infinity")
    n = loss.shape[-1]
    m = max(1, math.ceil(n * confidence - 1e-9))
    part = np.partition(loss, m - 1, axis=-1)
    var = part[..., m - 1]
    tail = part[..., m:].sum(axis=-1) if m < n else np.zeros_like(var)
    es = (tail / n + (m / n - confidence) * var) / (1.0 - confidence)
    if var.ndim == 0:
        return float(var), float(es)
    return var, cast(FloatArray, es)


def historical_var_es(
    pnl: npt.ArrayLike, confidence: float = 0.99
) -> tuple[FloatArray | float, FloatArray | float]:
    """Return historical-simulation VaR and ES of P&L scenarios along the last axis.

    Same definitions as :func:`empirical_var_es_losses` on ``-pnl``, computed on the P&L
    directly. For a scenario matrix with a short tail (``n - ceil(n alpha) < 64``, e.g.
    1,000 scenarios at 99 %) a compiled one-pass kernel keeps each row's worst outcomes
    in a small sorted buffer (numba, parallel over portfolios); otherwise one
    ``numpy.partition`` per row. :func:`empirical_var_es_losses` is the plain twin.

    Parameters
    ----------
    pnl : array_like
        Scenario P&L, 1-D for one portfolio or ``(n_portfolios, n_scenarios)``.
    confidence : float
        VaR level, e.g. 0.99.
    """
    _check_confidence(confidence)
    x = np.asarray(pnl, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError("pnl: empty sample")
    n = x.shape[-1]
    m = max(1, math.ceil(n * confidence - 1e-9))
    k = n - m  # L(m) = -(k+1)-th smallest P&L; the n - m larger losses sit below it
    if x.ndim == 2 and k < _TAIL_KERNEL_MAX:
        var = np.empty(x.shape[0])
        tail = np.empty(x.shape[0])
        if _lower_tail_kernel(np.ascontiguousarray(x), k, var, tail):
            raise ValueError("pnl: contains NaN or infinity")
    else:
        if not np.isfinite(x).all():
            raise ValueError("pnl: contains NaN or infinity")
        part = np.partition(x, k, axis=-1)
        var = -part[..., k]
        tail = -part[..., :k].sum(axis=-1) if k > 0 else np.zeros_like(var)
    es = (tail / n + (m / n - confidence) * var) / (1.0 - confidence)
    if var.ndim == 0:
        return float(var), float(es)
    return var, es


def normal_var_es(
    sigma: npt.ArrayLike, confidence: float = 0.99, *, mu: npt.ArrayLike = 0.0
) -> tuple[FloatArray, FloatArray]:
    """Return parametric normal VaR and ES of P&L with mean ``mu`` and std ``sigma``.

    ``VaR = -mu + sigma z``, ``ES = -mu + sigma phi(z) / (1 - alpha)``, ``z = Phi^-1(alpha)``
    (McNeil, Frey and Embrechts 2005, Example 2.18).
    """
    _check_confidence(confidence)
    s = np.asarray(sigma, dtype=np.float64)
    if (s < 0.0).any() or not np.isfinite(s).all():
        raise ValueError("sigma: must be finite and >= 0")
    m = np.asarray(mu, dtype=np.float64)
    z = stats.norm.ppf(confidence)
    var = -m + s * z
    es = -m + s * stats.norm.pdf(z) / (1.0 - confidence)
    return cast(FloatArray, var), cast(FloatArray, es)


def student_t_var_es(
    sigma: npt.ArrayLike, nu: float, confidence: float = 0.99, *,
    mu: npt.ArrayLike = 0.0, standardized: bool = True,
) -> tuple[FloatArray, FloatArray]:
    """Return parametric Student-t VaR and ES of P&L.

    With ``x = t_nu^-1(alpha)`` and ``g_nu`` the t density:
    ``VaR = -mu + c x``, ``ES = -mu + c g_nu(x)/(1-alpha) (nu + x^2)/(nu - 1)``
    (McNeil, Frey and Embrechts 2005, Example 2.19), where ``c = sigma sqrt((nu-2)/nu)``
    when ``standardized`` (``sigma`` is the standard deviation, needs ``nu > 2``) and
    ``c = sigma`` otherwise (``sigma`` is the t scale).
    """
    _check_confidence(confidence)
    if nu <= (2.0 if standardized else 1.0):
        raise ValueError(f"nu: {nu} too small (needs > 2 standardized, > 1 for ES)")
    s = np.asarray(sigma, dtype=np.float64)
    if (s < 0.0).any() or not np.isfinite(s).all():
        raise ValueError("sigma: must be finite and >= 0")
    c = s * math.sqrt((nu - 2.0) / nu) if standardized else s
    x = float(stats.t.ppf(confidence, nu))
    es_unit = float(stats.t.pdf(x, nu)) / (1.0 - confidence) * (nu + x * x) / (nu - 1.0)
    m = np.asarray(mu, dtype=np.float64)
    return -m + c * x, -m + c * es_unit


def fhs_var_es(
    returns: npt.ArrayLike,
    sigma: npt.ArrayLike,
    sigma_next: float,
    confidence: float = 0.99,
    *,
    horizon_steps: int = 1,
    side: float = 1.0,
    rng: np.random.Generator | None = None,
    n_paths: int = 10_000,
) -> tuple[float, float]:
    """Return filtered-historical-simulation VaR and ES of a position's relative loss.

    Standardized residuals ``e_t = r_t / sigma_t`` (``sigma_t`` a one-step forecast made
    before ``r_t``) are rescaled by today's forecast ``sigma_next`` (Barone-Adesi et al.
    1999). One step: scenario returns ``sigma_next * e_t``. Over ``h > 1`` steps: with
    ``rng``, ``n_paths`` sums of ``h`` residuals drawn with replacement (volatility held
    at ``sigma_next``, the EWMA forecast); without it, the square-root-of-time rule on
    one-step scenarios. The loss of a unit linear position is ``1 - exp(side * R)`` with
    ``side = +1`` long, ``-1`` short.
    """
    _check_confidence(confidence)
    r = np.asarray(returns, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    if r.shape != s.shape or r.ndim != 1 or r.size == 0:
        raise ValueError("returns and sigma: need equal non-empty 1-D arrays")
    if not (np.isfinite(r).all() and np.isfinite(s).all()) or (s <= 0.0).any():
        raise ValueError("returns and sigma: must be finite, sigma > 0")
    if horizon_steps < 1 or not math.isfinite(sigma_next) or sigma_next < 0.0:
        raise ValueError("horizon_steps >= 1 and a finite sigma_next >= 0 are required")
    eps = r / s
    if horizon_steps == 1:
        scen = sigma_next * eps
    elif rng is None:
        scen = sigma_next * math.sqrt(horizon_steps) * eps
    else:
        idx = rng.integers(0, eps.size, size=(n_paths, horizon_steps))
        scen = sigma_next * eps[idx].sum(axis=1)
    loss = -np.expm1(side * scen)
    var, es = empirical_var_es_losses(loss, confidence)
    return float(var), float(es)


def linear_pnl(exposures: npt.ArrayLike, scenario_returns: npt.ArrayLike) -> FloatArray:
    """Return scenario P&L of linear positions: ``exposures @ scenario_returns.T``.

    Parameters
    ----------
    exposures : array_like
        ``(n_portfolios, n_assets)`` signed notionals (delta exposures).
    scenario_returns : array_like
        ``(n_scenarios, n_assets)`` simple returns per scenario.

    Returns
    -------
    numpy.ndarray
        ``(n_portfolios, n_scenarios)`` P&L, one BLAS matrix product.
    """
    x = np.asarray(exposures, dtype=np.float64)
    s = np.asarray(scenario_returns, dtype=np.float64)
    if x.ndim != 2 or s.ndim != 2 or x.shape[1] != s.shape[1]:
        raise ValueError(f"shapes {x.shape} and {s.shape} do not align on assets")
    return x @ s.T


def full_revaluation_pnl(
    value_fn: Callable[[FloatArray], FloatArray],
    spot_base: npt.ArrayLike,
    scenario_returns: npt.ArrayLike,
    quantities: npt.ArrayLike,
) -> FloatArray:
    """Return scenario P&L by full revaluation of every instrument (options included).

    ``value_fn(spots)`` maps an ``(k, n_underlyings)`` array of spots to ``(k,
    n_instruments)`` unit values (a vectorized pricing kernel, e.g. Black-76 per option).
    P&L is ``quantities @ (value(spot * (1 + R_s)) - value(spot))``, shape
    ``(n_portfolios, n_scenarios)``: instruments are revalued once per scenario, not per
    portfolio.
    """
    spot = np.asarray(spot_base, dtype=np.float64).reshape(1, -1)
    rets = np.asarray(scenario_returns, dtype=np.float64)
    q = np.atleast_2d(np.asarray(quantities, dtype=np.float64))
    if rets.ndim != 2 or rets.shape[1] != spot.shape[1]:
        raise ValueError("scenario_returns: expected (n_scenarios, n_underlyings)")
    base = np.asarray(value_fn(spot), dtype=np.float64)
    shocked = np.asarray(value_fn(spot * (1.0 + rets)), dtype=np.float64)
    dv = shocked - base
    if q.shape[1] != dv.shape[1]:
        raise ValueError("quantities: one column per instrument is required")
    return q @ dv.T


def monte_carlo_var_es(
    exposures: npt.ArrayLike,
    cov: npt.ArrayLike,
    confidence: float = 0.99,
    *,
    rng: np.random.Generator,
    n_sims: int = 100_000,
    mu: npt.ArrayLike | None = None,
    nu: float | None = None,
) -> tuple[FloatArray | float, FloatArray | float]:
    """Return Monte Carlo VaR and ES of linear portfolios under normal or t returns.

    Draws ``n_sims`` asset return vectors with covariance ``cov`` (multivariate normal, or
    multivariate Student-t with ``nu > 2`` degrees of freedom scaled to that covariance)
    from the caller's ``rng`` and applies :func:`historical_var_es` to the simulated
    P&L. Seeds stay with the caller: the same generator state gives the same answer.
    """
    x = np.atleast_2d(np.asarray(exposures, dtype=np.float64))
    c = np.asarray(cov, dtype=np.float64)
    k = x.shape[1]
    if c.shape != (k, k):
        raise ValueError(f"cov: expected ({k}, {k}), got {c.shape}")
    chol = np.linalg.cholesky(c)
    z = rng.standard_normal((n_sims, k)) @ chol.T
    if nu is not None:
        if nu <= 2.0:
            raise ValueError("nu must be > 2")
        w = rng.chisquare(nu, size=(n_sims, 1)) / nu
        z = z / np.sqrt(w) * math.sqrt((nu - 2.0) / nu)
    if mu is not None:
        z = z + np.asarray(mu, dtype=np.float64)
    pnl = linear_pnl(x, z)
    var, es = historical_var_es(pnl, confidence)
    if np.ndim(exposures) == 1:
        return float(np.asarray(var).ravel()[0]), float(np.asarray(es).ravel()[0])
    return var, es
