"""Liquidation policy per venue (frozen data) and the partial-liquidation sizing rule.

A :class:`LiquidationPolicy` says how much of a position a liquidation closes per step,
what penalty it charges and who gets it, and which steps of the waterfall run (market
close, backstop vault, insurance fund, ADL, socialized loss). Presets reproduce published
venue rules; each names its source and date, and values that could not be checked
against a primary source are marked UNVERIFIED in ``source`` (see docs/liquidation.md).

Notional thresholds here are sizing limits in quote currency units (USD), floats by
design: they choose a size, they never move money.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    WithJsonSchema,
)

from solvency.core.liquidation.dynamic_fee import DynamicFee
from solvency.core.liquidation.penalty import PenaltyPriority
from solvency.core.schema import WholeNumber, format_errors
from solvency.core.typing import BoolArray1D, Float64Array1D, Int64Array1D
from solvency.core.units import PPM

__all__ = [
    "FUND_RULE_KEYS",
    "NO_POLICY_HINT",
    "PENALTY_RULE_KEYS",
    "POLICIES",
    "POLICY_DATA",
    "AdlRanking",
    "DynamicFeeSection",
    "FundCapacity",
    "LiquidationPolicy",
    "LiquidationSection",
    "Sizing",
    "Socialize",
    "in_cooldown",
    "liquidation_size",
    "liquidation_size_reference",
    "policy_for",
    "policy_to_data",
    "policy_with_overrides",
    "resolve_policy",
]

Sizing = Literal["close_all", "dydx", "hyperliquid", "drift", "tier_step"]
AdlRanking = Literal["none", "bitmex", "binance", "pro_rata"]
Socialize = Literal["none", "funding_index", "pro_rata_winners"]
FundCapacity = Literal["cash", "equity", "equity_at_depth"]


@dataclass(frozen=True, slots=True)
class LiquidationPolicy:
    """How a venue liquidates: sizing, penalty, and which waterfall steps apply.

    Parameters
    ----------
    name, source, as_of
        Identity and provenance of the values.
    sizing
        Partial-liquidation rule (see :func:`liquidation_size`).
    min_notional_quote, max_portion_ppm
        dYdX position block limits: a step closes at most ``max(min(min_notional,
        notional), notional x portion)``.
    account_notional_cap_quote
        dYdX subaccount block limit on notional liquidated per block (``inf``: none).
    account_insurance_cap_quote
        dYdX subaccount block limit on insurance fund lost per block (``inf``: none).
    partial_threshold_quote, partial_portion_ppm, cooldown_ms
        Hyperliquid: above the threshold only ``portion`` is sent, then a cooldown
        during which orders are for the whole position.
    margin_buffer_ppm
        Drift ``liquidation_margin_buffer_ratio``: liquidate until collateral covers
        ``mm + buffer x notional`` (the buffer is a share of the liabilities' value).
    liquidator_fee_ppm, insurance_fee_ppm, penalty_priority
        Penalty on the closed notional, capped at the surplus over bankruptcy.
    bankruptcy_adjustment_ppm, spread_to_mm_ratio_ppm
        dYdX fillable-price config (0, 0: fill limit at the bankruptcy price).
    backstop, backstop_mm_fraction_ppm
        Whether a backstop vault takes over what the book could not close, and below
        which fraction of maintenance margin (Hyperliquid: 2/3).
    fund_covers_shortfall
        Whether the insurance fund pays fills worse than the bankruptcy price.
    adl_ranking
        Queue order of auto-deleveraging (``none``: no ADL).
    adl_fund_threshold_quanta
        ADL runs only when the fund left is at or below this (0: only when exhausted).
    socialize
        What happens to a loss nobody absorbed.
    fund_takeover
        Whether the insurance fund takes over what the book could not close (Binance,
        BitMEX's liquidation engine, Hyperliquid's liquidator vault); ``False``: the fund
        only pays shortfalls in cash and never holds positions (dYdX, Drift, Deribit).
    backstop_is_fund
        The backstop vault's capital is the fund's: backstop takeovers go to the fund's
        positions and count against its capacity (Hyperliquid's liquidator vault).
    fund_capacity
        What the ADL trigger counts as the fund's capacity to absorb a loss: ``cash``
        (its balance), ``equity`` (balance plus the positions it holds at the mark) or
        ``equity_at_depth`` (equity less what closing those positions would cost at the
        book's current depth). ADL (or socialization) starts only when the loss of taking
        over the rest, valued the same way, exceeds it. See docs/insurance_fund.md.
    fund_position_cap_ppm
        Largest net notional the fund may hold in one market, as a fraction of its
        counted capacity (0: no cap; Binance: 100%). What would exceed it goes to ADL.
    fund_unwind_portion_ppm, fund_unwind_band_ppm, fund_unwind_interval_ms
        How the fund closes positions it holds: when a market's mark moves, at most
        ``portion`` of its position there, only at book levels within ``band`` of the new
        mark, at most once per ``interval`` of the marks' time per market (the presets:
        one minute; ``band`` 0: the fund holds its positions).
    dynamic_fee
        A keeper reward that rises with the market's realized volatility and the
        liquidations waiting (:class:`~solvency.core.liquidation.dynamic_fee.DynamicFee`):
        where given, it replaces ``liquidator_fee_ppm`` at each step. None (every preset):
        the fixed fees.
    """

    name: str
    source: str
    as_of: str
    sizing: Sizing = "close_all"
    min_notional_quote: float = 0.0
    max_portion_ppm: int = PPM
    account_notional_cap_quote: float = math.inf
    account_insurance_cap_quote: float = math.inf
    partial_threshold_quote: float = math.inf
    partial_portion_ppm: int = PPM
    cooldown_ms: int = 0
    margin_buffer_ppm: int = 0
    liquidator_fee_ppm: int = 0
    insurance_fee_ppm: int = 0
    penalty_priority: PenaltyPriority = "liquidator_first"
    bankruptcy_adjustment_ppm: int = 0
    spread_to_mm_ratio_ppm: int = 0
    backstop: bool = False
    backstop_mm_fraction_ppm: int = 0
    fund_covers_shortfall: bool = True
    adl_ranking: AdlRanking = "none"
    adl_fund_threshold_quanta: int = 0
    socialize: Socialize = "none"
    fund_takeover: bool = True
    backstop_is_fund: bool = False
    fund_capacity: FundCapacity = "cash"
    fund_position_cap_ppm: int = 0
    fund_unwind_portion_ppm: int = PPM
    fund_unwind_band_ppm: int = 0
    fund_unwind_interval_ms: int = 0
    dynamic_fee: DynamicFee | None = None

    def __post_init__(self) -> None:
        for f in ("max_portion_ppm", "partial_portion_ppm", "fund_unwind_portion_ppm"):
            v = getattr(self, f)
            if not 0 < v <= PPM:
                raise ValueError(f"{self.name}: {f} must be in (0, 1e6]")
        for f in ("margin_buffer_ppm", "liquidator_fee_ppm", "insurance_fee_ppm",
                  "bankruptcy_adjustment_ppm", "spread_to_mm_ratio_ppm", "cooldown_ms",
                  "backstop_mm_fraction_ppm", "adl_fund_threshold_quanta",
                  "fund_position_cap_ppm", "fund_unwind_band_ppm", "fund_unwind_interval_ms"):
            if getattr(self, f) < 0:
                raise ValueError(f"{self.name}: {f} must be non-negative")
        if self.min_notional_quote < 0 or self.partial_threshold_quote < 0:
            raise ValueError(f"{self.name}: notional thresholds must be non-negative")
        if self.fund_capacity not in ("cash", "equity", "equity_at_depth"):
            raise ValueError(f"{self.name}: fund_capacity must be cash, equity or "
                             f"equity_at_depth")
        if self.fund_unwind_band_ppm >= PPM:
            raise ValueError(f"{self.name}: fund_unwind_band_ppm must be below 1e6")

    def backstop_eligible(self, *, collateral: float, mm: float) -> bool:
        """Return True when the backstop may take over: collateral below the fraction of
        maintenance margin (Hyperliquid: ``equity < 2/3 x MM``)."""
        return self.backstop and collateral < mm * self.backstop_mm_fraction_ppm / PPM


FUND_RULE_KEYS: Final = ("fund_takeover", "backstop_is_fund", "fund_capacity",
                         "fund_position_cap_ppm", "fund_unwind_portion_ppm",
                         "fund_unwind_band_ppm", "fund_unwind_interval_ms",
                         "adl_fund_threshold_quanta")
"""Keys of a venue file's ``liquidation`` section: the insurance fund's rule."""

PENALTY_RULE_KEYS: Final = ("margin_buffer_ppm", "liquidator_fee_ppm", "insurance_fee_ppm",
                            "bankruptcy_adjustment_ppm", "spread_to_mm_ratio_ppm",
                            "max_portion_ppm")
"""Keys of a venue file's ``liquidation`` section: the venue's liquidation parameters
(dYdX ``liquidations_config``: ``max_liquidation_fee_ppm`` is ``insurance_fee_ppm``,
``fillable_price_config`` is ``bankruptcy_adjustment_ppm`` and
``spread_to_mm_ratio_ppm``, ``max_position_portion_liquidated_ppm`` is
``max_portion_ppm``; Drift ``liquidation_margin_buffer_ratio`` x 100 is
``margin_buffer_ppm``, ``liquidator_fee`` and ``if_liquidation_fee`` are the two fees)."""


_Ppm = Annotated[WholeNumber, Field(ge=0)]
_Bool = Annotated[bool, Strict()]
_Text = Annotated[str, Strict()]


def _quote(value: object) -> float:
    # a sizing limit in quote units: a number or decimal string >= 0, or "inf" (no limit)
    if isinstance(value, str) and value.strip().lower() in ("inf", "infinity"):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError("expected a number >= 0 or \"inf\"")
    try:
        d = Decimal(value.strip() if isinstance(value, str) else repr(value)
                    if isinstance(value, float) else value)
    except InvalidOperation:
        raise ValueError(f"expected a number >= 0 or \"inf\", got {value!r}") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"expected a number >= 0 or \"inf\", got {value!r}")
    return float(d)  # a sizing limit, never money: float by design (module docstring)


class DynamicFeeSection(BaseModel):
    """``liquidation.dynamic_fee``: the keeper reward's rule (see
    :class:`~solvency.core.liquidation.dynamic_fee.DynamicFee`; all ppm are integers)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    base_ppm: _Ppm | None = Field(
        None, description="Fee in calm markets with nothing waiting (default 0).")
    vol_slope_ppm: _Ppm | None = Field(
        None, description="Fee added per 100 % of annualized realized volatility above "
                          "vol_ref_ppm (default 0).")
    vol_ref_ppm: _Ppm | None = Field(
        None, description="Annualized volatility (ppm) below which the fee does not rise "
                          "(default 0).")
    queue_slope_ppm: _Ppm | None = Field(
        None, description="Fee added per liquidation waiting when a sweep starts "
                          "(default 0).")
    max_ppm: _Ppm | None = Field(None, description="Cap on the fee (default 1e6).")
    vol_window_ms: _Ppm | None = Field(
        None, description="Trailing window of the realized volatility (default 1 h).")


_Quote = Annotated[float, BeforeValidator(_quote), WithJsonSchema({"anyOf": [
    {"type": "number", "minimum": 0}, {"type": "string", "pattern": r"^\s*(\d+\.?\d*|\.\d+)\s*$"},
    {"const": "inf"}]})]


class LiquidationSection(BaseModel):
    """A venue file's ``liquidation`` section: the venue's liquidation policy.

    Every field of :class:`LiquidationPolicy` is a key. The policy starts from ``policy``
    (a named policy of :data:`POLICIES`), else from the venue's ``preset``, else, in a
    file that states its own (``sizing`` given), from the defaults of
    :class:`LiquidationPolicy`; every other key overrides that start. A venue with none
    of the three is refused (:func:`resolve_policy`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    policy: Literal["close_all", "binance", "bitmex", "deribit", "drift", "dydx",
                    "hyperliquid"] | None = Field(
        None, description="Start from this named policy (a preset's, or close_all).")
    name: _Text | None = None
    source: _Text | None = None
    as_of: _Text | None = None
    sizing: Sizing | None = Field(None, description="Partial-liquidation rule.")
    min_notional_quote: _Quote | None = None
    max_portion_ppm: _Ppm | None = None
    account_notional_cap_quote: _Quote | None = None
    account_insurance_cap_quote: _Quote | None = None
    partial_threshold_quote: _Quote | None = None
    partial_portion_ppm: _Ppm | None = None
    cooldown_ms: _Ppm | None = None
    margin_buffer_ppm: _Ppm | None = None
    liquidator_fee_ppm: _Ppm | None = None
    insurance_fee_ppm: _Ppm | None = None
    penalty_priority: PenaltyPriority | None = None
    bankruptcy_adjustment_ppm: _Ppm | None = None
    spread_to_mm_ratio_ppm: _Ppm | None = None
    backstop: _Bool | None = None
    backstop_mm_fraction_ppm: _Ppm | None = None
    fund_covers_shortfall: _Bool | None = None
    adl_ranking: AdlRanking | None = None
    adl_fund_threshold_quanta: _Ppm | None = None
    socialize: Socialize | None = None
    fund_takeover: _Bool | None = None
    backstop_is_fund: _Bool | None = None
    fund_capacity: FundCapacity | None = None
    fund_position_cap_ppm: _Ppm | None = None
    fund_unwind_portion_ppm: _Ppm | None = None
    fund_unwind_band_ppm: _Ppm | None = None
    fund_unwind_interval_ms: _Ppm | None = None
    dynamic_fee: DynamicFeeSection | None = Field(
        None, description="Keeper reward rising with volatility and the queue (replaces "
                          "liquidator_fee_ppm; docs/liquidation.md).")


POLICY_DATA: Final[dict[str, dict[str, Any]]] = {  # each a venue file's liquidation section
    "close_all": dict(
        name="close_all", source="whole position in one step; fund takes over what the "
        "book could not close and unwinds it (20% a minute within 2.5% of the mark); ADL pro "
        "rata only beyond its equity at depth",
        as_of="n/a", adl_ranking="pro_rata", fund_capacity="equity_at_depth",
        fund_unwind_portion_ppm=200_000, fund_unwind_band_ppm=25_000,
        fund_unwind_interval_ms=60_000),
    "dydx": dict(
        name="dydx",
        source="dYdX v4-chain liquidations_config in the testing genesis "
               "(protocol/testing/genesis.sh; x/clob genesis_test.go): "
               "max_liquidation_fee_ppm 5000, min_position_notional_liquidated 1000 quote "
               "quantums, max_position_portion_liquidated_ppm 1e6, max_notional_liquidated "
               "and max_quantums_insurance_lost 1e14 quantums, bankruptcy_adjustment_ppm "
               "1e6, spread_to_maintenance_margin_ratio_ppm 100000; deleveraging "
               "(x/clob/keeper/deleveraging.go) picks offsetting accounts in pseudo-random "
               "order, approximated pro rata. Mainnet governance values may differ. "
               "The insurance fund holds no positions: it pays fills below bankruptcy and "
               "deleveraging starts when balance + delta < 0 or the balance is below "
               "max_insurance_fund_quantums_for_deleveraging "
               "(x/clob/keeper/deleveraging.go ShouldPerformDeleveraging)",
        as_of="2024-10",
        sizing="dydx", min_notional_quote="0.001", max_portion_ppm=1_000_000,
        account_notional_cap_quote="100000000.0", account_insurance_cap_quote="100000000.0",
        insurance_fee_ppm=5_000, penalty_priority="insurance_first",
        bankruptcy_adjustment_ppm=1_000_000, spread_to_mm_ratio_ppm=100_000,
        adl_ranking="pro_rata", fund_takeover=False, fund_capacity="cash"),
    "hyperliquid": dict(
        name="hyperliquid",
        source="Hyperliquid docs trading/liquidations (book first, no clearance fee; "
               "backstop by the liquidator vault below 2/3 of maintenance margin, "
               "maintenance margin kept by the vault) and the partial-liquidation "
               "announcement (positions above 100k USDC: 20% per order, then 30 s during "
               "which orders are for the whole position). ADL order: BitMEX formula used "
               "(Hyperliquid's exact ranking UNVERIFIED). The liquidator vault (the "
               "fund here) holds what it takes and trades out of it; ADL when it cannot "
               "absorb the loss (docs trading/auto-deleveraging: 'avoid liquidations that "
               "would cause a sufficiently large drawdown'), measured on its equity at "
               "depth; unwind pace 20% a minute within 2.5% of the mark UNVERIFIED",
        as_of="2025",
        sizing="hyperliquid", partial_threshold_quote="100000.0",
        partial_portion_ppm=200_000, cooldown_ms=30_000, backstop=True,
        backstop_mm_fraction_ppm=666_667, adl_ranking="bitmex", backstop_is_fund=True,
        fund_capacity="equity_at_depth", fund_unwind_portion_ppm=200_000,
        fund_unwind_band_ppm=25_000, fund_unwind_interval_ms=60_000),
    "drift": dict(
        name="drift",
        source="Drift protocol-v2 math/liquidation.rs "
               "(calculate_base_asset_amount_to_cover_margin_shortage; "
               "calculate_funding_rate_deltas_to_resolve_bankruptcy: loss socialized over "
               "both sides' base through the cumulative funding rate). Fee and buffer "
               "values UNVERIFIED (per-market on-chain): liquidator 1%, IF 1% as in the "
               "module's tests, buffer 2%",
        as_of="draft",
        sizing="drift", margin_buffer_ppm=20_000, liquidator_fee_ppm=10_000,
        insurance_fee_ppm=10_000, penalty_priority="liquidator_first",
        adl_ranking="none", socialize="funding_index", fund_takeover=False,
        fund_capacity="cash"),
    "deribit": dict(
        name="deribit",
        source="Deribit: incremental liquidation simplified to close-all; losses beyond "
               "the insurance fund socialized pro rata over winning positions "
               "(Deribit's historical socialized-loss rule). Fees UNVERIFIED (draft)",
        as_of="draft",
        sizing="close_all", insurance_fee_ppm=0, adl_ranking="none",
        socialize="pro_rata_winners", fund_takeover=False, fund_capacity="cash"),
    "binance": dict(
        name="binance",
        source="Binance 'Liquidation Protocols' FAQ (updated 2024-05-29): cancel orders, "
               "one IOC order to reduce to a lower bracket, then bankruptcy-price "
               "takeover by the insurance fund; ADL queue. Clearance fee rate UNVERIFIED "
               "(per symbol); ADL score as PnL ratio x margin ratio (draft). Insurance "
               "Fund FAQ (2024-05-29): the fund takes over bankrupt positions and offloads "
               "them gradually, net notional per market at most 100% of the fund; FAQ "
               "2025-05-06: ADL when the unrealized loss of taken-over positions exceeds "
               "the fund (read as equity at depth); 2.5% unwind band from the 2019 "
               "rule; unwind pace 20% a minute UNVERIFIED",
        as_of="2025-05",
        sizing="tier_step", insurance_fee_ppm=12_500, penalty_priority="insurance_first",
        adl_ranking="binance", fund_capacity="equity_at_depth",
        fund_position_cap_ppm=1_000_000, fund_unwind_portion_ppm=200_000,
        fund_unwind_band_ppm=25_000, fund_unwind_interval_ms=60_000),
    "bitmex": dict(
        name="bitmex",
        source="BitMEX app/autoDeleveraging and autoDeleveragingExamples (ranking, "
               "quintiles, fills at the liquidated order's bankruptcy price); surplus over "
               "bankruptcy to the insurance fund; partial liquidation down one risk-limit "
               "step (BitMEX risk limits docs). The liquidation engine takes the position "
               "over and the fund pays for aggressing it in the market; ADL when the fund "
               "is depleted (app/liquidation, app/autoDeleveraging), counted as equity at "
               "depth; unwind all a minute within 2.5% of the mark UNVERIFIED",
        as_of="2021-08",
        sizing="tier_step", insurance_fee_ppm=1_000_000, penalty_priority="insurance_first",
        adl_ranking="bitmex", fund_capacity="equity_at_depth",
        fund_unwind_band_ppm=25_000, fund_unwind_interval_ms=60_000),
}


def _given(section: LiquidationSection) -> dict[str, Any]:
    """The section's keys as :class:`LiquidationPolicy` fields (``dynamic_fee`` built)."""
    given = section.model_dump(exclude_none=True)
    if "dynamic_fee" in given:
        given["dynamic_fee"] = DynamicFee(**given["dynamic_fee"])
    return given


def _from_data(name: str, data: Mapping[str, Any]) -> LiquidationPolicy:
    section = LiquidationSection.model_validate(data)
    return LiquidationPolicy(**_given(section))


POLICIES: Final[dict[str, LiquidationPolicy]] = {
    name: _from_data(name, data) for name, data in POLICY_DATA.items()}
"""The named policies, built from :data:`POLICY_DATA` through the venue file's schema."""


NO_POLICY_HINT: Final = (
    "no liquidation policy: add \"preset\": NAME (a bundled venue, whose policy it "
    "inherits), or a liquidation section naming one (\"liquidation\": {\"policy\": "
    "\"close_all\"}) or stating one (\"liquidation\": {\"sizing\": \"close_all\", ...}; "
    "docs/liquidation.md)")


def resolve_policy(data: Mapping[str, Any] | None, *, preset: str | None = None,
                   venue_name: str = "custom", path: str = "liquidation") -> LiquidationPolicy:
    """Return the policy a venue's ``liquidation`` section states.

    It starts from ``data["policy"]`` (a named policy), else from ``preset``'s, else (when
    ``data`` gives ``sizing``) from :class:`LiquidationPolicy`'s defaults named after the
    venue; the section's other keys override the start.

    Raises
    ------
    ValueError
        A bad key or value, naming its dotted path; or no start at all
        (:data:`NO_POLICY_HINT`: what to add).
    """
    if data is None:
        data = {}
    try:
        section = LiquidationSection.model_validate(data)
    except ValidationError as exc:
        raise ValueError(format_errors("venue", exc, LiquidationSection, at=(path,))) from None
    try:
        given = _given(section)
    except ValueError as exc:
        raise ValueError(f"{path}.{exc}") from None
    start_name = given.pop("policy", None) or preset
    if start_name is not None:
        if start_name not in POLICIES:
            raise ValueError(f"{path}.policy: unknown policy {start_name!r}; known: "
                             f"{sorted(POLICIES)}")
        start = POLICIES[start_name]
    elif "sizing" in given:
        start = LiquidationPolicy(name=venue_name, source="venue file", as_of="")
    else:
        raise ValueError(NO_POLICY_HINT)
    try:
        return replace(start, **given)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def policy_with_overrides(policy: LiquidationPolicy, data: Mapping[str, Any],
                          path: str = "liquidation") -> LiquidationPolicy:
    """Return ``policy`` with the keys of a venue file's ``liquidation`` section over it
    (a ``policy`` key there is refused: the start is ``policy``)."""
    if isinstance(data, Mapping) and "policy" in data:
        raise ValueError(f"{path}.policy: the policy to start from is given")
    try:
        section = LiquidationSection.model_validate(data)
    except ValidationError as exc:
        raise ValueError(format_errors("venue", exc, LiquidationSection, at=(path,))) from None
    try:
        given = _given(section)
    except ValueError as exc:
        raise ValueError(f"{path}.{exc}") from None
    try:
        return replace(policy, **given)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def policy_to_data(policy: LiquidationPolicy) -> dict[str, Any]:
    """Return ``policy`` as a ``liquidation`` section stating it whole (every field; quote
    limits as decimal strings, ``"inf"`` for none): :func:`resolve_policy` of it gives
    ``policy`` back."""
    out: dict[str, Any] = {}
    for f in fields(policy):
        v = getattr(policy, f.name)
        if f.name == "dynamic_fee":
            if v is not None:
                out[f.name] = {g.name: getattr(v, g.name) for g in fields(v)}
            continue
        out[f.name] = ("inf" if v == math.inf else repr(v)) if isinstance(v, float) else v
    return out


def policy_for(venue: str) -> LiquidationPolicy:
    """Return the named policy (a preset's, or ``close_all``).

    Raises
    ------
    KeyError
        For an unknown name (no silent ``close_all``: a venue states its policy).
    """
    if venue not in POLICIES:
        raise KeyError(f"no liquidation policy named {venue!r}; known: {sorted(POLICIES)}")
    return POLICIES[venue]


def in_cooldown(policy: LiquidationPolicy, *, last_partial_ms: Int64Array1D,
                now_ms: int) -> BoolArray1D:
    """Return, per position, whether a partial liquidation happened less than
    ``cooldown_ms`` ago (``last_partial_ms < 0``: never)."""
    return (last_partial_ms >= 0) & (now_ms - last_partial_ms < policy.cooldown_ms)


def _floor_lots(notional_cap: Float64Array1D, unit: Float64Array1D) -> Float64Array1D:
    q = np.zeros_like(notional_cap)
    np.floor_divide(notional_cap, unit, out=q, where=unit > 0)
    return q


def liquidation_size(
    policy: LiquidationPolicy, *, lots: Int64Array1D, notional: Float64Array1D,
    mm: Float64Array1D, collateral: Float64Array1D, mm_total: Float64Array1D,
    tier_floor: Float64Array1D | None = None,
    liquidated_notional: Float64Array1D | None = None,
    cooldown: BoolArray1D | None = None,
    notional_total: Float64Array1D | None = None,
) -> Int64Array1D:
    """Return the lots to close in this liquidation step, per position (vectorized).

    ``close_all``: the whole position. ``dydx``: at most ``max(min(min_notional,
    notional), notional x portion)``, within what the account may still have liquidated
    this block, rounded down to lots (at least one; the whole position when the cap
    covers it; dYdX ``GetLiquidatablePositionSizeDelta``). ``hyperliquid``: above the
    threshold and outside a cooldown, ``floor(lots x portion)`` (at least one); else all.
    ``drift``: the size whose freed requirement, net of fees, covers the shortage to
    ``mm_total + buffer x notional_total`` (the buffer is a share of the liabilities'
    value, as Drift's ``margin_requirement_plus_buffer``), each unit freeing
    ``unit x (mmr + buffer - liquidator fee - insurance fee)``, rounded up (Drift
    ``controller/liquidation.rs::liquidate_perp`` with ``margin_ratio_with_buffer`` and
    ``math/liquidation.rs::calculate_base_asset_amount_to_cover_margin_shortage``). ``tier_step``
    (Binance/BitMEX): close just enough that the rest sits below the floor of its current
    bracket (the whole position in the first bracket).

    Parameters
    ----------
    policy
        The venue's policy.
    lots
        Signed position sizes in lots.
    notional
        ``|value|`` of each position at the mark, quote units.
    mm
        Each position's maintenance margin, quote units.
    collateral, mm_total
        The holding account's collateral and total maintenance margin, per position.
    tier_floor
        ``tier_step`` only: the notional floor of each position's current bracket.
    liquidated_notional
        ``dydx`` only: notional already liquidated from the account this block.
    cooldown
        ``hyperliquid`` only: True where the account is in its partial cooldown.
    notional_total
        ``drift`` only: the account's total position notional, quote units (default: the
        position's own, the one-position account).

    Returns
    -------
    Int64Array1D
        Lots to close, ``0 <= out <= |lots|``.
    """
    size = np.abs(lots).astype(np.int64)
    sizef = size.astype(np.float64)
    unit = np.divide(notional, sizef, out=np.zeros_like(notional), where=size > 0)
    if policy.sizing == "close_all":
        return size
    if policy.sizing == "dydx":
        done = liquidated_notional if liquidated_notional is not None else np.zeros_like(notional)
        cap = np.maximum(np.minimum(policy.min_notional_quote, notional),
                         notional * (policy.max_portion_ppm / PPM))
        cap = np.minimum(cap, np.maximum(policy.account_notional_cap_quote - done, 0.0))
        part = np.clip(_floor_lots(cap, unit), 1.0, sizef)
        out = np.where((notional <= cap) | (size <= 1), sizef, part)
        return out.astype(np.int64)
    if policy.sizing == "hyperliquid":
        cool = cooldown if cooldown is not None else np.zeros(size.shape[0], dtype=np.bool_)
        part = np.maximum(size * policy.partial_portion_ppm // PPM, 1)
        partial = (notional > policy.partial_threshold_quote) & ~cool
        return np.where(partial, np.minimum(part, size), size).astype(np.int64)
    if policy.sizing == "drift":
        buffer = policy.margin_buffer_ppm / PPM
        total = notional if notional_total is None else notional_total
        shortage = mm_total + buffer * total - collateral
        fees = (policy.liquidator_fee_ppm + policy.insurance_fee_ppm) / PPM
        mmr = np.divide(mm, notional, out=np.zeros_like(mm), where=notional > 0)
        den = unit * (mmr + buffer - fees)
        q = np.full_like(shortage, np.inf)
        np.divide(shortage, den, out=q, where=den > 0)
        q = np.where(shortage > 0, np.ceil(q), 0.0)
        return np.minimum(q, sizef).astype(np.int64)
    if tier_floor is None:
        raise ValueError("tier_step sizing needs tier_floor")
    keep = np.zeros_like(sizef)
    np.ceil(np.divide(tier_floor, unit, out=np.zeros_like(unit), where=unit > 0), out=keep)
    keep = np.clip(keep - 1.0, 0.0, sizef)
    return np.where(tier_floor > 0, sizef - keep, sizef).astype(np.int64)


def liquidation_size_reference(
    policy: LiquidationPolicy, *, lots: int, notional: float, mm: float, collateral: float,
    mm_total: float, tier_floor: float = 0.0, liquidated_notional: float = 0.0,
    cooldown: bool = False, notional_total: float | None = None,
) -> int:
    """Plain twin of :func:`liquidation_size` for one position (tests hold them equal)."""
    size = abs(lots)
    unit = notional / size if size else 0.0
    if policy.sizing == "close_all":
        return size
    if policy.sizing == "dydx":
        cap = max(min(policy.min_notional_quote, notional),
                  notional * (policy.max_portion_ppm / PPM))
        cap = min(cap, max(policy.account_notional_cap_quote - liquidated_notional, 0.0))
        if notional <= cap or size <= 1:
            return size
        part = cap // unit if unit > 0 else 0.0
        return int(min(max(part, 1.0), size))
    if policy.sizing == "hyperliquid":
        if notional > policy.partial_threshold_quote and not cooldown:
            return min(max(size * policy.partial_portion_ppm // PPM, 1), size)
        return size
    if policy.sizing == "drift":
        buffer = policy.margin_buffer_ppm / PPM
        total = notional if notional_total is None else notional_total
        shortage = mm_total + buffer * total - collateral
        if not shortage > 0:
            return 0
        fees = (policy.liquidator_fee_ppm + policy.insurance_fee_ppm) / PPM
        mmr = mm / notional if notional > 0 else 0.0
        den = unit * (mmr + buffer - fees)
        if not den > 0:
            return size
        return int(min(math.ceil(shortage / den), size))
    if tier_floor <= 0:
        return size
    keep = math.ceil(tier_floor / unit) if unit > 0 else 0
    return size - min(max(keep - 1, 0), size)
