"""Liquidation: bankruptcy and fillable price, penalty, partial sizing per venue policy,
the waterfall plan, ADL ranking and allocation, socialized loss, insurance fund helpers.

Everything here is pure: exact integer money functions (Python ``int`` quanta, each
docstring naming its rounding) and vectorized numpy estimates over arrays of positions.
The engine decides when to call them and turns their results into ledger transfers.
"""

from __future__ import annotations

from solvency.core.liquidation.adl import (
    adl_allocate,
    adl_eligible,
    adl_lights,
    adl_order,
    adl_quintiles,
    adl_scores,
    allocate_pro_rata,
    drift_funding_rate_delta,
    socialize_funding_index,
    socialize_pro_rata_winners,
)
from solvency.core.liquidation.bankruptcy import (
    ContractKind,
    bankruptcy_price_ticks,
    bankruptcy_prices,
    bankruptcy_quote_quanta,
    bankruptcy_share_quanta,
    fillable_price,
    fillable_prices,
    insurance_fund_delta_quanta,
)
from solvency.core.liquidation.insurance import FeeSharePolicy, coverage_ratio, fee_share_update
from solvency.core.liquidation.penalty import (
    PenaltyPriority,
    PenaltySplit,
    drift_base_to_cover_margin_shortage,
    liquidation_penalty_quanta,
    size_to_cover_margin_shortage,
)
from solvency.core.liquidation.policy import (
    POLICIES,
    AdlRanking,
    LiquidationPolicy,
    Sizing,
    Socialize,
    in_cooldown,
    liquidation_size,
    liquidation_size_reference,
    policy_for,
)
from solvency.core.liquidation.waterfall import (
    AdlFill,
    BackstopTakeover,
    FundTakeover,
    InsurancePayment,
    MarketClose,
    Penalty,
    QuoteFn,
    SocializedLoss,
    Step,
    TransferLeg,
    Unresolved,
    WaterfallPlan,
    linear_quote,
    plan_waterfall,
)

__all__ = [
    "POLICIES",
    "AdlFill",
    "AdlRanking",
    "BackstopTakeover",
    "ContractKind",
    "FeeSharePolicy",
    "FundTakeover",
    "InsurancePayment",
    "LiquidationPolicy",
    "MarketClose",
    "Penalty",
    "PenaltyPriority",
    "PenaltySplit",
    "QuoteFn",
    "Sizing",
    "Socialize",
    "SocializedLoss",
    "Step",
    "TransferLeg",
    "Unresolved",
    "WaterfallPlan",
    "adl_allocate",
    "adl_eligible",
    "adl_lights",
    "adl_order",
    "adl_quintiles",
    "adl_scores",
    "allocate_pro_rata",
    "bankruptcy_price_ticks",
    "bankruptcy_prices",
    "bankruptcy_quote_quanta",
    "bankruptcy_share_quanta",
    "coverage_ratio",
    "drift_base_to_cover_margin_shortage",
    "drift_funding_rate_delta",
    "fee_share_update",
    "fillable_price",
    "fillable_prices",
    "in_cooldown",
    "insurance_fund_delta_quanta",
    "linear_quote",
    "liquidation_penalty_quanta",
    "liquidation_size",
    "liquidation_size_reference",
    "plan_waterfall",
    "policy_for",
    "size_to_cover_margin_shortage",
    "socialize_funding_index",
    "socialize_pro_rata_winners",
]
