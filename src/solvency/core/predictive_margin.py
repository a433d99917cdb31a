"""Predictive margin: a quantile model of the horizon's loss from what is known at the time.

The model forecasts the ``confidence`` quantile of a unit position's loss over the
liquidation horizon, as a multiple of a volatility forecast ``s_t`` known at the decision
time (``scale``: the EWMA volatility of RiskMetrics 1996, or the GARCH(1,1)-t forecast)::

    form "linear":  rate_t = max(0, b_0 + sum_k b_k x_{t,k}) * s_t * sqrt(h)
    form "log":     rate_t = exp(b_0 + sum_k b_k x_{t,k}) * s_t * sqrt(h)

with the coefficients ``b`` from a linear quantile regression (Koenker and Bassett 1978,
"Regression quantiles", *Econometrica* 46(1); scikit-learn's ``QuantileRegressor``, an
exact linear program solved by HiGHS) of ``loss_t / (s_t sqrt(h))`` (form "log": of its
logarithm; quantiles commute with a monotone map, so this is the same quantile, fitted
as a geometric blend of the volatility ratios) on the features ``x``. A ``pooled`` model
is fitted on the long and the short rows together (twice the tail rows; the signed
features below enter in the direction of the position's loss), and ``smoothing`` ``a < 1``
posts ``ln rate_t = a ln raw_t + (1 - a) ln rate_{t-1}`` (an exponential smoothing in log
space that damps the one-step rise). Features, all decided from bars up to and including
bar ``t`` (the rate for the move from ``close[t]`` to ``close[t+1]``):

* ``har_d``, ``har_w``, ``har_m``: realized volatility over the last 1, 7 and 30 days
  (the HAR components of Corsi 2009, "A simple approximate long-memory model of realized
  volatility", *J. Financial Econometrics* 7(2); 7 days a week: crypto trades every day);
* ``range_d``, ``range_w``: Parkinson (1980) high-low volatility of the last bar and the
  last 7 days (``ln(H/L)^2 / (4 ln 2)``);
* ``garch``: the out-of-sample GARCH(1,1)-t volatility forecast (rolling refits,
  :func:`solvency.core.dynamic_margin.margin_rate_series`' scheme);
* ``ewma``: the EWMA volatility itself (only with the GARCH scale);
  each of the above as ``ln(feature / s_t)``;
* ``ret_d``: the last return in units of ``sigma_ewma``;
* ``volume``: ``ln(volume / its 30-day mean)``;
* ``funding``: the mean funding rate settled in the last day (basis points per
  settlement), ``funding_chg`` its change over 7 days;
* ``basis``: ``ln(perp / spot)`` in basis points where both series exist;
* ``side``: 1 on every row (signed, so -1 for a short: in a pooled fit, the short
  side's own intercept, ``b_0 - b_side`` against the long's ``b_0 + b_side``).

``ret_d``, ``funding``, ``funding_chg``, ``basis`` and ``side`` are signed: the short side's model
reads them negated (a positive funding rate, crowded longs, is a risk to a long and a
cushion to a short). A feature that is missing (no funding or basis series, or before it
starts) is replaced by its training median, which the model file records. Everything
here is pure: the fit is a deterministic linear program, time and data arrive as
arguments.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal, cast

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from solvency.core.backtest import position_loss
from solvency.core.dynamic_margin import MarginModelConfig, garch_sigma_series
from solvency.core.volatility import ewma_variance

__all__ = [
    "DEFAULT_FEATURES",
    "DEFAULT_FORM",
    "DEFAULT_SCALE",
    "DEFAULT_SMOOTHING",
    "FEATURES",
    "SIGNED",
    "FeatureInputs",
    "PredictiveModel",
    "feature_matrix",
    "fit_predictive",
    "funding_per_bar",
    "predictive_features",
    "predictive_rate_series",
    "scale_series",
    "training_rows",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
DAY_MS: Final = 86_400_000
FEATURES: Final[tuple[str, ...]] = (
    "har_d", "har_w", "har_m", "range_d", "range_w", "garch", "ret_d", "volume",
    "funding", "funding_chg", "basis", "ewma", "side",
)
# The shipped model (docs/analytics.md, "Predictive margin", "Which model"): chosen by the
# measured comparison of bench/bench_predictive.py; its smoothing by a time-series
# cross-validation inside the training window.
DEFAULT_FEATURES: Final[tuple[str, ...]] = ("ewma", "har_w", "har_m", "range_w", "funding")
DEFAULT_SCALE: Final = "garch"
DEFAULT_FORM: Final = "log"
DEFAULT_SMOOTHING: Final = 0.9
Scale = Literal["ewma", "garch"]
Form = Literal["linear", "log"]
# ln(x / s_t): the volatility features, whose ratio to the scale the model reads
_VOL: Final = ("har_d", "har_w", "har_m", "range_d", "range_w", "garch", "ewma")
SIGNED: Final = ("ret_d", "funding", "funding_chg", "basis", "side")
_LOG_FLOOR: Final = 1e-6  # the smallest loss / scale the log form reads (ln 1e-6 = -13.8)
_FUNDING_CHANGE_DAYS: Final = 7
_VOLUME_DAYS: Final = 30
_TINY: Final = 1e-12


@dataclass(frozen=True, slots=True)
class FeatureInputs:
    """One market's bars and the side series its features read.

    ``ts_ms`` are bar open times (a bar closes at ``ts_ms + interval_ms``); ``funding`` is
    the mean funding rate settled during each bar's last day (NaN where unknown, see
    :func:`funding_per_bar`); ``basis_bp`` is ``ln(perp / spot) * 1e4`` at each bar's
    close (NaN where one of the two series is absent).
    """

    ts_ms: IntArray
    interval_ms: int
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    funding: FloatArray
    basis_bp: FloatArray

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent array."""
        n = self.close.size
        for name in ("ts_ms", "high", "low", "volume", "funding", "basis_bp"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name}: expected shape ({n},) like close")
        if n < 3 or self.interval_ms <= 0:
            raise ValueError("need at least 3 bars and interval_ms > 0")
        if DAY_MS % self.interval_ms:
            raise ValueError(f"interval_ms {self.interval_ms} does not divide a day")
        px = np.concatenate([self.high, self.low, self.close])
        if not np.isfinite(px).all() or (px <= 0.0).any():
            raise ValueError("high, low, close: must be finite and > 0")
        if not np.isfinite(self.volume).all() or (self.volume < 0.0).any():
            raise ValueError("volume: must be finite and >= 0")


def funding_per_bar(
    bar_close_ms: npt.ArrayLike, settle_ms: npt.ArrayLike, rate: npt.ArrayLike
) -> FloatArray:
    """Return the mean funding rate settled in ``(close - 1 day, close]``, in basis points.

    ``settle_ms`` must increase; a bar whose last day has no settlement (before the
    series starts or after it ends) gets NaN.
    """
    close = np.asarray(bar_close_ms, dtype=np.int64)
    ts = np.asarray(settle_ms, dtype=np.int64)
    fr = np.asarray(rate, dtype=np.float64)
    if ts.shape != fr.shape or ts.ndim != 1:
        raise ValueError("settle_ms and rate: need equal 1-D arrays")
    if ts.size and ((np.diff(ts) <= 0).any() or not np.isfinite(fr).all()):
        raise ValueError("funding: settlement times must increase and rates be finite")
    out = np.full(close.shape, np.nan)
    if ts.size == 0:
        return out
    csum = np.concatenate([[0.0], np.cumsum(fr)])
    hi = np.searchsorted(ts, close, side="right")
    lo = np.searchsorted(ts, close - DAY_MS, side="right")
    cnt = hi - lo
    have = cnt > 0
    out[have] = (csum[hi[have]] - csum[lo[have]]) / cnt[have] * 1e4
    return out


def _rolling_mean(x: FloatArray, w: int) -> FloatArray:
    # Mean of x[t-w+1 .. t]; NaN until w values exist (NaN inputs propagate).
    out = np.full(x.shape, np.nan)
    if x.size < w:
        return out
    bad = np.isnan(x)
    c = np.concatenate([[0.0], np.cumsum(np.where(bad, 0.0, x))])
    nb = np.concatenate([[0], np.cumsum(bad)])
    body = (c[w:] - c[:-w]) / w
    out[w - 1:] = np.where(nb[w:] - nb[:-w] > 0, np.nan, body)
    return out


def _lagged(x: FloatArray, k: int) -> FloatArray:
    out = np.full(x.shape, np.nan)
    out[k:] = x[:-k]
    return out


def predictive_features(
    inputs: FeatureInputs, *, lam: float, garch_warmup: int = 250,
    garch_refit_every: int = 50, garch_fit_window: int = 2000,
) -> tuple[FloatArray, FloatArray]:
    """Return ``(X, sigma)``: every feature of :data:`FEATURES` and the EWMA volatility.

    Row ``t`` (of ``n_bars - 1``) is decided at the close of bar ``t`` and covers the
    return ``r[t] = ln(close[t+1] / close[t])``; ``sigma[t]`` is the EWMA volatility of
    ``r[t]`` given ``r[:t]`` (decay ``lam`` per bar). Rows before a feature's window is
    full hold NaN there.
    """
    inputs.validate()
    day = DAY_MS // inputs.interval_ms
    r = np.diff(np.log(inputs.close))
    n = r.size
    sigma = np.sqrt(ewma_variance(r, lam))
    prev = np.concatenate([[np.nan], r[:-1]])  # r[t-1]: the move of bar t
    sq = prev * prev
    pk = np.log(inputs.high[:n] / inputs.low[:n]) ** 2 / (4.0 * math.log(2.0))
    cfg = MarginModelConfig(model="garch", warmup=garch_warmup,
                            garch_refit_every=garch_refit_every,
                            garch_fit_window=garch_fit_window)
    raw: dict[str, FloatArray] = {
        "har_d": np.sqrt(_rolling_mean(sq, day)),
        "har_w": np.sqrt(_rolling_mean(sq, 7 * day)),
        "har_m": np.sqrt(_rolling_mean(sq, 30 * day)),
        "range_d": np.sqrt(_rolling_mean(pk, day)),
        "range_w": np.sqrt(_rolling_mean(pk, 7 * day)),
        "garch": garch_sigma_series(r, cfg),
    }
    cols: dict[str, FloatArray] = {
        k: np.log(np.maximum(v, _TINY) / sigma) for k, v in raw.items()
    }
    cols["ret_d"] = prev / sigma
    vol = inputs.volume[:n].astype(np.float64)
    mean_vol = _rolling_mean(vol, _VOLUME_DAYS * day)
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["volume"] = np.where(mean_vol > 0.0, np.log(np.maximum(vol, _TINY) / mean_vol),
                                  np.nan)
    fund = inputs.funding[:n].astype(np.float64)
    cols["funding"] = fund
    cols["funding_chg"] = fund - _lagged(fund, _FUNDING_CHANGE_DAYS * day)
    cols["basis"] = inputs.basis_bp[:n].astype(np.float64)
    cols["ewma"] = np.zeros(n)  # ln(sigma_ewma / sigma_ewma); another scale subtracts its own
    cols["side"] = np.ones(n)  # +1 long; feature_matrix negates it on a short's rows
    return np.column_stack([cols[k] for k in FEATURES]), cast(FloatArray, sigma)


def _columns(features: tuple[str, ...]) -> list[int]:
    unknown = [f for f in features if f not in FEATURES]
    if unknown or not features or len(set(features)) != len(features):
        raise ValueError(f"features: {list(features)} must be distinct names from "
                         f"{', '.join(FEATURES)}")
    return [FEATURES.index(f) for f in features]


def scale_series(X: FloatArray, sigma: FloatArray, scale: str) -> FloatArray:
    """Return the volatility the model scales by: the EWMA ``sigma`` or the GARCH forecast
    (``sigma * exp(X[:, garch])``, NaN before the GARCH warm-up)."""
    if scale == "ewma":
        return sigma
    if scale == "garch":
        return sigma * np.exp(X[:, FEATURES.index("garch")])
    raise ValueError(f"scale: {scale!r} is not ewma or garch")


def feature_matrix(
    X: FloatArray, features: tuple[str, ...], *, scale: str = "ewma",
    short_rows: npt.NDArray[np.bool_] | None = None,
) -> FloatArray:
    """Return the model's columns of ``X``: volatility ratios to ``scale``, signed features
    negated on ``short_rows`` (NaN kept)."""
    Z = np.array(X[:, _columns(features)], dtype=np.float64)
    if scale == "garch":
        g = X[:, FEATURES.index("garch")]
        for j, f in enumerate(features):
            if f in _VOL:
                Z[:, j] -= g
    if short_rows is not None:
        for j, f in enumerate(features):
            if f in SIGNED:
                Z[short_rows, j] = -Z[short_rows, j]
    return Z


@dataclass(frozen=True, slots=True)
class PredictiveModel:
    """A fitted predictive margin model, as written to and read from its JSON file.

    ``coef[0]`` is the intercept and ``coef[1:]`` multiply ``features`` in order; a missing
    feature takes ``impute``. The model covers one ``side`` at ``quantile`` over
    ``horizon_steps`` bars of ``interval_ms``; ``scale``, ``form``, ``pooled`` (fitted on
    both sides' rows) and ``smoothing`` as in the module's docstring; ``lam`` (per bar)
    and the ``garch_*`` settings rebuild its features exactly as in training.
    """

    features: tuple[str, ...]
    coef: tuple[float, ...]
    impute: tuple[float, ...]
    quantile: float
    side: Literal["long", "short"]
    horizon_steps: int
    interval_ms: int
    lam: float
    garch_warmup: int
    garch_refit_every: int
    garch_fit_window: int
    train_from_ms: int
    train_to_ms: int
    n_train: int
    library: str
    series: tuple[str, ...]
    scale: Scale = "ewma"
    form: Form = "linear"
    pooled: bool = False
    smoothing: float = 1.0

    @property
    def min_history(self) -> int:
        """Return the first return index whose features are all defined (before imputing)."""
        day = DAY_MS // self.interval_ms
        garch = "garch" in self.features or self.scale == "garch"
        need = [self.garch_warmup if garch else 0]
        windows = {"har_d": day, "har_w": 7 * day, "har_m": 30 * day, "range_d": day,
                   "range_w": 7 * day, "ret_d": 1, "volume": _VOLUME_DAYS * day}
        need += [windows[f] for f in self.features if f in windows]
        return max(need)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        _columns(self.features)
        k = len(self.features)
        if len(self.coef) != k + 1 or len(self.impute) != k:
            raise ValueError(f"coef: need {k + 1} values and impute {k} for {k} features")
        nums = (*self.coef, *self.impute, self.quantile, self.lam, self.smoothing)
        if not all(math.isfinite(x) for x in nums):
            raise ValueError("coef, impute, quantile, lam, smoothing: must be finite")
        if not 0.5 < self.quantile < 1.0 or not 0.0 < self.lam < 1.0:
            raise ValueError("quantile must lie in (0.5, 1) and lam in (0, 1)")
        if self.side not in ("long", "short"):
            raise ValueError(f"side: {self.side!r} is not long or short")
        if self.scale not in ("ewma", "garch") or self.form not in ("linear", "log"):
            raise ValueError(f"scale {self.scale!r} / form {self.form!r}: expected ewma or "
                             "garch / linear or log")
        if self.scale in self.features:
            raise ValueError(f"features: {self.scale} is the scale (its ratio is 1)")
        if "side" in self.features and not self.pooled:
            raise ValueError("features: side needs a pooled fit (alone it is the intercept)")
        if not 0.0 < self.smoothing <= 1.0 or (self.smoothing < 1.0 and self.form != "log"):
            raise ValueError("smoothing must lie in (0, 1], below 1 only with form log")
        if min(self.horizon_steps, self.interval_ms, self.garch_refit_every) < 1:
            raise ValueError("horizon_steps, interval_ms, garch_refit_every must be >= 1")
        if DAY_MS % self.interval_ms:
            raise ValueError(f"interval_ms {self.interval_ms} does not divide a day")
        if self.garch_warmup < 100 or self.garch_fit_window < 100:
            raise ValueError("garch_warmup and garch_fit_window must be >= 100")

    def to_dict(self) -> dict[str, Any]:
        """Return the model as a JSON-ready dict."""
        d = asdict(self)
        for key in ("features", "coef", "impute", "series"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictiveModel:
        """Build and validate a model from :meth:`to_dict`'s form (unknown keys refused)."""
        names = set(cls.__dataclass_fields__)
        extra = sorted(set(data) - names)
        missing = sorted(names - set(data))
        if extra or missing:
            raise ValueError(f"model: unknown keys {extra}, missing keys {missing}")
        if not isinstance(data["pooled"], bool):
            raise ValueError("model: pooled must be true or false")
        try:
            model = cls(
                features=tuple(str(f) for f in data["features"]),
                coef=tuple(float(x) for x in data["coef"]),
                impute=tuple(float(x) for x in data["impute"]),
                quantile=float(data["quantile"]), side=data["side"],
                horizon_steps=int(data["horizon_steps"]), interval_ms=int(data["interval_ms"]),
                lam=float(data["lam"]), garch_warmup=int(data["garch_warmup"]),
                garch_refit_every=int(data["garch_refit_every"]),
                garch_fit_window=int(data["garch_fit_window"]),
                train_from_ms=int(data["train_from_ms"]), train_to_ms=int(data["train_to_ms"]),
                n_train=int(data["n_train"]), library=str(data["library"]),
                series=tuple(str(s) for s in data["series"]),
                scale=data["scale"], form=data["form"], pooled=data["pooled"],
                smoothing=float(data["smoothing"]),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"model: {exc}") from None
        model.validate()
        return model

    def design(self, X: FloatArray) -> FloatArray:
        """Return ``[1, x_selected]`` with missing values replaced by the training medians."""
        short = np.full(X.shape[0], self.side == "short")
        Z = feature_matrix(X, self.features, scale=self.scale, short_rows=short)
        fill = np.broadcast_to(np.asarray(self.impute), Z.shape)
        Z = np.where(np.isnan(Z), fill, Z)
        return np.column_stack([np.ones(Z.shape[0]), Z])

    def multiplier(self, X: FloatArray) -> FloatArray:
        """Return the forecast loss quantile in units of ``s_t * sqrt(h)`` (>= 0)."""
        z = self.design(X) @ np.asarray(self.coef)
        if self.form == "log":
            return cast(FloatArray, np.exp(z))
        return cast(FloatArray, np.maximum(z, 0.0))


def training_rows(
    X: FloatArray, sigma: FloatArray, returns: FloatArray, ts_ms: IntArray, *,
    horizon_steps: int, side: Literal["long", "short"], min_history: int,
    until_ms: int, interval_ms: int,
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Return ``(X_rows, target, row_index)``: rows whose whole horizon ends by ``until_ms``.

    ``ts_ms[t]`` is the open of bar ``t``; the move of row ``t`` runs from bar ``t``'s close
    for ``horizon_steps`` bars. The target is the position's loss over that move divided by
    ``sigma[t] * sqrt(horizon_steps)``.
    """
    n = returns.size
    h = horizon_steps
    csum = np.concatenate([[0.0], np.cumsum(returns)])
    idx = np.arange(min_history, n - h + 1, dtype=np.int64)
    end_ms = ts_ms[idx] + (h + 1) * interval_ms
    idx = idx[(end_ms <= until_ms) & (sigma[idx] > 0.0)]
    loss = position_loss(csum[idx + h] - csum[idx], side)
    return X[idx], loss / (sigma[idx] * math.sqrt(h)), idx


def fit_predictive(
    X: FloatArray, target: FloatArray, *, features: tuple[str, ...], quantile: float,
    scale: str = "ewma", form: str = "linear",
    short_rows: npt.NDArray[np.bool_] | None = None,
) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    """Fit the linear quantile regression; return ``(coef, impute, library)``.

    ``target`` is the loss in units of the scale (:func:`training_rows`); form ``log``
    fits its logarithm (floored at 1e-6). ``short_rows`` marks the rows of a short
    position (signed features negated: a pooled fit). Missing values take the column's
    training median (NaN-aware), then scikit-learn's ``QuantileRegressor(quantile,
    alpha=0, fit_intercept=False, solver="highs")`` solves the Koenker-Bassett linear
    program on ``[1, x]``: an exact, deterministic vertex.
    """
    import sklearn
    from sklearn.linear_model import QuantileRegressor

    if form not in ("linear", "log"):
        raise ValueError(f"form: {form!r} is not linear or log")
    if scale in features:
        raise ValueError(f"features: {scale} is the scale (its ratio is 1)")
    if "side" in features and (short_rows is None or short_rows.all()
                               or not short_rows.any()):
        raise ValueError("features: side needs a pooled fit, long and short rows together "
                         "(alone it is the intercept)")
    Z = feature_matrix(X, features, scale=scale, short_rows=short_rows)
    if Z.shape[0] != target.size or Z.shape[0] < 10 * (len(features) + 1):
        raise ValueError(f"training: {Z.shape[0]} rows for {len(features)} features is too "
                         "few")
    if not np.isfinite(target).all():
        raise ValueError("training: the target must be finite")
    empty = [f for f, col in zip(features, Z.T, strict=True) if np.isnan(col).all()]
    if empty:
        # A coefficient fitted on a constant column is arbitrary, and would multiply the
        # feature wherever it exists later: refuse rather than ship it.
        raise ValueError(f"training: no values for feature(s) {', '.join(empty)} (funding "
                         "needs a funding file and symbol, basis a perp and spot pair)")
    impute = np.nanmedian(Z, axis=0)
    Z = np.where(np.isnan(Z), impute, Z)
    design = np.column_stack([np.ones(Z.shape[0]), Z])
    y = np.log(np.maximum(target, _LOG_FLOOR)) if form == "log" else target
    reg = QuantileRegressor(quantile=quantile, alpha=0.0, fit_intercept=False,
                            solver="highs").fit(design, y)
    coef = tuple(float(c) for c in reg.coef_)
    lib = f"scikit-learn {sklearn.__version__} QuantileRegressor(alpha=0, solver=highs)"
    return coef, tuple(float(v) for v in impute), lib


def predictive_rate_series(
    X: FloatArray, sigma: FloatArray, model: PredictiveModel, *, warmup: int,
) -> FloatArray:
    """Return the raw margin rate per return (NaN before ``warmup``), like
    :func:`solvency.core.dynamic_margin.margin_rate_series`.

    ``rate[t] = multiplier(X[t]) * s[t] * sqrt(h)`` with ``s`` the model's scale (EWMA
    ``sigma`` or the GARCH forecast), then smoothed in log space from ``warmup`` on when
    ``model.smoothing < 1`` (the first rate as it is); ``warmup`` must cover the model's
    :attr:`PredictiveModel.min_history`.
    """
    if warmup < model.min_history:
        raise ValueError(f"warmup: {warmup} is shorter than the {model.min_history} returns "
                         "the predictive model's features need")
    n = sigma.size
    if X.shape != (n, len(FEATURES)):
        raise ValueError(f"X: expected shape ({n}, {len(FEATURES)})")
    out = np.full(n, np.nan)
    if n <= warmup:
        return out
    scale = scale_series(X[warmup:], sigma[warmup:], model.scale)
    rate = model.multiplier(X[warmup:]) * scale * math.sqrt(model.horizon_steps)
    a = model.smoothing
    if a < 1.0:
        # ln rate_t = a ln raw_t + (1 - a) ln rate_{t-1}, started at the first raw rate of
        # each run of finite positive raw rates: the recursion restarts after a bad bar (a
        # missing GARCH forecast, a zero sigma), which stays NaN or 0 as the raw rate was,
        # instead of turning every later rate into NaN or 0
        good = np.isfinite(rate) & (rate > 0.0)
        lr = np.log(np.where(good, rate, 1.0))
        edges = np.flatnonzero(np.diff(np.concatenate(([0], good.astype(np.int8), [0]))))
        smoothed = rate.copy()
        for lo, hi in zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True):
            seg = lr[lo:hi]
            smoothed[lo:hi] = np.exp(lfilter([a], [1.0, a - 1.0], seg,
                                             zi=[(1.0 - a) * seg[0]])[0])
        rate = smoothed
    out[warmup:] = rate
    return out
