"""A venue: its assets, markets and engine settings, built from plain JSON-like data.

The same parser reads the bundled presets, a user's ``--venue FILE``, the ``markets``
overrides of a portfolio file and the changes of a ``params`` event, so every parameter
that a preset sets can be overridden the same way, with the same precise errors.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal

from solvency.core.liquidation.policy import POLICIES, LiquidationPolicy, resolve_policy
from solvency.core.margin.models import (
    MarginModel,
    MarginTier,
    OIScaledModel,
    OptionStandardModel,
    SizeLinearModel,
    SizePremiumModel,
    TieredModel,
)
from solvency.core.model.assets import (
    Asset,
    CollateralTier,
    CollateralValuation,
    ValuationSource,
)
from solvency.core.model.events import parse_ts_ms
from solvency.core.model.instruments import Instrument
from solvency.core.model.venue_schema import check_venue_data
from solvency.core.units import UnitError, parse_decimal

__all__ = [
    "PRESET_OPEN_ORDERS",
    "ConfigError",
    "OpenOrderRule",
    "Venue",
    "build_venue",
    "margin_model_to_data",
    "merge_config",
    "parse_margin_model",
    "parse_market",
]

# the standard option rule's constants beyond Deribit's three (Paradex's short rule and
# its long-option charge): the venue key is the OptionStandardModel field
_OPTION_EXTRA: tuple[str, ...] = (
    "im_otm_discount", "mm_floor", "mm_otm_discount", "mm_mark_factor", "premium", "put_cap",
    "long_premium_im", "long_spot_im", "long_premium_mm", "long_spot_mm")
# Drift's weight on positive unrealized PnL (size_premium): the SizePremiumModel fields
_UPNL_KEYS: tuple[str, ...] = (
    "unrealized_pnl_initial_asset_weight", "unrealized_pnl_maintenance_asset_weight",
    "unrealized_pnl_imf_factor", "unrealized_pnl_initial_max")
_MODEL_KEYS: dict[str, set[str]] = {
    "tiered": {"tiers", "continuous_initial"},
    "oi_scaled": {"imr", "maintenance_fraction", "open_interest_lower_cap",
                  "open_interest_upper_cap"},
    "size_premium": {"imr", "mmr", "imf_factor", *_UPNL_KEYS},
    "size_linear": {"imr", "mmr", "im_slope", "mm_slope"},
    "option_standard": {"im_base", "im_floor", "mm_base", *_OPTION_EXTRA},
}
_MARKET_KEYS = {"kind", "base", "quote", "contract_size", "tick_size", "lot_size", "expiry",
                "aliases", "model", "option_kind", "strike", "underlying"} | set().union(
    *_MODEL_KEYS.values())
_ASSET_KEYS = {"decimals", "price_usd", "price_market", "collateral", "valuation"}


class ConfigError(ValueError):
    """A venue, market or override that cannot be built, with the path of the bad key."""


@dataclass(frozen=True, slots=True)
class OpenOrderRule:
    """How an account's resting orders count in an order's initial-margin check.

    ``none``: the order alone, as if filled in full at its price against the current
    positions (dYdX v4). ``worst_side``: in every market of the row, the position plus all
    its open bids or all its open asks, whichever is the larger liability at the mark,
    with ``per_order_usd`` of margin per open order (Drift). docs/venues.md.
    """

    kind: Literal["none", "worst_side"] = "none"
    per_order_usd: Decimal = Decimal(0)


PRESET_OPEN_ORDERS: Final[Mapping[str, OpenOrderRule]] = {
    # Drift protocol-v2 0ae3e3b1 (2026-04-01): PerpPosition::worst_case_liability_value
    # (state/user.rs: base + open_bids or base + open_asks, the larger |base| x oracle),
    # calculate_perp_position_value_and_pnl (math/margin.rs: margin ratio of the worst
    # case's size, plus margin_requirement_for_open_orders = open_orders x
    # OPEN_ORDER_MARGIN_REQUIREMENT, QUOTE_PRECISION / 100 in math/constants.rs)
    "drift": OpenOrderRule("worst_side", Decimal("0.01")),
    # dYdX v4-chain 84d4664b (2026-03-04): x/clob/keeper/orders.go PlaceStatefulOrder step
    # 4, AddOrderToOrderbookSubaccountUpdatesCheck: the order alone (its remaining
    # quantums at its subticks, the maker fee) against the subaccount; other open orders
    # are not counted
    "dydx": OpenOrderRule("none"),
}
"""Each preset's open-order rule where the venue's code was read; other presets: none.
Kept here, not in the preset data, so that the presets' data (and state hashes) stay."""


@dataclass(frozen=True, slots=True)
class Venue:
    """Assets, markets and settings of one venue (a preset or a user's file).

    ``policy`` is its liquidation policy, resolved by :func:`build_venue` from the
    ``liquidation`` section, the ``preset`` or (a preset's own data) the name.
    """

    name: str
    assets: Mapping[str, Asset]
    markets: Mapping[str, Instrument]
    margin_call_ratio: Decimal = Decimal("0.8")
    source: str = ""
    as_of: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    policy: LiquidationPolicy | None = field(default=None, repr=False)
    open_orders: OpenOrderRule = field(default_factory=OpenOrderRule, repr=False)

    def resolve(self, name: str) -> Instrument | None:
        """Find a market by its id or one of its venue aliases."""
        inst = self.markets.get(name)
        if inst is not None:
            return inst
        for m in self.markets.values():
            if name in m.aliases:
                return m
        return None


def _dec(value: object, path: str) -> Decimal:
    try:
        return parse_decimal(value, field=path)
    except UnitError as exc:
        raise ConfigError(str(exc)) from None


def _tiers(value: object, path: str) -> tuple[MarginTier, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{path}: expected a non-empty list of tiers")
    out = []
    for i, t in enumerate(value):
        p = f"{path}[{i}]"
        if not isinstance(t, Mapping):
            raise ConfigError(f"{p}: expected an object")
        extra = set(t) - {"floor", "mmr", "imr", "maintenance_amount", "initial_amount",
                          "max_leverage"}
        if extra:
            raise ConfigError(f"{p}: unknown keys {sorted(extra)}")
        imr = t.get("imr")
        if imr is None and "max_leverage" in t:
            lev = _dec(t["max_leverage"], f"{p}.max_leverage")
            if lev <= 0:
                raise ConfigError(f"{p}.max_leverage: must be positive")
            imr = Decimal(1) / lev
        if imr is None or "mmr" not in t or "floor" not in t:
            raise ConfigError(f"{p}: needs floor, mmr and imr (or max_leverage)")
        out.append(MarginTier(
            floor=_dec(t["floor"], f"{p}.floor"), mmr=_dec(t["mmr"], f"{p}.mmr"),
            imr=_dec(imr, f"{p}.imr"),
            maintenance_amount=(_dec(t["maintenance_amount"], f"{p}.maintenance_amount")
                                if t.get("maintenance_amount") is not None else None),
            initial_amount=(_dec(t["initial_amount"], f"{p}.initial_amount")
                            if t.get("initial_amount") is not None else None),
        ))
    return tuple(out)


def parse_margin_model(data: Mapping[str, Any], path: str) -> MarginModel:
    """Build a margin model from a market's data (``model`` names the kind)."""
    kind = data.get("model", "tiered")
    if kind not in _MODEL_KEYS:
        raise ConfigError(f"{path}.model: {kind!r} is not one of {sorted(_MODEL_KEYS)}")
    other = set().union(*(v for k, v in _MODEL_KEYS.items() if k != kind)) - _MODEL_KEYS[kind]
    stray = sorted(k for k in data if k in other)
    if stray:
        raise ConfigError(f"{path}: keys {stray} do not apply to model {kind!r}")
    try:
        if kind == "tiered":
            if "tiers" not in data:
                raise ConfigError(f"{path}.tiers: required for the tiered model")
            return TieredModel(tiers=_tiers(data["tiers"], f"{path}.tiers"),
                               continuous_initial=bool(data.get("continuous_initial", False)))
        if kind == "oi_scaled":
            return OIScaledModel(
                imr=_dec(data.get("imr"), f"{path}.imr"),
                maintenance_fraction=_dec(data.get("maintenance_fraction"),
                                          f"{path}.maintenance_fraction"),
                open_interest_lower_cap=_dec(data.get("open_interest_lower_cap", 0),
                                             f"{path}.open_interest_lower_cap"),
                open_interest_upper_cap=_dec(data.get("open_interest_upper_cap", 0),
                                             f"{path}.open_interest_upper_cap"),
            )
        if kind == "size_premium":
            upnl: dict[str, Any] = {k: _dec(data[k], f"{path}.{k}") for k in _UPNL_KEYS
                                    if data.get(k) is not None}
            return SizePremiumModel(imr=_dec(data.get("imr"), f"{path}.imr"),
                                    mmr=_dec(data.get("mmr"), f"{path}.mmr"),
                                    imf_factor=_dec(data.get("imf_factor", 0),
                                                    f"{path}.imf_factor"), **upnl)
        if kind == "option_standard":
            extra: dict[str, Any] = {k: _dec(data[k], f"{path}.{k}")
                                     for k in _OPTION_EXTRA if data.get(k) is not None}
            return OptionStandardModel(
                base=_dec(data.get("im_base", "0.15"), f"{path}.im_base"),
                floor=_dec(data.get("im_floor", "0.10"), f"{path}.im_floor"),
                mm_base=_dec(data.get("mm_base", "0.075"), f"{path}.mm_base"), **extra)
        return SizeLinearModel(imr=_dec(data.get("imr"), f"{path}.imr"),
                               mmr=_dec(data.get("mmr"), f"{path}.mmr"),
                               im_slope=_dec(data.get("im_slope", 0), f"{path}.im_slope"),
                               mm_slope=_dec(data.get("mm_slope", 0), f"{path}.mm_slope"))
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def margin_model_to_data(model: MarginModel) -> dict[str, Any]:
    """Inverse of :func:`parse_margin_model` (decimals as strings)."""
    if isinstance(model, TieredModel):
        return {"model": "tiered", "continuous_initial": model.continuous_initial, "tiers": [
            {"floor": str(t.floor), "mmr": str(t.mmr), "imr": str(t.imr),
             "maintenance_amount": str(t.maintenance_amount),
             "initial_amount": str(t.initial_amount)} for t in model.tiers]}
    if isinstance(model, OIScaledModel):
        return {"model": "oi_scaled", "imr": str(model.imr),
                "maintenance_fraction": str(model.maintenance_fraction),
                "open_interest_lower_cap": str(model.open_interest_lower_cap),
                "open_interest_upper_cap": str(model.open_interest_upper_cap)}
    if isinstance(model, OptionStandardModel):
        extra = {k: str(getattr(model, k)) for k in _OPTION_EXTRA
                 if getattr(model, k) is not None}
        return {"model": "option_standard", "im_base": str(model.base),
                "im_floor": str(model.floor), "mm_base": str(model.mm_base), **extra}
    if isinstance(model, SizePremiumModel):
        out = {"model": "size_premium", "imr": str(model.imr), "mmr": str(model.mmr),
               "imf_factor": str(model.imf_factor)}
        if model.unrealized_pnl_initial_asset_weight is not None:
            out.update({k: str(getattr(model, k)) for k in _UPNL_KEYS})
        return out
    return {"model": "size_linear", "imr": str(model.imr), "mmr": str(model.mmr),
            "im_slope": str(model.im_slope), "mm_slope": str(model.mm_slope)}


def parse_market(name: str, data: Mapping[str, Any]) -> Instrument:
    """Build an instrument from its data (a preset entry merged with overrides)."""
    path = f"markets.{name}"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected an object")
    extra = set(data) - _MARKET_KEYS
    if extra:
        raise ConfigError(f"{path}: unknown keys {sorted(extra)}")
    kind = data.get("kind", "linear_perp")
    base, quote = data.get("base"), data.get("quote")
    if not isinstance(base, str) or not isinstance(quote, str):
        raise ConfigError(f"{path}: base and quote are required strings")
    expiry = data.get("expiry")
    try:
        expiry_ms = parse_ts_ms(expiry) if expiry is not None else None
        return Instrument(
            name=name, kind=kind, base=base, quote=quote,
            settle=base if kind == "inverse_perp" else quote,
            contract_size=_dec(data.get("contract_size", "1"), f"{path}.contract_size"),
            tick_size=_dec(data.get("tick_size"), f"{path}.tick_size"),
            lot_size=_dec(data.get("lot_size"), f"{path}.lot_size"),
            margin=parse_margin_model(data, path), expiry_ms=expiry_ms,
            aliases=tuple(str(a) for a in data.get("aliases", ())),
            option_kind=data.get("option_kind"),
            strike=(_dec(data["strike"], f"{path}.strike") if data.get("strike") is not None
                    else None),
            underlying=data.get("underlying"),
        )
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _parse_asset(symbol: str, data: Mapping[str, Any]) -> Asset:
    path = f"assets.{symbol}"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected an object")
    extra = set(data) - _ASSET_KEYS
    if extra:
        raise ConfigError(f"{path}: unknown keys {sorted(extra)}")
    coll = data.get("collateral", [{"floor_usd": "0", "weight": "1"}])
    if not isinstance(coll, list):
        raise ConfigError(f"{path}.collateral: expected a list")
    try:
        decimals = data.get("decimals")
        if not isinstance(decimals, int) or isinstance(decimals, bool):
            raise ConfigError(f"{path}.decimals: expected an integer")
        return Asset(
            symbol=symbol, decimals=decimals,
            price_usd=(_dec(data["price_usd"], f"{path}.price_usd")
                       if data.get("price_usd") is not None else None),
            price_market=data.get("price_market"),
            collateral=tuple(
                CollateralTier(_dec(c.get("floor_usd"), f"{path}.collateral[{i}].floor_usd"),
                               _dec(c.get("weight"), f"{path}.collateral[{i}].weight"))
                for i, c in enumerate(coll)),
            valuation=(_parse_valuation(data["valuation"], f"{path}.valuation")
                       if data.get("valuation") is not None else None),
        )
    except ConfigError:
        raise
    except (ValueError, AttributeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _parse_valuation(data: Mapping[str, Any], path: str) -> CollateralValuation:
    """A collateral valuation rule (the schema checked its keys and types)."""
    sources = []
    for i, src in enumerate(data.get("sources", [])):
        kind = str(src.get("kind"))
        try:
            sources.append(ValuationSource(
                kind=kind, weight=_dec(src.get("weight"), f"{path}.sources[{i}].weight"),
                source=str(src.get("source", kind)), underlying=src.get("underlying"),
                rate=(_dec(src["rate"], f"{path}.sources[{i}].rate")
                      if src.get("rate") is not None else None)))
        except ValueError as exc:
            raise ConfigError(f"{path}.sources[{i}]: {exc}") from None
    try:
        return CollateralValuation(
            sources=tuple(sources),
            band=_dec(data["band"], f"{path}.band") if data.get("band") is not None else None,
            reference=data.get("reference"), stale_ms=data.get("stale_ms"))
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def merge_config(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge a user's overrides into a venue config (markets and assets key by key).

    Switching a market's ``model`` drops the previous model's parameters.
    """
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if key in ("markets", "assets") and isinstance(value, Mapping):
            section = out.setdefault(key, {})
            for name, sub in value.items():
                if not isinstance(sub, Mapping):
                    raise ConfigError(f"{key}.{name}: expected an object")
                current = dict(section.get(name, {}))
                if "model" in sub and sub["model"] != current.get("model", "tiered"):
                    for k in set().union(*_MODEL_KEYS.values()):
                        current.pop(k, None)
                current.update(copy.deepcopy(dict(sub)))
                section[name] = current
        elif key != "preset":
            out[key] = copy.deepcopy(value)
    return out


def build_venue(data: Mapping[str, Any], *, source: str = "venue") -> Venue:
    """Build and validate a venue from its full config data.

    The data is first checked against the venue file's schema
    (:class:`~solvency.core.model.venue_schema.VenueFile`: every section, unknown keys
    refused at any depth), then built; ``source`` names the file in the errors.

    Raises
    ------
    ConfigError
        ``source: dotted.key: what was expected`` (the schema), or the dotted key and
        what is wrong with it (the rules that span keys).
    """
    problems = check_venue_data(data, source=source)
    if problems is not None:
        raise ConfigError(problems)
    try:
        return _build(data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _build(data: Mapping[str, Any]) -> Venue:
    assets_data = data.get("assets")
    markets_data = data.get("markets")
    if not isinstance(assets_data, Mapping) or not isinstance(markets_data, Mapping):
        raise ConfigError("venue: assets and markets are required objects")
    assets = {s: _parse_asset(s, a) for s, a in assets_data.items()}
    markets = {n: parse_market(n, m) for n, m in markets_data.items()}
    for inst in markets.values():
        for sym in (inst.quote, inst.settle):
            if sym not in assets and sym != "USD":
                raise ConfigError(f"markets.{inst.name}: asset {sym} is not defined")
        try:
            inst.tick_value_quanta(assets[inst.settle].decimals) if not inst.is_inverse else None
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    for inst in markets.values():
        if inst.is_option and (inst.underlying not in markets
                               or markets[str(inst.underlying)].is_option):
            raise ConfigError(f"markets.{inst.name}.underlying: {inst.underlying!r} is not a "
                              "futures or perpetual market of this venue")
    for asset in assets.values():
        if asset.price_market is not None and asset.price_market not in markets:
            raise ConfigError(f"assets.{asset.symbol}.price_market: unknown market "
                              f"{asset.price_market}")
        if asset.valuation is not None and len(asset.collateral) > 1:
            # a liquidation's auto-exchange sells valued collateral at one weight; margin
            # and the bankruptcy price value it by tier: one tier keeps them the same
            raise ConfigError(f"assets.{asset.symbol}.collateral: an asset with a "
                              "valuation takes one collateral tier (the liquidation's "
                              "exchange sells it at that weight)")
        for i, src in enumerate(asset.valuation.sources if asset.valuation else ()):
            if src.underlying is None:
                continue
            under = assets.get(src.underlying)
            if under is None or under.symbol == asset.symbol or (
                    under.valuation is not None
                    and any(u.kind == "redemption" for u in under.valuation.sources)):
                # one level: the underlying is fixed, a market's coin or valued from
                # reported prices only (no chains, no cycles)
                raise ConfigError(f"assets.{asset.symbol}.valuation.sources[{i}].underlying: "
                                  f"{src.underlying!r} is not another asset of the venue "
                                  "priced without a redemption source")
    ratio = _dec(data.get("margin_call_ratio", "0.8"), "margin_call_ratio")
    if not Decimal(0) < ratio <= Decimal(1):
        raise ConfigError("margin_call_ratio: must be in (0, 1]")
    name = str(data.get("name", "custom"))
    return Venue(name=name, assets=assets, markets=markets,
                 margin_call_ratio=ratio, source=str(data.get("source", "")),
                 as_of=str(data.get("as_of", "")), raw=copy.deepcopy(dict(data)),
                 policy=_policy(data, name), open_orders=_open_orders(data, name))


def _open_orders(data: Mapping[str, Any], name: str) -> OpenOrderRule:
    """The ``margin`` section's open-order rule over the preset's (as :func:`_policy`: data
    without a ``preset`` key named after one is that preset's own data)."""
    preset = data.get("preset")
    if preset is None:
        preset = name
    base = PRESET_OPEN_ORDERS.get(str(preset), OpenOrderRule())
    section = data.get("margin") or {}
    kind = section.get("open_orders", base.kind)
    if "open_order_margin_usd" in section:
        per_order = _dec(section["open_order_margin_usd"], "margin.open_order_margin_usd")
    else:
        per_order = base.per_order_usd if kind == base.kind else Decimal(0)
    if kind == "none" and per_order != 0:
        raise ConfigError('margin.open_order_margin_usd: acts only with margin.open_orders = '
                          '"worst_side"')
    return OpenOrderRule(kind, per_order)


def _policy(data: Mapping[str, Any], name: str) -> LiquidationPolicy:
    # The start: the section's "policy", else the preset's; data without a "preset" key
    # named after one is that preset's own data (load_preset, a snapshot of it).
    preset = data.get("preset")
    if preset is None and name in POLICIES and name != "close_all":
        preset = name
    try:
        return resolve_policy(data.get("liquidation"), preset=preset, venue_name=name)
    except ValueError as exc:
        text = str(exc)
        raise ConfigError(text.removeprefix("venue: ")) from None
