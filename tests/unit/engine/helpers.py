"""Small builders for engine tests."""

from __future__ import annotations

from decimal import Decimal as D
from itertools import count
from typing import Any

from solvency.core.model.events import OutEvent, parse_event
from solvency.core.model.presets import load_preset, venue_from_data
from solvency.engine.engine import Engine

_ids = count(1)


def engine(preset: str = "binance", **overrides: Any) -> Engine:
    if overrides:
        return Engine(venue_from_data({"preset": preset, **overrides}))
    return Engine(load_preset(preset))


def ev(kind: str, **fields: Any) -> Any:
    fields.setdefault("id", f"t{next(_ids)}")
    return parse_event({"type": kind, **{k: str(v) if isinstance(v, D | int) and k not in (
        "ts",) else v for k, v in fields.items()}})


def apply(e: Engine, kind: str, **fields: Any) -> list[OutEvent]:
    return e.apply(ev(kind, **fields))


def types(outs: list[OutEvent]) -> list[str]:
    return [o.type for o in outs]
