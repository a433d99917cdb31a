"""Funding payments computed for every holder at once (``funding.funding_quanta``) are the
exact fractions rounded one position at a time (``funding_quanta_reference``, the code the
engine ran before: payers rounded up, receivers down), in int64 and past it."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from solvency.engine.funding import funding_quanta, funding_quanta_reference


def _same(lots: np.ndarray, unit: Fraction) -> None:
    got = funding_quanta(lots, unit.numerator, unit.denominator)
    want = funding_quanta_reference(lots, unit.numerator, unit.denominator)
    for g, w in zip(got, want, strict=True):
        assert g.tolist() == w.tolist()


@pytest.mark.parametrize("seed", range(4))
def test_vectorized_payments_equal_the_exact_fractions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lots = rng.integers(-10**7, 10**7, size=2_000).astype(np.int64)
    lots[:5] = (0, 1, -1, 10**7, -10**7)
    for _ in range(20):
        # a payment per lot like lot x cv x mark x rate x 10^decimals: signed, with a
        # denominator of powers of 2 and 5 (decimals) or any (an inverse market's / mark)
        num = int(rng.integers(-10**9, 10**9))
        den = int(rng.choice([1, 3, 7, 10**4, 2**5 * 5**7, 999_983 * 10**3]))
        unit = Fraction(num, den)
        if unit:
            _same(lots, unit)


def test_payments_past_int64_take_python_integers() -> None:
    lots = np.array([3, -2, 10**12, -(10**12), 0], dtype=np.int64)
    unit = Fraction(10**9 + 7, 3)  # 1e12 lots x 1e9: past 2**62 -> the exact twin
    paid, received = funding_quanta(lots, unit.numerator, unit.denominator)
    assert paid.tolist()[2] == -(-(10**12) * (10**9 + 7) // 3)  # rounded up
    assert received.tolist()[3] == 10**12 * (10**9 + 7) // 3  # rounded down
    _same(lots, unit)
    # a payer's share rounds up, a receiver's down: 1 lot at 1/3 pays 1 and gets 0
    paid, received = funding_quanta(np.array([1, -1], dtype=np.int64), 1, 3)
    assert paid.tolist() == [1, 0] and received.tolist() == [0, 0]
