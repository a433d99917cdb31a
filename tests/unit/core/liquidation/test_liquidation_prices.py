"""Bankruptcy price, fillable price and insurance fund delta, held to dYdX v4's own tests.

Source: dydxprotocol/v4-chain protocol/x/clob/keeper/liquidations_test.go
(TestGetBankruptcyPriceInQuoteQuantums, TestGetFillablePrice,
TestGetLiquidationInsuranceFundDelta). Their fixtures: BTC at $50,000 and ETH at $3,000,
20% initial / 10% maintenance, USDC quote quantums of 1e-6, BTC base quantums 1e-8, ETH
1e-9. Case ids are dYdX's test names, shortened.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvency.core.liquidation import (
    bankruptcy_price_ticks,
    bankruptcy_prices,
    bankruptcy_quote_quanta,
    bankruptcy_share_quanta,
    fillable_price,
    fillable_prices,
    insurance_fund_delta_quanta,
)

D = 1_000_000  # one dollar in quote quantums
BTC_01_VALUE = 5_000 * D  # 0.1 BTC at $50,000
BTC_01_MM = 500 * D


# (delta_value, delta_mm, equity TNC, TMMR, expected B)
BANKRUPTCY_CASES = [
    (-BTC_01_VALUE, -BTC_01_MM, 499 * D, BTC_01_MM, 4_501_000_000),
    (BTC_01_VALUE, -BTC_01_MM, 499 * D, BTC_01_MM, -5_499_000_000),
    (-BTC_01_VALUE, -BTC_01_MM, 0, BTC_01_MM, 5_000_000_000),
    (-BTC_01_VALUE // 2, -BTC_01_MM // 2, 0, BTC_01_MM, 2_500_000_000),
    (BTC_01_VALUE // 2, -BTC_01_MM // 2, 0, BTC_01_MM, -2_500_000_000),
    (BTC_01_VALUE, -BTC_01_MM, 0, BTC_01_MM, -5_000_000_000),
    (-BTC_01_VALUE, -BTC_01_MM, -100 * D, BTC_01_MM, 5_100_000_000),
    (BTC_01_VALUE, -BTC_01_MM, -100 * D, BTC_01_MM, -4_900_000_000),
    # 0.004 BTC ($200, MM $20) + 0.1 ETH ($300, MM $30), closing the ETH
    (-300 * D, -30 * D, 10 * D, 50 * D, 294_000_000),
    (300 * D, -30 * D, 10 * D, 50 * D, -306_000_000),
    (300 * D, -30 * D, 10 * D, 50 * D, -306_000_000),
    # 1 BTC, closing 21,347 base quantums (0.00021347 BTC = $10.6735)
    (-10_673_500, -1_067_350, 49_987 * D, 5_000 * D, 2_776),
    (10_673_500, -1_067_350, -49_987 * D, 5_000 * D, -2_775),
    (-50_000 * D, -5_000 * D, 50_001 * D, 5_000 * D, -1_000_000),
]
BANKRUPTCY_IDS = [
    "dydx-fully-closing-long-slightly-below-mm",
    "dydx-fully-closing-short-slightly-below-mm",
    "dydx-fully-closing-long-at-bankruptcy",
    "dydx-partially-closing-long-at-bankruptcy",
    "dydx-partially-closing-short-at-bankruptcy",
    "dydx-fully-closing-short-at-bankruptcy",
    "dydx-fully-closing-long-below-bankruptcy",
    "dydx-fully-closing-short-below-bankruptcy",
    "dydx-fully-closing-long-multiple-longs",
    "dydx-fully-closing-short-multiple-shorts",
    "dydx-fully-closing-short-long-and-short",
    "dydx-rounds-up-partial-long",
    "dydx-rounds-up-partial-short",
    "dydx-long-cannot-be-liquidated-at-a-loss",
]


@pytest.mark.parametrize(("dv", "dmm", "tnc", "tmmr", "expected"), BANKRUPTCY_CASES,
                         ids=BANKRUPTCY_IDS)
def test_bankruptcy_matches_dydx(dv: int, dmm: int, tnc: int, tmmr: int, expected: int) -> None:
    got = bankruptcy_quote_quanta(delta_value_quanta=dv, delta_mm_quanta=dmm,
                                  equity_quanta=tnc, mm_total_quanta=tmmr)
    assert got == expected


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"delta_mm_quanta": 1, "mm_total_quanta": 10}, "delta_mm_quanta must be <= 0"),
    ({"delta_mm_quanta": -1, "mm_total_quanta": 0}, "mm_total_quanta must be positive"),
], ids=["positive-delta-mm", "zero-total-mm"])
def test_bankruptcy_rejects_bad_input(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bankruptcy_quote_quanta(delta_value_quanta=-1, equity_quanta=0, **kwargs)


@settings(max_examples=300, deadline=None)
@given(value=st.integers(1, 10**12), mm_rate_ppm=st.integers(1, 500_000),
       other_mm=st.integers(0, 10**11), equity=st.integers(-10**12, 10**12),
       part_ppm=st.integers(1, 1_000_000), long=st.booleans())
def test_bankruptcy_close_never_worsens_health(value: int, mm_rate_ppm: int, other_mm: int,
                                               equity: int, part_ppm: int, long: bool) -> None:
    """Closing at exactly B leaves equity x TMMR no worse than equity x remaining MM
    (dYdX's test checks the same with CanUpdateSubaccounts)."""
    mm = max(1, value * mm_rate_ppm // 1_000_000)
    part_mm = mm * part_ppm // 1_000_000
    part_value = value * part_ppm // 1_000_000
    sign = 1 if long else -1
    tmm = mm + other_mm
    b = bankruptcy_quote_quanta(delta_value_quanta=-sign * part_value, delta_mm_quanta=-part_mm,
                                equity_quanta=equity, mm_total_quanta=tmm)
    equity_after = equity + b - sign * part_value
    assert equity_after * tmm >= equity * (tmm - part_mm)
    if part_mm == tmm:  # closing all requirement: exactly zero equity left
        assert equity_after == 0


@settings(max_examples=200, deadline=None)
@given(b=st.integers(-10**12, 10**12), n=st.integers(1, 10_000), data=st.data())
def test_bankruptcy_shares_sum_exactly(b: int, n: int, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=6)))
    points = [0, *cuts, n]
    parts = [bankruptcy_share_quanta(b, part_lots=hi, total_lots=n)
             - bankruptcy_share_quanta(b, part_lots=lo, total_lots=n)
             for lo, hi in itertools.pairwise(points)]
    assert sum(parts) == b
    for (lo, hi), p in zip(itertools.pairwise(points), parts, strict=True):
        assert p * n >= b * (hi - lo) - n  # each part within one quantum of pro rata


@pytest.mark.parametrize(("b", "lots", "tv", "expected"), [
    (4_501_000_000, 100, 100, 450_100),  # long: exact
    (4_501_000_001, 100, 100, 450_101),
    (-5_499_000_001, -100, 100, 549_900),  # short: floor
    (-1_000_000, 100, 100, -100),
], ids=["long-exact", "long-rounds-up", "short-rounds-down", "long-negative-any-price"])
def test_bankruptcy_price_ticks_rounds_away_from_the_fund(b: int, lots: int, tv: int,
                                                          expected: int) -> None:
    t = bankruptcy_price_ticks(b, lots=lots, tick_value_quanta=tv)
    assert t == expected
    assert lots * t * tv >= b  # closing at t receives at least B


def test_bankruptcy_prices_vectorized_linear_and_inverse() -> None:
    # linear: the dYdX long/short slightly-below-MM cases in dollars
    p = bankruptcy_prices("linear", size=np.array([0.1, -0.1]), value=np.array([5000.0, -5000.0]),
                          mm=np.array([500.0, 500.0]), equity=np.array([499.0, 499.0]),
                          mm_total=np.array([500.0, 500.0]))
    np.testing.assert_allclose(p, [45_010.0, 54_990.0])
    # inverse isolated long of 10,000 USD bought at 50,000 with 0.02 BTC margin: balance
    # 0.02 + 0.2 = 0.22 BTC, bankrupt where 0.22 = 10,000 / P -> P = 45,454.54...
    mark = 50_000.0
    value = -10_000.0 / mark
    p_inv = bankruptcy_prices("inverse", size=np.array([10_000.0]), value=np.array([value]),
                              mm=np.array([0.001]), equity=np.array([0.22 + value]),
                              mm_total=np.array([0.001]))
    np.testing.assert_allclose(p_inv, [10_000.0 / 0.22])
    # NaN where undefined
    nan = bankruptcy_prices("linear", size=np.array([0.0]), value=np.array([0.0]),
                            mm=np.array([0.0]), equity=np.array([1.0]),
                            mm_total=np.array([0.0]))
    assert np.isnan(nan).all()


# (value, mm, size in base quantums, TNC, TMMR, BA ppm, SMMR ppm, expected)
FILLABLE_CASES = [
    (BTC_01_VALUE, BTC_01_MM, 10_000_000, 499 * D, BTC_01_MM, 1_000_000, 100_000,
     Fraction(49_999, 100)),
    (BTC_01_VALUE, BTC_01_MM, 10_000_000, 499 * D, BTC_01_MM, 2_000_000, 100_000,
     Fraction(49_998, 100)),
    (BTC_01_VALUE, BTC_01_MM, 10_000_000, 499 * D, BTC_01_MM, 1_000_000, 200_000,
     Fraction(49_998, 100)),
    (-BTC_01_VALUE, BTC_01_MM, -10_000_000, 499 * D, BTC_01_MM, 1_000_000, 100_000,
     Fraction(50_001, 100)),
    (-BTC_01_VALUE, BTC_01_MM, -10_000_000, 499 * D, BTC_01_MM, 2_000_000, 100_000,
     Fraction(50_002, 100)),
    (-BTC_01_VALUE, BTC_01_MM, -10_000_000, 499 * D, BTC_01_MM, 1_000_000, 200_000,
     Fraction(50_002, 100)),
    (BTC_01_VALUE, BTC_01_MM, 10_000_000, 0, BTC_01_MM, 1_000_000, 100_000, Fraction(495)),
    (-BTC_01_VALUE, BTC_01_MM, -10_000_000, 0, BTC_01_MM, 1_000_000, 100_000, Fraction(505)),
    (BTC_01_VALUE, BTC_01_MM, 10_000_000, -500 * D, BTC_01_MM, 1_000_000, 100_000,
     Fraction(495)),
    (-BTC_01_VALUE, BTC_01_MM, -10_000_000, -500 * D, BTC_01_MM, 1_000_000, 100_000,
     Fraction(505)),
    (300 * D, 30 * D, 100_000_000, 10 * D, 50 * D, 1_000_000, 100_000, Fraction(372, 125)),
    (BTC_01_VALUE, BTC_01_MM, 10_000_000, 499 * D, BTC_01_MM, 2**32 - 1, 100_000,
     Fraction(495)),
    (BTC_01_VALUE, BTC_01_MM, 10_000_000, 499 * D, BTC_01_MM, 1_000_000, 1,
     Fraction(4_999_999_999, 10_000_000)),
    (BTC_01_VALUE, BTC_01_MM, 10_000_000, 499 * D, BTC_01_MM, 1_000_000, 1_000_000,
     Fraction(49_990, 100)),
]
FILLABLE_IDS = [
    "dydx-long-slightly-below-mm", "dydx-long-bankruptcy-adjustment-2e6",
    "dydx-long-smmr-2e5", "dydx-short-slightly-below-mm",
    "dydx-short-bankruptcy-adjustment-2e6", "dydx-short-smmr-2e5",
    "dydx-long-at-bankruptcy", "dydx-short-at-bankruptcy", "dydx-long-below-bankruptcy",
    "dydx-short-below-bankruptcy", "dydx-multiple-long-positions",
    "dydx-bankruptcy-adjustment-max-uint32", "dydx-smmr-1", "dydx-smmr-one-million",
]


@pytest.mark.parametrize(("value", "mm", "size", "tnc", "tmmr", "ba", "smmr", "expected"),
                         FILLABLE_CASES, ids=FILLABLE_IDS)
def test_fillable_price_matches_dydx(value: int, mm: int, size: int, tnc: int, tmmr: int,
                                     ba: int, smmr: int, expected: Fraction) -> None:
    got = fillable_price(position_value_quanta=value, position_mm_quanta=mm, position_size=size,
                         equity_quanta=tnc, mm_total_quanta=tmmr, bankruptcy_adjustment_ppm=ba,
                         spread_to_mm_ratio_ppm=smmr)
    assert got == expected
    est = fillable_prices(value=np.array([float(value)]), mm=np.array([float(mm)]),
                          size=np.array([float(size)]), equity=np.array([float(tnc)]),
                          mm_total=np.array([float(tmmr)]), bankruptcy_adjustment_ppm=ba,
                          spread_to_mm_ratio_ppm=smmr)
    np.testing.assert_allclose(est, [float(expected)], rtol=1e-12)


# (fill quote quantums received, B, max fee ppm, expected delta)
IF_DELTA_CASES = [
    (5_610_000_000, 5_100_000_000, 5_000, 28_050_000),
    (5_610_000_000, 5_100_000_000, 25_000, 140_250_000),
    (5_610_000_000, 5_100_000_000, 1_000_000, 510_000_000),
    (-4_410_000_000, -4_900_000_000, 5_000, 22_050_000),
    (-4_410_000_000, -4_900_000_000, 25_000, 110_250_000),
    (-4_410_000_000, -4_900_000_000, 1_000_000, 490_000_000),
    (5_105_100_000, 5_100_000_000, 5_000, 5_100_000),
    (-4_895_100_000, -4_900_000_000, 5_000, 4_900_000),
    (5_100_000_000, 5_100_000_000, 5_000, 0),
    (-4_900_000_000, -4_900_000_000, 5_000, 0),
    (5_049_000_000, 5_100_000_000, 5_000, -51_000_000),
    (-4_949_000_000, -4_900_000_000, 5_000, -49_000_000),
    (0, -4_900_000_000, 5_000, 0),
]
IF_DELTA_IDS = [
    "dydx-long-above-bankruptcy-pays-max-fee",
    "dydx-long-above-bankruptcy-max-fee-25000",
    "dydx-long-above-bankruptcy-max-fee-one-million",
    "dydx-short-above-bankruptcy-pays-max-fee",
    "dydx-short-above-bankruptcy-max-fee-25000",
    "dydx-short-above-bankruptcy-max-fee-one-million",
    "dydx-long-above-bankruptcy-pays-less-than-max",
    "dydx-short-above-bankruptcy-pays-less-than-max",
    "dydx-long-at-bankruptcy-delta-0",
    "dydx-short-at-bankruptcy-delta-0",
    "dydx-long-below-bankruptcy-fund-covers",
    "dydx-short-below-bankruptcy-fund-covers",
    "dydx-delta-quote-quantums-zero",
]


@pytest.mark.parametrize(("fill", "b", "fee", "expected"), IF_DELTA_CASES, ids=IF_DELTA_IDS)
def test_insurance_fund_delta_matches_dydx(fill: int, b: int, fee: int, expected: int) -> None:
    got = insurance_fund_delta_quanta(fill_quote_quanta=fill, bankruptcy_quanta=b,
                                      max_liquidation_fee_ppm=fee)
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(fill=st.integers(-10**13, 10**13), b=st.integers(-10**13, 10**13),
       fee=st.integers(0, 1_000_000))
def test_insurance_fee_never_exceeds_surplus(fill: int, b: int, fee: int) -> None:
    d = insurance_fund_delta_quanta(fill_quote_quanta=fill, bankruptcy_quanta=b,
                                    max_liquidation_fee_ppm=fee)
    if fill >= b:
        assert 0 <= d <= fill - b  # a solvent close stays solvent after the fee
    else:
        assert d == fill - b  # the fund pays exactly the shortfall
