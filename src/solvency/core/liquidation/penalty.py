"""Liquidation penalty (fee) capped at what the account has left, and its split.

Venues charge a liquidated account a penalty on the closed notional: dYdX a single
``max_liquidation_fee_ppm`` paid to the insurance fund; Drift a ``liquidator_fee`` to the
liquidator and an ``if_liquidation_fee`` to the insurance fund; Binance an "insurance
clearance fee"; BitMEX the remaining margin above bankruptcy. Everywhere the penalty is
capped so that it never pushes the account below zero: a solvent close stays solvent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from solvency.core.typing import Float64Array1D
from solvency.core.units import PPM

__all__ = [
    "PenaltyPriority",
    "PenaltySplit",
    "drift_base_to_cover_margin_shortage",
    "liquidation_penalty_quanta",
    "size_to_cover_margin_shortage",
]

PenaltyPriority = Literal["liquidator_first", "insurance_first", "pro_rata"]

# Drift precisions (programs/drift/src/math/constants.rs).
_DRIFT_LIQUIDATION_FEE_PRECISION = 1_000_000
_DRIFT_LIQUIDATION_FEE_TO_MARGIN_PRECISION_RATIO = 100
_DRIFT_PRICE_TIMES_AMM_TO_QUOTE_PRECISION_RATIO = 1_000_000_000
_U64_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True)
class PenaltySplit:
    """A liquidation penalty in settle quanta: to the liquidator and to the insurance fund.

    ``capped`` is True when the cap (the surplus left to the account) bound the amounts.
    """

    liquidator_quanta: int
    insurance_quanta: int
    capped: bool

    @property
    def total_quanta(self) -> int:
        """Liquidator plus insurance parts."""
        return self.liquidator_quanta + self.insurance_quanta


def liquidation_penalty_quanta(
    *, notional_quanta: int, surplus_quanta: int, liquidator_fee_ppm: int,
    insurance_fee_ppm: int, priority: PenaltyPriority = "liquidator_first",
) -> PenaltySplit:
    """Return the penalty on a liquidation close, capped at the account's surplus.

    Each part is ``floor(|notional| x fee_ppm / 1e6)`` (rounded down: toward the account,
    never creating a debt); their total is capped at ``max(0, surplus)``, the amount the
    account received above its bankruptcy amount for the close (or, for an isolated
    position, its equity after the close). When capped, ``priority`` says who is paid
    first; ``pro_rata`` splits the cap in proportion to the two fees (liquidator part
    rounded down, insurance gets the rest). After Drift ``liquidate_perp`` (liquidator
    fee then ``if_liquidation_fee``, the IF part reduced when the user cannot pay) and
    dYdX ``GetLiquidationInsuranceFundDelta`` (``min(max fee, surplus)``).

    Parameters
    ----------
    notional_quanta
        Closed notional (its magnitude is used).
    surplus_quanta
        What the account can pay without going below zero on the closed part.
    liquidator_fee_ppm, insurance_fee_ppm
        Fee rates (each >= 0).
    priority
        Who is paid first when the cap binds.
    """
    if liquidator_fee_ppm < 0 or insurance_fee_ppm < 0:
        raise ValueError("fee rates must be non-negative")
    n = abs(notional_quanta)
    liq = n * liquidator_fee_ppm // PPM
    ins = n * insurance_fee_ppm // PPM
    cap = max(0, surplus_quanta)
    if liq + ins <= cap:
        return PenaltySplit(liq, ins, False)
    if priority == "liquidator_first":
        liq_c = min(liq, cap)
        return PenaltySplit(liq_c, min(ins, cap - liq_c), True)
    if priority == "insurance_first":
        ins_c = min(ins, cap)
        return PenaltySplit(min(liq, cap - ins_c), ins_c, True)
    liq_c = cap * liq // (liq + ins)
    return PenaltySplit(liq_c, cap - liq_c, True)


def drift_base_to_cover_margin_shortage(
    margin_shortage: int, margin_ratio: int, liquidation_fee: int, if_liquidation_fee: int,
    oracle_price: int, quote_oracle_price: int = 1_000_000,
) -> int:
    """Return Drift's base amount to liquidate to cover a margin shortage, in Drift units.

    ``shortage x 1e9 / (price x quote_price / 1e6 x (margin_ratio x 100 - liq_fee) / 1e6 -
    price x if_fee / 1e6)`` with Drift's integer steps (truncating divisions); ``u64::MAX``
    when the fees eat the whole margin ratio (close everything). Units: shortage in QUOTE_PRECISION
    (1e6), margin ratio in MARGIN_PRECISION (1e4), fees in LIQUIDATION_FEE_PRECISION
    (1e6), price in PRICE_PRECISION (1e6), result in BASE_PRECISION (1e9). Reference
    twin of :func:`size_to_cover_margin_shortage` (Drift protocol-v2
    ``programs/drift/src/math/liquidation.rs``
    ``calculate_base_asset_amount_to_cover_margin_shortage``).
    """
    mr = margin_ratio * _DRIFT_LIQUIDATION_FEE_TO_MARGIN_PRECISION_RATIO
    if oracle_price == 0 or mr <= liquidation_fee:
        return _U64_MAX
    # the quote asset's own oracle price (PRICE_PRECISION) scales the liability side
    quoted = oracle_price * quote_oracle_price // 1_000_000
    den = (quoted * (mr - liquidation_fee) // _DRIFT_LIQUIDATION_FEE_PRECISION
           - oracle_price * if_liquidation_fee // _DRIFT_LIQUIDATION_FEE_PRECISION)
    if den <= 0:
        return _U64_MAX
    return margin_shortage * _DRIFT_PRICE_TIMES_AMM_TO_QUOTE_PRECISION_RATIO // den


def size_to_cover_margin_shortage(
    *, shortage: Float64Array1D, unit_notional: Float64Array1D, mmr: Float64Array1D,
    liquidator_fee_ppm: int, insurance_fee_ppm: int,
) -> Float64Array1D:
    """Return the size that restores margin, per position (float, vectorized).

    Closing ``q`` units frees ``q x notional x mmr`` of requirement and costs
    ``q x notional x (liquidator fee + insurance fee)``: ``q = shortage / (notional x
    (mmr - fees))`` (Drift ``calculate_base_asset_amount_to_cover_margin_shortage``).
    ``inf`` where the fees eat the whole ratio (close everything); 0 where there is no
    shortage.

    Parameters
    ----------
    shortage
        Requirement (with any buffer) minus collateral, settle units (<= 0: none).
    unit_notional
        Notional of one unit of size (e.g. one lot) at the oracle price.
    mmr
        The position's maintenance margin rate (its requirement / its notional).
    liquidator_fee_ppm, insurance_fee_ppm
        Fee rates.
    """
    fees = (liquidator_fee_ppm + insurance_fee_ppm) / PPM
    den = unit_notional * (mmr - fees)
    out = np.full_like(shortage, np.inf)
    np.divide(shortage, den, out=out, where=den > 0)
    return np.where(shortage > 0, out, 0.0)
