"""Hypothesis: portfolio margin properties that hold by construction of the rules.

* kernel == plain twin on random books (every grid);
* margin >= 0;
* positive homogeneity: scaling every size by k > 0 scales mm and im by k;
* a perfect offset (the same rows with opposite sizes) brings the scan loss to 0, so
  adding it never raises the margin of a grid without size-counting add-ons;
* subadditivity under combine="sum" (with roll = 0: the offsetting-futures charge is
  superadditive by design), and the correlation rule never exceeds the sum.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from portfolio_book import book

from solvency.adapters.grids import load_grid
from solvency.core.portfolio import portfolio_margin
from solvency.core.portfolio.reference import portfolio_margin_reference

SETTINGS = settings(max_examples=60, deadline=None)
GRIDS = [load_grid(n) for n in ("cme_span_16", "deribit_pm", "paradex_pm")]
NO_ROLL = [replace(g, roll=0.0) for g in GRIDS]
SCAN_ONLY = [
    replace(g, roll=0.0, delta_net=0.0, delta_hedged=0.0, short_option_minimum=0.0)
    for g in GRIDS
]
PRICES = (60_000.0, 3_000.0)
RHO = [[1.0, 0.7], [0.7, 1.0]]


@st.composite
def rows(draw, account=0, max_rows=6):
    out = []
    for _ in range(draw(st.integers(0, max_rows))):
        u = draw(st.integers(0, 1))
        kind = draw(st.integers(0, 2))
        k = PRICES[u] * math.exp(draw(st.floats(-1.0, 1.0)))
        t = draw(st.floats(0.5 / 365, 2.0))
        size = draw(st.floats(-10.0, 10.0))
        out.append((account, u, kind, k, t, size, draw(st.floats(0.05, 2.0))))
    return out


def _mm(rs, grid, combine="sum"):
    arrays, _ = book(rs, 2, PRICES) if rs else book([], 2, PRICES)
    out = portfolio_margin(**arrays, rate=0.01, grid=grid, n_accounts=1, combine=combine,
                           correlation=RHO if combine == "correlation" else None)
    return out.mm[0], out.im[0]


@SETTINGS
@given(st.lists(rows(), min_size=1, max_size=4), st.integers(0, 2))
def test_kernel_equals_twin(books, gi):
    rs = [(a, *r[1:]) for a, b in enumerate(books) for r in b]
    if not rs:
        return
    arrays, per = book(rs, 2, PRICES)
    per += [[] for _ in range(len(books) - len(per))]
    out = portfolio_margin(**arrays, rate=0.01, grid=GRIDS[gi], n_accounts=len(books))
    ref = portfolio_margin_reference(per, n_underlyings=2, rate=0.01, grid=GRIDS[gi],
                                     underlying_price=PRICES)
    np.testing.assert_allclose(out.mm, [r[0] for r in ref], rtol=1e-9, atol=1e-6)
    np.testing.assert_array_equal(out.worst_scenario, [r[2] for r in ref])


@SETTINGS
@given(rows(), st.integers(0, 2), st.floats(0.01, 100.0))
def test_non_negative_and_homogeneous(rs, gi, k):
    mm, im = _mm(rs, GRIDS[gi])
    assert mm >= 0.0 and im >= mm
    scaled = [(*r[:5], r[5] * k, r[6]) for r in rs]
    mm_k, im_k = _mm(scaled, GRIDS[gi])
    assert math.isclose(mm_k, k * mm, rel_tol=1e-9, abs_tol=1e-6 * max(1.0, k))
    assert math.isclose(im_k, k * im, rel_tol=1e-9, abs_tol=1e-6 * max(1.0, k))


@SETTINGS
@given(rows(), st.integers(0, 2))
def test_perfect_offset_never_raises_margin(rs, gi):
    grid = SCAN_ONLY[gi]
    hedge = [(*r[:5], -r[5], r[6]) for r in rs]
    mm, _ = _mm(rs, grid)
    mm_hedged, _ = _mm(rs + hedge, grid)
    assert mm_hedged <= mm + 1e-9
    assert mm_hedged <= 1e-9 * 60_000.0 * (1.0 + sum(abs(r[5]) for r in rs))


@SETTINGS
@given(rows(), rows(), st.integers(0, 2))
def test_subadditive_under_sum(a, b, gi):
    grid = NO_ROLL[gi]
    mm_ab, _ = _mm(a + b, grid)
    mm_a, _ = _mm(a, grid)
    mm_b, _ = _mm(b, grid)
    assert mm_ab <= mm_a + mm_b + 1e-7 * (1.0 + mm_a + mm_b)


@SETTINGS
@given(rows(), st.integers(0, 2))
def test_correlation_rule_at_most_sum(rs, gi):
    mm_sum, _ = _mm(rs, GRIDS[gi])
    mm_corr, _ = _mm(rs, GRIDS[gi], combine="correlation")
    assert 0.0 <= mm_corr <= mm_sum * (1 + 1e-12) + 1e-9
