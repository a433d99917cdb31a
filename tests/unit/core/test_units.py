"""Exact units: parsing, quanta conversion and rounding directions."""

from decimal import Decimal
from fractions import Fraction

import pytest

from solvency.core.units import (
    UnitError,
    div_round,
    format_quanta,
    parse_decimal,
    to_quanta,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1.5", Decimal("1.5")), (" 2 ", Decimal(2)), (7, Decimal(7)),
     (Decimal("0.000001"), Decimal("0.000001")), ("-3.25", Decimal("-3.25"))],
    ids=["decimal-string", "padded", "int", "decimal", "negative"],
)
def test_parse_decimal_accepts(value: object, expected: Decimal) -> None:
    assert parse_decimal(value, field="x") == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [("NaN", "not finite"), ("inf", "not finite"), ("-Infinity", "not finite"),
     ("", "empty"), ("1.2.3", "not a decimal"), (0.1, "binary float"), (True, "boolean"),
     (None, "expected a decimal"), ([1], "expected a decimal")],
    ids=["nan", "inf", "neg-inf", "empty", "garbage", "float", "bool", "none", "list"],
)
def test_parse_decimal_rejects(value: object, message: str) -> None:
    with pytest.raises(UnitError, match=message):
        parse_decimal(value, field="amount")


@pytest.mark.parametrize(
    ("num", "den", "mode", "expected"),
    [(7, 2, "floor", 3), (7, 2, "ceil", 4), (-7, 2, "floor", -4), (-7, 2, "ceil", -3),
     (-7, 2, "down", -3), (-7, 2, "up", -4), (7, 2, "down", 3), (7, 2, "up", 4),
     (8, 2, "exact", 4), (7, -2, "floor", -4)],
)
def test_div_round(num: int, den: int, mode: str, expected: int) -> None:
    assert div_round(num, den, mode) == expected  # type: ignore[arg-type]


def test_div_round_exact_refuses_remainder() -> None:
    with pytest.raises(UnitError):
        div_round(7, 2, "exact")


def test_to_quanta_exact_and_rounded() -> None:
    assert to_quanta(Decimal("1.234567"), 6, "exact") == 1_234_567
    with pytest.raises(UnitError, match="more precision"):
        to_quanta(Decimal("1.2345678"), 6, "exact")
    assert to_quanta(Decimal("1.2345678"), 6, "floor") == 1_234_567
    assert to_quanta(Decimal("1.2345671"), 6, "ceil") == 1_234_568
    assert to_quanta(Decimal("-1.2345671"), 6, "floor") == -1_234_568
    assert to_quanta(Fraction(1, 3), 6, "floor") == 333_333
    assert to_quanta(Fraction(1, 3), 6, "ceil") == 333_334
    assert to_quanta(3, 8, "exact") == 300_000_000


def test_format_quanta_is_plain() -> None:
    assert format_quanta(3, 8) == "0.00000003"
    assert format_quanta(0, 8) == "0.00000000"
    assert format_quanta(-1_500_000, 6) == "-1.500000"
