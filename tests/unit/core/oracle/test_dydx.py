"""dYdX v4 acceptance rules: the test tables of dydxprotocol/v4-chain, reproduced.

Source: protocol/x/prices/keeper/util_test.go and validate_market_price_updates_test.go
(market price 5,000,000,000, min price change 50 ppm, as in CreateTestMarkets).
"""

from __future__ import annotations

import pytest

from solvency.core.oracle import dydx

MAX_U64 = 2**64 - 1
MAX_U32 = 2**32 - 1


@pytest.mark.parametrize(("smoothed", "index", "market", "expected"), [
    pytest.param(1_000_000, 1_000_005, 900_000, 1_000_000, id="smoothed: market<smoothed<index"),
    pytest.param(800_500, 800_000, 900_000, 800_500, id="smoothed: index<smoothed<market"),
    pytest.param(1_000_000, 900_000, 800_000, 900_000, id="index: market<index<smoothed"),
    pytest.param(800_000, 900_000, 1_000_000, 900_000, id="index: smoothed<index<market"),
    pytest.param(500_000, 1_100_000, 1_000_000, 1_100_000, id="index: smoothed<<market<index"),
    pytest.param(900_000, 1_500_000, 1_000_000, 900_000, id="smoothed: smoothed<market<<index"),
    pytest.param(1_500_000, 900_000, 1_000_000, 900_000, id="index: index<market<<smoothed"),
    pytest.param(1_100_000, 500_000, 1_000_000, 1_100_000, id="smoothed: index<<market<smoothed"),
])
def test_get_proposal_price(smoothed: int, index: int, market: int, expected: int) -> None:
    assert dydx.proposal_price(smoothed, index, market) == expected


@pytest.mark.parametrize(("price", "ppm", "expected"), [
    pytest.param(123_000, 1_000, 123, id="valid"),
    pytest.param(1_234, 1_000, 1, id="discards decimal"),
    pytest.param(0, 1_000, 0, id="zero"),
])
def test_min_price_change_amount(price: int, ppm: int, expected: int) -> None:
    assert dydx.min_price_change_amount(price, ppm) == expected


def test_min_price_change_refuses_ppm_above_one_million() -> None:
    # dYdX panics ("result exceeds max uint64"); we refuse the parameter
    with pytest.raises(ValueError, match="1,000,000"):
        dydx.min_price_change_amount(MAX_U64, 1_000_001)


@pytest.mark.parametrize(("old", "new", "index", "expected"), [
    pytest.param(1, 2, 3, True, id="towards: curr<new<idx"),
    pytest.param(3, 2, 1, True, id="towards: idx<new<curr"),
    pytest.param(1, 1, 2, True, id="towards: curr==new<idx"),
    pytest.param(2, 2, 1, True, id="towards: idx<curr==new"),
    pytest.param(1, 2, 2, True, id="towards: curr<new==idx"),
    pytest.param(2, 1, 1, True, id="towards: new==idx<curr"),
    pytest.param(1, 1, 1, True, id="towards: new==idx==curr"),
    pytest.param(2, 1, 3, False, id="not: new<curr<idx"),
    pytest.param(3, 1, 2, False, id="not: new<idx<curr"),
    pytest.param(2, 1, 2, False, id="not: new<idx==curr"),
    pytest.param(1, 3, 2, False, id="not: curr<idx<new"),
    pytest.param(2, 3, 1, False, id="not: idx<curr<new"),
    pytest.param(1, 2, 1, False, id="not: curr==idx<new"),
])
def test_is_towards_index_price(old: int, new: int, index: int, expected: bool) -> None:
    assert dydx.is_towards_index_price(old, index, new) is expected


@pytest.mark.parametrize(("old", "new", "index", "expected"), [
    pytest.param(1, 3, 2, True, id="crossing: curr<index<new"),
    pytest.param(3, 1, 2, True, id="crossing: new<index<curr"),
    pytest.param(1, 2, 3, False, id="not: curr<new<index"),
    pytest.param(2, 1, 3, False, id="not: new<curr<index"),
    pytest.param(1, 2, 2, False, id="not: curr<new=index"),
    pytest.param(2, 1, 2, False, id="not: new<curr=index"),
    pytest.param(1, 1, 1, False, id="not: new=curr=index"),
    pytest.param(2, 3, 1, False, id="not: index<curr<new"),
    pytest.param(3, 2, 1, False, id="not: index<new<curr"),
])
def test_is_crossing_index_price(old: int, new: int, index: int, expected: bool) -> None:
    assert dydx.is_crossing_index_price(old, index, new) is expected


@pytest.mark.parametrize(("old", "new", "index", "expected"), [
    pytest.param(1, 3, 2, False, id="old<index<new"),
    pytest.param(1, 2, 3, False, id="old<new<index"),
    pytest.param(2, 3, 1, True, id="index<old<new"),
    pytest.param(2, 1, 3, True, id="new<old<index"),
    pytest.param(3, 2, 1, False, id="index<new<old"),
    pytest.param(3, 1, 2, False, id="new<index<old"),
    pytest.param(1, 1, 2, False, id="new==old<index"),
    pytest.param(2, 1, 2, False, id="new<old==index"),
    pytest.param(1, 1, 1, False, id="new==old==index"),
    pytest.param(1, 2, 1, False, id="index==old<new"),
    pytest.param(2, 2, 1, False, id="index<old==new"),
    pytest.param(1, 2, 2, False, id="old<index==new"),
    pytest.param(2, 1, 1, False, id="index==new<old"),
])
def test_is_crossing_old_price(old: int, new: int, index: int, expected: bool) -> None:
    assert dydx.is_crossing_old_price(old, index, new) is expected


@pytest.mark.parametrize(("base", "ref", "test", "expected"), [
    pytest.param(2, 1, 3, False, id="ref<base<test"),
    pytest.param(3, 1, 2, False, id="ref<test<base"),
    pytest.param(1, 2, 3, True, id="base<ref<test"),
    pytest.param(3, 2, 1, True, id="test<ref<base"),
    pytest.param(1, 3, 2, False, id="base<test<ref"),
    pytest.param(2, 3, 1, False, id="test<base<ref"),
    pytest.param(2, 1, 1, False, id="test==ref<base"),
    pytest.param(2, 2, 1, False, id="test<ref==base"),
    pytest.param(1, 1, 1, False, id="test==ref==base"),
    pytest.param(1, 1, 2, False, id="base==ref<test"),
    pytest.param(1, 2, 2, False, id="base<ref==test"),
    pytest.param(2, 1, 2, False, id="ref<base==test"),
    pytest.param(1, 2, 1, False, id="base==test<ref"),
])
def test_is_crossing_reference_price(base: int, ref: int, test: int, expected: bool) -> None:
    assert dydx.is_crossing_reference_price(base, ref, test) is expected


@pytest.mark.parametrize(("old", "ppm", "expected"), [
    pytest.param(1_000_000_000_000, 50, 1_000_000_000_000 * 50, id="non-overflow"),
    pytest.param(MAX_U64, MAX_U32, MAX_U64 * MAX_U32, id="overflow (big int)"),
])
def test_compute_tick_size_ppm(old: int, ppm: int, expected: int) -> None:
    assert dydx.compute_tick_size_ppm(old, ppm) == expected


@pytest.mark.parametrize(("delta", "tick_ppm", "expected"), [
    pytest.param(500_000, 600_000_000_000, True, id="less than one tick"),
    pytest.param(500_000, 500_000_000_000, True, id="exactly one tick"),
    pytest.param(500_000, 400_000_000_000, False, id="more than one tick"),
])
def test_price_delta_within_one_tick(delta: int, tick_ppm: int, expected: bool) -> None:
    assert dydx.price_delta_is_within_one_tick(delta, tick_ppm) is expected


@pytest.mark.parametrize(("new", "old", "tick_ppm", "expected"), [
    pytest.param(4999, 500_000, 50_000_000, True, id="new_ticks < sqrt(old_ticks)"),
    pytest.param(5000, 500_000, 50_000_000, True, id="new_ticks == sqrt(old_ticks)"),
    pytest.param(5001, 500_000, 50_000_000, False, id="new_ticks > sqrt(old_ticks)"),
])
def test_new_price_meets_sqrt_condition(new: int, old: int, tick_ppm: int,
                                        expected: bool) -> None:
    assert dydx.new_price_meets_sqrt_condition(old, new, tick_ppm) is expected


@pytest.mark.parametrize(("old", "tick_ppm", "expected"), [
    pytest.param(500_000, 500_000, 500, id="no precision loss"),
    pytest.param(512_345, 567_899, 539, id="precision loss from division, sqrt"),
    pytest.param(512_000, 567_000, 538, id="precision loss from sqrt"),
    pytest.param(50, 567_000, 5, id="tiny currency change"),
    pytest.param(512_000, 50, 5, id="unrealistically small tick size"),
    pytest.param(0, 0, 0, id="zero inputs"),
])
def test_maximum_allowed_price_delta(old: int, tick_ppm: int, expected: int) -> None:
    assert dydx.maximum_allowed_price_delta(old, tick_ppm) == expected


FIVE_B = 5_000_000_000
FIVE_M = 5_000_000
ONE_M = 1_000_000
P_5_015 = FIVE_B + 3 * FIVE_M
P_5_010 = FIVE_B + 2 * FIVE_M
P_5_005 = FIVE_B + FIVE_M
P_5_004_999_999 = P_5_005 - 1
P_5_000_5 = FIVE_B + ONE_M // 2
P_5_000_25 = FIVE_B + ONE_M // 4
P_4_999_75 = FIVE_B - ONE_M // 4
P_4_999_5 = FIVE_B - ONE_M // 2
P_4_995_000_001 = FIVE_B - FIVE_M + 1
P_4_995 = FIVE_B - FIVE_M


@pytest.mark.parametrize(("update", "index"), [
    pytest.param(P_5_005, P_5_010, id="towards index (current < update < index)"),
    pytest.param(P_5_005, P_5_004_999_999, id="crossing up, old_ticks > 1, sqrt ok"),
    pytest.param(P_4_995, P_4_995_000_001, id="crossing down, old_ticks > 1, sqrt ok"),
    pytest.param(P_5_000_5, P_5_000_25, id="crossing up, old_ticks <= 1, new <= old ok"),
    pytest.param(P_4_999_5, P_4_999_75, id="crossing down, old_ticks <= 1, new <= old ok"),
])
def test_validate_price_accuracy_valid(update: int, index: int) -> None:
    assert dydx.validate_price_accuracy(FIVE_B, index, update, 50) is None


@pytest.mark.parametrize(("update", "index", "reason", "allowed"), [
    pytest.param(P_5_015, P_5_010, "crosses_index_too_far", "(1581138)",
                 id="crossing, old_ticks > 1, sqrt fails"),
    pytest.param(P_5_015, P_5_000_25, "crosses_index_too_far", "(250000)",
                 id="crossing, old_ticks <= 1, new > old"),
    pytest.param(P_5_005, FIVE_B - 1, "not_towards_index", "",
                 id="trends opposite to the index"),
])
def test_validate_price_accuracy_errors(update: int, index: int, reason: str,
                                        allowed: str) -> None:
    result = dydx.validate_price_accuracy(FIVE_B, index, update, 50)
    assert result is not None
    assert result[0] == reason
    assert allowed in result[1]


def test_min_price_change_of_the_test_market() -> None:
    # "Price does not meet min price change": 5,000,249,999 vs 5e9 at 50 ppm
    assert not dydx.is_above_required_min_price_change(FIVE_B, FIVE_B + 250_000 - 1, 50)
    assert dydx.is_above_required_min_price_change(FIVE_B, FIVE_B + 250_000, 50)
