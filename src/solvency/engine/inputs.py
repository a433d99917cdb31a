"""Every input event the engine takes, parsed from JSON: the core events, oracle reports
(``{"type": "oracle", ...}``), orders for pre-trade checks or to rest (``{"type": "order",
...}``) and their cancels (``{"type": "order_cancel", ...}``)."""

from __future__ import annotations

from collections.abc import Mapping

from solvency.core.model.events import EventError, InputEvent, json_object, parse_event
from solvency.core.oracle import OracleReport, parse_oracle_report
from solvency.engine.pretrade import Order, OrderCancel, parse_order, parse_order_cancel

__all__ = ["AnyInput", "parse_input", "parse_input_line"]

AnyInput = InputEvent | OracleReport | Order | OrderCancel


def parse_input(obj: Mapping[str, object]) -> AnyInput:
    """Build any input event from its JSON object (strict, precise errors)."""
    if not isinstance(obj, Mapping):
        raise EventError("malformed", "an event must be a JSON object")
    kind = obj.get("type")
    if kind == "oracle":
        return parse_oracle_report(obj)
    if kind == "order":
        return parse_order(obj)
    if kind == "order_cancel":
        return parse_order_cancel(obj)
    return parse_event(obj)


def parse_input_line(line: str) -> AnyInput:
    """Parse one JSON Lines record of any input event (numbers read as exact decimals)."""
    return parse_input(json_object(line))
