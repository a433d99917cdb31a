"""Penalty, Drift's size-to-cover-shortage, and partial-liquidation sizing per venue."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvency.core.liquidation import (
    POLICIES,
    LiquidationPolicy,
    drift_base_to_cover_margin_shortage,
    in_cooldown,
    liquidation_penalty_quanta,
    liquidation_size,
    liquidation_size_reference,
    policy_for,
    size_to_cover_margin_shortage,
)
from solvency.core.model.presets import PRESETS, preset_names

QUOTE = 10**6  # Drift QUOTE_PRECISION
PRICE = 10**6  # Drift PRICE_PRECISION
BASE = 10**9  # Drift BASE_PRECISION


@pytest.mark.parametrize(("liq_fee", "if_fee", "expected"), [
    (0, 0, BASE),
    (10_000, 0, BASE * 10 // 9),
    (10_000, 10_000, 1_250_000_000),
], ids=["drift-zero_percent_liquidation_fee", "drift-one_percent_liquidation_fee",
        "drift-one_percent_liquidation_fee_and_one_percent_if_liquidation_fee"])
def test_drift_base_to_cover_margin_shortage(liq_fee: int, if_fee: int, expected: int) -> None:
    # Drift protocol-v2 programs/drift/src/math/liquidation/tests.rs: $10 shortage, 10x
    # (margin ratio 1000 of MARGIN_PRECISION 1e4), $100 oracle
    got = drift_base_to_cover_margin_shortage(10 * QUOTE, 1_000, liq_fee, if_fee, 100 * PRICE)
    assert got == expected
    est = size_to_cover_margin_shortage(
        shortage=np.array([10.0]), unit_notional=np.array([100.0]), mmr=np.array([0.1]),
        liquidator_fee_ppm=liq_fee, insurance_fee_ppm=if_fee)
    np.testing.assert_allclose(est * BASE, [expected], rtol=1e-8)


def test_drift_base_when_fees_eat_the_margin_ratio() -> None:
    assert drift_base_to_cover_margin_shortage(10 * QUOTE, 100, 10_000, 0, 100 * PRICE) == 2**64 - 1
    est = size_to_cover_margin_shortage(
        shortage=np.array([10.0, -1.0]), unit_notional=np.array([100.0, 100.0]),
        mmr=np.array([0.01, 0.1]), liquidator_fee_ppm=10_000, insurance_fee_ppm=0)
    assert math.isinf(est[0]) and est[1] == 0.0


@pytest.mark.parametrize(("surplus", "priority", "expected"), [
    (10**9, "liquidator_first", (1_000, 2_000, False)),
    (2_500, "liquidator_first", (1_000, 1_500, True)),
    (2_500, "insurance_first", (500, 2_000, True)),
    (1_500, "pro_rata", (500, 1_000, True)),
    (-7, "liquidator_first", (0, 0, True)),
], ids=["uncapped", "capped-liquidator-first-drift", "capped-insurance-first",
        "capped-pro-rata", "no-surplus-no-penalty"])
def test_penalty_cap_and_split(surplus: int, priority: str,
                               expected: tuple[int, int, bool]) -> None:
    p = liquidation_penalty_quanta(notional_quanta=-100_000, surplus_quanta=surplus,
                                   liquidator_fee_ppm=10_000, insurance_fee_ppm=20_000,
                                   priority=priority)  # type: ignore[arg-type]
    assert (p.liquidator_quanta, p.insurance_quanta, p.capped) == expected


@settings(max_examples=300, deadline=None)
@given(notional=st.integers(-10**14, 10**14), surplus=st.integers(-10**12, 10**12),
       liq=st.integers(0, 1_000_000), ins=st.integers(0, 1_000_000),
       priority=st.sampled_from(["liquidator_first", "insurance_first", "pro_rata"]))
def test_penalty_never_turns_a_solvent_close_into_bad_debt(
        notional: int, surplus: int, liq: int, ins: int, priority: str) -> None:
    p = liquidation_penalty_quanta(notional_quanta=notional, surplus_quanta=surplus,
                                   liquidator_fee_ppm=liq, insurance_fee_ppm=ins,
                                   priority=priority)  # type: ignore[arg-type]
    assert p.liquidator_quanta >= 0 and p.insurance_quanta >= 0
    assert p.total_quanta <= max(surplus, 0)
    assert p.liquidator_quanta <= abs(notional) * liq // 10**6
    assert p.insurance_quanta <= abs(notional) * ins // 10**6


def _size(policy: LiquidationPolicy, **kw: object) -> int:
    arrays = {k: np.array([v]) for k, v in kw.items()}
    return int(liquidation_size(policy, **arrays)[0])


@pytest.mark.parametrize(("policy", "kw", "expected"), [
    (POLICIES["close_all"], {"lots": -37}, 37),
    # Hyperliquid docs: above 100k USDC 20% per order; below, whole position
    (POLICIES["hyperliquid"], {"lots": 1_000, "notional": 150_000.0}, 200),
    (POLICIES["hyperliquid"], {"lots": 1_000, "notional": 90_000.0}, 1_000),
    (POLICIES["hyperliquid"], {"lots": 1_000, "notional": 150_000.0, "cooldown": True}, 1_000),
    # dYdX: portion 10% with a 500 min notional -> 100 of 1000 lots at 10/lot
    (LiquidationPolicy(name="dydx-10pct", source="t", as_of="t", sizing="dydx",
                       min_notional_quote=500.0, max_portion_ppm=100_000),
     {"lots": 1_000, "notional": 10_000.0}, 100),
    (LiquidationPolicy(name="dydx-min", source="t", as_of="t", sizing="dydx",
                       min_notional_quote=2_000.0, max_portion_ppm=100_000),
     {"lots": 1_000, "notional": 10_000.0}, 200),
    (LiquidationPolicy(name="dydx-block", source="t", as_of="t", sizing="dydx",
                       max_portion_ppm=1_000_000, account_notional_cap_quote=5_000.0),
     {"lots": 1_000, "notional": 10_000.0, "liquidated_notional": 4_000.0}, 100),
    # Drift: $10 shortage at 10% mmr, $100 per lot, 1% + 1% fees -> 1.25 -> 2 lots
    (LiquidationPolicy(name="drift-t", source="t", as_of="t", sizing="drift",
                       liquidator_fee_ppm=10_000, insurance_fee_ppm=10_000),
     {"lots": 10, "notional": 1_000.0, "mm": 100.0, "collateral": 90.0, "mm_total": 100.0}, 2),
    # tier step: bracket floor 600,000, 1,000 per lot: keep 599 lots, close 401
    (POLICIES["binance"], {"lots": 1_000, "notional": 1_000_000.0, "tier_floor": 600_000.0},
     401),
    (POLICIES["bitmex"], {"lots": -50, "notional": 50_000.0, "tier_floor": 0.0}, 50),
], ids=["close-all", "hyperliquid-docs-20pct-above-100k", "hyperliquid-docs-below-threshold",
        "hyperliquid-announcement-cooldown-whole", "dydx-portion", "dydx-min-notional",
        "dydx-subaccount-block-limit", "drift-cover-shortage-with-fees",
        "binance-step-down-one-bracket", "bitmex-first-step-closes-all"])
def test_liquidation_size_table(policy: LiquidationPolicy, kw: dict[str, object],
                                expected: int) -> None:
    full = {"notional": 1_000.0, "mm": 10.0, "collateral": 5.0, "mm_total": 10.0,
            "tier_floor": 0.0, "liquidated_notional": 0.0, "cooldown": False, **kw}
    assert _size(policy, **full) == expected
    ref = liquidation_size_reference(policy, **full)  # type: ignore[arg-type]
    assert ref == expected


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(POLICIES)), lots=st.integers(-10**6, 10**6),
       unit=st.floats(0.01, 1e5), mmr=st.floats(0.001, 0.5), coll_ratio=st.floats(-1.0, 1.5),
       floor_ratio=st.floats(0.0, 1.0), done=st.floats(0.0, 1e9), cool=st.booleans())
def test_liquidation_size_matches_reference_and_bounds(
        name: str, lots: int, unit: float, mmr: float, coll_ratio: float, floor_ratio: float,
        done: float, cool: bool) -> None:
    policy = POLICIES[name]
    notional = abs(lots) * unit
    mm = notional * mmr
    kw = {"lots": lots, "notional": notional, "mm": mm, "collateral": mm * coll_ratio,
          "mm_total": mm, "tier_floor": notional * floor_ratio, "liquidated_notional": done,
          "cooldown": cool}
    got = _size(policy, **kw)
    assert got == liquidation_size_reference(policy, **kw)  # type: ignore[arg-type]
    assert 0 <= got <= abs(lots)


def test_presets_cover_every_venue_preset() -> None:
    for venue in preset_names():
        # a dated preset (issue 22: binance's with collateral rules) names its base's
        named = PRESETS[venue].get("liquidation", {}).get("policy", venue)
        p = policy_for(named)
        assert p.name == named, venue
        assert p.source and p.as_of
    with pytest.raises(KeyError, match="no liquidation policy named 'unknown'"):
        policy_for("unknown")  # was a silent close_all


def test_hyperliquid_backstop_below_two_thirds_of_mm() -> None:
    hl = POLICIES["hyperliquid"]
    assert hl.backstop_eligible(collateral=66.0, mm=100.0)
    assert not hl.backstop_eligible(collateral=67.0, mm=100.0)
    assert not POLICIES["dydx"].backstop_eligible(collateral=0.0, mm=100.0)


def test_cooldown_window() -> None:
    got = in_cooldown(POLICIES["hyperliquid"], last_partial_ms=np.array([-1, 0, 10_000]),
                      now_ms=35_000)
    assert got.tolist() == [False, False, True]


@pytest.mark.parametrize(("kw", "message"), [
    ({"max_portion_ppm": 0}, "max_portion_ppm"),
    ({"liquidator_fee_ppm": -1}, "liquidator_fee_ppm"),
    ({"min_notional_quote": -1.0}, "notional thresholds"),
], ids=["zero-portion", "negative-fee", "negative-threshold"])
def test_policy_validation(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LiquidationPolicy(name="bad", source="t", as_of="t", **kw)  # type: ignore[arg-type]


def test_tier_step_needs_floors() -> None:
    with pytest.raises(ValueError, match="tier_floor"):
        liquidation_size(POLICIES["binance"], lots=np.array([1]), notional=np.array([1.0]),
                         mm=np.array([1.0]), collateral=np.array([0.0]),
                         mm_total=np.array([1.0]))
