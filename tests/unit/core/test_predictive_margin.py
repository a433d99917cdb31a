"""Predictive margin (issue 19): features by hand, causality, the quantile fit, the model file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm

from solvency.core.backtest import position_loss
from solvency.core.dynamic_margin import MarginModelConfig, margin_backtest
from solvency.core.predictive_margin import (
    DAY_MS,
    FEATURES,
    FeatureInputs,
    PredictiveModel,
    fit_predictive,
    funding_per_bar,
    predictive_features,
    predictive_rate_series,
    training_rows,
)
from solvency.core.volatility import ewma_variance

T0 = 1_600_000_000_000 // DAY_MS * DAY_MS


def _inputs(n: int = 160, seed: int = 3) -> FeatureInputs:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.standard_t(5, n) * 0.02))
    spread = np.exp(np.abs(rng.standard_normal(n)) * 0.01)
    return FeatureInputs(
        ts_ms=T0 + np.arange(n, dtype=np.int64) * DAY_MS, interval_ms=DAY_MS,
        high=close * spread, low=close / spread, close=close,
        volume=rng.uniform(1.0, 3.0, n), funding=rng.normal(1.0, 0.5, n),
        basis_bp=rng.normal(5.0, 2.0, n))


def _model(**kw: object) -> PredictiveModel:
    base: dict[str, object] = dict(
        features=("har_w", "garch"), coef=(2.5, 0.5, 1.0), impute=(0.0, 0.1), quantile=0.99,
        side="long", horizon_steps=1, interval_ms=DAY_MS, lam=0.94, garch_warmup=100,
        garch_refit_every=50, garch_fit_window=2000, train_from_ms=0, train_to_ms=1,
        n_train=100, library="test", series=("a",))
    base.update(kw)
    return PredictiveModel(**base)  # type: ignore[arg-type]


def test_funding_per_bar_is_the_mean_of_the_last_days_settlements() -> None:
    # Binance USDT-M settles every 8 h: a daily bar closing at 00:00 sees the 16:00, 08:00
    # and 00:00 settlements of its day; (close - 1 day) itself is excluded.
    settle = T0 + np.array([0, 8, 16, 24, 32], dtype=np.int64) * 3_600_000
    rate = np.array([1e-4, 2e-4, 3e-4, -1e-4, 5e-4])
    close = T0 + np.array([-DAY_MS, 0, DAY_MS, 2 * DAY_MS, 3 * DAY_MS], dtype=np.int64)
    got = funding_per_bar(close, settle, rate)
    assert math.isnan(got[0])
    assert got[1] == pytest.approx(1.0)  # only the 00:00 settlement, 1 bp
    assert got[2] == pytest.approx((2 + 3 - 1) / 3)  # 08:00, 16:00, next 00:00
    assert got[3] == pytest.approx(5.0)
    assert math.isnan(got[4])
    with pytest.raises(ValueError, match="increase"):
        funding_per_bar(close, settle[::-1], rate)


def test_features_by_hand() -> None:
    inp = _inputs()
    X, sigma = predictive_features(inp, lam=0.94, garch_warmup=100)
    r = np.diff(np.log(inp.close))
    np.testing.assert_allclose(sigma, np.sqrt(ewma_variance(r, 0.94)), rtol=1e-15)
    col = {name: X[:, i] for i, name in enumerate(FEATURES)}
    t = 120
    # HAR (Corsi 2009): realized volatility of the last 7 / 30 daily returns r[t-7..t-1].
    har_w = math.sqrt(float(np.mean(r[t - 7:t] ** 2)))
    har_m = math.sqrt(float(np.mean(r[t - 30:t] ** 2)))
    assert col["har_w"][t] == pytest.approx(math.log(har_w / sigma[t]), rel=1e-12)
    assert col["har_m"][t] == pytest.approx(math.log(har_m / sigma[t]), rel=1e-12)
    assert col["har_d"][t] == pytest.approx(math.log(abs(r[t - 1]) / sigma[t]), rel=1e-12)
    # Parkinson (1980): ln(H/L)^2 / (4 ln 2) of bars t-6..t (bar t is closed at row t).
    pk = np.log(inp.high / inp.low) ** 2 / (4 * math.log(2))
    rw = math.sqrt(float(np.mean(pk[t - 6:t + 1])))
    assert col["range_w"][t] == pytest.approx(math.log(rw / sigma[t]), rel=1e-12)
    assert col["ret_d"][t] == pytest.approx(r[t - 1] / sigma[t], rel=1e-12)
    vol = math.log(inp.volume[t] / float(np.mean(inp.volume[t - 29:t + 1])))
    assert col["volume"][t] == pytest.approx(vol, rel=1e-12)
    assert col["funding"][t] == inp.funding[t]
    assert col["funding_chg"][t] == pytest.approx(inp.funding[t] - inp.funding[t - 7])
    assert col["basis"][t] == inp.basis_bp[t]
    # Windows not yet full are NaN, GARCH before its first fit too.
    assert math.isnan(col["har_w"][6]) and not math.isnan(col["har_w"][7])
    assert math.isnan(col["garch"][99]) and not math.isnan(col["garch"][100])


def test_features_use_nothing_after_the_decision() -> None:
    # Row t is decided at bar t's close: changing bars after t changes no row <= t.
    a = _inputs()
    t = 130
    b = FeatureInputs(
        ts_ms=a.ts_ms, interval_ms=a.interval_ms, high=a.high.copy(), low=a.low.copy(),
        close=a.close.copy(), volume=a.volume.copy(), funding=a.funding.copy(),
        basis_bp=a.basis_bp.copy())
    for arr in (b.high, b.low, b.close, b.volume, b.funding, b.basis_bp):
        arr[t + 1:] *= 1.5
    xa, sa = predictive_features(a, lam=0.94, garch_warmup=100)
    xb, sb = predictive_features(b, lam=0.94, garch_warmup=100)
    np.testing.assert_array_equal(xa[: t + 1], xb[: t + 1])
    np.testing.assert_array_equal(sa[: t + 1], sb[: t + 1])
    assert not np.array_equal(xa[t + 2:], xb[t + 2:], equal_nan=True)


def test_quantile_fit_agrees_with_statsmodels_quantreg() -> None:
    # Koenker and Bassett (1978): the fit minimizes the pinball loss. scikit-learn solves the
    # linear program exactly (HiGHS); statsmodels' QuantReg (IRLS, p_tol 1e-6) is the
    # reference. The LP optimum may be a face, so compare the objective, and coefficients
    # loosely.
    rng = np.random.default_rng(7)
    n = 3000
    X = np.full((n, len(FEATURES)), np.nan)
    X[:, 1] = rng.normal(0, 0.3, n)
    X[:, 5] = rng.normal(0, 0.2, n)
    y = 2.0 + 0.8 * X[:, 1] + 1.5 * X[:, 5] + rng.standard_t(4, n) * 0.5
    X[::17, 5] = np.nan  # missing -> the median of the rest
    coef, impute, lib = fit_predictive(X, y, features=("har_w", "garch"), quantile=0.95)
    assert "QuantileRegressor" in lib
    med = float(np.nanmedian(X[:, 5]))
    assert impute == (pytest.approx(float(np.median(X[:, 1]))), pytest.approx(med))
    Z = np.column_stack([np.ones(n), X[:, 1], np.where(np.isnan(X[:, 5]), med, X[:, 5])])
    ref = sm.QuantReg(y, Z).fit(q=0.95, max_iter=5000).params

    def pinball(b: np.ndarray) -> float:
        u = y - Z @ b
        return float(np.mean(np.maximum(0.95 * u, -0.05 * u)))

    assert pinball(np.asarray(coef)) <= pinball(ref) * (1 + 1e-6)
    np.testing.assert_allclose(coef, ref, atol=0.05)


def test_rates_are_multiplier_times_ewma_sigma() -> None:
    inp = _inputs()
    X, sigma = predictive_features(inp, lam=0.94, garch_warmup=100)
    m = _model(horizon_steps=2)
    rate = predictive_rate_series(X, sigma, m, warmup=110)
    assert np.isnan(rate[:110]).all()
    t = 140
    x = [1.0, X[t, FEATURES.index("har_w")], X[t, FEATURES.index("garch")]]
    want = max(0.0, float(np.dot(m.coef, x))) * sigma[t] * math.sqrt(2)
    assert rate[t] == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="warmup"):
        predictive_rate_series(X, sigma, m, warmup=50)
    # The rates run through the shared backtest and policy like every model's.
    r = np.diff(np.log(inp.close))
    bt = margin_backtest(r, MarginModelConfig(model="predictive", warmup=110), raw=rate)
    np.testing.assert_array_equal(bt.rates, rate[110:])


def test_training_rows_stop_where_the_horizon_would_cross_the_cut() -> None:
    inp = _inputs()
    X, sigma = predictive_features(inp, lam=0.94, garch_warmup=100)
    r = np.diff(np.log(inp.close))
    until = int(inp.ts_ms[150])  # bar 150 opens here
    _, y, idx = training_rows(X, sigma, r, inp.ts_ms, horizon_steps=2, side="short",
                              min_history=100, until_ms=until, interval_ms=DAY_MS)
    # Row t's move runs from bar t's close to bar t+2's close = ts[t] + 3 days.
    assert idx[0] == 100 and idx[-1] == 147
    t = 120
    loss = position_loss(r[t] + r[t + 1], "short")
    assert y[idx == t][0] == pytest.approx(loss / (sigma[t] * math.sqrt(2)), rel=1e-12)


def test_model_dict_round_trip_and_refusals() -> None:
    m = _model()
    assert PredictiveModel.from_dict(m.to_dict()) == m
    with pytest.raises(ValueError, match=r"unknown keys \['coeff'\]"):
        PredictiveModel.from_dict({**m.to_dict(), "coeff": [1]})
    bad = [({"features": ["har_w", "gaarch"]}, "features"),
           ({"coef": [1.0, 2.0]}, "coef"),
           ({"quantile": 1.5}, "quantile"),
           ({"side": "both"}, "side"),
           ({"impute": [float("nan"), 0.0]}, "finite"),
           ({"interval_ms": 7 * 3_600_000}, "divide")]
    for change, match in bad:
        with pytest.raises(ValueError, match=match):
            PredictiveModel.from_dict({**m.to_dict(), **change})
    assert _model().min_history == 100
    assert _model(features=("volume",), coef=(1.0, 1.0), impute=(0.0,)).min_history == 30
    assert _model(features=("har_m",), interval_ms=DAY_MS // 24).min_history == 720


def test_config_refuses_predictive_without_features() -> None:
    from solvency.core.dynamic_margin import margin_rate_series

    with pytest.raises(ValueError, match="predictive_rate_series"):
        margin_rate_series(np.zeros(600), MarginModelConfig(model="predictive"))


def test_log_form_on_the_garch_scale_with_smoothing_by_hand() -> None:
    # rate_t = exp(b0 + b1 ln(har_w / g) + b2 ln(ewma / g) + b3 (+-funding)) * g_t, g the
    # GARCH forecast; the short side reads funding negated; smoothing 0.6 posts
    # ln rate_t = 0.6 ln raw_t + 0.4 ln rate_{t-1} from the first rate on.
    inp = _inputs()
    X, sigma = predictive_features(inp, lam=0.94, garch_warmup=100)
    col = {name: X[:, i] for i, name in enumerate(FEATURES)}
    g = sigma * np.exp(col["garch"])
    coef = (1.1, 0.3, 0.5, 0.02)
    raw = {}
    for side, sgn in (("long", 1.0), ("short", -1.0)):
        m = _model(features=("har_w", "ewma", "funding"), coef=coef, impute=(0.0, 0.0, 0.0),
                   side=side, scale="garch", form="log", pooled=True)
        rate = predictive_rate_series(X, sigma, m, warmup=110)
        t = 130
        har_w = sigma[t] * math.exp(col["har_w"][t])
        want = math.exp(coef[0] + coef[1] * math.log(har_w / g[t])
                        + coef[2] * math.log(sigma[t] / g[t]) + coef[3] * sgn * col["funding"][t]
                        ) * g[t]
        assert rate[t] == pytest.approx(want, rel=1e-12)
        raw[side] = rate
    assert not np.allclose(raw["long"][110:], raw["short"][110:])  # funding's sign
    m = _model(features=("har_w", "ewma", "funding"), coef=coef, impute=(0.0, 0.0, 0.0),
               scale="garch", form="log", smoothing=0.6)
    smooth = predictive_rate_series(X, sigma, m, warmup=110)
    want = [raw["long"][110]]
    for t in range(111, sigma.size):
        want.append(math.exp(0.6 * math.log(raw["long"][t]) + 0.4 * math.log(want[-1])))
    np.testing.assert_allclose(smooth[110:], want, rtol=1e-12)
    # the smoothing damps the largest one-step rise
    assert np.max(np.diff(smooth[110:])) < np.max(np.diff(raw["long"][110:]))
    with pytest.raises(ValueError, match="only with form log"):
        _model(smoothing=0.9).validate()
    with pytest.raises(ValueError, match="garch is the scale"):
        _model(scale="garch").validate()


def test_smoothing_restarts_after_a_bad_bar() -> None:
    # One missing scale (NaN) or zero sigma must not turn every later smoothed rate into
    # NaN or 0: the bad bar stays as the raw rate left it and the log-space recursion
    # starts again at the next finite positive raw rate (by hand below).
    inp = _inputs()
    X, sigma = predictive_features(inp, lam=0.94, garch_warmup=100)
    sigma = sigma.copy()
    sigma[115] = np.nan
    sigma[140] = 0.0
    kw: dict[str, object] = dict(features=("har_w", "ewma", "funding"),
                                 coef=(1.1, 0.3, 0.5, 0.02), impute=(0.0, 0.0, 0.0),
                                 scale="garch", form="log")
    raw = predictive_rate_series(X, sigma, _model(**kw), warmup=110)
    assert np.isnan(raw[115]) and raw[140] == 0.0
    smooth = predictive_rate_series(X, sigma, _model(**kw, smoothing=0.6), warmup=110)
    want: list[float] = []
    prev = math.nan
    for t in range(110, sigma.size):
        x = raw[t]
        if not (math.isfinite(x) and x > 0.0):
            want.append(x)
            prev = math.nan
        elif math.isnan(prev):
            want.append(x)
            prev = x
        else:
            prev = math.exp(0.6 * math.log(x) + 0.4 * math.log(prev))
            want.append(prev)
    np.testing.assert_allclose(smooth[110:], want, rtol=1e-12)
    assert np.isfinite(smooth[116:140]).all() and (smooth[141:] > 0).all()
    assert smooth[116] == pytest.approx(raw[116], rel=1e-14)  # each run starts at its raw rate
    assert smooth[141] == pytest.approx(raw[141], rel=1e-14)


def test_pooled_fit_negates_signed_features_on_short_rows() -> None:
    # A pooled fit stacks the long and the short rows; a short row's funding enters
    # negated, so the fit on (X, -funding for shorts) equals a fit on the flipped matrix.
    rng = np.random.default_rng(11)
    n = 800
    X = np.zeros((n, len(FEATURES)))
    X[:, FEATURES.index("har_w")] = rng.normal(0, 0.3, n)
    X[:, FEATURES.index("funding")] = rng.normal(1, 1, n)
    short = np.arange(n) % 2 == 1
    y = np.exp(1 + 0.5 * X[:, 1] + rng.normal(0, 0.3, n))
    a = fit_predictive(X, y, features=("har_w", "funding"), quantile=0.9, form="log",
                       short_rows=short)
    flipped = X.copy()
    flipped[short, FEATURES.index("funding")] *= -1
    b = fit_predictive(flipped, y, features=("har_w", "funding"), quantile=0.9, form="log")
    assert a == b
    c = fit_predictive(X, y, features=("har_w", "funding"), quantile=0.9, form="log")
    assert a[0] != c[0]


def test_side_feature_gives_each_side_its_own_quantile_in_a_pooled_fit() -> None:
    # "side" is 1 on every row and signed: a short row reads -1. With only the intercept
    # and side, the pooled LP has one free level per side, so exp(b0 + b_side) is the long
    # rows' own 90 % quantile and exp(b0 - b_side) the short rows': the ceil(0.9 n)-th
    # order statistic of each (455 rows a side: the 410th, unique since 0.9 x 455 = 409.5).
    inp = _inputs()
    X, _ = predictive_features(inp, lam=0.94, garch_warmup=100)
    assert (X[:, FEATURES.index("side")] == 1.0).all()
    rng = np.random.default_rng(5)
    n = 455
    y_long = np.exp(rng.normal(0.0, 0.4, n))
    y_short = 2.0 * np.exp(rng.normal(0.0, 0.4, n))
    Xp = np.ones((2 * n, len(FEATURES)))
    short = np.arange(2 * n) >= n
    coef, impute, _ = fit_predictive(Xp, np.concatenate([y_long, y_short]),
                                     features=("side",), quantile=0.9, form="log",
                                     short_rows=short)
    assert math.exp(coef[0] + coef[1]) == pytest.approx(np.sort(y_long)[409], rel=1e-9)
    assert math.exp(coef[0] - coef[1]) == pytest.approx(np.sort(y_short)[409], rel=1e-9)
    # through the model: the short model's design reads side as -1
    for side, y in (("long", y_long), ("short", y_short)):
        m = _model(features=("side",), coef=coef, impute=impute, quantile=0.9, side=side,
                   scale="ewma", form="log", pooled=True)
        assert m.multiplier(Xp[:1])[0] == pytest.approx(np.sort(y)[409], rel=1e-9)
    # alone (one side's rows, or a per-side model) side is only the intercept: refused
    with pytest.raises(ValueError, match="side needs a pooled fit"):
        fit_predictive(Xp, np.concatenate([y_long, y_short]), features=("side",),
                       quantile=0.9, form="log")
    with pytest.raises(ValueError, match="side needs a pooled fit"):
        _model(features=("side",), coef=coef, impute=impute, pooled=False).validate()
