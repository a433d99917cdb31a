"""Exact units: decimal strings in, integer quanta inside, floats only for estimates.

Every conversion between a human decimal and an integer amount happens here and names its
rounding direction. Money never passes through a binary float.

Names follow the unit-last habit: ``amount_quanta``, ``rate_ppm``, ``price_ticks``.
"""

from __future__ import annotations

from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_UP,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    localcontext,
)
from fractions import Fraction
from typing import Final, Literal

__all__ = [
    "MAX_QUANTA",
    "PPM",
    "Rounding",
    "UnitError",
    "div_round",
    "format_quanta",
    "from_quanta",
    "parse_decimal",
    "quantum_of",
    "to_quanta",
]

PPM: Final = 1_000_000
#: Largest magnitude of any single amount, balance or notional in quanta. 10**18 quanta is
#: 10**12 USDT at 1e-6 or 10**10 BTC at 1e-8: far beyond any real venue, and it keeps every
#: product of two checked values inside what int64 arrays can hold (see state.py).
MAX_QUANTA: Final = 10**18

_EXACT: Final = Context(prec=60, traps=[Inexact])

Rounding = Literal["exact", "floor", "ceil", "down", "up"]
"""``exact`` rejects any remainder; ``floor``/``ceil`` round toward -inf/+inf;
``down``/``up`` round toward/away from zero."""


class UnitError(ValueError):
    """A value that cannot be represented exactly in the unit asked for."""


def parse_decimal(value: object, *, field: str) -> Decimal:
    """Parse a finite decimal from a string, an int or a Decimal; reject floats and NaN.

    Binary floats are refused because ``0.1`` is not ``Decimal("0.1")``: money arrives as
    decimal strings (JSON numbers are read with ``parse_float=Decimal`` at the edge).
    """
    if isinstance(value, bool):
        raise UnitError(f"{field}: expected a decimal string, got a boolean")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise UnitError(f"{field}: empty decimal string")
        try:
            d = Decimal(text)
        except InvalidOperation:
            raise UnitError(f"{field}: {value!r} is not a decimal number") from None
    elif isinstance(value, float):
        raise UnitError(f"{field}: binary float {value!r} refused; pass a decimal string")
    else:
        raise UnitError(f"{field}: expected a decimal string, got {type(value).__name__}")
    if not d.is_finite():
        raise UnitError(f"{field}: {value!r} is not finite")
    return d


def quantum_of(decimals: int) -> Decimal:
    """Return the smallest unit ``10**-decimals`` as a Decimal."""
    return Decimal(1).scaleb(-decimals)


def div_round(num: int, den: int, rounding: Rounding) -> int:
    """Integer division ``num / den`` with an explicit rounding direction (den != 0)."""
    if den == 0:
        raise ZeroDivisionError("div_round by zero")
    if den < 0:
        num, den = -num, -den
    q, r = divmod(num, den)  # floor division
    if r == 0:
        return q
    if rounding == "floor":
        return q
    if rounding == "ceil":
        return q + 1
    if rounding == "down":
        return q + 1 if q < 0 else q
    if rounding == "up":
        return q if q < 0 else q + 1
    raise UnitError(f"{num}/{den} is not an integer")


def to_quanta(value: Decimal | Fraction | int, decimals: int, rounding: Rounding) -> int:
    """Convert a decimal amount into integer quanta of ``10**-decimals``.

    ``rounding="exact"`` raises :class:`UnitError` when the amount has more precision than
    the quantum (an input error); the other modes are used for computed amounts and say
    which side keeps the remainder.
    """
    if isinstance(value, int):
        return int(value * 10**decimals)
    if isinstance(value, Fraction):
        num = value.numerator * 10**decimals if decimals >= 0 else value.numerator
        den = value.denominator if decimals >= 0 else value.denominator * 10 ** (-decimals)
        return div_round(num, den, rounding)
    if rounding == "exact":
        # One C-level operation in a context that traps any rounding: exact at any size
        # (an amount too long for 60 digits is refused, never rounded) and ~10x faster
        # than switching to a local context (this runs several times per fill).
        try:
            scaled = value.scaleb(decimals, context=_EXACT)
        except Inexact:
            raise UnitError(f"{value} has too many digits") from None
        q = int(scaled)
        if scaled != q:
            raise UnitError(f"{value} has more precision than 1e-{decimals}")
        return q
    with localcontext() as ctx:
        ctx.prec = 60
        scaled = value.scaleb(decimals)
        mode: str = {"floor": ROUND_FLOOR, "ceil": ROUND_CEILING, "down": ROUND_DOWN,
                     "up": ROUND_UP}[rounding]
        return int(scaled.to_integral_value(rounding=mode))


def from_quanta(amount_quanta: int, decimals: int) -> Decimal:
    """Return the exact decimal value of an integer amount of quanta."""
    return Decimal(amount_quanta).scaleb(-decimals)


def format_quanta(amount_quanta: int, decimals: int) -> str:
    """Plain decimal string of an amount of quanta (``"0.00000003"``, never ``"3E-8"``)."""
    return f"{from_quanta(amount_quanta, decimals):f}"
