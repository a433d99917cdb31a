"""The float rule's error bound and its rounding to the quantum (issue 24, difference 3).

``kernels.float_slot_quanta`` rounds a requirement up to the quantum except for what the
float puts above a whole quantum within its error bound (``REQ_REL_ERR`` of the
requirement's magnitude ``|notional x rate| + |amount|``, derived by counting roundings
above the constants in ``core/margin/kernels.py``), and the value down except for what
it puts below one within ``VALUE_REL_ERR``. These tests hold the bound to exact decimal
arithmetic on random decimal inputs of every float-rule shape (linear, inverse, size
slope with its cap, Drift's continuous size premium, maintenance amounts) and check
both sides of the guard. Sampling shows the errors that occur (up to ~5 roundings' worth
on 3,000 cases), not the worst case: the count of 22 is the derivation's, and a bound
cut to 0 fails here and in the docs' worked examples.
"""

from __future__ import annotations

import random
from decimal import Decimal, localcontext

import numpy as np
import pytest

from solvency.core.margin.kernels import (
    MK_COLUMNS,
    MK_CV,
    MK_IM_SLOPE,
    MK_IMF,
    MK_KIND,
    MK_LOT,
    MK_MM_SLOPE,
    MKI_SETTLE,
    MKI_TIER_COUNT,
    MKI_TIER_START,
    REQ_REL_ERR,
    T_COLUMNS,
    VALUE_REL_ERR,
    _requirement_parts,
    float_slot_quanta,
)

D = Decimal


def _dec(rng: random.Random, digits: int, places: int) -> Decimal:
    # a decimal of up to ``digits`` significant digits and ``places`` decimals, > 0
    return D(rng.randint(1, 10**digits - 1)).scaleb(-places)


def _case(rng: random.Random) -> dict[str, Decimal | int]:
    shape = rng.choice(["tiered", "slope", "imf"])
    rate = _dec(rng, 4, rng.randint(3, 6))
    rate = min(rate, D(1))
    return {
        "kind": rng.choice([0, 1]),
        "lots": rng.randint(1, 10**rng.randint(1, 9)) * rng.choice([1, -1]),
        "lot": rng.choice([D(1), D(10), D("0.1"), D("0.001")]),
        "cv": rng.choice([D(1), D(10), D(100), D("0.001"), D("0.00001"), D("1e-9")]),
        "mark": _dec(rng, rng.randint(1, 8), rng.randint(0, 4)),
        "rate": rate,
        "amount": _dec(rng, rng.randint(1, 9), 2) if shape == "tiered" else D(0),
        "slope": _dec(rng, 3, rng.randint(5, 9)) if shape == "slope" else D(0),
        "imf": _dec(rng, 3, rng.randint(5, 8)) if shape == "imf" else D(0),
        "decimals": rng.choice([6, 8]),
    }


def _exact(c: dict[str, Decimal | int]) -> tuple[Decimal, Decimal, Decimal]:
    """Value, maintenance requirement and its magnitude, in exact decimal arithmetic (60
    digits: the square root is the only inexact step, far below the float's error)."""
    with localcontext() as ctx:
        ctx.prec = 60
        contracts = D(c["lots"]) * D(c["lot"])
        if c["kind"] == 0:
            value = contracts * D(c["cv"]) * D(c["mark"])
            size = abs(contracts) * D(c["cv"])
        else:
            value = -contracts * D(c["cv"]) / D(c["mark"])
            size = abs(value)
        rate = D(c["rate"]) + D(c["slope"]) * size
        if c["slope"]:
            rate = min(rate, D(1))
        if c["imf"]:
            rate = max(rate, D("0.8") * rate + D(c["imf"]) * size.sqrt())
        gross = abs(value) * rate
        return value, gross - D(c["amount"]), abs(gross) + D(c["amount"])


def _float_parts(c: dict[str, Decimal | int]) -> tuple[float, float, float]:
    tiers = np.zeros((1, T_COLUMNS))
    tiers[0, 1] = float(c["rate"])
    tiers[0, 2] = float(c["rate"])
    tiers[0, 3] = float(c["amount"])
    tiers[0, 4] = float(c["amount"])
    v, _n, _im, mm, _im_mag, mm_mag = _requirement_parts(
        float(c["kind"]), float(c["cv"]), float(c["lot"]), float(c["mark"]),
        float(c["lots"]), 0, 1, tiers, 0.0, 0.0, 0.0, float(c["imf"]),
        float(c["slope"]), float(c["slope"]), 0.0, 0.0)
    return v, mm, mm_mag


def test_the_float_rule_stays_within_its_error_bound() -> None:
    """On 1,000 random decimal positions, the float value and maintenance requirement
    differ from the exact decimal ones by at most VALUE_REL_ERR of the value and
    REQ_REL_ERR of the requirement's magnitude (in quanta, as float_slot_quanta uses
    them), and the bound is not loose by orders: the largest error seen uses over 2 % of
    it (a bound of 1e-12 would pass the first check and fail this one)."""
    rng = random.Random(24)
    worst = 0.0
    for _ in range(1_000):
        c = _case(rng)
        sc = D(10) ** int(c["decimals"])
        v, mm, mag = _float_parts(c)
        ev, emm, emag = _exact(c)
        v_err = abs(D(v) * sc - ev * sc)
        assert v_err <= D(VALUE_REL_ERR) * abs(ev * sc) * D("1.000001"), c
        mm_err = abs(D(mm) * sc - emm * sc)
        bound = D(REQ_REL_ERR) * emag * sc
        assert mm_err <= bound, (c, mm_err, bound)
        assert abs(D(mag) - emag) <= D(REQ_REL_ERR) * emag
        if bound > 0:
            worst = max(worst, float(mm_err / bound))
    assert worst > 0.02


def _slot(kind: float, cv: float, lots: float, mark: float, rate: float,
          decimals: int) -> tuple[int, int, int]:
    mk = np.zeros((1, MK_COLUMNS))
    mk[0, MK_KIND] = kind
    mk[0, MK_CV] = cv
    mk[0, MK_LOT] = 1.0
    mk[0, MK_IMF] = 0.0
    mk[0, MK_IM_SLOPE] = 0.0
    mk[0, MK_MM_SLOPE] = 0.0
    mki = np.zeros((1, 3), dtype=np.int64)
    mki[0, MKI_TIER_START] = 0
    mki[0, MKI_TIER_COUNT] = 1
    mki[0, MKI_SETTLE] = 0
    tiers = np.zeros((1, T_COLUMNS))
    tiers[0, 1] = rate
    tiers[0, 2] = rate
    v, im, mm = float_slot_quanta(0, lots, mark, 0.0, mk, mki, tiers,
                                  np.array([10.0**decimals]))
    return int(v), int(im), int(mm)


@pytest.mark.parametrize(("lots", "mark", "rate", "expected"), [
    # 0.1 x 3 = 0.30000000000000004 in floats: 300,000 quanta exactly, not 300,001
    (3, 1.0, 0.1, (3_000_000, 300_000, 300_000)),
    # a real third of a quantum above: rounded up (the guard is ~1e-15 of the magnitude)
    (1, 1.0000003, 1.0, (1_000_000, 1_000_001, 1_000_001)),
    # 1e-5 of a quantum above 1e6 quanta: beyond the float's error (2.4e-9 quanta), up
    (1, 1.00000000001, 1.0, (1_000_000, 1_000_001, 1_000_001)),
    # 1e-9 of a quantum above: within it, the whole quantum (what the guard gives away)
    (1, 1.000000000000001, 1.0, (1_000_000, 1_000_000, 1_000_000)),
], ids=["float-noise-kept-exact", "a-third-quantum-rounds-up", "1e-5-quantum-rounds-up",
        "1e-9-quantum-is-noise"])
def test_the_guard_rounds_noise_to_the_quantum_and_fractions_up(
        lots: int, mark: float, rate: float, expected: tuple[int, int, int]) -> None:
    assert _slot(0.0, 1.0, float(lots), mark, rate, 6) == expected


def test_a_value_a_few_ulps_below_a_quantum_is_that_quantum() -> None:
    """The value rounds down except float noise: 3 contracts of 0.7 at 1.0 are 2.1 USDC,
    2,100,000 quanta, though 0.7 x 3 is 2.0999999999999996 in floats (2,099,999 without
    the guard)."""
    assert _slot(0.0, 0.7, 3.0, 1.0, 0.1, 6)[0] == 2_100_000
