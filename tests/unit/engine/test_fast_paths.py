"""The per-event fast paths answer exactly as the general code they shortcut.

The fill path reads a size or price on its grid in integers (``on_grid``: the decimal
as an exact ratio) and a fee in quanta by one scale (``amount_quanta``); the general
code is a decimal division that traps rounding and ``units.to_quanta``. Each fast path
only ever answers "accepted, this many"; here both are run on the same random and edge
inputs and must give the same number or the same rejection (reason and words). Out-events
and views print floats through ``format_number``, whose finite-float branch is held to
the general one the same way.
"""

from __future__ import annotations

import math
import random
from decimal import Decimal as D

import numpy as np
import pytest

from solvency.core.model.presets import PRESETS
from solvency.core.model.venue import build_venue
from solvency.core.units import MAX_QUANTA, UnitError, to_quanta
from solvency.engine.base import (
    EngineState,
    RejectReason,
    _on_grid_slow,
    format_number,
    on_grid,
)

STEPS = [D("0.001"), D("0.1"), D("0.5"), D("1"), D("25"), D("0.00000001"), D("0.0025")]

EDGES = ["0", "-0", "-0.001", "0.001", "0.0015", "1E+3", "1e-30", "1e30", "1E+18",
         "1000000000000000000", "1000000000000000001", "999999999999999999.9",
         "0.100000000000000000000000000000000000000000000000000000000000000000001",
         "123456789012345678901234567890123456789012345678901234567890123",
         "2.50", "7.5000", "0.0025000", "-5", "3E-8", "12.34567", "Infinity", "NaN"]


def _answer(fn: object, *args: object) -> tuple[str, object]:
    try:
        return ("ok", fn(*args))  # type: ignore[operator]
    except RejectReason as rej:
        return (rej.reason, rej.detail)
    except (UnitError, ValueError, OverflowError) as exc:  # the general code's own errors
        return (type(exc).__name__, str(exc))


def _values(seed: int, n: int) -> list[D]:
    rng = random.Random(seed)
    out = [D(x) for x in EDGES]
    for _ in range(n):
        digits = rng.randint(1, 22)
        mantissa = rng.randint(0, 10**digits)
        exponent = rng.randint(-12, 6)
        sign = -1 if rng.random() < 0.1 else 1
        out.append(D(sign * mantissa).scaleb(exponent))
    return out


@pytest.mark.parametrize("step", STEPS, ids=str)
def test_on_grid_fast_path_equals_decimal_division(step: D) -> None:
    for value in _values(int(step.scaleb(8)) % 1000, 600):
        if not value.is_finite():
            continue  # the engine refuses these (invalid_number) before any handler
        got = _answer(on_grid, value, step, "size", "invalid_size")
        want = _answer(_on_grid_slow, value, step, "size", "invalid_size")
        assert got == want, (value, step)
    # multiples of the step up to the range's end are taken by the fast path, exactly
    for n in (1, 7, 10**6 + 3, MAX_QUANTA - 1, MAX_QUANTA):
        assert on_grid(step * n, step, "size", "invalid_size") == n
    assert _answer(on_grid, step * (MAX_QUANTA + 1), step, "size", "invalid_size") == \
        _answer(_on_grid_slow, step * (MAX_QUANTA + 1), step, "size", "invalid_size")


@pytest.mark.parametrize("decimals", [0, 2, 6, 8, 18])
def test_amount_quanta_fast_path_equals_to_quanta(decimals: int) -> None:
    state = EngineState(build_venue(PRESETS["binance"]))
    state.asset_decimals = [decimals] * len(state.asset_decimals)

    def general(value: D) -> int:
        if not value:
            return 0
        try:
            q = to_quanta(value, decimals, "exact")
        except UnitError as exc:
            raise RejectReason("invalid_amount", f"fee_buyer: {exc}") from None
        if abs(q) > MAX_QUANTA:
            raise RejectReason("amount_too_large", f"fee_buyer: {value}")
        return q

    for value in _values(decimals, 600):
        if not value.is_finite():
            continue
        got = _answer(state.amount_quanta, value, 0, "fee_buyer")
        want = _answer(general, value)
        assert got == want, (value, decimals)


def _format_general(x: float) -> str:
    """format_number as it was before its fast path (the general branch)."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.10g}" if abs(x) < 1e-4 and x != 0 else f"{x:.6f}".rstrip("0").rstrip(".")


def test_format_number_fast_path_equals_general() -> None:
    rng = random.Random(11)
    values = [0.0, -0.0, 1e-4, -1e-4, 9.99999e-5, 1e-300, 1e300, -1e300, 1.7976931348623157e308,
              5e-324, 0.5, 123456.0000004, -2.5e-7, float("nan"), float("inf"), float("-inf")]
    values += [rng.uniform(-1, 1) * 10 ** rng.randint(-12, 20) for _ in range(3000)]
    for x in values:
        assert format_number(x) == _format_general(x), x
        assert format_number(np.float64(x)) == _format_general(x), x  # numpy scalars too
