"""ADL ranking, quintiles, eligibility and allocation; socialized loss; insurance fund."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvency.core.liquidation import (
    FeeSharePolicy,
    adl_allocate,
    adl_eligible,
    adl_lights,
    adl_order,
    adl_quintiles,
    adl_scores,
    allocate_pro_rata,
    coverage_ratio,
    drift_funding_rate_delta,
    fee_share_update,
    socialize_funding_index,
    socialize_pro_rata_winners,
)

# BitMEX app/autoDeleveragingExamples: six longs (accounts 1..6)
BITMEX_QTY = np.array([10, 10, 20, 30, 20, 10], dtype=np.int64)
BITMEX_RANK = np.array([3.0, 6.0, 1.0, 4.0, 5.0, 2.0])


def test_bitmex_example_quintiles_and_lights() -> None:
    q = adl_quintiles(BITMEX_RANK, BITMEX_QTY)
    # accounts 1..6 at 80%, 20%, 100%, 60%, 40%, 80%
    assert q.tolist() == [4, 1, 5, 3, 2, 4]
    assert adl_lights(q).tolist() == [2, 5, 1, 3, 4, 2]


def test_bitmex_example_allocation_of_a_20_contract_short() -> None:
    # "a short position liquidated with size 20 and bankruptcy price of USD 650: accounts 2
    # and 5 ... Account 2 will have their entire position of 10 contracts closed, while the
    # remaining 10 contracts ... assigned to account 5"
    order = adl_order(BITMEX_RANK)
    got = adl_allocate(20, lots=BITMEX_QTY, order=order,
                       eligible=np.ones(6, dtype=np.bool_))
    assert got.tolist() == [0, 10, 0, 0, 10, 0]


@pytest.mark.parametrize(("ranking", "expected"), [
    ("bitmex", [0.1 * 110 / 20, -0.1 / (110 / 20)]),
    ("binance", [0.1 * 0.5, -0.1 / 0.5]),
    ("pro_rata", [1.0, 1.0]),  # eligibility, not the score, excludes losers
], ids=["bitmex-docs-formula", "binance-draft-formula", "pro-rata"])
def test_adl_scores(ranking: str, expected: list[float]) -> None:
    # long 1 BTC from 100 marked at 110 (bankrupt at 90); a loser marked at 90 from 100
    got = adl_scores(ranking,  # type: ignore[arg-type]
                     mark_value=np.array([110.0, 110.0]), entry_value=np.array([100.0, 122.2222]),
                     bankrupt_value=np.array([90.0, 90.0]), margin_ratio=np.array([0.5, 0.5]))
    assert got[0] == pytest.approx(expected[0])
    if ranking != "pro_rata":
        assert got[1] < 0
        pnl = (110.0 - 122.2222) / 122.2222
        assert got[1] == pytest.approx(pnl / (110 / 20) if ranking == "bitmex" else pnl / 0.5)


def test_adl_scores_short_side_signs() -> None:
    # short 1 from 100 marked at 90, bankrupt at 110: values are negative
    got = adl_scores("bitmex", mark_value=np.array([-90.0]), entry_value=np.array([-100.0]),
                     bankrupt_value=np.array([-110.0]))
    assert got[0] == pytest.approx(0.1 * 90 / 20)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(1, 40), need=st.integers(0, 5_000))
def test_adl_allocation_properties(data: st.DataObject, n: int, need: int) -> None:
    lots = np.array(data.draw(st.lists(st.integers(-300, 300), min_size=n, max_size=n)),
                    dtype=np.int64)
    entry = np.array(data.draw(st.lists(st.floats(50.0, 150.0), min_size=n, max_size=n)))
    mark = 100.0
    exec_price = data.draw(st.floats(80.0, 120.0))
    liquidated_long = data.draw(st.booleans())
    elig = adl_eligible(lots=lots, entry_price=entry, mark_price=mark, exec_price=exec_price,
                        liquidated_long=liquidated_long)
    side = np.sign(lots)
    # ADL never hits losing positions, nor the liquidated side
    assert (side[elig] * (mark - entry[elig]) > 0).all()
    assert (side[elig] * (exec_price - entry[elig]) > 0).all()
    assert (side[elig] == (-1 if liquidated_long else 1)).all()
    scores = np.array(data.draw(st.lists(st.floats(-10, 10), min_size=n, max_size=n)))
    order = adl_order(scores)
    got = adl_allocate(need, lots=lots, order=order, eligible=elig)
    avail = int(np.abs(lots[elig]).sum())
    assert int(got.sum()) == min(need, avail)  # allocation sums exactly
    assert (got <= np.abs(lots)).all() and (got >= 0).all()
    assert (got[~elig] == 0).all()
    # queue order: a position is touched only when all before it are fully used
    taken = got[order]
    full = np.where(elig, np.abs(lots), 0)[order]
    partial = np.flatnonzero((taken > 0) & (taken < full))
    assert partial.shape[0] <= 1
    if taken.any():
        last = int(np.flatnonzero(taken)[-1])
        assert (taken[:last] == full[:last]).all()


@settings(max_examples=200, deadline=None)
@given(total=st.integers(0, 10**15), weights=st.lists(st.integers(0, 10**9), min_size=1,
                                                     max_size=30))
def test_pro_rata_sums_exactly(total: int, weights: list[int]) -> None:
    w = np.array(weights, dtype=np.int64)
    got = allocate_pro_rata(total, w)
    if w.sum() > 0:
        assert int(got.sum()) == total
        ws = int(w.sum())
        for g, x in zip(got.tolist(), weights, strict=True):
            assert abs(g * ws - total * x) < ws  # within one unit of exact share
    else:
        assert int(got.sum()) == 0


@settings(max_examples=200, deadline=None)
@given(loss=st.integers(0, 10**12), profits=st.lists(st.integers(-10**9, 10**9), min_size=1,
                                                    max_size=30))
def test_socialize_pro_rata_winners(loss: int, profits: list[int]) -> None:
    p = np.array(profits, dtype=np.int64)
    got = socialize_pro_rata_winners(loss, profit_quanta=p)
    winners = np.maximum(p, 0)
    assert int(got.sum()) == min(loss, int(winners.sum()))
    assert (got <= winners).all() and (got >= 0).all()  # losers pay nothing


def test_socialize_pro_rata_deribit_style_example() -> None:
    # 900 of loss over winners with profits 1000, 2000, 0, -500: 300 and 600
    got = socialize_pro_rata_winners(900, profit_quanta=np.array([1_000, 2_000, 0, -500]))
    assert got.tolist() == [300, 600, 0, 0]


@settings(max_examples=200, deadline=None)
@given(loss=st.integers(0, 10**12), lots=st.lists(st.integers(-10**6, 10**6), min_size=1,
                                                 max_size=30).filter(any))
def test_socialize_funding_index_covers_loss(loss: int, lots: list[int]) -> None:
    delta, charges = socialize_funding_index(loss, lots=np.array(lots, dtype=np.int64))
    assert delta == Fraction(loss, sum(abs(x) for x in lots))
    assert int(charges.sum()) >= loss
    assert int(charges.sum()) - loss < len(lots)  # round-up below one quantum each


def test_drift_funding_rate_delta() -> None:
    # Drift protocol-v2 math/liquidation/tests.rs total_base_asset_amount_not_zero:
    # loss $100 over 7 long + 4 short base -> 9_090_910_000
    assert drift_funding_rate_delta(-100 * 10**6, base_long=7 * 10**9,
                                    base_short=-4 * 10**9) == 9_090_910_000
    with pytest.raises(ValueError, match="zero base"):
        drift_funding_rate_delta(-10**6, base_long=0, base_short=0)  # total_base_..._is_zero


def test_coverage_and_fee_share_hook() -> None:
    assert coverage_ratio(fund_quanta=50, open_interest_quanta=1_000) == Fraction(1, 20)
    assert coverage_ratio(fund_quanta=5, open_interest_quanta=0) == Fraction(10**18)
    pol = FeeSharePolicy(target_ppm=10_000, release_ppm=30_000, step_ppm=50_000,
                         min_share_ppm=100_000, max_share_ppm=500_000)
    low = fee_share_update(pol, fund_quanta=5, open_interest_quanta=1_000,
                           current_share_ppm=200_000)
    assert low == {"insurance_fee_share_ppm": "250000"}
    assert fee_share_update(pol, fund_quanta=20, open_interest_quanta=1_000,
                            current_share_ppm=200_000) == {}
    high = fee_share_update(pol, fund_quanta=40, open_interest_quanta=1_000,
                            current_share_ppm=120_000)
    assert high == {"insurance_fee_share_ppm": "100000"}
    assert fee_share_update(pol, fund_quanta=0, open_interest_quanta=1_000,
                            current_share_ppm=500_000) == {}
    with pytest.raises(ValueError, match="release_ppm"):
        FeeSharePolicy(target_ppm=10, release_ppm=5, step_ppm=1, min_share_ppm=0,
                       max_share_ppm=1)


def test_public_api_is_pinned_and_documented() -> None:
    import inspect

    import solvency.core.liquidation as liq

    assert sorted(liq.__all__) == sorted(set(liq.__all__))
    for name in liq.__all__:
        obj = getattr(liq, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert (getattr(obj, "__doc__", None) or "").strip(), name
