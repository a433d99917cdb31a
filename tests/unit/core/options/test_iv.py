"""Implied volatility: round trips, bounds and status codes, QuantLib agreement."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import QuantLib as ql

from solvency.core.options import (
    STATUS_ABOVE_UPPER_BOUND,
    STATUS_BELOW_INTRINSIC,
    STATUS_INVALID_INPUT,
    STATUS_OK,
    black76_price,
    implied_vol,
    implied_vol_inverse,
    inverse_greeks,
)

TIMES_YR = (1 / 365, 2 / 365, 7 / 365, 30 / 365, 91 / 365, 0.5, 1.0, 2.0)
VOLS = (0.05, 0.1, 0.3, 0.6, 1.0, 1.5, 3.0)
SD = (0.3, 0.5, 1.0, 2.0, 3.0)
MONEYNESS_SD = (0.0, *SD, *(-x for x in SD))


def _grid(moneyness_sd, times=TIMES_YR, vols=VOLS):
    rows = list(itertools.product((100.0, 60_000.0), times, vols, moneyness_sd, (0.0, 0.05),
                                  (True, False)))
    f, t, v, k, r, c = (np.array(col) for col in zip(*rows, strict=True))
    return {"forward": f, "strike": f * np.exp(-k * v * np.sqrt(t)), "time_yr": t, "vol": v,
            "rate": r, "is_call": c.astype(bool)}, k


def _round_trip(g):
    price = black76_price(**g).price
    args = {key: g[key] for key in ("forward", "strike", "time_yr", "rate", "is_call")}
    return price, implied_vol(price=price, **args)


@pytest.mark.parametrize("side", ["otm", "itm"])
def test_round_trip_vol_1e_10_over_grid(side):
    # Grid of the options issue: 1 day to 2 years, 0.3 to 3.0 sd of log-moneyness (and ATM),
    # vols 5 % to 300 %. ITM prices go through put-call parity inside the solver.
    g, k = _grid(MONEYNESS_SD)
    cp = np.where(g["is_call"], 1.0, -1.0)
    otm = cp * k <= 0.0
    pick = otm if side == "otm" else ~otm | (k == 0.0)
    g = {key: val[pick] for key, val in g.items()}
    _, iv = _round_trip(g)
    assert (iv.status == STATUS_OK).all()
    assert np.abs(iv.vol / g["vol"] - 1.0).max() <= 1e-10


def test_round_trip_deep_otm_in_vol_and_price():
    # Out-of-the-money prices down to 1e-39 of the forward stay well-conditioned in vol
    # (vega / price grows like (ln(F/K) / s)^2 / s), so the vol round trip keeps 1e-10.
    g, k = _grid((-12.0, -8.0, -5.0, 5.0, 8.0, 12.0), times=(1 / 365, 30 / 365, 1.0),
                 vols=(0.1, 0.6, 2.0))
    cp = np.where(g["is_call"], 1.0, -1.0)
    g = {key: val[cp * k < 0.0] for key, val in g.items()}
    price, iv = _round_trip(g)
    assert (iv.status == STATUS_OK).all()
    assert np.abs(iv.vol / g["vol"] - 1.0).max() <= 1e-10
    again = black76_price(**{**g, "vol": iv.vol}).price
    assert np.abs(again / price - 1.0).max() <= 1e-10


def test_deep_itm_round_trip_in_price_space():
    # Deep ITM: the time value is a sliver of the price and parity subtracts the intrinsic
    # value, so vol is ill-conditioned; the repriced option still matches to 1e-13 of the
    # price. Where the time value is below the price's rounding, the pricer's output can
    # sit an ulp under the discounted intrinsic value: the solver says so (status 1)
    # rather than invent a vol.
    g, k = _grid((-8.0, -5.0, 5.0, 8.0), times=(1 / 365, 30 / 365, 1.0), vols=(0.1, 0.6, 2.0))
    cp = np.where(g["is_call"], 1.0, -1.0)
    g = {key: val[cp * k > 0.0] for key, val in g.items()}
    price, iv = _round_trip(g)
    ok = iv.status == STATUS_OK
    assert ok.mean() > 0.8
    below = iv.status == STATUS_BELOW_INTRINSIC
    assert (ok | below).all()
    disc = np.exp(-g["rate"] * g["time_yr"])
    intrinsic = disc * np.abs(g["forward"] - g["strike"])
    at_intrinsic = below | (ok & (iv.vol == 0.0))
    assert (np.abs(price / intrinsic - 1.0)[at_intrinsic] <= 1e-15).all()
    solved = ok & (iv.vol > 0.0)
    again = black76_price(**{**g, "vol": np.where(solved, iv.vol, g["vol"])}).price
    assert np.abs(again / price - 1.0)[solved].max() <= 1e-13


def test_extreme_expiries_and_vols_converge():
    # One hour to five years, 1 % to 500 % vol, +-6 sd: everything converges in price.
    times = (1 / (365 * 24), 1 / 365, 5.0)
    vols = (0.01, 0.2, 5.0)
    g, k = _grid((-6.0, -1.0, 0.0, 1.0, 6.0), times=times, vols=vols)
    cp = np.where(g["is_call"], 1.0, -1.0)
    g = {key: val[cp * k <= 0.0] for key, val in g.items()}
    _, iv = _round_trip(g)
    assert (iv.status == STATUS_OK).all()
    assert np.abs(iv.vol / g["vol"] - 1.0).max() <= 1e-9


@pytest.mark.parametrize(
    ("price", "f", "k", "t", "r", "is_call", "status", "vol"),
    [
        pytest.param(9.99, 110.0, 100.0, 1.0, 0.0, True, STATUS_BELOW_INTRINSIC, math.nan,
                     id="call-below-intrinsic"),
        pytest.param(9.99, 90.0, 100.0, 1.0, 0.0, False, STATUS_BELOW_INTRINSIC, math.nan,
                     id="put-below-intrinsic"),
        pytest.param(10.0, 110.0, 100.0, 1.0, 0.0, True, STATUS_OK, 0.0,
                     id="call-at-intrinsic-is-zero-vol"),
        pytest.param(0.0, 90.0, 100.0, 1.0, 0.0, True, STATUS_OK, 0.0,
                     id="otm-call-zero-price-is-zero-vol"),
        pytest.param(110.0, 110.0, 100.0, 1.0, 0.0, True, STATUS_ABOVE_UPPER_BOUND, math.nan,
                     id="call-at-forward-bound"),
        pytest.param(120.0, 110.0, 100.0, 1.0, 0.0, True, STATUS_ABOVE_UPPER_BOUND, math.nan,
                     id="call-above-forward-bound"),
        pytest.param(100.0 * math.exp(-0.05), 90.0, 100.0, 1.0, 0.05, False,
                     STATUS_ABOVE_UPPER_BOUND, math.nan, id="put-at-discounted-strike-bound"),
        pytest.param(math.nan, 100.0, 100.0, 1.0, 0.0, True, STATUS_INVALID_INPUT, math.nan,
                     id="price-nan"),
        pytest.param(-1.0, 100.0, 100.0, 1.0, 0.0, True, STATUS_INVALID_INPUT, math.nan,
                     id="price-negative"),
        pytest.param(math.inf, 100.0, 100.0, 1.0, 0.0, True, STATUS_INVALID_INPUT, math.nan,
                     id="price-inf"),
        pytest.param(5.0, 0.0, 100.0, 1.0, 0.0, True, STATUS_INVALID_INPUT, math.nan,
                     id="forward-zero"),
        pytest.param(5.0, 100.0, -100.0, 1.0, 0.0, True, STATUS_INVALID_INPUT, math.nan,
                     id="strike-negative"),
        pytest.param(5.0, 100.0, 100.0, 0.0, 0.0, True, STATUS_INVALID_INPUT, math.nan,
                     id="expired"),
        pytest.param(5.0, 100.0, 100.0, 1.0, math.nan, True, STATUS_INVALID_INPUT, math.nan,
                     id="rate-nan"),
    ],
)
def test_bounds_and_status_codes(price, f, k, t, r, is_call, status, vol):
    out = implied_vol(price=np.array([price, 8.0]), forward=np.array([f, 100.0]),
                      strike=np.array([k, 100.0]), time_yr=np.array([t, 1.0]),
                      rate=np.array([r, 0.0]), is_call=np.array([is_call, True]))
    assert out.status.tolist() == [status, STATUS_OK]
    if math.isnan(vol):
        assert math.isnan(out.vol[0])
    else:
        assert out.vol[0] == vol
    # The valid row in the same batch is unaffected: it reprices to 8.0.
    again = black76_price(forward=100.0, strike=100.0, time_yr=1.0, vol=out.vol[1], rate=0.0,
                          is_call=True)
    assert again.price[0] == pytest.approx(8.0, rel=1e-13)


@pytest.mark.parametrize(
    ("f", "k", "t", "sigma", "r", "is_call"),
    [
        pytest.param(60_000.0, 70_000.0, 30 / 365, 0.55, 0.0, True, id="QuantLib-BTC-OTM-call"),
        pytest.param(60_000.0, 45_000.0, 7 / 365, 0.9, 0.0, False, id="QuantLib-BTC-OTM-put"),
        pytest.param(3_000.0, 3_000.0, 1.0, 0.7, 0.05, True, id="QuantLib-ETH-ATM-call"),
        pytest.param(100.0, 80.0, 2.0, 0.25, 0.03, True, id="QuantLib-ITM-call"),
    ],
)
def test_matches_quantlib_implied_std_dev(f, k, t, sigma, r, is_call):
    disc = math.exp(-r * t)
    kind = ql.Option.Call if is_call else ql.Option.Put
    price = ql.blackFormula(kind, k, f, sigma * math.sqrt(t), disc)
    std = ql.blackFormulaImpliedStdDev(kind, k, f, price, disc, 0.0, 0.5, 1e-15, 200)
    ours = implied_vol(price=price, forward=f, strike=k, time_yr=t, rate=r, is_call=is_call)
    assert ours.vol[0] == pytest.approx(std / math.sqrt(t), rel=1e-10)
    assert ours.vol[0] == pytest.approx(sigma, rel=1e-10)


def test_inverse_price_in_coin_round_trip():
    # Deribit quotes BTC options in BTC and shows an IV computed against the forward.
    f = np.array([60_000.0, 60_000.0, 60_000.0])
    k = np.array([50_000.0, 60_000.0, 80_000.0])
    vol = np.array([0.8, 0.55, 0.6])
    is_call = np.array([False, True, True])
    coin = inverse_greeks(forward=f, strike=k, time_yr=14 / 365, vol=vol, rate=0.0,
                          is_call=is_call).price
    iv = implied_vol_inverse(price_coin=coin, forward=f, strike=k, time_yr=14 / 365, rate=0.0,
                             is_call=is_call)
    np.testing.assert_allclose(iv.vol, vol, rtol=1e-10)
