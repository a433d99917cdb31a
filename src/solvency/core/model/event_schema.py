"""Event lines as pydantic models: the schema published as ``docs/schema/event-v1.json``.

The engine reads event lines with hand-written parsers
(:func:`~solvency.core.model.events.parse_event`; ``oracle`` and ``order`` lines:
``core.oracle.report.parse_oracle_report``, ``engine.pretrade.parse_order``): measured
faster than ``json.loads(line, parse_float=Decimal)`` followed by these models'
``validate_python`` (``bench/bench_inputs.py``, ``docs/benchmarks.md``), and their named
rejection reasons are what the engine answers and its fuzz suite checks. These models state the same
format for editors and other tools, one model per input event type (``extra="forbid"``;
a ``params`` event carries the parameters it changes as extra keys), and
:func:`to_event` builds the engine's frozen event from a validated model. Tests hold the
two to each other: the lines either accepts, the other accepts with the same event; an
example of each rejection reason is refused by both.

Numbers are exact decimals given as decimal strings or JSON numbers (read with
``parse_float=Decimal``), within ``1e-40 .. 1e40`` and at most 100 characters as text;
names are 1-128 characters without whitespace (account names without ``/``), or integers;
``ts`` is epoch milliseconds or ISO-8601 UTC. (Oracle reports and orders bound neither
magnitude nor length, and an order's names are strings, as their parsers.)

Pure: no IO.
"""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

from solvency.core.model import events as ev
from solvency.core.oracle.report import OracleReport
from solvency.core.schema import Num

__all__ = ["EVENT_LINE", "EventLine", "to_event"]


def _bounded(d: Decimal) -> Decimal:
    if d and abs(d.adjusted()) > ev.EXPONENT_MAX:
        raise ValueError(f"magnitude 1e{d.adjusted()} out of range")
    return d


def _short(value: object) -> object:
    if isinstance(value, str) and len(value) > ev.NUMBER_MAX_CHARS:
        raise ValueError(f"a number of {len(value):,} characters")
    return value


# Num replaces the schema before it: the length check is listed after it (it runs first)
Positive = Annotated[Decimal, Num(gt=0, text_ok=True), BeforeValidator(_short),
                     AfterValidator(_bounded)]
Signed = Annotated[Decimal, Num(text_ok=True), BeforeValidator(_short),
                   AfterValidator(_bounded)]
Rate = Annotated[Decimal, Num(gt=-1, lt=1, text_ok=True), BeforeValidator(_short),
                 AfterValidator(_bounded)]
Iv = Annotated[Decimal, Num(ge="0.0001", le=10, text_ok=True), BeforeValidator(_short),
               AfterValidator(_bounded)]


_NAME_TEXT = r"^\S{1,128}$"
_ACCOUNT_TEXT = r"^[^\s/]{1,128}$"
Name = Annotated[str, Strict(), StringConstraints(pattern=_NAME_TEXT)] | Annotated[
    int, Strict()]
Account = Annotated[str, Strict(), StringConstraints(pattern=_ACCOUNT_TEXT)] | Annotated[
    int, Strict()]


def _ts(value: object) -> int:
    try:
        return ev.parse_ts_ms(value)
    except ev.EventError as exc:
        raise ValueError(exc.detail) from None


Ts = Annotated[Any, AfterValidator(_ts), WithJsonSchema({
    "anyOf": [{"type": "integer", "minimum": 0, "exclusiveMaximum": 10**14},
              {"type": "string", "pattern": r"^\s*(\d+|\d{4}-\d\d-\d\d[T ].*(Z|[+-]00:?00))\s*$"}],
    "description": "Epoch milliseconds or ISO-8601 UTC (...Z)."})]
_FORBID: Final = ConfigDict(extra="forbid", frozen=True)
# stated: pydantic before 2.7 leaves "type": "string" out of a one-value Literal's schema
_STRING: Final[dict[str, Any]] = {"type": "string"}


class _Event(BaseModel):
    model_config = _FORBID
    id: Name = Field(description="Unique event id (a duplicate is ignored).")
    ts: Ts | None = None


class DepositLine(_Event):
    """``deposit``: collateral enters an account."""

    type: Literal["deposit"] = Field(json_schema_extra=_STRING)
    account: Account
    asset: Name
    amount: Positive


class WithdrawLine(_Event):
    """``withdraw``: collateral leaves an account (refused below initial margin)."""

    type: Literal["withdraw"] = Field(json_schema_extra=_STRING)
    account: Account
    asset: Name
    amount: Positive


class PriceLine(_Event):
    """``price``: a mark price of a market, or a USD price of an asset (one of them)."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={
        "oneOf": [{"required": ["market"]}, {"required": ["asset"]}]})
    type: Literal["price"] = Field(json_schema_extra=_STRING)
    price: Positive
    market: Name | None = None
    asset: Name | None = None

    @model_validator(mode="after")
    def _one(self) -> PriceLine:
        if (self.market is None) == (self.asset is None):
            raise ValueError("give exactly one of market or asset")
        return self


class FillLine(_Event):
    """``fill``: a trade between two accounts; fees signed (negative: a rebate)."""

    type: Literal["fill"] = Field(json_schema_extra=_STRING)
    market: Name
    buyer: Account
    seller: Account
    size: Positive
    price: Positive
    fee_buyer: Signed = Decimal(0)
    fee_seller: Signed = Decimal(0)
    buyer_order: Name | None = Field(None, description="The buyer's resting order it fills.")
    seller_order: Name | None = Field(None, description="The seller's resting order it "
                                                        "fills.")


class FundingLine(_Event):
    """``funding``: longs pay shorts ``size x mark x rate`` when rate > 0."""

    type: Literal["funding"] = Field(json_schema_extra=_STRING)
    market: Name
    rate: Rate


class ExpiryLine(_Event):
    """``expiry``: cash settlement of a dated future at its final price."""

    type: Literal["expiry"] = Field(json_schema_extra=_STRING)
    market: Name
    price: Positive


class AccountLine(_Event):
    """``account``: an account's margin mode."""

    type: Literal["account"] = Field(json_schema_extra=_STRING)
    account: Account
    mode: Literal["cross", "isolated", "portfolio"]


class IsolatedMarginLine(_Event):
    """``isolated_margin``: collateral into (+) or out of (-) an isolated position."""

    type: Literal["isolated_margin"] = Field(json_schema_extra=_STRING)
    account: Account
    market: Name
    amount: Signed

    @model_validator(mode="after")
    def _non_zero(self) -> IsolatedMarginLine:
        if self.amount == 0:
            raise ValueError("amount: must not be zero")
        return self


class VolLine(_Event):
    """``vol``: a mark implied volatility of an option market (annualized)."""

    type: Literal["vol"] = Field(json_schema_extra=_STRING)
    market: Name
    iv: Iv


class ParamsLine(BaseModel):
    """``params``: a governance change of a market's risk parameters (extra keys: the
    parameters, as in a venue file's market entry)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: Literal["params"] = Field(json_schema_extra=_STRING)
    id: Name
    market: Name
    ts: Ts | None = None

    @model_validator(mode="after")
    def _changes(self) -> ParamsLine:
        if not self.model_extra:
            raise ValueError("params: no parameter to change")
        return self


# oracle reports and orders take any finite decimal (no magnitude or length bound)
AnyPositive = Annotated[Decimal, Num(gt=0, text_ok=True)]
Text = Annotated[str, Strict(), StringConstraints(pattern=_NAME_TEXT)]


class OracleLine(BaseModel):
    """``oracle``: a price source's report of a market's (or an asset's) price."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={
        "oneOf": [{"required": ["market"]}, {"required": ["asset"]}]})
    type: Literal["oracle"] = Field(json_schema_extra=_STRING)
    id: Name
    source: Name
    price: AnyPositive
    ts: Ts
    market: Name | None = None
    asset: Name | None = None

    @model_validator(mode="after")
    def _one(self) -> OracleLine:
        if (self.market is None) == (self.asset is None):
            raise ValueError("give exactly one of market or asset")
        return self


class OrderLine(BaseModel):
    """``order``: a pre-trade check (answered accepted or rejected; moves nothing), or with
    ``rest`` a resting order placed when accepted."""

    model_config = _FORBID
    type: Literal["order"] = Field(json_schema_extra=_STRING)
    id: Text
    account: Text
    market: Text
    side: Literal["buy", "sell"]
    size: AnyPositive
    price: AnyPositive | None = Field(None, description="Limit price; none: a market order.")
    reduce_only: Annotated[bool, Strict()] = False
    rest: Annotated[bool, Strict()] = Field(
        False, description="Accepted, the order rests (until filled or cancelled) and "
                           "counts in later orders' margin checks (needs a price).")
    ts: Ts | None = None

    @model_validator(mode="after")
    def _rest_has_price(self) -> OrderLine:
        if self.rest and self.price is None:
            raise ValueError("price: a resting order needs a limit price")
        return self


class OrderCancelLine(BaseModel):
    """``order_cancel``: cancel the account's resting order ``order``."""

    model_config = _FORBID
    type: Literal["order_cancel"] = Field(json_schema_extra=_STRING)
    id: Text
    account: Text
    order: Text = Field(description="The id of the resting order (its order event's id).")
    ts: Ts | None = None


EventLine = Annotated[DepositLine | WithdrawLine | PriceLine | FillLine | FundingLine
                      | ExpiryLine | AccountLine | IsolatedMarginLine | VolLine | ParamsLine
                      | OracleLine | OrderLine | OrderCancelLine, Field(discriminator="type")]
EVENT_LINE: Final[TypeAdapter[Any]] = TypeAdapter(EventLine)
"""Validates one parsed event line (``EVENT_LINE.validate_python(obj)``)."""


def _s(value: str | int | None) -> str | None:
    return None if value is None else str(value)


def to_event(m: BaseModel) -> ev.InputEvent | OracleReport:
    """Return the engine's frozen event for a validated event-line model.

    An ``order`` line's model is the engine's pre-trade concern (``engine.pretrade.Order``,
    outside the core): its fields are read from the model directly.
    """
    ts = getattr(m, "ts", None)
    if isinstance(m, DepositLine | WithdrawLine):
        kind = ev.Deposit if isinstance(m, DepositLine) else ev.Withdraw
        return kind(id=str(m.id), account=str(m.account), asset=str(m.asset),
                    amount=m.amount, ts_ms=ts)
    if isinstance(m, PriceLine):
        return ev.Price(id=str(m.id), price=m.price, market=_s(m.market), asset=_s(m.asset),
                        ts_ms=ts)
    if isinstance(m, FillLine):
        return ev.Fill(id=str(m.id), market=str(m.market), buyer=str(m.buyer),
                       seller=str(m.seller), size=m.size, price=m.price,
                       fee_buyer=m.fee_buyer, fee_seller=m.fee_seller, ts_ms=ts,
                       buyer_order=_s(m.buyer_order), seller_order=_s(m.seller_order))
    if isinstance(m, FundingLine):
        return ev.Funding(id=str(m.id), market=str(m.market), rate=m.rate, ts_ms=ts)
    if isinstance(m, ExpiryLine):
        return ev.Expiry(id=str(m.id), market=str(m.market), price=m.price, ts_ms=ts)
    if isinstance(m, AccountLine):
        return ev.AccountMode(id=str(m.id), account=str(m.account), mode=m.mode, ts_ms=ts)
    if isinstance(m, IsolatedMarginLine):
        return ev.IsolatedMargin(id=str(m.id), account=str(m.account), market=str(m.market),
                                 amount=m.amount, ts_ms=ts)
    if isinstance(m, VolLine):
        return ev.Vol(id=str(m.id), market=str(m.market), iv=m.iv, ts_ms=ts)
    if isinstance(m, ParamsLine):
        return ev.Params(id=str(m.id), market=str(m.market),
                         changes=MappingProxyType(dict(m.model_extra or {})), ts_ms=ts)
    if isinstance(m, OracleLine):
        return OracleReport(id=str(m.id), source=str(m.source), price=m.price, ts_ms=m.ts,
                            market=_s(m.market), asset=_s(m.asset))
    raise TypeError(f"not an event-line model with a core event: {type(m).__name__}")
