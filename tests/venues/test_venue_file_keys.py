"""The venue parameters that the venues' own tests set, as keys of a venue file.

dYdX v4-chain ``liquidations_config`` (``max_liquidation_fee_ppm``,
``fillable_price_config.bankruptcy_adjustment_ppm`` and
``spread_to_maintenance_margin_ratio_ppm``, ``max_position_portion_liquidated_ppm``) and
Drift's ``liquidation_margin_buffer_ratio``, ``liquidator_fee`` and
``if_liquidation_fee`` are set per fixture in their tests (v4-chain@84d4664b
``protocol/x/clob/keeper/liquidations_test.go``, protocol-v2@0ae3e3b1
``programs/drift/src/controller/liquidation/tests.rs``); a venue file's ``liquidation``
section sets them here, with the same precise errors as every other key.
"""

from __future__ import annotations

import pytest

from solvency.core.model.presets import venue_from_data
from solvency.core.model.venue import ConfigError
from solvency.engine.engine import Engine


def engine_with(preset: str, liquidation: dict[str, object]) -> Engine:
    return Engine(venue_from_data({"preset": preset, "liquidation": liquidation}))


def test_dydx_fee_cap_and_fillable_price_config() -> None:
    """TestGetLiquidationInsuranceFundDelta and TestGetFillablePrice fixtures vary the
    fee cap (e.g. 15,000 ppm) and the fillable-price config per case."""
    policy = engine_with("dydx", {"insurance_fee_ppm": 15_000,
                                  "bankruptcy_adjustment_ppm": 2_000_000,
                                  "spread_to_mm_ratio_ppm": 200_000,
                                  "max_portion_ppm": 500_000}).liquidator.policy
    assert (policy.insurance_fee_ppm, policy.bankruptcy_adjustment_ppm,
            policy.spread_to_mm_ratio_ppm, policy.max_portion_ppm) == (
        15_000, 2_000_000, 200_000, 500_000)
    assert policy.sizing == "dydx"  # the rest of the preset's policy stays


def test_drift_buffer_and_fees() -> None:
    """successful_liquidation_long_perp_whale_imf_factor: liquidation_margin_buffer_ratio
    10 (MARGIN_PRECISION: 0.1 %), fees LIQUIDATION_FEE_PRECISION / 100."""
    policy = engine_with("drift", {"margin_buffer_ppm": 10 * 100, "liquidator_fee_ppm": 10_000,
                                   "insurance_fee_ppm": 10_000}).liquidator.policy
    assert (policy.margin_buffer_ppm, policy.liquidator_fee_ppm, policy.insurance_fee_ppm) == (
        1_000, 10_000, 10_000)


@pytest.mark.parametrize(("section", "message"), [
    # the venue file's schema (core/model/venue_schema.py) answers shape and range, with
    # the file and the dotted key; the policy's own checks what spans keys
    ({"insurance_fee_ppm": -1}, "venue: liquidation.insurance_fee_ppm: Input should be "
                                "greater than or equal to 0"),
    ({"max_portion_ppm": 0}, "max_portion_ppm must be in (0, 1e6]"),
    ({"bankruptcy_adjustment_ppm": "1.5"}, "liquidation.bankruptcy_adjustment_ppm: expected a "
                                           "whole number"),
    ({"max_liquidation_fee_ppm": 5_000}, "venue: liquidation.max_liquidation_fee_ppm: "
                                         "unknown key; did you mean 'liquidator_fee_ppm'?"),
], ids=["negative-fee", "zero-portion", "fraction-ppm", "dydx-name-not-ours"])
def test_bad_values_are_named(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        engine_with("dydx", section)
    assert message in str(err.value)
