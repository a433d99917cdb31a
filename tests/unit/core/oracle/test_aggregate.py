"""Aggregation kernel: weighted median, masks and reason codes, held to its plain twin."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvency.core.oracle.kernels import (
    CODE_DEVIATION,
    CODE_FUTURE,
    CODE_INVALID,
    CODE_JUMP,
    CODE_MISSING,
    CODE_OK,
    CODE_STALE,
    CODE_ZERO_WEIGHT,
    aggregate,
    aggregate_reference,
    weighted_median,
)


def _run(prices: list[float], ts: list[int], weights: list[float] | None = None,
         jump: list[bool] | None = None, now: int = 10_000, band: float = 0.05
         ) -> tuple[float, int, float, list[int]]:
    n = len(prices)
    p = np.array([prices], dtype=np.float64)
    t = np.array([ts], dtype=np.int64)
    w = np.array([weights or [1.0] * n])
    j = np.array([jump or [False] * n], dtype=np.bool_)
    idx, cnt, spr = np.empty(1), np.empty(1, dtype=np.int64), np.empty(1)
    code = np.empty((1, n), dtype=np.int64)
    aggregate(p, t, w, j, now, 30_000, 5_000, band, idx, cnt, spr, code)
    return float(idx[0]), int(cnt[0]), float(spr[0]), code[0].tolist()


@pytest.mark.parametrize(("prices", "weights", "expected"), [
    pytest.param([1.0, 2.0, 3.0], [1, 1, 1], 2.0, id="odd count: middle"),
    pytest.param([1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1], 2.5, id="even count: mean of middles"),
    pytest.param([1.0, 2.0, 3.0], [1, 1, 5], 3.0, id="heavy source wins"),
    pytest.param([3.0, 1.0, 2.0], [2, 1, 1], 2.5, id="cum weight exactly half: mean"),
    pytest.param([5.0], [1], 5.0, id="single"),
])
def test_weighted_median(prices: list[float], weights: list[float], expected: float) -> None:
    got = weighted_median(np.array(prices), np.array(weights, dtype=np.float64))
    assert got == expected


def test_weighted_median_empty_is_nan() -> None:
    assert math.isnan(weighted_median(np.empty(0), np.empty(0)))


@pytest.mark.parametrize(("prices", "ts", "weights", "jump", "codes", "index", "n"), [
    pytest.param([100.0, 101.0, 102.0], [9_000] * 3, None, None, [CODE_OK] * 3, 101.0, 3,
                 id="three fresh"),
    pytest.param([100.0, 101.0, 150.0], [9_000] * 3, None, None,
                 [CODE_OK, CODE_OK, CODE_DEVIATION], 100.5, 2, id="outlier +50% dropped"),
    pytest.param([100.0, 101.0, 50.0], [9_000] * 3, None, None,
                 [CODE_OK, CODE_OK, CODE_DEVIATION], 100.5, 2, id="outlier -50% dropped"),
    pytest.param([100.0, math.nan, 102.0], [9_000, -1, 9_000], None, None,
                 [CODE_OK, CODE_MISSING, CODE_OK], 101.0, 2, id="never reported"),
    pytest.param([100.0, math.inf, -3.0], [9_000] * 3, None, None,
                 [CODE_OK, CODE_INVALID, CODE_INVALID], 100.0, 1, id="invalid prices"),
    pytest.param([100.0, 101.0, 102.0], [9_000, -30_000, 20_000], None, None,
                 [CODE_OK, CODE_STALE, CODE_FUTURE], 100.0, 1, id="stale and future"),
    pytest.param([100.0, 101.0, 102.0], [9_000] * 3, [1.0, 0.0, 1.0], [False, False, True],
                 [CODE_OK, CODE_ZERO_WEIGHT, CODE_JUMP], 100.0, 1, id="zero weight and jump"),
    pytest.param([100.0, 150.0], [9_000] * 2, None, None,
                 [CODE_DEVIATION, CODE_DEVIATION], math.nan, 0,
                 id="two disagreeing: neither trusted"),
])
def test_codes(prices: list[float], ts: list[int], weights: list[float] | None,
               jump: list[bool] | None, codes: list[int], index: float, n: int) -> None:
    got_index, got_n, _, got_codes = _run(prices, ts, weights, jump)
    assert got_codes == codes
    assert got_n == n
    assert (math.isnan(got_index) and math.isnan(index)) or got_index == index


def test_spread_is_over_candidates() -> None:
    _, _, spread, _ = _run([100.0, 101.0, 150.0], [9_000] * 3)
    assert spread == pytest.approx(0.5 / 1.01)


_price = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.floats(min_value=90.0, max_value=110.0), st.just(0.0))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.data())
def test_kernel_matches_reference(n_m: int, n_s: int, data: st.DataObject) -> None:
    prices = np.array(data.draw(st.lists(st.lists(_price, min_size=n_s, max_size=n_s),
                                         min_size=n_m, max_size=n_m)), dtype=np.float64)
    ts = np.array(data.draw(st.lists(st.lists(st.integers(-1, 60_000), min_size=n_s,
                                              max_size=n_s), min_size=n_m, max_size=n_m)),
                  dtype=np.int64)
    weights = np.array(data.draw(st.lists(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0]),
                                                   min_size=n_s, max_size=n_s),
                                          min_size=n_m, max_size=n_m)), dtype=np.float64)
    jump = np.array(data.draw(st.lists(st.lists(st.booleans(), min_size=n_s, max_size=n_s),
                                       min_size=n_m, max_size=n_m)), dtype=np.bool_)
    idx, cnt, spr = np.empty(n_m), np.empty(n_m, dtype=np.int64), np.empty(n_m)
    code = np.empty((n_m, n_s), dtype=np.int64)
    aggregate(prices, ts, weights, jump, 40_000, 30_000, 5_000, 0.05, idx, cnt, spr, code)
    r_idx, r_cnt, r_spr, r_code = aggregate_reference(prices, ts, weights, jump, 40_000,
                                                      30_000, 5_000, 0.05)
    assert code.tolist() == r_code
    assert cnt.tolist() == r_cnt
    np.testing.assert_array_equal(idx, np.array(r_idx))
    np.testing.assert_allclose(spr, np.array(r_spr), rtol=1e-12)
    ok = cnt > 0
    assert np.all(np.isfinite(idx[ok]) & (idx[ok] > 0.0))
