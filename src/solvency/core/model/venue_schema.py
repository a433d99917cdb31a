"""The venue file as one pydantic model: the schema published as ``docs/schema/venue-v1.json``.

A venue file (``--venue FILE``, a scenario's ``[venue]`` table, the bundled presets) is
checked against :class:`VenueFile` before anything is built from it, so that a misspelt
key anywhere in it (``oracle.sourcez``, ``markets.BTC-PERP.tikc_size``,
``oracle.breakers.rules[0].treshold``) is refused with its dotted path and the keys that
were expected, never ignored. Every section is here: ``assets`` (with their collateral
tiers), ``markets`` of every margin model and the option parameters, ``oracle`` (sources,
guard config, mark method, breakers, pre-trade limits, rate limit), ``insurance``,
``portfolio_margin`` and ``liquidation``.

Amounts are exact decimals: decimal strings (recommended) or JSON/TOML numbers read as
``Decimal``; a Python ``float`` is refused, as the venue parser refuses it. The model
checks the shape (keys, types, ranges); the rules that span keys (a market's model and
the keys that apply to it, tiers starting at 0, an option's underlying being a market of
the venue, a preset's markets completed by a file's partial overrides) stay with the
parser (:func:`solvency.core.model.venue.build_venue`), which names the same dotted
paths. Every market key is therefore optional here: a file built on a ``preset``
overrides only what it names.

Pure: no IO.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

from solvency.core.liquidation.policy import LiquidationSection
from solvency.core.schema import Num, WholeNumber, format_errors

__all__ = [
    "PRESET_NAMES",
    "AssetSection",
    "MarketSection",
    "OracleSection",
    "VenueFile",
    "check_venue_data",
]

PRESET_NAMES: Final = ("binance", "binance-2025-10-10", "binance-2025-10-14", "bitmex",
                       "deribit", "drift", "dydx", "hyperliquid")
"""The bundled presets (``solvency venues``); a test holds this to ``PRESETS``."""

_FORBID: Final = ConfigDict(extra="forbid", frozen=True)
_Name = Annotated[str, Strict(), StringConstraints(min_length=1)]
_Text = Annotated[str, Strict()]
_Bool = Annotated[bool, Strict()]


_Count = Annotated[int, Strict(), Field(ge=0)]
# The engine reads these exact decimals as floats too (margin, greeks, exposure kernels):
# magnitudes are bounded so that every product it forms stays finite (1e400 would read
# as inf, 1e-400 as 0.0) and a file with such a number is refused with its dotted key.
DECIMAL_MAX: Final = "1e18"
"""Largest magnitude of a venue file's decimal (a contract size, a tier floor, a rate)."""
DECIMAL_MIN_POSITIVE: Final = "1e-18"
"""Smallest value of a venue file's positive decimal (a contract, tick or lot size)."""
_Dec = Annotated[Decimal, Num(ge="-" + DECIMAL_MAX, le=DECIMAL_MAX, text_ok=True,
                              float_ok=False)]
_DecNonNeg = Annotated[Decimal, Num(ge=0, le=DECIMAL_MAX, text_ok=True, float_ok=False)]
_DecPos = Annotated[Decimal, Num(ge=DECIMAL_MIN_POSITIVE, le=DECIMAL_MAX, text_ok=True,
                                 float_ok=False)]
_Real = Annotated[Decimal, Num()]  # a float setting (oracle, breakers, limits): a number
_RealPos = Annotated[Decimal, Num(gt=0)]
_RealPosText = Annotated[Decimal, Num(gt=0, text_ok=True)]  # read with float(): "10" too


# ============================================================================ assets


class CollateralTierSection(BaseModel):
    """One collateral tier: from ``floor_usd`` of the asset's USD value, weight ``weight``."""

    model_config = _FORBID
    floor_usd: _DecNonNeg = Field(description="USD value of the holding where the tier "
                                              "starts (the first tier: 0).")
    weight: Annotated[Decimal, Num(ge=0, le=1, text_ok=True, float_ok=False)] = Field(
        description="Share of the tier's USD value counted as collateral (1 - haircut).")


class ValuationSourceSection(BaseModel):
    """One source of a collateral valuation rule (docs/venues.md, "Collateral valued by
    rule")."""

    model_config = _FORBID
    kind: Literal["book", "index", "redemption"] = Field(
        description="book: the venue's own spot book; index: an external index (both "
                    "oracle reports of the asset's USD price); redemption: rate x the "
                    "underlying asset's USD price.")
    weight: Annotated[Decimal, Num(ge=0, le=1, text_ok=True, float_ok=False)] = Field(
        description="Weight of the source (the weights sum to 1; 0 keeps a source as a "
                    "band reference only).")
    source: _Name | None = Field(
        None, description="Oracle source name whose reports ({type: oracle, asset, "
                          "source}) feed it (default: the kind).")
    underlying: _Name | None = Field(
        None, description="redemption: the asset whose USD price the rate multiplies.")
    rate: _DecPos | None = Field(
        None, description="redemption: units of the underlying one unit redeems for (the "
                          "source's reports replace it).")


class CollateralValuationSection(BaseModel):
    """How the venue values a collateral asset, instead of price_usd or price_market."""

    model_config = _FORBID
    sources: Annotated[list[ValuationSourceSection], Field(min_length=1)] = Field(
        description="Weighted sources; stale or unpriced ones drop out and the others' "
                    "weights are renormalized.")
    band: Annotated[Decimal, Num(gt=0, lt=1, text_ok=True, float_ok=False)] | None = Field(
        None, description="Clamp the price to reference x (1 -/+ band).")
    reference: _Name | None = Field(None, description="Source name the band is around.")
    stale_ms: Annotated[int, Strict(), Field(gt=0)] | None = Field(
        None, description="A book or index report older than this drops out.")


class AssetSection(BaseModel):
    """An asset: its quantum, its USD price (fixed or from a market) and collateral tiers."""

    model_config = _FORBID
    decimals: Annotated[int, Strict(), Field(ge=0, le=18)] | None = Field(
        None, description="Decimal places of the asset's quantum (USDT: 6, BTC: 8).")
    price_usd: _DecPos | None = Field(None, description="Fixed USD price (stablecoins).")
    price_market: _Name | None = Field(None, description="Market whose mark prices the asset.")
    collateral: list[CollateralTierSection] | None = Field(
        None, description="Collateral tiers by USD value, floors increasing from 0 "
                          "(default: one tier of weight 1).")
    valuation: CollateralValuationSection | None = Field(
        None, description="The venue's rule for the asset's USD price (weighted sources, "
                          "band, staleness), instead of price_usd or price_market.")


# ============================================================================ markets


class MarginTierSection(BaseModel):
    """One tier (bracket) of the tiered margin model."""

    model_config = _FORBID
    floor: _DecNonNeg = Field(description="Position notional where the tier starts.")
    mmr: _DecNonNeg = Field(description="Maintenance margin rate.")
    imr: _DecNonNeg | None = Field(None, description="Initial margin rate (or max_leverage).")
    max_leverage: _DecPos | None = Field(None, description="1 / imr (Binance brackets).")
    maintenance_amount: _Dec | None = Field(
        None, description="Maintenance amount (Binance cum); default: the bracket recursion.")
    initial_amount: _Dec | None = Field(None, description="Initial amount; default: the "
                                                          "bracket recursion.")


class MarketSection(BaseModel):
    """A market: contract terms, margin model (``model`` and its keys) and option terms.

    Which keys apply depends on ``model`` (the parser refuses the others):
    ``tiered``: tiers, continuous_initial; ``oi_scaled``: imr, maintenance_fraction,
    open_interest_lower_cap, open_interest_upper_cap; ``size_premium``: imr, mmr,
    imf_factor, unrealized_pnl_initial_asset_weight,
    unrealized_pnl_maintenance_asset_weight, unrealized_pnl_imf_factor,
    unrealized_pnl_initial_max; ``size_linear``: imr, mmr, im_slope, mm_slope;
    ``option_standard``:
    im_base, im_floor, mm_base, im_otm_discount, mm_floor, mm_otm_discount,
    mm_mark_factor, premium, put_cap, long_premium_im, long_spot_im, long_premium_mm,
    long_spot_mm.
    """

    model_config = _FORBID
    kind: Literal["linear_perp", "inverse_perp", "linear_future", "option"] | None = Field(
        None, description="Contract kind (default linear_perp).")
    base: _Name | None = None
    quote: _Name | None = None
    contract_size: _DecPos | None = None
    tick_size: _DecPos | None = None
    lot_size: _DecPos | None = None
    expiry: Annotated[Any, WithJsonSchema({
        "anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}],
        "description": "Expiry: ISO-8601 UTC (...Z) or epoch milliseconds."})] = None
    aliases: list[_Name] | None = Field(None, description="The venue's own names of the "
                                                          "market (BTCUSDT).")
    model: Literal["tiered", "oi_scaled", "size_premium", "size_linear",
                   "option_standard"] | None = Field(None, description="Margin model "
                                                                       "(default tiered).")
    tiers: list[MarginTierSection] | None = None
    continuous_initial: _Bool | None = None
    imr: _DecNonNeg | None = None
    mmr: _DecNonNeg | None = None
    maintenance_fraction: _DecNonNeg | None = None
    open_interest_lower_cap: _DecNonNeg | None = None
    open_interest_upper_cap: _DecNonNeg | None = None
    imf_factor: _DecNonNeg | None = None
    unrealized_pnl_initial_asset_weight: _DecNonNeg | None = Field(
        None, description="size_premium: weight of a position's positive unrealized PnL "
                          "in the initial check, whole 1e-4 in [0, 1] (Drift's name); "
                          "unset: every profit counts in full.")
    unrealized_pnl_maintenance_asset_weight: _DecNonNeg | None = Field(
        None, description="size_premium: the weight in the maintenance check (default 1).")
    unrealized_pnl_imf_factor: _DecNonNeg | None = Field(
        None, description="size_premium: size discount of the initial weight, whole 1e-6 "
                          "(default 0).")
    unrealized_pnl_initial_max: _DecNonNeg | None = Field(
        None, description="size_premium: weighted profit a position counts towards initial "
                          "margin at most, settlement asset (default 100: Drift's "
                          "MAX_POSITIVE_UPNL_FOR_INITIAL_MARGIN).")
    im_slope: _DecNonNeg | None = None
    mm_slope: _DecNonNeg | None = None
    im_base: _DecNonNeg | None = Field(None, description="Option IM: base share of the "
                                                         "underlying (default 0.15).")
    im_floor: _DecNonNeg | None = Field(None, description="Option IM floor (default 0.10).")
    mm_base: _DecNonNeg | None = Field(None, description="Option MM base (default 0.075).")
    im_otm_discount: _DecNonNeg | None = Field(
        None, description="Option IM: share of OTM/S taken off im_base (default 1).")
    mm_floor: _DecNonNeg | None = Field(None, description="Option MM floor (default 0; "
                                                          "Paradex 0.05).")
    mm_otm_discount: _DecNonNeg | None = Field(
        None, description="Option MM: share of OTM/S taken off mm_base (default 0; "
                          "Paradex 1).")
    mm_mark_factor: _DecNonNeg | None = Field(
        None, description="Short put MM at least this x mark (default mm_base; Paradex 0).")
    premium: _DecNonNeg | None = Field(
        None, description="Multiple of the option's mark added to a short's IM and MM "
                          "(default 1; Paradex 0).")
    put_cap: _DecPos | None = Field(
        None, description="Short put IM and MM at most put_cap x strike (default none; "
                          "Paradex 0.5).")
    long_premium_im: _DecNonNeg | None = Field(
        None, description="Long option IM: min(long_premium_im x mark, long_spot_im x S) "
                          "(default 0: longs pay their premium only; Paradex 1).")
    long_spot_im: _DecNonNeg | None = Field(
        None, description="Long option IM's share of the underlying (default 0; "
                          "Paradex 0.2).")
    long_premium_mm: _DecNonNeg | None = Field(
        None, description="Long option MM: min(long_premium_mm x mark, long_spot_mm x S) "
                          "(default 0; Paradex 0.5).")
    long_spot_mm: _DecNonNeg | None = Field(
        None, description="Long option MM's share of the underlying (default 0; "
                          "Paradex 0.1).")
    option_kind: Literal["call", "put"] | None = None
    strike: _DecPos | None = None
    underlying: _Name | None = Field(None, description="Futures or perpetual market of "
                                                       "this venue the option settles on.")


# ============================================================================ oracle


class OracleConfigSection(BaseModel):
    """The oracle guard's settings (``OracleConfig``, defaults in docs/oracle.md)."""

    model_config = _FORBID
    stale_ms: Annotated[int, Strict(), Field(gt=0)] | None = None
    max_future_ms: _Count | None = None
    band: _RealPos | None = None
    jump_limit: _RealPos | None = None
    jump_window_ms: Annotated[int, Strict(), Field(gt=0)] | None = None
    quorum: Annotated[int, Strict(), Field(ge=1)] | None = None
    acceptance: Literal["none", "dydx"] | None = None
    min_price_change_ppm: Annotated[int, Strict(), Field(gt=0)] | None = None
    smoothing: _RealPos | None = None
    price_decimals: Annotated[int, Strict(), Field(ge=0, le=18)] | None = None
    weights: dict[str, _RealPos] | None = None


class BreakerRuleSection(BaseModel):
    """One breaker rule (docs/oracle.md)."""

    model_config = _FORBID
    name: _Name
    kind: Literal["index_move", "source_disagreement", "quorum_lost", "mark_twap"]
    action: Literal["reduce_only", "liquidations_paused", "halted"]
    threshold: _Real | None = None
    window_ms: _Count | None = None
    for_ms: _Count | None = None


class BreakersSection(BaseModel):
    """The circuit breakers of every market (``BreakerConfig``)."""

    model_config = _FORBID
    rules: list[BreakerRuleSection] | None = Field(
        None, description="Replaces the default rules when given.")
    cooldown_ms: _Count | None = None
    recovery_ms: _Count | None = None


class MarketLimitsSection(BaseModel):
    """A market's pre-trade limits (sizes in contracts, notional in quote units)."""

    model_config = _FORBID
    price_band: _RealPosText | None = None
    size_max: _RealPosText | None = None
    notional_max_quote: _RealPosText | None = None
    position_max: _RealPosText | None = None
    oi_max: _RealPosText | None = None


class RateLimitSection(BaseModel):
    """Orders per account per window."""

    model_config = _FORBID
    max_orders: Annotated[WholeNumber, Field(ge=1)]
    window_ms: Annotated[WholeNumber, Field(ge=1)]


class OracleSection(BaseModel):
    """Where marks come from and what guards them (``engine/feeds.py``, docs/oracle.md)."""

    model_config = _FORBID
    sources: list[_Name] | None = Field(None, description="Price sources (default: binance, "
                                                          "coinbase, okx, bybit, kraken).")
    config: OracleConfigSection | None = None
    mark: Literal["index", "bitmex", "binance", "hyperliquid"] | None = Field(
        None, description="Mark price method (default index).")
    breakers: BreakersSection | None = None
    limits: dict[str, MarketLimitsSection] | None = Field(
        None, description="Pre-trade limits per market name.")
    rate_limit: RateLimitSection | None = None


# ============================================================================ the rest


class TargetFromLossesSection(BaseModel):
    """``insurance.policy.target_from_losses``: the target from realized losses."""

    model_config = _FORBID
    cover_ppm: Annotated[int, Strict(), Field(gt=0)] = Field(
        description="Cover factor on the largest episode's losses (2,000,000: twice).")
    episode_ms: Annotated[int, Strict(), Field(gt=0)] | None = Field(
        None, description="Length of a loss episode (default 1 day).")
    history_ms: Annotated[int, Strict(), Field(gt=0)] | None = Field(
        None, description="How far back losses count (default 365 days).")


class FeeSharePolicySection(BaseModel):
    """Governance rule for the share of fees paid into the insurance fund."""

    model_config = _FORBID
    target_ppm: _Count
    release_ppm: _Count
    step_ppm: Annotated[int, Strict(), Field(gt=0)]
    min_share_ppm: _Count
    max_share_ppm: Annotated[int, Strict(), Field(ge=0, le=1_000_000)]
    param: _Name | None = None
    target_fund: _DecPos | None = Field(
        None, description="A fund target in target_asset (e.g. the ES99 of the fund's need "
                          "over a stress sweep, `solvency fund-target --venue-out`): "
                          "coverage is then fund / target_fund instead of fund / open "
                          "interest.")
    target_asset: _Name | None = Field(None, description="The asset of target_fund.")
    target_from_losses: TargetFromLossesSection | None = Field(
        None, description="Re-estimate the target from the losses the engine realizes: "
                          "max(target_fund, cover x the largest episode's losses).")


class InsuranceSection(BaseModel):
    """The insurance fund's income from fees."""

    model_config = _FORBID
    fee_share_ppm: Annotated[WholeNumber, Field(ge=0, le=1_000_000)] | None = Field(
        None, description="Share of trading fees paid into the fund (ppm).")
    policy: FeeSharePolicySection | None = None


class PortfolioMarginSection(BaseModel):
    """How portfolio margin combines the underlyings' requirements."""

    model_config = _FORBID
    combine: Literal["sum", "correlation"] | None = None
    correlation: dict[str, Annotated[Decimal, Num(ge=-1, le=1, text_ok=True)]] | None = Field(
        None, description='Correlation per pair of underlyings, "BTC/ETH": 0.8.')


class MarginSection(BaseModel):
    """Venue-wide margin rules (docs/venues.md, "Open orders in the initial-margin check")."""

    model_config = _FORBID
    open_orders: Literal["none", "worst_side"] | None = Field(
        None, description="How resting orders count in an order's initial-margin check: "
                          "none (the order alone, as if filled at its price: dYdX v4), "
                          "worst_side (each market's position plus all its open bids or "
                          "all its open asks, whichever is worse, at the mark: Drift). "
                          "Default: the preset's rule, else none.")
    open_order_margin_usd: _DecNonNeg | None = Field(
        None, description="Initial margin added per open order (Drift's "
                          "OPEN_ORDER_MARGIN_REQUIREMENT: 0.01); only with worst_side.")


class VenueFile(BaseModel):
    """A venue file (JSON or TOML), version 1: a full venue, or a preset and overrides.

    ``{"preset": "binance", ...}`` starts from a bundled preset and overrides what it
    names (markets and assets key by key, other sections whole); without a preset,
    ``assets`` and ``markets`` are required.
    """

    model_config = _FORBID
    preset: Literal[PRESET_NAMES] | None = Field(  # type: ignore[valid-type]
        None, description="Bundled venue to start from (solvency venues).")
    name: _Text | None = None
    source: _Text | None = Field(None, description="Where the values come from.")
    as_of: _Text | None = Field(None, description="When they were read.")
    margin_call_ratio: Annotated[Decimal, Num(gt=0, le=1, text_ok=True, float_ok=False)] | None = (
        Field(None, description="Margin call when maintenance / equity reaches this "
                                "(default 0.8)."))
    assets: dict[str, AssetSection] | None = None
    markets: dict[str, MarketSection] | None = None
    oracle: OracleSection | None = None
    insurance: InsuranceSection | None = None
    portfolio_margin: PortfolioMarginSection | None = None
    liquidation: LiquidationSection | None = None
    margin: MarginSection | None = None


def check_venue_data(data: object, *, source: str = "venue") -> str | None:
    """Validate venue data against :class:`VenueFile`; return the errors or ``None``.

    The message has one line per problem, ``source: dotted.key: what was expected``.
    """
    try:
        VenueFile.model_validate(data)
    except ValidationError as exc:
        return format_errors(source, exc, VenueFile)
    return None
