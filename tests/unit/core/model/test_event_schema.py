"""The event-line models (docs/schema/event-v1.json) and the hand-written parser the
engine uses agree (issue 23 item 1, event lines): the same event from every line either
accepts, and an example of every rejection reason refused by both (and by the published
JSON Schema, where a JSON Schema can say it)."""

from __future__ import annotations

import json
from decimal import Decimal
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from solvency.core.model.event_schema import EVENT_LINE, OrderCancelLine, OrderLine, to_event
from solvency.core.model.events import EventError
from solvency.engine.inputs import parse_input_line
from solvency.engine.pretrade import Order, OrderCancel

SCHEMA = json.loads((Path(__file__).resolve().parents[4] / "docs" / "schema" /
                     "event-v1.json").read_text(encoding="utf-8"))


def _demo() -> list[str]:
    text = resources.files("solvency.data").joinpath("demo_events.jsonl").read_text()
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


GOOD = [
    '{"type":"deposit","id":"d","account":"a","asset":"USDT","amount":"5000.25"}',
    '{"type":"deposit","id":7,"account":3,"asset":"USDT","amount":12,"ts":1774512000000}',
    '{"type":"withdraw","id":"w","account":"a","asset":"BTC","amount":0.5}',
    '{"type":"price","id":"p","asset":"BTC","price":"1e-40"}',
    '{"type":"fill","id":"f","market":"BTC-PERP","buyer":"a","seller":"b","size":"0.001",'
    '"price":"84000.1","fee_buyer":"-0.5","fee_seller":"1.25","ts":"2026-03-26T08:00:00Z"}',
    '{"type":"funding","id":"r","market":"BTC-PERP","rate":"-0.999"}',
    '{"type":"expiry","id":"x","market":"BTC-26JUN26","price":"100000"}',
    '{"type":"account","id":"m","account":"a","mode":"portfolio"}',
    '{"type":"isolated_margin","id":"i","account":"a","market":"BTC-PERP","amount":"-10"}',
    '{"type":"vol","id":"v","market":"BTC-C","iv":"0.0001"}',
    '{"type":"params","id":"g","market":"BTC-PERP","max_leverage":"20","ts":5}',
    '{"type":"oracle","id":"o","source":"binance","market":"BTC-PERP","price":"1e50",'
    '"ts":"2026-03-26T08:00:00Z"}',
    '{"type":"oracle","id":"o2","source":3,"asset":"BTC","price":84000,"ts":1774512000000}',
    '{"type":"order","id":"q","account":"a","market":"BTC-PERP","side":"buy","size":"2"}',
    '{"type":"order","id":"q2","account":"a","market":"M","side":"sell","size":"1",'
    '"price":"9","reduce_only":true,"ts":7}',
    '{"type":"order","id":"q3","account":"a","market":"M","side":"buy","size":"1",'
    '"price":"9","rest":true}',
    '{"type":"order_cancel","id":"c","account":"a","order":"q3","ts":8}',
    '{"type":"fill","id":"f2","market":"M","buyer":"a","seller":"b","size":"1",'
    '"price":"9","buyer_order":"q3","seller_order":4}',
]


def _same(line: str) -> None:
    m = EVENT_LINE.validate_python(json.loads(line, parse_float=Decimal))
    if isinstance(m, OrderLine):  # the engine's Order is outside the core
        got: object = Order(id=m.id, account=m.account, market=m.market, side=m.side,
                            size=m.size, price=m.price, reduce_only=m.reduce_only,
                            ts_ms=m.ts, rest=m.rest)
    elif isinstance(m, OrderCancelLine):
        got = OrderCancel(id=m.id, account=m.account, order=m.order, ts_ms=m.ts)
    else:
        got = to_event(m)
    assert got == parse_input_line(line), line
    jsonschema.validate(json.loads(line), SCHEMA)


@pytest.mark.parametrize("line", GOOD)
def test_lines_the_parser_accepts_give_the_same_event(line: str) -> None:
    _same(line)


def test_every_line_of_the_demo_log_gives_the_same_event() -> None:
    lines = _demo()
    assert len(lines) > 100
    for line in lines:
        _same(line)


# (case id, line, the parser's reason, refused by the JSON Schema too)
BAD = [
    ("unknown-type", '{"type":"trade","id":"t"}', "unknown_type", True),
    ("missing-id", '{"type":"price","market":"M","price":"1"}', "missing_field", True),
    ("missing-amount", '{"type":"deposit","id":"d","account":"a","asset":"U"}',
     "missing_field", True),
    ("price-both", '{"type":"price","id":"p","market":"M","asset":"A","price":"1"}',
     "missing_field", True),
    ("params-nothing", '{"type":"params","id":"g","market":"M"}', "missing_field", False),
    ("space-in-name", '{"type":"deposit","id":"d","account":"a b","asset":"U","amount":1}',
     "invalid_field", True),
    ("slash-in-account", '{"type":"deposit","id":"d","account":"a/B","asset":"U",'
     '"amount":1}', "invalid_field", True),
    ("long-name", '{"type":"vol","id":"' + "x" * 129 + '","market":"M","iv":"0.5"}',
     "invalid_field", True),
    ("boolean-name", '{"type":"vol","id":true,"market":"M","iv":"0.5"}', "invalid_field",
     True),
    ("bad-mode", '{"type":"account","id":"m","account":"a","mode":"spot"}',
     "invalid_field", True),
    ("misspelt-key", '{"type":"fill","id":"f","market":"M","buyer":"a","seller":"b",'
     '"size":"1","price":"1","fee_buyr":"1"}', "unknown_field", True),
    ("text-number", '{"type":"deposit","id":"d","account":"a","asset":"U","amount":"ten"}',
     "invalid_number", True),
    ("huge-exponent", '{"type":"price","id":"p","market":"M","price":"1e41"}',
     "invalid_number", False),
    ("long-number", '{"type":"price","id":"p","market":"M","price":"' + "1" * 101 + '"}',
     "invalid_number", False),
    ("rate-one", '{"type":"funding","id":"r","market":"M","rate":1}', "invalid_number",
     True),
    ("iv-tiny", '{"type":"vol","id":"v","market":"M","iv":0.00001}', "invalid_number",
     True),
    ("zero-size", '{"type":"fill","id":"f","market":"M","buyer":"a","seller":"b",'
     '"size":0,"price":"1"}', "non_positive", True),
    ("zero-isolated", '{"type":"isolated_margin","id":"i","account":"a","market":"M",'
     '"amount":"0"}', "non_positive", False),
    ("local-time", '{"type":"price","id":"p","market":"M","price":"1",'
     '"ts":"2026-03-26T08:00:00"}', "invalid_timestamp", True),
    ("negative-ts", '{"type":"price","id":"p","market":"M","price":"1","ts":-1}',
     "invalid_timestamp", True),
    ("oracle-no-ts", '{"type":"oracle","id":"o","source":"s","market":"M","price":"1"}',
     "missing_field", True),
    ("oracle-zero", '{"type":"oracle","id":"o","source":"s","market":"M","price":0,"ts":1}',
     "non_positive", True),
    ("oracle-key", '{"type":"oracle","id":"o","source":"s","market":"M","price":1,"ts":1,'
     '"sorce":"t"}', "unknown_field", True),
    ("order-side", '{"type":"order","id":"q","account":"a","market":"M","side":"long",'
     '"size":"1"}', "invalid_field", True),
    ("order-int-id", '{"type":"order","id":5,"account":"a","market":"M","side":"buy",'
     '"size":"1"}', "invalid_field", True),
    ("order-reduce-only", '{"type":"order","id":"q","account":"a","market":"M",'
     '"side":"buy","size":"1","reduce_only":"yes"}', "invalid_field", True),
    ("order-rest-no-price", '{"type":"order","id":"q","account":"a","market":"M",'
     '"side":"buy","size":"1","rest":true}', "missing_field", False),
    ("cancel-no-order", '{"type":"order_cancel","id":"c","account":"a"}', "missing_field",
     True),
    ("cancel-key", '{"type":"order_cancel","id":"c","account":"a","order":"q","size":1}',
     "unknown_field", True),
    ("fill-order-space", '{"type":"fill","id":"f","market":"M","buyer":"a","seller":"b",'
     '"size":"1","price":"1","buyer_order":"q 1"}', "invalid_field", True),
]


@pytest.mark.parametrize(("line", "reason", "schema_too"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_every_rejection_reason_is_refused_by_both(line: str, reason: str,
                                                   schema_too: bool) -> None:
    with pytest.raises(EventError) as exc:
        parse_input_line(line)
    assert exc.value.reason == reason
    with pytest.raises(ValidationError):
        EVENT_LINE.validate_python(json.loads(line, parse_float=Decimal))
    # the schema bounds JSON numbers (these lines give them as numbers); a decimal
    # string's value, magnitudes, lengths and "at least one change" are the models' alone
    if schema_too:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(json.loads(line), SCHEMA)
