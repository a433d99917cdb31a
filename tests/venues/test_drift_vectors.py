"""Drift protocol-v2's own test vectors, run against solvency's engine functions.

Source: github.com/drift-labs/protocol-v2 at commit 0ae3e3b1db782a6765c3525b3dec38ad4d9d3a62
(2026-04-01), files under ``programs/drift/src/``: ``math/margin/tests.rs``,
``state/perp_market/tests.rs``, ``math/liquidation/tests.rs`` and
``controller/liquidation/tests.rs``. Each case id is
``protocol-v2@0ae3e3b1/<file>/<test>[/<step>]``; expected numbers are Drift's literals.
Units are converted in ``tests/venues/_units`` only (QUOTE_PRECISION 1e6 = one USDC
quantum, BASE_PRECISION 1e9, PRICE_PRECISION 1e6, MARGIN_PRECISION 1e4, SPOT_IMF_PRECISION
1e6, LIQUIDATION_FEE_PRECISION 1e6).

Per-position margin runs through :func:`solvency.core.margin.kernels.slot_quanta` (the
function the engine sums); the size premium through
:func:`solvency.core.margin.kernels.drift_margin_ratio` and its plain twin
:meth:`SizePremiumModel.ratio_bp`; liquidation size through the engine's policy
(:func:`solvency.core.liquidation.policy.liquidation_size_reference` and its vectorized
twin) and :func:`solvency.core.liquidation.penalty.drift_base_to_cover_margin_shortage`.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from solvency.core.liquidation.penalty import (
    drift_base_to_cover_margin_shortage,
    liquidation_penalty_quanta,
)
from solvency.core.liquidation.policy import (
    LiquidationPolicy,
    liquidation_size,
    liquidation_size_reference,
    policy_for,
)
from solvency.core.margin.kernels import drift_margin_ratio
from solvency.core.margin.models import SizePremiumModel, drift_unrealized_asset_weight_bp
from tests.venues._units import (
    DRIFT_BASE_PRECISION,
    DRIFT_LIQUIDATION_FEE_PRECISION,
    DRIFT_MARGIN_PRECISION,
    DRIFT_PRICE_PRECISION,
    DRIFT_SPOT_IMF_PRECISION,
    drift_imf,
    drift_position_quanta,
    drift_ratio,
)

REPO = "protocol-v2@0ae3e3b1/programs/drift/src"
MARGIN = f"{REPO}/math/margin/tests.rs"
PERP_MARKET = f"{REPO}/state/perp_market/tests.rs"
MATH_LIQ = f"{REPO}/math/liquidation/tests.rs"
CONTROLLER = f"{REPO}/controller/liquidation/tests.rs"
QUOTE = 10**6


def market(initial: int, maintenance: int, imf: int = 0) -> SizePremiumModel:
    """A Drift perp market's margin fields as a venue file states them."""
    return SizePremiumModel(imr=drift_ratio(initial), mmr=drift_ratio(maintenance),
                            imf_factor=drift_imf(imf))


# ------------------------------------------------------------------- math/margin/tests.rs
# spot_market_asset_weight: liability weight 11,000 (initial), size 1000 tokens (1e12 in
# AMM_RESERVE_PRECISION), the size premium of calculate_size_premium_liability_weight.
LIABILITY_CASES = {
    "imf_factor=0": (0, 11_000, 11_000),
    "imf_factor=10": (10, 11_000, 11_000),
    "imf_factor=10000": (10_000, 11_000, 11_962),
    "imf_factor=SPOT_IMF_PRECISION/10": (DRIFT_SPOT_IMF_PRECISION // 10, 11_000, 40_422),
    "maintenance imf_factor=SPOT_IMF_PRECISION/10": (DRIFT_SPOT_IMF_PRECISION // 10, 0, 31_622),
}


@pytest.mark.parametrize(("imf", "weight", "expected"), list(LIABILITY_CASES.values()),
                         ids=[f"{MARGIN}/spot_market_asset_weight/{k}" for k in LIABILITY_CASES])
def test_size_premium_liability_weight(imf: int, weight: int, expected: int) -> None:
    """Above 100 % on purpose: Drift does not cap the weight, neither does the kernel."""
    assert drift_margin_ratio(weight, 1000 * DRIFT_BASE_PRECISION, imf) == expected
    twin = SizePremiumModel(imr=Decimal(1), mmr=Decimal(0), imf_factor=drift_imf(imf))
    assert twin.ratio_bp(drift_ratio(weight), Decimal(1000)) == expected


@pytest.mark.parametrize(("oracle", "expected"), [(22_050, 13_555_327_867),
                                                  (21_050, 12_940_573_769)],
                         ids=[f"{MARGIN}/calculate_user_equity_value_tests/pmr",
                              f"{MARGIN}/calculate_user_equity_value_tests/pmr_2"])
def test_perp_initial_margin_requirement(oracle: int, expected: int) -> None:
    """margin_ratio_initial 1000, imf_factor 1000, short 6.147540983 base: the initial
    requirement, QUOTE_PRECISION, rounded down (the size premium 824 bp stays below 1000)."""
    _v, im, _mm = drift_position_quanta(market(1000, 500, 1000),
                                        base_asset_amount=-(12_295_081_967 // 2),
                                        oracle_price=oracle * DRIFT_PRICE_PRECISION)
    assert im == expected


def test_pmr_difference() -> None:
    """``calculate_user_equity_value_tests``: ``pmr - pmr_2 == 614754098``."""
    model = market(1000, 500, 1000)
    base = -(12_295_081_967 // 2)
    first = drift_position_quanta(model, base_asset_amount=base,
                                  oracle_price=22_050 * DRIFT_PRICE_PRECISION)[1]
    second = drift_position_quanta(model, base_asset_amount=base,
                                   oracle_price=21_050 * DRIFT_PRICE_PRECISION)[1]
    assert first - second == 614_754_098


def test_premium_never_below_the_ratio() -> None:
    """Bounded (``is_bounded`` true for perps): a tiny size keeps the set ratio, not
    ``0.8 r``."""
    assert drift_margin_ratio(500, 0, 1000) == 500
    assert drift_margin_ratio(500, 1, 1000) == 500


# calculate_user_equity_value_tests: PerpMarket::get_unrealized_asset_weight with
# unrealized_pnl_initial_asset_weight 10,000 and unrealized_pnl_imf_factor = imf_factor =
# 1,000, Initial; PnL in QUOTE_PRECISION. Drift's weight on positive PnL: the venue's
# arithmetic (through the engine's margin sums: tests/venues/test_drift_upnl.py).
PNL_24K = 24_282_786_896
UNREALIZED_WEIGHT_CASES = {
    "uaw": (22_699_050_905, 9_559),
    "position_unrealized_pnl": (PNL_24K, 9_516),
    "position_unrealized_pnl*10": (PNL_24K * 10, 7_368),
    "position_unrealized_pnl*100": (PNL_24K * 100, 4_299),
    "position_unrealized_pnl*1000": (PNL_24K * 1000, 1_855),
    "position_unrealized_pnl*10000": (PNL_24K * 10000, 663),
    "position_unrealized_pnl*800000": (PNL_24K * 800000, 78),
    "uaw_2 (upnl_2 = 100 USDC)": (100 * QUOTE, 10_000),
}


@pytest.mark.parametrize(("pnl", "expected"), list(UNREALIZED_WEIGHT_CASES.values()),
                         ids=[f"{MARGIN}/calculate_user_equity_value_tests/{k}"
                              for k in UNREALIZED_WEIGHT_CASES])
def test_unrealized_pnl_initial_asset_weight(pnl: int, expected: int) -> None:
    assert drift_unrealized_asset_weight_bp(pnl, 10_000, 1_000) == expected


def test_unrealized_pnl_weight_sides() -> None:
    # a loss always weighs 10,000; maintenance takes the weight as set; weight 0 is 0
    assert drift_unrealized_asset_weight_bp(-5 * QUOTE, 0, 1_000) == 10_000
    assert drift_unrealized_asset_weight_bp(PNL_24K, 9_000, 1_000, initial=False) == 9_000
    assert drift_unrealized_asset_weight_bp(PNL_24K, 0, 1_000) == 0
    assert drift_unrealized_asset_weight_bp(PNL_24K, 8_000, 0) == 8_000


# -------------------------------------------------------------- state/perp_market/tests.rs
@pytest.mark.parametrize(("kind", "expected"), [("initial", 1000), ("maintenance", 500)],
                         ids=[f"{PERP_MARKET}/test/initial", f"{PERP_MARKET}/test/maintenance"])
def test_get_margin_ratio(kind: str, expected: int) -> None:
    """margin_ratio_initial MARGIN_PRECISION / 10, maintenance / 20, size BASE_PRECISION,
    no imf_factor: the ratios as set (Fill and high-leverage mode: not modelled)."""
    model = market(DRIFT_MARGIN_PRECISION // 10, DRIFT_MARGIN_PRECISION // 20)
    base = model.imr if kind == "initial" else model.mmr
    assert model.ratio_bp(base, Decimal(1)) == expected
    _v, im, mm = drift_position_quanta(model, base_asset_amount=DRIFT_BASE_PRECISION,
                                       oracle_price=100 * DRIFT_PRICE_PRECISION)
    assert (im if kind == "initial" else mm) == 100 * QUOTE * expected // DRIFT_MARGIN_PRECISION


# --------------------------------------------------------------- math/liquidation/tests.rs
# calculate_base_asset_amount_to_cover_margin_shortage: $10 shortage, margin ratio 1000
# (10x), oracle $100: (liquidation fee, IF fee, quote oracle price, expected base)
SHORTAGE_CASES = {
    "zero_percent_liquidation_fee": (0, 0, DRIFT_PRICE_PRECISION, DRIFT_BASE_PRECISION),
    "usdc_not_one/99c": (0, 0, 99 * 10_000, 1_010_101_010),
    "usdc_not_one/101c": (0, 0, 101 * 10_000, 990_099_009),
    "one_percent_liquidation_fee": (DRIFT_LIQUIDATION_FEE_PRECISION // 100, 0,
                                    DRIFT_PRICE_PRECISION, DRIFT_BASE_PRECISION * 10 // 9),
    "one_percent_liquidation_fee_and_one_percent_if_liquidation_fee": (
        DRIFT_LIQUIDATION_FEE_PRECISION // 100, DRIFT_LIQUIDATION_FEE_PRECISION // 100,
        DRIFT_PRICE_PRECISION, 1_250_000_000),
}


@pytest.mark.parametrize(("fee", "if_fee", "quote_price", "expected"),
                         list(SHORTAGE_CASES.values()),
                         ids=[f"{MATH_LIQ}/calculate_base_asset_amount_to_cover_margin_shortage/{k}"
                              for k in SHORTAGE_CASES])
def test_base_to_cover_margin_shortage(fee: int, if_fee: int, quote_price: int,
                                       expected: int) -> None:
    got = drift_base_to_cover_margin_shortage(10 * QUOTE, 1000, fee, if_fee,
                                              100 * DRIFT_PRICE_PRECISION,
                                              quote_oracle_price=quote_price)
    assert got == expected
    if quote_price == DRIFT_PRICE_PRECISION:
        # the engine's policy (float, in lots of 1e-9 base, rounded up): the same size
        # within one lot of the truncating integer rule
        policy = LiquidationPolicy(name="t", source="t", as_of="t", sizing="drift",
                                   liquidator_fee_ppm=fee, insurance_fee_ppm=if_fee)
        lots = 10 * DRIFT_BASE_PRECISION
        size = liquidation_size_reference(
            policy, lots=lots, notional=1000.0, mm=100.0, collateral=90.0, mm_total=100.0)
        assert expected <= size <= expected + 1


# ------------------------------------------------------------ controller/liquidation/tests.rs
def drift_policy(buffer_ratio: int, liquidator_fee: int, if_fee: int) -> LiquidationPolicy:
    """The fixture's State.liquidation_margin_buffer_ratio (MARGIN_PRECISION) and market
    fees (LIQUIDATION_FEE_PRECISION) as policy ppm."""
    return LiquidationPolicy(name="t", source="t", as_of="t", sizing="drift",
                             margin_buffer_ppm=buffer_ratio * 100,
                             liquidator_fee_ppm=liquidator_fee, insurance_fee_ppm=if_fee)


CTRL = f"{CONTROLLER}/liquidate_perp::successful_liquidation_to_cover_margin_shortage"


@pytest.mark.parametrize("vectorized", [False, True], ids=[f"{CTRL}/reference",
                                                            f"{CTRL}/vectorized"])
def test_liquidation_to_cover_margin_shortage(vectorized: bool) -> None:
    """2 base long at $100, $5 of USDC, maintenance 500 bp, buffer MARGIN_PRECISION / 50
    (2 %), liquidator and IF fee 1 % each, order step 0.01 base (one lot): Drift closes
    1.8 base (liquidator base_asset_amount 1,800,000,000), the liquidator pays 178.2 USDC,
    the fund takes 1.8 USDC and the user is left at exactly 700 bp = maintenance + buffer.
    The open bid is cancelled first in Drift; it is not part of the position here."""
    policy = drift_policy(DRIFT_MARGIN_PRECISION // 50, DRIFT_LIQUIDATION_FEE_PRECISION // 100,
                          DRIFT_LIQUIDATION_FEE_PRECISION // 100)
    model = market(1000, 500)
    value, _im, mm = drift_position_quanta(model, base_asset_amount=2 * DRIFT_BASE_PRECISION,
                                           oracle_price=100 * DRIFT_PRICE_PRECISION)
    assert (value, mm) == (200 * QUOTE, 10 * QUOTE)
    collateral = 5 * QUOTE  # USDC 5, entry at the oracle: no PnL
    lots = 200  # order_step_size 10,000,000 = 0.01 base
    kw = {"notional": value / QUOTE, "mm": mm / QUOTE, "collateral": collateral / QUOTE,
          "mm_total": mm / QUOTE}
    if vectorized:
        close = int(liquidation_size(policy, lots=np.array([lots]),
                                     **{k: np.array([v]) for k, v in kw.items()})[0])
    else:
        close = liquidation_size_reference(policy, lots=lots, **kw)  # type: ignore[arg-type]
    assert close * 10_000_000 == 1_800_000_000
    closed_q = value * close // lots
    split = liquidation_penalty_quanta(notional_quanta=closed_q, surplus_quanta=10**12,
                                       liquidator_fee_ppm=policy.liquidator_fee_ppm,
                                       insurance_fee_ppm=policy.insurance_fee_ppm)
    assert closed_q - split.liquidator_quanta == 178_200_000  # liquidator quote -178.2
    assert split.insurance_quanta == 1_800_000  # market total_liquidation_fee
    left_value, _im, _mm = drift_position_quanta(
        model, base_asset_amount=2 * DRIFT_BASE_PRECISION - close * 10_000_000,
        oracle_price=100 * DRIFT_PRICE_PRECISION)
    left_collateral = collateral - split.liquidator_quanta - split.insurance_quanta
    assert left_collateral * DRIFT_MARGIN_PRECISION // left_value == 700


WHALE = f"{CONTROLLER}/liquidate_perp::successful_liquidation_long_perp_whale_imf_factor"
OPEN_ORDER_MARGIN_REQUIREMENT = QUOTE // 100  # constants.rs: per open order


@pytest.mark.parametrize(("imf", "expected"), [(1000, 140_014_010_000),
                                               (10_000, 1_040_104_010_000)],
                         ids=[f"{WHALE}/margin_req", f"{WHALE}/margin_req2"])
def test_whale_maintenance_requirement(imf: int, expected: int) -> None:
    """10,000 base long at $100 with a 1-base open bid: Drift margins the worst case, 10,001
    base, at 1400 bp (then 10400 bp = 104 % with imf_factor x 10: no cap), plus
    OPEN_ORDER_MARGIN_REQUIREMENT for the order (open orders are not modelled: added here)."""
    _v, _im, mm = drift_position_quanta(market(1000, 500, imf),
                                        base_asset_amount=10_001 * DRIFT_BASE_PRECISION,
                                        oracle_price=100 * DRIFT_PRICE_PRECISION)
    assert mm + OPEN_ORDER_MARGIN_REQUIREMENT == expected


def test_whale_liquidatable_only_above_100_percent() -> None:
    """The whale (1.5M USDC, 10,000 base bought at $150, now $100: 1,000,000 USDC of
    collateral) is liquidatable once the ratio passes 100 % (Drift: ``is_cross_margin_
    being_liquidated`` true after imf_factor x 10); a kernel cap at 100 % would keep it
    exactly at maintenance, not liquidatable. The preset's liquidation policy then takes
    Drift's 1-base step (liquidator base 1, quote -99 at the 1 % discount)."""
    collateral = 1_500_000 * QUOTE - 500_000 * QUOTE
    _v, _im, mm = drift_position_quanta(market(1000, 500, 10_000),
                                        base_asset_amount=10_000 * DRIFT_BASE_PRECISION,
                                        oracle_price=100 * DRIFT_PRICE_PRECISION)
    assert mm * DRIFT_MARGIN_PRECISION // (1_000_000 * QUOTE) == 10_400
    assert collateral < mm
    assert policy_for("drift").sizing == "drift"
