"""Scenario grids for portfolio margin: data (TOML text or a dict), parsed and checked.

A grid is a list of scenarios, each a price move and a volatility move with a weight, plus
the scan ranges that scale them and the add-on and initial-margin rules that go with
them. Grids are data: the shipped ones live in ``solvency/core/portfolio/grids/*.toml``
and are read by :func:`solvency.adapters.grids.load_grid`; this module only parses text
or a mapping it is given (no IO).

Scenario ``s`` moves the forward and the volatility of every position of one underlying::

    F_s     = F (1 + price_s * price_range)
    scale   = (vol_term_ref_days / max(vol_term_floor_days, dte)) ** p,
              p = vol_power_short if dte < vol_term_ref_days else vol_power_long
    R       = vol_range_up if vol_s > 0 else vol_range_down
    sigma_s = sigma + vol_s * R * scale           (vol_shift = "absolute", SPAN)
    sigma_s = sigma * (1 + vol_s * R * scale)     (vol_shift = "relative", Deribit, Paradex)
    sigma_s = max(sigma_s, vol_floor), and max(sigma_s, vol_up_floor) when vol_s > 0

and the time to expiry shrinks by ``lookahead_days`` (SPAN values the risk array at the
next trading day). The weighted scenario loss is ``weight_s * loss_s``.

Example (a TOML grid)::

    name = "example"
    price_range = 0.10
    vol_range_up = 0.05
    vol_range_down = 0.05
    vol_shift = "absolute"

    [[scenarios]]
    price = 1.0
    vol = 1.0
    weight = 1.0
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from solvency.core.schema import Num, Number, format_errors
from solvency.core.typing import Float64Array1D

__all__ = [
    "DAYS_PER_YEAR",
    "DeltaRule",
    "ExtendedFutures",
    "GridAddons",
    "GridError",
    "GridFile",
    "GridScenario",
    "GridUnderlying",
    "PnlCurrency",
    "RollRule",
    "ScenarioGrid",
    "ShortOptionNet",
    "VolShift",
    "grid_model",
    "parse_grid",
]

DAYS_PER_YEAR: Final = 365.0

VolShift = Literal["absolute", "relative"]
DeltaRule = Literal["add", "floor"]
PnlCurrency = Literal["quote", "coin"]
RollRule = Literal["offset", "gross"]
ShortOptionNet = Literal["position", "strike"]
ExtendedFutures = Literal["full", "edge"]


class GridError(ValueError):
    """A grid definition is malformed; the message names the field."""


@dataclass(frozen=True, slots=True)
class ScenarioGrid:
    """A parsed, checked scenario grid (immutable; arrays are read-only copies).

    Attributes
    ----------
    name, title, source, retrieved
        Identifier, human title, the published source (URL and document) and the date it
        was read.
    price_move, vol_move, weight
        Per scenario: price move in multiples of ``price_range``, volatility move in
        multiples of the vol range (+1 up, -1 down, 0 unchanged) and the weight applied
        to the scenario's loss (SPAN extreme moves: 0.35).
    move_is_fraction
        Per scenario, 1.0 where ``price_move`` is a fraction of the price (TOML key
        ``move``: fixed tail moves such as Deribit's and Paradex's -66 % ... +500 %)
        rather than a multiple of ``price_range`` (key ``price``).
    price_range
        Default price scan range, a fraction of the underlying price (per-underlying
        values may be passed to :func:`solvency.core.portfolio.portfolio_margin`).
    vol_range_up, vol_range_down, vol_shift
        Volatility scan ranges and whether they add vol points (``"absolute"``) or
        scale the volatility (``"relative"``).
    vol_term_ref_days, vol_term_floor_days, vol_power_short, vol_power_long
        Term structure of the vol shock: ``(ref / max(floor, dte)) ** power``.
    vol_floor, vol_up_floor
        Lower bounds of a shocked volatility, and of an upward-shocked one.
    lookahead_days
        Days the valuation date moves forward in every scenario (SPAN: 1).
    short_option_minimum
        Floor per short option contract, a fraction of the forward (SPAN short option
        minimum; Deribit's per-short-option contingency).
    delta_net, delta_hedged, delta_rule
        Delta charge ``(delta_net |net delta| + delta_hedged hedged delta) * F``, added to
        the scan loss (``"add"``) or used as a floor (``"floor"``, Paradex's minimum delta
        requirement).
    roll
        Charge on futures, a fraction of their notional: ``min(long, short)`` under
        ``roll_rule = "offset"`` (Deribit's older page: offsetting futures) or
        ``long + short`` under ``"gross"`` (Deribit's API today: 1 % of gross futures).
    roll_rule
        ``"offset"`` or ``"gross"`` (see ``roll``).
    short_option_net
        ``"position"``: the short-option charge counts every short option row;
        ``"strike"``: calls and puts of one underlying, expiry and strike are netted
        first and only a net short counts (Deribit: call +10 and put -20 at strike X is
        10 net short).
    pnl_currency
        ``"quote"``: scenario P&L in the quote currency (USD), linear for futures;
        ``"coin"``: in the underlying coin at the scenario's price, as a coin-settled
        (inverse) book is margined (Deribit's BTC books: a future's P&L is
        ``size m / (1 + m)`` BTC, an option's ``size (V0 / F - V_s / F_s)``); the
        requirement is then converted to the quote currency at the underlying price.
    underlying_ranges
        Per underlying symbol ``(symbol, price_range, vol_range_up, vol_range_down)``
        from the file's ``[underlyings.SYMBOL]`` tables (missing values: the grid's);
        :meth:`ranges` reads them.
    extended_futures
        Futures in the scenarios given by a fixed ``move`` (the extended table):
        ``"full"`` P&L at the move, or ``"edge"``: the P&L of the price range's edge on
        the same side (what Deribit's ``private/pme/simulate`` example prints).
    short_option_rule
        ``"floor"`` (SPAN: the short option minimum is a lower bound of the
        requirement) or ``"add"`` (Deribit: a contingency added to it).
    mm_factor
        Maintenance margin = requirement x ``mm_factor`` (Paradex: 0.5 of the net
        portfolio initial requirement).
    im_factor
        Initial margin = maintenance margin x ``im_factor``.
    """

    name: str
    title: str
    source: str
    retrieved: str
    price_move: Float64Array1D
    vol_move: Float64Array1D
    weight: Float64Array1D
    move_is_fraction: Float64Array1D
    price_range: float
    vol_range_up: float
    vol_range_down: float
    vol_shift: VolShift
    vol_term_ref_days: float
    vol_term_floor_days: float
    vol_power_short: float
    vol_power_long: float
    vol_floor: float
    vol_up_floor: float
    lookahead_days: float
    short_option_minimum: float
    delta_net: float
    delta_hedged: float
    delta_rule: DeltaRule
    roll: float
    short_option_rule: DeltaRule
    mm_factor: float
    im_factor: float
    roll_rule: RollRule = "offset"
    short_option_net: ShortOptionNet = "position"
    pnl_currency: PnlCurrency = "quote"
    extended_futures: ExtendedFutures = "full"
    underlying_ranges: tuple[tuple[str, float, float, float], ...] = ()

    @property
    def n_scenarios(self) -> int:
        """Return the number of scenarios."""
        return int(self.price_move.shape[0])

    def ranges(self, symbols: Sequence[str]
               ) -> tuple[Float64Array1D, Float64Array1D, Float64Array1D]:
        """Return per symbol the price range, vol range up and vol range down: the
        grid file's ``[underlyings.SYMBOL]`` values where it gives them, else the grid's
        own (SPAN sets the scan ranges per combined commodity)."""
        own = {sym: (pr, up, down) for sym, pr, up, down in self.underlying_ranges}
        default = (self.price_range, self.vol_range_up, self.vol_range_down)
        rows = np.array([own.get(sym, default) for sym in symbols],
                        dtype=np.float64).reshape(len(symbols), 3)
        return (np.ascontiguousarray(rows[:, 0]), np.ascontiguousarray(rows[:, 1]),
                np.ascontiguousarray(rows[:, 2]))


# ============================================================================ schema

_FORBID: Final = ConfigDict(extra="forbid", frozen=True)
_Text = Annotated[str, Strict()]
_NonNeg = Annotated[Decimal, Num(ge=0)]
_Positive = Annotated[Decimal, Num(gt=0)]
_Weight = Annotated[Decimal, Num(gt=0, le=1)]
_MmFactor = Annotated[Decimal, Num(gt=0, le=1)]
_ImFactor = Annotated[Decimal, Num(ge=1)]


class GridScenario(BaseModel):
    """One ``[[scenarios]]`` table: a price move (``price`` x range or ``move``)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True,
        json_schema_extra={"oneOf": [{"required": ["price"]}, {"required": ["move"]}]})
    price: Number | None = Field(
        None, description="Price move in multiples of price_range (one of price, move).")
    move: Number | None = Field(
        None, description="Price move as a fraction of the price, e.g. -0.66 (one of "
                          "price, move).")
    vol: Number = Field(Decimal(0), description="Volatility move: +1 up, -1 down, 0 none.")
    weight: _Weight = Field(Decimal(1),
                           description="Weight of the scenario's loss, in (0, 1].")

    @model_validator(mode="after")
    def _one_move(self) -> GridScenario:
        if (self.price is None) == (self.move is None):
            raise ValueError("give exactly one of 'price' (x range) or 'move' (fraction)")
        return self


class GridUnderlying(BaseModel):
    """One ``[underlyings.SYMBOL]`` table: that underlying's scan ranges (each optional;
    missing: the grid's). CME sets SPAN's per combined commodity: "The price scan range
    is equal to the current Maintenance Requirement for a Combined Commodity" (CME
    Clearing, "Scan Rate Tiers"), here as a fraction of the price."""

    model_config = _FORBID
    price_range: _NonNeg | None = Field(
        None, description="Price scan range of this underlying, a fraction of its price.")
    vol_range_up: _NonNeg | None = Field(None, description="Vol scan range, up moves.")
    vol_range_down: _NonNeg | None = Field(None, description="Vol scan range, down moves.")


class GridAddons(BaseModel):
    """The ``[addons]`` table (its keys may also sit at the top level of the grid)."""

    model_config = _FORBID
    short_option_minimum: _NonNeg | None = Field(
        None, description="Floor (or add-on) per short option, a fraction of the forward.")
    short_option_rule: DeltaRule | None = Field(
        None, description="floor: the minimum bounds the requirement (SPAN); add: added "
                          "to it (Deribit). Default floor.")
    delta_net: _NonNeg | None = Field(None, description="Charge on |net delta| x F.")
    delta_hedged: _NonNeg | None = Field(None, description="Charge on hedged delta x F.")
    delta_rule: DeltaRule | None = Field(
        None, description="add: the delta charge is added; floor: it is a lower bound "
                          "(Paradex). Default add.")
    roll: _NonNeg | None = Field(
        None, description="Charge on futures, a fraction of min(long, short) x F "
                          "(roll_rule offset) or of (long + short) x F (gross).")
    roll_rule: RollRule | None = Field(
        None, description="offset: roll x min(long, short) futures (default); gross: "
                          "roll x (long + short) (Deribit's API).")
    short_option_net: ShortOptionNet | None = Field(
        None, description="position: every short option row counts (default); strike: "
                          "calls and puts of one expiry and strike are netted first "
                          "(Deribit).")
    mm_factor: _MmFactor | None = Field(None, description="Maintenance = requirement x mm_factor.")
    im_factor: _ImFactor | None = Field(None, description="Initial = maintenance x im_factor.")


class GridFile(GridAddons):
    """A portfolio-margin scenario grid file (TOML), version 1: the edge schema.

    The add-on keys of :class:`GridAddons` may be given at the top level or in
    ``[addons]`` (not both).
    """

    name: _Text = Field(description="Identifier of the grid.")
    title: _Text = ""
    source: _Text = Field("", description="The published source (URL, document).")
    retrieved: _Text = Field("", description="The date the source was read.")
    price_range: _NonNeg = Field(description="Price scan range, a fraction of the price.")
    vol_range_up: _NonNeg = Field(Decimal(0), description="Vol scan range of an up move.")
    vol_range_down: _NonNeg = Field(Decimal(0), description="Vol scan range of a down "
                                                            "move.")
    vol_shift: VolShift = Field("absolute", description="absolute: vol points are added "
                                                        "(SPAN); relative: sigma scales.")
    vol_term_ref_days: _Positive = Decimal(30)
    vol_term_floor_days: _Positive = Decimal(1)
    vol_power_short: _NonNeg = Decimal(0)
    vol_power_long: _NonNeg = Decimal(0)
    vol_floor: _Positive = Field(Decimal("0.0001"),
                                 description="Lower bound of a shocked volatility.")
    vol_up_floor: _NonNeg = Field(Decimal(0), description="Lower bound of an up-shocked "
                                                          "volatility.")
    lookahead_days: _NonNeg = Field(Decimal(0), description="Days the valuation date "
                                                            "moves forward (SPAN: 1).")
    pnl_currency: PnlCurrency = Field(
        "quote", description="quote: scenario P&L in USD; coin: in the underlying coin at "
                             "the scenario price (coin-settled books, Deribit), the "
                             "requirement converted to USD at the underlying price.")
    extended_futures: ExtendedFutures = Field(
        "full", description="Futures in fixed-move scenarios: full P&L, or edge: that of "
                            "the price range's edge on the same side (Deribit).")
    addons: GridAddons | None = None
    underlyings: dict[str, GridUnderlying] = Field(
        default_factory=dict, description="Per underlying symbol (e.g. BTC), its own "
                                          "scan ranges: [underlyings.BTC] price_range.")
    scenarios: list[GridScenario] = Field(min_length=1)

    @model_validator(mode="after")
    def _addons_once(self) -> GridFile:
        if self.addons is not None:
            both = sorted(k for k in self.addons.model_fields_set
                          if k in self.model_fields_set)
            if both:
                raise ValueError(f"{', '.join(both)} given both at the top level and in "
                                 "[addons]")
        return self

    def addon(self, key: str) -> Any:
        """Return an add-on's value from ``[addons]`` or the top level (None: default)."""
        inner = getattr(self.addons, key) if self.addons is not None else None
        return inner if inner is not None else getattr(self, key)


_ADDON_DEFAULTS: Final[dict[str, float]] = {
    "short_option_minimum": 0.0,
    "delta_net": 0.0,
    "delta_hedged": 0.0,
    "roll": 0.0,
    "mm_factor": 1.0,
    "im_factor": 1.0,
}
_FLOAT_KEYS: Final = ("vol_range_up", "vol_range_down", "vol_term_ref_days",
                      "vol_term_floor_days", "vol_power_short", "vol_power_long",
                      "vol_floor", "vol_up_floor", "lookahead_days")


def _scenarios(
    rows: list[GridScenario],
) -> tuple[Float64Array1D, Float64Array1D, Float64Array1D, Float64Array1D]:
    cols: tuple[list[float], ...] = ([], [], [], [])
    for row in rows:
        cols[0].append(float(row.move if row.move is not None else row.price or 0))
        cols[1].append(float(row.vol))
        cols[2].append(float(row.weight))
        cols[3].append(1.0 if row.move is not None else 0.0)
    arrays = tuple(np.array(c, dtype=np.float64) for c in cols)
    for a in arrays:
        a.flags.writeable = False
    return arrays[0], arrays[1], arrays[2], arrays[3]


def grid_model(source: str | Mapping[str, Any], *, where: str = "grid") -> GridFile:
    """Validate a grid (TOML text or a mapping) against the edge schema :class:`GridFile`.

    TOML floats are read as :class:`~decimal.Decimal` (exact); an unknown key at any depth
    is refused.

    Raises
    ------
    GridError
        ``where: dotted.key: what was expected``, one line per problem.
    """
    if isinstance(source, str):
        try:
            table: Any = tomllib.loads(source, parse_float=Decimal)
        except tomllib.TOMLDecodeError as exc:
            msg = f"{where}: invalid TOML: {exc}"
            raise GridError(msg) from None
    else:
        table = source
    try:
        return GridFile.model_validate(table)
    except ValidationError as exc:
        raise GridError(format_errors(where, exc, GridFile)) from None


def parse_grid(source: str | Mapping[str, Any], *, where: str = "grid") -> ScenarioGrid:
    """Parse and check a scenario grid from TOML text or an already-parsed mapping.

    Parameters
    ----------
    source
        TOML text (e.g. a shipped grid file's contents) or a mapping with the same keys:
        top-level ``name``, ``price_range``, optional vol and add-on fields (see
        :class:`ScenarioGrid`; add-ons may also sit in an ``[addons]`` table) and a
        non-empty ``[[scenarios]]`` array of ``{price | move, vol, weight}``. The schema
        is :class:`GridFile` (published as ``docs/schema/grid-v1.json``).
    where
        What the grid is called in error messages (its file path).

    Returns
    -------
    ScenarioGrid
        The checked grid.

    Raises
    ------
    GridError
        On malformed TOML, an unknown (e.g. misspelt) key, a missing or mistyped field, a
        negative range, a weight outside ``(0, 1]``, a price move at or below -100 %, or an
        unknown ``vol_shift`` or ``delta_rule``; the message names ``where`` and the
        dotted key.
    """
    m = grid_model(source, where=where)
    price, vol, weight, fixed = _scenarios(m.scenarios)
    price_range = float(m.price_range)
    for key, pr in (("price_range", price_range), *(
            (f"underlyings.{sym}.price_range", float(u.price_range))
            for sym, u in sorted(m.underlyings.items()) if u.price_range is not None)):
        if float(np.min(np.where(fixed > 0.0, price, pr * price))) <= -1.0:
            msg = f"{where}: {key}: a price move of -100 % or below in the scenarios " \
                  "makes the forward non-positive"
            raise GridError(msg)
    nums = {k: float(getattr(m, k)) for k in _FLOAT_KEYS}
    addons = {k: float(v if (v := m.addon(k)) is not None else d)
              for k, d in _ADDON_DEFAULTS.items()}
    return ScenarioGrid(
        name=m.name,
        title=m.title,
        source=m.source,
        retrieved=m.retrieved,
        price_move=price,
        vol_move=vol,
        weight=weight,
        move_is_fraction=fixed,
        price_range=price_range,
        vol_shift=m.vol_shift,
        delta_rule=m.addon("delta_rule") or "add",
        short_option_rule=m.addon("short_option_rule") or "floor",
        roll_rule=m.addon("roll_rule") or "offset",
        short_option_net=m.addon("short_option_net") or "position",
        pnl_currency=m.pnl_currency,
        extended_futures=m.extended_futures,
        underlying_ranges=tuple(
            (sym, float(u.price_range if u.price_range is not None else price_range),
             float(u.vol_range_up if u.vol_range_up is not None else m.vol_range_up),
             float(u.vol_range_down if u.vol_range_down is not None
                   else m.vol_range_down))
            for sym, u in sorted(m.underlyings.items())),
        **nums,
        **addons,
    )
