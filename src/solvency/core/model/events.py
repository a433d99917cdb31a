"""Events: frozen dataclasses with a JSON Lines form, in and out of the engine.

Input events are what happened (deposits, fills, prices, ...); out-events are what the
engine decided (margin call, rejection, settlement, later liquidation and ADL). Both use
the same JSON shape: ``{"type": ..., "id": ..., fields...}``; decimals travel as strings.
Parsing is strict: an unknown type, a missing or extra field, a float where a decimal
string is expected, NaN, infinities or non-positive sizes and prices are refused with a
:class:`EventError` naming the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal

from solvency.core.units import UnitError, parse_decimal

__all__ = [
    "DETAIL_MAX_CHARS",
    "NUMBER_MAX_CHARS",
    "AccountMode",
    "BadDebt",
    "CollateralExchanged",
    "Deleveraged",
    "Deposit",
    "EventError",
    "Expiry",
    "Fill",
    "FundUnwound",
    "Funding",
    "InputEvent",
    "IsolatedMargin",
    "Liquidated",
    "MarginCall",
    "MarginRestored",
    "OutEvent",
    "Params",
    "ParamsChanged",
    "Price",
    "Rejected",
    "Settled",
    "SocializedLossEvent",
    "Vol",
    "Withdraw",
    "WithdrawalState",
    "bounded_detail",
    "event_to_json",
    "json_object",
    "parse_event",
    "parse_event_line",
    "parse_ts_ms",
]

MarginMode = Literal["cross", "isolated", "portfolio"]
_MAX_ID_LEN = 128


class EventError(ValueError):
    """A malformed event, with a named reason code and the offending field."""

    def __init__(self, reason: str, detail: str) -> None:
        detail = bounded_detail(detail)
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


DETAIL_MAX_CHARS: Final = 200
NUMBER_MAX_CHARS: Final = 100  # a number longer than this is refused, not parsed
EXPONENT_MAX: Final = 40  # |log10| of any amount, price, size or rate (1e-40 .. 1e40)


def bounded_detail(detail: str) -> str:
    """Cut an error detail to ``DETAIL_MAX_CHARS`` (a rejected 20 MB number must not be
    echoed whole into an out-event file)."""
    if len(detail) <= DETAIL_MAX_CHARS:
        return detail
    return f"{detail[:DETAIL_MAX_CHARS]}... ({len(detail):,} characters)"


# ---------------------------------------------------------------- input events


@dataclass(frozen=True, slots=True)
class Deposit:
    """Collateral enters an account from outside the venue."""

    type: ClassVar[str] = "deposit"
    id: str
    account: str
    asset: str
    amount: Decimal
    ts_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Collateral leaves an account (refused below initial margin)."""

    type: ClassVar[str] = "withdraw"
    id: str
    account: str
    asset: str
    amount: Decimal
    ts_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Price:
    """A mark price for a market (or a USD price for an asset)."""

    type: ClassVar[str] = "price"
    id: str
    price: Decimal
    market: str | None = None
    asset: str | None = None
    ts_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Fill:
    """A trade between two accounts; fees are signed (negative is a rebate).

    ``buyer_order`` / ``seller_order``: the id of a side's resting order that the fill
    executes (optional); the fill reduces it by ``size`` (engine/open_orders.py)."""

    type: ClassVar[str] = "fill"
    id: str
    market: str
    buyer: str
    seller: str
    size: Decimal
    price: Decimal
    fee_buyer: Decimal = Decimal(0)
    fee_seller: Decimal = Decimal(0)
    ts_ms: int | None = None
    buyer_order: str | None = None
    seller_order: str | None = None


@dataclass(frozen=True, slots=True)
class Funding:
    """A funding settlement: longs pay shorts ``size x mark x rate`` when rate > 0."""

    type: ClassVar[str] = "funding"
    id: str
    market: str
    rate: Decimal
    ts_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Expiry:
    """Cash settlement of a dated future at its final price."""

    type: ClassVar[str] = "expiry"
    id: str
    market: str
    price: Decimal
    ts_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Params:
    """A governance change of a market's risk parameters (same keys as overrides)."""

    type: ClassVar[str] = "params"
    id: str
    market: str
    changes: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    ts_ms: int | None = None


@dataclass(frozen=True, slots=True)
class AccountMode:
    """Choose an account's margin mode (cross or isolated for new positions)."""

    type: ClassVar[str] = "account"
    id: str
    account: str
    mode: MarginMode
    ts_ms: int | None = None


@dataclass(frozen=True, slots=True)
class IsolatedMargin:
    """Move collateral into (+) or out of (-) an isolated position's margin."""

    type: ClassVar[str] = "isolated_margin"
    id: str
    account: str
    market: str
    amount: Decimal
    ts_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Vol:
    """A mark implied volatility for an option market (annualized, e.g. 0.55)."""

    type: ClassVar[str] = "vol"
    id: str
    market: str
    iv: Decimal
    ts_ms: int | None = None


InputEvent = Deposit | Withdraw | Price | Fill | Funding | Expiry | Params | AccountMode | (
    IsolatedMargin | Vol
)

# ---------------------------------------------------------------- out-events


@dataclass(frozen=True, slots=True)
class Rejected:
    """An input event refused with a named reason; it changed nothing."""

    type: ClassVar[str] = "rejected"
    id: str
    event: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class MarginCall:
    """An account's margin ratio (maintenance / collateral) crossed the warning level."""

    type: ClassVar[str] = "margin_call"
    id: str
    event: str
    account: str
    margin_ratio: str
    collateral_usd: str
    maintenance_usd: str


@dataclass(frozen=True, slots=True)
class MarginRestored:
    """An account's margin ratio went back under the warning level."""

    type: ClassVar[str] = "margin_restored"
    id: str
    event: str
    account: str
    margin_ratio: str


@dataclass(frozen=True, slots=True)
class Settled:
    """A settlement happened (funding, expiry, params): amounts moved and rounding kept."""

    type: ClassVar[str] = "settled"
    id: str
    event: str
    kind: str
    market: str
    asset: str
    paid: str
    received: str
    rounding: str


@dataclass(frozen=True, slots=True)
class Liquidated:
    """A step of a liquidation: ``size`` of ``market`` closed ``via`` the book
    (``market``), the backstop vault, the insurance fund, or ``unresolved`` (nobody took
    it yet); ``penalty`` charged and the insurance fund's net change, in the settle asset.
    """

    type: ClassVar[str] = "liquidation"
    id: str
    event: str
    account: str
    market: str
    size: str
    price: str
    via: str
    bankruptcy_price: str
    penalty: str
    insurance_fund_delta: str


@dataclass(frozen=True, slots=True)
class Deleveraged:
    """Auto-deleveraging: ``counterparty``'s opposite position reduced by ``size`` at the
    liquidated position's bankruptcy price."""

    type: ClassVar[str] = "adl"
    id: str
    event: str
    account: str
    counterparty: str
    market: str
    size: str
    price: str


@dataclass(frozen=True, slots=True)
class FundUnwound:
    """The insurance fund closed ``size`` (signed: + bought back, - sold) of a position it
    took over, through the book at ``price``; ``proceeds`` it received (signed), ``pnl``
    realized against its cost, ``left`` of the position still held (settle asset)."""

    type: ClassVar[str] = "fund_unwind"
    id: str
    event: str
    market: str
    size: str
    price: str
    proceeds: str
    pnl: str
    left: str


@dataclass(frozen=True, slots=True)
class CollateralExchanged:
    """A liquidated account's collateral ``asset`` exchanged into the ``to_asset`` it
    owed: ``amount`` sold at ``price`` (USD, the venue's valuation rule) after the
    haircut, ``credited`` to the account (Binance's auto-exchange)."""

    type: ClassVar[str] = "collateral_exchanged"
    id: str
    event: str
    account: str
    asset: str
    amount: str
    price: str
    to_asset: str
    credited: str


@dataclass(frozen=True, slots=True)
class SocializedLossEvent:
    """A shortfall charged to other participants by ``rule``."""

    type: ClassVar[str] = "socialized_loss"
    id: str
    event: str
    account: str
    market: str
    rule: str
    loss: str
    covered: str
    bad_debt: str


@dataclass(frozen=True, slots=True)
class BadDebt:
    """A flat account's negative balance: paid by the fund up to its balance, the rest
    recorded as the venue's bad debt (``sys:bad_debt``)."""

    type: ClassVar[str] = "bad_debt"
    id: str
    event: str
    account: str
    asset: str
    insurance_paid: str
    bad_debt: str


@dataclass(frozen=True, slots=True)
class WithdrawalState:
    """Withdrawals of a collateral pool blocked or reopened (dYdX's negative-equity gate)."""

    type: ClassVar[str] = "system_state"
    id: str
    event: str
    asset: str
    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class ParamsChanged:
    """A parameter the engine changed by policy (e.g. the insurance fund's fee share when
    its coverage of open interest crossed a threshold)."""

    type: ClassVar[str] = "params_changed"
    id: str
    event: str
    param: str
    old: str
    new: str
    reason: str


OutEvent = (Rejected | MarginCall | MarginRestored | Settled | Liquidated | Deleveraged
            | FundUnwound | SocializedLossEvent | BadDebt | CollateralExchanged
            | WithdrawalState | ParamsChanged)

_INPUT_TYPES: dict[str, type[Any]] = {
    cls.type: cls
    for cls in (Deposit, Withdraw, Price, Fill, Funding, Expiry, Params, AccountMode,
                IsolatedMargin, Vol)
}
# the keys each type accepts, computed once (dataclasses.fields per event cost ~10 us)
_ALLOWED_KEYS: dict[str, frozenset[str]] = {
    name: frozenset({f.name for f in fields(cls) if f.name != "ts_ms"} | {"type", "ts"})
    for name, cls in _INPUT_TYPES.items()
}
_WHITESPACE: Final = re.compile(r"\s")

# ---------------------------------------------------------------- JSON codec


def parse_ts_ms(value: object) -> int:
    """Parse an ISO-8601 UTC timestamp (``...Z`` or ``+00:00``) or epoch milliseconds."""
    if isinstance(value, bool):
        raise EventError("invalid_timestamp", "ts: boolean")
    if isinstance(value, int):
        if not 0 <= value < 10**14:
            raise EventError("invalid_timestamp", f"ts: {value} out of range")
        return value
    if isinstance(value, Decimal):
        # bounded before any int(): 1e5000 would build a 5,000-digit integer
        if not value.is_finite() or abs(value.adjusted()) > 14 or (
                value != value.to_integral_value()):
            raise EventError("invalid_timestamp", "ts: not an integer number of ms in range")
        return parse_ts_ms(int(value))
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 40:
            raise EventError("invalid_timestamp", f"ts: {len(text):,} characters")
        if text.isdigit():
            return parse_ts_ms(int(text))
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise EventError("invalid_timestamp", f"ts: {value!r} is not ISO-8601") from None
        if dt.tzinfo is None or dt.utcoffset() != UTC.utcoffset(None):
            raise EventError("invalid_timestamp", f"ts: {value!r} must be UTC")
        delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    raise EventError("invalid_timestamp", f"ts: {value!r}")


def _name(obj: Mapping[str, object], key: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value.__class__ is str:  # the common case, checked as below in fewer steps
        if value and len(value) <= _MAX_ID_LEN and _WHITESPACE.search(value) is None:
            return value
        raise EventError("invalid_field", f"{key}: {value!r} is empty, too long or has spaces")
    if value is None:
        if required:
            raise EventError("missing_field", f"{key}")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise EventError("invalid_field", f"{key}: expected a string")
    text = value if isinstance(value, str) else str(value)
    # re's \s is str.isspace (both Py_UNICODE_ISSPACE), ~10x faster than a generator
    if not text or len(text) > _MAX_ID_LEN or _WHITESPACE.search(text) is not None:
        raise EventError("invalid_field", f"{key}: {text!r} is empty, too long or has spaces")
    return text


def _decimal(obj: Mapping[str, object], key: str, *, positive: bool, required: bool = True,
             default: Decimal | None = None) -> Decimal:
    raw = obj.get(key)
    if raw is None:
        if required or default is None:
            raise EventError("missing_field", key)
        return default
    if isinstance(raw, str) and len(raw) > NUMBER_MAX_CHARS:
        raise EventError("invalid_number", f"{key}: a number of {len(raw):,} characters")
    d = _finite_decimal(raw)
    if d is None:  # parse_decimal decides, and words the error
        try:
            d = parse_decimal(raw, field=key)
        except UnitError as exc:
            raise EventError("invalid_number", str(exc)) from None
    if d and abs(d.adjusted()) > EXPONENT_MAX:
        # 1e120000 is short but would cost seconds as an integer of quanta or ticks
        raise EventError("invalid_number", f"{key}: magnitude 1e{d.adjusted()} out of range")
    if positive and d <= 0:
        raise EventError("non_positive", f"{key}: {d} must be > 0")
    return d


def _finite_decimal(raw: object) -> Decimal | None:
    """``parse_decimal``'s answer for a decimal string or a Decimal when it is a finite
    number, else None (then ``parse_decimal`` runs and says what is wrong)."""
    if raw.__class__ is str:
        try:
            d = Decimal(raw.strip())
        except InvalidOperation:
            return None
    elif raw.__class__ is Decimal:
        d = raw
    else:
        return None
    return d if d.is_finite() else None


def parse_event(obj: Mapping[str, object]) -> InputEvent:
    """Build an input event from its JSON object, refusing anything malformed."""
    if not isinstance(obj, Mapping):
        raise EventError("malformed", "an event must be a JSON object")
    etype = obj.get("type")
    if not isinstance(etype, str) or etype not in _INPUT_TYPES:
        raise EventError("unknown_type", f"type {etype!r}")
    eid = _name(obj, "id")
    assert eid is not None
    ts = parse_ts_ms(obj["ts"]) if obj.get("ts") is not None else None
    allowed = _ALLOWED_KEYS[etype]
    if etype == "params":
        changes = {k: v for k, v in obj.items() if k not in {"type", "id", "ts", "market"}}
        if not changes:
            raise EventError("missing_field", "params: no parameter to change")
        market = _name(obj, "market")
        assert market is not None
        return Params(id=eid, market=market, changes=MappingProxyType(changes), ts_ms=ts)
    extra = obj.keys() - allowed
    if extra:
        raise EventError("unknown_field", f"{etype}: {sorted(extra)}")
    if etype in ("deposit", "withdraw"):
        kind = Deposit if etype == "deposit" else Withdraw
        return kind(id=eid, account=_req(obj, "account"), asset=_req(obj, "asset"),
                    amount=_decimal(obj, "amount", positive=True), ts_ms=ts)
    if etype == "price":
        market = _name(obj, "market", required=False)
        asset = _name(obj, "asset", required=False)
        if (market is None) == (asset is None):
            raise EventError("missing_field", "price: give exactly one of market or asset")
        return Price(id=eid, price=_decimal(obj, "price", positive=True), market=market,
                     asset=asset, ts_ms=ts)
    if etype == "fill":
        return Fill(
            id=eid, market=_req(obj, "market"), buyer=_req(obj, "buyer"),
            seller=_req(obj, "seller"), size=_decimal(obj, "size", positive=True),
            price=_decimal(obj, "price", positive=True),
            fee_buyer=_decimal(obj, "fee_buyer", positive=False, required=False,
                               default=Decimal(0)),
            fee_seller=_decimal(obj, "fee_seller", positive=False, required=False,
                                default=Decimal(0)),
            ts_ms=ts,
            buyer_order=_name(obj, "buyer_order", required=False),
            seller_order=_name(obj, "seller_order", required=False),
        )
    if etype == "funding":
        rate = _decimal(obj, "rate", positive=False)
        if abs(rate) >= 1:
            raise EventError("invalid_number", f"rate: |{rate}| must be below 1")
        return Funding(id=eid, market=_req(obj, "market"), rate=rate, ts_ms=ts)
    if etype == "expiry":
        return Expiry(id=eid, market=_req(obj, "market"),
                      price=_decimal(obj, "price", positive=True), ts_ms=ts)
    if etype == "vol":
        iv = _decimal(obj, "iv", positive=True)
        if iv > 10 or iv < Decimal("0.0001"):
            raise EventError("invalid_number", f"iv: {iv} outside 0.0001 .. 10 (0.01 % .. "
                             "1000 %)")
        return Vol(id=eid, market=_req(obj, "market"), iv=iv, ts_ms=ts)
    if etype == "account":
        mode = obj.get("mode")
        if mode not in ("cross", "isolated", "portfolio"):
            raise EventError("invalid_field",
                             f"mode: {mode!r} is not cross, isolated or portfolio")
        return AccountMode(id=eid, account=_req(obj, "account"), mode=mode, ts_ms=ts)
    amount = _decimal(obj, "amount", positive=False)
    if amount == 0:
        raise EventError("non_positive", "amount: must not be zero")
    return IsolatedMargin(id=eid, account=_req(obj, "account"), market=_req(obj, "market"),
                          amount=amount, ts_ms=ts)


def _req(obj: Mapping[str, object], key: str) -> str:
    value = _name(obj, key)
    assert value is not None
    if key in _ACCOUNT_KEYS and "/" in value:
        # "a/BTC-PERP" names a's isolated row in the book: an account may not take it
        raise EventError("invalid_field", f"{key}: {value!r} contains '/'")
    return value


_ACCOUNT_KEYS: Final = frozenset({"account", "buyer", "seller"})


def json_object(line: str) -> dict[str, object]:
    """One JSON Lines record as an object, numbers read as exact decimals; NaN and
    infinities refused (:class:`EventError` ``malformed`` / ``invalid_number``)."""
    try:
        obj = _DECODER.decode(line)
    except json.JSONDecodeError as exc:
        raise EventError("malformed", f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise EventError("malformed", "JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise EventError("malformed", "an event must be a JSON object")
    return obj


def parse_event_line(line: str) -> InputEvent:
    """Parse one JSON Lines record (numbers are read as exact decimals)."""
    return parse_event(json_object(line))


def _parse_int(text: str) -> int:
    if len(text) > NUMBER_MAX_CHARS:
        raise EventError("invalid_number", f"a number of {len(text):,} digits")
    return int(text)


def _parse_decimal(text: str) -> Decimal:
    if len(text) > NUMBER_MAX_CHARS:
        raise EventError("invalid_number", f"a number of {len(text):,} characters")
    return Decimal(text)


def _refuse_constant(name: str) -> object:
    raise EventError("invalid_number", f"{name} is not a number")


# one decoder for every line (json.loads with hooks builds a new one per call)
_DECODER: Final = json.JSONDecoder(parse_float=_parse_decimal, parse_int=_parse_int,
                                   parse_constant=_refuse_constant)


def _jsonable(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def event_to_json(event: InputEvent | OutEvent) -> dict[str, object]:
    """Return the JSON object form of an event (decimals as strings)."""
    out: dict[str, object] = {"type": event.type}
    for f in fields(event):
        value = getattr(event, f.name)
        if f.name == "changes":
            out.update(_jsonable(value))  # type: ignore[call-overload]
            continue
        if f.name == "ts_ms":
            if value is not None:
                out["ts"] = value
            continue
        if value is None:
            continue
        out[f.name] = _jsonable(value)
    return out
