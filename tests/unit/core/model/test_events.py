"""Event JSON codec: every event type round-trips; malformed input is refused precisely."""

import json
from decimal import Decimal

import pytest

from solvency.core.model.events import (
    EventError,
    event_to_json,
    parse_event,
    parse_event_line,
    parse_ts_ms,
)

GOOD = [
    {"type": "deposit", "id": "d1", "account": "a", "asset": "USDT", "amount": "10.5"},
    {"type": "withdraw", "id": "w1", "account": "a", "asset": "USDT", "amount": "1"},
    {"type": "price", "id": "p1", "market": "BTC-PERP", "price": "100000.5"},
    {"type": "fill", "id": "f1", "market": "BTC-PERP", "buyer": "a", "seller": "b",
     "size": "0.01", "price": "100000", "fee_buyer": "0.5", "fee_seller": "-0.1"},
    {"type": "funding", "id": "fu1", "market": "BTC-PERP", "rate": "-0.0001"},
    {"type": "expiry", "id": "x1", "market": "BTC-FUT", "price": "99000"},
    {"type": "params", "id": "pa1", "market": "BTC-PERP",
     "tiers": [{"floor": "0", "mmr": "0.01", "imr": "0.02"}]},
    {"type": "account", "id": "ac1", "account": "a", "mode": "isolated"},
    {"type": "isolated_margin", "id": "im1", "account": "a", "market": "BTC-PERP",
     "amount": "-5"},
]


@pytest.mark.parametrize("obj", GOOD, ids=[g["type"] for g in GOOD])
def test_roundtrip(obj: dict[str, object]) -> None:
    ev = parse_event(obj)
    assert event_to_json(ev) == obj
    assert parse_event_line(json.dumps(obj)) == ev


BAD = [
    ({"type": "teleport", "id": "1"}, "unknown_type"),
    ({"id": "1"}, "unknown_type"),
    ({"type": "deposit", "account": "a", "asset": "USDT", "amount": "1"}, "missing_field"),
    ({"type": "deposit", "id": "1", "asset": "USDT", "amount": "1"}, "missing_field"),
    ({"type": "deposit", "id": "1", "account": "a", "asset": "USDT"}, "missing_field"),
    ({"type": "deposit", "id": "1", "account": "a", "asset": "USDT", "amount": "0"},
     "non_positive"),
    ({"type": "deposit", "id": "1", "account": "a", "asset": "USDT", "amount": "-1"},
     "non_positive"),
    ({"type": "deposit", "id": "1", "account": "a", "asset": "USDT", "amount": "NaN"},
     "invalid_number"),
    ({"type": "deposit", "id": "1", "account": "a", "asset": "USDT", "amount": 1.5},
     "invalid_number"),
    ({"type": "deposit", "id": "1", "account": "a b", "asset": "USDT", "amount": "1"},
     "invalid_field"),
    ({"type": "deposit", "id": "", "account": "a", "asset": "USDT", "amount": "1"},
     "invalid_field"),
    ({"type": "deposit", "id": "1", "account": "a", "asset": "USDT", "amount": "1",
      "memo": "x"}, "unknown_field"),
    ({"type": "withdraw", "id": "1", "account": "a", "asset": "USDT", "amount": "Infinity"},
     "invalid_number"),
    ({"type": "price", "id": "1", "market": "M", "price": "-1"}, "non_positive"),
    ({"type": "price", "id": "1", "market": "M", "price": "0"}, "non_positive"),
    ({"type": "price", "id": "1", "price": "1"}, "missing_field"),
    ({"type": "price", "id": "1", "market": "M", "asset": "BTC", "price": "1"},
     "missing_field"),
    ({"type": "fill", "id": "1", "market": "M", "buyer": "a", "seller": "b", "size": "0",
      "price": "1"}, "non_positive"),
    ({"type": "fill", "id": "1", "market": "M", "buyer": "a", "seller": "b", "size": "1",
      "price": "-inf"}, "invalid_number"),
    ({"type": "fill", "id": "1", "market": "M", "buyer": "a", "size": "1", "price": "1"},
     "missing_field"),
    ({"type": "fill", "id": "1", "market": "M", "buyer": "a", "seller": "b", "size": "1",
      "price": "1", "fee_buyer": "abc"}, "invalid_number"),
    ({"type": "funding", "id": "1", "market": "M", "rate": "2"}, "invalid_number"),
    ({"type": "funding", "id": "1", "market": "M"}, "missing_field"),
    ({"type": "expiry", "id": "1", "market": "M", "price": "0"}, "non_positive"),
    ({"type": "params", "id": "1", "market": "M"}, "missing_field"),
    ({"type": "account", "id": "1", "account": "a", "mode": "spot"}, "invalid_field"),
    ({"type": "isolated_margin", "id": "1", "account": "a", "market": "M", "amount": "0"},
     "non_positive"),
    ({"type": "deposit", "id": "1", "account": "a", "asset": "USDT", "amount": "1",
      "ts": "yesterday"}, "invalid_timestamp"),
    ({"type": "deposit", "id": "1", "account": "a", "asset": "USDT", "amount": "1",
      "ts": "2026-03-01T00:00:00+02:00"}, "invalid_timestamp"),
]


@pytest.mark.parametrize(("obj", "reason"), BAD,
                         ids=[f"{i:02d}-{r}" for i, (_, r) in enumerate(BAD)])
def test_bad_events_are_refused_with_a_reason(obj: dict[str, object], reason: str) -> None:
    with pytest.raises(EventError) as info:
        parse_event(obj)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("line", "reason"),
    [("{", "malformed"), ("[1, 2]", "malformed"), ('"deposit"', "malformed"),
     ('{"type":"price","id":"1","market":"M","price":NaN}', "invalid_number")],
    ids=["truncated", "array", "string", "nan-literal"],
)
def test_bad_lines(line: str, reason: str) -> None:
    with pytest.raises(EventError) as info:
        parse_event_line(line)
    assert info.value.reason == reason


def test_json_numbers_are_read_exactly() -> None:
    ev = parse_event_line('{"type":"price","id":"1","market":"M","price":0.1}')
    assert ev.price == Decimal("0.1")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("ts", "ms"),
    [("2026-03-01T00:00:05Z", 1772323205000), ("2026-03-01T00:00:05.250+00:00", 1772323205250),
     (1772323205000, 1772323205000), ("1772323205000", 1772323205000)],
    ids=["iso-z", "iso-offset-ms", "epoch-int", "epoch-str"],
)
def test_timestamps(ts: object, ms: int) -> None:
    assert parse_ts_ms(ts) == ms
