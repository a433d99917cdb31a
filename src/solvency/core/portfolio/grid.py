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

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

from solvency.core.typing import Float64Array1D

__all__ = [
    "DAYS_PER_YEAR",
    "DeltaRule",
    "GridError",
    "ScenarioGrid",
    "VolShift",
    "parse_grid",
]

DAYS_PER_YEAR: Final = 365.0

VolShift = Literal["absolute", "relative"]
DeltaRule = Literal["add", "floor"]

_VOL_SHIFTS: Final = ("absolute", "relative")
_DELTA_RULES: Final = ("add", "floor")
_SHORT_OPTION_RULES: Final = ("add", "floor")


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
        Charge on offsetting futures, a fraction of ``min(long, short) * F`` (Deribit's
        contingency for offsetting futures).
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

    @property
    def n_scenarios(self) -> int:
        """Return the number of scenarios."""
        return int(self.price_move.shape[0])


_FLOAT_DEFAULTS: Final[dict[str, float]] = {
    "vol_range_up": 0.0,
    "vol_range_down": 0.0,
    "vol_term_ref_days": 30.0,
    "vol_term_floor_days": 1.0,
    "vol_power_short": 0.0,
    "vol_power_long": 0.0,
    "vol_floor": 1e-4,
    "vol_up_floor": 0.0,
    "lookahead_days": 0.0,
}
_ADDON_DEFAULTS: Final[dict[str, float]] = {
    "short_option_minimum": 0.0,
    "delta_net": 0.0,
    "delta_hedged": 0.0,
    "roll": 0.0,
    "mm_factor": 1.0,
    "im_factor": 1.0,
}


def _number(table: Mapping[str, Any], key: str, default: float | None, where: str) -> float:
    if key not in table:
        if default is None:
            msg = f"{where}: missing '{key}'"
            raise GridError(msg)
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{where}: '{key}' must be a number, got {value!r}"
        raise GridError(msg)
    out = float(value)
    if not math.isfinite(out):
        msg = f"{where}: '{key}' must be finite, got {value!r}"
        raise GridError(msg)
    return out


def _non_negative(value: float, key: str) -> float:
    if value < 0.0:
        msg = f"grid: '{key}' must be >= 0, got {value}"
        raise GridError(msg)
    return value


def _text(table: Mapping[str, Any], key: str, default: str | None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        msg = f"grid: '{key}' must be a string, got {value!r}"
        raise GridError(msg)
    return value


def _scenarios(
    rows: Any,
) -> tuple[Float64Array1D, Float64Array1D, Float64Array1D, Float64Array1D]:
    if not isinstance(rows, list) or not rows:
        msg = "grid: 'scenarios' must be a non-empty array of tables"
        raise GridError(msg)
    cols: list[list[float]] = [[], [], [], []]
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            msg = f"scenarios[{i}]: must be a table"
            raise GridError(msg)
        where = f"scenarios[{i}]"
        if ("price" in row) == ("move" in row):
            msg = f"{where}: give exactly one of 'price' (x range) or 'move' (fraction)"
            raise GridError(msg)
        fixed = "move" in row
        cols[0].append(_number(row, "move" if fixed else "price", None, where))
        cols[3].append(1.0 if fixed else 0.0)
        cols[1].append(_number(row, "vol", 0.0, where))
        w = _number(row, "weight", 1.0, where)
        if not 0.0 < w <= 1.0:
            msg = f"{where}: 'weight' must be in (0, 1], got {w}"
            raise GridError(msg)
        cols[2].append(w)
    arrays = tuple(np.array(c, dtype=np.float64) for c in cols)
    for a in arrays:
        a.flags.writeable = False
    return arrays[0], arrays[1], arrays[2], arrays[3]


def parse_grid(source: str | Mapping[str, Any]) -> ScenarioGrid:
    """Parse and check a scenario grid from TOML text or an already-parsed mapping.

    Parameters
    ----------
    source
        TOML text (e.g. a shipped grid file's contents) or a mapping with the same keys:
        top-level ``name``, ``price_range``, optional vol and add-on fields (see
        :class:`ScenarioGrid`; add-ons may also sit in an ``[addons]`` table) and a
        non-empty ``[[scenarios]]`` array of ``{price, vol, weight}``.

    Returns
    -------
    ScenarioGrid
        The checked grid.

    Raises
    ------
    GridError
        On malformed TOML, a missing or mistyped field, a negative range, a weight
        outside ``(0, 1]``, a price move at or below -100 %, or an unknown ``vol_shift``
        or ``delta_rule``.
    """
    if isinstance(source, str):
        try:
            table: Mapping[str, Any] = tomllib.loads(source)
        except tomllib.TOMLDecodeError as exc:
            msg = f"grid: invalid TOML: {exc}"
            raise GridError(msg) from exc
    else:
        table = source
    addons = table.get("addons", {})
    if not isinstance(addons, Mapping):
        msg = "grid: 'addons' must be a table"
        raise GridError(msg)
    merged = {**table, **addons}
    price, vol, weight, fixed = _scenarios(table.get("scenarios"))
    price_range = _non_negative(_number(table, "price_range", None, "grid"), "price_range")
    if float(np.min(np.where(fixed > 0.0, price, price_range * price))) <= -1.0:
        msg = "grid: a price move of -100 % or below makes the forward non-positive"
        raise GridError(msg)
    nums = {
        k: _non_negative(_number(merged, k, d, "grid"), k)
        for k, d in (_FLOAT_DEFAULTS | _ADDON_DEFAULTS).items()
    }
    if nums["vol_term_floor_days"] <= 0.0 or nums["vol_term_ref_days"] <= 0.0:
        msg = "grid: 'vol_term_ref_days' and 'vol_term_floor_days' must be > 0"
        raise GridError(msg)
    if nums["vol_floor"] <= 0.0:
        msg = "grid: 'vol_floor' must be > 0 (Black-76 needs a positive volatility)"
        raise GridError(msg)
    if not 0.0 < nums["mm_factor"] <= 1.0:
        msg = f"grid: 'mm_factor' must be in (0, 1], got {nums['mm_factor']}"
        raise GridError(msg)
    if nums["im_factor"] < 1.0:
        msg = f"grid: 'im_factor' must be >= 1, got {nums['im_factor']}"
        raise GridError(msg)
    vol_shift = _text(table, "vol_shift", "absolute")
    if vol_shift not in _VOL_SHIFTS:
        msg = f"grid: 'vol_shift' must be one of {_VOL_SHIFTS}, got {vol_shift!r}"
        raise GridError(msg)
    delta_rule = _text(merged, "delta_rule", "add")
    if delta_rule not in _DELTA_RULES:
        msg = f"grid: 'delta_rule' must be one of {_DELTA_RULES}, got {delta_rule!r}"
        raise GridError(msg)
    short_option_rule = _text(merged, "short_option_rule", "floor")
    if short_option_rule not in _SHORT_OPTION_RULES:
        msg = (
            f"grid: 'short_option_rule' must be one of {_SHORT_OPTION_RULES}, "
            f"got {short_option_rule!r}"
        )
        raise GridError(msg)
    return ScenarioGrid(
        name=_text(table, "name", None),
        title=_text(table, "title", ""),
        source=_text(table, "source", ""),
        retrieved=_text(table, "retrieved", ""),
        price_move=price,
        vol_move=vol,
        weight=weight,
        move_is_fraction=fixed,
        price_range=price_range,
        vol_shift="absolute" if vol_shift == "absolute" else "relative",
        delta_rule="add" if delta_rule == "add" else "floor",
        short_option_rule="add" if short_option_rule == "add" else "floor",
        **nums,
    )
