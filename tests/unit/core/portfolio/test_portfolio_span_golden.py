"""CME SPAN 16-scenario grid: golden risk arrays.

1. Published futures risk array (McMillan, "Options as a Strategic Investment", ch. 34,
   "Futures and Futures Options", SPAN example): S&P 500 futures at $500 per point,
   price scan range 20 points = $10,000, extreme move counted at $7,000 (35 % of twice
   the range). The book prints the array rounded to $10 (3,330 for 10,000 / 3).
2. Option risk array built by hand from the published SPAN methodology (CME "Components
   of SPAN": each scenario revalues the option at the next trading day with the
   underlying moved by the scenario's fraction of the price scan range and volatility
   moved up or down the volatility scan range; scenarios 15-16 move twice the range with
   volatility unchanged, 35 % of the loss counted). No published option risk array gives
   all its inputs (McMillan's Dec 410 call omits vol, expiry and the vol scan range), so
   the expected values are computed independently here, per scenario, with QuantLib's
   ``BlackCalculator``; the inputs follow CME's SPAN presentation example (S&P 500
   futures at 2,790, short 2825 call at 16 % implied vol, price scan range 120 points,
   $250 per point), with a 4-point vol scan range and 30 days to expiry chosen by us.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import QuantLib as ql

from solvency.adapters.grids import load_grid
from solvency.core.portfolio import KIND_CALL, KIND_FUTURE, portfolio_margin, scenario_losses

SPAN = load_grid("cme_span_16")

# McMillan's long 1 S&P future, P/L per scenario in $ (gain positive), scenarios 1-16.
MCMILLAN_FUTURE_PNL = [0, 0, 3330, 3330, -3330, -3330, 6670, 6670, -6670, -6670,
                       10000, 10000, -10000, -10000, 7000, -7000]


def _one(kind, strike, t, size, vol, fwd, price_range, vol_range=0.04, n=1):
    return dict(
        account=np.zeros(n, np.int64), underlying=np.zeros(n, np.int64),
        kind=np.asarray(kind, np.int8), strike=np.asarray(strike, float),
        expiry_yr=np.asarray(t, float), size=np.asarray(size, float),
        vol=np.asarray(vol, float), underlying_price=[fwd], rate=0.0, grid=SPAN,
        n_accounts=1, price_range=price_range, vol_range_up=vol_range,
        vol_range_down=vol_range,
    )


def test_span_grid_shape_and_weights():
    assert SPAN.n_scenarios == 16
    thirds = [0, 0, 1, 1, -1, -1, 2, 2, -2, -2, 3, 3, -3, -3]
    np.testing.assert_allclose(SPAN.price_move[:14] * 3, thirds, atol=1e-12)
    np.testing.assert_array_equal(SPAN.vol_move[:14], [1, -1] * 7)
    np.testing.assert_array_equal(SPAN.price_move[14:], [2.0, -2.0])
    np.testing.assert_array_equal(SPAN.vol_move[14:], [0.0, 0.0])
    np.testing.assert_array_equal(SPAN.weight, [1.0] * 14 + [0.35, 0.35])
    assert SPAN.lookahead_days == 1.0


def test_mcmillan_futures_risk_array():
    fwd = 400.0  # any level: a futures risk array does not depend on it
    loss, _ = scenario_losses(**{k: v for k, v in _one(
        [KIND_FUTURE], [np.nan], [np.nan], [500.0], [np.nan], fwd, 20.0 / fwd
    ).items()})
    weighted = loss[0, 0] * SPAN.weight
    np.testing.assert_allclose(-weighted, MCMILLAN_FUTURE_PNL, atol=5.0)  # book rounds to $10
    assert -weighted[14] == pytest.approx(7000.0)  # 35 % x 2 x $10,000, exactly
    out = portfolio_margin(**_one([KIND_FUTURE], [np.nan], [np.nan], [500.0], [np.nan],
                                  fwd, 20.0 / fwd))
    assert out.mm[0] == pytest.approx(10_000.0)  # SPAN requirement: futures down 3/3
    assert out.worst_scenario[0] == 12  # scenario 13 (0-based 12): first of the -3/3 pair


def _quantlib_value(f, k, t, vol):
    payoff = ql.PlainVanillaPayoff(ql.Option.Call, k)
    return ql.BlackCalculator(payoff, f, vol * math.sqrt(t), 1.0).value()


def test_hand_built_option_risk_array_against_quantlib():
    f, k, vol, t, mult = 2790.0, 2825.0, 0.16, 30 / 365, 250.0
    psr, vsr = 120.0 / f, 0.04
    t1 = t - 1 / 365
    v0 = _quantlib_value(f, k, t, vol)
    expected = np.array([
        mult * (v0 - _quantlib_value(f * (1 + psr * m), k, t1, vol + vsr * v))
        for m, v in zip(SPAN.price_move, SPAN.vol_move, strict=True)
    ])  # risk array of one LONG call (loss positive)
    loss, _ = scenario_losses(**_one([KIND_CALL], [k], [t], [mult], [vol], f, psr, vsr))
    np.testing.assert_allclose(loss[0, 0], expected, rtol=1e-9, atol=1e-9)
    # A long call loses most with the futures down 3/3 and volatility down (scenario 14).
    assert int(np.argmax(loss[0, 0] * SPAN.weight)) == 13


def test_hand_built_covered_write_requirement():
    # Long 1 SP future, short 1 2825 call: SPAN scan risk = max_s weight_s (sum of arrays).
    f, k, vol, t, mult = 2790.0, 2825.0, 0.16, 30 / 365, 250.0
    psr, vsr = 120.0 / f, 0.04
    t1 = t - 1 / 365
    v0 = _quantlib_value(f, k, t, vol)
    fut = np.array([-mult * f * psr * m for m in SPAN.price_move])
    call = np.array([
        -mult * (v0 - _quantlib_value(f * (1 + psr * m), k, t1, vol + vsr * v))
        for m, v in zip(SPAN.price_move, SPAN.vol_move, strict=True)
    ])
    weighted = (fut + call) * SPAN.weight
    out = portfolio_margin(**_one([KIND_FUTURE, KIND_CALL], [np.nan, k], [np.nan, t],
                                  [mult, -mult], [np.nan, vol], f, psr, vsr, n=2))
    assert out.mm[0] == pytest.approx(max(weighted.max(), 0.0), rel=1e-9)
    assert out.worst_scenario[0] == int(np.argmax(weighted))
    # The covered write's worst case is the futures falling a full range (13 or 14):
    assert out.worst_scenario[0] in (12, 13)
    # ... and it is cheaper than the future alone (the short call's premium cushions).
    alone = portfolio_margin(**_one([KIND_FUTURE], [np.nan], [np.nan], [mult], [np.nan],
                                    f, psr, vsr))
    assert out.mm[0] < alone.mm[0] == pytest.approx(mult * 120.0)
