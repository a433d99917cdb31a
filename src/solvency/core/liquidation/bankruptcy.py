"""Bankruptcy price, fillable price and insurance fund delta (after dYdX v4 ``x/clob``).

Sign convention (dYdX's): a *quote amount* is what the liquidated account **receives** for
closing ``delta`` of its position, signed. Closing a long sells, so the account receives a
positive amount; closing a short buys, so it receives a negative amount (it pays). The
*bankruptcy amount* ``B`` is the least the account must receive so that closing leaves it
with exactly zero equity on the closed part: anything above ``B`` is surplus (it can pay a
liquidation fee), anything below is a shortfall the insurance fund (or ADL, or
socialization) must cover.

Cross accounts share their deficit among positions by maintenance margin:
``B = -DNNV - TNC x |DMMR| / TMMR`` (``DNNV``: change of the position's value; ``TNC``:
the account's total net collateral; ``DMMR``, ``TMMR``: change of the position's and the
account's total maintenance margin). An isolated position is the one-position case
(``TNC`` = its own margin plus value, ``TMMR`` = its own requirement), so one formula
serves both.

Exact functions take and return Python ``int`` quanta of the settlement asset; the
vectorized ones take float64 arrays and are estimates for ranking and display.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Literal

import numpy as np

from solvency.core.typing import Float64Array1D
from solvency.core.units import PPM, div_round

__all__ = [
    "ContractKind",
    "bankruptcy_price_ticks",
    "bankruptcy_prices",
    "bankruptcy_quote_quanta",
    "bankruptcy_share_quanta",
    "fillable_price",
    "fillable_prices",
    "insurance_fund_delta_quanta",
]

ContractKind = Literal["linear", "inverse"]


def bankruptcy_quote_quanta(
    *, delta_value_quanta: int, delta_mm_quanta: int, equity_quanta: int,
    mm_total_quanta: int,
) -> int:
    """Return the bankruptcy amount of closing part of a position, in quote quanta.

    ``B = -delta_value - floor(equity x |delta_mm| / mm_total)``, rounded toward +inf
    (the floor is the only division and it is subtracted), that is toward the side that
    never needs the insurance fund: closing at exactly ``B`` leaves the account's equity
    at or above zero on the closed part (dYdX ``GetBankruptcyPriceInQuoteQuantums``,
    ``protocol/x/clob/keeper/liquidations.go``).

    Parameters
    ----------
    delta_value_quanta
        ``value(position after) - value(position before)`` at the mark (dYdX ``DNNV``),
        computed from both sizes rather than from the delta to avoid rounding drift.
    delta_mm_quanta
        ``mm(after) - mm(before)``; must be ``<= 0`` (closing never adds requirement).
    equity_quanta
        The account's total net collateral (dYdX ``TNC``), may be negative.
    mm_total_quanta
        The account's total maintenance margin (dYdX ``TMMR``), must be positive.

    Returns
    -------
    int
        Signed amount the account must receive for the close (negative: it may pay at
        most ``-B``).
    """
    if delta_mm_quanta > 0:
        raise ValueError("delta_mm_quanta must be <= 0: closing never adds requirement")
    if mm_total_quanta <= 0:
        raise ValueError("mm_total_quanta must be positive for a liquidatable account")
    # Python's // floors toward -inf even when equity < 0 (dYdX uses Euclidean Div on a
    # positive divisor: the same result).
    share = (equity_quanta * -delta_mm_quanta) // mm_total_quanta
    return -delta_value_quanta - share


def bankruptcy_share_quanta(bankruptcy_quanta: int, *, part_lots: int, total_lots: int) -> int:
    """Return the bankruptcy amount of the first ``part_lots`` of ``total_lots`` closed.

    ``ceil(B x part / total)``: rounded toward +inf, so the shares of consecutive parts
    (differences of this function at cumulative sizes) sum to ``B`` exactly and no part
    ever needs the fund because of rounding. Valid when the maintenance margin is linear
    in size over the closed range (one tier); otherwise recompute
    :func:`bankruptcy_quote_quanta` for the part.
    """
    if total_lots <= 0 or not 0 <= part_lots <= total_lots:
        raise ValueError("need 0 <= part_lots <= total_lots and total_lots > 0")
    return div_round(bankruptcy_quanta * part_lots, total_lots, "ceil")


def bankruptcy_price_ticks(bankruptcy_quanta: int, *, lots: int, tick_value_quanta: int) -> int:
    """Return the bankruptcy price, in ticks, of closing ``lots`` (signed position lots).

    Linear contracts: closing a long of ``lots > 0`` at ``t`` ticks receives
    ``lots x t x tick_value``; it must be ``>= B``, so ``t = ceil(B / (lots x tv))``.
    Closing a short (``lots < 0``) receives ``lots x t x tv`` (negative), so
    ``t = floor(B / (lots x tv))``. Both round toward the side that never needs the
    insurance fund (dYdX ``ConvertFillablePriceToSubticks`` rounds the same way). The
    result may be ``<= 0``: for a long, any price clears; for a short, no price does.
    """
    if lots == 0 or tick_value_quanta <= 0:
        raise ValueError("lots must be non-zero and tick_value_quanta positive")
    den = lots * tick_value_quanta
    return div_round(bankruptcy_quanta, den, "ceil" if lots > 0 else "floor")


def bankruptcy_prices(
    kind: ContractKind, *, size: Float64Array1D, value: Float64Array1D, mm: Float64Array1D,
    equity: Float64Array1D, mm_total: Float64Array1D,
) -> Float64Array1D:
    """Return the bankruptcy price of closing each whole position (float estimate).

    ``B = value - equity x mm / mm_total`` per position (the full-close case of
    :func:`bankruptcy_quote_quanta`); then, linear: ``P = B / size``; inverse
    (``value = -size / P``, coin-settled): ``P = -size / B``.

    Parameters
    ----------
    kind
        ``"linear"`` or ``"inverse"`` (the same for all rows of the call).
    size
        Signed size: base units (linear, contracts x contract size) or quote currency
        units (inverse, contracts x contract size in USD).
    value, mm
        The position's value at the mark (signed) and maintenance margin, settle units.
    equity, mm_total
        The account's (row's) equity and total maintenance margin, broadcast per position;
        an isolated position passes its own margin + value and its own requirement.

    Returns
    -------
    Float64Array1D
        Prices; NaN where ``size`` or ``mm_total`` is 0 (or ``B`` is 0 for inverse). A
        price ``<= 0`` means: for a long, any price clears; for a short, none does.
    """
    share = np.divide(equity * mm, mm_total, out=np.full_like(value, np.nan),
                      where=mm_total > 0)
    b = value - share
    out = np.full_like(value, np.nan)
    if kind == "linear":
        np.divide(b, size, out=out, where=(size != 0) & np.isfinite(b))
    else:
        np.divide(-size, b, out=out, where=(b != 0) & np.isfinite(b))
    return out


def fillable_price(
    *, position_value_quanta: int, position_mm_quanta: int, position_size: int,
    equity_quanta: int, mm_total_quanta: int, bankruptcy_adjustment_ppm: int,
    spread_to_mm_ratio_ppm: int,
) -> Fraction:
    """Return the worst price a liquidation order may fill at, exactly.

    ``(PNNV - ABR x SMMR x PMMR) / PS`` with ``ABR = clamp(BA x (1 - TNC/TMMR), 0, 1)``
    (dYdX ``GetFillablePrice``): the deeper the account is below maintenance, the further
    from the oracle the order may fill, by at most ``SMMR x PMMR``. A long's fillable
    price is below the mark, a short's above. No rounding (a rational); the caller rounds
    it to ticks away from the account (up for a long's sell, down for a short's buy).

    Parameters
    ----------
    position_value_quanta, position_mm_quanta
        The position's value at the mark (signed, ``PNNV``) and requirement (``PMMR``).
    position_size
        Signed size in the unit the price is wanted per (e.g. lots or base quantums).
    equity_quanta, mm_total_quanta
        The account's ``TNC`` and ``TMMR`` (``TMMR > 0``).
    bankruptcy_adjustment_ppm, spread_to_mm_ratio_ppm
        ``BA`` and ``SMMR`` of the venue's fillable-price config.
    """
    if position_size == 0 or mm_total_quanta <= 0:
        raise ValueError("position_size must be non-zero and mm_total_quanta positive")
    abr = (1 - Fraction(equity_quanta, mm_total_quanta)) * Fraction(
        bankruptcy_adjustment_ppm, PPM)
    abr = min(max(abr, Fraction(0)), Fraction(1))
    spread = Fraction(position_mm_quanta) * Fraction(spread_to_mm_ratio_ppm, PPM)
    price = (position_value_quanta - abr * spread) / position_size
    if price < 0:
        raise ValueError("fillable price is negative: inconsistent position inputs")
    return price


def fillable_prices(
    *, value: Float64Array1D, mm: Float64Array1D, size: Float64Array1D,
    equity: Float64Array1D, mm_total: Float64Array1D, bankruptcy_adjustment_ppm: int,
    spread_to_mm_ratio_ppm: int,
) -> Float64Array1D:
    """Vectorized float twin of :func:`fillable_price` (NaN where undefined)."""
    ratio = np.divide(equity, mm_total, out=np.full_like(value, np.nan), where=mm_total > 0)
    abr = np.clip((1.0 - ratio) * (bankruptcy_adjustment_ppm / PPM), 0.0, 1.0)
    num = value - abr * mm * (spread_to_mm_ratio_ppm / PPM)
    return np.divide(num, size, out=np.full_like(value, np.nan), where=size != 0)


def insurance_fund_delta_quanta(
    *, fill_quote_quanta: int, bankruptcy_quanta: int, max_liquidation_fee_ppm: int,
) -> int:
    """Return the payment between the liquidated account and the insurance fund for a fill.

    ``d = fill - B``. If ``d <= 0`` the fund pays ``-d`` to the account (returned
    negative). Otherwise the account pays the fund ``min(d, floor(|fill| x fee_ppm /
    1e6))``: the liquidation fee, rounded down and capped at the surplus over bankruptcy,
    so the fee never turns a solvent close into bad debt (dYdX
    ``GetLiquidationInsuranceFundDelta``).

    Parameters
    ----------
    fill_quote_quanta
        What the account receives for the fill (signed, as in the module docstring).
    bankruptcy_quanta
        ``B`` of the same fill (:func:`bankruptcy_quote_quanta`).
    max_liquidation_fee_ppm
        dYdX ``max_liquidation_fee_ppm``.
    """
    delta = fill_quote_quanta - bankruptcy_quanta
    if delta <= 0:
        return delta
    fee_max = abs(fill_quote_quanta) * max_liquidation_fee_ppm // PPM
    return min(fee_max, delta)
