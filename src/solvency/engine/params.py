"""Parameter changes: governance edits a market's terms while the engine runs.

A ``params`` event carries a partial market config (margin tiers, fees, limits ...); it is
merged into the market's config and the whole venue is rebuilt from it, so a change is
held to the same schema as a config file. Contract terms (kind, size, tick and lot
sizes, expiry) cannot change while positions are open or orders rest in the market.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

import numpy as np

from solvency.core.model.events import OutEvent, Params, Settled
from solvency.core.model.instruments import Instrument
from solvency.core.model.venue import (
    ConfigError,
    Venue,
    build_venue,
    merge_config,
    parse_market,
)
from solvency.engine.base import EngineState, RejectReason, tick_value_quanta_of
from solvency.engine.options import set_option_requirements
from solvency.engine.valuation import check_rows

__all__ = ["CONTRACT_TERMS", "WHILE_ORDERS", "WHILE_POSITIONS", "apply_params",
           "params_trial"]


TICK_SIZE_MAX: Final = Decimal(10) ** 6
CONTRACT_TERMS: Final = ("kind", "base", "quote", "expiry", "contract_size", "lot_size",
                         "tick_size")
"""The keys a ``params`` event cannot change while the market has positions or resting
orders."""
WHILE_POSITIONS: Final = "cannot change while positions are open"
WHILE_ORDERS: Final = "cannot change while orders rest in"
"""The rejection details' phrases (the account shards decide the refusal over every
shard: service/shards.py ``refuse_contract_terms``)."""


def params_trial(state: EngineState, ev: Params) -> tuple[int, Instrument, dict[str, Any]]:
    """What ``ev`` would make of its market, changing nothing: the market's index, its
    new instrument and its new config; :class:`RejectReason` where the engine refuses
    it (the account shards look here before a change is applied: service/shards.py)."""
    book = state.book
    m, inst = state.resolve_market(ev.market)
    terms = [key for key in CONTRACT_TERMS if key in ev.changes]
    if terms and book.holders[m].view().shape[0] > 0:
        raise RejectReason("invalid_params",
                           f"{terms[0]} {WHILE_POSITIONS}")
    if terms and any(o.market == m for o in state.open_orders.by_id.values()):
        # a resting order holds its size in lots and its limit on the tick grid: a new
        # lot or tick size (or contract) would silently change what it promises
        raise RejectReason("invalid_params",
                           f"{terms[0]} {WHILE_ORDERS} {inst.name}")
    current = state.market_data.get(inst.name, {})
    try:
        merged = merge_config({"markets": {inst.name: current}},
                              {"markets": {inst.name: dict(ev.changes)}})
        data = merged["markets"][inst.name]
        # the market's own rules first: their messages are the rejection details the
        # event logs (and their golden hashes) have always carried
        parse_market(inst.name, data)
        trial = build_venue({**state.venue.raw, "markets": {
            **state.market_data, inst.name: data}})
    except ConfigError as exc:
        raise RejectReason("invalid_params", str(exc).removeprefix("venue: ")) from None
    new_inst = trial.markets[inst.name]
    if new_inst.tick_size > TICK_SIZE_MAX:
        # every mark stays at most 1e12 (a price event's bound): a tick of 1e40 once
        # rounded an oracle index to a mark of 1E+40 and overflowed the int64 book
        raise RejectReason("invalid_params",
                           f"tick_size {new_inst.tick_size} above {TICK_SIZE_MAX}")
    return m, new_inst, data


def apply_params(state: EngineState, ev: Params) -> list[OutEvent]:
    """Change a market's parameters (governance): validated as a whole venue config,
    then the market's holders re-margined under the new terms."""
    book = state.book
    m, new_inst, data = params_trial(state, ev)
    inst = book.instruments[m]
    state.market_data[inst.name] = data
    book.set_instrument(m, new_inst)
    state.tick_value_quanta[m] = tick_value_quanta_of(state.venue, new_inst)
    venue = state.venue
    state.venue = Venue(name=venue.name, assets=venue.assets,
                        markets={**venue.markets, inst.name: new_inst},
                        margin_call_ratio=venue.margin_call_ratio,
                        source=venue.source, as_of=venue.as_of,
                        raw={**venue.raw, "markets": dict(state.market_data)},
                        policy=venue.policy)
    state.reindex_markets()
    mark = book.marks[m]
    if new_inst.is_option and mark is not None:
        # the option's per-contract requirements under the new constants, at its mark
        # (they were computed at the last re-pricing: a new rule would otherwise wait for
        # the next vol or underlying move)
        set_option_requirements(state, m, float(mark))
    slots = book.holders[m].view().copy()
    book.refresh(slots)
    out: list[OutEvent] = [Settled(id=state.next_id(), event=ev.id, kind="params",
                                   market=inst.name, asset=inst.settle, paid="0",
                                   received="0", rounding="0")]
    out.extend(check_rows(state, np.unique(book.slot_row[slots]), ev.id))
    return out
