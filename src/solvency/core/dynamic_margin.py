"""Volatility-adjusted margin rates, EMIR anti-procyclicality tools and a rate policy.

Pipeline (all pure, time on the last axis, ``rate[t]`` decided before ``r[t]`` is known)::

    returns --model--> raw rate --APC tool--> --change cap--> max(floor, .) --> events

* **Models** (:func:`margin_rate_series`): ``rate = z(confidence) * sigma_t * sqrt(h) *
  multiplier`` with ``sigma_t`` from EWMA (RiskMetrics 1996), GARCH/GJR with Student-t
  innovations (``arch``, periodic refits, the fitted t quantile), or filtered historical
  simulation VaR/ES of EWMA-standardized residuals (Barone-Adesi et al. 1999; the FHS
  margin models studied in Murphy, Vasios and Vause 2014, Bank of England Financial
  Stability Paper 29); ``fixed`` is a constant rate calibrated on the warm-up sample only.
* **APC tools**, Commission Delegated Regulation (EU) No 153/2013 (EMIR RTS on CCPs),
  Article 28(1): (a) a margin buffer of at least 25 % that may be temporarily exhausted
  when requirements rise significantly (:func:`apc_buffer`); (b) at least 25 % weight on
  stressed observations (:func:`apc_stressed_weight`); (c) a floor from a 10-year
  historical lookback (:func:`apc_lookback_floor`). See also Murphy, Vasios and Vause
  (2016), Bank of England Staff Working Paper 597, for the behaviour of each tool.
* **Change cap** (:func:`cap_rate_changes`): no rate moves by more than a few percent
  of its previous value per step (what risk vendors apply to published rates).
* **Policy** (:class:`DynamicMargin`): turns the rates into ``params`` events on a
  schedule, rounded up to a tick, emitted only when the tiers change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any, Final, Literal, cast

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view
from scipy import stats

from solvency.core.backtest import (
    BacktestResult,
    EsBacktestResult,
    backtest,
    exceptions,
    position_loss,
)
from solvency.core.var import empirical_var_es_losses
from solvency.core.volatility import (
    RISKMETRICS_LAMBDA_DAILY,
    GarchFit,
    ewma_variance,
    fit_garch,
    garch_filter,
    garch_step_variance,
    garch_term_variance,
    rolling_volatility,
)

__all__ = [
    "MODELS",
    "ApcTool",
    "DynamicMargin",
    "MarginBacktest",
    "MarginModel",
    "MarginModelConfig",
    "apc_buffer",
    "apc_lookback_floor",
    "apc_stressed_weight",
    "apply_rate_policy",
    "cap_rate_changes",
    "garch_sigma_series",
    "margin_backtest",
    "margin_rate_series",
    "max_step_increase",
    "vol_scaled_rate",
]

FloatArray = npt.NDArray[np.float64]
MarginModel = Literal["ewma", "garch", "gjr", "fhs", "fixed", "predictive"]
ApcTool = Literal["none", "buffer", "stressed", "floor"]
MODELS: Final[tuple[str, ...]] = ("ewma", "garch", "gjr", "fhs", "fixed")
_SEED_OBS: Final = 30


def vol_scaled_rate(
    sigma: npt.ArrayLike, *, z: float, horizon_steps: float = 1.0, multiplier: float = 1.0,
    floor: float = 0.0,
) -> FloatArray:
    """Return ``max(floor, z * sigma * sqrt(horizon_steps) * multiplier)``.

    ``sigma`` is a per-step volatility forecast; ``z`` the quantile of the standardized
    innovation at the confidence (``scipy.stats.norm.ppf(0.99) = 2.326`` for a normal).
    """
    s = np.asarray(sigma, dtype=np.float64)
    if not np.isfinite(s).all() or (s < 0.0).any():
        raise ValueError("sigma: must be finite and >= 0")
    if z <= 0.0 or horizon_steps <= 0.0 or multiplier <= 0.0:
        raise ValueError("z, horizon_steps and multiplier must be > 0")
    return cast(FloatArray, np.maximum(floor, z * s * math.sqrt(horizon_steps) * multiplier))


@dataclass(frozen=True, slots=True)
class MarginModelConfig:
    """How :func:`margin_rate_series` turns returns into margin rates.

    ``horizon_steps`` is the liquidation horizon in sampling steps; ``warmup`` the number
    of first returns used only for calibration (their rates are NaN); ``lam`` the EWMA
    decay per step. ``fhs_window`` past standardized residuals feed FHS, ``fhs_measure``
    chooses its VaR or ES; GARCH refits every ``garch_refit_every`` steps on at most
    ``garch_fit_window`` past returns. ``predictive`` raises a GARCH rate to the highest
    forecast variance over the next ``predictive_steps`` steps (the time until the next
    scheduled update), so margin goes up ahead of forecast volatility rather than after.
    """

    model: MarginModel = "ewma"
    confidence: float = 0.99
    horizon_steps: int = 1
    multiplier: float = 1.0
    floor: float = 0.0
    lam: float = RISKMETRICS_LAMBDA_DAILY
    side: Literal["long", "short"] = "long"
    warmup: int = 500
    fhs_window: int = 500
    fhs_measure: Literal["var", "es"] = "var"
    garch_refit_every: int = 50
    garch_fit_window: int = 2000
    fixed_rate: float | None = None
    predictive: bool = False
    predictive_steps: int = 1

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        if self.model not in (*MODELS, "predictive"):
            raise ValueError(f"model: {self.model!r} is not one of {', '.join(MODELS)}")
        if not 0.5 < self.confidence < 1.0:
            raise ValueError(f"confidence: {self.confidence} must lie in (0.5, 1)")
        if self.horizon_steps < 1 or self.multiplier <= 0.0 or self.floor < 0.0:
            raise ValueError("horizon_steps >= 1, multiplier > 0 and floor >= 0 required")
        if self.warmup < _SEED_OBS + 20:
            raise ValueError(f"warmup: {self.warmup} must be >= {_SEED_OBS + 20}")
        if self.model in ("garch", "gjr") and self.warmup < 100:
            raise ValueError("warmup: GARCH needs at least 100 returns to fit")
        if self.fixed_rate is not None and not 0.0 < self.fixed_rate <= 1.0:
            raise ValueError("fixed_rate must lie in (0, 1]")
        if self.predictive_steps < 1 or self.garch_refit_every < 1:
            raise ValueError("predictive_steps and garch_refit_every must be >= 1")


def _ewma_sigma(r: FloatArray, cfg: MarginModelConfig) -> FloatArray:
    return cast(FloatArray, np.sqrt(ewma_variance(r, cfg.lam)))


def _garch_sigma(r: FloatArray, cfg: MarginModelConfig) -> tuple[FloatArray, FloatArray]:
    # Refit at each chunk start s on returns before s, filter the chunk out of sample.
    n = r.size
    var = np.full(n, np.nan)
    z = np.full(n, np.nan)
    q = cfg.confidence
    fit: GarchFit | None = None
    for s in range(cfg.warmup, n, cfg.garch_refit_every):
        lo = max(0, s - cfg.garch_fit_window)
        e = min(n, s + cfg.garch_refit_every)
        # Each refit starts from the previous one's parameters (arch's starting_values):
        # the window moved by garch_refit_every returns, so the optimum moved little
        # (BTC daily, 39 refits: 648 -> 271 SLSQP iterations, likelihoods equal to 1e-5).
        fit = fit_garch(r[lo:s], cast(Literal["garch", "gjr"], cfg.model), start=fit)
        v = garch_filter(fit, r[lo:e])[s - lo:]
        h = cfg.horizon_steps
        term = garch_term_variance(v, omega=fit.omega, persistence=fit.persistence,
                                   horizon_steps=h) / h
        if cfg.predictive and cfg.predictive_steps > 1:
            # E[sigma^2_{t+k}] = phi^(k-1) sigma^2_{t+1} + omega sum_{j<k-1} phi^j: the
            # variance at the next scheduled update; the rate covers the worse of now and
            # then (the form without vbar, exact near the unit root).
            phi = fit.persistence
            vk = garch_step_variance(v, omega=fit.omega, persistence=phi,
                                     steps_ahead=cfg.predictive_steps)
            ahead = garch_term_variance(vk, omega=fit.omega, persistence=phi,
                                        horizon_steps=h) / h
            term = np.maximum(term, ahead)
        var[s:e] = term
        nu = fit.nu
        z[s:e] = float(stats.t.ppf(q, nu)) * math.sqrt((nu - 2.0) / nu)
    return cast(FloatArray, np.sqrt(var)), cast(FloatArray, z)


def garch_sigma_series(returns: FloatArray, config: MarginModelConfig) -> FloatArray:
    """Return the out-of-sample GARCH/GJR volatility per step (NaN before the warm-up).

    ``sigma[t]`` comes from a fit on returns before the refit point at or before ``t``
    (refits every ``garch_refit_every`` steps on at most ``garch_fit_window`` returns,
    each starting from the previous fit) and the filter through ``r[:t]``; over
    ``horizon_steps > 1`` it is the mean per-step volatility of the horizon.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or not np.isfinite(r).all():
        raise ValueError("returns: expected a finite 1-D series")
    if config.model not in ("garch", "gjr") or config.warmup < 100:
        raise ValueError("garch_sigma_series: model garch or gjr with warmup >= 100")
    return _garch_sigma(r, config)[0]


def _fhs_rates(r: FloatArray, cfg: MarginModelConfig) -> FloatArray:
    sigma = _ewma_sigma(r, cfg)
    eps = r / np.maximum(sigma, 1e-300)
    w = min(cfg.fhs_window, cfg.warmup - _SEED_OBS)
    n = r.size
    out = np.full(n, np.nan)
    if n <= cfg.warmup:
        return out
    # windows[j] = eps[j : j + w]; the window for step t is eps[t - w : t], i.e. j = t - w.
    windows = sliding_window_view(eps, w)[cfg.warmup - w : n - w]
    sgn = 1.0 if cfg.side == "long" else -1.0
    scale = sigma[cfg.warmup:, None] * math.sqrt(cfg.horizon_steps)
    losses = -np.expm1(sgn * scale * windows)
    var, es = empirical_var_es_losses(losses, cfg.confidence)
    out[cfg.warmup:] = np.asarray(es if cfg.fhs_measure == "es" else var) * cfg.multiplier
    return out


def margin_rate_series(returns: npt.ArrayLike, config: MarginModelConfig) -> FloatArray:
    """Return the raw model margin rate for each return, decided before that return.

    ``rate[t]`` (a fraction of notional) covers ``r[t]`` and uses ``r[:t]`` only; the first
    ``config.warmup`` entries are NaN. The floor is applied; APC tools and the change cap
    are separate steps (:func:`apply_rate_policy`).

    Parameters
    ----------
    returns : array_like
        1-D log returns per sampling step.
    config : MarginModelConfig
        The model and its settings.

    Raises
    ------
    ValueError
        On NaN/inf returns, too short a series or an invalid configuration.
    """
    config.validate()
    if config.model == "predictive":
        raise ValueError("model: 'predictive' needs features beyond returns; use "
                         "solvency.core.predictive_margin.predictive_rate_series")
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or not np.isfinite(r).all():
        raise ValueError("returns: expected a finite 1-D series")
    if r.size <= config.warmup:
        raise ValueError(f"returns: {r.size} observations, need more than warmup={config.warmup}")
    out = np.full(r.size, np.nan)
    h = config.horizon_steps
    zn = float(stats.norm.ppf(config.confidence))
    if config.model == "ewma":
        sig = _ewma_sigma(r, config)[config.warmup:]
        out[config.warmup:] = vol_scaled_rate(sig, z=zn, horizon_steps=h,
                                              multiplier=config.multiplier)
    elif config.model == "fixed":
        rate = config.fixed_rate
        if rate is None:
            sd = float(np.sqrt(np.mean(r[: config.warmup] ** 2)))
            rate = zn * sd * math.sqrt(h) * config.multiplier
        out[config.warmup:] = rate
    elif config.model == "fhs":
        out = _fhs_rates(r, config)
    else:
        sig, z = _garch_sigma(r, config)
        w = config.warmup
        out[w:] = z[w:] * sig[w:] * math.sqrt(h) * config.multiplier
    out[config.warmup:] = np.maximum(out[config.warmup:], config.floor)
    return out


# --------------------------------------------------------------------------- APC tools


def _finite_rates(rates: npt.ArrayLike) -> FloatArray:
    x = np.asarray(rates, dtype=np.float64)
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise ValueError("rates: expected a non-empty 1-D or 2-D array")
    if not np.isfinite(x).all() or (x < 0.0).any():
        raise ValueError("rates: must be finite and >= 0")
    return x


def apc_buffer(
    rates: npt.ArrayLike, *, buffer: float = 0.25, rebuild_per_step: float = 0.01,
    stress: npt.ArrayLike | None = None,
) -> FloatArray:
    """Apply EMIR RTS 153/2013 Art. 28(1)(a): a buffer released when rates rise.

    Normally the posted rate is ``(1 + buffer) * rate``. On a stress step (by default one
    where the model rate rises) the buffer absorbs the rise:
    ``B_t = clip(B_{t-1}, rate_t, (1 + buffer) * rate_t)``, so the posted rate only moves
    up once the model rate has eaten the whole buffer. On other steps the buffer rebuilds
    by at most ``rebuild_per_step * rate_t`` per step:
    ``B_t = min((1+buffer) rate_t, max(rate_t, B_{t-1} + rebuild_per_step * rate_t))``.

    Guarantees: ``rate_t <= B_t <= (1 + buffer) rate_t``, and on stress steps
    ``B_t - B_{t-1} <= rate_t - rate_{t-1}``: the buffered model never steps up more than
    the unbuffered one.
    """
    x = _finite_rates(rates)
    if buffer < 0.0 or rebuild_per_step < 0.0:
        raise ValueError("buffer and rebuild_per_step must be >= 0")
    if stress is None:
        st = np.zeros(x.shape, dtype=bool)
        st[..., 1:] = np.diff(x, axis=-1) > 0.0
    else:
        st = np.broadcast_to(np.asarray(stress, dtype=bool), x.shape)
    up = (1.0 + buffer) * x
    if x.ndim == 1:
        return _apc_buffer_1d(x.tolist(), up.tolist(), st.tolist(), rebuild_per_step)
    out = np.empty_like(x)
    out[..., 0] = up[..., 0]
    # Recursion over time, vectorized across markets (time is short next to markets).
    for t in range(1, x.shape[-1]):
        prev = out[..., t - 1]
        calm = np.minimum(up[..., t], np.maximum(x[..., t], prev + rebuild_per_step * x[..., t]))
        hot = np.clip(prev, x[..., t], up[..., t])
        out[..., t] = np.where(st[..., t], hot, calm)
    return out


def _apc_buffer_1d(
    x: list[float], up: list[float], st: list[bool], rebuild: float
) -> FloatArray:
    # One series: a plain float loop beats numpy's per-step overhead on short vectors.
    out = [up[0]]
    for t in range(1, len(x)):
        prev = out[-1]
        if st[t]:
            out.append(min(max(prev, x[t]), up[t]))
        else:
            out.append(min(up[t], max(x[t], prev + rebuild * x[t])))
    return np.asarray(out, dtype=np.float64)


def apc_stressed_weight(
    rates: npt.ArrayLike, *, weight: float = 0.25, stressed_rate: npt.ArrayLike | None = None
) -> FloatArray:
    """Apply EMIR RTS 153/2013 Art. 28(1)(b): at least ``weight`` on a stressed rate.

    ``rate'_t = (1 - weight) * rate_t + weight * stressed_t``. ``stressed_t`` defaults to
    the highest model rate seen up to ``t`` (the stressed period within the history so
    far); pass a rate computed on a chosen stress window instead where one is defined.
    """
    x = _finite_rates(rates)
    if not 0.25 <= weight <= 1.0:
        raise ValueError("weight must lie in [0.25, 1] (EMIR: at least 25 %)")
    if stressed_rate is None:
        s = np.maximum.accumulate(x, axis=-1)
    else:
        s = np.broadcast_to(np.asarray(stressed_rate, dtype=np.float64), x.shape)
    return (1.0 - weight) * x + weight * s


def apc_lookback_floor(
    rates: npt.ArrayLike, returns: npt.ArrayLike, *, lookback_steps: int, z: float,
    horizon_steps: float = 1.0, multiplier: float = 1.0,
) -> FloatArray:
    """Apply EMIR RTS 153/2013 Art. 28(1)(c): floor at the 10-year-lookback rate.

    ``rate'_t = max(rate_t, z * sigma_lookback_t * sqrt(h) * multiplier)`` where
    ``sigma_lookback_t`` is the zero-mean volatility of the ``lookback_steps`` returns
    before ``t`` (3650 daily steps for ten years; the whole history when shorter).
    ``rates`` and ``returns`` are aligned: ``rates[t]`` covers ``returns[t]``.
    """
    x = _finite_rates(rates)
    r = np.asarray(returns, dtype=np.float64)
    if r.shape != x.shape:
        raise ValueError("rates and returns must have the same shape")
    sig = rolling_volatility(r, lookback_steps)
    sig = np.nan_to_num(sig, nan=0.0)
    return cast(FloatArray, np.maximum(x, z * sig * math.sqrt(horizon_steps) * multiplier))


def cap_rate_changes(
    rates: npt.ArrayLike, *, max_up: float = 0.05, max_down: float | None = None
) -> FloatArray:
    """Limit each step's relative rate change: ``C_t = clip(r_t, C_{t-1}(1-d), C_{t-1}(1+u))``.

    ``C_0 = r_0``; ``max_down`` defaults to ``max_up``. The cap smooths both ways, so in a
    crash the posted rate lags the model: pair it with a buffer or a floor.
    """
    x = _finite_rates(rates)
    d = max_up if max_down is None else max_down
    if max_up < 0.0 or not 0.0 <= d < 1.0:
        raise ValueError("max_up >= 0 and 0 <= max_down < 1 required")
    if x.ndim == 1:
        vals = x.tolist()
        res = [vals[0]]
        for v in vals[1:]:
            prev = res[-1]
            res.append(min(max(v, prev * (1.0 - d)), prev * (1.0 + max_up)))
        return np.asarray(res, dtype=np.float64)
    out = np.empty_like(x)
    out[..., 0] = x[..., 0]
    for t in range(1, x.shape[-1]):
        prev = out[..., t - 1]
        out[..., t] = np.clip(x[..., t], prev * (1.0 - d), prev * (1.0 + max_up))
    return out


def max_step_increase(rates: npt.ArrayLike) -> FloatArray | float:
    """Return the largest one-step increase of the rates along the last axis (0 if none)."""
    x = np.asarray(rates, dtype=np.float64)
    if x.shape[-1] < 2:
        return 0.0
    inc = np.max(np.diff(x, axis=-1), axis=-1)
    res = np.maximum(inc, 0.0)
    return float(res) if res.ndim == 0 else cast(FloatArray, res)


def apply_rate_policy(
    raw: npt.ArrayLike,
    returns: npt.ArrayLike,
    config: MarginModelConfig,
    *,
    apc: ApcTool = "none",
    buffer: float = 0.25,
    stressed_weight: float = 0.25,
    lookback_steps: int = 3650,
    max_change: float | None = None,
) -> FloatArray:
    """Return posted rates: APC tool, then the change cap, then ``max(floor, .)``.

    ``raw`` comes from :func:`margin_rate_series` (NaN during warm-up, kept NaN). The floor
    is applied last so the posted rate is never below ``config.floor``.
    """
    x = np.asarray(raw, dtype=np.float64)
    out = np.full_like(x, np.nan)
    w = config.warmup
    body = x[w:]
    if apc == "buffer":
        body = apc_buffer(body, buffer=buffer)
    elif apc == "stressed":
        body = apc_stressed_weight(body, weight=stressed_weight)
    elif apc == "floor":
        z = float(stats.norm.ppf(config.confidence))
        r = np.asarray(returns, dtype=np.float64)
        if r.shape != x.shape:
            raise ValueError("raw and returns must have the same shape")
        # The lookback runs over the whole history, warm-up included.
        hist = np.nan_to_num(rolling_volatility(r, lookback_steps), nan=0.0)[w:]
        body = np.maximum(body, z * hist * math.sqrt(config.horizon_steps)
                          * config.multiplier)
    elif apc != "none":
        raise ValueError(f"apc: {apc!r} is not one of none, buffer, stressed, floor")
    if max_change is not None:
        body = cap_rate_changes(body, max_up=max_change)
    out[w:] = np.maximum(body, config.floor)
    return out


@dataclass(frozen=True, slots=True)
class MarginBacktest:
    """A margin model run through time and its exception statistics.

    Arrays cover the tested steps only (after warm-up, where a full horizon follows):
    ``index[i]`` is the return index, ``rates[i]`` the posted rate decided before it,
    ``losses[i]`` the position's relative loss over the horizon and ``exceptions[i]``
    whether it exceeded the rate.
    """

    model: str
    index: npt.NDArray[np.int64]
    rates: FloatArray
    losses: FloatArray
    exceptions: npt.NDArray[np.bool_]
    result: BacktestResult
    es: EsBacktestResult | None = None
    """Acerbi-Szekely expected-shortfall tests of the rates (``solvency backtest``)."""


def margin_backtest(
    returns: npt.ArrayLike,
    config: MarginModelConfig,
    *,
    apc: ApcTool = "none",
    max_change: float | None = None,
    raw: FloatArray | None = None,
) -> MarginBacktest:
    """Run a margin model through time and backtest it at ``1 - config.confidence``.

    The loss over the horizon starting at step ``t`` is that of a unit linear position on
    the summed log return ``R_t = r_t + ... + r_{t+h-1}`` (:func:`position_loss`); an
    exception is ``loss_t > rate_t``. With ``h > 1`` consecutive horizons overlap, so
    exceptions cluster by construction: read the independence test with care (or sample
    at the horizon, which the CLI does by default). ``raw`` gives the model's rates
    computed elsewhere (the predictive model, whose features need more than returns);
    by default :func:`margin_rate_series` computes them.
    """
    r = np.asarray(returns, dtype=np.float64)
    if raw is None:
        raw = margin_rate_series(r, config)
    elif raw.shape != r.shape:
        raise ValueError("raw: must have the returns' shape")
    posted = apply_rate_policy(raw, r, config, apc=apc, max_change=max_change)
    h = config.horizon_steps
    csum = np.concatenate([[0.0], np.cumsum(r)])
    idx = np.arange(config.warmup, r.size - h + 1, dtype=np.int64)
    if idx.size == 0:
        raise ValueError("returns: no full horizon after the warm-up")
    loss = position_loss(csum[idx + h] - csum[idx], config.side)
    rates = posted[idx]
    exc = exceptions(loss, rates)
    return MarginBacktest(model=config.model, index=idx, rates=rates, losses=loss,
                          exceptions=exc, result=backtest(exc, 1.0 - config.confidence))


# --------------------------------------------------------------------------- policy


def _ceil_tick(rate: float, tick: Decimal) -> Decimal:
    d = Decimal(repr(rate)) / tick
    return min(Decimal(1), d.to_integral_value(rounding=ROUND_CEILING) * tick)


def _fmt(d: Decimal) -> str:
    text = format(d.normalize(), "f")
    return text


@dataclass(frozen=True, slots=True)
class DynamicMargin:
    """A margin policy that publishes model-driven rates as ``params`` events.

    Every ``every_steps`` steps the posted rate (model, APC tool, cap, floor) becomes the
    maintenance rate of each tier times the tier's multiplier, rounded **up** to ``tick``
    (never less margin than the model asks), capped at 1; the initial rate is
    ``imr_over_mmr`` times it, capped at 1. An event is emitted only when the tiers differ
    from the last ones published.
    """

    market: str
    config: MarginModelConfig
    every_steps: int = 1
    imr_over_mmr: float = 2.0
    tiers: tuple[tuple[float, float], ...] = ((0.0, 1.0),)
    tick: str = "0.0001"
    apc: ApcTool = "none"
    max_change: float | None = None

    def rates(self, returns: npt.ArrayLike, raw: FloatArray | None = None) -> FloatArray:
        """Return the posted rate per step (NaN during warm-up).

        ``raw`` supplies model rates computed elsewhere (the ``predictive`` model, from
        :func:`solvency.core.predictive_margin.predictive_rate_series`).
        """
        if raw is None:
            raw = margin_rate_series(returns, self.config)
        return apply_rate_policy(raw, returns, self.config, apc=self.apc,
                                 max_change=self.max_change)

    def events(
        self, ts_ms: npt.ArrayLike, prices: npt.ArrayLike, *, raw: FloatArray | None = None
    ) -> list[dict[str, Any]]:
        """Return the ``params`` events for a price series.

        ``prices[i]`` is observed at ``ts_ms[i]`` (epoch ms, increasing). The rate covering
        the move from ``prices[i]`` to ``prices[i+1]`` is decided at ``ts_ms[i]`` and its
        event carries that timestamp and the id ``dm-<market>-<i>``.
        """
        ts = np.asarray(ts_ms, dtype=np.int64)
        p = np.asarray(prices, dtype=np.float64)
        if ts.shape != p.shape or ts.ndim != 1:
            raise ValueError("ts_ms and prices: need equal 1-D arrays")
        if (np.diff(ts) <= 0).any():
            raise ValueError("ts_ms: must be strictly increasing")
        if not np.isfinite(p).all() or (p <= 0.0).any():
            raise ValueError("prices: must be finite and > 0")
        if self.every_steps < 1 or self.imr_over_mmr < 1.0:
            raise ValueError("every_steps >= 1 and imr_over_mmr >= 1 required")
        posted = self.rates(np.diff(np.log(p)), raw)
        tick = Decimal(self.tick)
        out: list[dict[str, Any]] = []
        last: list[dict[str, str]] | None = None
        for i in range(self.config.warmup, posted.size, self.every_steps):
            tiers = self._tiers(float(posted[i]), tick)
            if tiers != last:
                out.append({"type": "params", "id": f"dm-{self.market}-{i}",
                            "market": self.market, "ts": int(ts[i]), "tiers": tiers})
                last = tiers
        return out

    def _tiers(self, rate: float, tick: Decimal) -> list[dict[str, str]]:
        rows = []
        ratio = Decimal(repr(self.imr_over_mmr))
        for floor, mult in self.tiers:
            mmr = _ceil_tick(rate * mult, tick)
            imr = min(Decimal(1), mmr * ratio)
            rows.append({"floor": _fmt(Decimal(repr(floor))), "mmr": _fmt(mmr),
                         "imr": _fmt(imr)})
        return rows
