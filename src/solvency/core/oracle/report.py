"""The ``oracle`` input event: one price source reporting one market's (or asset's) price.

JSON form::

    {"type": "oracle", "id": "o-1", "source": "binance", "market": "BTC-PERP",
     "price": "64012.5", "ts": "2025-10-10T21:20:00Z"}

``asset`` may replace ``market``; ``ts`` is ISO-8601 UTC or epoch milliseconds and is
required (staleness is measured from it, on the engine's event clock). Parsing is as
strict as :func:`solvency.core.model.events.parse_event`: a missing or extra field, a
float where a decimal string is expected, NaN, infinities and non-positive prices are
refused with an :class:`~solvency.core.model.events.EventError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from solvency.core.model.events import EventError, json_object, parse_ts_ms
from solvency.core.units import UnitError, parse_decimal

__all__ = ["OracleReport", "parse_oracle_line", "parse_oracle_report"]

_MAX_NAME_LEN = 128
_ALLOWED = {"type", "id", "source", "market", "asset", "price", "ts"}


@dataclass(frozen=True, slots=True)
class OracleReport:
    """A price source's report of a market's (or an asset's) price at ``ts_ms``."""

    type: ClassVar[str] = "oracle"
    id: str
    source: str
    price: Decimal
    ts_ms: int
    market: str | None = None
    asset: str | None = None

    @property
    def key(self) -> str:
        """The priced name: the market, or the asset."""
        return self.market if self.market is not None else str(self.asset)


def _name(obj: Mapping[str, object], key: str, *, required: bool) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise EventError("missing_field", key)
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise EventError("invalid_field", f"{key}: expected a string")
    text = str(value)
    if not text or len(text) > _MAX_NAME_LEN or any(c.isspace() for c in text):
        raise EventError("invalid_field", f"{key}: {text!r} is empty, too long or has spaces")
    return text


def parse_oracle_report(obj: Mapping[str, object]) -> OracleReport:
    """Build an :class:`OracleReport` from its JSON object, refusing anything malformed."""
    if not isinstance(obj, Mapping):
        raise EventError("malformed", "an event must be a JSON object")
    if obj.get("type") != "oracle":
        raise EventError("unknown_type", f"type {obj.get('type')!r}")
    extra = set(obj) - _ALLOWED
    if extra:
        raise EventError("unknown_field", f"oracle: {sorted(extra)}")
    eid = _name(obj, "id", required=True)
    source = _name(obj, "source", required=True)
    market = _name(obj, "market", required=False)
    asset = _name(obj, "asset", required=False)
    if (market is None) == (asset is None):
        raise EventError("missing_field", "oracle: give exactly one of market or asset")
    if obj.get("ts") is None:
        raise EventError("missing_field", "ts")
    ts_ms = parse_ts_ms(obj["ts"])
    if obj.get("price") is None:
        raise EventError("missing_field", "price")
    try:
        price = parse_decimal(obj["price"], field="price")
    except UnitError as exc:
        raise EventError("invalid_number", str(exc)) from None
    if price <= 0:
        raise EventError("non_positive", f"price: {price} must be > 0")
    assert eid is not None and source is not None
    return OracleReport(id=eid, source=source, price=price, ts_ms=ts_ms, market=market,
                        asset=asset)


def parse_oracle_line(line: str) -> OracleReport:
    """Parse one JSON Lines record of an oracle report (numbers read as exact decimals)."""
    return parse_oracle_report(json_object(line))
