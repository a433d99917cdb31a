"""Margin models held to the venues' own published numbers.

Every case names where its numbers come from (document or repository path, and when it
was read: 2025). Each is checked twice: against the plain twin ``model.requirement`` and
against the numba kernel :func:`solvency.core.margin.kernels.requirement` fed the unified
row of :func:`solvency.core.margin.models.risk_row`. No network at test time.
"""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from solvency.core.margin.kernels import requirement
from solvency.core.margin.models import (
    MarginModel,
    MarginTier,
    OIScaledModel,
    SizeLinearModel,
    SizePremiumModel,
    TieredModel,
    derive_amounts,
    risk_row,
)
from solvency.core.model.presets import load_preset

D = Decimal


def kernel(model: MarginModel, *, notional: float | None = None, mark: float = 1.0,
           contracts: float | None = None, cv: float = 1.0, inverse: bool = False,
           oi_contracts: float = 0.0) -> tuple[float, float, float, float]:
    """Run the kernel for one position; linear by default with ``mark = 1`` so that the
    number of contracts equals the notional."""
    row = risk_row(model)
    tiers = np.array(row.tiers, dtype=np.float64)
    if contracts is None:
        assert notional is not None
        contracts = notional / (cv * mark)
    return requirement(1.0 if inverse else 0.0, cv, 1.0, mark, contracts, 0, len(row.tiers),
                       tiers, row.oi_lower, row.oi_upper, oi_contracts, row.imf_factor,
                       row.im_slope, row.mm_slope, 0.0, 0.0)


def both(model: MarginModel, notional: float, size_base: float, oi: float = 0.0,
         **kw: float) -> list[tuple[float, float]]:
    """``(im, mm)`` from the twin and from the kernel (linear, mark 1, cv 1 unless given)."""
    twin = model.requirement(notional, size_base, oi)
    _v, n, im, mm = kernel(model, notional=notional, oi_contracts=oi, **kw)
    assert n == pytest.approx(notional, rel=1e-12)
    return [twin, (im, mm)]


def lev_tiers(rows: list[tuple[int, int, str]]) -> tuple[MarginTier, ...]:
    return tuple(MarginTier(D(f), D(m), D(1) / D(lev)) for f, lev, m in rows)


# --------------------------------------------------------------------------- Binance USD-M
# GET /fapi/v1/leverageBracket for BTCUSDT as stored in freqtrade/freqtrade
# freqtrade/exchange/binance_leverage_tiers.json @01d10aeb (mid-2024 snapshot; read 2025):
# (notionalFloor, initialLeverage, maintMarginRatio, cum).
BINANCE_BTCUSDT = [
    (0, 125, "0.004", 0), (50_000, 100, "0.005", 50), (600_000, 75, "0.0065", 950),
    (3_000_000, 50, "0.01", 11_450), (12_000_000, 25, "0.02", 131_450),
    (70_000_000, 20, "0.025", 481_450), (100_000_000, 10, "0.05", 2_981_450),
    (230_000_000, 5, "0.1", 14_481_450), (480_000_000, 4, "0.125", 26_481_450),
    (600_000_000, 3, "0.15", 41_481_450), (800_000_000, 2, "0.25", 121_481_450),
    (1_200_000_000, 1, "0.5", 421_481_450),
]
BINANCE_ETHUSDT_CUM = [0, 50, 950, 11_450, 131_450, 381_450, 2_006_450, 9_506_450,
                       17_506_450, 27_506_450, 80_506_450, 280_506_450]
BINANCE_BTCUSDT_QUARTERLY_CUM = [0, 500, 11_750, 111_750, 211_750, 461_750, 2_461_750,
                                 12_461_750]


def test_derive_amounts_reproduces_binance_btcusdt_cum_column() -> None:
    """freqtrade binance_leverage_tiers.json @01d10aeb, BTC/USDT:USDT info.cum (read 2025)."""
    tiers = derive_amounts(lev_tiers([(f, lev, m) for f, lev, m, _ in BINANCE_BTCUSDT]),
                           continuous_initial=False)
    assert [t.maintenance_amount for t in tiers] == [D(c) for *_, c in BINANCE_BTCUSDT]
    assert all(t.initial_amount == 0 for t in tiers)


@pytest.mark.parametrize(("market", "cum"), [
    ("BTC-PERP", [c for *_, c in BINANCE_BTCUSDT]),
    ("ETH-PERP", BINANCE_ETHUSDT_CUM),
    ("BTC-FUT-260327", BINANCE_BTCUSDT_QUARTERLY_CUM),
], ids=["freqtrade-binance_leverage_tiers@01d10aeb-BTCUSDT-cum",
        "freqtrade-binance_leverage_tiers@01d10aeb-ETHUSDT-cum",
        "freqtrade-binance_leverage_tiers@01d10aeb-BTCUSDT_240927-cum"])
def test_binance_preset_cum_column(market: str, cum: list[int]) -> None:
    model = load_preset("binance").markets[market].margin
    assert isinstance(model, TieredModel)
    assert [t.maintenance_amount for t in model.tiers] == [D(c) for c in cum]


@pytest.mark.parametrize(("notional", "tier"), [
    (10_000.0, 0), (50_000.0, 1), (599_999.0, 1), (600_000.0, 2), (5_000_000.0, 3),
    (20_000_000.0, 4), (90_000_000.0, 5), (150_000_000.0, 6), (300_000_000.0, 7),
    (500_000_000.0, 8), (700_000_000.0, 9), (1_000_000_000.0, 10), (1_500_000_000.0, 11),
], ids=lambda v: f"{v}")
def test_binance_btcusdt_bracket_requirement(notional: float, tier: int) -> None:
    """MM = notional x maintMarginRatio - cum, IM = notional / initialLeverage (Binance 'How
    to Calculate Liquidation Price of USDⓈ-M Futures Contracts'; brackets from freqtrade
    binance_leverage_tiers.json @01d10aeb; read 2025)."""
    model = load_preset("binance").markets["BTC-PERP"].margin
    floor, lev, mmr, cum = BINANCE_BTCUSDT[tier]
    assert notional >= floor
    mm = notional * float(mmr) - cum
    im = notional / lev
    for got_im, got_mm in both(model, notional, notional / 60_000.0, mark=60_000.0):
        assert got_mm == pytest.approx(mm, rel=1e-12)
        assert got_im == pytest.approx(im, rel=1e-12)


# The FAQ's own worked example uses the BTCUSDT table it printed (2021-03-18 announcement
# "Updates to Leverage and Margin Tiers of Binance Futures Contracts"): maintenance amount
# on level 3 = 250,000 x (1% - 0.5%) + 50 = 1,300 USDT; a 264,000 USDT position has MMR 1%.
FAQ_2021_TABLE = lev_tiers([
    (0, 125, "0.004"), (50_000, 100, "0.005"), (250_000, 50, "0.01"),
    (1_000_000, 20, "0.025"), (10_000_000, 10, "0.05"), (20_000_000, 5, "0.1"),
    (50_000_000, 4, "0.125"), (100_000_000, 3, "0.15"), (200_000_000, 2, "0.25"),
    (300_000_000, 1, "0.5"),
])


@pytest.mark.parametrize(("notional", "mmr", "cum"), [
    (500_000.0, 0.01, 1_300.0), (264_000.0, 0.01, 1_300.0), (40_000.0, 0.004, 0.0),
], ids=["binance-faq-usdm-liq-price-500k-cum-1300",
        "binance-faq-usdm-liq-price-264k-mmr-1pct",
        "binance-faq-usdm-liq-price-level-1"])
def test_binance_faq_worked_example(notional: float, mmr: float, cum: float) -> None:
    """Binance FAQ 'How to Calculate Liquidation Price of USDⓈ-M Futures Contracts'
    (b3c689c1f50a44cabb3a84e663b81d93, read 2025)."""
    model = TieredModel(tiers=FAQ_2021_TABLE)
    t = model.tiers[model.tier_index(notional)]
    assert float(t.mmr) == mmr and float(t.maintenance_amount or 0) == cum
    for _im, mm in both(model, notional, notional / 25_000.0, mark=25_000.0):
        assert mm == pytest.approx(notional * mmr - cum, rel=1e-12)


def test_binance_coinm_faq_examples() -> None:
    """Binance FAQ 'How to Calculate Liquidation Price of COIN-M Futures Contracts'
    (ceccfcfb4e3a45e3b48b0b1bb1a8ae46, read 2025): 100 BTCUSD contracts at 25,000 are
    100 x 100 / 25,000 = 0.4 BTC, MM = 0.4 x 0.4% - 0 = 0.0016 BTC; a 300 BTC position has
    MMR 12.5% and maintenance amount 11.605 BTC."""
    inst = load_preset("binance").markets["BTC-USD-INVERSE"]
    model = inst.margin
    assert isinstance(model, TieredModel)
    assert model.tiers[model.tier_index(300.0)].maintenance_amount == D("11.605")
    assert model.tiers[model.tier_index(300.0)].mmr == D("0.125")
    value, notional, _im, mm = kernel(model, mark=25_000.0, contracts=100.0, cv=100.0,
                                      inverse=True)
    assert value == pytest.approx(-0.4) and notional == pytest.approx(0.4)
    assert mm == pytest.approx(0.0016, rel=1e-12)
    assert model.requirement(0.4, 0.4, 0.0)[1] == pytest.approx(0.0016, rel=1e-12)
    contracts = 300.0 * 25_000.0 / 100.0
    _v, n, _im, mm = kernel(model, mark=25_000.0, contracts=contracts, cv=100.0, inverse=True)
    assert n == pytest.approx(300.0)
    assert mm == pytest.approx(300 * 0.125 - 11.605, rel=1e-12)
    assert model.requirement(300.0, 300.0, 0.0)[1] == pytest.approx(25.895, rel=1e-12)


# --------------------------------------------------------------------------- dYdX v4
# dydxprotocol/v4-chain protocol/x/perpetuals/types/liquidity_tier_test.go
# (TestGetInitialMarginQuoteQuantums, commit 01a48f23; read 2025). Quantums are 1e-6 USDC;
# the margin models take any consistent unit, so the quantums are passed as floats and the
# Go rounding (BigRatRound up) is applied to the result.
DYDX_IMR_CASES = [
    ("initial margin 20%", 200_000, 0, 0, 0, 500_000, 100_000),
    ("initial margin 50%", 500_000, 0, 0, 0, 1_000_000, 500_000),
    ("initial margin 10%, quote quantums = 1, should round up to 1", 100_000, 0, 0, 0, 1, 1),
    ("initial margin 56.7243%, quote quantums = 123_456, should round up to 70_030",
     567_243, 0, 0, 0, 123_456, 70_030),
    ("base IMF = 20%, no OIMF since lower_cap = upper_cap = 0",
     200_000, 0, 0, 1_500_000_000_000, 500_000, 100_000),
    ("base IMF = 20%, scaling_factor = 0.5",
     200_000, 1_000_000_000_000, 2_000_000_000_000, 1_500_000_000_000, 500_000, 300_000),
    ("base IMF = 10%, scaling_factor = 1 since open_interest >> upper_cap",
     200_000, 25_000_000_000_000, 50_000_000_000_000, 80_000_000_000_000, 500_000, 500_000),
    ("base IMF = 10%, open_interest = lower_cap so scaling_factor = 0",
     200_000, 25_000_000_000_000, 50_000_000_000_000, 25_000_000_000_000, 500_000, 100_000),
    ("base IMF = 10%, lower_cap < open_interest < upper_cap, realistic numbers",
     200_000, 25_000_000_000_000, 60_000_000_000_000, 28_123_456_789_123, 500_000, 135_697),
]


def _round_up(x: float) -> int:
    # Go's BigRatRound(up) on an exact rational; a float sitting 1 ulp above an integer
    # (0.2 x 500_000 = 100000.00000000001) must not round to the next one.
    return math.ceil(x - 1e-6 * max(1.0, abs(x)) * 1e-6)


@pytest.mark.parametrize(("name", "ppm", "lo", "hi", "oi", "qq", "expected"), DYDX_IMR_CASES,
                         ids=[f"v4-chain-liquidity_tier_test.go-{c[0]}" for c in DYDX_IMR_CASES])
def test_dydx_get_initial_margin_quote_quantums(name: str, ppm: int, lo: int, hi: int, oi: int,
                                                qq: int, expected: int) -> None:
    model = OIScaledModel(imr=D(ppm) / D(1_000_000), maintenance_fraction=D("0.6"),
                          open_interest_lower_cap=D(lo), open_interest_upper_cap=D(hi))
    for im, _mm in both(model, float(qq), 0.0, float(oi)):
        assert _round_up(im) == expected


@pytest.mark.parametrize(("oi", "expected_ppm"), [
    (0, 200_000), (1_500_000, 600_000), (1_234_567, 387_653), (1_000_000, 200_000),
    (2_000_000, 1_000_000), (2_500_000, 1_000_000),
], ids=lambda v: f"v4-chain-liquidity_tier_test.go-TestGetAdjustedInitialMarginPpm-{v}")
def test_dydx_adjusted_initial_margin_ppm(oi: int, expected_ppm: int) -> None:
    """liquidity_tier_test.go TestGetAdjustedInitialMarginPpm (ppm rounded down), lower cap
    1_000_000, upper cap 2_000_000, base 200_000 ppm (read 2025)."""
    model = OIScaledModel(imr=D("0.2"), maintenance_fraction=D("0.5"),
                          open_interest_lower_cap=D(1_000_000),
                          open_interest_upper_cap=D(2_000_000))
    assert math.floor(model.adjusted_imr(float(oi)) * 1e6 + 1e-6) == expected_ppm
    _v, _n, im, _mm = kernel(model, notional=1_000_000.0, oi_contracts=float(oi))
    assert math.floor(im + 1e-6) == expected_ppm


@pytest.mark.parametrize(("imf_ppm", "mf_ppm", "expected_ppm"), [
    (150_000, 800_000, 120_000), (450_000, 770_000, 346_500), (637_239, 289_284, 184_343),
    (1_000_000, 1_000_000, 1_000_000), (0, 1_000_000, 0), (1_000_000, 0, 0),
], ids=lambda v: f"v4-chain-liquidity_tier_test.go-TestLiquidityTierGetMaintenanceMarginPpm-{v}")
def test_dydx_maintenance_margin(imf_ppm: int, mf_ppm: int, expected_ppm: int) -> None:
    """MMF = IMF x maintenance fraction (BigIntMulPpm, rounded down); OI does not scale it."""
    model = OIScaledModel(imr=D(imf_ppm) / D(1_000_000),
                          maintenance_fraction=D(mf_ppm) / D(1_000_000),
                          open_interest_lower_cap=D(1), open_interest_upper_cap=D(2))
    assert int(model.mmr * 1_000_000) == expected_ppm
    for _im, mm in both(model, 1_000_000.0, 0.0, 5.0):
        assert math.floor(mm + 1e-6) == expected_ppm


def test_dydx_preset_large_cap() -> None:
    """protocol/testing/genesis.sh Large-Cap: 20000 ppm IMF, 600000 ppm maintenance
    fraction, OI caps 0 (OIMF off) (v4-chain PR #2431, 2024-10-02; read 2025)."""
    for name in ("BTC-PERP", "ETH-PERP"):
        model = load_preset("dydx").markets[name].margin
        assert isinstance(model, OIScaledModel)
        assert (model.imr, model.mmr) == (D("0.02"), D("0.012"))
        for im, mm in both(model, 1_000_000.0, 10.0, 1e12):
            assert im == pytest.approx(20_000.0) and mm == pytest.approx(12_000.0)


# --------------------------------------------------------------------------- Hyperliquid
def _hl_deductions(rows: list[tuple[int, int]]) -> list[Fraction]:
    """The docs' recursion, written out independently with exact fractions."""
    out = [Fraction(0)]
    for (_f0, lev0), (f1, lev1) in itertools.pairwise(rows):
        out.append(out[-1] + f1 * (Fraction(1, 2 * lev1) - Fraction(1, 2 * lev0)))
    return out


HL_TABLES = {
    "mainnet-BTC": [(0, 40), (150_000_000, 20)],
    "mainnet-ETH": [(0, 25), (100_000_000, 15)],
    "testnet-BTC": [(0, 40), (10_000, 25), (50_000, 10), (100_000, 5), (300_000, 3)],
    "testnet-DOGE": [(0, 10), (20_000, 5), (100_000, 3)],
}


@pytest.mark.parametrize("table", sorted(HL_TABLES),
                         ids=lambda t: f"hyperliquid-docs-trading-margin-tiers-{t}")
def test_hyperliquid_margin_tiers(table: str) -> None:
    """Hyperliquid docs trading/margin-tiers (read 2025): maintenance_margin = notional x
    mmr - deduction, mmr = 1 / (2 x max leverage) (20x -> 2.5%), deduction recursion; the
    requirement is continuous at every tier bound."""
    rows = HL_TABLES[table]
    model = TieredModel(tiers=tuple(
        MarginTier(D(f), D(1) / (2 * D(lev)), D(1) / D(lev)) for f, lev in rows),
        continuous_initial=True)
    ded = _hl_deductions(rows)
    for (floor, lev), d, t in zip(rows, ded, model.tiers, strict=True):
        assert t.maintenance_amount == pytest.approx(D(d.numerator) / D(d.denominator))
        notional = float(floor) * 1.1 + 1.0
        mm = notional / (2 * lev) - float(d)
        for _im, got in both(model, notional, notional / 3_000.0, mark=3_000.0):
            assert got == pytest.approx(mm, rel=1e-12)
        if floor:
            below = model.requirement(float(floor) * (1 - 1e-12), 0.0, 0.0)[1]
            assert model.requirement(float(floor), 0.0, 0.0)[1] == pytest.approx(below)
    if table.startswith("mainnet"):
        preset = load_preset("hyperliquid").markets[table.split("-")[1] + "-PERP"].margin
        assert isinstance(preset, TieredModel)
        assert [(t.floor, t.mmr) for t in preset.tiers] == [(t.floor, t.mmr)
                                                            for t in model.tiers]


def test_hyperliquid_docs_20x_is_2_5_percent() -> None:
    """trading/margin-tiers: 'at 20x max leverage, maintenance_margin_rate = 2.5%'."""
    model = load_preset("hyperliquid").markets["BTC-PERP"].margin
    assert isinstance(model, TieredModel)
    assert model.tiers[1].mmr == D("0.025")
    assert model.tiers[1].maintenance_amount == D(1_875_000)


# --------------------------------------------------------------------------- Drift
MARGIN_PRECISION = 10_000
SPOT_IMF_PRECISION = 1_000_000
AMM_RESERVE_PRECISION = 10**9


def drift_size_premium(size: int, imf_factor: int, liability_weight: int,
                       precision: int) -> int:
    """Exact integer port of drift-labs/protocol-v2 programs/drift/src/math/margin.rs
    calculate_size_premium_liability_weight (read 2025)."""
    if imf_factor == 0:
        return liability_weight
    size_sqrt = math.isqrt(size * 10 + 1)  # 1e9 -> 1e10 -> 1e5
    numerator = liability_weight - liability_weight // 5
    premium = numerator + size_sqrt * imf_factor // (100_000 * SPOT_IMF_PRECISION // precision)
    return max(liability_weight, premium)


# programs/drift/src/math/margin/tests.rs::spot_market_asset_weight: size = 1000 base units
# (1000 * QUOTE_PRECISION at 6 decimals -> 1000e9 AMM precision), liability weights 11000
# (initial) and 0 (maintenance, SpotMarket::default), SPOT_WEIGHT_PRECISION = 1e4.
DRIFT_CASES = [
    ("imf_factor=0", 1000 * AMM_RESERVE_PRECISION, 0, 11_000, 11_000),
    ("imf_factor=10", 1000 * AMM_RESERVE_PRECISION, 10, 11_000, 11_000),
    ("imf_factor=10000", 1000 * AMM_RESERVE_PRECISION, 10_000, 11_000, 11_962),
    ("imf_factor=SPOT_IMF_PRECISION/10", 1000 * AMM_RESERVE_PRECISION, 100_000, 11_000,
     40_422),
    ("maintenance imf_factor=SPOT_IMF_PRECISION/10", 1000 * AMM_RESERVE_PRECISION, 100_000, 0,
     31_622),
]


@pytest.mark.parametrize(("name", "size", "imf", "weight", "expected"), DRIFT_CASES,
                         ids=[f"drift-margin-tests.rs-spot_market_asset_weight-{c[0]}"
                              for c in DRIFT_CASES])
def test_drift_size_premium_liability_weight(name: str, size: int, imf: int, weight: int,
                                             expected: int) -> None:
    assert drift_size_premium(size, imf, weight, MARGIN_PRECISION) == expected
    # Float twin: rate = max(w, 0.8 w + imf_factor x sqrt(size_base)) within 1 bp.
    model = SizePremiumModel(imr=D("0.1"), mmr=D("0.05"), imf_factor=D(imf) / D(10**6))
    rate = model.rate(weight / MARGIN_PRECISION, size / AMM_RESERVE_PRECISION)
    assert abs(rate - expected / MARGIN_PRECISION) <= 1e-4


@pytest.mark.parametrize(("price", "expected_pmr"), [(22_050, 13_555_327_867),
                                                     (21_050, 12_940_573_769)],
                         ids=["drift-margin-tests.rs-calculate_user_equity_value_tests-pmr",
                              "drift-margin-tests.rs-calculate_user_equity_value_tests-pmr_2"])
def test_drift_perp_margin_requirement(price: int, expected_pmr: int) -> None:
    """margin/tests.rs calculate_user_equity_value_tests: margin_ratio_initial 1000,
    imf_factor 1000, short 6.147540983 base at oracle 22050 (then 21050): initial margin
    requirement in QUOTE_PRECISION (read 2025). The size premium (824) stays below 1000."""
    base = 12_295_081_967 // 2
    ratio = drift_size_premium(base, 1000, 1000, MARGIN_PRECISION)
    assert ratio == 1000
    value_q = base * price * 10**6 // AMM_RESERVE_PRECISION  # base value, QUOTE_PRECISION
    assert value_q * ratio // MARGIN_PRECISION == expected_pmr
    model = SizePremiumModel(imr=D("0.1"), mmr=D("0.05"), imf_factor=D("0.001"))
    size = base / AMM_RESERVE_PRECISION
    for im, _mm in both(model, size * price, size, mark=float(price)):
        assert im * 10**6 == pytest.approx(expected_pmr, rel=1e-4)


@pytest.mark.parametrize("size_base", [0.5, 12.0, 300.0, 5_000.0, 40_000.0],
                         ids=lambda s: f"drift-margin.rs-size-premium-{s}")
def test_drift_float_twin_matches_integer_rule(size_base: float) -> None:
    """Our float twin and the kernel against the integer rule, for the preset's markets."""
    for name in ("BTC-PERP", "ETH-PERP"):
        model = load_preset("drift").markets[name].margin
        assert isinstance(model, SizePremiumModel)
        imf = int(model.imf_factor * 10**6)
        size = round(size_base * AMM_RESERVE_PRECISION)
        im_exact = drift_size_premium(size, imf, int(model.imr * MARGIN_PRECISION),
                                      MARGIN_PRECISION) / MARGIN_PRECISION
        mm_exact = drift_size_premium(size, imf, int(model.mmr * MARGIN_PRECISION),
                                      MARGIN_PRECISION) / MARGIN_PRECISION
        notional = size_base * 50_000.0
        for im, mm in both(model, notional, size_base, mark=50_000.0):
            assert abs(im / notional - im_exact) <= 1e-4
            assert abs(mm / notional - mm_exact) <= 1e-4


# --------------------------------------------------------------------------- Deribit
@pytest.mark.parametrize(("size_btc", "im_rate", "im_btc"), [
    (0.0, 0.02, 0.0), (25.0, 0.02125, 0.53125), (350.0, 0.0375, 13.125),
], ids=["deribit-docs-futures-im-0-btc", "deribit-docs-futures-im-25-btc",
        "deribit-docs-futures-im-350-btc"])
def test_deribit_documented_examples(size_btc: float, im_rate: float, im_btc: float) -> None:
    """Deribit docs, Futures (pages/docs/futures, read 2025): initial margin 2.0% + 0.5% per
    100 BTC of position, maintenance 1.5% + 0.5% per 100 BTC; examples 25 BTC -> 2.125%
    (0.53125 BTC) and 350 BTC -> 3.75% (13.125 BTC). BTC-PERPETUAL: inverse, USD 10."""
    model = load_preset("deribit").markets["BTC-USD-INVERSE"].margin
    assert isinstance(model, SizeLinearModel)
    mm_rate = 0.015 + 0.00005 * size_btc
    im, mm = model.requirement(size_btc, size_btc, 0.0)
    assert im == pytest.approx(im_btc, abs=1e-12)
    assert mm == pytest.approx(size_btc * mm_rate, abs=1e-12)
    mark = 40_000.0
    value, notional, kim, kmm = kernel(model, mark=mark, contracts=size_btc * mark / 10.0,
                                       cv=10.0, inverse=True)
    assert notional == pytest.approx(size_btc) and value == pytest.approx(-size_btc)
    assert kim == pytest.approx(im_btc, abs=1e-12)
    assert kmm == pytest.approx(size_btc * mm_rate, abs=1e-12)
    if size_btc:
        assert kim / notional == pytest.approx(im_rate)


# --------------------------------------------------------------------------- BitMEX
@pytest.mark.parametrize(("size_xbt", "mmr", "imr"), [
    (180.0, 0.005, 0.01), (199.0, 0.005, 0.01), (230.0, 0.01, 0.015), (349.0, 0.01, 0.015),
    (400.0, 0.015, 0.02), (600.0, 0.02, 0.025),
], ids=lambda v: f"bitmex-riskLimitsExamples-XBTUSD-{v}")
def test_bitmex_xbtusd_risk_limit_table(size_xbt: float, mmr: float, imr: float) -> None:
    """BitMEX 'Risk Limits Examples' (bitmex.com/app/riskLimitsExamples, read 2025): base MM
    0.50%, IM 1.00%, both +0.50% per step; < 200 XBT, < 350, < 500, < 650. Trade example:
    180 XBT -> MM 0.90 XBT; 230 XBT is one step up (1.00% / 1.50%)."""
    model = load_preset("bitmex").markets["BTC-USD-INVERSE"].margin
    assert isinstance(model, TieredModel)
    im, mm = model.requirement(size_xbt, size_xbt, 0.0)
    assert mm == pytest.approx(size_xbt * mmr) and im == pytest.approx(size_xbt * imr)
    mark = 40_000.0
    _v, n, kim, kmm = kernel(model, mark=mark, contracts=size_xbt * mark, cv=1.0, inverse=True)
    assert n == pytest.approx(size_xbt)
    assert kmm == pytest.approx(size_xbt * mmr) and kim == pytest.approx(size_xbt * imr)
    if size_xbt == 180.0:
        assert kmm == pytest.approx(0.90)
