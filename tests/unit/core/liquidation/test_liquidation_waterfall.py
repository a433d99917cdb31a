"""The waterfall plan: scenario table per venue rule, and conservation properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvency.core.liquidation import (
    POLICIES,
    AdlFill,
    BackstopTakeover,
    FundTakeover,
    InsurancePayment,
    MarketClose,
    Penalty,
    SocializedLoss,
    Unresolved,
    WaterfallPlan,
    adl_order,
    bankruptcy_share_quanta,
    linear_quote,
    plan_waterfall,
)

TV = 1_000  # quanta per lot per tick: lot 0.001 BTC, tick $1, USDC 1e-6
LONG_QUOTE = linear_quote(TV, is_long=True)


def _plan(policy: str, b: int, levels: list[tuple[int, int]], fund: int,
          **kw: object) -> WaterfallPlan:
    return plan_waterfall(POLICIES[policy], position_lots=100, close_lots=100,
                          bankruptcy_quanta=b, levels=levels, quote=LONG_QUOTE,
                          fund_quanta=fund, **kw)  # type: ignore[arg-type]


def test_book_above_bankruptcy_then_penalty_dydx() -> None:
    # dYdX long 0.1 BTC slightly below MM: B = $4,501 (TestGetBankruptcyPriceInQuoteQuantums)
    plan = _plan("dydx", 4_501_000_000, [(60, 49_990), (100, 49_900)], 0)
    assert plan.steps == (
        MarketClose(60, 49_990, 2_999_400_000, 2_700_600_000),
        MarketClose(40, 49_900, 1_996_000_000, 1_800_400_000),
        Penalty(0, 24_977_000),  # 0.5% of $4,995.40, below the $494.40 surplus
    )
    assert plan.closed_lots == 100 and plan.fund_used_quanta == 0


def test_fund_covers_fill_below_bankruptcy_dydx() -> None:
    # dYdX TestGetLiquidationInsuranceFundDelta "long below the bankruptcy price": the fund
    # covers 51,000,000 quote quantums
    plan = _plan("dydx", 5_100_000_000, [(100, 50_490)], 100_000_000, limit_ticks=49_500)
    assert plan.steps == (MarketClose(100, 50_490, 5_049_000_000, 5_100_000_000),
                          InsurancePayment(51_000_000))
    assert plan.fund_used_quanta == 51_000_000


def test_fund_runs_out_then_adl() -> None:
    adl_lots = np.array([-30, -50], dtype=np.int64)
    plan = _plan("dydx", 5_100_000_000, [(100, 50_490)], 30_000_000, limit_ticks=49_500,
                 adl_lots=adl_lots, adl_order=np.array([1, 0], dtype=np.int64),
                 adl_eligible=np.ones(2, dtype=np.bool_))
    assert plan.steps[:2] == (MarketClose(58, 50_490, 2_928_420_000, 2_958_000_000),
                              InsurancePayment(29_580_000))
    assert plan.steps[2] == AdlFill(1, 42, 2_142_000_000)
    assert plan.closed_lots == 100


def test_hyperliquid_backstop_takes_over_at_bankruptcy() -> None:
    # Hyperliquid docs trading/liquidations: the liquidator vault takes over below 2/3 of
    # maintenance; its capital is the fund's (backstop_is_fund), so the takeover needs
    # capacity for its loss at depth: none here (valued at the far price 45,000: the loss
    # is 4,501 - 4,500 = $1, 1,000,000 quanta)
    plan = _plan("hyperliquid", 4_501_000_000, [], 1_000_000, backstop_eligible=True,
                 takeover_far_ticks=45_000)
    assert plan.steps == (BackstopTakeover(100, 4_501_000_000),)
    assert plan.capacity_used_quanta == 1_000_000 and plan.fund_used_quanta == 0
    short = _plan("hyperliquid", 4_501_000_000, [], 999_999, backstop_eligible=True,
                  takeover_far_ticks=45_000)
    assert short.steps[0] == BackstopTakeover(99, 4_455_990_000)  # the rest waits


def test_binance_fund_takes_over_when_it_can() -> None:
    # Binance Insurance Fund FAQ: the fund takes over the bankrupt position; its cash is
    # not spent on the notional (the position account finances it)
    plan = _plan("binance", 4_501_000_000, [], 10_000_000_000, takeover_far_ticks=45_000)
    assert plan.steps == (FundTakeover(100, 4_501_000_000),)
    assert plan.fund_used_quanta == 0 and plan.capacity_used_quanta == 1_000_000
    assert plan.net_by_role() == {"account": 4_501_000_000,
                                  "fund_positions": -4_501_000_000}


def test_binance_position_cap_sends_the_rest_to_adl() -> None:
    # Binance Insurance Fund FAQ (2024-05-29): "any positions that would increase beyond
    # the max notional will be subjected to counterparty-liquidation"
    plan = _plan("binance", 4_501_000_000, [], 10_000_000_000, takeover_far_ticks=45_000,
                 takeover_lots_max=60, adl_lots=np.array([-80], dtype=np.int64),
                 adl_order=np.array([0], dtype=np.int64),
                 adl_eligible=np.ones(1, dtype=np.bool_))
    assert plan.steps == (FundTakeover(60, 2_700_600_000), AdlFill(0, 40, 1_800_400_000))


def test_dydx_fund_holds_nothing_and_deleverages_only_when_short() -> None:
    # dYdX x/clob/keeper/deleveraging.go ShouldPerformDeleveraging: deleverage when
    # balance + delta < 0; the fund never takes positions (fund_takeover False)
    queue = {"adl_lots": np.array([-100], dtype=np.int64),
             "adl_order": np.array([0], dtype=np.int64),
             "adl_eligible": np.ones(1, dtype=np.bool_)}
    # the rest would close at 44,000: a $101 loss; a fund of $101 absorbs it: no ADL,
    # the lots wait for the book (the engine's last resort closes them, fund first)
    rich = _plan("dydx", 4_501_000_000, [(100, 44_000)], 101_000_000, **queue)
    assert rich.steps == (Unresolved(100),)
    poor = _plan("dydx", 4_501_000_000, [(100, 44_000)], 100_999_999, **queue)
    assert poor.steps == (AdlFill(0, 100, 4_501_000_000),)


def test_bitmex_adl_example_short_of_20_at_650() -> None:
    # BitMEX autoDeleveragingExamples: short of 20 contracts liquidated, bankruptcy 650;
    # accounts 2 and 5 (indices 1 and 4) take 10 each at the bankruptcy price
    qty = np.array([10, 10, 20, 30, 20, 10], dtype=np.int64)
    rank = np.array([3.0, 6.0, 1.0, 4.0, 5.0, 2.0])
    usd = 1_000_000
    plan = plan_waterfall(POLICIES["bitmex"], position_lots=-20, close_lots=20,
                          bankruptcy_quanta=-20 * 650 * usd, levels=[],
                          quote=linear_quote(usd, is_long=False), fund_quanta=0,
                          adl_lots=qty, adl_order=adl_order(rank),
                          adl_eligible=np.ones(6, dtype=np.bool_))
    assert plan.steps == (AdlFill(1, 10, -6_500 * usd), AdlFill(4, 10, -6_500 * usd))
    assert plan.net_by_role() == {"account": -13_000 * usd, "adl:1": 6_500 * usd,
                                  "adl:4": 6_500 * usd}


def test_drift_socializes_through_funding_index() -> None:
    plan = _plan("drift", 5_100_000_000, [(100, 50_490)], 0, limit_ticks=49_000,
                 social_weights=np.array([70, -40], dtype=np.int64))
    assert plan.steps[0] == MarketClose(100, 50_490, 5_049_000_000, 5_100_000_000)
    social = plan.steps[1]
    assert isinstance(social, SocializedLoss)
    assert social.rule == "funding_index" and social.covered_quanta == 51_000_000
    assert social.charges == (32_454_546, 18_545_455)  # ceil(51e6 x 70/110), ceil(x 40/110)
    assert social.rounding_quanta == 1 and plan.bad_debt_quanta == 0


def test_deribit_socializes_over_winners_and_records_bad_debt() -> None:
    plan = _plan("deribit", 5_100_000_000, [(100, 50_490)], 0, limit_ticks=49_000,
                 social_weights=np.array([30_000_000, 10_000_000, -5], dtype=np.int64))
    social = plan.steps[1]
    assert isinstance(social, SocializedLoss)
    assert social.charges == (30_000_000, 10_000_000, 0)
    assert plan.bad_debt_quanta == 11_000_000


def test_no_liquidity_no_fund_no_queue_stays_open() -> None:
    plan = _plan("close_all", 4_501_000_000, [], 0)
    assert plan.steps == (Unresolved(100),)
    assert plan.closed_lots == 0


@pytest.mark.parametrize(("kw", "message"), [
    ({"close_lots": 0}, "close_lots"),
    ({"close_lots": 101}, "close_lots"),
    ({"fund_quanta": -1}, "fund_quanta"),
], ids=["zero-close", "more-than-position", "negative-fund"])
def test_plan_rejects_bad_input(kw: dict[str, int], message: str) -> None:
    args: dict[str, object] = {"position_lots": 100, "close_lots": 10, "bankruptcy_quanta": 0,
                               "levels": [], "quote": LONG_QUOTE, "fund_quanta": 0, **kw}
    with pytest.raises(ValueError, match=message):
        plan_waterfall(POLICIES["dydx"], **args)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(POLICIES)), long=st.booleans(),
       n=st.integers(1, 500), bk_ticks=st.integers(1_000, 100_000),
       fund=st.integers(0, 10**10), backstop=st.booleans())
def test_waterfall_conserves_and_never_overdraws(
        data: st.DataObject, name: str, long: bool, n: int, bk_ticks: int, fund: int,
        backstop: bool) -> None:
    sign = 1 if long else -1
    b = sign * n * bk_ticks * TV + data.draw(st.integers(-10**6, 10**6))
    levels = data.draw(st.lists(st.tuples(st.integers(0, 300),
                                          st.integers(bk_ticks // 2, bk_ticks * 2)),
                                max_size=6))
    levels.sort(key=lambda lv: -sign * lv[1])  # best first
    k = data.draw(st.integers(0, 8))
    adl_lots = np.array(data.draw(st.lists(st.integers(-200, 200), min_size=k, max_size=k)),
                        dtype=np.int64)
    elig = np.sign(adl_lots) == -sign
    weights = np.array(data.draw(st.lists(st.integers(-10**8, 10**8), min_size=k,
                                          max_size=k)), dtype=np.int64)
    plan = plan_waterfall(
        POLICIES[name], position_lots=sign * (n + 3), close_lots=n, bankruptcy_quanta=b,
        levels=levels, quote=linear_quote(TV, is_long=long), fund_quanta=fund,
        limit_ticks=bk_ticks - sign * bk_ticks // 3, backstop_eligible=backstop,
        adl_lots=adl_lots, adl_order=np.arange(k, dtype=np.int64), adl_eligible=elig,
        social_weights=weights)
    legs = plan.transfers()
    assert all(leg.amount_quanta > 0 for leg in legs)
    assert sum(plan.net_by_role().values()) == 0  # every transfer balances
    lots_moved = sum(s.lots for s in plan.steps
                     if isinstance(s, MarketClose | BackstopTakeover | FundTakeover | AdlFill))
    assert lots_moved == plan.closed_lots
    left = [s.lots for s in plan.steps if isinstance(s, Unresolved)]
    assert plan.closed_lots + sum(left) == n
    paid = sum(s.amount_quanta for s in plan.steps if isinstance(s, InsurancePayment))
    assert paid == plan.fund_used_quanta <= fund  # the fund's cash is never overdrawn
    # the account ends at or above its bankruptcy amount on what closed, but for bad debt
    account = plan.net_by_role().get("account", 0)
    floor = bankruptcy_share_quanta(b, part_lots=plan.closed_lots, total_lots=n)
    assert account >= floor - plan.bad_debt_quanta
    # ADL only against eligible positions, each within its size
    for s in plan.steps:
        if isinstance(s, AdlFill):
            assert elig[s.position] and s.lots <= abs(int(adl_lots[s.position]))
    # without the per-participant split (the engine's mode) the plan is the same: each
    # socialized step covers and leaves as bad debt exactly what the split would
    bare = plan_waterfall(
        POLICIES[name], position_lots=sign * (n + 3), close_lots=n, bankruptcy_quanta=b,
        levels=levels, quote=linear_quote(TV, is_long=long), fund_quanta=fund,
        limit_ticks=bk_ticks - sign * bk_ticks // 3, backstop_eligible=backstop,
        adl_lots=adl_lots, adl_order=np.arange(k, dtype=np.int64), adl_eligible=elig,
        social_weights=weights, social_charges=False)
    assert len(bare.steps) == len(plan.steps)
    assert bare.bad_debt_quanta == plan.bad_debt_quanta
    for x, y in zip(bare.steps, plan.steps, strict=True):
        if isinstance(y, SocializedLoss):
            assert isinstance(x, SocializedLoss) and x.charges == ()
            assert (x.covered_quanta, x.bad_debt_quanta) == (y.covered_quanta,
                                                             y.bad_debt_quanta)
        else:
            assert x == y


def test_engine_mode_skips_the_split_but_keeps_coverage() -> None:
    for name, w in (("drift", [70, -40]), ("deribit", [30_000_000, 10_000_000, -5])):
        plan = _plan(name, 5_100_000_000, [(100, 50_490)], 0, limit_ticks=49_000,
                     social_weights=np.array(w, dtype=np.int64))
        bare = _plan(name, 5_100_000_000, [(100, 50_490)], 0, limit_ticks=49_000,
                     social_weights=np.array(w, dtype=np.int64), social_charges=False)
        s, t = plan.steps[1], bare.steps[1]
        assert isinstance(s, SocializedLoss) and isinstance(t, SocializedLoss)
        assert t.charges == () and t.rounding_quanta == 0
        assert (t.covered_quanta, bare.bad_debt_quanta) == (s.covered_quanta,
                                                            plan.bad_debt_quanta)
