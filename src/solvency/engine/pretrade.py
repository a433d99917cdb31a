"""Pre-trade checks: an order is accepted or rejected with a named reason code.

:func:`check_order` reads everything it needs from a :class:`PretradeView` the engine
supplies (marks, positions, open interest, limits, the breaker's trading mode, a
post-trade margin callback, the rate-limit clock) and changes nothing: an accepted order
moves no balance until it is filled (a ``fill`` event). Checks run cheapest first and the
first failure is the answer:

=============================  ==========================================================
reason                         when
=============================  ==========================================================
``invalid_order``              size or limit price not finite and > 0
``unknown_market``             the view has no limits for the market
``size_off_lot``               size not a whole number of the market's lots: a fill of
                               it would be rejected (``invalid_size``)
``price_off_tick``             limit price not on the market's tick grid: a fill at it
                               would be rejected with the same reason
``market_halted``              the market's breaker is ``halted``
``rate_limited``               the account sent too many orders in the window
``no_mark``                    the market has no valid mark price
``price_outside_band``         ``|price / mark - 1| > price_band``
``order_size_too_large``       ``size > size_max``
``order_notional_too_large``   ``size x price x contract_size > notional_max_quote``
``size_too_large``             the position after, or the trade's value, is beyond what
                               the ledger holds (``MAX_QUANTA`` quanta): a fill of it
                               would be rejected with the same reason
``reduce_only_would_increase`` a reduce-only order would grow or flip the position
``market_reduce_only``         the market is reduce-only and the order does not reduce
``position_limit``             ``|position after| > position_max``
``open_interest_cap``          open interest after would exceed ``oi_max`` (Hyperliquid
                               added per-market OI caps after the JELLY squeeze, 2025-03)
``leverage_exceeds_tier``      the account's leverage is above the maximum of the
                               notional tier of the position after (Binance brackets)
``insufficient_initial_margin`` free collateral after the order, at its price, < 0 (with
                               the account's resting orders where the venue's rule
                               counts them: :meth:`PretradeView.resting`)
=============================  ==========================================================

Checks from ``position_limit`` on run only when the order grows the position's risk
(larger or flipped); reducing orders pass them, as at every venue, except the margin
check of an order that grows the position together with the resting orders on its side
(Drift's rule).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from typing import ClassVar, Literal, Protocol

from solvency.core.model.events import EventError, parse_ts_ms
from solvency.core.units import UnitError, parse_decimal

__all__ = [
    "REASONS",
    "Accept",
    "LeverageTier",
    "MarketLimits",
    "Order",
    "OrderCancel",
    "PretradeView",
    "RateLimiter",
    "Reject",
    "Side",
    "check_order",
    "parse_order",
    "parse_order_cancel",
]

Side = Literal["buy", "sell"]

REASONS: tuple[str, ...] = (
    "invalid_order", "unknown_market", "size_off_lot", "price_off_tick", "market_halted",
    "rate_limited", "no_mark",
    "price_outside_band", "order_size_too_large", "order_notional_too_large",
    "size_too_large", "reduce_only_would_increase", "market_reduce_only", "position_limit",
    "open_interest_cap", "leverage_exceeds_tier", "insufficient_initial_margin",
)
"""Every reason code :func:`check_order` can answer, in check order."""


@dataclass(frozen=True, slots=True)
class Order:
    """An order to check: ``size`` in contracts, ``price`` None for a market order.

    ``rest``: accepted, the order rests under its ``id`` until filled or cancelled
    (``engine/open_orders.py``); refused, it changes nothing."""

    type: ClassVar[str] = "order"
    id: str
    account: str
    market: str
    side: Side
    size: Decimal
    price: Decimal | None = None
    reduce_only: bool = False
    ts_ms: int | None = None
    rest: bool = False


@dataclass(frozen=True, slots=True)
class OrderCancel:
    """Cancel ``account``'s resting order ``order`` (the id of the order event)."""

    type: ClassVar[str] = "order_cancel"
    id: str
    account: str
    order: str
    ts_ms: int | None = None


def parse_order_cancel(obj: Mapping[str, object]) -> OrderCancel:
    """Build an :class:`OrderCancel` from its JSON object, strictly."""
    if obj.get("type") != "order_cancel":
        raise EventError("unknown_type", f"type {obj.get('type')!r}")
    extra = set(obj) - {"type", "id", "account", "order", "ts"}
    if extra:
        raise EventError("unknown_field", f"order_cancel: {sorted(extra)}")
    names = _names(obj, ("id", "account", "order"))
    ts = parse_ts_ms(obj["ts"]) if obj.get("ts") is not None else None
    return OrderCancel(id=names["id"], account=names["account"], order=names["order"],
                       ts_ms=ts)


def _names(obj: Mapping[str, object], keys: tuple[str, ...]) -> dict[str, str]:
    names = {}
    for key in keys:
        v = obj.get(key)
        if not isinstance(v, str) or not v or len(v) > 128 or any(c.isspace() for c in v):
            raise EventError("invalid_field" if v is not None else "missing_field", key)
        names[key] = v
    return names


def parse_order(obj: Mapping[str, object]) -> Order:
    """Build an :class:`Order` from its JSON object (``{"type": "order", ...}``), strictly."""
    allowed = {"type", "id", "account", "market", "side", "size", "price", "reduce_only", "ts",
               "rest"}
    if obj.get("type") != "order":
        raise EventError("unknown_type", f"type {obj.get('type')!r}")
    extra = set(obj) - allowed
    if extra:
        raise EventError("unknown_field", f"order: {sorted(extra)}")
    names = _names(obj, ("id", "account", "market"))
    side = obj.get("side")
    if side not in ("buy", "sell"):
        raise EventError("invalid_field", f"side: {side!r} is not buy or sell")
    size = _positive(obj, "size")
    price = _positive(obj, "price") if obj.get("price") is not None else None
    ro = obj.get("reduce_only", False)
    if not isinstance(ro, bool):
        raise EventError("invalid_field", "reduce_only: expected a boolean")
    rest = obj.get("rest", False)
    if not isinstance(rest, bool):
        raise EventError("invalid_field", "rest: expected a boolean")
    if rest and price is None:
        raise EventError("missing_field", "price: a resting order needs a limit price")
    ts = parse_ts_ms(obj["ts"]) if obj.get("ts") is not None else None
    return Order(id=names["id"], account=names["account"], market=names["market"],
                 side=side, size=size, price=price, reduce_only=ro, ts_ms=ts, rest=rest)


def _positive(obj: Mapping[str, object], key: str) -> Decimal:
    if obj.get(key) is None:
        raise EventError("missing_field", key)
    try:
        d = parse_decimal(obj[key], field=key)
    except UnitError as exc:
        raise EventError("invalid_number", str(exc)) from None
    if d <= 0:
        raise EventError("non_positive", f"{key}: {d} must be > 0")
    return d


@dataclass(frozen=True, slots=True)
class LeverageTier:
    """A notional bracket: positions up to ``notional_max_quote`` allow ``max_leverage``."""

    notional_max_quote: float
    max_leverage: float


@dataclass(frozen=True, slots=True)
class MarketLimits:
    """A market's pre-trade limits (``inf`` = no limit); sizes in contracts."""

    price_band: float = 0.05
    size_max: float = math.inf
    notional_max_quote: float = math.inf
    position_max: float = math.inf
    oi_max: float = math.inf
    leverage_tiers: tuple[LeverageTier, ...] = ()
    contract_size: float = 1.0
    inverse: bool = False
    lot_size: Decimal | None = None
    tick_size: Decimal | None = None

    def notional_quote(self, size: float, price: float) -> float:
        """Quote notional of ``size`` contracts (inverse: contracts are quote-valued)."""
        if self.inverse:
            return abs(size) * self.contract_size
        return abs(size) * price * self.contract_size


@dataclass(frozen=True, slots=True)
class Accept:
    """The order passed every check; ``reduces`` tells whether it only reduces risk."""

    order_id: str
    reduces: bool


@dataclass(frozen=True, slots=True)
class Reject:
    """The order failed a check: ``reason`` is one of :data:`REASONS`."""

    order_id: str
    reason: str
    detail: str


class PretradeView(Protocol):
    """What :func:`check_order` reads; the engine implements it over its own state."""

    def limits(self, market: str) -> MarketLimits | None:
        """Limits of the market, None if unknown."""
        ...

    def mode(self, market: str) -> str:
        """Breaker trading mode: ``normal``, ``reduce_only`` or ``halted``."""
        ...

    def mark(self, market: str) -> float | None:
        """Current mark price, None if none."""
        ...

    def position(self, account: str, market: str) -> float:
        """Signed position in contracts (0 if none)."""
        ...

    def open_interest(self, market: str) -> float:
        """Open interest in contracts (one side)."""
        ...

    def leverage(self, account: str, market: str) -> float:
        """The account's chosen leverage in the market."""
        ...

    def free_collateral_after(self, account: str, market: str, delta: float,
                              price: float) -> float:
        """Free collateral (collateral - initial margin) if ``delta`` contracts traded at
        ``price``; the engine computes it with its what-if margin kernel."""
        ...

    def rate_limited(self, account: str, now_ms: int) -> bool:
        """Whether one more order now would exceed the account's rate limit."""
        ...

    def resting(self, account: str, market: str) -> tuple[float, float]:
        """Contracts of the account's resting bids and asks in the market that the venue's
        margin rule counts (``(0, 0)`` where it counts none)."""
        ...

    def exceeds_ledger(self, account: str, market: str, delta: float,
                       price: float) -> bool:
        """Whether the position after ``delta`` contracts, or the trade's value, is beyond
        what the ledger can hold (a fill of it would be rejected ``size_too_large``)."""
        ...


class RateLimiter:
    """Per-account sliding-window order count on the event clock.

    Parameters
    ----------
    max_orders
        Orders allowed per window (0: unlimited).
    window_ms
        Window length.
    """

    def __init__(self, max_orders: int, window_ms: int) -> None:
        if max_orders < 0 or window_ms <= 0:
            raise ValueError("max_orders must be >= 0 and window_ms > 0")
        self.max_orders = max_orders
        self.window_ms = window_ms
        self._seen: dict[str, deque[int]] = {}

    def _trim(self, account: str, now_ms: int) -> deque[int]:
        q = self._seen.get(account)
        if q is None:  # (setdefault would build a deque on every call)
            q = self._seen[account] = deque()
        start = now_ms - self.window_ms
        while q and q[0] <= start:
            q.popleft()
        return q

    def would_exceed(self, account: str, now_ms: int) -> bool:
        """Whether one more order at ``now_ms`` would exceed the limit."""
        if self.max_orders == 0:
            return False
        return len(self._trim(account, now_ms)) >= self.max_orders

    def record(self, account: str, now_ms: int) -> None:
        """Count one order (the engine records every order it checks)."""
        if self.max_orders:
            self._trim(account, now_ms).append(now_ms)


_GRID = Context(prec=60)


def _off_grid(value: Decimal, step: Decimal) -> bool:
    """Whether ``value`` is not a whole multiple of ``step`` (exact; a value too large
    for the test is left to the size and ledger limits)."""
    if not isinstance(value, Decimal):
        return False
    try:
        return _GRID.remainder(value, step) != 0
    except InvalidOperation:
        return False


def check_order(order: Order, view: PretradeView, now_ms: int | None = None) -> Accept | Reject:
    """Check an order against the venue's state; return :class:`Accept` or :class:`Reject`.

    Pure with respect to ``view``: nothing is reserved or moved. ``now_ms`` defaults to
    the order's timestamp (0 if it has none).
    """
    oid = order.id
    if (isinstance(order.size, Decimal) and order.size.is_snan()) or (
            isinstance(order.price, Decimal) and order.price.is_snan()):
        # float() of a signaling NaN raises; any other non-finite number is refused below
        return Reject(oid, "invalid_order", f"size {order.size} / price {order.price}")
    size = float(order.size)
    price_in = float(order.price) if order.price is not None else None
    if not (math.isfinite(size) and size > 0.0) or (
            price_in is not None and not (math.isfinite(price_in) and price_in > 0.0)):
        return Reject(oid, "invalid_order", f"size {order.size} / price {order.price}")
    lim = view.limits(order.market)
    if lim is None:
        return Reject(oid, "unknown_market", f"market {order.market!r}")
    if lim.lot_size is not None and _off_grid(order.size, lim.lot_size):
        return Reject(oid, "size_off_lot",
                      f"size {order.size} is not a multiple of the lot size {lim.lot_size}")
    if (lim.tick_size is not None and order.price is not None
            and _off_grid(order.price, lim.tick_size)):
        return Reject(oid, "price_off_tick",
                      f"price {order.price} is not a multiple of the tick size "
                      f"{lim.tick_size}")
    mode = view.mode(order.market)
    if mode == "halted":
        return Reject(oid, "market_halted", f"market {order.market} is halted")
    now = now_ms if now_ms is not None else (order.ts_ms or 0)
    if view.rate_limited(order.account, now):
        return Reject(oid, "rate_limited", f"{order.account} exceeded its order rate")
    mark = view.mark(order.market)
    if mark is None or not (math.isfinite(mark) and mark > 0.0):
        return Reject(oid, "no_mark", f"market {order.market} has no mark price")
    price = price_in if price_in is not None else mark
    if abs(price / mark - 1.0) > lim.price_band:
        return Reject(oid, "price_outside_band",
                      f"price {order.price} is {abs(price / mark - 1.0):.4%} from mark "
                      f"{mark:.10g}, band {lim.price_band:.4%}")
    if size > lim.size_max:
        return Reject(oid, "order_size_too_large", f"size {order.size} > {lim.size_max:g}")
    notional = lim.notional_quote(size, price)
    if notional > lim.notional_max_quote:
        return Reject(oid, "order_notional_too_large",
                      f"notional {notional:.2f} > {lim.notional_max_quote:g}")
    delta = size if order.side == "buy" else -size
    if view.exceeds_ledger(order.account, order.market, delta, price):
        return Reject(oid, "size_too_large",
                      f"size {order.size} at {price:.10g}: the position would exceed what "
                      "the ledger holds")
    return _position_checks(order, view, lim, mode, size, price)


def _position_checks(order: Order, view: PretradeView, lim: MarketLimits, mode: str,
                     size: float, price: float) -> Accept | Reject:
    oid = order.id
    delta = size if order.side == "buy" else -size
    pos = view.position(order.account, order.market)
    new = pos + delta
    flips = pos != 0.0 and new != 0.0 and (pos > 0.0) != (new > 0.0)
    reduces = not flips and abs(new) < abs(pos)
    if order.reduce_only and not reduces:
        return Reject(oid, "reduce_only_would_increase",
                      f"position {pos:g} -> {new:g} does not reduce")
    if mode == "reduce_only" and not reduces:
        return Reject(oid, "market_reduce_only",
                      f"market {order.market} is reduce-only; position {pos:g} -> {new:g}")
    if reduces:
        if not order.reduce_only and _grows_with_resting(order, view, pos, size):
            free = view.free_collateral_after(order.account, order.market, delta, price)
            if not free >= 0.0:
                return Reject(oid, "insufficient_initial_margin",
                              f"free collateral with the open orders {free:.2f} < 0")
        return Accept(oid, True)
    if abs(new) > lim.position_max:
        return Reject(oid, "position_limit", f"|position| {abs(new):g} > {lim.position_max:g}")
    grow = abs(new) if flips else abs(new) - abs(pos)
    oi_after = view.open_interest(order.market) + grow
    if oi_after > lim.oi_max:
        return Reject(oid, "open_interest_cap",
                      f"open interest {oi_after:g} would exceed cap {lim.oi_max:g}")
    if lim.leverage_tiers:
        refused = _tier_check(order, view, lim, new, price)
        if refused is not None:
            return refused
    free = view.free_collateral_after(order.account, order.market, delta, price)
    if not free >= 0.0:
        return Reject(oid, "insufficient_initial_margin",
                      f"free collateral after the order {free:.2f} < 0")
    return Accept(oid, False)


def _grows_with_resting(order: Order, view: PretradeView, pos: float, size: float) -> bool:
    """Whether an order that reduces the position alone grows it together with the
    account's resting orders on its side (Drift protocol-v2 ``is_new_order_risk_increasing``,
    math/orders.rs: open bids + size > |short position|, |open asks - size| > long
    position); such an order passes the margin check first."""
    bids, asks = view.resting(order.account, order.market)
    same = bids if order.side == "buy" else asks
    return same > 0.0 and same + size > abs(pos)


def _tier_check(order: Order, view: PretradeView, lim: MarketLimits, new: float,
                price: float) -> Reject | None:
    notional = lim.notional_quote(new, price)
    lev = view.leverage(order.account, order.market)
    for tier in lim.leverage_tiers:
        if notional <= tier.notional_max_quote:
            if lev > tier.max_leverage:
                return Reject(order.id, "leverage_exceeds_tier",
                              f"leverage {lev:g} > {tier.max_leverage:g} allowed up to "
                              f"notional {tier.notional_max_quote:g} (position {notional:.2f})")
            return None
    return Reject(order.id, "leverage_exceeds_tier",
                  f"position notional {notional:.2f} is beyond the last tier")
