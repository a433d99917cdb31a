"""The integer venue rules of the kernel held to their plain twins on random inputs.

dYdX decides margin in ppm of quote quantums and Drift in its margin precision (1e-4) with an
integer square root (STYLE 16); ``kernels.slot_quanta`` does the same in numba. These
property tests hold it to the plain Python twins (``OIScaledModel.requirement_quanta``,
``SizePremiumModel.requirement_quanta``) and its integer helpers to Python's exact integers.
The venues' own vectors are in ``tests/venues/``.
"""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tests.venues._units import drift_position_quanta, dydx_position_quanta

from solvency.core.margin.kernels import _isqrt, _mul_div_floor, drift_margin_ratio, dydx_imf_ppm
from solvency.core.margin.models import OIScaledModel, SizePremiumModel

D = Decimal


@settings(max_examples=300, deadline=None)
@given(a=st.integers(0, 2**63 - 1), b=st.integers(0, 2**31 - 1), d=st.integers(1, 2**61 - 1))
def test_mul_div_floor_is_exact(a: int, b: int, d: int) -> None:
    assume(a * b // d < 2**63)  # the result is an int64
    assert _mul_div_floor(a, b, d) == a * b // d


@settings(max_examples=300, deadline=None)
@given(x=st.integers(0, 2**62))
def test_isqrt_is_exact(x: int) -> None:
    assert _isqrt(x) == math.isqrt(x)


@settings(max_examples=200, deadline=None)
@given(base=st.integers(0, 1_000_000), lo=st.integers(0, 10**13),
       width=st.integers(1, 10**14), oi=st.integers(0, 2 * 10**14))
def test_dydx_imf_ppm_matches_the_twin(base: int, lo: int, width: int, oi: int) -> None:
    model = OIScaledModel(imr=D(base) / 1_000_000, maintenance_fraction=D(1),
                          open_interest_lower_cap=D(lo) / 1_000_000,
                          open_interest_upper_cap=D(lo + width) / 1_000_000)
    assert dydx_imf_ppm(base, oi, lo, lo + width) == model.adjusted_imr_ppm(oi, 10**6)


@settings(max_examples=200, deadline=None)
@given(base=st.integers(0, 1_000_000), fraction=st.integers(0, 1_000_000),
       quantums=st.integers(-10**9, 10**9), price=st.integers(1, 10**6),
       lo=st.integers(0, 10**12), width=st.integers(1, 10**13), oi=st.integers(0, 10**7))
def test_dydx_slot_quanta_matches_the_twin(base: int, fraction: int, quantums: int, price: int,
                                           lo: int, width: int, oi: int) -> None:
    """A position of ``quantums`` base quantums of 1e-6 coin at ``price`` USDC: its notional
    is ``|quantums| x price`` quote quantums exactly, so the kernel's float product must
    land on dYdX's integer (and the OI likewise)."""
    model = OIScaledModel(imr=D(base) / 1_000_000, maintenance_fraction=D(fraction) / 1_000_000,
                          open_interest_lower_cap=D(lo) / 1_000_000,
                          open_interest_upper_cap=D(lo + width) / 1_000_000)
    v, im, mm = dydx_position_quanta(model, quantums=quantums, atomic_resolution=-6,
                                     price=price, exponent=0, open_interest=oi)
    assert v == quantums * price
    assert (im, mm) == model.requirement_quanta(abs(quantums) * price, oi * price, 10**6)


@settings(max_examples=200, deadline=None)
@given(ratio=st.integers(0, 10_000), imf=st.integers(0, 1_000_000),
       size9=st.integers(0, 4 * 10**17 - 1))
def test_drift_ratio_matches_the_twin(ratio: int, imf: int, size9: int) -> None:
    """Sizes in 1e-9 base units up to 4e8 base (the integer root's range)."""
    twin = SizePremiumModel(imr=D(1), mmr=D(0), imf_factor=D(imf) / 1_000_000)
    size = D(size9).scaleb(-9)
    assert drift_margin_ratio(ratio, size9, imf) == twin.ratio_bp(D(ratio) / 10_000, size)


def test_drift_ratio_past_int64_stays_finite() -> None:
    """5e9 base: ``size x 10`` in 1e-9 units is past int64 (Drift: u128); the float root is
    used and the ratio grows with size instead of wrapping around."""
    small = drift_margin_ratio(500, 10**17, 1000)
    huge = drift_margin_ratio(500, 5 * 10**18, 1000)
    assert 0 < small < huge
    assert huge == 500 - 100 + math.isqrt(5 * 10**19) * 1000 // 10_000_000
    twin = SizePremiumModel(imr=D(1), mmr=D(0), imf_factor=D("0.001"))
    assert twin.ratio_bp(D("0.05"), D(5 * 10**9)) == huge


@settings(max_examples=200, deadline=None)
@given(imr=st.integers(1, 10_000), mm_share=st.integers(1, 100), imf=st.integers(0, 100_000),
       base=st.integers(-10**13, 10**13), price=st.integers(1, 10**11))
def test_drift_slot_quanta_matches_the_twin(imr: int, mm_share: int, imf: int, base: int,
                                            price: int) -> None:
    """``base`` in 1e-9 units at ``price`` in 1e-6 USDC: the value is ``base x price / 1e9``
    truncated toward zero in Drift; the kernel's float product is within one quantum of it
    (a fraction within 1e-15 of the next integer is not seen by a float), and the
    requirements are Drift's at the kernel's own notional, to the quantum."""
    mmr = max(imr * mm_share // 100, 0)
    model = SizePremiumModel(imr=D(imr) / 10_000, mmr=D(mmr) / 10_000,
                             imf_factor=D(imf) / 1_000_000)
    v, im, mm = drift_position_quanta(model, base_asset_amount=base, oracle_price=price)
    exact = abs(base) * price // 10**9 * (1 if base >= 0 else -1)
    assert abs(v - exact) <= 1
    assert (im, mm) == model.requirement_quanta(abs(v), D(abs(base)).scaleb(-9))


@pytest.mark.parametrize(("build", "message"), [
    (lambda: OIScaledModel(imr=D("0.2000001"), maintenance_fraction=D("0.5")),
     "imr 0.2000001 is not a whole 1e-6"),
    (lambda: OIScaledModel(imr=D("0.2"), maintenance_fraction=D("0.33333333")),
     "maintenance_fraction 0.33333333 is not a whole"),
    (lambda: SizePremiumModel(imr=D("0.10005"), mmr=D("0.05"), imf_factor=D(0)),
     "imr 0.10005 is not a whole 1e-4"),
    (lambda: SizePremiumModel(imr=D("0.1"), mmr=D("0.05"), imf_factor=D("0.0000005")),
     "imf_factor 5E-7 is not a whole 1e-6"),
], ids=["dydx-imr", "dydx-fraction", "drift-ratio", "drift-imf"])
def test_rates_off_the_venue_precision_are_refused(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]
