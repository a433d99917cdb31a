"""Black-76 price and Greeks: QuantLib, scipy tails, Hull, parity, finite differences."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import QuantLib as ql
from scipy.special import ndtr

from solvency.core.options import (
    STATUS_INVALID_INPUT,
    STATUS_OK,
    black76_greeks,
    black76_price,
    inverse_greeks,
    to_market_units,
)

GREEKS = ("price", "delta", "gamma", "vega", "theta", "rho")
FORWARDS = (100.0, 60_000.0)
TIMES_YR = (1 / 365, 7 / 365, 30 / 365, 0.25, 1.0, 2.0)
VOLS = (0.05, 0.2, 0.8, 2.0)
RATES = (-0.01, 0.0, 0.05)


def _grid(moneyness_sd: tuple[float, ...]) -> dict[str, np.ndarray]:
    # Strikes placed at k standard deviations of log-moneyness: ln(F/K) = k sigma sqrt(T).
    rows = list(itertools.product(FORWARDS, TIMES_YR, VOLS, moneyness_sd, RATES, (True, False)))
    f, t, v, k, r, c = (np.array(col) for col in zip(*rows, strict=True))
    strike = f * np.exp(-k * v * np.sqrt(t))
    return {"forward": f, "strike": strike, "time_yr": t, "vol": v, "rate": r,
            "is_call": c.astype(bool)}


def _quantlib(g: dict[str, np.ndarray]) -> np.ndarray:
    # Black-76 on a forward with discount exp(-rT): ql.BlackCalculator with forward-space
    # Greeks; theta(spot=F) is -dV/dT with F fixed; rho + dividendRho moves r with F fixed.
    out = np.empty((g["forward"].shape[0], 6))
    for i in range(out.shape[0]):
        f, t = float(g["forward"][i]), float(g["time_yr"][i])
        kind = ql.Option.Call if g["is_call"][i] else ql.Option.Put
        payoff = ql.PlainVanillaPayoff(kind, float(g["strike"][i]))
        calc = ql.BlackCalculator(
            payoff, f, float(g["vol"][i]) * math.sqrt(t), math.exp(-g["rate"][i] * t)
        )
        out[i] = (calc.value(), calc.deltaForward(), calc.gammaForward(), calc.vega(t),
                  calc.theta(f, t), calc.rho(t) + calc.dividendRho(t))
    return out


def _scipy(g: dict[str, np.ndarray]) -> np.ndarray:
    # Independent normal CDF (Cephes ndtr), out-of-the-money-safe forms.
    f, k, t, v, r = g["forward"], g["strike"], g["time_yr"], g["vol"], g["rate"]
    cp = np.where(g["is_call"], 1.0, -1.0)
    s = v * np.sqrt(t)
    d1 = np.log(f / k) / s + s / 2
    disc = np.exp(-r * t)
    dens = np.exp(-d1 * d1 / 2) / np.sqrt(2 * np.pi)
    price = disc * cp * (f * ndtr(cp * d1) - k * ndtr(cp * (d1 - s)))
    return np.stack([
        price, cp * disc * ndtr(cp * d1), disc * dens / (f * s), disc * f * dens * np.sqrt(t),
        r * price - disc * f * dens * v / (2 * np.sqrt(t)), -t * price,
    ], axis=1)


def _rel(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-300)


@pytest.fixture(scope="module")
def core_grid() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    # +-3 sd of log-moneyness: beyond it QuantLib itself drifts (see test_deep_tails).
    g = _grid((-3.0, -2.0, -1.0, -0.3, 0.0, 0.3, 1.0, 2.0, 3.0))
    ours = np.stack(black76_greeks(**g)[:6], axis=1)
    return g, ours, _quantlib(g)


@pytest.mark.parametrize("greek", GREEKS, ids=[f"QuantLib-BlackCalculator-{n}" for n in GREEKS])
def test_matches_quantlib(core_grid, greek):
    _, ours, ref = core_grid
    j = GREEKS.index(greek)
    assert ours.shape[0] == 2 * 6 * 4 * 9 * 3 * 2
    assert _rel(ours[:, j], ref[:, j]).max() <= 1e-9


@pytest.mark.parametrize("greek", GREEKS, ids=[f"scipy-ndtr-tails-{n}" for n in GREEKS])
def test_deep_tails(greek):
    # QuantLib's CumulativeNormalDistribution switches to an asymptotic series below
    # N = 1e-8 (measured relative error 7e-8 at z = -5.7) and its BlackCalculator prices
    # puts as D(F (N(d1) - 1) + K (1 - N(d2))); both lose digits out of the money, so the
    # tails are held to an independent erfc (scipy's Cephes ndtr) instead.
    g = _grid((-30.0, -20.0, -12.0, -8.0, -6.0, -5.0, -4.0, 4.0, 5.0, 6.0, 8.0, 12.0))
    j = GREEKS.index(greek)
    ours = np.asarray(black76_greeks(**g)[j])
    ref = _scipy(g)[:, j]
    live = np.abs(ref) > 1e-290  # both underflow together beyond this
    assert live.sum() > 0.8 * ref.shape[0]
    assert _rel(ours[live], ref[live]).max() <= 1e-9


@pytest.mark.parametrize(
    ("f", "k", "t", "sigma", "r", "is_call", "price", "tol"),
    [
        pytest.param(20.0, 20.0, 4 / 12, 0.25, 0.09, False, 1.12, 0.005,
                     id="Hull-OFOD-Black-model-futures-put-1.12"),
        pytest.param(100.0, 100.0, 1.0, 0.2, 0.0, True, 100 * math.erf(0.1 / math.sqrt(2)), 1e-12,
                     id="Black1976-ATM-r0-closed-form-F(2N(s/2)-1)"),
        pytest.param(100.0, 1e-12, 1.0, 0.5, 0.05, True, 100 * math.exp(-0.05), 1e-9,
                     id="Black1976-zero-strike-call-is-discounted-forward"),
    ],
)
def test_textbook_values(f, k, t, sigma, r, is_call, price, tol):
    got = black76_price(forward=f, strike=k, time_yr=t, vol=sigma, rate=r, is_call=is_call)
    assert got.status[0] == STATUS_OK
    assert got.price[0] == pytest.approx(price, abs=tol)


def test_put_call_parity():
    g = _grid((-6.0, -3.0, -1.0, 0.0, 1.0, 3.0, 6.0))
    g_call = {**g, "is_call": np.ones_like(g["is_call"])}
    g_put = {**g, "is_call": np.zeros_like(g["is_call"])}
    c, p = black76_greeks(**g_call), black76_greeks(**g_put)
    f, k, t, r = g["forward"], g["strike"], g["time_yr"], g["rate"]
    disc = np.exp(-r * t)
    scale = c.price + p.price + disc * (f + k)
    # Black (1976) parity: C - P = D (F - K), and its derivatives.
    np.testing.assert_array_less(np.abs(c.price - p.price - disc * (f - k)), 1e-14 * scale)
    np.testing.assert_allclose(c.delta - p.delta, disc, rtol=0, atol=1e-15)
    np.testing.assert_allclose(c.gamma, p.gamma, rtol=1e-15)
    np.testing.assert_allclose(c.vega, p.vega, rtol=1e-15)
    theta_scale = np.abs(c.theta) + np.abs(r) * scale + 1
    theta_gap = np.abs(c.theta - p.theta - r * disc * (f - k))
    np.testing.assert_array_less(theta_gap, 1e-13 * theta_scale)
    np.testing.assert_array_less(np.abs(c.rho - p.rho + t * disc * (f - k)), 1e-14 * t * scale)


FD_CASES = [
    pytest.param(60_000.0, 65_000.0, 30 / 365, 0.6, 0.03, True, id="BTC-30d-OTM-call"),
    pytest.param(60_000.0, 50_000.0, 7 / 365, 0.9, 0.0, False, id="BTC-7d-OTM-put"),
    pytest.param(3_000.0, 2_500.0, 0.5, 0.7, 0.05, True, id="ETH-6m-ITM-call"),
    pytest.param(100.0, 100.0, 1.0, 0.2, -0.01, False, id="ATM-put-negative-rate"),
]


def _fd(fn, x, h):
    return (fn(x + h) - fn(x - h)) / (2 * h), (fn(x + h) - 2 * fn(x) + fn(x - h)) / (h * h)


@pytest.mark.parametrize(("f", "k", "t", "sigma", "r", "is_call"), FD_CASES)
@pytest.mark.parametrize("settle", ["linear", "inverse"])
def test_greeks_match_finite_differences(f, k, t, sigma, r, is_call, settle):
    def value(ff=f, tt=t, vv=sigma, rr=r):
        p = black76_price(forward=ff, strike=k, time_yr=tt, vol=vv, rate=rr, is_call=is_call)
        return float(p.price[0]) / (ff if settle == "inverse" else 1.0)

    kernel = black76_greeks if settle == "linear" else inverse_greeks
    g = kernel(forward=f, strike=k, time_yr=t, vol=sigma, rate=r, is_call=is_call)
    delta, _ = _fd(lambda x: value(ff=x), f, f * 1e-5)
    _, gamma = _fd(lambda x: value(ff=x), f, f * 1e-3 * sigma * math.sqrt(t))
    vega, _ = _fd(lambda x: value(vv=x), sigma, 1e-4)
    d_dt, _ = _fd(lambda x: value(tt=x), t, t * 1e-4)
    rho, _ = _fd(lambda x: value(rr=x), r, 1e-4)
    assert g.price[0] == pytest.approx(value(), rel=1e-14)
    assert g.delta[0] == pytest.approx(delta, rel=1e-6)
    assert g.gamma[0] == pytest.approx(gamma, rel=1e-4)
    assert g.vega[0] == pytest.approx(vega, rel=1e-6)
    assert g.theta[0] == pytest.approx(-d_dt, rel=1e-6)
    assert g.rho[0] == pytest.approx(rho, rel=1e-6)


def test_inverse_is_usd_over_forward_and_deribit_net_delta():
    # Deribit API docs, get_account_summary `delta_total`: "Net Transaction Delta = Black
    # Scholes Delta - Mark Price of Options" (mark in coin); its FAQ example: a call of
    # delta 0.50 bought for 0.10 BTC adds 0.40 to DeltaTotal.
    g = _grid((-3.0, -1.0, 0.0, 1.0, 3.0))
    usd, coin = black76_greeks(**g), inverse_greeks(**g)
    f = g["forward"]
    np.testing.assert_allclose(coin.price, usd.price / f, rtol=1e-12)
    np.testing.assert_allclose(coin.vega, usd.vega / f, rtol=1e-14)
    np.testing.assert_allclose(coin.rho, usd.rho / f, rtol=1e-12)
    np.testing.assert_allclose(coin.delta_net, coin.delta * f, rtol=1e-14)
    np.testing.assert_allclose(coin.delta_net, usd.delta - coin.price, rtol=1e-10, atol=1e-15)


BAD = [
    pytest.param(math.nan, 100.0, 1.0, 0.5, 0.0, id="forward-nan"),
    pytest.param(0.0, 100.0, 1.0, 0.5, 0.0, id="forward-zero"),
    pytest.param(-1.0, 100.0, 1.0, 0.5, 0.0, id="forward-negative"),
    pytest.param(math.inf, 100.0, 1.0, 0.5, 0.0, id="forward-inf"),
    pytest.param(100.0, 0.0, 1.0, 0.5, 0.0, id="strike-zero"),
    pytest.param(100.0, -5.0, 1.0, 0.5, 0.0, id="strike-negative"),
    pytest.param(100.0, 100.0, 0.0, 0.5, 0.0, id="expired-time-zero"),
    pytest.param(100.0, 100.0, -0.1, 0.5, 0.0, id="time-negative"),
    pytest.param(100.0, 100.0, math.nan, 0.5, 0.0, id="time-nan"),
    pytest.param(100.0, 100.0, 1.0, 0.0, 0.0, id="vol-zero"),
    pytest.param(100.0, 100.0, 1.0, -0.2, 0.0, id="vol-negative"),
    pytest.param(100.0, 100.0, 1.0, math.inf, 0.0, id="vol-inf"),
    pytest.param(100.0, 100.0, 1.0, 0.5, math.nan, id="rate-nan"),
]


@pytest.mark.parametrize(("f", "k", "t", "sigma", "r"), BAD)
@pytest.mark.parametrize("kernel", [black76_greeks, inverse_greeks, black76_price],
                         ids=["greeks", "inverse", "price"])
def test_bad_input_gives_nan_and_status(f, k, t, sigma, r, kernel):
    out = kernel(forward=np.array([f, 100.0]), strike=np.array([k, 100.0]),
                 time_yr=np.array([t, 1.0]), vol=np.array([sigma, 0.5]),
                 rate=np.array([r, 0.0]), is_call=True)
    assert out.status.tolist() == [STATUS_INVALID_INPUT, STATUS_OK]
    for field in out[:-1]:
        assert math.isnan(field[0])
        assert math.isfinite(field[1])


def test_market_units_scale_vega_theta_rho():
    raw = black76_greeks(forward=60_000.0, strike=70_000.0, time_yr=0.25, vol=0.6, rate=0.02,
                         is_call=True)
    shown = to_market_units(raw)
    assert shown.vega[0] == raw.vega[0] / 100  # per vol point
    assert shown.theta[0] == raw.theta[0] / 365  # per calendar day
    assert shown.rho[0] == raw.rho[0] / 100  # per 1 % rate
    assert shown.price[0] == raw.price[0]
    assert shown.delta[0] == raw.delta[0]
    assert to_market_units(raw, days_per_year=252.0).theta[0] == raw.theta[0] / 252
    inv = to_market_units(inverse_greeks(forward=60_000.0, strike=70_000.0, time_yr=0.25,
                                         vol=0.6, rate=0.02, is_call=True))
    assert isinstance(inv.delta_net, np.ndarray)


def test_broadcast_scalars_and_reject_2d():
    out = black76_price(forward=np.array([90.0, 100.0, 110.0]), strike=100.0, time_yr=0.5,
                        vol=0.4, rate=0.0, is_call=np.array([True, True, False]))
    assert out.price.shape == (3,)
    with pytest.raises(ValueError, match="1-D"):
        black76_price(forward=np.ones((2, 2)), strike=100.0, time_yr=0.5, vol=0.4, rate=0.0,
                      is_call=True)
