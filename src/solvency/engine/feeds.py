"""Market data into the engine: oracle reports -> index -> mark, guarded by breakers;
and the pre-trade view the order checks read.

The venue config may carry an ``oracle`` section::

    {"oracle": {"sources": ["binance", "okx", "coinbase"],
                "config": {"stale_ms": 30000, "band": 0.05, "quorum": 2},
                "mark": "index" | "bitmex" | "binance" | "hyperliquid",
                "breakers": {...},
                "limits": {"BTC-PERP": {"price_band": 0.05, "oi_max": 5000}}}}

Defaults: five sources (``binance``, ``coinbase``, ``okx``, ``bybit``, ``kraken``), the
guard and breaker defaults of docs/oracle.md, the plain-index mark. Every mark set from
the oracle carries its provenance (method, sources used and dropped) as a ``mark``
out-event; every breaker transition is a ``breaker`` out-event.
"""

from __future__ import annotations

import base64
import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import numpy as np

from solvency.core.margin.kernels import (
    OUT_COLLATERAL,
    OUT_IM,
    S_LOTS,
    S_MARKET,
    S_NEXT,
    S_VALUE,
    evaluate_rows,
    row_leverage,
)
from solvency.core.margin.models import TieredModel
from solvency.core.model.instruments import Instrument
from solvency.core.oracle import (
    IndexUpdate,
    MarkConfig,
    MarkPricer,
    OracleConfig,
    OracleGuard,
    OracleReport,
    SourceRejected,
)
from solvency.core.units import MAX_QUANTA
from solvency.engine.breakers import BreakerBank, BreakerConfig, BreakerTransition
from solvency.engine.context import FeedsContext
from solvency.engine.open_orders import ASK, BID, free_collateral_worst_side
from solvency.engine.pretrade import (
    LeverageTier,
    MarketLimits,
    Order,
    RateLimiter,
    check_order,
)

__all__ = ["DEFAULT_SOURCES", "EngineView", "Feeds", "MarkSet", "OrderResult"]

DEFAULT_SOURCES = ("binance", "coinbase", "okx", "bybit", "kraken")


@dataclass(frozen=True, slots=True)
class MarkSet:
    """A mark set from the oracle, with how it was produced (auditable)."""

    type: ClassVar[str] = "mark"
    id: str
    event: str
    market: str
    price: str
    method: str
    index: str
    reliable: bool
    sources: str
    dropped: str


@dataclass(frozen=True, slots=True)
class OrderResult:
    """The answer to an ``order`` event: ``accepted`` or ``rejected`` with a reason."""

    type: ClassVar[str] = "order"
    id: str
    event: str
    account: str
    market: str
    status: str
    reason: str
    detail: str


class Feeds:
    """Oracle guard, mark pricers and breakers of one engine."""

    def __init__(self, ctx: FeedsContext, config: Mapping[str, Any] | None) -> None:
        cfg = dict(config or {})
        self.ctx = ctx
        markets = list(ctx.book.market_names)
        self.sources = tuple(cfg.get("sources", DEFAULT_SOURCES))
        self.guard = OracleGuard(markets, self.sources,
                                 OracleConfig.from_mapping(cfg.get("config", {})))
        method = cfg.get("mark", "index")
        self.pricers = {m: MarkPricer(m, MarkConfig.preset(method)) for m in markets}
        self.breakers = BreakerBank(BreakerConfig.from_mapping(cfg.get("breakers", {})))
        self.limits_data: Mapping[str, Mapping[str, Any]] = cfg.get("limits", {})
        rate = cfg.get("rate_limit", {"max_orders": 100, "window_ms": 1000})
        self.rate = RateLimiter(int(rate["max_orders"]), int(rate["window_ms"]))
        self.used = False  # True once any oracle report arrived
        # per market: the MarketLimits built for the instrument and limits data it was
        # built from (a params event replaces the instrument; the entry is then rebuilt)
        self.limits_cache: dict[int, tuple[object, object, MarketLimits]] = {}
        # one-row scratch for the pre-trade view's valuation of an account
        self.view_row = np.empty(1, dtype=np.int64)
        self.view_out = np.empty((1, 4))
        self.view_gross = np.empty(0, dtype=np.int64)
        # per market: the instrument and its contract size and lot size as floats (the
        # Decimal -> float conversions the checks need, once per instrument)
        self.sizes_cache: dict[int, tuple[Instrument, float, float]] = {}

    # ------------------------------------------------------------------ persistence

    def dump(self) -> dict[str, Any]:
        """Snapshot of the guard, mark pricers, breakers and rate limiter.

        Their state is rolling windows of floats (source histories, EMAs, TWAPs, timers)
        with no stable text form yet, so it is carried as a pickled blob (our own
        snapshots only: never restore one from an untrusted source) plus a SHA-256 of a
        canonical JSON summary that the engine's state hash covers.
        """
        blob = pickle.dumps((self.guard, self.pricers, self.breakers, self.rate, self.used),
                            protocol=5)
        summary = {
            "used": self.used,
            "breakers": {m: str(self.breakers.state(m)) for m in sorted(self.pricers)},
            "index": {m: (None if (u := self.guard.status(m)) is None
                          else [repr(u.price), u.reliable, u.ts_ms])
                      for m in sorted(self.pricers)},
        }
        return {"blob": base64.b64encode(blob).decode(), "summary": summary}

    def load(self, data: Mapping[str, Any]) -> None:
        """Restore what :meth:`dump` saved."""
        blob = base64.b64decode(data["blob"])  # our own snapshot (see dump)
        guard, pricers, breakers, rate, used = pickle.loads(blob)
        self.guard, self.pricers, self.breakers, self.rate, self.used = (
            guard, pricers, breakers, rate, used)

    # ------------------------------------------------------------------ oracle

    def report(self, ev: OracleReport, now_ms: int) -> tuple[
            list[Any], IndexUpdate | None, SourceRejected | None]:
        """Feed one report; return breaker transitions, the index update, or a refusal."""
        market = ev.market or ev.asset or ""
        result = self.guard.update(ev.source, market, ev.price, ev.ts_ms, now_ms=now_ms)
        if isinstance(result, SourceRejected):
            # the guard refuses before it records anything; so must we (a rejected
            # event leaves the state, and its hash, as it was)
            return [], None, result
        self.used = True
        return [], result, None

    def mark_for(self, update: IndexUpdate, cause: str) -> tuple[Decimal | None,
                                                                 list[Any]]:
        """Mark price for an index update, its provenance event and breaker transitions."""
        ctx = self.ctx
        pricer = self.pricers[update.market]
        result = pricer.mark(update)
        transitions: list[BreakerTransition] = self.breakers.observe_update(
            update, result, cause=cause, next_id=ctx.next_id)
        if result is None:
            return None, list(transitions)
        inst = ctx.venue.markets[update.market]
        price = result.to_decimal(inst.tick_size)
        events: list[Any] = list(transitions)
        events.append(MarkSet(
            id=ctx.next_id(), event=cause, market=update.market, price=str(price),
            method=result.method, index=repr(update.price), reliable=update.reliable,
            sources=",".join(update.sources), dropped=",".join(
                f"{k}:{v}" for k, v in update.dropped)))
        return price, events

    def tick(self, now_ms: int, cause: str) -> tuple[list[IndexUpdate], list[Any]]:
        """Time passes: sources go stale, breakers cool down and recover."""
        if not self.used:
            return [], []
        updates = self.guard.tick(now_ms)
        transitions: list[Any] = list(self.breakers.tick(now_ms, cause=cause,
                                                         next_id=self.ctx.next_id))
        return updates, transitions

    def allows(self, market: str, action: str) -> bool:
        """Breaker permission for ``open``/``reduce``/``liquidate`` in a market."""
        return self.breakers.allows(market, action)  # type: ignore[arg-type]

    def mode(self, market: str) -> str:
        """``normal``, ``reduce_only`` or ``halted``."""
        return str(self.breakers.mode(market))

    # ------------------------------------------------------------------ orders

    def preview(self, order: Order, now_ms: int) -> tuple[str, str, str]:
        """``(status, reason, detail)`` of the pre-trade check of ``order`` now, without
        counting it toward the rate limit or consuming an id: nothing changes (the
        service's ``POST /v1/orders/check``)."""
        res = check_order(order, EngineView(self.ctx, self, rests=order.rest), now_ms)
        reason = getattr(res, "reason", "")
        return ("rejected" if reason else "accepted", reason, getattr(res, "detail", ""))

    def check(self, order: Order, now_ms: int) -> OrderResult:
        """Answer an order (nothing reserved or moved); counts toward the rate limit."""
        res = check_order(order, EngineView(self.ctx, self, rests=order.rest), now_ms)
        self.rate.record(order.account, now_ms)
        reason = getattr(res, "reason", "")
        return OrderResult(id=self.ctx.next_id(), event=order.id, account=order.account,
                           market=order.market, status="rejected" if reason else "accepted",
                           reason=reason, detail=getattr(res, "detail", ""))


class EngineView:
    """The engine's state as :class:`~solvency.engine.pretrade.PretradeView` reads it.

    One view answers one order: it remembers the market index and row it looked up (the
    checks ask for them several times), never across orders. ``rests``: the order would
    rest (it then counts as an open order under the venue's rule)."""

    def __init__(self, ctx: FeedsContext, feeds: Feeds, *, rests: bool = False) -> None:
        self.ctx = ctx
        self.feeds = feeds
        self.rests = rests
        self._markets: dict[str, int | None] = {}
        self._rows: dict[tuple[str, str], int] = {}
        self._pos: dict[tuple[str, str], float] = {}

    def _market_index(self, market: str) -> int | None:
        hit = self._markets.get(market, -1)
        if hit != -1:  # (one lookup: the checks ask about six times an order)
            return hit
        inst = self.ctx.venue.resolve(market)
        m = None if inst is None else self.ctx.book.market_index[inst.name]
        self._markets[market] = m
        return m

    def limits(self, market: str) -> MarketLimits | None:
        """Venue limits, with leverage tiers from the market's own brackets (built once
        per instrument and kept by the feeds)."""
        m = self._market_index(market)
        if m is None:
            return None
        inst = self.ctx.book.instruments[m]
        raw = self.feeds.limits_data.get(inst.name)
        hit = self.feeds.limits_cache.get(m)
        if hit is not None and hit[0] is inst and hit[1] is raw:
            return hit[2]
        lim = _market_limits(inst, raw or {})
        self.feeds.limits_cache[m] = (inst, raw, lim)
        return lim

    def mode(self, market: str) -> str:
        """Breaker mode of the market."""
        return self.feeds.mode(market)

    def mark(self, market: str) -> float | None:
        """Current mark, None before the first."""
        m = self._market_index(market)
        if m is None:
            return None
        p = self.ctx.book.marks[m]
        return None if p is None else float(p)

    def _sizes(self, m: int) -> tuple[Instrument, float, float]:
        inst = self.ctx.book.instruments[m]
        hit = self.feeds.sizes_cache.get(m)
        if hit is None or hit[0] is not inst:
            hit = self.feeds.sizes_cache[m] = (inst, float(inst.contract_size),
                                               float(inst.lot_size))
        return hit

    def _row(self, account: str, market: str) -> int:
        key = (account, market)
        r = self._rows.get(key)
        if r is None:
            ctx = self.ctx
            name = (f"{account}/{market}" if ctx.accounts.get(account) == "isolated"
                    else account)
            r = self._rows[key] = ctx.book.row_index.get(name, -1)
        return r

    def position(self, account: str, market: str) -> float:
        """Signed contracts held (read once per order: the ledger and position checks
        both ask)."""
        key = (account, market)
        p = self._pos.get(key)
        if p is None:
            p = self._pos[key] = self._position(account, market)
        return p

    def _position(self, account: str, market: str) -> float:
        m = self._market_index(market)
        r = self._row(account, market)
        if m is None or r < 0:
            return 0.0
        book = self.ctx.book
        s = book.slot_of(r, m)
        if s < 0:
            return 0.0
        return book.st.item(s, S_LOTS) * book.lot_size[m]

    def open_interest(self, market: str) -> float:
        """One side's open interest, contracts."""
        m = self._market_index(market)
        return 0.0 if m is None else self.ctx.book.oi_lots[m] * self.ctx.book.lot_size[m]

    def leverage(self, account: str, market: str) -> float:
        """Effective leverage of the account: notional over collateral, in one compiled
        call (:func:`~solvency.core.margin.kernels.row_leverage`); the Python reference
        (:meth:`leverage_reference`) answers where the kernel's sums would not be exact."""
        r = self._row(account, market)
        if r < 0:
            return 0.0
        book = self.ctx.book
        feeds = self.feeds
        gross = feeds.view_gross
        if gross.shape[0] != len(book.asset_names):
            gross = feeds.view_gross = np.zeros(len(book.asset_names), dtype=np.int64)
        lev = row_leverage(r, book.row_first, book.st, book.mki, book.row_int,
                           book.asset_price, book.ascale, book.atier_start,
                           book.atier_count, book.atiers, book.pm, feeds.view_row,
                           feeds.view_out, gross)
        if lev >= 0.0:
            return lev
        return self.leverage_reference(account, market)

    def leverage_reference(self, account: str, market: str) -> float:
        """:meth:`leverage` computed in Python (the kernel's reference; equal to it
        wherever the kernel answers)."""
        ctx = self.ctx
        r = self._row(account, market)
        if r < 0:
            return 0.0
        book = ctx.book
        rows = self.feeds.view_row
        rows[0] = r
        out = self.feeds.view_out
        evaluate_rows(rows, book.row_int, book.asset_price, book.ascale, book.atier_start,
                      book.atier_count, book.atiers, out, book.pm)
        # gross notional per settlement asset in exact quanta (any order gives the same
        # sum), then in USD asset by asset in index order: the same float on every
        # machine and after a restore (link order changes), and inverse positions,
        # valued in coin, no longer added to USD ones as if they were dollars
        per_asset = [0] * len(book.asset_names)
        st = book.st
        settle = ctx.settle_asset
        s = book.row_first.item(r)
        while s >= 0:
            per_asset[settle[st.item(s, S_MARKET)]] += abs(st.item(s, S_VALUE))
            s = st.item(s, S_NEXT)
        notional = 0.0
        for a, quanta in enumerate(per_asset):
            if quanta:
                notional += quanta / book.asset_scale[a] * float(book.asset_price[a])
        coll = out.item(0, OUT_COLLATERAL)
        return notional / coll if coll > 0 else math.inf

    def resting(self, account: str, market: str) -> tuple[float, float]:
        """Contracts of the account's resting bids and asks in the market, where the
        venue's rule counts them (``worst_side``); ``(0, 0)`` otherwise."""
        ctx = self.ctx
        if ctx.venue.open_orders.kind == "none":
            return 0.0, 0.0
        m = self._market_index(market)
        entry = None if m is None else ctx.open_orders.sides(account).get(m)
        if entry is None or m is None:
            return 0.0, 0.0
        lot = ctx.book.lot_size[m]
        return entry[BID] * lot, entry[ASK] * lot

    def free_collateral_after(self, account: str, market: str, delta: float,
                              price: float) -> float:
        """Collateral minus IM after trading ``delta`` contracts at ``price`` (what-if);
        under the ``worst_side`` rule, for an order that rests or an account with resting
        orders, with the open orders on the worse side instead
        (:func:`~solvency.engine.open_orders.free_collateral_worst_side`)."""
        ctx = self.ctx
        m = self._market_index(market)
        if m is None or account not in ctx.accounts:
            return -math.inf
        rule = ctx.venue.open_orders
        if rule.kind == "worst_side" and (self.rests or ctx.open_orders.sides(account)):
            return self._free_worst_side(account, market, m, delta,
                                         float(rule.per_order_usd))
        inst, contract_size, _ = self._sizes(m)
        lots = round(delta / ctx.book.lot_size[m])
        a = ctx.settle_asset[m]
        scale = ctx.book.asset_scale[a]
        contracts = delta * contract_size
        cash = (contracts / price if inst.is_inverse else -contracts * price) * scale
        isolated = ctx.accounts.get(account) == "isolated"
        r = self._row(account, market)
        oi = ctx.book.oi_lots[m] + max(lots, 0)
        out = ctx.whatif(r, not isolated, m, lots, oi, a, math.floor(cash))
        free = float(out[OUT_COLLATERAL] - out[OUT_IM])
        if isolated:
            cross = ctx.book.row_index.get(account, -1)
            if cross >= 0:
                back = ctx.book.aggregate(np.array([cross], dtype=np.int64))[0]
                free += float(back[OUT_COLLATERAL] - back[OUT_IM])
        return free

    def _free_worst_side(self, account: str, market: str, m: int, delta: float,
                         per_order_usd: float) -> float:
        ctx = self.ctx
        lots = round(delta / ctx.book.lot_size[m])
        isolated = ctx.accounts.get(account) == "isolated"
        r = self._row(account, market)
        free = free_collateral_worst_side(ctx, account, r, isolated, m, lots, per_order_usd)
        if isolated:
            free += self._cross_free(account)
            # the cross collateral that the orders resting in the account's other isolated
            # markets already need (their worst case beyond what their own isolated rows
            # hold) is promised once: it cannot back this order too
            for m2 in sorted(ctx.open_orders.sides(account)):
                if m2 != m:
                    r2 = self._row(account, ctx.book.market_names[m2])
                    free += min(0.0, free_collateral_worst_side(
                        ctx, account, r2, True, -1, 0, per_order_usd, isolated_market=m2))
        return free

    def _cross_free(self, account: str) -> float:
        """Free collateral of the account's cross row (0 without one): what backs an
        isolated position's what-if."""
        cross = self.ctx.book.row_index.get(account, -1)
        if cross < 0:
            return 0.0
        back = self.ctx.book.aggregate(np.array([cross], dtype=np.int64))[0]
        return float(back[OUT_COLLATERAL] - back[OUT_IM])

    def exceeds_ledger(self, account: str, market: str, delta: float,
                       price: float) -> bool:
        """Whether trading ``delta`` contracts at ``price`` would take the position or its
        value beyond what the ledger holds (``MAX_QUANTA``): a fill of it would be
        rejected ``size_too_large``, so the order is too (before any what-if runs)."""
        ctx = self.ctx
        m = self._market_index(market)
        if m is None:
            return False
        inst, contract_size, lot_size = self._sizes(m)
        after = abs(self.position(account, market) + delta)  # contracts
        # quanta of settlement asset per contract at ``price``
        per_contract = contract_size * ctx.book.asset_scale[
            ctx.settle_asset[m]] * (1.0 / price if inst.is_inverse else price)
        return not (after / lot_size <= MAX_QUANTA
                    and after * per_contract <= MAX_QUANTA
                    and abs(delta) * per_contract <= MAX_QUANTA)

    def rate_limited(self, account: str, now_ms: int) -> bool:
        """One more order now would exceed the limit."""
        return self.feeds.rate.would_exceed(account, now_ms)


def _market_limits(inst: Instrument, data: Mapping[str, Any]) -> MarketLimits:
    """A market's pre-trade limits: the venue's ``limits`` data of it, and leverage
    tiers from its own margin brackets."""
    tiers: tuple[LeverageTier, ...] = ()
    if isinstance(inst.margin, TieredModel):
        floors = [float(t.floor) for t in inst.margin.tiers[1:]] + [math.inf]
        tiers = tuple(LeverageTier(cap, 1 / float(t.imr))
                      for cap, t in zip(floors, inst.margin.tiers, strict=True))
    return MarketLimits(
        price_band=float(data.get("price_band", 0.05)),
        size_max=float(data.get("size_max", math.inf)),
        notional_max_quote=float(data.get("notional_max_quote", math.inf)),
        position_max=float(data.get("position_max", math.inf)),
        oi_max=float(data.get("oi_max", math.inf)), leverage_tiers=tiers,
        contract_size=float(inst.contract_size), inverse=inst.is_inverse,
        lot_size=inst.lot_size, tick_size=inst.tick_size)
