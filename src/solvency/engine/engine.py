"""The engine: ``apply(event) -> out-events``, deterministic and single-threaded.

:class:`Engine` is the state (:class:`~solvency.engine.base.EngineState`) plus a thin
dispatcher: :meth:`Engine.apply` checks the event's id and timestamp, hands it to the
function :data:`HANDLERS` names for its type (one module per event family: ``fills.py``,
``marks.py``, ``accounts.py``, ``funding.py``, ``expiry.py``, ``params.py``,
``orders.py``), lets time pass (``marks.time_passes``) and returns the out-events.
Persistence lives here too: :meth:`~Engine.snapshot`, :meth:`~Engine.restore`,
:meth:`~Engine.state_hash`, :meth:`~Engine.section_hashes`, :meth:`~Engine.verify`. The
read-only views (``views.py``) and the direct loaders (``loading.py``) are reachable as
methods for the CLI, the stress lab and the service.

Every handler validates first and mutates after: a rejected event returns one
:class:`Rejected` out-event and leaves the state exactly as it was (tests compare
``state_hash`` before and after). Duplicate event ids are ignored. Money moves only
through ledger batches; the book's float arrays are re-derived from exact state.

Accounting follows dYdX v4: a fill moves ``size x price`` of the settlement asset from
buyer to seller, and an account's equity is its balances plus the value of its positions
at the mark, so no money is ever created by marking; realized PnL is reported from a
per-position cost basis but never posted separately.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import operator
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from solvency.core.ledger.ledger import CLEARING, Ledger
from solvency.core.liquidation import LiquidationPolicy
from solvency.core.margin.kernels import MK_IM_SLOPE, MK_LONG_IM, MK_LONG_MM, MK_MM_SLOPE
from solvency.core.model.events import (
    AccountMode,
    Deposit,
    Expiry,
    Fill,
    Funding,
    InputEvent,
    IsolatedMargin,
    OutEvent,
    Params,
    Price,
    Rejected,
    Vol,
    Withdraw,
    bounded_detail,
    event_to_json,
)
from solvency.core.model.venue import Venue, build_venue
from solvency.core.oracle import OracleReport
from solvency.core.portfolio import ScenarioGrid
from solvency.core.typing import Float64Array2D
from solvency.engine.accounts import (
    apply_account_mode,
    apply_deposit,
    apply_isolated_margin,
    apply_withdraw,
    set_portfolio,
)
from solvency.engine.base import MS_PER_YEAR, EngineError, EngineState, RejectReason
from solvency.engine.expiry import apply_expiry
from solvency.engine.fills import apply_fill
from solvency.engine.funding import apply_funding
from solvency.engine.insurance import coverage, open_interest_quanta
from solvency.engine.loading import STREET, load_book, seed_position, transfer_isolated
from solvency.engine.marks import apply_oracle, apply_price, apply_vol, time_passes, volatility
from solvency.engine.options import option_price, option_requirements
from solvency.engine.orders import (
    apply_fill_orders,
    apply_order,
    apply_order_cancel,
    check_fill_orders,
    resting_order_of,
)
from solvency.engine.params import apply_params
from solvency.engine.portfolio_margin import underlying_usd
from solvency.engine.ports import Liquidity
from solvency.engine.pretrade import Order, OrderCancel
from solvency.engine.views import (
    account_view,
    accounts_overview,
    adl_rank_of,
    greeks_exposure,
    open_interest,
    signed_size_sums,
)

__all__ = ["HANDLERS", "MS_PER_YEAR", "STREET", "Engine", "EngineError", "RejectReason"]

SNAPSHOT_VERSION = 1

HANDLERS: Mapping[type, Callable[[EngineState, Any], list[Any]]] = {
    Fill: apply_fill_orders,
    Price: apply_price,
    Vol: apply_vol,
    OracleReport: apply_oracle,
    Order: apply_order,
    OrderCancel: apply_order_cancel,
    Deposit: apply_deposit,
    Withdraw: apply_withdraw,
    AccountMode: apply_account_mode,
    IsolatedMargin: apply_isolated_margin,
    Funding: apply_funding,
    Expiry: apply_expiry,
    Params: apply_params,
}
"""Input event type -> the function that handles it, ``function(state, event)``: each
validates (raising :class:`RejectReason`), then changes the state, then returns its
out-events. docs/engine.md lists the same table."""


_DECIMAL_FIELDS: dict[type, Callable[[object], tuple[object, ...]]] = {}


def _check_numbers(event: object) -> None:
    """Refuse an event built in Python with a NaN or infinite decimal (the JSON parser
    refuses them already; a Decimal NaN would otherwise raise inside a handler). The
    decimal field names of each event type are found once, with a getter of them all."""
    values = _DECIMAL_FIELDS.get(type(event))
    if values is None:
        values = _decimal_getter(type(event))
    for value in values(event):
        if isinstance(value, Decimal) and not value.is_finite():
            for name in _decimal_names(type(event)):  # the first, by field order
                bad = getattr(event, name)
                if isinstance(bad, Decimal) and not bad.is_finite():
                    raise RejectReason("invalid_number",
                                       f"{name}: {bad} is not a finite number")


def _decimal_getter(cls: type) -> Callable[[object], tuple[object, ...]]:
    """A function returning the values of ``cls``'s decimal fields, as a tuple."""
    names = _decimal_names(cls)
    getter: Callable[[object], tuple[object, ...]]
    if len(names) > 1:
        getter = operator.attrgetter(*names)
    elif names:
        one = operator.attrgetter(names[0])
        getter = lambda event: (one(event),)  # noqa: E731
    else:
        getter = lambda event: ()  # noqa: E731
    _DECIMAL_FIELDS[cls] = getter
    return getter


def _decimal_names(cls: type) -> tuple[str, ...]:
    """Names of ``cls``'s decimal fields, in field order."""
    return tuple(f.name for f in dataclasses.fields(cls) if "Decimal" in str(f.type))


class Engine(EngineState):
    """Deterministic risk engine over one venue's accounts.

    Parameters
    ----------
    venue
        The venue (a preset or a user's config) whose assets and markets it runs.
    liquidity
        What the venue's book absorbs when a position is liquidated (default: full
        depth 0.1 % through the mark).
    policy
        The liquidation policy (default: the venue's preset policy).
    pm_grid
        The scenario grid of portfolio margin (None: no portfolio mode).
    """

    # ================================================================ apply

    def apply(self, event: InputEvent | OracleReport | Order | OrderCancel) -> list[Any]:
        """Apply one input event; return the out-events it caused."""
        self.counts["events"] += 1
        self.epoch += 1
        if event.id in self.seen_ids:
            self.counts["duplicates"] += 1
            return []
        ts = event.ts_ms
        if self.liquidator.loss_rule is not None:
            self.liquidator.event_ms = ts  # a loss is dated by the event that realized it
        try:
            # oracle reports may lag the clock (each source's age is the guard's business)
            if ts is not None and self.clock_ms is not None and ts < self.clock_ms and (
                not isinstance(event, OracleReport)
            ):
                raise RejectReason("out_of_order",
                                   f"ts {ts} is before the engine clock {self.clock_ms}")
            cls = type(event)
            handler = HANDLERS.get(cls)
            if handler is None:
                raise RejectReason("unknown_type", f"{cls.__name__}")
            # (exactly a key of HANDLERS here: the type test is isinstance's answer)
            if cls is not OracleReport and cls is not Order:
                # (an order is answered by its own check, invalid_order; an oracle report
                # by the guard, invalid_price)
                _check_numbers(event)
            out = handler(self, event)
        except RejectReason as rej:
            self.counts["rejected"] += 1
            # The out-event id derives from the input id: a rejection consumes no
            # sequence number, so it leaves the state (and its hash) exactly as it was.
            return [Rejected(id=f"rejected:{event.id}", event=event.id, reason=rej.reason,
                             detail=bounded_detail(rej.detail))]
        self.seen_ids.add(event.id)
        if ts is not None and (self.clock_ms is None or ts > self.clock_ms):
            self.clock_ms = ts
            out.extend(time_passes(self, ts, event.id))
        self.counts["applied"] += 1
        return out

    def check_fill(self, event: Fill) -> Rejected | None:
        """The rejection :meth:`apply` would give ``event`` by the fill's own checks
        (market, sizes, margin of both sides, the resting orders it names), or None;
        nothing changes. Duplicate ids and the clock are the caller's (a sharded venue's
        coordinator holds them venue-wide)."""
        try:
            if event.buyer_order is not None or event.seller_order is not None:
                check_fill_orders(self, event)
            apply_fill(self, event, check_only=True)
        except RejectReason as rej:
            return Rejected(id=f"rejected:{event.id}", event=event.id, reason=rej.reason,
                            detail=bounded_detail(rej.detail))
        return None

    def pass_time(self, ts_ms: int, cause: str) -> list[Any]:
        """Move the clock to ``ts_ms`` as an accepted event of that time would, without
        the event (a shard sees every event's time but not every event); return the
        out-events of time passing (stale sources, breakers cooling down)."""
        if self.clock_ms is not None and ts_ms <= self.clock_ms:
            return []
        self.epoch += 1
        self.clock_ms = ts_ms
        return time_passes(self, ts_ms, cause)

    def apply_all(self, events: Iterable[InputEvent | OracleReport | Order | OrderCancel]
                  ) -> list[Any]:
        """Apply events in order; return every out-event."""
        out: list[Any] = []
        for ev in events:
            out.extend(self.apply(ev))
        return out

    # ================================================================ direct loaders

    def seed_position(self, account: str, market: str, size: Decimal, entry_price: Decimal,
                      *, counterparty: str = STREET) -> None:
        """Load an existing position at its entry price, skipping margin checks
        (:func:`~solvency.engine.loading.seed_position`)."""
        seed_position(self, account, market, size, entry_price, counterparty=counterparty)

    def load_book(self, accounts: list[str], asset: str, collateral_quanta: np.ndarray,
                  pos_account: np.ndarray, pos_market: np.ndarray, pos_lots: np.ndarray,
                  entry_ticks: np.ndarray, *, counterparty: str = STREET) -> None:
        """Bulk-load new cross accounts with collateral and linear positions
        (:func:`~solvency.engine.loading.load_book`)."""
        load_book(self, accounts, asset, collateral_quanta, pos_account, pos_market,
                  pos_lots, entry_ticks, counterparty=counterparty)

    def transfer_isolated(self, account: str, market: str, amount: Decimal) -> None:
        """Move collateral into an isolated bucket without margin checks
        (:func:`~solvency.engine.loading.transfer_isolated`)."""
        transfer_isolated(self, account, market, amount)

    # ================================================================ views

    def account_view(self, account: str, *, horizon_days: float = 1.0) -> dict[str, Any]:
        """Margin, equity and positions of an account; KeyError if it has no rows
        (:func:`~solvency.engine.views.account_view`)."""
        return account_view(self, account, horizon_days=horizon_days)

    def accounts_overview(self) -> dict[str, Any]:
        """Per-account margin totals of every account
        (:func:`~solvency.engine.views.accounts_overview`)."""
        return accounts_overview(self)

    def adl_rank_of(self, m: int, s: int) -> int | None:
        """ADL queue quintile of slot ``s`` in market ``m`` (None: not ranked)."""
        return adl_rank_of(self, m, s)

    def preview_order(self, order: Order) -> tuple[str, str, str]:
        """The pre-trade answer to ``order`` (``status, reason, detail``) without applying
        it: no rate-limit count, no id, no state change. A ``rest`` order is first
        checked as its placement checks what could rest (unknown account, off-lot size,
        off-tick price...), so the answer is its placement's."""
        now = order.ts_ms if order.ts_ms is not None else (self.clock_ms or 0)
        if order.rest:
            try:
                resting_order_of(self, order)
            except RejectReason as exc:
                return ("rejected", exc.reason, exc.detail)
        return self.feeds.preview(order, now)

    def greeks_exposure(self, *, per_account: bool = True) -> dict[str, Any]:
        """Delta, gamma, vega and theta per account and underlying, and venue-wide
        (:func:`~solvency.engine.views.greeks_exposure`; ``per_account=False`` leaves
        ``by_account`` empty, for summaries that must not grow with the book)."""
        return greeks_exposure(self, per_account=per_account)

    def open_interest(self) -> dict[str, str]:
        """One side's open interest per market, in contracts."""
        return open_interest(self)

    def signed_size_sums(self) -> dict[str, int]:
        """Sum of signed lots per market (0 when every trade has two sides)."""
        return signed_size_sums(self)

    def volatility(self, m: int) -> float:
        """Annualized volatility of a market's mark (EWMA; the default before data)."""
        return volatility(self, m)

    def option_price(self, o: int) -> float | None:
        """Black-76 premium of option market ``o``, None before a vol and a mark
        (:func:`~solvency.engine.options.option_price`)."""
        return option_price(self, o)

    def option_requirements(self, o: int, mark: float) -> tuple[float, float, float, float]:
        """Margin per contract of option market ``o`` at premium ``mark``: short IM, MM,
        long IM, MM (:func:`~solvency.engine.options.option_requirements`)."""
        return option_requirements(self, o, mark)

    def underlying_usd(self, symbol: str) -> float:
        """USD price of an underlying coin: its asset price, else a futures market's mark."""
        return underlying_usd(self.book, symbol)

    def open_interest_quanta(self, asset: str) -> int:
        """Open-interest notional of the markets settled in ``asset``, in its quanta."""
        return open_interest_quanta(self, asset)

    def coverage(self, asset: str) -> float:
        """Insurance fund / open-interest notional of the markets settled in ``asset``."""
        return coverage(self, asset)

    # ================================================================ persistence

    def snapshot(self) -> dict[str, Any]:
        """Exact state as JSON-able data; :meth:`restore` rebuilds an identical engine."""
        book = self.book
        positions = []
        for r, info in enumerate(book.rows):
            for s in sorted(book.row_slots(r), key=lambda x: int(book.slot_market[x])):
                positions.append([info.name, book.market_names[int(book.slot_market[s])],
                                  str(int(book.slot_lots[s])), str(int(book.slot_cost[s]))])
        return {
            "version": SNAPSHOT_VERSION,
            "venue": json.loads(json.dumps(self.venue.raw, default=str)),
            # the book's market order: the arrays below are indexed by it, and a JSON
            # store that sorts keys would otherwise rebuild the venue's markets in
            # another order (marks, open interest and the feeds attached to the wrong
            # market after a restore; found by the service's kill -9 test). Hashed (in
            # the params section): the lists below mean nothing without it.
            "market_order": list(self.book.market_names),
            "ledger": self.ledger.dump(),
            "accounts": dict(sorted(self.accounts.items())),
            # the collateral-weighting flag too: engine-run rows are unweighted, and a
            # restore that guessed it from the market weighted them (issue 13's fuzz)
            "rows": [[i.name, i.account, i.market, i.ledger_id, int(w)] for i, w in zip(
                book.rows, book.row_weighted[: len(book.rows)].tolist(), strict=True)],
            "positions": positions,
            # resting orders, only when there are any (states without them keep their hash)
            **({"open_orders": self.open_orders.dump(book.market_names)}
               if self.open_orders else {}),
            "marks": [None if p is None else str(p) for p in book.marks],
            # collateral valued by rule: only where the venue has such assets (other
            # venues' snapshots and hashes stay as they were)
            **({"collateral": self.collateral.dump()} if self.collateral else {}),
            "expired": list(book.expired),
            "warned": [book.rows[int(r)].name for r in np.flatnonzero(
                book.warned[: len(book.rows)])],
            "seen_ids": sorted(self.seen_ids),
            "clock_ms": self.clock_ms,
            "out_seq": self.out_seq,
            "realized": {k: str(v) for k, v in sorted(self.realized.items())},
            "volatility": [[float(v).hex(), float(p).hex(), int(t)] for v, p, t in zip(
                self.vol_var_annual, self.vol_last, self.vol_last_ms, strict=True)],
            "liquidation": {
                "last_partial_ms": {book.rows[r].name: t for r, t in sorted(
                    self.liquidator.last_partial_ms.items())},
                "deficit_rows": sorted(book.rows[r].name for r in self.liquidator.deficit_rows),
                "blocked_assets": sorted(self.liquidator.blocked_assets),
                # only once the fund has unwound: older snapshots and hashes stay the same
                **({"last_unwind_ms": {book.market_names[m]: t for m, t in sorted(
                    self.liquidator.last_unwind_ms.items())}}
                   if self.liquidator.last_unwind_ms else {}),
                # only with a dynamic fee (the presets keep no window: hashes unchanged)
                **({"mark_vol": self.liquidator.mark_vol_dump()}
                   if self.liquidator.mark_vol else {}),
                # only once a loss was recorded (insurance.policy.target_from_losses)
                **({"losses": [list(x) for x in self.liquidator.losses]}
                   if self.liquidator.losses else {}),
            },
            "fee_share_ppm": self.fee_share_ppm,
            # an account shard's engine (only then: other snapshots and hashes unchanged)
            **({"shard": True} if self.shard else {}),
            "ivs": {book.market_names[m]: [str(v), *_option_columns(book.mk, m)]
                    for m, v in sorted(self.ivs.items())},
            # options marked by a price (no vol): their per-contract requirements, set at
            # the underlying's mark of that price event (a restore lost them before); only
            # when there are, so older snapshots and hashes stay the same
            **({"option_margin": priced} if (priced := self._priced_option_margin()) else {}),
            "feeds": self.feeds.dump(),
            "counts": dict(self.counts),
            "liquidation_counts": dict(self.liquidator.counts),
        }

    def _priced_option_margin(self) -> dict[str, list[str]]:
        """:func:`_option_columns` of each option market without a vol whose per-contract
        requirements are set (it was marked by a price event)."""
        book = self.book
        return {book.market_names[m]: _option_columns(book.mk, m)
                for m, inst in enumerate(book.instruments)
                if inst.is_option and m not in self.ivs and bool(
                    book.mk[m, [MK_IM_SLOPE, MK_MM_SLOPE, MK_LONG_IM, MK_LONG_MM]].any())}

    @classmethod
    def restore(cls, snap: Mapping[str, Any], *, liquidity: Liquidity | None = None,
                policy: LiquidationPolicy | None = None,
                pm_grid: ScenarioGrid | None = None, like: Venue | None = None) -> Engine:
        """Rebuild an engine from :meth:`snapshot` output (same ports as the original).
        ``like``: a venue already built, used instead of building the snapshot's again
        when its data and market order are the snapshot's (building one takes ~20 ms:
        account shards restore often, service/shards.py)."""
        if snap.get("version") != SNAPSHOT_VERSION:
            raise EngineError(f"snapshot version {snap.get('version')} is not supported")
        venue = like
        if venue is None or list(venue.markets) != snap.get("market_order") or (
                json.loads(json.dumps(venue.raw, default=str)) != snap["venue"]):
            venue = build_venue(_in_market_order(snap["venue"], snap.get("market_order")))
        engine = cls(venue, liquidity=liquidity, policy=policy, pm_grid=pm_grid)
        book = engine.book
        engine.ledger = Ledger.load(engine.venue.assets, snap["ledger"])
        engine.accounts = dict(snap["accounts"])
        for row in snap["rows"]:
            name, account, market, ledger_id = row[:4]
            weighted = bool(row[4]) if len(row) > 4 else int(market) < 0
            book.add_row(name, account, int(market), ledger_id, weighted)
        for m, p in enumerate(snap["marks"]):
            if p is not None:
                book.set_mark(m, Decimal(p))
        if "collateral" in snap:
            engine.collateral.load(snap["collateral"])
        for name, market, lots, cost in snap["positions"]:
            r = book.row_index[name]
            m = book.market_index[market]
            s = book.open_slot(r, m)
            book.slot_lots[s] = int(lots)
            book.slot_cost[s] = int(cost)
        engine.open_orders.load(snap.get("open_orders", []), book.market_index)
        for m, flag in enumerate(snap["expired"]):
            book.expired[m] = bool(flag)
        oi = [0] * len(book.market_names)
        for s in range(book.n_slots):
            if book.slot_row[s] >= 0 and book.slot_lots[s] > 0:
                oi[int(book.slot_market[s])] += int(book.slot_lots[s])
        for m, v in enumerate(oi):
            book.set_oi(m, v)
        for r in range(len(book.rows)):
            for a in range(len(book.asset_names)):
                engine.sync_balance(r, a)
        for name in snap["warned"]:
            book.warned[book.row_index[name]] = True
        engine.seen_ids = set(snap["seen_ids"])
        engine.clock_ms = snap["clock_ms"]
        engine.out_seq = int(snap["out_seq"])
        engine.realized = {k: int(v) for k, v in snap["realized"].items()}
        for m, (v, p, t) in enumerate(snap["volatility"]):
            engine.vol_var_annual[m] = float.fromhex(v)
            engine.vol_last[m] = float.fromhex(p)
            engine.vol_last_ms[m] = int(t)
        engine.counts = dict(snap["counts"])
        engine.fee_share_ppm = int(snap["fee_share_ppm"])
        engine.shard = bool(snap.get("shard", False))
        for name, (iv, *hexes) in snap["ivs"].items():
            o = book.market_index[name]
            engine.ivs[o] = Decimal(iv)
            # the per-contract requirements in force, bit for bit (they were computed at
            # the clock of the last re-pricing, not the snapshot's)
            _load_option_columns(book.mk, o, hexes)
        for name, hexes in snap.get("option_margin", {}).items():
            _load_option_columns(book.mk, book.market_index[name], hexes)
        engine.feeds.load(snap["feeds"])
        for name, mode in engine.accounts.items():
            if mode == "portfolio" and name in book.row_index:
                set_portfolio(engine, book.row_index[name], True)
        liq = snap["liquidation"]
        engine.liquidator.last_partial_ms = {book.row_index[k]: int(v)
                                             for k, v in liq["last_partial_ms"].items()}
        engine.liquidator.deficit_rows = {book.row_index[k] for k in liq["deficit_rows"]}
        engine.liquidator.blocked_assets = set(liq["blocked_assets"])
        engine.liquidator.last_unwind_ms = {book.market_index[k]: int(v) for k, v in
                                            liq.get("last_unwind_ms", {}).items()}
        engine.liquidator.mark_vol_load(liq.get("mark_vol", {}))
        engine.liquidator.losses = deque((int(t), int(q)) for t, q in liq.get("losses", []))
        engine.liquidator.counts = dict(snap["liquidation_counts"])
        book.remargin_all()
        pm_rows = np.flatnonzero(~np.isnan(book.pm[: len(book.rows), 0])).astype(np.int64)
        if pm_rows.shape[0]:
            engine.refresh_pm(pm_rows)
        return engine

    def state_hash(self) -> str:
        """SHA-256 of the exact state (ledger, positions, marks, params, ids, clock)."""
        return _sha256(self._hashed_state())

    def section_hashes(self) -> dict[str, str]:
        """SHA-256 of each part of the hashed state, so a mismatch names what diverged.

        Sections (snapshot keys): ``ledger``; ``accounts`` (accounts, rows, warned);
        ``positions`` (positions, realized, resting orders); ``marks`` (marks, expired,
        option ivs); ``volatility``; ``feeds`` (oracle guard, mark pricers, breakers);
        ``liquidation`` (partial-liquidation clock, deficits, blocked withdrawals);
        ``params`` (venue, fee share, market order); ``sequence`` (seen ids, clock,
        out-event sequence). Together they cover
        exactly what :meth:`state_hash` covers.
        """
        state = self._hashed_state()
        out = {name: _sha256({k: state.pop(k) for k in keys if k in state})
               for name, keys in _SECTIONS.items()}
        if state:  # a snapshot key no section names: fail loudly, never hash less
            raise EngineError(f"state keys outside every section: {sorted(state)}")
        return out

    def _hashed_state(self) -> dict[str, Any]:
        snap = self.snapshot()
        snap.pop("counts")
        snap.pop("liquidation_counts")
        snap["feeds"] = snap["feeds"]["summary"]
        return snap

    def verify(self) -> dict[str, int]:
        """Full invariant check: conservation per asset and balanced open interest."""
        totals = self.ledger.verify()
        for market, total in self.signed_size_sums().items():
            if total != 0:
                raise EngineError(f"open interest unbalanced in {market}: {total} lots")
        lots_all = self.book.slot_lots
        for m, _name in enumerate(self.book.market_names):
            # the holders' long lots summed from scratch in one gather (a Python loop over
            # the holders took ~50 ms a check at 100,000 accounts); in int64 where no sum
            # can overflow it, else in Python integers
            lots = lots_all[self.book.holders[m].view()]
            pos = lots[lots > 0]
            longs = int(pos.sum()) if pos.shape[0] == 0 or int(pos.max()) <= (
                _INT64_MAX // pos.shape[0]) else sum(pos.tolist())
            if longs != self.book.oi_lots[m]:
                raise EngineError(f"open interest index of market {m} is stale")
        for asset in self.book.asset_names:
            if self.ledger.balance(CLEARING, asset) != 0:
                raise EngineError(f"clearing account not empty in {asset}")
        return totals

    def out_json(self, events: Iterable[OutEvent]) -> list[dict[str, object]]:
        """JSON objects of out-events."""
        return [event_to_json(e) for e in events]


_INT64_MAX = 2**63 - 1

_SECTIONS: dict[str, tuple[str, ...]] = {
    "ledger": ("ledger",),
    "accounts": ("accounts", "rows", "warned"),
    "positions": ("positions", "realized", "open_orders"),
    "marks": ("marks", "collateral", "expired", "ivs", "option_margin"),
    "volatility": ("volatility",),
    "feeds": ("feeds",),
    "liquidation": ("liquidation",),
    "params": ("version", "venue", "market_order", "fee_share_ppm", "shard"),
    "sequence": ("seen_ids", "clock_ms", "out_seq"),
}


def _option_columns(mk: Float64Array2D, m: int) -> list[str]:
    """An option market's per-contract requirements as exact hex floats: short IM, MM,
    and, only when a long pays any (Paradex's rule), long IM, MM (Deribit's snapshots and
    hashes stay the same)."""
    cols = [float(mk[m, MK_IM_SLOPE]).hex(), float(mk[m, MK_MM_SLOPE]).hex()]
    if mk[m, MK_LONG_IM] != 0.0 or mk[m, MK_LONG_MM] != 0.0:
        cols += [float(mk[m, MK_LONG_IM]).hex(), float(mk[m, MK_LONG_MM]).hex()]
    return cols


def _load_option_columns(mk: Float64Array2D, m: int, hexes: Sequence[str]) -> None:
    """Inverse of :func:`_option_columns`."""
    cols = [float.fromhex(h) for h in hexes]
    mk[m, MK_IM_SLOPE], mk[m, MK_MM_SLOPE] = cols[0], cols[1]
    mk[m, MK_LONG_IM], mk[m, MK_LONG_MM] = (cols[2], cols[3]) if len(cols) > 2 else (0.0,
                                                                                  0.0)


def _in_market_order(venue: Mapping[str, Any], order: Any) -> Mapping[str, Any]:
    """The venue data with its ``markets`` mapping in the snapshot's market order."""
    markets = venue.get("markets")
    if not isinstance(order, list) or not isinstance(markets, Mapping):
        return venue
    ranked = {name: i for i, name in enumerate(order)}
    keys = sorted(markets, key=lambda k: (ranked.get(k, len(ranked)), list(markets).index(k)))
    return {**venue, "markets": {k: markets[k] for k in keys}}


def _sha256(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


