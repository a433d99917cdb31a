"""Unit conversions of the venues' test fixtures into solvency's engine units, in one place.

The engine holds a position as ``lots`` of ``lot`` contracts of ``cv`` base units, marks as
floats (quote per base unit) and money in integer quanta of the settlement asset
(``10**decimals`` per unit). Each venue's fixtures state sizes, prices and money in their
own fixed-point units; these helpers convert them and run one position through the
engine's own per-position function :func:`solvency.core.margin.kernels.slot_quanta`
(the function every margin sum of the engine is built from).
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from solvency.core.margin.kernels import (
    MK_COLUMNS,
    MK_CV,
    MK_IM_SLOPE,
    MK_IMF,
    MK_KIND,
    MK_LOT,
    MK_MM_SLOPE,
    MK_OI_LOWER,
    MK_OI_UPPER,
    MK_UPNL,
    MK_UPNL_MAX,
    MKI_SETTLE,
    MKI_TIER_COUNT,
    MKI_TIER_START,
    slot_quanta,
)
from solvency.core.margin.models import MarginModel, risk_row

# dYdX v4: quote quantums are 1e-6 USDC (QuoteCurrencyAtomicResolution = -6); a
# perpetual's base quantum is 10**atomic_resolution coins; a market price is
# price * 10**exponent USDC per coin.
DYDX_QUOTE_DECIMALS = 6
# Drift protocol-v2 (programs/drift/src/math/constants.rs): QUOTE_PRECISION 1e6,
# BASE_PRECISION = AMM_RESERVE_PRECISION 1e9, PRICE_PRECISION 1e6, MARGIN_PRECISION 1e4,
# SPOT_IMF_PRECISION 1e6, LIQUIDATION_FEE_PRECISION 1e6.
DRIFT_QUOTE_DECIMALS = 6
DRIFT_BASE_PRECISION = 10**9
DRIFT_PRICE_PRECISION = 10**6
DRIFT_MARGIN_PRECISION = 10_000
DRIFT_SPOT_IMF_PRECISION = 10**6
DRIFT_LIQUIDATION_FEE_PRECISION = 10**6


def ppm(value: int) -> Decimal:
    """A dYdX ppm as the fraction a venue file holds."""
    return Decimal(value) / Decimal(1_000_000)


def drift_ratio(value: int) -> Decimal:
    """A Drift margin ratio (MARGIN_PRECISION) as the fraction a venue file holds."""
    return Decimal(value) / Decimal(DRIFT_MARGIN_PRECISION)


def drift_imf(value: int) -> Decimal:
    """A Drift imf_factor (SPOT_IMF_PRECISION) as the fraction a venue file holds."""
    return Decimal(value) / Decimal(DRIFT_SPOT_IMF_PRECISION)


def position_quanta(model: MarginModel, *, lots: int, cv: Decimal, mark: Decimal,
                    decimals: int, oi_contracts: int = 0,
                    inverse: bool = False, cost_quanta: int = 0) -> tuple[int, int, int]:
    """``(value, initial, maintenance)`` in quanta of one position of ``lots`` contracts
    of ``cv`` base units (inverse: of ``cv`` quote units, settled in the coin) at ``mark``
    and cost basis ``cost_quanta``, as the engine computes it."""
    row = risk_row(model)
    mk = np.zeros((1, MK_COLUMNS))
    mk[0, MK_KIND] = 1.0 if inverse else 0.0
    mk[0, MK_CV] = float(cv)
    mk[0, MK_LOT] = 1.0
    mk[0, MK_OI_LOWER] = row.oi_lower
    mk[0, MK_OI_UPPER] = row.oi_upper
    mk[0, MK_IMF] = row.imf_factor
    mk[0, MK_IM_SLOPE] = row.im_slope
    mk[0, MK_MM_SLOPE] = row.mm_slope
    mk[0, MK_UPNL : MK_UPNL_MAX + 1] = row.upnl
    mki = np.zeros((1, 3), dtype=np.int64)
    mki[0, MKI_TIER_START] = 0
    mki[0, MKI_TIER_COUNT] = len(row.tiers)
    mki[0, MKI_SETTLE] = 0
    tiers = np.array(row.tiers, dtype=np.float64)
    ascale = np.array([10.0**decimals])
    v, im, mm = slot_quanta(0, float(lots), float(mark), float(oi_contracts), mk, mki, tiers,
                            ascale, cost_quanta)
    return int(v), int(im), int(mm)


def dydx_position_quanta(model: MarginModel, *, quantums: int, atomic_resolution: int,
                         price: int, exponent: int,
                         open_interest: int = 0) -> tuple[int, int, int]:
    """A dYdX position of ``quantums`` base quantums at ``price * 10**exponent``."""
    return position_quanta(
        model, lots=quantums, cv=Decimal(1).scaleb(atomic_resolution),
        mark=Decimal(price).scaleb(exponent), decimals=DYDX_QUOTE_DECIMALS,
        oi_contracts=open_interest)


def drift_position_quanta(model: MarginModel, *, base_asset_amount: int,
                          oracle_price: int) -> tuple[int, int, int]:
    """A Drift position of ``base_asset_amount`` (BASE_PRECISION) at ``oracle_price``
    (PRICE_PRECISION): one contract is one 1e-9 base unit."""
    return position_quanta(
        model, lots=base_asset_amount, cv=Decimal(1) / DRIFT_BASE_PRECISION,
        mark=Decimal(oracle_price) / DRIFT_PRICE_PRECISION, decimals=DRIFT_QUOTE_DECIMALS)
