"""Stress-lab scenarios: one TOML file describes market, population, venue and liquidity.

A scenario is parsed strictly (unknown keys, wrong types and out-of-range values are
refused with the dotted path of the key) into a frozen :class:`Scenario`, which builds
the inputs of a run: the price paths (:mod:`solvency.sim.paths`), the population spec
(:mod:`solvency.sim.population`), the venue (a preset plus overrides, validated by the
venue parser) and the liquidity model (:mod:`solvency.sim.market`).

File format (every key is documented in ``docs/stress_lab.md``)::

    name = "..."
    start = "2025-10-10T00:00:00Z"   # ISO-8601 UTC, TOML datetime or epoch ms
    horizon = "2d"                   # durations: "30s", "1m", "4h", "2d" or integer ms
    step = "1m"

    [seeds]      market = 1, population = 2
    [run]        verify_every = 60, vol_window = 30
    [market]     model = "crash" | "gbm" | "merton" | "garch" | "bootstrap" | "replay"
                 correlation = [[1.0, 0.85], [0.85, 1.0]]   # order of market.markets
    [market.markets.BTC-PERP]        start_price = 117000.0, ... (the model's fields)
    [population] n_accounts = 100000, ... ; [population.open_interest_base] BTC-PERP = ...
    [venue]      preset = "binance", insurance_fund = 20000000, [venue.insurance] ...
    [liquidity.BTC-PERP]             depth_per_bps_base = 5.0, daily_volume_base = ...
    [agents.topup] / [agents.liquidator] / [agents.market_maker] / [agents.arbitrage] /
    [agents.funding]                 each optional (absent or enabled = false: off);
                                     unset keys take the defaults of solvency.sim.agents
    [oracle]     sources = [...], venue_sources = [...], noise_bps = 0.0, stale = "2m",
                 lag = {okx = "5s"}, outages = [{source = "okx", start = "21h",
                 duration = "10m"}]    optional: marks reach the engine as oracle reports
                                     (solvency.sim.oracle_feed), so the guard and the
                                     breakers run; absent: marks are price events
    [report]     fund_used_max = 0.5, bad_debt_max = 0, ...   optional: the thresholds of
                                     the report's verdict (docs/stress_lab.md)

Relative file paths (``source`` of replay and bootstrap markets, ``book_depth`` of a
liquidity section) are resolved when a run needs them: against the current directory,
then against the directory above the scenario file (the repository root for the bundled
``scenarios/*.toml``); a missing file is a :class:`ScenarioError` naming both places.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Final, Literal, NamedTuple

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import core_schema

from solvency.adapters.grids import grid_names, load_grid
from solvency.adapters.ohlcv import OhlcvError, parse_interval_ms, read_ohlcv
from solvency.core.model.events import EventError, parse_ts_ms
from solvency.core.model.presets import PRESETS, preset_names, venue_from_data
from solvency.core.model.venue import ConfigError, Venue
from solvency.core.portfolio import GridError, ScenarioGrid
from solvency.core.schema import format_errors
from solvency.engine.feeds import DEFAULT_SOURCES
from solvency.sim.agents import (
    AgentsSpec,
    ArbitrageSpec,
    FundingSpec,
    LiquidatorSpec,
    MarketMakerSpec,
    TopUpSpec,
)
from solvency.sim.market import DepthProfile, LiquiditySpec, load_binance_book_depth
from solvency.sim.option_hedge import OptionHedgeSpec
from solvency.sim.option_holders import OptionHoldersSpec, option_market_entries
from solvency.sim.oracle_feed import OracleFeedSpec, SourceOutage
from solvency.sim.paths import (
    BootstrapSpec,
    CrashSpec,
    GarchSpec,
    GbmSpec,
    MertonSpec,
    PathSpec,
    ReplaySpec,
)
from solvency.sim.population import EntryHistory, LeverageComponent, PopulationSpec

__all__ = [
    "DEFAULT_SCENARIO_TOML",
    "MODELS",
    "CollateralBookSpec",
    "LinksSpec",
    "LiquidityLinkSpec",
    "Scenario",
    "ScenarioError",
    "ScenarioFile",
    "TradersLinkSpec",
    "VenueSpec",
    "default_scenario",
    "load_scenario",
    "parse_scenario",
    "parse_scenario_data",
]

ModelName = Literal["crash", "gbm", "merton", "garch", "bootstrap", "replay"]
MODELS: Final[tuple[str, ...]] = ("crash", "gbm", "merton", "garch", "bootstrap", "replay")
FUND_KEY: Final = "insurance_fund"
"""Key of the ``[venue]`` table holding the insurance fund's starting capital."""


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names the file and the key."""


# ============================================================================ schema

# allow_inf_nan=False: a NaN or an infinity in any float key is refused with its key.
_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)
_DURATION_PATTERN: Final = r"^\s*\d+\s*(ms|s|m|h|d|w)\s*$"


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"a string {value!r}"
    if isinstance(value, int | float):
        return f"a number {value!r}"
    return type(value).__name__


def _duration_value(value: object) -> int | str:
    # one message for the union (pydantic would give one line per member: step.int, step.str)
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError('expected a duration: a string like "30s", "15m", "4h", "2d" or an '
                     f"integer of milliseconds, got {_type_name(value)}")


def _timestamp_value(value: object) -> int | str | datetime:
    if isinstance(value, str | datetime) or (isinstance(value, int)
                                             and not isinstance(value, bool)):
        return value
    raise ValueError('expected a UTC time: an ISO-8601 string ("2025-10-10T00:00:00Z"), a '
                     f"TOML datetime with an offset or epoch milliseconds, got "
                     f"{_type_name(value)}")


class _Written:
    """Marker for ``Annotated[T, _Written(check, schema)]``: validate with ``check`` alone
    and publish ``schema`` (built here, not by pydantic from the union, so every supported
    pydantic version writes the same text, defaults included)."""

    __slots__ = ("_check", "_schema")

    def __init__(self, check: Callable[[object], Any], schema: dict[str, Any]) -> None:
        self._check = check
        self._schema = schema

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        """Validate with ``check`` alone (one message for the union)."""
        return core_schema.no_info_plain_validator_function(self._check)

    def __get_pydantic_json_schema__(self, core: Any, handler: Any) -> dict[str, Any]:
        """Publish ``schema`` (a fresh copy per field)."""
        return copy.deepcopy(self._schema)


Duration = Annotated[int | str, _Written(_duration_value, {
    "anyOf": [{"type": "integer", "minimum": 0},
              {"type": "string", "pattern": _DURATION_PATTERN}],
    "description": 'a duration: "30s", "15m", "4h", "2d" (units ms, s, m, h, d, w) or '
                   "integer milliseconds"})]
"""A duration as written in the file (converted to ms by :func:`_duration_ms`)."""

Timestamp = Annotated[int | str | datetime, _Written(_timestamp_value, {
    "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}],
    "description": 'a UTC time: ISO-8601 ("2025-10-10T00:00:00Z"), a TOML datetime with '
                   "an offset, or epoch milliseconds"})]
"""A time as written in the file (converted to epoch ms by :func:`_ts_ms`)."""


def _duration_ms(value: Duration, key: str, *, zero_ok: bool = False) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{key}: expected a duration, got a boolean")
    if isinstance(value, int):
        if value < 0 or (value == 0 and not zero_ok):
            raise ValueError(f"{key}: duration must be {'>=' if zero_ok else '>'} 0 ms, "
                             f"got {value}")
        return value
    try:
        return parse_interval_ms(value)
    except OhlcvError as exc:
        raise ValueError(f"{key}: {exc}") from None


def _ts_ms(value: Timestamp, key: str) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{key}: datetime must carry a UTC offset (...Z)")
        value = value.isoformat()
    try:
        return parse_ts_ms(value)
    except EventError as exc:
        raise ValueError(f"{key}: {exc.args[-1] if exc.args else exc}") from None


class _Seeds(BaseModel):
    model_config = _STRICT
    market: int = 1
    population: int = 2
    agents: int = 3


class _Run(BaseModel):
    model_config = _STRICT
    verify_every: int = Field(default=60, ge=1)
    vol_window: int = Field(default=30, ge=2)


class _Crash(BaseModel):
    model_config = _STRICT
    start_price: float
    drift_annual: float = 0.0
    vol_annual: float = 0.5
    crash_at: Duration = "6h"
    gap_fraction: float = 0.05
    cascade_depth: float = 0.10
    cascade_duration: Duration = "30m"
    recovery_fraction: float = 0.5
    recovery_half_life: Duration = "2h"
    crash_vol_multiplier: float = 3.0


class _Gbm(BaseModel):
    model_config = _STRICT
    start_price: float
    mu_annual: float = 0.0
    sigma_annual: float = 0.8


class _Merton(BaseModel):
    model_config = _STRICT
    start_price: float
    mu_annual: float = 0.0
    sigma_annual: float = 0.6
    jump_intensity_annual: float = 12.0
    jump_mean: float = -0.05
    jump_std: float = 0.05


class _Garch(BaseModel):
    model_config = _STRICT
    start_price: float
    omega: float
    alpha: float
    beta: float
    nu: float
    gamma: float = 0.0
    h0: float | None = None


class _Bootstrap(BaseModel):
    model_config = _STRICT
    source: str
    block_len: int = 60
    method: Literal["stationary", "fixed"] = "stationary"
    interval: str | None = None
    start_price: float | None = None


class _Replay(BaseModel):
    model_config = _STRICT
    source: str
    points_per_bar: int = 12
    interval: str | None = None
    start: Timestamp | None = None
    end: Timestamp | None = None
    # bars before the window for population.entry_history (default: source's own)
    history: str | None = None


_MARKET_MODELS: Final[dict[str, type[BaseModel]]] = {
    "crash": _Crash, "gbm": _Gbm, "merton": _Merton, "garch": _Garch,
    "bootstrap": _Bootstrap, "replay": _Replay,
}


class _Market(BaseModel):
    model_config = _STRICT
    model: ModelName
    correlation: list[list[float]] | None = None
    # each market's table is read by the model's own class (_MARKET_MODELS) once the
    # model is known; the JSON Schema says the same with one if/then per model
    markets: dict[str, dict[str, Any]]


class _Leverage(BaseModel):
    model_config = _STRICT
    weight: float
    median: float
    sigma: float


class _Liquidity(BaseModel):
    model_config = _STRICT
    daily_volume_base: float
    depth_per_bps_base: float | None = None
    max_bps: float = 500.0
    distance_bps: list[float] | None = None
    bid_base: list[float] | None = None
    ask_base: list[float] | None = None
    book_depth: str | None = None
    book_depth_quantile: float = 0.5
    impact_y: float = 1.0
    vol_ref_annual: float = 0.5
    depth_vol_elasticity: float = 1.0
    min_depth_fraction: float = 0.05
    depth_half_life: Duration = "15m"
    impact_half_life: Duration = "30m"
    band_bps: float = 5.0
    oracle_weight: float = 0.0

    @model_validator(mode="after")
    def _one_profile(self) -> _Liquidity:
        given = [self.depth_per_bps_base is not None,
                 self.distance_bps is not None or self.bid_base is not None
                 or self.ask_base is not None,
                 self.book_depth is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one depth profile: depth_per_bps_base, "
                             "distance_bps/bid_base/ask_base, or book_depth")
        return self


class _OptionsHedge(BaseModel):
    """``[population.options.hedge]``: the writers re-hedge with the perp during the run
    (sim/option_hedge.py, docs/stress_lab.md "Option holders")."""

    model_config = _STRICT
    interval: Duration = Field(description="Event time between two re-hedges.")
    band_base: float = Field(default=0.0, ge=0, description="No-trade band, base units.")
    band_share: float = Field(default=0.0, ge=0, le=1, description=(
        "No-trade band as a share of the writer's option delta (the larger band applies)."))
    hedge_ratio: float = Field(default=1.0, gt=0, le=1, description=(
        "Share of the net delta traded."))
    fee_taker_ppm: int = Field(default=500, ge=0, le=100_000, description=(
        "Taker fee of a hedge, ppm of its notional."))
    maker_capital: float = Field(default=0.0, ge=0, description=(
        "Collateral the book's makers post for the hedges they take (settlement asset)."))
    source: str = Field(default="assumed", description="Where these values come from.")


class _Options(BaseModel):
    """``[population.options]``: accounts short listed options, delta-hedged
    (sim/option_holders.py, docs/stress_lab.md "Option holders")."""

    model_config = _STRICT
    underlying: str = Field(description="The path's market the options are on (a "
                                        "linear perp of the scenario).")
    holder_fraction: float = Field(gt=0, le=1, description="Share of the population's "
                                                           "cross accounts that write "
                                                           "options.")
    open_interest_base: float = Field(gt=0, description="Contracts of one coin written "
                                                        "per series, over all holders.")
    moneyness: list[float] = Field(default=[-0.1, 0.0, 0.1], min_length=1,
                                   description="Strikes at S0 x (1 + m).")
    kinds: list[Literal["call", "put"]] = Field(default=["call", "put"], min_length=1)
    expiries: list[Duration] = Field(default=["7d"], min_length=1,
                                     description="Expiries after the scenario's start, "
                                                 "each after the run's end.")
    vol: float = Field(default=0.8, gt=0, le=10, description="Mark implied vol at the "
                                                             "opening, and its floor.")
    vol_realized_multiple: float = Field(default=0.0, ge=0, le=10, description=(
        "With > 0 the mark vol is max(vol, multiple x the underlying's realized vol)."))
    vol_max: float = Field(default=3.0, gt=0, le=10, description="The mark vol's cap.")
    vol_source: str = Field(default="assumed", description="Where vol comes from.")
    margin_multiple: float = Field(default=1.5, ge=1, le=100, description=(
        "Collateral per holder for its options, in multiples of their initial margin."))
    tick_size: str | None = None
    lot_size: str | None = None
    liquidity: _Liquidity | None = Field(default=None, description=(
        "The options' book (each series): a [liquidity.X] table; absent, liquidations "
        "of options go to the venue's fund, backstop or ADL."))
    hedge: _OptionsHedge | None = Field(default=None, description=(
        "Re-hedging during the run; absent, the opening hedge only."))
    margin: Literal["standard", "portfolio"] = Field(default="standard", description=(
        "How the writers are margined: the venue's per-position rule (standard) or its "
        "portfolio-margin scenario grid (portfolio)."))
    pm_grid: str | None = Field(default=None, description=(
        "With margin = \"portfolio\": the scenario grid, a shipped name (deribit_pm, "
        "cme_span_16, paradex_pm) or a grid TOML file (default deribit_pm)."))


class _Population(BaseModel):
    model_config = _STRICT
    n_accounts: int = 1000
    open_interest_base: dict[str, float]
    long_short_ratio: float = 1.0
    long_account_fraction: float | None = None
    leverage: list[_Leverage] | None = None
    leverage_min: float = 1.0
    leverage_max: float = 100.0
    size_distribution: Literal["pareto", "lognormal"] = "pareto"
    size_pareto_alpha: float = 1.5
    size_lognormal_sigma: float = 1.5
    extra_market_probability: float = 0.2
    entry_spread: float = 0.02
    isolated_fraction: float = 0.0
    collateral_mix: dict[str, float] = {}
    collateral_prices: dict[str, float] = {}
    account_prefix: str = "acct"
    entry_history: Duration | None = None
    options: _Options | None = None


Latency = Duration


def _latency_ms(value: Latency, key: str) -> int:
    # like a duration, but zero (no delay) is allowed
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return 0
    return _duration_ms(value, key)


class _TopUp(BaseModel):
    model_config = _STRICT
    enabled: bool = True
    respond_fraction: float | None = None
    latency: Latency | None = None
    latency_sigma: float | None = None
    target_margin_ratio: float | None = None
    reserve_multiple_min: float | None = None
    reserve_pareto_alpha: float | None = None
    reserve_multiple_max: float | None = None


class _Liquidator(BaseModel):
    model_config = _STRICT
    enabled: bool = True
    capital_quote: float | None = None
    capacity_per_step_quote: float | None = None
    latency: Latency | None = None
    idle_reset: Duration | None = None
    discount_bps: float | None = None
    overflow: Literal["book", "defer"] | None = None
    unwind_half_life: Duration | None = None
    reward_elasticity: float | None = None


class _MarketMaker(BaseModel):
    model_config = _STRICT
    enabled: bool = True
    vol_sensitivity: float | None = None
    drawdown_sensitivity: float | None = None
    drawdown_window: Duration | None = None
    flow_sensitivity: float | None = None
    max_withdrawal: float | None = None
    recovery_half_life: Duration | None = None


class _Arbitrage(BaseModel):
    model_config = _STRICT
    enabled: bool = True
    capital_quote: float | None = None
    max_leverage: float | None = None
    speed: float | None = None
    threshold_bps: float | None = None
    account: str | None = None


class _Funding(BaseModel):
    model_config = _STRICT
    enabled: bool = True
    interval: Duration | None = None
    interest_rate: float | None = None
    clamp: float | None = None
    cap: float | None = None
    rate_decimals: int | None = None


class _Agents(BaseModel):
    model_config = _STRICT
    topup: _TopUp | None = None
    liquidator: _Liquidator | None = None
    market_maker: _MarketMaker | None = None
    arbitrage: _Arbitrage | None = None
    funding: _Funding | None = None


_AGENT_SPECS: Final[dict[str, type[Any]]] = {
    "topup": TopUpSpec, "liquidator": LiquidatorSpec, "market_maker": MarketMakerSpec,
    "arbitrage": ArbitrageSpec, "funding": FundingSpec,
}
_ZERO_OK: Final = frozenset({"latency"})
_DURATIONS: Final = frozenset({"idle_reset", "unwind_half_life", "drawdown_window",
                               "recovery_half_life", "interval"})


class _Outage(BaseModel):
    model_config = _STRICT
    source: str
    start: Duration
    duration: Duration


class _Oracle(BaseModel):
    model_config = _STRICT
    sources: list[str] | None = None
    venue_sources: list[str] = []
    noise_bps: float = 0.0
    lag: dict[str, Duration] = {}
    outages: list[_Outage] = []
    stale: Duration | None = None


class _VenueEntry(BaseModel):
    """``[[venues]]``: one venue of a multi-venue run (docs/contagion.md)."""

    model_config = _STRICT
    name: str = Field(min_length=1, description="The venue's name in the results.")
    preset: str | None = Field(default=None, min_length=1, description=(
        "Venue preset (solvency venues); the scenario's [venue] insurance, oracle and "
        "margin_call_ratio apply to it. Give preset or venue."))
    venue: str | None = Field(default=None, min_length=1, description=(
        "A venue file (JSON or TOML, docs/venues.md), its path found as the scenario's "
        "data paths are (the working directory, then the folder above the scenario's); "
        "the scenario's [venue] overrides apply to it as to a preset. Give preset or "
        "venue."))
    insurance_fund: float | int | str | None = Field(
        default=None, description="This venue's fund at the start, in its settlement "
                                  "asset (default: the [venue] table's).")
    population_share: float | None = Field(
        default=None, gt=0, le=1, description="This venue's population: the scenario's "
                                              "with n_accounts and open interest scaled "
                                              "by this share (default: all of it).")
    depth_scale: float | None = Field(
        default=None, gt=0, description="This venue's books: every market's book depth and "
                                        "daily volume of the scenario's [liquidity] "
                                        "(or this entry's own) times this factor, so a "
                                        "flow's square-root impact is 1/sqrt(depth_scale) "
                                        "times the scenario's (default: 1).")
    liquidity: dict[str, _Liquidity] = Field(
        default={}, description="This venue's own [liquidity] tables, by market, in the "
                                "scenario's liquidity format (the markets not given keep "
                                "the scenario's).")
    agents: _Agents | None = Field(
        default=None, description="This venue's own agents, in the scenario's [agents] "
                                  "format: a table given here runs that agent on this "
                                  "venue (enabled = false: off) with its keys over the "
                                  "scenario's table of that agent; an agent not given "
                                  "here runs as the scenario's [agents] says.")
    collateral_mix: dict[str, float] | None = Field(
        default=None, description="This venue's population posts this collateral mix "
                                  "instead of [population] collateral_mix (assets of this "
                                  "venue; e.g. Binance's valued USDe and wBETH).")
    collateral_prices: dict[str, float] | None = Field(
        default=None, description="Start prices of this venue's valued collateral "
                                  "instead of [population] collateral_prices.")


class _LiquidityLink(BaseModel):
    """``[links.liquidity]``: the arbitrageurs between venues (docs/contagion.md)."""

    model_config = _STRICT
    capital: float = Field(ge=0, description="The arbitrageurs' gross inventory limit "
                                             "across venues and markets, in USD of "
                                             "notional at the index.")
    latency: Duration = Field(default=0, description="How old the books they act on are: "
                                                     "they see each venue's book as it was "
                                                     "ceil(latency / step) steps ago, plus "
                                                     "their own orders since.")
    threshold_bps: float = Field(default=0.0, ge=0, description="They trade only when the "
                                                                "widest basis gap between "
                                                                "venues exceeds this.")


class _TradersLink(BaseModel):
    """``[links.traders]``: traders with accounts on every venue and one wallet."""

    model_config = _STRICT
    share: float = Field(gt=0, le=1, description="The share of the smallest venue's "
                                                 "accounts that are one trader on every "
                                                 "venue (account i of each venue).")
    wallet_multiple: float = Field(ge=0, description="The wallet at the start: this "
                                                     "multiple of the trader's collateral "
                                                     "summed over the venues.")
    transfer_delay: Duration = Field(default=0, description="From a margin call to the "
                                                            "wallet's deposit landing on "
                                                            "the venue.")
    target_margin_ratio: float = Field(default=0.4, gt=0, lt=1, description="The margin "
                                       "ratio (MM / collateral) a transfer restores.")


class _CollateralBook(BaseModel):
    """``[links.collateral.ASSET]``: each venue's own spot book of a collateral asset
    valued by rule, moved by the venue's collateral sales (docs/contagion.md)."""

    model_config = _STRICT
    daily_volume: float = Field(gt=0, description="The book's daily volume V, in units of "
                                                  "the asset (the square-root law's "
                                                  "depth), times each venue's "
                                                  "depth_scale.")
    vol_annual: float = Field(default=0.5, gt=0, description="The book's annualized "
                                                             "volatility (sigma_daily = "
                                                             "vol_annual / sqrt(365)).")
    impact_y: float = Field(default=1.0, ge=0, description="The square-root law's "
                                                           "prefactor Y.")
    half_life: Duration = Field(default="30m", description="The book's resilience: the "
                                                           "sold flow behind the impact "
                                                           "halves in this time.")


class _CollateralReports(BaseModel):
    model_config = _STRICT
    asset: str
    source: str
    at: list[Timestamp]
    price: list[float | str]
    relative: bool = Field(default=False, description=(
        "price is a multiple of the asset's redemption value (its rule's rate x the "
        "underlying's price in the venue) at each step, not USD: 1 at the peg, 0.1075 "
        "for wBETH's book at 430 when 1.07 x ETH is 4,002"))


class _Links(BaseModel):
    """``[links]``: the links between a multi-venue run's venues (docs/contagion.md)."""

    model_config = _STRICT
    active: list[Literal["liquidity", "traders", "collateral"]] = Field(
        default=[], description="The links in force unless --links says otherwise.")
    liquidity: _LiquidityLink | None = None
    traders: _TradersLink | None = None
    collateral: dict[str, _CollateralBook] = Field(
        default={}, description="The collateral link's books, by asset valued by rule.")


class _Report(BaseModel):
    """``[report]``: the thresholds of the report's verdict (each optional)."""

    model_config = _STRICT
    bad_debt_max: float | None = Field(default=None, ge=0)
    fund_used_max: float | None = Field(default=None, ge=0, le=1)
    liquidated_share_max: float | None = Field(default=None, ge=0, le=1)
    accounts_liquidated_max: float | None = Field(default=None, ge=0, le=1)
    adl_notional_max: float | None = Field(default=None, ge=0)
    cascade_amplification_max: float | None = Field(default=None, ge=1)


class ScenarioFile(BaseModel):
    """The scenario TOML as written (``docs/schema/scenario-v1.json`` is its JSON Schema).

    :func:`parse_scenario_data` validates a mapping against it, then reads each market's
    table with its path model's class and checks what spans tables (markets named in
    ``market.markets``, the venue's markets, the agents against the venue).
    """

    model_config = _STRICT
    name: str
    description: str = ""
    start: Timestamp = 0
    horizon: Duration | None = None
    step: Duration = "1m"
    seeds: _Seeds = _Seeds()
    run: _Run = _Run()
    market: _Market
    population: _Population
    # the venue's own keys are checked by the venue file's schema (venue_from_data)
    venue: dict[str, Any] = Field(json_schema_extra={
        "description": "the venue: preset = NAME (solvency venues) and venue-file "
                       "overrides, checked against the venue file's schema "
                       "(venue-v1.json, docs/venues.md); insurance_fund: the fund's "
                       "starting capital in the settlement asset",
        "properties": {
            "preset": {"type": "string"},
            "insurance_fund": {"anyOf": [{"type": "number", "minimum": 0},
                                         {"type": "string"}]}}})
    liquidity: dict[str, _Liquidity] = {}
    venues: list[_VenueEntry] = Field(
        default=[], description="Several venues on one path and one clock "
                                "(docs/contagion.md); empty: the one [venue].")
    links: _Links = _Links()
    agents: _Agents = _Agents()
    oracle: _Oracle | None = None
    collateral_reports: list[_CollateralReports] = Field(
        default=[], description="A collateral asset's price path from one source of its "
                                "valuation rule (docs/contagion.md, 'The depeg in the lab'): "
                                "reported on the lab's clock, linear between points")
    report: _Report = _Report()

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Return the JSON Schema, with each path model's market table and the same text
        under every supported pydantic version.

        ``market.markets`` is read by the class of ``market.model`` once it is known; the
        schema says so with one ``if model == NAME then markets are NAME tables`` per
        model (their definitions in ``$defs``).
        """
        schema: dict[str, Any] = _same_text(super().model_json_schema(*args, **kwargs))
        defs = schema.setdefault("$defs", {})
        rules = []
        for name, model in _MARKET_MODELS.items():
            defs[model.__name__] = _same_text(model.model_json_schema())
            rules.append({
                "if": {"properties": {"model": {"const": name}}, "required": ["model"]},
                "then": {"properties": {"markets": {"additionalProperties": {
                    "$ref": f"#/$defs/{model.__name__}"}}}}})
        defs["_Market"]["allOf"] = rules
        return schema


def _same_text(node: Any) -> Any:
    """The schema as pydantic 2.14 writes it, whatever the version (2.5 wraps a ``$ref``
    with a default in ``allOf``, writes float bounds as ``0.0`` and omits
    ``additionalProperties: true``, which is JSON Schema's default: dropped here)."""
    if isinstance(node, list):
        return [_same_text(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _same_text(v) for k, v in node.items() if not (
        k == "additionalProperties" and v is True)}
    wrapped = out.get("allOf")
    if isinstance(wrapped, list) and len(wrapped) == 1 and set(wrapped[0]) == {"$ref"}:
        del out["allOf"]
        out["$ref"] = wrapped[0]["$ref"]
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound = out.get(key)
        if isinstance(bound, float) and bound.is_integer():
            out[key] = int(bound)
    return out


# ============================================================================ scenario


@dataclass(frozen=True, slots=True)
class CollateralPath:
    """One source's reported price of a collateral asset valued by rule, over time.

    ``price(now)``: before the first point None (no report), then linear between points
    in exact decimals (floored to 1e-8), the last price held after the last point.
    """

    asset: str
    source: str
    ts_ms: tuple[int, ...]
    prices: tuple[Decimal, ...]
    relative: bool = False  # prices are multiples of the asset's redemption value

    def price(self, now_ms: int) -> Decimal | None:
        """The source's price at ``now_ms`` (None before the first point)."""
        if now_ms < self.ts_ms[0]:
            return None
        for j in range(len(self.ts_ms) - 1):
            t0, t1 = self.ts_ms[j], self.ts_ms[j + 1]
            if now_ms < t1:
                p0, p1 = self.prices[j], self.prices[j + 1]
                value = p0 + (p1 - p0) * Decimal(now_ms - t0) / Decimal(t1 - t0)
                return value.quantize(Decimal("1e-8"), rounding=ROUND_FLOOR)
        return self.prices[-1]


@dataclass(frozen=True, slots=True)
class LiquidityLinkSpec:
    """``[links.liquidity]``: arbitrageurs with finite capital and a latency trading the
    basis between venues (:class:`solvency.sim.contagion.Arbitrageurs`)."""

    capital: float
    latency_ms: int = 0
    threshold_bps: float = 0.0


@dataclass(frozen=True, slots=True)
class TradersLinkSpec:
    """``[links.traders]``: a share of the accounts are one trader on every venue with one
    wallet (:class:`solvency.sim.contagion.SharedTraders`)."""

    share: float
    wallet_multiple: float
    transfer_delay_ms: int = 0
    target_margin_ratio: float = 0.4


@dataclass(frozen=True, slots=True)
class CollateralBookSpec:
    """``[links.collateral.ASSET]``: a venue's own spot book of a collateral asset valued
    by rule (:class:`solvency.sim.contagion.CollateralBooks`): the square-root law's
    daily volume (units of the asset, times the venue's ``depth_scale``), volatility and
    prefactor, and the half-life of the sold flow behind its impact."""

    daily_volume: float
    vol_annual: float = 0.5
    impact_y: float = 1.0
    half_life_ms: int = 30 * 60_000


@dataclass(frozen=True, slots=True)
class LinksSpec:
    """``[links]``: the links in force by default and each link's parameters."""

    active: tuple[str, ...] = ()
    liquidity: LiquidityLinkSpec | None = None
    traders: TradersLinkSpec | None = None
    collateral: Mapping[str, CollateralBookSpec] = field(default_factory=dict)


class VenueSpec(NamedTuple):
    """One venue of a multi-venue run (``[[venues]]``)."""

    name: str
    preset: str  # a preset's name, or the venue file's path as given
    insurance_fund: Decimal | None = None  # None: the scenario's
    population_share: float | None = None  # None: the scenario's population, whole
    depth_scale: float | None = None  # None: the books as the liquidity tables give them
    liquidity: Mapping[str, Mapping[str, Any]] | None = None  # own tables, by market
    venue_file: Mapping[str, Any] | None = None  # a venue file's data (preset: its path)
    agents: AgentsSpec | None = None  # None: the scenario's [agents]
    collateral_mix: Mapping[str, float] | None = None  # None: the population's
    collateral_prices: Mapping[str, float] | None = None  # None: the population's

    @property
    def run_preset(self) -> str | None:
        """The preset a run names (``None``: the venue of :meth:`scenario_of` itself)."""
        return None if self.venue_file is not None else self.preset

    def scenario_of(self, scenario: Scenario) -> Scenario:
        """The scenario this venue runs: its own fund, share of the population and books
        (its own ``liquidity`` tables replace the scenario's market by market, then
        ``depth_scale`` multiplies each book's depth and daily volume)."""
        out = scenario
        if self.venue_file is not None:
            # the scenario's shared overrides apply as to another preset (Scenario.venue)
            shared = {k: v for k, v in out.venue_data.items()
                      if k not in ("markets", "assets", "name", "preset")}
            out = replace(out, venue_data={**self.venue_file, **shared})
        if self.liquidity or self.depth_scale is not None:
            data = {m: dict(d) for m, d in out.liquidity_data.items()}
            data.update({m: dict(d) for m, d in (self.liquidity or {}).items()})
            if self.depth_scale is not None:
                for d in data.values():
                    d["daily_volume_base"] *= self.depth_scale
                    d["depth_scale"] = d.get("depth_scale", 1.0) * self.depth_scale
            out = replace(out, liquidity_data=data)
        if self.insurance_fund is not None:
            out = replace(out, insurance_fund=self.insurance_fund)
        if self.agents is not None:
            out = replace(out, agents=self.agents)
        if self.population_share is not None:
            share = self.population_share
            pop = out.population
            out = replace(out, population=replace(
                pop, n_accounts=max(1, round(pop.n_accounts * share)),
                open_interest_base={m: v * share for m, v in pop.open_interest_base.items()}))
        if self.collateral_mix is not None or self.collateral_prices is not None:
            pop = out.population
            out = replace(out, population=replace(
                pop, collateral_mix=dict(pop.collateral_mix if self.collateral_mix is None
                                         else self.collateral_mix),
                collateral_prices=dict(pop.collateral_prices if self.collateral_prices
                                       is None else self.collateral_prices)))
        return out


@dataclass(frozen=True, slots=True)
class Scenario:
    """A parsed scenario: everything a run needs, validated.

    Attributes
    ----------
    name, description : str
        Shown in reports.
    start_ms, horizon_ms, step_ms : int
        Time grid of synthetic paths (replays use their file's bars).
    model : str
        Path model (one of :data:`MODELS`).
    market_params : Mapping[str, Mapping[str, Any]]
        Validated model fields per market, in file order (the correlation's order).
    correlation : tuple of tuple of float or None
        Correlation of the shocks of shock-driven models.
    population : PopulationSpec
        The book to draw.
    venue_data : Mapping[str, Any]
        Venue-file-like mapping (``preset`` plus overrides), without the fund capital.
    insurance_fund : Decimal
        Starting capital of the insurance fund, in the settlement asset.
    liquidity_data : Mapping[str, Mapping[str, Any]]
        Validated liquidity fields per market (profiles are built at run time).
    seed_market, seed_population : int
        Seeds of the paths and of the population.
    verify_every : int
        Steps between full ``Engine.verify()`` checks.
    vol_window : int
        Steps of the rolling realized volatility given to the liquidity model.
    base_dir : Path or None
        Directory above the scenario file, for relative data paths.
    prices_override : Mapping[str, str]
        Market -> OHLCV file replacing the paths (``--prices``).
    agents : AgentsSpec
        The agents that run (:mod:`solvency.sim.agents`); none by default.
    seed_agents : int
        Seed of the agents' random draws (``seeds.agents``).
    oracle : OracleFeedSpec or None
        Oracle sources (:mod:`solvency.sim.oracle_feed`); ``None``: marks are ``price``
        events.
    report : Mapping[str, float]
        ``[report]`` thresholds the report's verdict checks (only those set):
        ``bad_debt_max`` (settlement asset), ``fund_used_max``, ``liquidated_share_max``,
        ``accounts_liquidated_max`` (shares, 0 to 1), ``adl_notional_max``,
        ``cascade_amplification_max`` (see docs/stress_lab.md).
    venues : tuple of VenueSpec
        ``[[venues]]``: each venue of a multi-venue run
        (:func:`solvency.sim.contagion.run_venues`); empty: the one ``[venue]``.
    links : LinksSpec
        ``[links]``: the links between those venues in force by default, and each
        link's parameters.
    options : OptionHoldersSpec or None
        ``[population.options]``: accounts short listed options, delta-hedged
        (:mod:`solvency.sim.option_holders`); ``None``: no option holders.
    """

    name: str
    description: str
    start_ms: int
    horizon_ms: int
    step_ms: int
    model: str
    market_params: Mapping[str, Mapping[str, Any]]
    correlation: tuple[tuple[float, ...], ...] | None
    population: PopulationSpec
    venue_data: Mapping[str, Any]
    insurance_fund: Decimal
    liquidity_data: Mapping[str, Mapping[str, Any]]
    seed_market: int = 1
    seed_population: int = 2
    verify_every: int = 60
    vol_window: int = 30
    base_dir: Path | None = None
    prices_override: Mapping[str, str] = field(default_factory=dict)
    agents: AgentsSpec = field(default_factory=AgentsSpec)
    seed_agents: int = 3
    oracle: OracleFeedSpec | None = None
    report: Mapping[str, float] = field(default_factory=dict)
    venues: tuple[VenueSpec, ...] = ()
    links: LinksSpec = field(default_factory=LinksSpec)
    options: OptionHoldersSpec | None = None
    collateral_reports: tuple[CollateralPath, ...] = ()

    @property
    def markets(self) -> tuple[str, ...]:
        """Return the markets of the scenario, in file order."""
        return tuple(self.market_params)

    @property
    def n_steps(self) -> int:
        """Return the number of steps of a synthetic path (``horizon // step``)."""
        return self.horizon_ms // self.step_ms

    # ------------------------------------------------------------------ venue

    def venue(self, name: str | None = None, *, step_ms: int | None = None,
              listing: Any = None) -> Venue:
        """Build the venue: the scenario's preset and overrides, or preset ``name``.

        With another preset than the scenario's, market and asset overrides are dropped
        (they are written for one venue's models); ``insurance``, ``oracle`` and
        ``margin_call_ratio`` overrides still apply. With an ``[oracle]`` table, the
        venue's oracle takes its sources and a staleness limit for steps of ``step_ms``
        (default: the scenario's step; see :meth:`OracleFeedSpec.venue_overrides`).
        ``listing`` (the option series of ``[population.options]``, a sequence of
        :class:`~solvency.sim.option_holders.OptionSeries`) lists them as option markets
        (:func:`~solvency.sim.option_holders.option_market_entries`).

        Raises
        ------
        ScenarioError
            If ``name`` is not a preset or the venue data does not build.
        """
        data = dict(self.venue_data)
        if name is not None:
            if name not in PRESETS:
                raise ScenarioError(f"unknown venue {name!r}; known: {', '.join(preset_names())}")
            if data.get("preset") != name:
                data = {k: v for k, v in data.items() if k not in ("markets", "assets", "name")}
                data["preset"] = name
        if listing is not None and self.options is not None:
            data = self._with_listing(data, listing)
        if self.oracle is not None:
            data["oracle"] = self.oracle.venue_overrides(
                step_ms if step_ms is not None else self.step_ms, data.get("oracle", {}))
        try:
            return venue_from_data(data)  # errors read "venue: dotted.key: ..."
        except ConfigError as exc:
            raise ScenarioError(str(exc)) from None

    def _with_listing(self, data: dict[str, Any], listing: Any) -> dict[str, Any]:
        assert self.options is not None
        base = venue_from_data(dict(data))
        preset = PRESETS.get(str(data.get("preset", "")), {})
        known = {**preset.get("markets", {}), **data.get("markets", {})}
        entries = option_market_entries(self.options, listing,
                                        base.markets[self.options.underlying],
                                        {"markets": known})
        return {**data, "markets": {**data.get("markets", {}), **entries}}

    def option_liquidity(self, names: Any, *, impact: bool = True
                         ) -> dict[str, LiquiditySpec]:
        """Return ``[population.options.liquidity]`` as the book of each option market in
        ``names`` (empty without one)."""
        if self.options is None or self.options.liquidity is None:
            return {}
        one = replace(self, liquidity_data={"options": self.options.liquidity})
        spec = one.liquidity_specs(impact=impact)["options"]
        return {n: spec for n in names}

    # ------------------------------------------------------------------ paths

    def resolve(self, path: str) -> Path:
        """Return an existing data file for ``path`` (see the module docstring).

        Raises
        ------
        ScenarioError
            If the file exists neither as given nor under the scenario's base directory.
        """
        return _resolve(path, self.base_dir)

    def path_specs(self) -> dict[str, PathSpec]:
        """Return the path model of each market (``prices_override`` replays first).

        Raises
        ------
        ScenarioError
            If a data file is missing or a model rejects its parameters.
        """
        if self.prices_override:
            return self._replay_override()
        out: dict[str, PathSpec] = {}
        for m, params in self.market_params.items():
            try:
                out[m] = self._spec(m, params)
            except ValueError as exc:
                if isinstance(exc, ScenarioError):
                    raise
                raise ScenarioError(f"market.markets.{m}: {exc}") from None
        return out

    def _replay_override(self) -> dict[str, PathSpec]:
        out: dict[str, PathSpec] = {}
        for m, src in self.prices_override.items():
            out[m] = ReplaySpec(source=str(self.resolve(src)), points_per_bar=4)
        return out

    def _spec(self, market: str, p: Mapping[str, Any]) -> PathSpec:
        grid = {"n_steps": self.n_steps, "step_ms": self.step_ms, "start_ms": self.start_ms}
        model = self.model
        if model == "crash":
            return CrashSpec(
                s0=p["start_price"], drift_annual=p["drift_annual"],
                vol_annual=p["vol_annual"], crash_at_ms=_duration_ms(p["crash_at"], "crash_at"),
                gap_fraction=p["gap_fraction"], cascade_depth=p["cascade_depth"],
                cascade_duration_ms=_duration_ms(p["cascade_duration"], "cascade_duration"),
                recovery_fraction=p["recovery_fraction"],
                recovery_half_life_ms=_duration_ms(p["recovery_half_life"],
                                                   "recovery_half_life"),
                crash_vol_multiplier=p["crash_vol_multiplier"], **grid)
        if model == "gbm":
            return GbmSpec(s0=p["start_price"], mu_annual=p["mu_annual"],
                           sigma_annual=p["sigma_annual"], **grid)
        if model == "merton":
            return MertonSpec(s0=p["start_price"], mu_annual=p["mu_annual"],
                              sigma_annual=p["sigma_annual"],
                              jump_intensity_annual=p["jump_intensity_annual"],
                              jump_mean=p["jump_mean"], jump_std=p["jump_std"], **grid)
        if model == "garch":
            return GarchSpec(s0=p["start_price"], omega=p["omega"], alpha=p["alpha"],
                             beta=p["beta"], nu=p["nu"], gamma=p["gamma"], h0=p["h0"], **grid)
        if model == "bootstrap":
            step = p["interval"] if p["interval"] is not None else _step_text(self.step_ms)
            return BootstrapSpec(source=str(self.resolve(p["source"])),
                                 block_len=p["block_len"], method=p["method"], interval=step,
                                 s0=p["start_price"], n_steps=self.n_steps,
                                 start_ms=self.start_ms)
        start = p["start"] if p["start"] is not None else None
        end = p["end"] if p["end"] is not None else None
        return ReplaySpec(source=str(self.resolve(p["source"])),
                          points_per_bar=p["points_per_bar"], interval=p["interval"],
                          start_ms=None if start is None else _ts_ms(start, "start"),
                          end_ms=None if end is None else _ts_ms(end, "end"))

    def entry_history(self, start_ms: int) -> dict[str, EntryHistory] | None:
        """Return each market's bars of the ``population.entry_history`` before
        ``start_ms`` (the ``history`` file of a replay market, else its ``source``), on
        the time grid the markets share; ``None`` without ``entry_history``.

        Raises
        ------
        ScenarioError
            If a file is missing or unreadable, or no shared bar is in the span.
        """
        span = self.population.entry_history_ms
        if span is None:
            return None
        bars = {}
        for m, p in self.market_params.items():
            src = p.get("history") or p.get("source")
            if not isinstance(src, str):
                raise ScenarioError(f"population.entry_history: market {m} has no bars file "
                                    "(a replay market's source or history)")
            try:
                b = read_ohlcv(self.resolve(src))
            except OhlcvError as exc:
                raise ScenarioError(f"market.markets.{m}.history: {exc}") from None
            keep = (b.ts_ms >= start_ms - span) & (b.ts_ms < start_ms)
            bars[m] = (b.ts_ms[keep], b.low[keep], b.high[keep])
        grid = None
        for ts, _, _ in bars.values():
            grid = ts if grid is None else np.intersect1d(grid, ts)
        if grid is None or grid.shape[0] == 0:
            raise ScenarioError("population.entry_history: no bar before the window's start "
                                "common to every market's history file")
        out = {}
        for m, (ts, lo, hi) in bars.items():
            idx = np.searchsorted(ts, grid)
            out[m] = EntryHistory(ts_ms=grid, low=lo[idx], high=hi[idx])
        return out

    # ------------------------------------------------------------------ liquidity

    def liquidity_specs(self, *, impact: bool = True) -> dict[str, LiquiditySpec]:
        """Return the liquidity model of each market; ``impact=False`` sets ``Y = 0``.

        Raises
        ------
        ScenarioError
            If a ``book_depth`` file is missing or a value is out of range.
        """
        out: dict[str, LiquiditySpec] = {}
        for m, d in self.liquidity_data.items():
            try:
                out[m] = LiquiditySpec(
                    profile=self._profile(d), daily_volume_base=d["daily_volume_base"],
                    impact_y=d["impact_y"] if impact else 0.0,
                    vol_ref_annual=d["vol_ref_annual"],
                    depth_vol_elasticity=d["depth_vol_elasticity"],
                    min_depth_fraction=d["min_depth_fraction"],
                    depth_half_life_ms=_duration_ms(d["depth_half_life"], "depth_half_life"),
                    impact_half_life_ms=_duration_ms(d["impact_half_life"],
                                                     "impact_half_life"),
                    band_bps=d["band_bps"], oracle_weight=d["oracle_weight"])
            except ValueError as exc:
                if isinstance(exc, ScenarioError):
                    raise
                raise ScenarioError(f"liquidity.{m}: {exc}") from None
        return out

    def _profile(self, d: Mapping[str, Any]) -> DepthProfile:
        profile = self._profile_given(d)
        scale = d.get("depth_scale")  # a [[venues]] entry's depth_scale (scenario_of)
        return profile if scale is None else profile.scaled(scale)

    def _profile_given(self, d: Mapping[str, Any]) -> DepthProfile:
        if d["depth_per_bps_base"] is not None:
            return DepthProfile.uniform(d["depth_per_bps_base"], d["max_bps"])
        if d["book_depth"] is not None:
            return load_binance_book_depth(self.resolve(d["book_depth"]),
                                           quantile=d["book_depth_quantile"])
        return DepthProfile(distance_bps=tuple(d["distance_bps"] or ()),
                            bid_base=tuple(d["bid_base"] or ()),
                            ask_base=tuple(d["ask_base"] or ()))

    # ------------------------------------------------------------------ variants

    def with_prices(self, prices: Mapping[str, str]) -> Scenario:
        """Return the scenario with its paths replaced by OHLCV replays.

        ``prices`` maps markets to CSV paths; markets of the scenario without a file
        follow the first file's relative moves (beta 1) -- see ``docs/stress_lab.md``.
        """
        unknown = sorted(set(prices) - set(self.markets))
        if unknown:
            raise ScenarioError(f"--prices: unknown markets {unknown}; scenario markets: "
                                f"{', '.join(self.markets)}")
        for src in prices.values():
            try:
                self.resolve(src)
            except ScenarioError as exc:
                raise ScenarioError(f"--prices: {exc}") from None
        return replace(self, prices_override=dict(prices))

    def with_seeds(self, *, market: int | None = None, population: int | None = None,
                   agents: int | None = None) -> Scenario:
        """Return the scenario with other seeds."""
        return replace(self,
                       seed_market=self.seed_market if market is None else market,
                       seed_population=self.seed_population if population is None
                       else population,
                       seed_agents=self.seed_agents if agents is None else agents)


def _step_text(step_ms: int) -> str:
    for unit, ms in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if step_ms % ms == 0:
            return f"{step_ms // ms}{unit}"
    return f"{step_ms}ms"


# ============================================================================ parsing


def _validate(model: type[BaseModel], data: Any, source: str,
              at: tuple[str, ...] = ()) -> BaseModel:
    # source: dotted.key: what was expected; a misspelt key gets the closest expected one
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(format_errors(source, exc, model, at=at)) from None


def _population(p: _Population, source: str) -> PopulationSpec:
    kw: dict[str, Any] = p.model_dump(exclude={"leverage", "entry_history", "options"})
    if p.entry_history is not None:
        try:
            kw["entry_history_ms"] = _duration_ms(p.entry_history, "entry_history")
        except ValueError as exc:
            raise ScenarioError(f"{source}: population.{exc}") from None
    if p.leverage is not None:
        try:
            kw["leverage"] = tuple(LeverageComponent(weight=c.weight, median=c.median,
                                                     sigma=c.sigma) for c in p.leverage)
        except ValueError as exc:
            raise ScenarioError(f"{source}: population.leverage: {exc}") from None
    try:
        return PopulationSpec(**kw)
    except ValueError as exc:
        raise ScenarioError(f"{source}: population: {exc}") from None


def _pm_grid(o: _Options, base_dir: Path | None) -> ScenarioGrid | None:
    """The writers' scenario grid: ``pm_grid`` (a shipped name or a TOML file, relative
    to the repository root like the data paths), default deribit_pm; None for
    ``margin = "standard"``."""
    if o.margin == "standard":
        if o.pm_grid is not None:
            raise ValueError("pm_grid: only with margin = \"portfolio\"")
        return None
    name = o.pm_grid or "deribit_pm"
    try:
        if name not in grid_names() and not Path(name).is_file() and base_dir is not None \
                and (base_dir / name).is_file():
            return load_grid(base_dir / name)
        return load_grid(name)
    except GridError as exc:
        # UnknownGridError is also a KeyError, whose str() quotes the message
        raise ValueError(f"pm_grid: {exc.args[0] if exc.args else exc}") from None


def _options(o: _Options | None, source: str,
             base_dir: Path | None = None) -> OptionHoldersSpec | None:
    if o is None:
        return None
    key = "population.options"
    try:
        expiries = tuple(_duration_ms(e, f"expiries.{i}") for i, e in enumerate(o.expiries))
        grids = {}
        for name in ("tick_size", "lot_size"):
            raw = getattr(o, name)
            if raw is not None:
                try:
                    value = Decimal(raw)
                except InvalidOperation:
                    raise ValueError(f"{name}: {raw!r} is not a number") from None
                # Decimal("nan") and Decimal("inf") parse: a grid must be finite and > 0
                if not value.is_finite() or value <= 0:
                    raise ValueError(f"{name}: must be a finite number > 0, got {raw!r}")
                grids[name] = value
        return OptionHoldersSpec(
            underlying=o.underlying, holder_fraction=o.holder_fraction,
            open_interest_base=o.open_interest_base, moneyness=tuple(o.moneyness),
            kinds=tuple(o.kinds), expiries_ms=expiries, vol=o.vol,
            vol_realized_multiple=o.vol_realized_multiple, vol_max=o.vol_max,
            vol_source=o.vol_source,
            margin_multiple=o.margin_multiple, **grids,
            liquidity=None if o.liquidity is None else o.liquidity.model_dump(),
            hedge=None if o.hedge is None else OptionHedgeSpec(
                interval_ms=_duration_ms(o.hedge.interval, "hedge.interval"),
                band_base=o.hedge.band_base, band_share=o.hedge.band_share,
                hedge_ratio=o.hedge.hedge_ratio, fee_taker_ppm=o.hedge.fee_taker_ppm,
                maker_capital=o.hedge.maker_capital, source=o.hedge.source),
            margin=o.margin, pm_grid=_pm_grid(o, base_dir))
    except ValueError as exc:
        raise ScenarioError(f"{source}: {key}.{exc}") from None


def _check_options(scenario: Scenario, venue: Venue, source: str) -> None:
    o = scenario.options
    if o is None:
        return
    key = f"{source}: population.options"
    if o.underlying not in scenario.markets:
        raise ScenarioError(f"{key}.underlying: {o.underlying!r} is not a market of "
                            f"market.markets ({', '.join(scenario.markets)})")
    inst = venue.markets[o.underlying]
    if inst.is_option or inst.is_inverse or inst.expiry_ms is not None:
        raise ScenarioError(f"{key}.underlying: {o.underlying} is not a linear perp")
    settles = {str(venue.markets[m].settle) for m in scenario.population.open_interest_base}
    if settles != {str(inst.settle)}:
        raise ScenarioError(f"{key}.underlying: {o.underlying} settles in {inst.settle}, "
                            f"the population's markets in {', '.join(sorted(settles))}")
    if scenario.model != "replay" and min(o.expiries_ms) <= scenario.horizon_ms:
        raise ScenarioError(f"{key}.expiries: every expiry must be after the run's end "
                            "(settlement inside a run is not modelled)")
    if o.liquidity is not None and o.liquidity["book_depth"] is not None:
        raise ScenarioError(f"{key}.liquidity.book_depth: option books take "
                            "depth_per_bps_base or distance_bps/bid_base/ask_base")


def _agent_kwargs(name: str, table: BaseModel, prefix: str = "agents"
                  ) -> dict[str, Any]:
    """The fields the file sets, durations converted to ``*_ms`` (unset: spec default)."""
    kw: dict[str, Any] = {}
    for key, value in table.model_dump(exclude_unset=True, exclude={"enabled"}).items():
        if value is None:
            continue
        if key in _ZERO_OK:
            kw[f"{key}_ms"] = _latency_ms(value, f"{prefix}.{name}.{key}")
        elif key in _DURATIONS:
            kw[f"{key}_ms"] = _duration_ms(value, f"{prefix}.{name}.{key}")
        else:
            kw[key] = value
    return kw


def _agents(a: _Agents, source: str, prefix: str = "agents") -> AgentsSpec:
    """Build the agent specs of the ``[agents]`` tables (absent or ``enabled = false``:
    off); range errors name ``<prefix>.<agent>.<key>``."""
    specs: dict[str, Any] = {}
    for name, cls in _AGENT_SPECS.items():
        table = getattr(a, name)
        if table is None or not table.enabled:
            continue
        try:
            specs[name] = cls(**_agent_kwargs(name, table, prefix))
        except ValueError as exc:
            msg = str(exc)
            if msg.startswith(f"{prefix}."):
                raise ScenarioError(f"{source}: {msg}") from None
            raise ScenarioError(f"{source}: {prefix}.{name}.{msg}") from None
    return AgentsSpec(**specs)


def _venue_agents(scenario: _Agents, own: _Agents | None, i: int,
                  source: str) -> AgentsSpec | None:
    """``[venues.agents]`` of entry ``i`` over the scenario's ``[agents]`` (``None``: the
    entry has none, the scenario's run). Per agent: a table given for the venue runs it
    there unless it says ``enabled = false``, with the scenario's keys of that agent
    that it does not set; an agent the venue does not name is the scenario's."""
    if own is None:
        return None
    tables: dict[str, BaseModel | None] = {}
    for name in _AGENT_SPECS:
        base, mine = getattr(scenario, name), getattr(own, name)
        if mine is None:
            tables[name] = base
            continue
        keys = {} if base is None else base.model_dump(exclude_unset=True,
                                                       exclude={"enabled"})
        keys.update(mine.model_dump(exclude_unset=True, exclude={"enabled"}))
        tables[name] = type(mine).model_validate({**keys, "enabled": mine.enabled})
    return _agents(_Agents.model_validate(tables), source, f"venues[{i}].agents")


def _fund(venue: dict[str, Any], source: str, table: str = "venue.") -> Decimal:
    raw = venue.pop(FUND_KEY, 0)
    key = f"{source}: {table}{FUND_KEY}"
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ScenarioError(f"{key}: expected a number")
    try:
        value = Decimal(repr(raw)) if isinstance(raw, float) else Decimal(raw)
    except InvalidOperation:
        raise ScenarioError(f"{key}: {raw!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise ScenarioError(f"{key}: must be >= 0, got {raw}")
    return value


def _resolve(path: str, base_dir: Path | None) -> Path:
    """:meth:`Scenario.resolve`: ``path`` as given, else under ``base_dir``."""
    p = Path(path).expanduser()
    if p.is_absolute():
        if p.exists():
            return p
        raise ScenarioError(f"data file not found: {p}")
    tried = [Path.cwd() / p]
    if base_dir is not None:
        tried.append(base_dir / p)
    for cand in tried:
        if cand.exists():
            return cand.resolve()
    raise ScenarioError(
        f"data file not found: {path} (looked in {', '.join(str(t) for t in tried)})")


def _venue_file(v: _VenueEntry, i: int, source: str,
                base_dir: Path | None) -> dict[str, Any] | None:
    """A ``[[venues]]`` entry's venue file, read (``None`` for a preset); exactly one of
    ``preset`` and ``venue`` given."""
    key = f"{source}: venues[{i}]"
    if (v.preset is None) == (v.venue is None):
        raise ScenarioError(f"{key}: give preset or venue (a venue file), "
                            f"{'not both' if v.preset else 'one of them'}")
    if v.venue is None:
        return None
    from solvency.adapters.eventlog import load_json_file

    try:
        path = _resolve(v.venue, base_dir)
        data = load_json_file(path)
    except (ScenarioError, ConfigError) as exc:
        raise ScenarioError(f"{key}.venue: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{key}.venue: {path}: a venue file must hold an object")
    return data


def _check_venues(scenario: Scenario, source: str) -> None:
    """``[[venues]]``: names once each, known presets holding the scenario's markets."""
    seen: set[str] = set()
    for i, spec in enumerate(scenario.venues):
        name, preset = spec.name, spec.preset
        key = f"{source}: venues[{i}]"
        field_ = "preset" if spec.venue_file is None else "venue"
        if name in seen:
            raise ScenarioError(f"{key}.name: {name!r} is named twice")
        seen.add(name)
        try:
            sub = spec.scenario_of(scenario)
        except ValueError as exc:  # the entry's collateral_mix or collateral_prices
            raise ScenarioError(f"{key}.collateral_mix: {exc}") from None
        try:
            venue = sub.venue(spec.run_preset)
        except ScenarioError as exc:
            raise ScenarioError(f"{key}.{field_}: {exc}") from None
        unknown = sorted(set(sub.population.collateral_mix) - set(venue.assets))
        if unknown:
            where = ("collateral_mix" if spec.collateral_mix is not None
                     else "population.collateral_mix (give the entry its own)")
            raise ScenarioError(f"{key}.{where}: {unknown} are not assets of {preset!r}")
        missing = sorted(set(scenario.markets) - set(venue.markets))
        if missing:
            raise ScenarioError(f"{key}.{field_}: {missing} are not markets of {preset!r}")
        try:
            # each venue's agents against its own venue (the top-up target below its
            # margin-call ratio)
            spec.scenario_of(scenario).agents.check_venue(venue, scenario.markets)
        except ValueError as exc:
            raise ScenarioError(f"{key}.agents.{exc}") from None
        unknown = sorted(set(scenario.venues[i].liquidity or ()) - set(scenario.markets))
        if unknown:
            raise ScenarioError(f"{key}.liquidity: markets {unknown} are not in "
                                f"market.markets ({', '.join(scenario.markets)})")


def _check_markets(f: ScenarioFile, source: str) -> None:
    markets = list(f.market.markets)
    if not markets:
        raise ScenarioError(f"{source}: market.markets: name at least one market")
    for key, names in (("population.open_interest_base", f.population.open_interest_base),
                       ("liquidity", f.liquidity)):
        unknown = sorted(set(names) - set(markets))
        if unknown:
            raise ScenarioError(f"{source}: {key}: markets {unknown} are not in "
                                f"market.markets ({', '.join(markets)})")
    corr = f.market.correlation
    if corr is not None and (len(corr) != len(markets) or any(len(r) != len(markets)
                                                              for r in corr)):
        raise ScenarioError(f"{source}: market.correlation: must be {len(markets)}x"
                            f"{len(markets)} (order of market.markets)")
    if f.horizon is None and f.market.model != "replay":
        raise ScenarioError(f"{source}: horizon: required for model {f.market.model!r}")


def book_source(venue: Venue, asset: str) -> str | None:
    """The source name of ``asset``'s own spot book in ``venue``'s valuation rule (None:
    not valued by rule, or no ``book`` source)."""
    a = venue.assets.get(asset)
    rule = None if a is None else a.valuation
    if rule is None:
        return None
    return next((s.source for s in rule.sources if s.kind == "book"), None)


def _check_collateral_link(scenario: Scenario, source: str) -> None:
    """``[links.collateral]``: each asset valued by rule from its own book on a venue."""
    venues = [v.scenario_of(scenario).venue(v.run_preset) for v in scenario.venues] or [
        scenario.venue()]
    for asset in scenario.links.collateral:
        if not any(book_source(v, asset) is not None for v in venues):
            raise ScenarioError(f"{source}: links.collateral.{asset}: no venue of the "
                                f"scenario values {asset!r} by rule from its own book "
                                "(assets.X.valuation with a book source)")


def parse_scenario(text: str, *, source: str = "<scenario>",
                   base_dir: Path | None = None) -> Scenario:
    """Parse a scenario from TOML text.

    Parameters
    ----------
    text : str
        The TOML document.
    source : str
        Name used in error messages (usually the file path).
    base_dir : Path or None
        Directory for relative data paths after the current directory.

    Raises
    ------
    ScenarioError
        With ``source: dotted.key: reason`` for each problem found.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: invalid TOML: {exc}") from None
    return parse_scenario_data(data, source=source, base_dir=base_dir)


def _oracle(o: _Oracle | None, source: str) -> OracleFeedSpec | None:
    if o is None:
        return None
    try:
        outages = []
        for i, x in enumerate(o.outages):
            start = _duration_ms(x.start, f"oracle.outages[{i}].start", zero_ok=True)
            length = _duration_ms(x.duration, f"oracle.outages[{i}].duration")
            outages.append(SourceOutage(x.source, start, start + length))
        return OracleFeedSpec(
            sources=tuple(o.sources) if o.sources is not None else DEFAULT_SOURCES,
            venue_sources=tuple(o.venue_sources), noise_bps=float(o.noise_bps),
            lag_ms={k: _duration_ms(v, f"oracle.lag.{k}", zero_ok=True)
                    for k, v in o.lag.items()},
            outages=tuple(outages),
            stale_ms=None if o.stale is None else _duration_ms(o.stale, "oracle.stale"))
    except ValueError as exc:
        raise ScenarioError(f"{source}: {exc}") from None


def _collateral_reports(items: list[_CollateralReports], source: str
                        ) -> tuple[CollateralPath, ...]:
    out = []
    for i, c in enumerate(items):
        key = f"{source}: collateral_reports[{i}]"
        try:
            ts = tuple(_ts_ms(t, "at") for t in c.at)
        except ValueError as exc:
            raise ScenarioError(f"{key}.{exc}") from None
        try:
            prices = tuple(Decimal(str(p)) for p in c.price)
        except InvalidOperation:
            raise ScenarioError(f"{key}.price: not a number") from None
        if not ts or len(ts) != len(prices):
            raise ScenarioError(f"{key}: 'at' and 'price' need the same number of points "
                                f"(at least one), got {len(ts)} and {len(prices)}")
        if any(b <= a for a, b in pairwise(ts)):
            raise ScenarioError(f"{key}.at: times must increase")
        if any(not (p.is_finite() and p > 0) for p in prices):
            raise ScenarioError(f"{key}.price: prices must be positive")
        out.append(CollateralPath(c.asset, c.source, ts, prices, c.relative))
    return tuple(out)


def _links(x: _Links, source: str) -> LinksSpec:
    lq, tr = x.liquidity, x.traders
    try:
        liquidity = None if lq is None else LiquidityLinkSpec(
            float(lq.capital), _duration_ms(lq.latency, "links.liquidity.latency",
                                            zero_ok=True), float(lq.threshold_bps))
        traders = None if tr is None else TradersLinkSpec(
            float(tr.share), float(tr.wallet_multiple),
            _duration_ms(tr.transfer_delay, "links.traders.transfer_delay", zero_ok=True),
            float(tr.target_margin_ratio))
        collateral = {a: CollateralBookSpec(
            float(b.daily_volume), float(b.vol_annual), float(b.impact_y),
            _duration_ms(b.half_life, f"links.collateral.{a}.half_life"))
            for a, b in x.collateral.items()}
    except ValueError as exc:
        raise ScenarioError(f"{source}: {exc}") from None
    return LinksSpec(tuple(dict.fromkeys(x.active)), liquidity, traders, collateral)


def parse_scenario_data(data: Mapping[str, Any], *, source: str = "<scenario>",
                        base_dir: Path | None = None) -> Scenario:
    """Parse a scenario from its TOML document already read into a mapping.

    :func:`parse_scenario` after ``tomllib.loads``; a sweep sets parameters in the
    mapping and parses each variant with the same checks.

    Raises
    ------
    ScenarioError
        With ``source: dotted.key: reason`` for each problem found.
    """
    f = _validate(ScenarioFile, data, source)
    assert isinstance(f, ScenarioFile)
    cls = _MARKET_MODELS[f.market.model]
    params: dict[str, dict[str, Any]] = {}
    for m, raw in f.market.markets.items():
        if not isinstance(raw, dict):
            raise ScenarioError(f"{source}: market.markets.{m}: expected a table")
        params[m] = _validate(cls, raw, source, ("market", "markets", m)).model_dump()
    _check_markets(f, source)
    try:
        start_ms = _ts_ms(f.start, "start")
        horizon_ms = _duration_ms(f.horizon if f.horizon is not None else 1, "horizon")
        step_ms = _duration_ms(f.step, "step")
    except ValueError as exc:
        raise ScenarioError(f"{source}: {exc}") from None
    if f.market.model != "replay" and horizon_ms < step_ms:
        raise ScenarioError(f"{source}: horizon: shorter than one step")
    venue = dict(f.venue)
    fund = _fund(venue, source)
    scenario = Scenario(
        name=f.name, description=f.description, start_ms=start_ms, horizon_ms=horizon_ms,
        step_ms=step_ms, model=f.market.model, market_params=params,
        correlation=None if f.market.correlation is None else tuple(
            tuple(r) for r in f.market.correlation),
        population=_population(f.population, source), venue_data=venue,
        insurance_fund=fund,
        liquidity_data={m: v.model_dump() for m, v in f.liquidity.items()},
        seed_market=f.seeds.market, seed_population=f.seeds.population,
        verify_every=f.run.verify_every, vol_window=f.run.vol_window, base_dir=base_dir,
        agents=_agents(f.agents, source), seed_agents=f.seeds.agents,
        oracle=_oracle(f.oracle, source),
        report={k: float(v) for k, v in f.report.model_dump().items() if v is not None},
        venues=tuple(VenueSpec(v.name, str(v.venue or v.preset), None if v.insurance_fund
                               is None else _fund({FUND_KEY: v.insurance_fund}, source,
                                                  f"venues[{i}]."), v.population_share,
                               v.depth_scale, {m: x.model_dump()
                                               for m, x in v.liquidity.items()} or None,
                               _venue_file(v, i, source, base_dir),
                               _venue_agents(f.agents, v.agents, i, source),
                               v.collateral_mix, v.collateral_prices)
                     for i, v in enumerate(f.venues)),
        links=_links(f.links, source),
        collateral_reports=_collateral_reports(f.collateral_reports, source),
        options=_options(f.population.options, source, base_dir))
    try:
        venue_obj = scenario.venue()
    except ScenarioError as exc:
        raise ScenarioError(f"{source}: {exc}") from None
    _check_venues(scenario, source)
    _check_collateral_link(scenario, source)
    # a multi-venue run reports each path to the venues whose rule values the asset
    # (Binance's own books print in Binance's venue only); at least one must
    ruled = [venue_obj] if not scenario.venues else [
        v.scenario_of(scenario).venue(v.run_preset) for v in scenario.venues]
    for i, c in enumerate(scenario.collateral_reports):
        rules = [r for r in (v.assets[c.asset].valuation for v in ruled
                             if c.asset in v.assets) if r is not None]
        if not rules:
            raise ScenarioError(f"{source}: collateral_reports[{i}].asset: {c.asset!r} is "
                                "not valued by rule in this venue (assets.X.valuation)"
                                if not scenario.venues else
                                f"{source}: collateral_reports[{i}].asset: {c.asset!r} is "
                                "not valued by rule in any of [[venues]]")
        names = sorted({x.source for r in rules for x in r.sources if x.kind != "redemption"})
        if c.source not in names:
            raise ScenarioError(f"{source}: collateral_reports[{i}].source: {c.asset} is "
                                f"reported by sources {names}, not {c.source!r}")
        if c.relative and not all(any(x.kind == "redemption" for x in r.sources)
                                  for r in rules):
            raise ScenarioError(f"{source}: collateral_reports[{i}].relative: {c.asset} "
                                "has no redemption source to be relative to")
    missing = sorted(set(scenario.markets) - set(venue_obj.markets))
    if missing:
        raise ScenarioError(f"{source}: market.markets: {missing} are not markets of venue "
                            f"{venue_obj.name!r}")
    _check_options(scenario, venue_obj, source)
    try:
        scenario.agents.check_venue(venue_obj, scenario.markets)
    except ValueError as exc:
        raise ScenarioError(f"{source}: agents.{exc}") from None
    if scenario.model not in ("replay", "bootstrap"):
        try:
            scenario.path_specs()  # model ranges checked now, not halfway into a run
            if all(d["book_depth"] is None for d in scenario.liquidity_data.values()):
                scenario.liquidity_specs()
        except ScenarioError as exc:
            raise ScenarioError(f"{source}: {exc}") from None
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and parse a scenario file.

    Raises
    ------
    ScenarioError
        If the file is missing or invalid.
    """
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(f"scenario file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{p}: cannot read: {exc}") from None
    return parse_scenario(text, source=str(p), base_dir=p.resolve().parent.parent)


def default_scenario() -> Scenario:
    """Return the bundled default scenario (a synthetic 2025-10-10-shaped crash)."""
    return parse_scenario(DEFAULT_SCENARIO_TOML, source="<default scenario>")


DEFAULT_SCENARIO_TOML: Final = (
    resources.files("solvency.data").joinpath("default_scenario.toml").read_text(encoding="utf-8"))
"""The bundled default scenario (package data ``solvency/data/default_scenario.toml``, kept
identical to ``scenarios/default.toml``; a test checks it)."""
