"""Deribit portfolio margin against Deribit's own API example (issue 29 item 3).

Source: Deribit API reference, ``private/pme/simulate``, the response example
(https://docs.deribit.com/api-reference/account-management/private-simulate;
``model_params.general.timestamp`` 1718619740501 = 2024-06-17; read 2026-12-07). A BTC
book of ``BTC-PERPETUAL`` 0.314538364 and ``BTC-28JUN24`` -0.001187534 (sizes in BTC),
index 65,666.19 USD. Deribit prints, in BTC: each instrument's risk vector (27 standard
scenarios, 8 extended), ``worst_case`` 0.05968587238095239 (bucket 1, left: -16 %),
``roll_shock`` 0.00315725898, ``risk_matrix_margin`` 0.06284313098 (worst case + roll,
delta shock and correlation contingency 0), ``maintenance_margin`` 0.050274504784
(mm_factor 0.8 x risk_matrix_margin) and ``initial_margin`` 0.122861343 (risk matrix
margin + ``mmp_margin`` 0.06 + ``open_orders_margin`` 0.000018212, which solvency does
not model: its initial margin is the risk matrix margin).

Per-strike netting: Deribit, "Portfolio Margin" (https://www.deribit.com/pages/docs/
portfoliomargin): "call +10 and put -20, your net short position on strike X is -10, thus
10*0.01 BTC extra margin requirement".
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from solvency.adapters.grids import load_grid
from solvency.core.options import black76_price
from solvency.core.portfolio import KIND_CALL, KIND_FUTURE, KIND_PUT, portfolio_margin
from solvency.core.portfolio.kernel import requirement_parts, scenario_losses

GRID = load_grid("deribit_pm")
NAN = math.nan
INDEX = 65_666.19
PERP, JUN24 = 0.314538364, -0.001187534
MARKS = (65_910.57, 67_371.75)

# Deribit's printed risk vectors (P&L in BTC, the response's initial_risk_vectors): one
# value per price bucket (-16 %, -12 %, ... +16 %, each for vol up, same, down), then
# the extended table (-66 %, -33 %, +50 %, +100 %, +200 %, +300 %, +400 %, +500 %).
PERP_BUCKETS = [-0.05991206933333334, -0.04289159509090909, -0.027351162086956524,
                -0.013105765166666668, 0, 0.012097629384615385, 0.023299138074074074,
                0.033700538999999995, 0.043384601931034494]
PERP_EXTENDED = [-0.05991206933333334] * 2 + [0.04338460193103449] * 6
JUN24_BUCKETS = [0.0002261969523809524, 0.00016193645454545456, 0.00010326382608695652,
                 0.00004948058333333334, 0, -0.00004567438461538462,
                 -0.00008796548148148148, -0.0001272357857142857, -0.00016379779310344832]
JUN24_EXTENDED = [0.0002261969523809524] * 2 + [-0.0001637977931034483] * 6


def _example() -> dict[str, np.ndarray]:
    return {"account": np.array([0, 0]), "underlying": np.array([0, 0]),
            "kind": np.array([KIND_FUTURE, KIND_FUTURE], dtype=np.int8),
            "strike": np.array([NAN, NAN]), "expiry_yr": np.array([NAN, NAN]),
            "size": np.array([PERP, JUN24]), "vol": np.array([NAN, NAN]),
            "forward": np.array(MARKS), "underlying_price": np.array([INDEX])}


def test_risk_vectors_are_deribits():
    # each instrument on its own (one account each): the loss cube is minus the P&L
    one = _example()
    one["account"] = np.array([0, 1])
    loss, _ = scenario_losses(**one, rate=0.0, grid=GRID, n_accounts=2)
    for a, buckets, extended in ((0, PERP_BUCKETS, PERP_EXTENDED),
                                 (1, JUN24_BUCKETS, JUN24_EXTENDED)):
        printed = [x for b in buckets for x in (b, b, b)] + extended
        np.testing.assert_allclose(-loss[a, 0], printed, rtol=1e-13, atol=1e-18)


def test_margins_are_deribits():
    book = _example()
    loss, acc = scenario_losses(**{k: v for k, v in book.items()}, rate=0.0, grid=GRID,
                                n_accounts=1)
    parts = requirement_parts(loss, acc, GRID, book["underlying_price"])
    assert int(parts.worst[0, 0]) == 0  # -16 %, first vol row (Deribit: bucket 1, left)
    assert parts.scan[0, 0] == pytest.approx(0.05968587238095239, rel=1e-13)
    assert parts.roll[0, 0] == pytest.approx(0.00315725898, rel=1e-12)  # 1 % of gross
    # Deribit adds the worst case rounded to 1e-9 BTC (its size precision) to the roll:
    # 0.059685872 + 0.00315725898 = 0.06284313098; unrounded, ours is 3.8e-10 BTC more
    risk_matrix_margin = parts.scan[0, 0] + parts.roll[0, 0] + parts.delta[0, 0]
    assert abs(risk_matrix_margin - 0.06284313098) < 1e-9
    deribit_rounding = round(parts.scan[0, 0], 9) + parts.roll[0, 0] + parts.delta[0, 0]
    assert round(deribit_rounding, 11) == 0.06284313098
    assert round(deribit_rounding * GRID.mm_factor, 12) == 0.050274504784  # maintenance
    assert abs(parts.requirement[0, 0] - 0.050274504784) < 1e-9
    assert round(deribit_rounding + 0.06 + 0.000018212, 9) == 0.122861343
    out = portfolio_margin(**book, rate=0.0, grid=GRID, n_accounts=1)
    # the account's margin in USD is the BTC requirement at the index
    assert out.mm[0] / INDEX == pytest.approx(parts.requirement[0, 0], rel=1e-14)
    assert out.im[0] / INDEX == pytest.approx(risk_matrix_margin, rel=1e-14)
    # the older rule and linear USD P&L differ from the example (what the issue found)
    linear = portfolio_margin(**book, rate=0.0, grid=GRID.__class__(**{
        **{f: getattr(GRID, f) for f in GRID.__dataclass_fields__},
        "pnl_currency": "quote", "roll_rule": "offset"}), n_accounts=1)
    assert abs(linear.mm[0] / INDEX - 0.050274504784) > 1e-5


def test_short_option_contingency_nets_per_strike():
    # Deribit's page: call +10 and put -20 at one strike: 10 x 0.01 BTC, not 20 x
    f, k, t, iv = 60_000.0, 60_000.0, 30 / 365, 0.6
    rows = {"account": np.array([0, 0, 0]), "underlying": np.array([0, 0, 0]),
            "kind": np.array([KIND_CALL, KIND_PUT, KIND_PUT], dtype=np.int8),
            "strike": np.array([k, k, 50_000.0]), "expiry_yr": np.array([t, t, t]),
            "size": np.array([10.0, -20.0, 0.0]), "vol": np.array([iv, iv, iv]),
            "underlying_price": np.array([f])}
    loss, acc = scenario_losses(**rows, rate=0.0, grid=GRID, n_accounts=1)
    parts = requirement_parts(loss, acc, GRID, rows["underlying_price"])
    assert parts.short_option_minimum[0, 0] == pytest.approx(0.1, rel=1e-12)
    # another expiry is another strike series; a long elsewhere nets nothing
    rows["expiry_yr"] = np.array([t, 2 * t, t])
    rows["size"] = np.array([10.0, -20.0, 5.0])
    loss, acc = scenario_losses(**rows, rate=0.0, grid=GRID, n_accounts=1)
    parts = requirement_parts(loss, acc, GRID, rows["underlying_price"])
    assert parts.short_option_minimum[0, 0] == pytest.approx(0.2, rel=1e-12)


def test_unsorted_accounts_net_per_strike():
    # rows of two accounts interleaved: each account's strikes netted on their own
    k, t = 60_000.0, 30 / 365
    rows = {"account": np.array([1, 0, 1, 0]), "underlying": np.zeros(4, np.int64),
            "kind": np.array([KIND_CALL, KIND_CALL, KIND_PUT, KIND_PUT], dtype=np.int8),
            "strike": np.full(4, k), "expiry_yr": np.full(4, t),
            "size": np.array([3.0, -1.0, -5.0, -2.0]), "vol": np.full(4, 0.5),
            "underlying_price": np.array([60_000.0])}
    loss, acc = scenario_losses(**rows, rate=0.0, grid=GRID, n_accounts=2)
    parts = requirement_parts(loss, acc, GRID, rows["underlying_price"])
    np.testing.assert_allclose(parts.short_option_minimum[:, 0], [0.03, 0.02], rtol=1e-12)


def test_option_pnl_in_coin():
    # a BTC-settled option's P&L in BTC: size (V0 / F - V_s / F_s), Black-76 in USD
    f, k, t, iv, q = 60_000.0, 65_000.0, 20 / 365, 0.55, -2.0
    rows = {"account": np.array([0]), "underlying": np.array([0]),
            "kind": np.array([KIND_CALL], dtype=np.int8), "strike": np.array([k]),
            "expiry_yr": np.array([t]), "size": np.array([q]), "vol": np.array([iv]),
            "underlying_price": np.array([f])}
    loss, _ = scenario_losses(**rows, rate=0.0, grid=GRID, n_accounts=1)
    v0 = black76_price(forward=f, strike=k, time_yr=t, vol=iv, rate=0.0,
                       is_call=True).price[0]
    for s in (0, 13, 26, 30):  # -16 % vol up, 0 % same, +16 % vol down, +50 % vol up
        m = GRID.price_move[s] * (1.0 if GRID.move_is_fraction[s] else GRID.price_range)
        shift = GRID.vol_move[s] * (GRID.vol_range_up if GRID.vol_move[s] > 0
                                    else GRID.vol_range_down)
        scale = (30 / 20) ** GRID.vol_power_short
        sig = iv * (1 + shift * scale)
        sig = max(sig, GRID.vol_up_floor) if GRID.vol_move[s] > 0 else sig
        f1 = f * (1 + m)
        v1 = black76_price(forward=f1, strike=k, time_yr=t, vol=sig, rate=0.0,
                           is_call=True).price[0]
        assert loss[0, 0, s] == pytest.approx(q * (v0 / f - v1 / f1), rel=1e-11)
