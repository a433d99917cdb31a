"""Volatility models: realized, EWMA (RiskMetrics), GARCH(1,1) and GJR-GARCH via ``arch``.

Conventions
-----------
* Returns are log returns ``r_t = ln(P_t / P_{t-1})`` per sampling step. Arrays are 1-D
  (one series) or 2-D with **time on the last axis** (``(n_markets, n_obs)``).
* A *variance forecast series* ``v`` has the shape of the returns and ``v[..., t]`` is the
  one-step-ahead variance of ``r[..., t]`` given the returns before ``t`` only
  (``sigma^2_{t | t-1}``), so ``r[..., t] / sqrt(v[..., t])`` is an out-of-sample
  standardized return. Backtests rely on this: nothing at ``t`` sees ``r_t``.
* Volatility is zero-mean (crypto returns at a daily or finer step have a mean that is
  noise next to their volatility; RiskMetrics 1996 sets it to zero for the same reason).

Sources: J.P. Morgan/Reuters, *RiskMetrics -- Technical Document*, 4th ed., 1996, sec. 5.2
(EWMA, decay 0.94 for daily data); Bollerslev (1986) GARCH(1,1); Glosten, Jagannathan and
Runkle (1993) GJR; Bollerslev (1987) Student-t innovations. GARCH and GJR are fitted with
Kevin Sheppard's ``arch`` package (we wrap it, we do not re-implement the estimator).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

__all__ = [
    "DAY_S",
    "RISKMETRICS_LAMBDA_DAILY",
    "YEAR_S",
    "GarchFit",
    "annualize_volatility",
    "double_barrier_touch_probability",
    "ewma_lambda_for_interval",
    "ewma_margin_rates",
    "ewma_variance",
    "ewma_variance_reference",
    "fit_garch",
    "garch_filter",
    "garch_forecast_variance",
    "garch_step_variance",
    "garch_term_variance",
    "liquidation_probability",
    "liquidation_probability_driftless",
    "log_return_correlation",
    "log_returns",
    "realized_volatility",
    "rolling_volatility",
]

FloatArray = npt.NDArray[np.float64]
F = TypeVar("F", bound=Callable[..., Any])

DAY_S: Final = 86_400.0
YEAR_S: Final = 365.0 * DAY_S  # crypto trades every day: a year is 365 days of 24 hours
RISKMETRICS_LAMBDA_DAILY: Final = 0.94
_SEED_OBS: Final = 30


def _jit(func: F) -> F:
    # Typed wrapper: numba's decorator is untyped, mypy strict would flag every kernel.
    return cast(F, numba.njit(cache=True, nogil=True, parallel=True)(func))


def _as_float(x: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name}: expected a 1-D or 2-D array, got {arr.ndim}-D")
    if arr.shape[-1] == 0:
        raise ValueError(f"{name}: empty series")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinity")
    return arr


def log_returns(prices: npt.ArrayLike) -> FloatArray:
    """Return log returns ``ln(P_t / P_{t-1})`` along the last axis.

    Parameters
    ----------
    prices : array_like
        Strictly positive, finite prices, 1-D or ``(n_markets, n_obs)``.

    Returns
    -------
    numpy.ndarray
        One fewer observation than ``prices`` along the last axis.

    Raises
    ------
    ValueError
        If a price is NaN, infinite or not strictly positive, or fewer than two are given.
    """
    p = _as_float(prices, "prices")
    if p.shape[-1] < 2:
        raise ValueError("prices: need at least two observations")
    if (p <= 0.0).any():
        raise ValueError("prices: must be strictly positive")
    return cast(FloatArray, np.diff(np.log(p), axis=-1))


def annualize_volatility(sigma_per_step: npt.ArrayLike, step_s: float) -> FloatArray:
    """Scale a per-step volatility to a per-year one: ``sigma * sqrt(YEAR_S / step_s)``.

    A year is 365 days (crypto venues trade around the clock); the square-root-of-time rule
    assumes independent increments.
    """
    if step_s <= 0.0:
        raise ValueError("step_s must be > 0")
    sigma = np.asarray(sigma_per_step, dtype=np.float64)
    return sigma * math.sqrt(YEAR_S / step_s)


def ewma_lambda_for_interval(
    step_s: float, lam_daily: float = RISKMETRICS_LAMBDA_DAILY
) -> float:
    """Return the EWMA decay for a sampling step that keeps the daily half-life.

    ``lam_step = lam_daily ** (step_s / 86400)``: the weight of an observation one day old
    is the same at every sampling interval (RiskMetrics 1996 uses 0.94 for daily data).
    """
    if not 0.0 < lam_daily < 1.0:
        raise ValueError("lam_daily must lie in (0, 1)")
    if step_s <= 0.0:
        raise ValueError("step_s must be > 0")
    return float(lam_daily ** (step_s / DAY_S))


def realized_volatility(returns: npt.ArrayLike) -> FloatArray | float:
    """Return the zero-mean realized volatility ``sqrt(mean(r^2))`` along the last axis."""
    r = _as_float(returns, "returns")
    out = np.sqrt(np.mean(r * r, axis=-1))
    return float(out) if out.ndim == 0 else cast(FloatArray, out)


def rolling_volatility(returns: npt.ArrayLike, window: int) -> FloatArray:
    """Return the trailing zero-mean volatility forecast over ``window`` past returns.

    ``out[..., t] = sqrt(mean(r[..., t-window:t]^2))`` uses only returns *before* ``t``
    (an out-of-sample forecast of ``r_t``); the first ``window`` entries use the expanding
    window of what is available and ``out[..., 0]`` is NaN (nothing observed yet).
    """
    r = _as_float(returns, "returns")
    if window < 1:
        raise ValueError("window must be >= 1")
    csum = np.concatenate(
        [np.zeros((*r.shape[:-1], 1)), np.cumsum(r * r, axis=-1)], axis=-1
    )
    n = r.shape[-1]
    t = np.arange(n)
    lo = np.maximum(t - window, 0)
    count = (t - lo).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (csum[..., t] - csum[..., lo]) / count
    return cast(FloatArray, np.sqrt(np.maximum(var, 0.0)))


# --------------------------------------------------------------------------- EWMA


@_jit
def _ewma_kernel(
    r: FloatArray, lam: float, var0: FloatArray, scale: float, floor: float,
    out: FloatArray, rates: bool,
) -> int:
    # One fused pass per market: variance recursion, optional sqrt * scale, max(floor).
    # Returns the number of markets with a non-finite return (checked in the same pass).
    m, n = r.shape
    bad = np.zeros(m, dtype=np.int64)
    w = 1.0 - lam
    for i in numba.prange(m):
        v = var0[i]
        for t in range(n):
            out[i, t] = max(floor, scale * math.sqrt(v)) if rates else v
            x = r[i, t]
            if not math.isfinite(x):
                bad[i] = 1
            v = lam * v + w * x * x
    return int(bad.sum())


def ewma_variance_reference(
    returns: npt.ArrayLike, lam: float, var0: npt.ArrayLike
) -> FloatArray:
    """Compute the EWMA variance forecasts with a plain Python loop (the kernel's twin).

    ``v[0] = var0``, ``v[t] = lam * v[t-1] + (1 - lam) * r[t-1]^2`` (RiskMetrics 1996,
    eq. 5.3 written as a recursion).
    """
    r = np.atleast_2d(np.asarray(returns, dtype=np.float64))
    v0 = np.broadcast_to(np.asarray(var0, dtype=np.float64), r.shape[:1])
    out = np.empty_like(r)
    for i in range(r.shape[0]):
        v = float(v0[i])
        for t in range(r.shape[1]):
            out[i, t] = v
            v = lam * v + (1.0 - lam) * float(r[i, t]) ** 2
    return out.reshape(np.shape(returns))


def _seed_variance(r2d: FloatArray, var0: npt.ArrayLike | None) -> FloatArray:
    if var0 is None:
        k = min(_SEED_OBS, r2d.shape[1])
        return cast(FloatArray, np.mean(r2d[:, :k] ** 2, axis=1))
    v0 = np.broadcast_to(np.asarray(var0, dtype=np.float64), r2d.shape[:1]).copy()
    if not np.isfinite(v0).all() or (v0 < 0.0).any():
        raise ValueError("var0: must be finite and >= 0")
    return v0


def _ewma_run(
    returns: npt.ArrayLike, lam: float, *, var0: npt.ArrayLike | None, scale: float,
    floor: float, out: FloatArray | None, rates: bool,
) -> FloatArray:
    if not 0.0 < lam < 1.0:
        raise ValueError(f"lam: {lam} must lie in (0, 1)")
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim not in (1, 2) or r.shape[-1] == 0:
        raise ValueError("returns: expected a non-empty 1-D or 2-D array")
    r2d = np.ascontiguousarray(r.reshape(1, -1) if r.ndim == 1 else r)
    v0 = _seed_variance(r2d, var0)
    if not np.isfinite(v0).all():
        raise ValueError("returns: contains NaN or infinity")
    res = np.empty_like(r2d) if out is None else out.reshape(r2d.shape)
    if _ewma_kernel(r2d, float(lam), v0, float(scale), float(floor), res, rates):
        raise ValueError("returns: contains NaN or infinity")
    return cast(FloatArray, res.reshape(r.shape))


def ewma_variance(
    returns: npt.ArrayLike,
    lam: float = RISKMETRICS_LAMBDA_DAILY,
    *,
    var0: npt.ArrayLike | None = None,
    out: FloatArray | None = None,
) -> FloatArray:
    """Return EWMA one-step-ahead variance forecasts (RiskMetrics 1996).

    ``v[..., 0] = var0`` and ``v[..., t] = lam * v[..., t-1] + (1 - lam) * r[..., t-1]^2``,
    so ``v[..., t]`` uses returns before ``t`` only. Vectorized across markets (numba,
    parallel over rows); :func:`ewma_variance_reference` is its plain twin.

    Parameters
    ----------
    returns : array_like
        Log returns per step, 1-D or ``(n_markets, n_obs)``.
    lam : float
        Decay per step; 0.94 is RiskMetrics' daily value. For another step use
        :func:`ewma_lambda_for_interval`.
    var0 : array_like, optional
        Seed variance per market; default the mean square of the first 30 returns.
    out : numpy.ndarray, optional
        Preallocated C-contiguous output of the returns' shape.

    Raises
    ------
    ValueError
        If ``lam`` is outside (0, 1) or a return is NaN or infinite.
    """
    return _ewma_run(returns, lam, var0=var0, scale=1.0, floor=0.0, out=out, rates=False)


def ewma_margin_rates(
    returns: npt.ArrayLike,
    *,
    lam: float = RISKMETRICS_LAMBDA_DAILY,
    z: float,
    horizon_steps: float = 1.0,
    multiplier: float = 1.0,
    floor: float = 0.0,
    var0: npt.ArrayLike | None = None,
    out: FloatArray | None = None,
) -> FloatArray:
    """Return vol-scaled margin rates ``max(floor, z * sigma_t * sqrt(h) * multiplier)``.

    ``sigma_t`` is the EWMA one-step forecast of :func:`ewma_variance`; the variance
    recursion and the rate are fused in one pass (no temporaries), which is what the
    500 markets x 100,000 observations benchmark measures.
    """
    if horizon_steps <= 0.0 or multiplier <= 0.0 or z <= 0.0:
        raise ValueError("z, horizon_steps and multiplier must be > 0")
    scale = z * math.sqrt(horizon_steps) * multiplier
    return _ewma_run(returns, lam, var0=var0, scale=scale, floor=floor, out=out, rates=True)


# --------------------------------------------------------------------------- GARCH


GarchKind = Literal["garch", "gjr"]


@dataclass(frozen=True, slots=True)
class GarchFit:
    """A fitted zero-mean GARCH(1,1) or GJR-GARCH(1,1,1) with Student-t innovations.

    Parameters are in *unscaled* return units: ``omega`` is a variance per step. The
    model is ``sigma^2_t = omega + (alpha + gamma * 1[r_{t-1} < 0]) r_{t-1}^2 +
    beta * sigma^2_{t-1}`` and ``r_t = sigma_t * e_t`` with ``e_t`` a unit-variance
    Student-t of ``nu`` degrees of freedom.
    """

    kind: GarchKind
    omega: float
    alpha: float
    gamma: float
    beta: float
    nu: float
    loglikelihood: float
    scale: float
    conditional_variance: FloatArray = field(repr=False)
    next_variance: float
    last_return: float

    @property
    def persistence(self) -> float:
        """Return ``alpha + gamma / 2 + beta`` (symmetric innovations)."""
        return self.alpha + 0.5 * self.gamma + self.beta

    @property
    def unconditional_variance(self) -> float:
        """Return ``omega / (1 - persistence)`` (infinite when not stationary)."""
        p = self.persistence
        return self.omega / (1.0 - p) if p < 1.0 else math.inf


def _arch_model(r_scaled: FloatArray, kind: GarchKind) -> Any:
    from arch import arch_model  # lazy: arch pulls in pandas (~0.7 s at import)

    if kind not in ("garch", "gjr"):
        raise ValueError(f"kind: {kind!r} is not 'garch' or 'gjr'")
    return arch_model(
        r_scaled, mean="Zero", vol="GARCH", p=1, o=1 if kind == "gjr" else 0, q=1,
        dist="t", rescale=False,
    )


def _from_arch(res: Any, kind: GarchKind, scale: float, r: FloatArray) -> GarchFit:
    p = res.params
    s2 = scale * scale
    gamma = float(p["gamma[1]"]) if kind == "gjr" else 0.0
    omega = float(p["omega"]) / s2
    alpha, beta = float(p["alpha[1]"]), float(p["beta[1]"])
    var = np.asarray(res.conditional_volatility, dtype=np.float64) ** 2 / s2
    last = float(r[-1])
    nxt = omega + (alpha + gamma * (last < 0.0)) * last * last + beta * float(var[-1])
    return GarchFit(
        kind=kind, omega=omega, alpha=alpha, gamma=gamma, beta=beta, nu=float(p["nu"]),
        loglikelihood=float(res.loglikelihood), scale=scale, conditional_variance=var,
        next_variance=nxt, last_return=last,
    )


def fit_garch(
    returns: npt.ArrayLike, kind: GarchKind = "garch", *, scale: float = 100.0,
    start: GarchFit | None = None,
) -> GarchFit:
    """Fit a zero-mean GARCH(1,1) or GJR-GARCH(1,1,1) with Student-t innovations.

    Wraps ``arch.arch_model(r * scale, mean="Zero", vol="GARCH", p=1, o=0|1, q=1,
    dist="t").fit(disp="off")`` and converts the parameters back to unscaled units
    (Bollerslev 1986; Glosten, Jagannathan and Runkle 1993).

    Parameters
    ----------
    returns : array_like
        1-D log returns per step (at least 100).
    kind : {"garch", "gjr"}
        Symmetric GARCH or the GJR leverage variant.
    scale : float
        Factor applied before fitting; ``arch``'s optimizer is best conditioned when
        returns are of order 1 (100 turns fractions into percent).
    start : GarchFit, optional
        A previous fit of the same kind whose parameters start the optimizer (``arch``'s
        ``starting_values``): a rolling refit on a window that moved a little converges
        in fewer iterations. ``None`` uses ``arch``'s own starting grid.
    """
    r = _as_float(returns, "returns")
    if r.ndim != 1 or r.shape[0] < 100:
        raise ValueError("returns: need a 1-D series of at least 100 observations")
    if start is not None and start.kind != kind:
        raise ValueError(f"start: a {start.kind!r} fit cannot start a {kind!r} fit")
    sv = None if start is None else _feasible_start(start, scale)
    from arch.utility.exceptions import StartingValueWarning  # lazy, as _arch_model

    with warnings.catch_warnings():
        # A start outside arch's bounds for this window (its omega bound scales with the
        # window's variance) is replaced by arch's own grid: a slower fit, not an error.
        warnings.simplefilter("ignore", StartingValueWarning)
        res = _arch_model(r * scale, kind).fit(disp="off", show_warning=False,
                                               starting_values=sv)
    return _from_arch(res, kind, scale, r)


def _feasible_start(fit: GarchFit, scale: float) -> FloatArray:
    # arch ignores starting values outside its constraints (StartingValueWarning), and a
    # crypto fit sits on the persistence bound to SLSQP's ftol, often a hair above 1:
    # shrink alpha, gamma and beta into the stationary region first.
    sv = _arch_params(fit, scale)
    phi = fit.persistence
    if phi > 1.0 - 1e-6:
        shrink = (1.0 - 1e-6) / phi
        sv[1:-1] *= shrink
    return sv


def _arch_params(fit: GarchFit, scale: float) -> FloatArray:
    """Return the fit's parameters in ``arch``'s order and scale: omega, alpha, gamma, beta, nu."""
    params = [fit.omega * scale * scale, fit.alpha]
    if fit.kind == "gjr":
        params.append(fit.gamma)
    params += [fit.beta, fit.nu]
    return np.asarray(params, dtype=np.float64)


def garch_filter(fit: GarchFit, returns: npt.ArrayLike) -> FloatArray:
    """Return the one-step variance forecasts of ``returns`` under fixed fitted parameters.

    Uses ``arch``'s ``fix`` so the recursion and its back-cast start are ``arch``'s own;
    ``out[t]`` depends on returns before ``t`` only, so filtering a longer series with
    parameters fitted on its beginning gives out-of-sample forecasts.
    """
    r = _as_float(returns, "returns")
    if r.ndim != 1:
        raise ValueError("returns: expected a 1-D series")
    s = fit.scale
    res = _arch_model(r * s, fit.kind).fix(_arch_params(fit, s))
    return np.asarray(res.conditional_volatility, dtype=np.float64) ** 2 / (s * s)


def _geometric_sums(persistence: float, horizon_steps: int) -> tuple[float, float]:
    """Return ``G_h = sum_{j<h} phi^j`` and ``S_h = sum_{j<h-1} (h-1-j) phi^j``.

    Both are evaluated without the long-run variance ``omega / (1 - phi)``, whose
    subtraction cancels every digit near ``phi = 1`` (a GJR fit on crypto returns lands on
    ``arch``'s stationarity bound, ``1 - phi ~ 4e-12``). With ``d = 1 - phi`` (exact for
    ``phi`` in [0.5, 2] by Sterbenz's lemma) the binomial series

    ``G_h = sum_m (-d)^m C(h, m+1)``, ``S_h = sum_m (-d)^m C(h, m+2)``

    is used while ``|h d| <= 1``: successive terms shrink by at least ``1 / (m + 2)``, so
    about 20 terms reach the last bit. Otherwise ``G_h = (1 - phi^h) / d`` has no
    cancellation (``phi^h <= e^-1``) and ``S_h = (h - G_h) / d`` loses at most a factor
    ``e`` to it. Relative error a few ulp for every ``phi >= 0`` and ``h >= 1``.
    """
    phi = float(persistence)
    h = int(horizon_steps)
    d = 1.0 - phi
    if abs(h * d) <= 1.0:
        g_sum = 0.0
        s_sum = 0.0
        g_term = float(h)  # (-d)^m C(h, m+1) at m = 0
        s_term = h * (h - 1.0) / 2.0  # (-d)^m C(h, m+2) at m = 0
        for m in range(h):
            if g_term == 0.0 and s_term == 0.0:
                break
            g_sum += g_term
            s_sum += s_term
            g_term *= -d * (h - m - 1.0) / (m + 2.0)
            s_term *= -d * (h - m - 2.0) / (m + 3.0)
            if abs(g_term) <= 1e-17 * abs(g_sum) and abs(s_term) <= 1e-17 * abs(s_sum):
                break
        return g_sum, s_sum
    g_sum = (1.0 - phi**h) / d
    return g_sum, (h - g_sum) / d


def garch_term_variance(
    next_variance: npt.ArrayLike, *, omega: float, persistence: float, horizon_steps: int
) -> FloatArray:
    """Return the variance of the sum of the next ``horizon_steps`` returns (closed form).

    ``E[sigma^2_{t+k}] = phi^(k-1) sigma^2_{t+1} + omega sum_{j<k-1} phi^j`` with
    ``phi = alpha + gamma/2 + beta``; summing over ``k = 1..h`` gives
    ``G_h sigma^2_{t+1} + omega S_h`` (:func:`_geometric_sums`), two non-negative terms,
    exact to a few ulp for every persistence in [0, 1] and beyond, the unit root included
    (``h sigma^2_{t+1} + omega h (h - 1) / 2``). The textbook form
    ``h vbar + (sigma^2_{t+1} - vbar)(1 - phi^h)/(1 - phi)`` is not used: near
    ``phi = 1`` it subtracts ``vbar = omega / (1 - phi)`` (about 5e5 on a fit at
    ``arch``'s bound) from a variance of 1e-3. Vectorized over ``next_variance``;
    :func:`garch_forecast_variance` (``arch``'s forecast) and an exact rational recursion
    are the references it is tested against.
    """
    if horizon_steps < 1:
        raise ValueError("horizon_steps must be >= 1")
    v1 = np.asarray(next_variance, dtype=np.float64)
    g_sum, s_sum = _geometric_sums(persistence, horizon_steps)
    return g_sum * v1 + omega * s_sum


def garch_step_variance(
    next_variance: npt.ArrayLike, *, omega: float, persistence: float, steps_ahead: int
) -> FloatArray:
    """Return ``E[sigma^2_{t+k}]`` for ``k = steps_ahead`` given ``sigma^2_{t+1}``.

    ``phi^(k-1) sigma^2_{t+1} + omega G_{k-1}`` with ``G_{k-1} = sum_{j<k-1} phi^j``
    (:func:`_geometric_sums`): the same forecast as ``vbar + phi^(k-1)(sigma^2_{t+1} -
    vbar)`` without its cancellation near the unit root. ``steps_ahead = 1`` returns
    ``next_variance``.
    """
    if steps_ahead < 1:
        raise ValueError("steps_ahead must be >= 1")
    v1 = np.asarray(next_variance, dtype=np.float64)
    if steps_ahead == 1:
        return v1.copy()
    g_sum, _ = _geometric_sums(persistence, steps_ahead - 1)
    return float(persistence) ** (steps_ahead - 1) * v1 + omega * g_sum


def garch_forecast_variance(
    fit: GarchFit, returns: npt.ArrayLike, horizon_steps: int
) -> FloatArray:
    """Return ``arch``'s analytic per-step variance forecasts ``t+1 .. t+h`` after ``returns``.

    ``returns`` is the series the model is conditioned on (usually the fitted one).
    """
    if horizon_steps < 1:
        raise ValueError("horizon_steps must be >= 1")
    r = _as_float(returns, "returns")
    s = fit.scale
    res = _arch_model(r * s, fit.kind).fix(_arch_params(fit, s))
    fc = res.forecast(horizon=horizon_steps, reindex=False)
    return np.asarray(fc.variance.values[-1], dtype=np.float64) / (s * s)


# --------------------------------------------------------------------------- liquidation


def liquidation_probability(
    mark: npt.ArrayLike,
    liq_price: npt.ArrayLike,
    side: npt.ArrayLike,
    sigma: npt.ArrayLike,
    horizon: npt.ArrayLike,
    *,
    drift: npt.ArrayLike = 0.0,
) -> FloatArray:
    """Return the probability that the mark touches the liquidation price within a horizon.

    The log price is a Brownian motion ``X_t = mu t + sigma W_t`` from ``X_0 = 0``
    (``mu = drift``, zero by default: driftless in log price). With ``b = ln(liq / mark)``,
    the first-passage (reflection principle) probabilities over ``T = horizon`` are

    * long (``side > 0``, barrier below, ``b < 0``):
      ``Phi((b - mu T)/(sigma sqrt T)) + exp(2 mu b / sigma^2) Phi((b + mu T)/(sigma sqrt T))``
    * short (``side < 0``, barrier above, ``b > 0``):
      ``Phi((-b + mu T)/(sigma sqrt T)) + exp(2 mu b / sigma^2) Phi((-b - mu T)/(sigma sqrt T))``

    which for ``mu = 0`` is ``2 Phi(-|b| / (sigma sqrt T))`` (Karatzas and Shreve,
    *Brownian Motion and Stochastic Calculus*, 1991, sec. 2.6; Shreve, *Stochastic Calculus
    for Finance II*, 2004, sec. 3.7). Continuous monitoring: a discretely sampled mark
    touches less often.

    Parameters
    ----------
    mark, liq_price : array_like
        Mark and liquidation price per account (broadcast). A NaN, zero or negative
        liquidation price of a long, or NaN/infinite of a short, means "never liquidated"
        and gives 0; a mark already at or beyond it gives 1.
    side : array_like
        ``+1`` long, ``-1`` short (sign is used; 0 gives 0).
    sigma : array_like
        Volatility of the log price per square root of the time unit of ``horizon`` (per
        sqrt(year) with a horizon in years, or per sqrt(step) with a horizon in steps).
    horizon : array_like
        Horizon in that time unit, ``>= 0``.
    drift : array_like
        Drift of the log price per time unit.

    Raises
    ------
    ValueError
        If a mark is not finite and positive, or a sigma or horizon is negative or NaN.
    """
    m = np.asarray(mark, dtype=np.float64)
    liq = np.asarray(liq_price, dtype=np.float64)
    sd = np.sign(np.asarray(side, dtype=np.float64))
    sig = np.asarray(sigma, dtype=np.float64)
    hor = np.asarray(horizon, dtype=np.float64)
    mu = np.asarray(drift, dtype=np.float64)
    if not np.isfinite(m).all() or (m <= 0.0).any():
        raise ValueError("mark: must be finite and > 0")
    if not (np.isfinite(sig).all() and np.isfinite(hor).all() and np.isfinite(mu).all()):
        raise ValueError("sigma, horizon and drift: must be finite")
    if (sig < 0.0).any() or (hor < 0.0).any():
        raise ValueError("sigma and horizon: must be >= 0")
    m, liq, sd, sig, hor, mu = np.broadcast_arrays(m, liq, sd, sig, hor, mu)
    valid = np.isfinite(liq) & (liq > 0.0) & (sd != 0.0)
    safe_liq = np.where(valid, liq, m)
    # y = distance to the barrier in the direction of the move that liquidates (>= 0 away).
    y = -sd * np.log(safe_liq / m)  # long: ln(mark/liq); short: ln(liq/mark)
    a = sd * mu  # drift towards the barrier is -a
    s = sig * np.sqrt(hor)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d1 = (-y - a * hor) / s
        d2 = (-y + a * hor) / s
        # no drift: the reflection term's weight is exactly 1 (0 / sigma^2 would be NaN
        # once sigma^2 underflows, sigma ~ 1e-160)
        expo = np.where(a == 0.0, 1.0, np.exp(np.minimum(
            -2.0 * a * y / np.where(sig > 0.0, sig * sig, 1.0), 700.0)))
        p = ndtr(d1) + expo * ndtr(d2)
    p = np.where(s > 0.0, p, 0.0)
    p = np.where(y <= 0.0, 1.0, p)
    p = np.where(valid, np.clip(p, 0.0, 1.0), 0.0)
    return p


def double_barrier_touch_probability(
    mark: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike, sigma: npt.ArrayLike,
    horizon: float,
) -> FloatArray:
    """Return the probability that a driftless log price touches either of two barriers.

    The log price is ``X_t = sigma W_t`` from ``X_0 = 0``; the barriers are
    ``a = ln(lower / mark) < 0 < b = ln(upper / mark)``, ``L = b - a``, ``s = sigma sqrt T``.
    The chance of staying strictly between them up to ``T`` is the method-of-images sum
    (Feller, *An Introduction to Probability Theory and Its Applications* II, 1971,
    sec. X.5; Borodin and Salminen, *Handbook of Brownian Motion*, 2002, part II, 1.1.15.4)

        ``sum_k Phi((b - 2kL)/s) - Phi((a - 2kL)/s) - Phi((-b - 2kL)/s)
        + Phi((a - 2b - 2kL)/s)``

    and the touch probability is one minus it. It lies between the larger one-sided
    probability ``2 Phi(-|x| / s)`` and the sum of the two (the union bound), and tends to
    the one-sided one as the other barrier goes away. The sum runs over ``|k| <= K`` with
    ``K`` the larger of 8 and ``4 s / L`` (capped at 2,000: a touch is then certain to
    machine precision), so the omitted terms are below ``Phi(-8)``.

    The arguments broadcast (scalars read as length-1 arrays; the result is at least 1-D).
    A lower barrier that is NaN or ``<= 0`` or an upper one NaN or infinite is absent (the
    one-sided case, or 0 with neither); a mark at or beyond a barrier gives 1.

    Raises
    ------
    ValueError
        If a mark is not finite and positive, or sigma or the horizon negative or NaN.
    """
    if not (math.isfinite(horizon) and horizon >= 0.0):
        raise ValueError("horizon: must be finite and >= 0")
    m, lo, up, sig = np.broadcast_arrays(*(np.atleast_1d(np.asarray(x, dtype=np.float64))
                                           for x in (mark, lower, upper, sigma)))
    if not np.isfinite(m).all() or (m <= 0.0).any():
        raise ValueError("mark: must be finite and > 0")
    if not np.isfinite(sig).all() or (sig < 0.0).any():
        raise ValueError("sigma: must be finite and >= 0")
    has_lo = np.isfinite(lo) & (lo > 0.0)
    has_up = np.isfinite(up) & (up > 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(has_lo, np.log(np.where(has_lo, lo, 1.0) / m), -np.inf)
        b = np.where(has_up, np.log(np.where(has_up, up, 1.0) / m), np.inf)
    s = sig * math.sqrt(horizon)
    both = has_lo & has_up & (a < 0.0) & (b > 0.0) & (s > 0.0)
    # one-sided (or no) barrier: 2 Phi(-d / s), d the distance to the nearer barrier
    d = np.minimum(-a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(s > 0.0, 2.0 * ndtr(-d / np.where(s > 0.0, s, 1.0)), 0.0)
    if both.any():
        ab, bb, sb = a[both], b[both], s[both]
        width = bb - ab
        k_max = int(min(2000.0, max(8.0, math.ceil(4.0 * float(np.max(sb / width))))))
        k = np.arange(-k_max, k_max + 1, dtype=np.float64)[:, None]
        shift = 2.0 * k * width
        stay = (ndtr((bb - shift) / sb) - ndtr((ab - shift) / sb)
                - ndtr((-bb - shift) / sb) + ndtr((ab - 2.0 * bb - shift) / sb)).sum(axis=0)
        p[both] = 1.0 - stay
    p = np.where((d <= 0.0) & (has_lo | has_up), 1.0, p)
    p = np.where(has_lo | has_up, np.clip(p, 0.0, 1.0), 0.0)
    return np.asarray(p, dtype=np.float64)


@numba.njit(cache=True, nogil=True)
def _first_passage_kernel(mark: FloatArray, liq: FloatArray, side: FloatArray,
                          sigma: FloatArray, horizon: float, out: FloatArray) -> int:
    # 2 Phi(-y / (sigma sqrt T)) = erfc(y / (sigma sqrt(2 T))); returns the index + 1 of
    # the first bad input (0: all good). Serial: the arrays are one account's positions.
    root = math.sqrt(2.0 * horizon)
    for i in range(mark.shape[0]):
        m, lp, sd, sg = mark[i], liq[i], side[i], sigma[i]
        if not (math.isfinite(m) and m > 0.0 and math.isfinite(sg) and sg >= 0.0):
            return i + 1
        if not (math.isfinite(lp) and lp > 0.0) or sd == 0.0:
            out[i] = 0.0
            continue
        y = -math.log(lp / m) if sd > 0.0 else math.log(lp / m)
        if y <= 0.0:
            out[i] = 1.0
        elif sg * root > 0.0:
            p = math.erfc(y / (sg * root))
            # below the smallest normal double scipy's ndtr (the reference) gives 0
            out[i] = min(1.0, p) if p >= 2.2250738585072014e-308 else 0.0
        else:
            out[i] = 0.0
    return 0


def liquidation_probability_driftless(
    mark: FloatArray, liq_price: FloatArray, side: FloatArray, sigma: FloatArray,
    horizon: float,
) -> FloatArray:
    """Return :func:`liquidation_probability` with zero drift, compiled (numba) for views.

    ``2 Phi(-|b| / (sigma sqrt T)) = erfc(|b| / (sigma sqrt(2 T)))``, the same rules for
    NaN, non-positive or already crossed barriers, over 1-D float64 arrays of equal length
    and one horizon. The numpy function is its reference twin (a property test holds them
    equal to 1e-12); this one costs about a microsecond on one account's few positions,
    where the numpy version pays ~60 us of array set-up (an account view calls it on every
    request). A view value: it feeds no decision of the engine.
    """
    if not (math.isfinite(horizon) and horizon >= 0.0):
        raise ValueError("horizon: must be finite and >= 0")
    out = np.empty(mark.shape[0])
    bad = _first_passage_kernel(mark, liq_price, side, sigma, float(horizon), out)
    if bad:
        raise ValueError("mark: must be finite and > 0; sigma: finite and >= 0")
    return out


# --------------------------------------------------------------------------- correlation


def log_return_correlation(
    ts_ms: Sequence[npt.ArrayLike], close: Sequence[npt.ArrayLike],
) -> tuple[FloatArray, int]:
    """Return the correlation matrix of the series' log returns and how many returns it
    used.

    Series ``i`` has bars at ``ts_ms[i]`` (strictly increasing) with closes ``close[i]``.
    Only the timestamps every series has are kept (their intersection), and the log
    return of each series between consecutive kept timestamps is taken, so every return
    spans the same interval in every series; the matrix is Pearson's correlation of those
    returns (``numpy.corrcoef``).

    Raises
    ------
    ValueError
        Fewer than three common timestamps, a non-positive close, or a series with no
        variation (its correlation is undefined).
    """
    if not ts_ms or len(ts_ms) != len(close):
        raise ValueError("correlation: one timestamp and one close array per series")
    common = np.asarray(ts_ms[0], dtype=np.int64)
    for t in ts_ms[1:]:
        common = np.intersect1d(common, np.asarray(t, dtype=np.int64), assume_unique=True)
    if common.shape[0] < 3:
        raise ValueError(f"correlation: {common.shape[0]} common timestamps; at least 3 "
                         "are needed")
    rets = []
    for t, c in zip(ts_ms, close, strict=True):
        tt = np.asarray(t, dtype=np.int64)
        cc = np.asarray(c, dtype=np.float64)
        picked = cc[np.searchsorted(tt, common)]
        if not (np.isfinite(picked).all() and (picked > 0.0).all()):
            raise ValueError("correlation: closes must be finite and > 0")
        rets.append(np.diff(np.log(picked)))
    r = np.vstack(rets)
    if (r.std(axis=1) == 0.0).any():
        raise ValueError("correlation: a series does not move; its correlation is undefined")
    return np.atleast_2d(np.corrcoef(r)), int(r.shape[1])
