"""dYdX v4-chain's own margin test vectors, run against solvency's engine functions.

Source: github.com/dydxprotocol/v4-chain at commit 84d4664bae71e3a077adaac67fb77ad19cd28d30
(2026-03-04), files ``protocol/x/perpetuals/types/liquidity_tier_test.go``,
``protocol/x/perpetuals/lib/lib_test.go`` and ``protocol/x/clob/keeper/liquidations_test.go``
(``TestIsLiquidatable``, through the engine; that file's bankruptcy, fillable-price and
insurance-fund vectors are in ``tests/unit/core/liquidation/test_liquidation_prices.py``).
Each case id is ``v4-chain@84d4664b/<file>/<Test>/<case name>``; the expected numbers are
dYdX's literals (a few cases assert only self-consistency in dYdX; there the expectation is
derived by dYdX's own formula and the case says so). Units are converted in ``tests/venues/_units``
only: quote quantums (1e-6 USDC), base quantums (``10**atomic_resolution`` coins),
``price * 10**exponent``, ppm.

Everything runs through :func:`solvency.core.margin.kernels.slot_quanta` (what the engine
sums) and the plain twins of :class:`solvency.core.margin.models.OIScaledModel`.
Not expressible (and not run): ``TestLiquidityTierValidate`` (impact notional, not a venue
file key), ``TestLiquidityTierGetMaxAbsFundingClampPpm`` (funding clamp, not modelled),
``TestGetSettlementPpmWithPerpetual`` (funding index settlement, a different unit), and
``TestGetMarginRequirementsInQuoteQuantums_2/Price and quantums are max uints`` (3.4e33
quote quantums: beyond int64 quanta, which the engine's money columns use).
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from solvency.core.margin.kernels import dydx_imf_ppm
from solvency.core.margin.models import OIScaledModel
from solvency.core.model.events import Deposit, Price
from solvency.core.model.venue import build_venue
from solvency.engine.engine import Engine
from tests.venues._units import dydx_position_quanta, ppm

REPO = "v4-chain@84d4664b"
LT = f"{REPO}/protocol/x/perpetuals/types/liquidity_tier_test.go"
LIB = f"{REPO}/protocol/x/perpetuals/lib/lib_test.go"


def tier(initial_ppm: int, fraction_ppm: int = 1_000_000, lower: int = 0,
         upper: int = 0) -> OIScaledModel:
    """A dYdX liquidity tier as a venue file states it (caps given in quote quantums)."""
    return OIScaledModel(imr=ppm(initial_ppm), maintenance_fraction=ppm(fraction_ppm),
                         open_interest_lower_cap=ppm(lower), open_interest_upper_cap=ppm(upper))


# ------------------------------------------------------------- liquidity_tier_test.go
MMF_CASES = {
    "15% initial margin, 80% maintenance fraction": (150_000, 800_000, 120_000),
    "45% initial margin, 77% maintenance fraction": (450_000, 770_000, 346_500),
    "63.7239% initial margin, 28.9284% maintenance fraction": (637_239, 289_284, 184_343),
    "100% initial margin, 100% maintenance fraction": (1_000_000, 1_000_000, 1_000_000),
    "0% initial margin, 100% maintenance fraction": (0, 1_000_000, 0),
    "0% initial margin, 0% maintenance fraction": (0, 0, 0),
    "100% initial margin, 0% maintenance fraction": (1_000_000, 0, 0),
}


@pytest.mark.parametrize(("im", "mf", "expected"), list(MMF_CASES.values()),
                         ids=[f"{LT}/TestLiquidityTierGetMaintenanceMarginPpm/{k}"
                              for k in MMF_CASES])
def test_maintenance_margin_ppm(im: int, mf: int, expected: int) -> None:
    assert tier(im, mf).maintenance_margin_ppm == expected


# (initial ppm, lower cap, upper cap, OI notional, quote quantums, expected IM)
IM_CASES = {
    "initial margin 20%": (200_000, 0, 0, 0, 500_000, 100_000),
    "initial margin 50%": (500_000, 0, 0, 0, 1_000_000, 500_000),
    "initial margin 10%, quote quantums = 1, should round up to 1": (
        100_000, 0, 0, 0, 1, 1),
    "initial margin 56.7243%, quote quantums = 123_456, should round up to 70_030": (
        567_243, 0, 0, 0, 123_456, 70_030),
    "base IMF = 20%, no OIMF since lower_cap = upper_cap = 0": (
        200_000, 0, 0, 1_500_000_000_000, 500_000, 100_000),
    "base IMF = 20%, scaling_factor = 0.5": (
        200_000, 1_000_000_000_000, 2_000_000_000_000, 1_500_000_000_000, 500_000, 300_000),
    "base IMF = 10%, scaling_factor = 1 since open_interest >> upper_cap": (
        200_000, 25_000_000_000_000, 50_000_000_000_000, 80_000_000_000_000, 500_000,
        500_000),
    "base IMF = 10%, open_interest = lower_cap so scaling_factor = 0": (
        200_000, 25_000_000_000_000, 50_000_000_000_000, 25_000_000_000_000, 500_000,
        100_000),
    "base IMF = 10%, lower_cap < open_interest < upper_cap, realistic numbers": (
        200_000, 25_000_000_000_000, 60_000_000_000_000, 28_123_456_789_123, 500_000,
        135_697),
}


@pytest.mark.parametrize(("im", "lower", "upper", "oi", "quote", "expected"),
                         list(IM_CASES.values()),
                         ids=[f"{LT}/TestGetInitialMarginQuoteQuantums/{k}" for k in IM_CASES])
def test_initial_margin_quote_quantums(im: int, lower: int, upper: int, oi: int, quote: int,
                                       expected: int) -> None:
    """A position worth ``quote`` quote quantums: 1 base quantum = 1e-6 coin at $1, so
    size in base quantums = notional in quote quantums (and the OI likewise)."""
    model = tier(im, 1_000_000, lower, upper)
    assert model.requirement_quanta(quote, oi, 10**6)[0] == expected
    _v, got_im, _mm = dydx_position_quanta(model, quantums=quote, atomic_resolution=-6,
                                           price=1, exponent=0, open_interest=oi)
    assert got_im == expected


ADJ_CASES = {
    "Zero open interest": (0, 200_000),
    "Open interest within bounds": (1_500_000, 600_000),
    "Open interest within bounds, rounded": (1_234_567, 387_653),
    "Open interest at lower bound": (1_000_000, 200_000),
    "Open interest at upper bound": (2_000_000, 1_000_000),
    "Open interest above upper bound": (2_500_000, 1_000_000),
}


@pytest.mark.parametrize(("oi", "expected"), list(ADJ_CASES.values()),
                         ids=[f"{LT}/TestGetAdjustedInitialMarginPpm/{k}" for k in ADJ_CASES])
def test_adjusted_initial_margin_ppm(oi: int, expected: int) -> None:
    """Caps 1,000,000 / 2,000,000 quote quantums, base IMF 200,000 ppm."""
    model = tier(200_000, 1_000_000, 1_000_000, 2_000_000)
    assert model.adjusted_imr_ppm(oi, 10**6) == expected
    assert dydx_imf_ppm(200_000, oi, 1_000_000, 2_000_000) == expected


def test_adjusted_initial_margin_ppm_no_upper_bound() -> None:
    """``TestGetAdjustedInitialMarginPpm/No upper bound, no increase``."""
    model = tier(200_000)
    assert model.adjusted_imr_ppm(1_500_000, 10**6) == 200_000
    assert dydx_imf_ppm(200_000, 1_500_000, 0, 0) == 200_000


# ------------------------------------------------------------------------- lib_test.go
# The fixture of TestGetNetNotionalInQuoteQuantums / TestGetNetCollateralAndMarginRequirements:
# atomic resolution -16, price 123_456_789_123 x 10^-5, IMF 200,000 ppm, fraction 500,000.
NOTIONAL_CASES = {"zero quantums": (0, 0), "positive quantums": (1_000_000_000_000, 123_456_789),
                  "negative quantums": (-1_000_000_000_000, -123_456_789)}


@pytest.mark.parametrize(("quantums", "expected"), list(NOTIONAL_CASES.values()),
                         ids=[f"{LIB}/TestGetNetNotionalInQuoteQuantums/{k}"
                              for k in NOTIONAL_CASES])
def test_net_notional(quantums: int, expected: int) -> None:
    """Truncated toward zero, both signs (``lib.BaseToQuoteQuantums``)."""
    v, _im, _mm = dydx_position_quanta(tier(200_000, 500_000), quantums=quantums,
                                       atomic_resolution=-16, price=123_456_789_123,
                                       exponent=-5)
    assert v == expected


# dYdX asserts NC = notional + balance and IMR/MMR = GetMarginRequirementsInQuoteQuantums;
# the numbers here are dYdX's formula on the fixture: notional 123,456,789 (.123 truncated),
# IM = ceil(20 % of it) = 24,691,358, MM = ceil(50 % of that) = 12,345,679.
NC_CASES = {
    "zero quantums": (0, 0, 0, 0, 0),
    "positive quantums": (1_000_000_000_000, 0, 123_456_789, 24_691_358, 12_345_679),
    "negative quantums": (-1_000_000_000_000, 0, -123_456_789, 24_691_358, 12_345_679),
    "positive quote balance": (-1_000_000_000_000, 1_000_000_000_000,
                               1_000_000_000_000 - 123_456_789, 24_691_358, 12_345_679),
    "negative quote balance": (1_000_000_000_000, -1_000_000_000_000,
                               123_456_789 - 1_000_000_000_000, 24_691_358, 12_345_679),
}


@pytest.mark.parametrize(("quantums", "balance", "nc", "im", "mm"), list(NC_CASES.values()),
                         ids=[f"{LIB}/TestGetNetCollateralAndMarginRequirements/{k}"
                              for k in NC_CASES])
def test_net_collateral_and_margin_requirements(quantums: int, balance: int, nc: int, im: int,
                                                mm: int) -> None:
    v, got_im, got_mm = dydx_position_quanta(
        tier(200_000, 500_000), quantums=quantums, atomic_resolution=-16,
        price=123_456_789_123, exponent=-5, open_interest=1_000_000_000_000)
    assert (balance + v, got_im, got_mm) == (nc, im, mm)


# TestGetMarginRequirementsInQuoteQuantums: atomic resolution 4, OI 1e12 base quantums,
# price 123_456_789_123 x 10^-5, IMF 200,000 ppm, fraction 500,000
MR_CASES = {
    "zero quantums": (0, 0, 0, 0, 0),
    "positive quantums": (1, 0, 0, 2_469_135_782_460_000, 1_234_567_891_230_000),
    "positive quantums, open interest above cap": (
        1, 1_000_000_000_000, 2_000_000_000_000, 12_345_678_912_300_000,
        1_234_567_891_230_000),
    "negative quantums": (-1, 0, 0, 2_469_135_782_460_000, 1_234_567_891_230_000),
    "negative quantums, open interest above cap": (
        -1, 1_000_000_000_000, 2_000_000_000_000, 12_345_678_912_300_000,
        1_234_567_891_230_000),
}


@pytest.mark.parametrize(("quantums", "lower", "upper", "im", "mm"), list(MR_CASES.values()),
                         ids=[f"{LIB}/TestGetMarginRequirementsInQuoteQuantums/{k}"
                              for k in MR_CASES])
def test_margin_requirements(quantums: int, lower: int, upper: int, im: int, mm: int) -> None:
    _v, got_im, got_mm = dydx_position_quanta(
        tier(200_000, 500_000, lower, upper), quantums=quantums, atomic_resolution=4,
        price=123_456_789_123, exponent=-5, open_interest=1_000_000_000_000)
    assert (got_im, got_mm) == (im, mm)


# TestGetMarginRequirementsInQuoteQuantums_2:
# (price, exponent, atomic resolution, quantums, IMF ppm, fraction ppm, OI, lower, upper,
#  expected IM, expected MM)
MR2_CASES = {
    "InitialMargin 100 BIPs, MaintenanceMargin 50 BIPs, atomic resolution 4": (
        55_550, -1, -4, 7_000, 10_000, 500_000, 0, 0, 0, 38_885_000, 19_442_500),
    "InitialMargin 100 BIPs, MaintenanceMargin 50 BIPs, negative exponent, atomic resolution 6": (
        42_000_000, -2, -6, -5_000, 10_000, 500_000, 0, 0, 0, 21_000_000, 10_500_000),
    "InitialMargin 10_000 BIPs (max), MaintenanceMargin 10_000 BIPs (max), atomic resolution 6": (
        55_550, -1, -6, 7_000, 1_000_000, 1_000_000, 0, 0, 0, 38_885_000, 38_885_000),
    "InitialMargin 100 BIPs, MaintenanceMargin 100 BIPs, atomic resolution 6": (
        55_550, -1, -6, 7_000, 10_000, 1_000_000, 0, 0, 0, 388_850, 388_850),
    "InitialMargin 0 BIPs (min), MaintenanceMargin 0 BIPs (min), atomic resolution 6": (
        55_550, -1, -6, 7_000, 0, 1_000_000, 0, 0, 0, 0, 0),
    "Price is zero, atomic resolution 6": (
        0, -1, -6, -7_000, 100, 1_000_000, 0, 0, 0, 0, 0),
    "InitialMargin 100 BIPs, MaintenanceMargin 50 BIPs, atomic resolution 6": (
        55_550, -1, -6, 7_000, 10_000, 500_000, 0, 0, 0, 388_850, 388_850 // 2),
    "InitialMargin 20%, MaintenanceMargin 10%, atomic resolution 6": (
        367_500, -1, -6, 12_000, 200_000, 500_000, 0, 0, 0, 88_200_000, 88_200_000 // 2),
    "InitialMargin 5%, MaintenanceMargin 3%, atomic resolution 6": (
        1_234_560, -1, -6, 74_523, 50_000, 600_000, 0, 0, 0, 460_015_575, 276_009_345),
    "InitialMargin 25%, MaintenanceMargin 15%, atomic resolution 6": (
        1_234_560, -1, -6, 74_523, 250_000, 600_000, 0, 0, 0, 2_300_077_872, 1_380_046_724),
    "OIMF: IM 20%, scaled to 60%, MaintenanceMargin 10%, atomic resolution 6": (
        367_500, -1, -6, 12_000, 200_000, 500_000, 408_163_265, 10_000_000_000_000,
        20_000_000_000_000, 264_599_559, 88_200_000 // 2),
    "OIMF: IM 20%, scaled to 100%, MaintenanceMargin 10%, atomic resolution 6": (
        367_500, -1, -6, 12_000, 200_000, 500_000, 1_000_000_000, 10_000_000_000_000,
        20_000_000_000_000, 441_000_000, 88_200_000 // 2),
    "OIMF: IM 20%, lower_cap < realistic open interest < upper_cap, MaintenanceMargin 10%, "
    "atomic resolution 6": (
        367_500, -1, -6, 12_000, 200_000, 500_000, 1_123_456_789, 25_000_000_000_000,
        50_000_000_000_000, 318_042_585, 88_200_000 // 2),
}


@pytest.mark.parametrize(
    ("price", "exponent", "resolution", "quantums", "im_ppm", "mf_ppm", "oi", "lower",
     "upper", "im", "mm"), list(MR2_CASES.values()),
    ids=[f"{LIB}/TestGetMarginRequirementsInQuoteQuantums_2/{k}" for k in MR2_CASES])
def test_margin_requirements_2(price: int, exponent: int, resolution: int, quantums: int,
                               im_ppm: int, mf_ppm: int, oi: int, lower: int, upper: int,
                               im: int, mm: int) -> None:
    model = tier(im_ppm, mf_ppm, lower, upper)
    if price == 0:
        # the engine refuses a zero mark (bad input); the requirement of a worthless
        # position is still 0 in the twin
        assert model.requirement_quanta(0, 0, 10**6) == (im, mm)
        return
    _v, got_im, got_mm = dydx_position_quanta(model, quantums=quantums,
                                              atomic_resolution=resolution, price=price,
                                              exponent=exponent, open_interest=oi)
    assert (got_im, got_mm) == (im, mm)


# ------------------------------------------------------------------ liquidations_test.go
LIQ = f"{REPO}/protocol/x/clob/keeper/liquidations_test.go"


def fixture_engine() -> Engine:
    """``constants.BtcUsd_20PercentInitial_10PercentMaintenance`` at $50,000: atomic
    resolution -8 (one lot is one base quantum), 20 % initial, maintenance fraction 50 %;
    a tick of $100 keeps a tick of one lot a whole quote quantum."""
    venue = build_venue({
        "name": "dydx", "assets": {"USDC": {"decimals": 6, "price_usd": "1"}},
        "markets": {"BTC-USD": {
            "kind": "linear_perp", "base": "BTC", "quote": "USDC", "tick_size": "100",
            "lot_size": "0.00000001", "model": "oi_scaled", "imr": "0.2",
            "maintenance_fraction": "0.5", "open_interest_lower_cap": "0",
            "open_interest_upper_cap": "0"}}})
    engine = Engine(venue)
    engine.apply(Price(id="p0", market="BTC-USD", price=Decimal(50_000)))
    return engine


# quote balance in dollars beside a 0.1 BTC long ($5,000 notional; None: no position)
IS_LIQUIDATABLE_CASES = {
    "Subaccount with no open positions but positive net collateral is not liquidatable": (
        None, 1, False),
    "Subaccount at initial margin requirements is not liquidatable": (10_000_000, -4_000, False),
    "Subaccount below initial but at maintenance margin requirements is not liquidatable": (
        10_000_000, -4_500, False),
    "Subaccount below maintenance margin requirements is liquidatable": (
        10_000_000, -4_501, True),
}


@pytest.mark.parametrize(("quantums", "balance_usd", "expected"),
                         list(IS_LIQUIDATABLE_CASES.values()),
                         ids=[f"{LIQ}/TestIsLiquidatable/{k}" for k in IS_LIQUIDATABLE_CASES])
def test_is_liquidatable(quantums: int | None, balance_usd: int, expected: bool) -> None:
    """Through the engine: the subaccount loaded with its USDC balance and position at the
    mark (``load_book``: balance = collateral - entry cost), then a mark at the same price;
    dYdX liquidates where ``MMR > 0 and MMR > NC`` (``lib/margin/risk.go``), so the case at
    exactly maintenance is not liquidated. (``no open positions but negative net
    collateral`` cannot be built: the engine holds no negative balance without a
    position.)"""
    engine = fixture_engine()
    if quantums is None:
        engine.apply(Deposit(id="d0", account="sub0", asset="USDC",
                             amount=Decimal(balance_usd)))
    else:
        collateral_q = (balance_usd + 5_000) * 10**6
        engine.load_book(["sub0"], "USDC", np.array([collateral_q]), np.array([0]),
                         np.array([0]), np.array([quantums]), np.array([500]))
    out = engine.apply(Price(id="p1", market="BTC-USD", price=Decimal(50_000)))
    liquidated = any(o.type == "liquidation" and o.account == "sub0" for o in out)
    assert liquidated is expected
