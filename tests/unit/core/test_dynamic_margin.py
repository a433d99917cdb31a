"""Vol-scaled margin, EMIR APC tools (RTS 153/2013 Art. 28), rate cap and the policy."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats
from tests.conftest import missing

from solvency.adapters.ohlcv import read_ohlcv
from solvency.core.dynamic_margin import (
    DynamicMargin,
    MarginModelConfig,
    apc_buffer,
    apc_lookback_floor,
    apc_stressed_weight,
    apply_rate_policy,
    cap_rate_changes,
    margin_backtest,
    margin_rate_series,
    max_step_increase,
    vol_scaled_rate,
)
from solvency.core.volatility import ewma_lambda_for_interval, fit_garch, garch_filter

DATA = Path(__file__).parents[3] / ".." / "shared" / "data"

rates_strategy = arrays(np.float64, st.integers(2, 80), elements=st.floats(0.001, 0.5))


def test_vol_scaled_rate_by_hand() -> None:
    # rate = max(floor, z * sigma * sqrt(h) * multiplier) = 2.326 * 0.02 * 2 * 1.5.
    z = stats.norm.ppf(0.99)
    got = vol_scaled_rate([0.02, 0.001], z=z, horizon_steps=4, multiplier=1.5, floor=0.01)
    assert got == pytest.approx([z * 0.02 * 2 * 1.5, 0.01])
    with pytest.raises(ValueError, match="finite"):
        vol_scaled_rate([np.nan], z=z)


@pytest.mark.parametrize("model", ["ewma", "fhs", "fixed"])
def test_rates_use_only_past_returns(model: str) -> None:
    rng = np.random.default_rng(5)
    r = rng.standard_t(4, 800) * 0.02
    cfg = MarginModelConfig(model=model, warmup=300, fhs_window=250)  # type: ignore[arg-type]
    base = margin_rate_series(r, cfg)
    shocked = r.copy()
    shocked[600:] *= 5.0  # change the future from t = 600 on
    after = margin_rate_series(shocked, cfg)
    np.testing.assert_array_equal(base[:601], after[:601])
    assert np.isnan(base[:300]).all() and np.isfinite(base[300:]).all()


def _forecast_by_loop(v1: float, *, omega: float, phi: float, first: int, h: int) -> float:
    """Mean variance of steps ``first .. first + h - 1`` ahead given ``sigma^2_{t+1} = v1``,
    by the plain GARCH(1,1) forecast recursion ``E[s2_{t+k+1}] = omega + phi E[s2_{t+k}]``
    (Bollerslev 1986, eq. 7; arch's analytic forecast, ``arch.univariate.volatility.GARCH.
    _analytic_forecast``)."""
    v = v1
    for _ in range(first - 1):
        v = omega + phi * v
    total = 0.0
    for _ in range(h):
        total += v
        v = omega + phi * v
    return total / h


def test_predictive_garch_rate_exceeds_the_plain_one_by_the_forecast_amount() -> None:
    # A known volatility path: 300 returns of a GARCH(1,1) (omega 4e-5, alpha 0.12, beta
    # 0.85, unit-variance t(6) shocks) fit the model, then 100 calm ones (sd 0.3 %), then
    # a burst (sd 8 %). In the calm stretch the one-step variance falls far below the
    # long-run one, so the variance forecast 24 steps ahead (the next scheduled update) is
    # larger: the predictive rate must exceed the plain one by z sqrt(h) (sqrt(mean var of
    # the h steps from k=24) - sqrt(mean var from k=1)). Right after the burst the
    # forecast decays instead: the two rates are equal.
    rng = np.random.default_rng(8)
    v, sim = 4e-5 / 0.03, []
    for eps in rng.standard_t(6, 300) * math.sqrt(4 / 6):
        sim.append(math.sqrt(v) * eps)
        v = 4e-5 + 0.12 * sim[-1] ** 2 + 0.85 * v
    r = np.concatenate([sim, rng.standard_t(5, 100) * 0.003, rng.standard_t(5, 20) * 0.08])
    h, k = 3, 24
    kw = {"model": "garch", "warmup": 300, "garch_refit_every": 500, "horizon_steps": h}
    plain = margin_rate_series(r, MarginModelConfig(**kw))[300:]  # type: ignore[arg-type]
    ahead = margin_rate_series(r, MarginModelConfig(  # type: ignore[arg-type]
        **kw, predictive=True, predictive_steps=k))[300:]
    # the reference: the same single fit (on the 300 warm-up returns), its filtered
    # one-step variances, and the forecasts by the recursion above
    fit = fit_garch(r[:300], "garch")
    v1 = garch_filter(fit, r)[300:]
    z = float(stats.t.ppf(0.99, fit.nu)) * math.sqrt((fit.nu - 2.0) / fit.nu)
    now = np.array([_forecast_by_loop(v, omega=fit.omega, phi=fit.persistence, first=1,
                                      h=h) for v in v1])
    later = np.array([_forecast_by_loop(v, omega=fit.omega, phi=fit.persistence, first=k,
                                        h=h) for v in v1])
    np.testing.assert_allclose(plain, z * np.sqrt(h * now), rtol=1e-9)
    np.testing.assert_allclose(ahead, z * np.sqrt(h * np.maximum(now, later)), rtol=1e-9)
    calm = slice(10, 100)  # the filter has forgotten the turbulent sample by step 10
    assert (later[calm] > 2.0 * now[calm]).all()  # a material case, not a rounding one
    np.testing.assert_allclose(ahead[calm] - plain[calm],
                               z * math.sqrt(h) * (np.sqrt(later[calm]) - np.sqrt(now[calm])),
                               rtol=1e-8)
    burst = slice(105, 120)
    assert (later[burst] < now[burst]).all()
    np.testing.assert_array_equal(ahead[burst], plain[burst])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [pytest.param({"model": "svm"}, "model", id="unknown-model"),
     pytest.param({"confidence": 1.0}, "confidence", id="confidence-1"),
     pytest.param({"warmup": 10}, "warmup", id="short-warmup"),
     pytest.param({"fixed_rate": 2.0}, "fixed_rate", id="fixed-rate>1")],
)
def test_config_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        margin_rate_series(np.zeros(1000), MarginModelConfig(**kwargs))  # type: ignore[arg-type]


def test_rate_series_rejects_nan_and_short_series() -> None:
    with pytest.raises(ValueError, match="finite"):
        margin_rate_series(np.r_[np.zeros(600), np.nan], MarginModelConfig())
    with pytest.raises(ValueError, match="warmup"):
        margin_rate_series(np.zeros(100), MarginModelConfig())


# -------------------------------------------------------------------------------- APC tools


def test_buffer_absorbs_a_rise_by_hand() -> None:
    # EMIR RTS 153/2013 Art. 28(1)(a): 25 % buffer, exhausted as the model rate rises.
    got = apc_buffer([0.10, 0.11, 0.15, 0.15, 0.12], buffer=0.25, rebuild_per_step=0.0)
    assert got == pytest.approx([0.125, 0.125, 0.15, 0.15, 0.15])


@settings(max_examples=80, deadline=None)
@given(rates_strategy, st.floats(0.0, 0.05))
def test_buffer_bounds_and_no_larger_step_up_on_stress(x: np.ndarray, rebuild: float) -> None:
    b = apc_buffer(x, buffer=0.25, rebuild_per_step=rebuild)
    assert np.all(b >= x - 1e-15) and np.all(b <= 1.25 * x + 1e-15)
    rising = np.diff(x) > 0
    assert np.all(np.diff(b)[rising] <= np.diff(x)[rising] + 1e-15)


def test_stressed_weight_by_hand() -> None:
    # Art. 28(1)(b): 25 % weight on the stressed (highest so far) rate.
    got = apc_stressed_weight([0.1, 0.2, 0.1])
    assert got == pytest.approx([0.1, 0.2, 0.75 * 0.1 + 0.25 * 0.2])
    with pytest.raises(ValueError, match="25"):
        apc_stressed_weight([0.1], weight=0.1)


def test_lookback_floor_by_hand() -> None:
    # Art. 28(1)(c): max(rate, z * sigma_10y * sqrt(h)); sigma over the returns before t.
    r = np.array([0.02, -0.02, 0.02, -0.02])
    got = apc_lookback_floor([0.0, 0.01, 0.01, 0.5], r, lookback_steps=3650, z=2.0)
    assert got == pytest.approx([0.0, 0.04, 0.04, 0.5])


def test_cap_rate_changes_by_hand() -> None:
    got = cap_rate_changes([0.10, 0.20, 0.20, 0.05], max_up=0.05)
    assert got == pytest.approx([0.10, 0.105, 0.11025, 0.11025 * 0.95])


@settings(max_examples=60, deadline=None)
@given(rates_strategy, st.floats(0.01, 0.2))
def test_cap_limits_every_relative_step(x: np.ndarray, cap: float) -> None:
    c = cap_rate_changes(x, max_up=cap)
    rel = c[1:] / c[:-1] - 1.0
    assert np.all(rel <= cap + 1e-12) and np.all(rel >= -cap - 1e-12)


# Real crash windows (hourly perp/spot data in ../shared/data).
CRASH_WINDOWS = [
    ("btcusdt_binance_um_perp_1h_2019-09-08_2022-07-27.csv.gz", "2020-03-05", "2020-03-20",
     "black-thursday-2020-03-12"),
    ("btcusdt_binance_um_perp_1h_2019-09-08_2022-07-27.csv.gz", "2021-05-12", "2021-05-26",
     "china-2021-05-19"),
    ("btcusdt_binance_spot_1h_2017-08-17_2024-04-21.csv.gz", "2022-11-05", "2022-11-15",
     "ftx-2022-11-09"),
    ("btcusdt_bybit_perp_1h_2023-11-29_2026-02-08.csv.gz", "2024-08-01", "2024-08-10",
     "yen-carry-2024-08-05"),
    ("btcusdt_bybit_perp_1h_2023-11-29_2026-02-08.csv.gz", "2025-10-07", "2025-10-15",
     "tariff-2025-10-10"),
]


def _ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def hourly() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name in {w[0] for w in CRASH_WINDOWS}:
        path = DATA / name
        if path.is_file():
            bars = read_ohlcv(path)
            out[name] = (bars.ts_ms[1:], np.diff(np.log(bars.close)))
    return out


@pytest.mark.parametrize(("name", "start", "end"),
                         [pytest.param(*w[:3], id=w[3]) for w in CRASH_WINDOWS])
@pytest.mark.parametrize("model", ["ewma", "fhs"])
def test_buffered_step_up_is_at_most_the_unbuffered_one_in_real_crashes(
    hourly: dict[str, tuple[np.ndarray, np.ndarray]], name: str, start: str, end: str,
    model: str,
) -> None:
    if name not in hourly:
        missing(f"real data {DATA / name} not present")
    ts, r = hourly[name]
    keep = (ts >= _ms(start) - 1500 * 3_600_000) & (ts < _ms(end))  # 720 h warm-up + margin
    ts, r = ts[keep], r[keep]
    cfg = MarginModelConfig(model=model, lam=ewma_lambda_for_interval(3600.0),  # type: ignore[arg-type]
                            horizon_steps=24, warmup=720, fhs_window=690, floor=0.02)
    raw = margin_rate_series(r, cfg)
    plain = apply_rate_policy(raw, r, cfg)
    buffered = apply_rate_policy(raw, r, cfg, apc="buffer")
    win = (ts >= _ms(start)) & (ts < _ms(end))
    assert win.sum() > 100
    inc_plain = max_step_increase(plain[win])
    inc_buf = max_step_increase(buffered[win])
    assert inc_buf <= inc_plain + 1e-15
    assert inc_plain > 0.0  # the crash did move the model
    for apc in ("none", "buffer", "stressed", "floor"):
        posted = apply_rate_policy(raw, r, cfg, apc=apc, max_change=0.05)  # type: ignore[arg-type]
        assert np.nanmin(posted) >= cfg.floor


# ------------------------------------------------------------------------------- policy


def test_dynamic_margin_events_are_params_dicts_rounded_up() -> None:
    rng = np.random.default_rng(3)
    prices = 100.0 * np.exp(np.cumsum(rng.standard_normal(400) * 0.02))
    ts = 1_700_000_000_000 + 3_600_000 * np.arange(400)
    dm = DynamicMargin(market="BTC-PERP", config=MarginModelConfig(warmup=300),
                       every_steps=24, tiers=((0.0, 1.0), (1_000_000.0, 2.0)))
    events = dm.events(ts, prices)
    posted = dm.rates(np.diff(np.log(prices)))
    assert events, "the first scheduled step always publishes"
    first = events[0]
    assert first["type"] == "params" and first["market"] == "BTC-PERP"
    assert first["id"] == "dm-BTC-PERP-300" and first["ts"] == int(ts[300])
    t0, t1 = first["tiers"]
    assert t0["floor"] == "0" and t1["floor"] == "1000000"
    mmr = Decimal(t0["mmr"])
    assert mmr >= Decimal(repr(float(posted[300])))  # rounded up, never down
    assert mmr - Decimal(repr(float(posted[300]))) < Decimal("0.0001")
    assert Decimal(t0["imr"]) == min(Decimal(1), 2 * mmr)
    assert Decimal(t1["mmr"]) >= 2 * Decimal(repr(float(posted[300])))
    steps = [int(e["id"].rsplit("-", 1)[1]) for e in events]
    assert all((s - 300) % 24 == 0 for s in steps)
    assert all(a["tiers"] != b["tiers"] for a, b in pairwise(events))


def test_dynamic_margin_rejects_bad_prices() -> None:
    dm = DynamicMargin(market="X", config=MarginModelConfig(warmup=60))
    with pytest.raises(ValueError, match="prices"):
        dm.events(np.arange(100), np.r_[np.ones(99), -1.0])
    with pytest.raises(ValueError, match="increasing"):
        dm.events(np.zeros(100, dtype=np.int64), np.ones(100))


def test_margin_backtest_counts_exceptions_against_posted_rates() -> None:
    rng = np.random.default_rng(4)
    r = rng.standard_normal(1500) * 0.02
    bt = margin_backtest(r, MarginModelConfig(model="fixed", fixed_rate=0.03, warmup=100))
    expected = (-np.expm1(r[100:]) > 0.03)
    np.testing.assert_array_equal(bt.exceptions, expected)
    assert bt.result.exceptions == int(expected.sum())
    # Normal returns with sd 2 %: P(loss > 3 %) ~ Phi(-1.5) = 6.7 %: far above 1 %.
    assert bt.result.zone == "red"
    assert math.isclose(bt.result.exception_rate, expected.mean())


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 40)),
              elements=st.floats(0.001, 0.5)))
def test_buffer_and_cap_rows_equal_the_single_series_path(x: np.ndarray) -> None:
    # The 2-D (markets x time) recursion and the 1-D float loop are twins.
    b2, c2 = apc_buffer(x), cap_rate_changes(x, max_up=0.05)
    for i in range(x.shape[0]):
        np.testing.assert_allclose(b2[i], apc_buffer(x[i]), rtol=1e-15)
        np.testing.assert_allclose(c2[i], cap_rate_changes(x[i], max_up=0.05), rtol=1e-15)
