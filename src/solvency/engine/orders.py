"""Orders: pre-trade checks against the engine's state; nothing moves.

An ``order`` event asks whether an order would be accepted now (price band, size and
notional limits, position and open-interest caps, leverage tiers, free collateral after
the trade, breakers, rate limit: ``pretrade.py``); the answer is an ``order`` out-event,
``accepted`` or ``rejected`` with a reason. Balances only move when a fill arrives.
"""

from __future__ import annotations

from typing import Any

from solvency.engine.base import EngineState
from solvency.engine.pretrade import Order

__all__ = ["apply_order"]


def apply_order(state: EngineState, ev: Order) -> list[Any]:
    """Pre-trade check of an order: accepted or rejected with a reason; no balance
    moves until it is filled."""
    return [state.feeds.check(ev, ev.ts_ms if ev.ts_ms is not None else (
        state.clock_ms or 0))]
