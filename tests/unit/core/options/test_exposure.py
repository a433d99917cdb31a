"""Greeks exposure sums: hand-computed tables, the slow twin on random books, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvency.core.options import black76_greeks
from solvency.core.options.exposure import (
    GREEKS,
    cash_exposure,
    greeks_exposure,
    greeks_exposure_slow,
)

# (id, account, underlying, size, greeks rows, A, U, expected by_account)
CASES = [
    ("one-short-call", [0], [0], [-10.0], [[0.5, 1e-4, 80.0, -40.0]], 1, 1,
     [[[-5.0, -1e-3, -800.0, 400.0]]]),
    ("netting-in-one-cell", [0, 0], [0, 0], [2.0, -1.0], [[0.5, 1.0, 2.0, 3.0]] * 2, 1, 1,
     [[[0.5, 1.0, 2.0, 3.0]]]),
    ("two-accounts-two-underlyings", [0, 1, 1], [1, 0, 1], [1.0, 3.0, -2.0],
     [[1.0, 0.0, 0.0, 0.0], [0.25, 0.5, 1.0, -1.0], [0.5, 0.0, 1.0, 0.0]], 3, 2,
     [[[0, 0, 0, 0], [1.0, 0, 0, 0]], [[0.75, 1.5, 3.0, -3.0], [-1.0, 0, -2.0, 0]],
      [[0, 0, 0, 0], [0, 0, 0, 0]]]),
    ("empty-book", [], [], [], np.empty((0, 4)), 2, 1, [[[0, 0, 0, 0]], [[0, 0, 0, 0]]]),
]


@pytest.mark.parametrize(("acc", "und", "size", "g", "n_a", "n_u", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_sums_match_hand_computed_tables(acc: list[int], und: list[int], size: list[float],
                                         g: object, n_a: int, n_u: int,
                                         expected: list[object]) -> None:
    kw = {"account": np.array(acc, dtype=np.int64), "underlying": np.array(und, dtype=np.int64),
          "size": size, "greeks": np.asarray(g, dtype=np.float64).reshape(len(acc), 4),
          "n_accounts": n_a, "n_underlyings": n_u}
    fast = greeks_exposure(**kw)  # type: ignore[arg-type]
    np.testing.assert_allclose(fast.by_account, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.by_underlying, np.sum(expected, axis=0), atol=1e-12)
    assert fast.by_account.shape == (n_a, n_u, len(GREEKS))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_fast_equals_slow_twin(n: int, n_a: int, n_u: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    kw = {"account": rng.integers(0, n_a, n), "underlying": rng.integers(0, n_u, n),
          "size": rng.normal(0, 20, n), "greeks": rng.normal(0, 100, (n, 5)),
          "n_accounts": n_a, "n_underlyings": n_u}
    fast = greeks_exposure(**kw)
    slow = greeks_exposure_slow(**kw)
    np.testing.assert_allclose(fast.by_account, slow.by_account, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(fast.by_underlying, slow.by_underlying, rtol=1e-12, atol=1e-9)


def test_black76_book_sums_to_size_weighted_greeks() -> None:
    # Hull's futures-option inputs, 10 short calls and 4 long puts on one underlying
    g = black76_greeks(forward=20.0, strike=20.0, time_yr=4 / 12, vol=0.25, rate=0.09,
                       is_call=np.array([True, False]))
    cols = np.stack([g.delta, g.gamma, g.vega, g.theta], axis=1)
    out = greeks_exposure(account=[0, 0], underlying=[0, 0], size=[-10.0, 4.0], greeks=cols,
                          n_accounts=1, n_underlyings=1)
    np.testing.assert_allclose(out.by_underlying[0], -10 * cols[0] + 4 * cols[1], rtol=1e-14)


def test_cash_exposure_scales_delta_and_gamma_by_price() -> None:
    # account 0: 2 BTC delta at 100,000, -10 ETH delta at 4,000; gamma 1e-5 BTC per USD
    by_account = np.array([[[2.0, 1e-5, 50.0, -10.0], [-10.0, 0.0, 5.0, -1.0]]])
    out = cash_exposure(by_account, [100_000.0, 4_000.0])
    # cash delta 200,000 - 40,000; cash gamma 1e-5 x 1e10 / 100 = 1,000 per 1 % move
    np.testing.assert_allclose(out.by_account[0], [160_000.0, 1_000.0, 55.0, -11.0])
    np.testing.assert_allclose(out.venue, out.by_account[0])


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"account": [0, 2]}, "account: indices"),
        ({"underlying": [-1, 0]}, "underlying: indices"),
        ({"size": [1.0, np.nan]}, "size: position 1"),
        ({"greeks": [[0, 0, 0, 0], [0, np.inf, 0, 0]]}, "greeks: position 1, column 1"),
        ({"greeks": [[0, 0, 0, 0]]}, "greeks must be"),
        ({"size": [1.0]}, "one length"),
        ({"account": [0.0, 1.0]}, "account: indices must be integers"),
    ],
    ids=["account-out-of-range", "negative-underlying", "nan-size", "inf-greek",
         "short-greeks", "short-size", "float-indices"],
)
def test_bad_input_names_the_field(kw: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"account": [0, 1], "underlying": [0, 0], "size": [1.0, 2.0],
                               "greeks": np.zeros((2, 4)), "n_accounts": 2, "n_underlyings": 1}
    base.update(kw)
    with pytest.raises(ValueError, match=message):
        greeks_exposure(**base)  # type: ignore[arg-type]


def test_cash_exposure_refuses_bad_prices() -> None:
    with pytest.raises(ValueError, match="underlying_price"):
        cash_exposure(np.zeros((1, 2, 4)), [1.0, 0.0])
    with pytest.raises(ValueError, match="do not match"):
        cash_exposure(np.zeros((1, 2, 4)), [1.0])
