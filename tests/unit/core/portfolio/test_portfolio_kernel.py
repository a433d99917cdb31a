"""Portfolio margin kernel: plain twin, add-ons, venue examples, combination, bad input."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from portfolio_book import book

from solvency.adapters.grids import load_grid
from solvency.core.options import black76_price
from solvency.core.portfolio import (
    KIND_CALL,
    KIND_FUTURE,
    KIND_PUT,
    parse_grid,
    portfolio_margin,
    scenario_losses,
)
from solvency.core.portfolio.reference import portfolio_margin_reference

GRIDS = {name: load_grid(name) for name in ("cme_span_16", "deribit_pm", "paradex_pm")}
# Deribit's rules in USD, linear (the older page's rules) and mixed, so that the twin
# holds every combination of pnl_currency, roll_rule, short_option_net, extended_futures
GRIDS["deribit_pm_quote"] = replace(
    GRIDS["deribit_pm"], pnl_currency="quote", roll_rule="offset",
    short_option_net="position", extended_futures="full")
GRIDS["deribit_pm_mixed"] = replace(
    GRIDS["deribit_pm"], pnl_currency="quote", extended_futures="full")
NAN = math.nan


def _random_rows(seed, n_acc, per, n_und):
    rng = np.random.default_rng(seed)
    rows = []
    for a in range(n_acc):
        for _ in range(rng.integers(0, per + 1)):
            u = int(rng.integers(0, n_und))
            kind = int(rng.integers(0, 3))
            k = 60_000.0 * math.exp(rng.normal(0, 0.3))
            t = float(rng.choice([0.5 / 365, 2 / 365, 20 / 365, 45 / 365, 0.8]))
            rows.append((a, u, kind, k, t, float(rng.normal(0, 3)), rng.uniform(0.2, 1.5)))
    return rows


@pytest.mark.parametrize("grid_name", list(GRIDS))
@pytest.mark.parametrize("combine", ["sum", "correlation"])
def test_kernel_matches_plain_twin(grid_name, combine):
    grid = GRIDS[grid_name]
    rho = [[1.0, 0.6, 0.2], [0.6, 1.0, -0.3], [0.2, -0.3, 1.0]]
    prices = (60_000.0, 3_000.0, 150.0)
    rows = _random_rows(7, 40, 8, 3)
    arrays, per = book(rows, 3, prices)
    n_acc = len(per)
    out = portfolio_margin(**arrays, rate=0.03, grid=grid, n_accounts=n_acc,
                           combine=combine, correlation=rho if combine != "sum" else None)
    ref = portfolio_margin_reference(per, n_underlyings=3, rate=0.03, grid=grid,
                                     combine=combine, correlation=rho,
                                     underlying_price=prices)
    np.testing.assert_allclose(out.mm, [r[0] for r in ref], rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(out.im, [r[1] for r in ref], rtol=1e-9, atol=1e-7)
    np.testing.assert_array_equal(out.worst_scenario, [r[2] for r in ref])


def test_accounts_without_positions_are_zero():
    arrays, _ = book([(2, 0, KIND_FUTURE, NAN, NAN, 1.0, NAN)])
    out = portfolio_margin(**arrays, rate=0.0, grid=GRIDS["deribit_pm"], n_accounts=4)
    assert out.mm[[0, 1, 3]].tolist() == [0.0, 0.0, 0.0]
    assert out.worst_scenario.tolist() == [-1, -1, 0, -1]  # -16 %, vol up (first row)
    # Deribit: the requirement is the initial margin, maintenance 0.8 of it (mm_factor);
    # the P&L of 1 BTC long at -16 % is 0.16 / 0.84 BTC, the roll 1 % of gross futures
    im_btc = 0.16 / 0.84 + 0.01
    assert out.im[2] == pytest.approx(im_btc * 60_000.0, rel=1e-12)
    assert out.mm[2] == pytest.approx(0.8 * im_btc * 60_000.0, rel=1e-12)


def test_paradex_min_delta_example():
    # Paradex docs example: long 1 BTC perp, short 5 calls of delta 0.3, spot 70,000:
    # net -0.5, gross 2.5, hedged 1.0 -> (2 % x 0.5 + 1 % x 1.0) x 70,000 = 1,400.
    f, t, vol = 70_000.0, 30 / 365, 0.5
    s = vol * math.sqrt(t)
    d1 = -0.5244005127080407  # N^-1(0.3)
    k = f * math.exp(-(d1 - 0.5 * s) * s)
    grid = parse_grid({"name": "paradex-delta-only", "price_range": 0.16,
                       "scenarios": [{"move": 0.0}],
                       "addons": {"delta_net": 0.02, "delta_hedged": 0.01,
                                  "delta_rule": "floor", "mm_factor": 0.5,
                                  "im_factor": 2.0}})
    arrays, _ = book([(0, 0, KIND_FUTURE, NAN, NAN, 1.0, NAN),
                      (0, 0, KIND_CALL, k, t, -5.0, vol)], prices=(f,))
    out = portfolio_margin(**arrays, rate=0.0, grid=grid, n_accounts=1)
    assert out.im[0] == pytest.approx(1_400.0, rel=1e-12)
    assert out.mm[0] == pytest.approx(700.0, rel=1e-12)  # MMR = 50 % x IMR


def test_paradex_vol_shock_formula():
    # Shocked IV = IV x (1 + shock x (30 / max(1, DTE)) ** power), power 0.30 if DTE < 30
    # else 0.13; checked on one long call against black76_price.
    g = GRIDS["paradex_pm"]
    f, k, iv = 60_000.0, 65_000.0, 0.6
    for dte, power in ((15.0, 0.30), (0.5, 0.30), (60.0, 0.13)):
        t = dte / 365
        arrays, _ = book([(0, 0, KIND_CALL, k, t, 1.0, iv)], prices=(f,))
        loss, _ = scenario_losses(**arrays, rate=0.0, grid=g, n_accounts=1)
        scale = (30 / max(1.0, dte)) ** power
        for s in (7, 8, 20):  # 0 % vol up, 0 % vol down, +100 % vol up
            m, v = g.price_move[s], g.vol_move[s]
            sig = iv * (1 + (0.40 if v > 0 else 0.22) * v * scale)
            v1 = black76_price(forward=f * (1 + m), strike=k, time_yr=t, vol=sig, rate=0.0,
                               is_call=True).price[0]
            v0 = black76_price(forward=f, strike=k, time_yr=t, vol=iv, rate=0.0,
                               is_call=True).price[0]
            assert loss[0, 0, s] == pytest.approx(v0 - v1, rel=1e-12, abs=1e-9)


def test_deribit_older_page_contingencies():
    # Deribit's older "Portfolio Margin" page (deribit.com/pages/docs/portfoliomargin):
    # long 100 BTC future A, short 100 BTC future B -> 1 % x 100 BTC added; 0.01 BTC per
    # short option (in USD: 1 % of F). The shipped grid follows Deribit's API today
    # (gross roll, per-strike netting, coin P&L: test_deribit_pme.py); these rules stay
    # reachable as grid keys (roll_rule = "offset", short_option_net = "position").
    g = GRIDS["deribit_pm_quote"]
    f = 60_000.0
    arrays, _ = book([(0, 0, KIND_FUTURE, NAN, NAN, 100.0, NAN),
                      (0, 0, KIND_FUTURE, NAN, NAN, -100.0, NAN)], prices=(f,))
    out = portfolio_margin(**arrays, rate=0.0, grid=g, n_accounts=1)
    assert out.im[0] == pytest.approx(0.01 * 100 * f)
    assert out.mm[0] == pytest.approx(0.8 * 0.01 * 100 * f)
    # A short far-OTM put whose scan loss is tiny still pays the contingency on top.
    arrays, _ = book([(0, 0, KIND_PUT, 20_000.0, 2 / 365, -3.0, 0.5)], prices=(f,))
    loss, _ = scenario_losses(**arrays, rate=0.0, grid=g, n_accounts=1)
    out = portfolio_margin(**arrays, rate=0.0, grid=g, n_accounts=1)
    scan = max((loss[0, 0] * g.weight).max(), 0.0)
    assert out.im[0] == pytest.approx(scan + 0.01 * 3 * f, rel=1e-12)
    assert out.mm[0] == pytest.approx(0.8 * (scan + 0.01 * 3 * f), rel=1e-12)


def test_span_short_option_minimum_is_a_floor():
    g = parse_grid({"name": "som", "price_range": 0.05, "vol_range_up": 0.01,
                    "vol_range_down": 0.01,
                    "scenarios": [{"price": 1.0, "vol": 1.0}, {"price": -1.0, "vol": -1.0}],
                    "addons": {"short_option_minimum": 0.02}})
    arrays, _ = book([(0, 0, KIND_CALL, 120_000.0, 5 / 365, -2.0, 0.4)])
    out = portfolio_margin(**arrays, rate=0.0, grid=g, n_accounts=1)
    assert out.scan_loss[0, 0] < 1.0
    assert out.mm[0] == pytest.approx(0.02 * 2 * 60_000.0)


def test_expiry_inside_lookahead_uses_intrinsic():
    # SPAN looks one day ahead; an option expiring in 12 hours is worth its intrinsic value.
    g = GRIDS["cme_span_16"]
    t = 0.5 / 365
    arrays, _ = book([(0, 0, KIND_PUT, 60_000.0, t, 1.0, 0.5)])
    loss, _ = scenario_losses(**arrays, rate=0.0, grid=g, n_accounts=1, price_range=0.1)
    v0 = black76_price(forward=60_000.0, strike=60_000.0, time_yr=t, vol=0.5, rate=0.0,
                       is_call=False).price[0]
    intrinsic = np.maximum(60_000.0 - 60_000.0 * (1 + 0.1 * g.price_move), 0.0)
    np.testing.assert_allclose(loss[0, 0], v0 - intrinsic, rtol=1e-12)


def test_per_underlying_ranges_and_forward_override():
    g = GRIDS["cme_span_16"]
    arrays, _ = book([(0, 0, KIND_FUTURE, NAN, NAN, 1.0, NAN),
                      (0, 1, KIND_FUTURE, NAN, NAN, 1.0, NAN)], 2, (100.0, 10.0))
    out = portfolio_margin(**arrays, rate=0.0, grid=g, n_accounts=1,
                           price_range=[0.1, 0.3], forward=[110.0, 10.0])
    np.testing.assert_allclose(out.requirement[0], [11.0, 3.0])
    assert out.mm[0] == pytest.approx(14.0)
    rho = [[1.0, 0.0], [0.0, 1.0]]
    out = portfolio_margin(**arrays, rate=0.0, grid=g, n_accounts=1, price_range=[0.1, 0.3],
                           forward=[110.0, 10.0], combine="correlation", correlation=rho)
    assert out.mm[0] == pytest.approx(math.hypot(11.0, 3.0))


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"account": np.array([5])}, "account"),
        ({"underlying": np.array([1])}, "underlying"),
        ({"kind": np.array([3], np.int8)}, "kind"),
        ({"size": np.array([np.nan])}, "size"),
        ({"strike": np.array([0.0])}, "strike"),
        ({"expiry_yr": np.array([-1.0])}, "expiry_yr"),
        ({"vol": np.array([np.inf])}, "vol"),
        ({"underlying_price": np.array([-1.0])}, "underlying_price"),
        ({"account": np.array([0.5])}, "account"),
        ({"size": np.array([1.0, 2.0])}, "size"),
    ],
)
def test_bad_input_names_the_field(patch, match):
    arrays, _ = book([(0, 0, KIND_CALL, 60_000.0, 0.1, 1.0, 0.5)])
    with pytest.raises(ValueError, match=match):
        portfolio_margin(**(arrays | patch), rate=0.0, grid=GRIDS["cme_span_16"],
                         n_accounts=1)


def test_bad_correlation_and_combine():
    arrays, _ = book([(0, 0, KIND_FUTURE, NAN, NAN, 1.0, NAN)])
    kw = dict(arrays, rate=0.0, grid=GRIDS["cme_span_16"], n_accounts=1)
    with pytest.raises(ValueError, match="correlation"):
        portfolio_margin(**kw, combine="correlation")
    with pytest.raises(ValueError, match="PSD"):
        portfolio_margin(**kw, combine="correlation", correlation=[[2.0]])
    with pytest.raises(ValueError, match="combine"):
        portfolio_margin(**kw, combine="max")  # type: ignore[arg-type]


def test_empty_book():
    arrays, _ = book([])
    out = portfolio_margin(**arrays, rate=0.0, grid=GRIDS["paradex_pm"], n_accounts=3)
    assert out.mm.tolist() == [0.0] * 3 and out.worst_scenario.tolist() == [-1] * 3
