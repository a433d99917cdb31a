"""The engine: ``apply(event) -> out-events``, deterministic and single-threaded.

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

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from decimal import Context, Decimal, Inexact
from fractions import Fraction
from typing import Any

import numpy as np

from solvency.core.ledger.ledger import (
    CLEARING,
    EXTERNAL,
    FEES,
    INSURANCE,
    ROUNDING,
    Ledger,
    Result,
    Transfer,
)
from solvency.core.liquidation import (
    FeeSharePolicy,
    LiquidationPolicy,
    fee_share_update,
    policy_for,
)
from solvency.core.margin.kernels import (
    MK_IM_SLOPE,
    MK_MM_SLOPE,
    OUT_COLLATERAL,
    OUT_EQUITY,
    OUT_IM,
    OUT_MM,
    S_LOTS,
    S_VALUE,
    margin_crossings,
    row_whatif,
    touch_rows,
)
from solvency.core.model.events import (
    AccountMode,
    Deposit,
    Expiry,
    Fill,
    Funding,
    InputEvent,
    IsolatedMargin,
    MarginCall,
    MarginRestored,
    OutEvent,
    Params,
    ParamsChanged,
    Price,
    Rejected,
    Settled,
    Vol,
    Withdraw,
    bounded_detail,
    event_to_json,
)
from solvency.core.model.instruments import Instrument
from solvency.core.model.venue import ConfigError, Venue, build_venue, merge_config
from solvency.core.options import black76_greeks, black76_price
from solvency.core.options.exposure import greeks_exposure
from solvency.core.options.margin import option_margin
from solvency.core.oracle import OracleReport
from solvency.core.portfolio import (
    KIND_CALL,
    KIND_FUTURE,
    KIND_PUT,
    ScenarioGrid,
    portfolio_margin,
)
from solvency.core.units import (
    MAX_QUANTA,
    PPM,
    UnitError,
    div_round,
    format_quanta,
    from_quanta,
    to_quanta,
)
from solvency.core.volatility import liquidation_probability_driftless
from solvency.engine.context import PositionChange
from solvency.engine.feeds import Feeds
from solvency.engine.liquidation import BAD_DEBT, INSURANCE_ROW, SYSTEM_ROWS, Liquidator
from solvency.engine.ports import Liquidity, StaticDepth
from solvency.engine.pretrade import Order
from solvency.engine.state import Book

__all__ = ["Engine", "EngineError", "RejectReason"]

SNAPSHOT_VERSION = 1
ORACLE_MAX_JUMP_MS = 86_400_000
"""An oracle report more than a day ahead of the engine clock is refused."""
DEFAULT_LIQUIDITY = StaticDepth(lots_per_level=10**12, level_bps=10, levels=10)
"""Without a liquidity model, liquidation orders fill in full 0.1 % through the mark."""
DEFAULT_VOLATILITY = 0.8
"""Annualized volatility assumed for a market before its marks carry timestamps."""
EWMA_LAMBDA_DAILY = 0.94
MS_PER_YEAR = 365 * 86_400_000
STREET = "__street__"
"""Default counterparty of seeded positions (the rest of the market)."""


class EngineError(RuntimeError):
    """A broken invariant inside the engine (never an input error)."""


class RejectReason(Exception):  # noqa: N818 - an expected outcome, not an error
    """Raised by a handler before it mutates anything; becomes a Rejected out-event."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _cross_ledger_id(account: str) -> str:
    return f"u:{account}"


def _iso_name(account: str, market: str) -> str:
    return f"{account}/{market}"


class Engine:
    """Deterministic risk engine over one venue's accounts.

    Parameters
    ----------
    venue
        The venue (a preset or a user's config) whose assets and markets it runs.
    """

    def __init__(self, venue: Venue, *, liquidity: Liquidity | None = None,
                 policy: LiquidationPolicy | None = None,
                 pm_grid: ScenarioGrid | None = None) -> None:
        self.venue = venue
        self.pm_grid = pm_grid
        self.n_pm = 0  # portfolio-margined rows
        pmc = dict(venue.raw.get("portfolio_margin", {}))
        unknown_pm = set(pmc) - {"combine", "correlation"}
        if unknown_pm:
            raise ConfigError(f"portfolio_margin: unknown keys {sorted(unknown_pm)}")
        self.pm_combine = str(pmc.get("combine", "sum"))
        if self.pm_combine not in ("sum", "correlation"):
            raise ConfigError("portfolio_margin.combine: 'sum' or 'correlation'")
        # {"BTC/ETH": 0.8}: correlation of per-underlying requirements (default 1: sum)
        self.pm_correlation = {tuple(sorted(str(k).split("/"))): float(v)
                               for k, v in dict(pmc.get("correlation", {})).items()}
        self.liquidity: Liquidity = liquidity if liquidity is not None else DEFAULT_LIQUIDITY
        self.liquidator = Liquidator(self, policy if policy is not None else policy_for(
            venue.name))
        self.market_data: dict[str, dict[str, Any]] = {
            name: dict(data) for name, data in dict(venue.raw.get("markets", {})).items()
        }
        self.book = Book(venue)
        self.ledger = Ledger(venue.assets)
        self.feeds = Feeds(self, venue.raw.get("oracle"))
        ins = dict(venue.raw.get("insurance", {}))
        unknown = set(ins) - {"fee_share_ppm", "policy"}
        if unknown:
            raise ConfigError(f"insurance: unknown keys {sorted(unknown)}")
        self.fee_share_ppm = int(ins.get("fee_share_ppm", 0))
        if not 0 <= self.fee_share_ppm <= PPM:
            raise ConfigError("insurance.fee_share_ppm: must be in [0, 1e6]")
        try:
            self.fee_policy = FeeSharePolicy(**ins["policy"]) if "policy" in ins else None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"insurance.policy: {exc}") from None
        self.margin_call_ratio = float(venue.margin_call_ratio)
        self.accounts: dict[str, str] = {}  # account -> default margin mode
        self.seen_ids: set[str] = set()
        self.clock_ms: int | None = None
        self.out_seq = 0
        self.counts = {"events": 0, "applied": 0, "rejected": 0, "duplicates": 0}
        # bumped by anything that may change the state (every apply, the direct loaders):
        # read-only views cache what they derive from the whole book (ADL ranks) per epoch
        self.epoch = 0
        self._adl_cache: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}
        self.realized: dict[str, int] = {}  # row name -> realized PnL quanta (reporting)
        self.settle_asset = [self.book.asset_index[i.settle] for i in self.book.instruments]
        self.tick_value_quanta = [self._tv(i) for i in self.book.instruments]
        # options: mark implied vols and, per underlying market, its option markets
        self.ivs: dict[int, Decimal] = {}
        self._options_of: dict[int, list[int]] = {}
        for o, inst in enumerate(self.book.instruments):
            if inst.is_option:
                u = self.book.market_index[str(inst.underlying)]
                self._options_of.setdefault(u, []).append(o)
        self._dbal = np.zeros(len(self.book.asset_names), dtype=np.int64)
        # small reusable buffers of the fill path (an allocation costs ~0.5 us)
        self._out_buf = np.empty((8, 4))
        self._slot_buf = np.empty(8, dtype=np.int64)
        self._row_buf = np.empty(8, dtype=np.int64)
        self._out4 = np.empty(4)
        self._rows2 = np.empty(2, dtype=np.int64)
        self._slots2 = np.empty(2, dtype=np.int64)
        self._below = np.zeros(1, dtype=np.int64)
        self._traded: list[int] = []
        self.asset_decimals = [self.venue.assets[x].decimals for x in self.book.asset_names]
        self._market_of: dict[str, int] = {}
        self._index_markets()
        # EWMA of mark log returns per market (RiskMetrics lambda 0.94 per day, scaled to
        # each step's length): the volatility behind the liquidation probabilities.
        n_m = len(self.book.market_names)
        self.vol_var_annual = np.full(n_m, np.nan)
        self.vol_last = np.full(n_m, np.nan)
        self.vol_last_ms = np.zeros(n_m, dtype=np.int64)
        self.default_volatility = DEFAULT_VOLATILITY
        self._handlers: dict[type, Callable[[Any], list[OutEvent]]] = {
            Fill: self._fill, Price: self._price, Deposit: self._deposit,
            Withdraw: self._withdraw, Funding: self._funding, Expiry: self._expiry,
            Params: self._params, AccountMode: self._account_mode,
            IsolatedMargin: self._isolated_margin,
            OracleReport: self._oracle, Order: self._order, Vol: self._vol,
        }

    def _index_markets(self) -> None:
        """Market name or alias -> index, resolved as :meth:`Venue.resolve` does (names
        first, then aliases in market order): a dict hit instead of a scan per fill."""
        index = {name: self.book.market_index[name] for name in self.venue.markets}
        for inst in self.venue.markets.values():
            for alias in inst.aliases:
                index.setdefault(alias, self.book.market_index[inst.name])
        self._market_of = index

    def _tv(self, inst: Instrument) -> int:
        """Settlement quanta per lot per tick (0 for inverse markets: not exact)."""
        if inst.is_inverse:
            return 0
        return inst.tick_value_quanta(self.venue.assets[inst.settle].decimals)

    # ================================================================ apply

    def apply(self, event: InputEvent | OracleReport | Order) -> list[Any]:
        """Apply one input event; return the out-events it caused."""
        self.counts["events"] += 1
        self.epoch += 1
        if event.id in self.seen_ids:
            self.counts["duplicates"] += 1
            return []
        ts = event.ts_ms
        try:
            # oracle reports may lag the clock (each source's age is the guard's business)
            if ts is not None and self.clock_ms is not None and ts < self.clock_ms and (
                not isinstance(event, OracleReport)
            ):
                raise RejectReason("out_of_order",
                                   f"ts {ts} is before the engine clock {self.clock_ms}")
            handler = self._handlers.get(type(event))
            if handler is None:
                raise RejectReason("unknown_type", f"{type(event).__name__}")
            out = handler(event)
        except RejectReason as rej:
            self.counts["rejected"] += 1
            # The out-event id derives from the input id: a rejection consumes no
            # sequence number, so it leaves the state (and its hash) exactly as it was.
            return [Rejected(id=f"rejected:{event.id}", event=event.id, reason=rej.reason,
                             detail=bounded_detail(rej.detail))]
        self.seen_ids.add(event.id)
        if ts is not None and (self.clock_ms is None or ts > self.clock_ms):
            self.clock_ms = ts
            out.extend(self._tick(ts, event.id))
        self.counts["applied"] += 1
        return out

    def apply_all(self, events: Iterable[InputEvent | OracleReport | Order]) -> list[Any]:
        """Apply events in order; return every out-event."""
        out: list[Any] = []
        for ev in events:
            out.extend(self.apply(ev))
        return out

    def next_id(self) -> str:
        self.out_seq += 1
        return f"o{self.out_seq}"

    # ================================================================ lookups

    def _market(self, name: str) -> tuple[int, Instrument]:
        inst = self.venue.resolve(name)
        if inst is None:
            raise RejectReason("unknown_market", f"market {name!r}")
        m = self.book.market_index[inst.name]
        return m, self.book.instruments[m]

    def _asset(self, symbol: str) -> int:
        a = self.book.asset_index.get(symbol)
        if a is None:
            raise RejectReason("unknown_asset", f"asset {symbol!r}")
        return a

    def _known(self, account: str) -> None:
        if account not in self.accounts:
            raise RejectReason("unknown_account", f"account {account!r} has no deposit")

    def _quanta(self, value: Decimal, a: int, field: str) -> int:
        if not value:
            return 0
        try:
            q = to_quanta(value, self.asset_decimals[a], "exact")
        except UnitError as exc:
            raise RejectReason("invalid_amount", f"{field}: {exc}") from None
        if abs(q) > MAX_QUANTA:
            raise RejectReason("amount_too_large", f"{field}: {value}")
        return q

    def _ensure_cross_row(self, account: str) -> int:
        r = self.book.row_index.get(account)
        if r is None:
            r = self.book.add_row(account, account, -1, _cross_ledger_id(account), True)
        return r

    def system_ledger_id(self, name: str) -> str:
        """Ledger account of an engine-run row (created on first use)."""
        return self.book.rows[self.system_row(name)].ledger_id

    def system_row(self, name: str) -> int:
        """Row of an engine-run account: the market, the backstop vault, the fund."""
        r = self.book.row_index.get(name)
        if r is None:
            ledger_id = INSURANCE if name == INSURANCE_ROW else _cross_ledger_id(name)
            r = self.book.add_row(name, name, -1, ledger_id, False)
            self.accounts.setdefault(name, "cross")
            for a in range(len(self.book.asset_names)):
                self.sync_balance(r, a)
        return r

    def allows_liquidation(self, m: int) -> bool:
        """Whether liquidations may run in market ``m`` now (circuit breakers)."""
        return self.feeds.allows(self.book.market_names[m], "liquidate")

    def sync_balance(self, r: int, a: int) -> None:
        book = self.book
        q = self.ledger.balance(book.rows[r].ledger_id, book.asset_names[a])
        book.row_int[r, a] = q
        if book.linked[a]:
            book.set_balance(r, a, q)

    def post(self, batch: list[Transfer]) -> None:
        result = self.ledger.post(batch)
        if result is not Result.OK:
            # Handlers check every precondition first; reaching here is a bug.
            raise EngineError(f"ledger refused a validated batch: {result}")

    def whatif(self, r: int, weighted: bool, m: int, delta_lots: int, oi_lots_m: int,
                a: int, dq: int) -> np.ndarray:
        """Row ``r`` valued as if market ``m``'s position moved by ``delta_lots`` (open
        interest ``oi_lots_m``) and its balance of asset ``a`` by ``dq`` quanta."""
        book = self.book
        vec = self._dbal
        vec.fill(0)
        vec[a] = dq
        out = self._out4
        oi_c = oi_lots_m * book.lot_size[m] if m >= 0 else 0.0
        row_whatif(r, 1 if weighted else 0, m, float(delta_lots), oi_c, vec, book.row_first,
                   book.st, book.row_int, book.mk, book.mki, book.tiers, book.asset_price,
                   book.ascale, book.atier_start, book.atier_count, book.atiers, out)
        return out

    # ================================================================ handlers

    def _deposit(self, ev: Deposit) -> list[OutEvent]:
        a = self._asset(ev.asset)
        q = self._quanta(ev.amount, a, "amount")
        ledger_id = (INSURANCE if ev.account == INSURANCE_ROW
                     else _cross_ledger_id(ev.account))
        if self.ledger.balance(ledger_id, ev.asset) + q > MAX_QUANTA:
            # the book mirrors balances in int64: bound them before anything is created
            raise RejectReason("balance_too_large",
                               f"{ev.account}'s {ev.asset} balance would exceed "
                               f"{format_quanta(MAX_QUANTA, self.asset_decimals[a])}")
        if ev.account in SYSTEM_ROWS:
            # capitalising the insurance fund or the backstop vault
            r = self.system_row(ev.account)
        else:
            r = self._ensure_cross_row(ev.account)
        self.accounts.setdefault(ev.account, "cross")
        self.post([Transfer(EXTERNAL, self.book.rows[r].ledger_id, ev.asset, q, "deposit")])
        self.sync_balance(r, a)
        return self._check_rows(np.array([r], dtype=np.int64), ev.id)

    def _withdraw(self, ev: Withdraw) -> list[OutEvent]:
        a = self._asset(ev.asset)
        self._known(ev.account)
        q = self._quanta(ev.amount, a, "amount")
        r = self.book.row_index[ev.account]
        have = self._cash(r, a)
        if have < q:
            raise RejectReason("insufficient_balance",
                               f"{ev.account} holds {from_quanta(have, self.asset_decimals[a])} "
                               f"{ev.asset}, asked {ev.amount}")
        if self.book.row_nslots[r] > 0 or self._has_negative_balance(r):
            self.book.refresh(np.array(self.book.row_slots(r), dtype=np.int64))
            after = self.whatif(r, True, -1, 0, 0, a, -q)
            im_after = after[OUT_IM]
            if not np.isnan(self.book.pm[r, 0]):
                im_after = self.pm_requirements(np.array([r], dtype=np.int64))[0][0]
            if not after[OUT_COLLATERAL] - im_after >= 0.0:
                raise RejectReason(
                    "insufficient_initial_margin",
                    f"withdrawal would leave collateral {after[OUT_COLLATERAL]:.2f} USD "
                    f"below initial margin {im_after:.2f} USD")
        self.post([Transfer(_cross_ledger_id(ev.account), EXTERNAL, ev.asset, q, "withdraw")])
        self.sync_balance(r, a)
        return self._check_rows(np.array([r], dtype=np.int64), ev.id)

    def _cash(self, r: int, a: int) -> int:
        """Wallet balance of a row in an asset: ledger balance plus the entry value of its
        positions settled in that asset (the cash it would hold with positions at entry)."""
        book = self.book
        cash = self.ledger.balance(book.rows[r].ledger_id, book.asset_names[a])
        for s in book.row_slots(r):
            if self.settle_asset[int(book.slot_market[s])] == a:
                cash += int(book.slot_cost[s])
        return cash

    def _has_negative_balance(self, r: int) -> bool:
        return bool((self.book.row_int[r, : len(self.book.asset_names)] < 0).any())

    def _price(self, ev: Price) -> list[OutEvent]:
        book = self.book
        if ev.asset is not None:
            a = self._asset(ev.asset)
            if book.asset_link[a] >= 0:
                raise RejectReason("price_from_market",
                                   f"asset {ev.asset} is priced by market "
                                   f"{book.market_names[int(book.asset_link[a])]}")
            if self.venue.assets[ev.asset].price_usd is not None:
                raise RejectReason("fixed_price", f"asset {ev.asset} has a fixed USD price")
            raise RejectReason("unknown_asset", f"asset {ev.asset} takes no price events")
        assert ev.market is not None
        m, inst = self._market(ev.market)
        if book.expired[m]:
            raise RejectReason("market_expired", f"market {inst.name} has expired")
        if ev.price > Decimal(10) ** 12:
            raise RejectReason("price_too_large", f"price {ev.price}")
        # on the tick grid and at least one tick, like a fill's price: a mark of 1e-30
        # made an inverse market's funding divide by almost nothing
        _on_grid(ev.price, inst.tick_size, "price", "price_off_tick")
        if inst.is_option:
            # a mark price given directly: requirements at that premium
            u = book.market_index[str(inst.underlying)]
            if book.marks[u] is None:
                raise RejectReason("no_mark", f"underlying {inst.underlying} has no mark yet")
            book.mk[m, MK_IM_SLOPE], book.mk[m, MK_MM_SLOPE] = self.option_requirements(
                m, float(ev.price))
        return self._set_mark(m, ev.price, ev.ts_ms, ev.id)

    def _set_mark(self, m: int, price: Decimal, ts_ms: int | None,
                  cause: str) -> list[OutEvent]:
        """Set a market's mark, re-margin its holders, margin calls and liquidations."""
        book = self.book
        moved = book.set_mark(m, price)
        if ts_ms is not None:
            self._track_volatility(m, float(price), ts_ms)
        rows, out = book.mark_market(m)
        if moved:
            # the coin this market prices may be collateral, or settle other markets
            extra = [x for x in (book.asset_holders[a].view() for a in moved) if x.shape[0]]
            extra += [x for x in (book.slot_row[book.holders[k].view()]
                                  for k in self._settled_in(moved, m)) if x.shape[0]]
            more = rows[:0]
            if extra:
                # rows not already valued: a mask instead of setdiff1d (which sorts both)
                seen = np.zeros(len(book.rows), dtype=np.bool_)
                seen[rows] = True
                cand = np.unique(np.concatenate(extra))
                more = cand[~seen[cand]]
            if more.shape[0]:
                rows = np.concatenate([rows, more])
                out = np.concatenate([out, book.aggregate(more)])
        events = self._after_valuation(rows, out, cause)
        for o in self._options_of.get(m, ()):
            events.extend(self._reprice_option(o, cause))
        return events

    def _settled_in(self, assets: list[int], m: int) -> list[int]:
        """Markets other than ``m`` settled in one of ``assets``."""
        return [k for k in range(len(self.book.instruments))
                if k != m and self.settle_asset[k] in assets]

    # ---------------------------------------------------------------- options

    def _vol(self, ev: Vol) -> list[OutEvent]:
        """A mark implied volatility: re-price the option and re-margin its holders."""
        m, inst = self._market(ev.market)
        if not inst.is_option:
            raise RejectReason("not_an_option", f"market {inst.name} is not an option")
        if self.book.expired[m]:
            raise RejectReason("market_expired", f"market {inst.name} has expired")
        u = self.book.market_index[str(inst.underlying)]
        if self.book.marks[u] is None:
            raise RejectReason("no_mark", f"underlying {inst.underlying} has no mark yet")
        self.ivs[m] = ev.iv
        return self._reprice_option(m, ev.id)

    def option_price(self, o: int) -> float | None:
        """Black-76 premium per contract of one coin (quote units: USDC, or coin for
        coin-settled options) of option market ``o`` at the underlying's mark, its mark
        volatility and the engine clock (ACT/365, rate 0 as Deribit marks options);
        None before a vol and a mark."""
        book = self.book
        inst = book.instruments[o]
        iv = self.ivs.get(o)
        s_mark = book.marks[book.market_index[str(inst.underlying)]]
        if iv is None or s_mark is None or inst.expiry_ms is None or inst.strike is None:
            return None
        f = float(s_mark)
        k = float(inst.strike)
        is_call = inst.option_kind == "call"
        t = max(inst.expiry_ms - (self.clock_ms or 0), 0) / MS_PER_YEAR
        if t > 0:
            usd = float(black76_price(forward=f, strike=k, time_yr=t, vol=float(iv),
                                      rate=0.0, is_call=is_call).price[0])
        else:
            usd = max(f - k, 0.0) if is_call else max(k - f, 0.0)
        return usd / f if inst.coin_settled else usd

    def option_requirements(self, o: int, mark: float) -> tuple[float, float]:
        """Deribit standard margin per short contract (initial, maintenance) of option
        market ``o`` at premium ``mark``, in its settlement asset."""
        book = self.book
        inst = book.instruments[o]
        s_mark = book.marks[book.market_index[str(inst.underlying)]]
        assert s_mark is not None and inst.strike is not None
        margin = option_margin(underlying_price=float(s_mark), strike=float(inst.strike),
                               mark_price=mark, size=-1.0,
                               is_call=inst.option_kind == "call",
                               settlement="inverse" if inst.coin_settled else "linear")
        cv = float(inst.contract_size)
        return float(margin.im[0]) * cv, float(margin.mm[0]) * cv

    def _reprice_option(self, o: int, cause: str) -> list[OutEvent]:
        book = self.book
        if book.expired[o]:
            return []
        premium = self.option_price(o)
        if premium is None:
            return []
        tick = book.instruments[o].tick_size
        # the premium on the tick grid, at least one tick (a mark is always positive)
        mark = Decimal(max(1, round(premium / float(tick)))) * tick
        book.mk[o, MK_IM_SLOPE], book.mk[o, MK_MM_SLOPE] = self.option_requirements(
            o, float(mark))
        return self._set_mark(o, mark, self.clock_ms, cause)

    # ---------------------------------------------------------------- oracle, orders

    def _oracle(self, ev: OracleReport) -> list[Any]:
        """An oracle report: guard -> index -> mark (with provenance) -> breakers."""
        # A report's timestamp is its event time: it moves the clock forward, but a jump
        # beyond ORACLE_MAX_JUMP_MS (a source with a broken clock) is refused, so one
        # bad source cannot push the engine into the future.
        clock = self.clock_ms
        if clock is not None and ev.ts_ms - clock > ORACLE_MAX_JUMP_MS:
            raise RejectReason("future_timestamp",
                               f"ts {ev.ts_ms} is {ev.ts_ms - clock} ms ahead of the engine "
                               f"clock {clock} (limit {ORACLE_MAX_JUMP_MS} ms)")
        now = ev.ts_ms if clock is None or ev.ts_ms > clock else clock
        _t, update, refused = self.feeds.report(ev, now)
        if refused is not None:
            raise RejectReason(refused.reason, refused.detail)
        if update is None:
            return []
        return self._apply_index(update, ev.id)

    def _apply_index(self, update: Any, cause: str) -> list[Any]:
        price, events = self.feeds.mark_for(update, cause)
        m = self.book.market_index[update.market]
        if price is not None and price > 0 and price != self.book.marks[m] and (
                not self.book.expired[m]):
            events.extend(self._set_mark(m, price, update.ts_ms, cause))
        if self.liquidator.deficit_rows and any(e.type == "breaker" for e in events):
            events.extend(self._retry_deficits(cause))
        return events

    def _retry_deficits(self, cause: str) -> list[Any]:
        """A breaker changed state: retry liquidations it had held back."""
        rows = np.array(sorted(self.liquidator.deficit_rows), dtype=np.int64)
        return list(self.liquidator.sweep(rows, self.book.aggregate(rows), cause))

    def _tick(self, now_ms: int, cause: str) -> list[Any]:
        """Time moved: stale sources leave the index, breakers cool down and recover."""
        updates, events = self.feeds.tick(now_ms, cause)
        for update in updates:
            events.extend(self._apply_index(update, cause))
        if events and self.liquidator.deficit_rows:
            events.extend(self._retry_deficits(cause))
        return events

    def _order(self, ev: Order) -> list[Any]:
        """Pre-trade check of an order: accepted or rejected with a reason; no balance
        moves until it is filled."""
        return [self.feeds.check(ev, ev.ts_ms if ev.ts_ms is not None else (
            self.clock_ms or 0))]

    def _after_valuation(self, rows: np.ndarray, out: np.ndarray,
                         cause: str) -> list[OutEvent]:
        """Margin calls, then liquidations, for rows just valued."""
        pm_idx = (np.flatnonzero(~np.isnan(self.book.pm[rows, 0])) if self.n_pm
                  else rows[:0])
        if pm_idx.shape[0]:
            # portfolio-margined rows: scenario-grid requirements, then value them again
            sel = rows[pm_idx]
            self.refresh_pm(sel)
            out = out.copy()
            out[pm_idx] = self.book.aggregate(sel)
        events = self._crossings(rows, out, cause)
        events.extend(self.liquidator.sweep(rows, out, cause))
        return events

    def _track_volatility(self, m: int, price: float, ts_ms: int) -> None:
        """EWMA variance of log returns, annualized: ``var = l*var + (1-l)*r^2/dt`` with
        ``l = 0.94 ** (dt / 1 day)`` (RiskMetrics 1996, any sampling interval)."""
        last, last_ms = self.vol_last[m], int(self.vol_last_ms[m])
        self.vol_last[m] = price
        self.vol_last_ms[m] = ts_ms
        if np.isnan(last) or ts_ms <= last_ms:
            return
        dt_years = (ts_ms - last_ms) / MS_PER_YEAR
        r = float(np.log(price / last))
        lam = EWMA_LAMBDA_DAILY ** ((ts_ms - last_ms) / 86_400_000)
        obs = r * r / dt_years
        prev = self.vol_var_annual[m]
        self.vol_var_annual[m] = obs if np.isnan(prev) else lam * prev + (1 - lam) * obs

    def volatility(self, m: int) -> float:
        """Annualized volatility of a market's mark (EWMA; the default before data)."""
        var = self.vol_var_annual[m]
        return self.default_volatility if np.isnan(var) else float(np.sqrt(var))

    def _check_rows(self, rows: np.ndarray, cause: str) -> list[OutEvent]:
        """Value rows and emit margin calls for those that crossed the warning level."""
        if rows.shape[0] == 0:
            return []
        return self._after_valuation(rows, self.book.aggregate(rows), cause)

    def _touch(self, slots: list[int], rows: np.ndarray, cause: str) -> list[OutEvent]:
        """Re-mark ``slots``, value ``rows`` and emit margin calls, in one kernel call."""
        book = self.book
        if self.n_pm and (~np.isnan(book.pm[rows, 0])).any():
            book.refresh(np.array(slots, dtype=np.int64))
            return self._check_rows(rows, cause)
        out = self._out_buf[: rows.shape[0]]
        if len(slots) == 2:
            buf = self._slots2
            buf[0], buf[1] = slots
        else:
            buf = self._slot_buf[: len(slots)]
            buf[:] = slots
        below = self._below
        hits = touch_rows(buf, rows, book.st, book.row_int,
                          book.mk, book.mki, book.tiers, book.asset_price, book.ascale,
                          book.atier_start, book.atier_count, book.atiers, book.warned,
                          self.margin_call_ratio, out, book.pm, below)
        events = self._events_for(hits, rows, out, cause) if hits.shape[0] else []
        if below[0] or self.liquidator.deficit_rows:
            events.extend(self.liquidator.sweep(rows, out, cause))
        return events

    def _crossings(self, rows: np.ndarray, out: np.ndarray, cause: str) -> list[OutEvent]:
        """Margin-call out-events for rows whose ratio crossed the warning level.

        Margin ratio = maintenance / collateral (Binance's definition); a row with no
        maintenance requirement has ratio 0, one with none or negative collateral and a
        requirement has ratio infinity. Out-events are ordered by account name.
        """
        if rows.shape[0] == 0:
            return []
        crossed = margin_crossings(rows, out, self.book.warned, self.margin_call_ratio)
        if crossed.shape[0] == 0:
            return []
        return self._events_for(crossed, rows, out, cause)

    def _events_for(self, crossed: np.ndarray, rows: np.ndarray, out: np.ndarray,
                    cause: str) -> list[OutEvent]:
        book = self.book
        events: list[OutEvent] = []
        for i in sorted(crossed.tolist(), key=lambda i: book.rows[int(rows[i])].name):
            r = int(rows[i])
            coll, mm = float(out[i, OUT_COLLATERAL]), float(out[i, OUT_MM])
            ratio = _ratio(mm, coll)
            name = book.rows[r].name
            if book.warned[r]:
                events.append(MarginCall(id=self.next_id(), event=cause, account=name,
                                         margin_ratio=_fmt(ratio), collateral_usd=_fmt(coll),
                                         maintenance_usd=_fmt(mm)))
            else:
                events.append(MarginRestored(id=self.next_id(), event=cause, account=name,
                                             margin_ratio=_fmt(ratio)))
        return events

    # ---------------------------------------------------------------- fills

    def _side(self, account: str, m: int, market: str, delta: int, fee: int) -> PositionChange:
        mode = self.accounts.get(account)
        if mode is None:
            raise RejectReason("unknown_account", f"account {account!r} has no deposit")
        isolated = mode == "isolated"
        name = _iso_name(account, market) if isolated else account
        book = self.book
        r = book.row_index.get(name, -1)
        old = 0
        s = -1
        if r >= 0:
            s = book.pos_slot.get(r * book.n_markets + m, -1)
            if s >= 0:
                old = book.st.item(s, S_LOTS)
        return PositionChange(account, r, name, "u:" + name, isolated, old, old + delta, fee, s)

    def _fill(self, ev: Fill) -> list[OutEvent]:
        book = self.book
        m = self._market_of.get(ev.market, -1)
        if m < 0:
            m, _ = self._market(ev.market)
        inst = book.instruments[m]
        if book.expired[m] or (inst.expiry_ms is not None and self.clock_ms is not None
                               and self.clock_ms >= inst.expiry_ms):
            raise RejectReason("market_expired", f"market {inst.name} has expired")
        if ev.buyer == ev.seller:
            raise RejectReason("self_trade", f"buyer and seller are both {ev.buyer!r}")
        mode = self.feeds.mode(inst.name) if self.feeds.used else "normal"
        if mode == "halted":
            raise RejectReason("market_halted", f"market {inst.name} is halted")
        a = self.settle_asset[m]
        if book.marks[m] is None or math.isnan(book.asset_price[a]):
            raise RejectReason("no_mark", f"market {inst.name} has no mark price yet")
        lots = _on_grid(ev.size, inst.lot_size, "size", "invalid_size")
        ticks = _on_grid(ev.price, inst.tick_size, "price", "price_off_tick")
        fee_b = self._quanta(ev.fee_buyer, a, "fee_buyer") if ev.fee_buyer else 0
        fee_s = self._quanta(ev.fee_seller, a, "fee_seller") if ev.fee_seller else 0
        buyer = self._side(ev.buyer, m, inst.name, lots, fee_b)
        seller = self._side(ev.seller, m, inst.name, -lots, fee_s)
        settle = inst.settle
        inverse = inst.is_inverse
        tv = self.tick_value_quanta[m]
        # --- money of the trade, exact
        if inverse:
            dec = self.asset_decimals[a]
            coin = Fraction(lots) * Fraction(inst.lot_size) * Fraction(inst.contract_size) / (
                Fraction(ev.price)) * 10**dec
            pay = div_round(coin.numerator, coin.denominator, "ceil")
            get = div_round(coin.numerator, coin.denominator, "floor")
            # inverse long receives coin: seller pays (rounded up), buyer gets (rounded down)
            flow_b, flow_s = get, -pay
            cost_b, cost_s = -get, pay
            per_lot = tv or 1
        else:
            pay = get = lots * ticks * tv
            flow_b, flow_s = -pay, pay
            cost_b, cost_s = pay, -pay
            per_lot = ticks * (tv or 1)
        if (pay > MAX_QUANTA or abs(buyer.lots_after) * per_lot > MAX_QUANTA
                or abs(seller.lots_after) * per_lot > MAX_QUANTA):
            big = buyer if pay > MAX_QUANTA or abs(buyer.lots_after) * per_lot > MAX_QUANTA \
                else seller
            raise RejectReason("size_too_large", f"position of {big.account} too large")
        oi_after = (book.oi_lots[m] + max(buyer.lots_after, 0) - max(buyer.lots_before, 0)
                    + max(seller.lots_after, 0) - max(seller.lots_before, 0))
        # --- margin: a side whose risk grows must hold initial margin after the fill
        iso_topups: dict[str, int] = {}
        for side, flow, fee in ((buyer, flow_b, fee_b), (seller, flow_s, fee_s)):
            if not _risk_grows(side.lots_before, side.lots_after):
                continue
            if mode == "reduce_only":
                raise RejectReason("market_reduce_only",
                                   f"market {inst.name} is reduce-only: {side.account} "
                                   "would grow a position")
            self._check_side_margin(side, m, a, flow - fee, oi_after, iso_topups)
        # --- commit
        for side in (buyer, seller):
            if side.row < 0:
                side.row = book.add_row(side.row_name, side.account, m if side.isolated else -1,
                                        side.ledger_id, not side.isolated)
        batch: list[Transfer] = []
        if iso_topups:
            for side in (buyer, seller):
                top = iso_topups.get(side.ledger_id, 0)
                if top:
                    batch.append(Transfer(_cross_ledger_id(side.account), side.ledger_id,
                                          settle, top, "isolated_margin"))
        if inverse:
            batch.append(Transfer(seller.ledger_id, CLEARING, settle, pay, "fill"))
            batch.append(Transfer(CLEARING, buyer.ledger_id, settle, get, "fill"))
            if pay != get:
                batch.append(Transfer(CLEARING, ROUNDING, settle, pay - get, "rounding"))
        else:
            batch.append(Transfer(buyer.ledger_id, seller.ledger_id, settle, pay, "fill"))
        share = self.fee_share_ppm
        for side in (buyer, seller):
            fee = side.fee_quanta
            if fee > 0:
                # the insurance fund's share of fees, rounded down (the rest to the pool)
                to_fund = fee * share // PPM if share else 0
                if to_fund:
                    batch.append(Transfer(side.ledger_id, INSURANCE, settle, to_fund,
                                          "fee_insurance"))
                if fee - to_fund:
                    batch.append(Transfer(side.ledger_id, FEES, settle, fee - to_fund, "fee"))
            elif fee < 0:
                batch.append(Transfer(FEES, side.ledger_id, settle, -fee, "rebate"))
        self.post(batch)
        ledger = self.ledger
        traded = self._traded
        traded.clear()
        for side, cost in ((buyer, cost_b), (seller, cost_s)):
            s = self.move_position(side, m, cost)
            if s >= 0:
                traded.append(s)
            book.set_balance(side.row, a, ledger.balance(side.ledger_id, settle))
        br, sr = buyer.row, seller.row
        if iso_topups:
            touched = {br, sr}
            for side in (buyer, seller):
                if side.isolated and side.ledger_id in iso_topups:
                    cross = book.row_index[side.account]
                    self.sync_balance(cross, a)
                    touched.add(cross)
            uniq = sorted(touched)
            rows = self._row_buf[: len(uniq)]
            rows[:] = uniq
        else:
            rows = self._rows2
            rows[0], rows[1] = (br, sr) if br < sr else (sr, br)
        book.set_oi(m, oi_after)
        out = self._touch(traded, rows, ev.id)
        for side in (buyer, seller):
            if side.isolated and side.lots_after == 0:
                out.extend(self._release_bucket(side, a, ev.id))
        if self.fee_policy is not None:
            out.extend(self._review_fee_share(settle, ev.id))
        return out

    def open_interest_quanta(self, asset: str) -> int:
        """Open-interest notional (one side, at the marks) of markets settled in
        ``asset``, in its quanta (rounded down)."""
        book = self.book
        oi = 0.0
        for m, inst in enumerate(book.instruments):
            if inst.settle != asset or book.marks[m] is None:
                continue
            contracts = book.oi_lots[m] * book.lot_size[m] * float(inst.contract_size)
            mark = float(book.mk[m, 3])
            oi += contracts / mark if inst.is_inverse else contracts * mark
        return int(oi * book.asset_scale[book.asset_index[asset]])

    def coverage(self, asset: str) -> float:
        """Insurance fund / open-interest notional of the markets settled in ``asset``."""
        oi = self.open_interest_quanta(asset)
        return self.ledger.balance(INSURANCE, asset) / oi if oi > 0 else float("inf")

    def _review_fee_share(self, asset: str, cause: str) -> list[Any]:
        """The fee-share policy hook: coverage below target raises the fund's share of
        fees (above the release level lowers it), as a ``params_changed`` out-event."""
        assert self.fee_policy is not None
        fund = max(self.ledger.balance(INSURANCE, asset), 0)
        oi = self.open_interest_quanta(asset)
        change = fee_share_update(self.fee_policy, fund_quanta=fund, open_interest_quanta=oi,
                                  current_share_ppm=self.fee_share_ppm)
        if not change:
            return []
        old = self.fee_share_ppm
        self.fee_share_ppm = int(change[self.fee_policy.param])
        cov = fund / oi if oi else float("inf")
        return [ParamsChanged(id=self.next_id(), event=cause, param=self.fee_policy.param,
                              old=str(old), new=str(self.fee_share_ppm),
                              reason=f"insurance coverage of {asset} open interest {cov:.6g}")]

    def _oi_after(self, m: int, buyer: PositionChange, seller: PositionChange) -> int:
        oi = self.book.oi_lots[m]
        for side in (buyer, seller):
            oi += max(side.lots_after, 0) - max(side.lots_before, 0)
        return oi

    def _check_side_margin(self, side: PositionChange, m: int, a: int, dq: int, oi_after: int,
                           iso_topups: dict[str, int]) -> None:
        book = self.book
        delta = side.lots_after - side.lots_before
        after = self.whatif(side.row, not side.isolated, m, delta, oi_after, a, dq)
        free = after[OUT_COLLATERAL] - after[OUT_IM]
        if self.n_pm and side.row >= 0 and not np.isnan(book.pm[side.row, 0]):
            # portfolio margin: the grid's initial margin with the trade included
            free = after[OUT_COLLATERAL] - self.pm_requirements(
                np.array([side.row], dtype=np.int64), extra=(m, delta))[0][0]
        if not side.isolated:
            if not free >= 0.0:
                raise RejectReason(
                    "insufficient_initial_margin",
                    f"{side.account}: collateral {after[OUT_COLLATERAL]:.2f} USD after the "
                    f"fill is below initial margin {after[OUT_IM]:.2f} USD")
            return
        # isolated: top the bucket up from the account's cross balance, rounded up
        px = float(book.asset_price[a])
        short_settle = max(0.0, -free) / px
        top = int(np.ceil(short_settle * 10 ** self.asset_decimals[a])) + (1 if free < 0 else 0)
        if top <= 0:
            return
        cross = book.row_index.get(side.account, -1)
        have = self._cash(cross, a) if cross >= 0 else 0
        if cross < 0 or have < top:
            raise RejectReason("insufficient_initial_margin",
                               f"{side.account}: isolated margin needs {top} quanta of "
                               f"{book.asset_names[a]}, the account holds {have}")
        cross_after = self.whatif(cross, True, -1, 0, 0, a, -top)
        if not cross_after[OUT_COLLATERAL] - cross_after[OUT_IM] >= 0.0:
            raise RejectReason("insufficient_initial_margin",
                               f"{side.account}: moving isolated margin would leave the "
                               "cross account below initial margin")
        iso_topups[side.ledger_id] = top

    def move_position(self, change: PositionChange, m: int, trade_cost_quanta: int) -> int:
        """Update lots and cost basis; realized PnL is reported, never posted.

        Returns the position's slot, or -1 when the position closed."""
        book = self.book
        s = change.slot
        if s < 0:
            s = book.pos_slot.get(change.row * book.n_markets + m, -1)
            if s < 0:
                s = book.open_slot(change.row, m)
        old, new = change.lots_before, change.lots_after
        cost = book.slot_cost.item(s)
        if old == 0 or (old > 0) == (new - old > 0):  # opening or adding
            cost += trade_cost_quanta
        else:
            closed = min(abs(new - old), abs(old))
            # the closed share of the cost basis, rounded toward zero (reporting only)
            removed = _toward_zero(cost * closed, abs(old))
            closing_part = _toward_zero(trade_cost_quanta * closed, abs(new - old))
            self.realized[change.row_name] = self.realized.get(change.row_name, 0) + (
                -closing_part - removed)
            cost -= removed
            if (new > 0) != (old > 0) and new != 0:  # flipped: the rest opens a new position
                cost = trade_cost_quanta - closing_part
        if new == 0:
            book.st[s, S_LOTS] = 0
            book.slot_cost[s] = 0
            book.close_slot(s)
            return -1
        book.st[s, S_LOTS] = new
        book.slot_cost[s] = cost
        return s

    def _release_bucket(self, side: PositionChange, a: int, cause: str) -> list[OutEvent]:
        """Return an emptied isolated bucket's margin to the account's cross balance."""
        asset = self.book.asset_names[a]
        left = self.ledger.balance(side.ledger_id, asset)
        if left <= 0:
            return []
        self.post([Transfer(side.ledger_id, _cross_ledger_id(side.account), asset, left,
                             "isolated_release")])
        self.sync_balance(side.row, a)
        cross = self.book.row_index[side.account]
        self.sync_balance(cross, a)
        return self._check_rows(np.array([cross, side.row], dtype=np.int64), cause)

    # ---------------------------------------------------------------- settlements

    def _funding(self, ev: Funding) -> list[OutEvent]:
        book = self.book
        m, inst = self._market(ev.market)
        if not inst.is_perpetual:
            raise RejectReason("not_perpetual", f"market {inst.name} has no funding")
        mark = book.marks[m]
        if mark is None:
            raise RejectReason("no_mark", f"market {inst.name} has no mark price yet")
        a = self.settle_asset[m]
        dec = self.asset_decimals[a]
        # payment per lot, exact: linear lot x cv x mark x rate; inverse lot x cv / mark x rate
        unit = Fraction(inst.lot_size) * Fraction(inst.contract_size) * Fraction(ev.rate)
        unit = unit / Fraction(mark) if inst.is_inverse else unit * Fraction(mark)
        unit *= 10**dec
        slots = sorted(book.holders[m].view().tolist())
        payers: list[tuple[int, int]] = []
        receivers: list[tuple[int, int]] = []
        for s in slots:
            amount = unit * int(book.slot_lots[s])  # > 0: this position pays
            if amount > 0:
                payers.append((s, div_round(amount.numerator, amount.denominator, "ceil")))
            elif amount < 0:
                receivers.append((s, div_round(-amount.numerator, amount.denominator, "floor")))
        paid = sum(q for _, q in payers)
        received = sum(q for _, q in receivers)
        if max(paid, received) > MAX_QUANTA:
            # bounded before anything is posted: the ledger never refuses a validated batch
            raise RejectReason("amount_too_large",
                               f"funding of {format_quanta(max(paid, received), dec)} "
                               f"{inst.settle} at rate {ev.rate}")
        batch: list[Transfer] = []
        settle = inst.settle
        for s, q in payers:
            if q:
                batch.extend(self._pay(book.rows[int(book.slot_row[s])].ledger_id, settle, q,
                                       "funding"))
        for s, q in receivers:
            if q:
                batch.append(Transfer(CLEARING, book.rows[int(book.slot_row[s])].ledger_id,
                                      settle, q, "funding"))
        if paid - received:
            batch.append(Transfer(CLEARING, ROUNDING, settle, paid - received, "rounding"))
        if batch:
            self.post(batch)
        rows = np.unique(book.slot_row[np.array(slots, dtype=np.int64)]) if slots else (
            np.zeros(0, dtype=np.int64))
        for r in rows.tolist():
            self.sync_balance(r, a)
        out: list[OutEvent] = [Settled(id=self.next_id(), event=ev.id, kind="funding",
                                       market=inst.name, asset=settle,
                                       paid=format_quanta(paid, dec),
                                       received=format_quanta(received, dec),
                                       rounding=format_quanta(paid - received, dec))]
        out.extend(self._check_rows(rows, ev.id))
        return out

    def _pay(self, ledger_id: str, asset: str, amount: int, code: str) -> list[Transfer]:
        """Transfers of a settlement payment into the clearing account. The insurance
        fund pays what it holds of a loss on positions it took over; the rest is the
        venue's recorded bad debt (the fund never goes negative)."""
        if ledger_id != INSURANCE:
            return [Transfer(ledger_id, CLEARING, asset, amount, code)]
        have = max(self.ledger.balance(INSURANCE, asset), 0)
        out = []
        if min(have, amount):
            out.append(Transfer(INSURANCE, CLEARING, asset, min(have, amount), code))
        if amount > have:
            out.append(Transfer(BAD_DEBT, CLEARING, asset, amount - have, "bad_debt"))
        return out

    def _expiry(self, ev: Expiry) -> list[OutEvent]:
        book = self.book
        m, inst = self._market(ev.market)
        if inst.kind not in ("linear_future", "option"):
            raise RejectReason("not_a_future", f"market {inst.name} does not expire")
        if book.expired[m]:
            raise RejectReason("market_expired", f"market {inst.name} already settled")
        if self.clock_ms is not None and inst.expiry_ms is not None and (
            (ev.ts_ms or self.clock_ms) < inst.expiry_ms
        ):
            raise RejectReason("before_expiry", f"market {inst.name} expires at "
                               f"{inst.expiry_ms} ms")
        a = self.settle_asset[m]
        dec = self.asset_decimals[a]
        settle_price = Fraction(ev.price)
        if inst.is_option:
            # cash settlement against the index: the intrinsic value, in coin for
            # coin-settled options (exact fractions; rounding as for futures below)
            k = Fraction(inst.strike or 0)
            intrinsic = max(settle_price - k, Fraction(0)) if inst.option_kind == "call" else (
                max(k - settle_price, Fraction(0)))
            settle_price = intrinsic / settle_price if inst.coin_settled else intrinsic
        unit = Fraction(inst.lot_size) * Fraction(inst.contract_size) * settle_price
        unit *= 10**dec
        slots = sorted(book.holders[m].view().tolist())
        batch: list[Transfer] = []
        paid = received = 0
        settle = inst.settle
        for s in slots:
            lots = int(book.slot_lots[s])
            ledger_id = book.rows[int(book.slot_row[s])].ledger_id
            amount = unit * abs(lots)
            if lots > 0:  # a long closes: receives size x price
                q = div_round(amount.numerator, amount.denominator, "floor")
                received += q
                if q:
                    batch.append(Transfer(CLEARING, ledger_id, settle, q, "expiry"))
            else:
                q = div_round(amount.numerator, amount.denominator, "ceil")
                paid += q
                if q:
                    batch.extend(self._pay(ledger_id, settle, q, "expiry"))
        if paid - received:
            batch.append(Transfer(CLEARING, ROUNDING, settle, paid - received, "rounding"))
        if batch:
            self.post(batch)
        rows = sorted({int(book.slot_row[s]) for s in slots})
        for s in slots:
            r = int(book.slot_row[s])
            name = book.rows[r].name
            lots = int(book.slot_lots[s])
            value = div_round((unit * lots).numerator, (unit * lots).denominator, "down")
            self.realized[name] = self.realized.get(name, 0) + value - int(book.slot_cost[s])
            book.close_slot(s)
        if not inst.is_option:
            book.set_mark(m, ev.price)
        book.expired[m] = True
        book.set_oi(m, 0)
        for r in rows:
            self.sync_balance(r, a)
        out: list[OutEvent] = [Settled(id=self.next_id(), event=ev.id, kind="expiry",
                                       market=inst.name, asset=settle,
                                       paid=format_quanta(paid, dec),
                                       received=format_quanta(received, dec),
                                       rounding=format_quanta(paid - received, dec))]
        rows_arr = np.array(rows, dtype=np.int64)
        out.extend(self._check_rows(rows_arr, ev.id))
        for r in rows:
            info = book.rows[r]
            if info.market == m:
                side = PositionChange(info.account, r, info.name, info.ledger_id, True, 0, 0, 0)
                out.extend(self._release_bucket(side, a, ev.id))
        return out

    def _params(self, ev: Params) -> list[OutEvent]:
        book = self.book
        m, inst = self._market(ev.market)
        for key in ("kind", "base", "quote", "expiry", "contract_size", "lot_size",
                    "tick_size"):
            if key in ev.changes and book.holders[m].view().shape[0] > 0:
                raise RejectReason("invalid_params",
                                   f"{key} cannot change while positions are open")
        current = self.market_data.get(inst.name, {})
        try:
            merged = merge_config({"markets": {inst.name: current}},
                                  {"markets": {inst.name: dict(ev.changes)}})
            data = merged["markets"][inst.name]
            trial = build_venue({**self.venue.raw, "markets": {
                **self.market_data, inst.name: data}})
        except ConfigError as exc:
            raise RejectReason("invalid_params", str(exc)) from None
        new_inst = trial.markets[inst.name]
        self.market_data[inst.name] = data
        book.set_instrument(m, new_inst)
        self.tick_value_quanta[m] = self._tv(new_inst)
        self.venue = Venue(name=self.venue.name, assets=self.venue.assets,
                           markets={**self.venue.markets, inst.name: new_inst},
                           margin_call_ratio=self.venue.margin_call_ratio,
                           source=self.venue.source, as_of=self.venue.as_of,
                           raw={**self.venue.raw, "markets": dict(self.market_data)})
        self._index_markets()
        slots = book.holders[m].view().copy()
        book.refresh(slots)
        out: list[OutEvent] = [Settled(id=self.next_id(), event=ev.id, kind="params",
                                       market=inst.name, asset=inst.settle, paid="0",
                                       received="0", rounding="0")]
        out.extend(self._check_rows(np.unique(book.slot_row[slots]), ev.id))
        return out

    def _account_mode(self, ev: AccountMode) -> list[OutEvent]:
        current = self.accounts.get(ev.account)
        if current is not None and current != ev.mode and self._open_positions(ev.account):
            raise RejectReason("open_positions",
                               f"{ev.account} has open positions; close them to change mode")
        if ev.mode == "portfolio" and self.pm_grid is None:
            raise RejectReason("no_portfolio_grid",
                               "this engine has no scenario grid for portfolio margin")
        self.accounts[ev.account] = ev.mode
        r = self._ensure_cross_row(ev.account)
        self._set_portfolio(r, ev.mode == "portfolio")
        return []

    def _set_portfolio(self, r: int, on: bool) -> None:
        book = self.book
        was = not np.isnan(book.pm[r, 0])
        book.pm[r] = 0.0 if on else np.nan
        book.row_int[r, 4 * len(book.asset_names) + 1] = 1 if on else 0
        self.n_pm += int(on) - int(was)

    def _open_positions(self, account: str) -> bool:
        return any(self.book.row_nslots[r] > 0 for r in self._rows_of(account))

    def _rows_of(self, account: str) -> list[int]:
        return self.book.account_rows.get(account, [])

    def _isolated_margin(self, ev: IsolatedMargin) -> list[OutEvent]:
        book = self.book
        self._known(ev.account)
        m, inst = self._market(ev.market)
        r = book.row_index.get(_iso_name(ev.account, inst.name), -1)
        if r < 0 or book.slot_of(r, m) < 0:
            raise RejectReason("no_isolated_position",
                               f"{ev.account} has no isolated position in {inst.name}")
        a = self.settle_asset[m]
        q = self._quanta(abs(ev.amount), a, "amount")
        cross = book.row_index[ev.account]
        src, dst = (cross, r) if ev.amount > 0 else (r, cross)
        src_id = book.rows[src].ledger_id
        have = self._cash(src, a)
        if have < q:
            raise RejectReason("insufficient_balance",
                               f"{src_id} holds {format_quanta(have, self.asset_decimals[a])} "
                               f"{inst.settle}")
        book.refresh(np.array(book.row_slots(src), dtype=np.int64))
        after = self.whatif(src, src == cross, -1, 0, 0, a, -q)
        if not after[OUT_COLLATERAL] - after[OUT_IM] >= 0.0:
            raise RejectReason("insufficient_initial_margin",
                               "moving the margin would leave the source below initial margin")
        self.post([Transfer(src_id, book.rows[dst].ledger_id, inst.settle, q,
                             "isolated_margin")])
        self.sync_balance(src, a)
        self.sync_balance(dst, a)
        return self._check_rows(np.array(sorted((src, dst)), dtype=np.int64), ev.id)

    # ================================================================ book loading

    def seed_position(self, account: str, market: str, size: Decimal, entry_price: Decimal,
                      *, counterparty: str = STREET) -> None:
        """Load an existing position at its entry price, skipping margin checks.

        For importing a book (portfolio files, simulated populations): the opposite side
        goes to ``counterparty`` so open interest stays balanced, and the entry value
        moves between the two exactly like a fill (payer rounded up, receiver down, the
        remainder to the rounding account). Raises :class:`RejectReason` on bad input.
        """
        self.epoch += 1
        m, inst = self._market(market)
        self._known(account)
        if counterparty not in self.accounts:
            self.accounts[counterparty] = "cross"
            self._ensure_cross_row(counterparty)
        if size == 0:
            raise RejectReason("invalid_size", "size must not be zero")
        lots = _on_grid(abs(size), inst.lot_size, "size", "invalid_size")
        if entry_price <= 0 or not entry_price.is_finite():
            raise RejectReason("non_positive", f"entry_price {entry_price}")
        buyer, seller = (account, counterparty) if size > 0 else (counterparty, account)
        b = self._side(buyer, m, inst.name, lots, 0)
        sd = self._side(seller, m, inst.name, -lots, 0)
        a = self.settle_asset[m]
        dec = self.asset_decimals[a]
        value = (Fraction(lots) * Fraction(inst.lot_size) * Fraction(inst.contract_size)
                 * 10**dec)
        value = value / Fraction(entry_price) if inst.is_inverse else value * Fraction(
            entry_price)
        pay = div_round(value.numerator, value.denominator, "ceil")
        get = div_round(value.numerator, value.denominator, "floor")
        payer, receiver = (sd, b) if inst.is_inverse else (b, sd)
        for side in (b, sd):
            if side.row < 0:
                side.row = self.book.add_row(side.row_name, side.account,
                                             m if side.isolated else -1, side.ledger_id,
                                             not side.isolated)
        batch = [Transfer(payer.ledger_id, CLEARING, inst.settle, pay, "seed"),
                 Transfer(CLEARING, receiver.ledger_id, inst.settle, get, "seed")]
        if pay != get:
            batch.append(Transfer(CLEARING, ROUNDING, inst.settle, pay - get, "rounding"))
        oi_after = self._oi_after(m, b, sd)
        self.post(batch)
        self.move_position(payer, m, pay)
        self.move_position(receiver, m, -get)
        for side in (b, sd):
            self.sync_balance(side.row, a)
        self.book.set_oi(m, oi_after)
        self.book.remargin_rows(np.array(sorted({b.row, sd.row}), dtype=np.int64))

    def load_book(self, accounts: list[str], asset: str, collateral_quanta: np.ndarray,
                  pos_account: np.ndarray, pos_market: np.ndarray, pos_lots: np.ndarray,
                  entry_ticks: np.ndarray, *, counterparty: str = STREET) -> None:
        """Bulk-load new cross accounts with collateral and linear positions (vectorized).

        For populations of many accounts (benchmarks, the stress lab). Positions are in
        linear markets settled in ``asset``, at entry prices on the tick grid, so every
        amount is exact: an account's balance is ``collateral - sum(lots x ticks x
        tick_value)`` and ``counterparty`` holds the opposite side. Margin is not checked.
        """
        self.epoch += 1
        book = self.book
        a = self._asset(asset)
        names = list(accounts)
        if len(set(names)) != len(names) or any(n in self.accounts for n in names):
            raise RejectReason("invalid_field", "accounts must be new and distinct")
        markets = np.unique(pos_market)
        tv = np.zeros(len(book.market_names), dtype=np.int64)
        for m in markets.tolist():
            inst = book.instruments[m]
            if inst.is_inverse or inst.settle != asset:
                raise RejectReason("invalid_field", f"{inst.name} is not linear in {asset}")
            tv[m] = inst.tick_value_quanta(self.asset_decimals[a])
        if (entry_ticks <= 0).any() or (pos_lots == 0).any():
            raise RejectReason("invalid_size", "entries must be > 0 and sizes non-zero")
        cost = pos_lots.astype(np.int64) * entry_ticks.astype(np.int64) * tv[pos_market]
        net_cost = np.zeros(len(names), dtype=np.int64)
        np.add.at(net_cost, pos_account, cost)
        if counterparty not in self.accounts:
            self.accounts[counterparty] = "cross"
            self._ensure_cross_row(counterparty)
        street = book.row_index[counterparty]
        batch: list[Transfer] = []
        for name, q, c in zip(names, collateral_quanta.tolist(), net_cost.tolist(),
                              strict=True):
            lid = _cross_ledger_id(name)
            if q > 0:
                batch.append(Transfer(EXTERNAL, lid, asset, int(q), "deposit"))
            if c > 0:
                batch.append(Transfer(lid, _cross_ledger_id(counterparty), asset, c, "seed"))
            elif c < 0:
                batch.append(Transfer(_cross_ledger_id(counterparty), lid, asset, -c, "seed"))
        self.post(batch)
        rows = book.bulk_add(names, True, pos_account.astype(np.int64),
                             pos_market.astype(np.int64), pos_lots.astype(np.int64),
                             cost.astype(np.int64))
        for name in names:
            self.accounts[name] = "cross"
        led = self.ledger
        book.row_int[rows, a] = np.array([led.balance(_cross_ledger_id(n), asset)
                                          for n in names], dtype=np.int64)
        if book.asset_link[a] >= 0:
            book.asset_holders[a].extend(rows)
        # the counterparty takes the other side of every market
        for m in markets.tolist():
            sel = pos_market == m
            lots = -int(pos_lots[sel].sum())
            mcost = -int(cost[sel].sum())
            s = book.slot_of(street, m)
            if s < 0:
                s = book.open_slot(street, m)
            old = int(book.slot_lots[s])
            book.slot_lots[s] = old + lots
            book.slot_cost[s] = int(book.slot_cost[s]) + mcost
            if book.slot_lots[s] == 0:
                book.close_slot(s)
            longs = int(pos_lots[sel & (pos_lots > 0)].sum()) + max(old + lots, 0) - max(old, 0)
            book.set_oi(m, book.oi_lots[m] + longs)
        self.sync_balance(street, a)
        book.remargin_all()

    def transfer_isolated(self, account: str, market: str, amount: Decimal) -> None:
        """Move collateral from an account into an isolated bucket without margin checks."""
        self.epoch += 1
        m, inst = self._market(market)
        book = self.book
        r = book.row_index.get(_iso_name(account, inst.name), -1)
        if r < 0:
            raise RejectReason("no_isolated_position", f"{account} has no bucket in {market}")
        a = self.settle_asset[m]
        q = self._quanta(amount, a, "margin")
        if q <= 0:
            raise RejectReason("non_positive", f"margin {amount}")
        self.post([Transfer(_cross_ledger_id(account), book.rows[r].ledger_id, inst.settle,
                             q, "isolated_margin")])
        self.sync_balance(r, a)
        self.sync_balance(book.row_index[account], a)

    # ================================================================ views

    def account_view(self, account: str, *, horizon_days: float = 1.0) -> dict[str, Any]:
        """Margin, equity and positions of an account (all its rows).

        Each position carries its liquidation price and the probability that the mark
        reaches it within ``horizon_days`` under the market's EWMA volatility (first
        passage of a driftless log-price Brownian motion), both computed for all of the
        account's positions in one kernel call. The account's rows come from the book's
        account index: the cost is in the account's own rows and positions, not the
        book's size, except for each position's ADL rank, which depends on every holder of
        its market: :meth:`adl_rank_of` computes a market's ranks once per state change
        (vectorized over its holders) and answers from that table until the next one.
        """
        rows = self._rows_of(account)
        if not rows:
            raise KeyError(account)
        book = self.book
        arr = np.array(rows, dtype=np.int64)
        out = book.remargin_rows(arr)
        pm_rows = arr[~np.isnan(book.pm[arr, 0])]
        if pm_rows.shape[0]:
            self.refresh_pm(pm_rows)
            out = book.aggregate(arr)
        positions = self._position_views(rows, horizon_days)
        n_a = len(book.asset_names)
        cash = [sum(self.ledger.balance(book.rows[r].ledger_id, sym) for r in rows)
                for sym in book.asset_names]
        pos_value = book.row_int[arr, n_a:2 * n_a].sum(axis=0).tolist()
        settles = {p["settle"] for p in positions}
        equity: dict[str, str] = {}
        for a, sym in enumerate(book.asset_names):
            if cash[a] or sym in settles:
                equity[sym] = _fmt((cash[a] + int(pos_value[a])) / book.asset_scale[a])
        coll = float(out[:, OUT_COLLATERAL].sum())
        mm = float(out[:, OUT_MM].sum())
        im = float(out[:, OUT_IM].sum())
        return {
            "account": account,
            "mode": self.accounts.get(account, "cross"),
            "equity": equity,
            "equity_usd": _fmt(float(out[:, OUT_EQUITY].sum())),
            "collateral_usd": _fmt(coll),
            "initial_margin": _fmt(im),
            "maintenance_margin": _fmt(mm),
            "margin_ratio": _fmt(mm / coll if coll > 0 else (float("inf") if mm > 0 else 0.0)),
            "free_collateral": _fmt(coll - im),
            "positions": positions,
        }

    def accounts_overview(self) -> dict[str, Any]:
        """Per-account margin totals of every account, vectorized over rows and slots.

        Returns ``names`` (list, book order) and float64 arrays of the same length:
        ``equity_usd``, ``collateral_usd``, ``initial_margin``, ``maintenance_margin``,
        ``margin_ratio`` (maintenance / collateral; inf with margin and no collateral, 0
        with neither), ``notional_usd`` (gross position notional) and ``positions``
        (count), plus ``system`` (bool, engine-run accounts). One full re-margin and
        ``np.bincount`` over the book's row -> account index: no loop over accounts.
        """
        book = self.book
        n_rows = len(book.rows)
        n_acc = len(book.account_names)
        out = book.remargin_all()
        acct = book.row_account[:n_rows]
        cols = {name: np.bincount(acct, weights=out[:, k], minlength=n_acc)
                for name, k in (("equity_usd", OUT_EQUITY), ("collateral_usd", OUT_COLLATERAL),
                                ("initial_margin", OUT_IM), ("maintenance_margin", OUT_MM))}
        coll, mm = cols["collateral_usd"], cols["maintenance_margin"]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(coll > 0, mm / coll, np.where(mm > 0, np.inf, 0.0))
        live = np.flatnonzero(book.slot_row[: book.n_slots] >= 0)
        settle = np.asarray(self.settle_asset, dtype=np.int64)[book.slot_market[live]]
        usd = (np.abs(book.st[live, S_VALUE]).astype(np.float64) / book.ascale[settle]
               * book.asset_price[settle])
        slot_acct = acct[book.slot_row[live]]
        system = np.zeros(n_acc, dtype=np.bool_)
        system[acct[book.row_system[:n_rows]]] = True
        return {
            "names": list(book.account_names), **cols, "margin_ratio": ratio,
            "notional_usd": np.bincount(slot_acct, weights=usd, minlength=n_acc),
            "positions": np.bincount(slot_acct, minlength=n_acc), "system": system,
        }

    def _position_views(self, rows: list[int], horizon_days: float) -> list[dict[str, Any]]:
        """The position entries of :meth:`account_view`, sorted by (row, market)."""
        book = self.book
        row_list: list[int] = []
        slot_list: list[int] = []
        for r in rows:
            slots = book.row_slots(r)
            row_list.extend([r] * len(slots))
            slot_list.extend(slots)
        if not slot_list:
            return []
        row_arr = np.array(row_list, dtype=np.int64)
        slot_arr = np.array(slot_list, dtype=np.int64)
        liq = book.liquidation_prices(row_arr, slot_arr)
        markets = book.slot_market[slot_arr].tolist()
        lots = book.slot_lots[slot_arr]
        vols = [self.volatility(m) for m in markets]
        prob = liquidation_probability_driftless(
            np.array([float(book.marks[m] or 0) for m in markets]), liq,
            np.where(lots > 0, 1.0, -1.0), np.array(vols), horizon_days / 365.0)
        positions = []
        for i, (r, s, m) in enumerate(zip(row_list, slot_list, markets, strict=True)):
            view = self._position_view(r, s, float(liq[i]), vols[i], float(prob[i]))
            view["adl_rank"] = self.adl_rank_of(m, s)
            positions.append(view)
        positions.sort(key=lambda p: (p["row"], p["market"]))
        return positions

    def adl_rank_of(self, m: int, s: int) -> int | None:
        """ADL queue quintile of slot ``s`` in market ``m`` (None: not ranked)."""
        hit = self._adl_cache.get(m)
        if hit is None or hit[0] != self.epoch:
            slots, ranks = self.liquidator.adl_rank_table(m)
            hit = (self.epoch, slots, ranks)
            self._adl_cache[m] = hit
        _, slots, ranks = hit
        i = int(np.searchsorted(slots, s))
        if i < slots.shape[0] and int(slots[i]) == s:
            return int(ranks[i])
        return None

    def _position_view(self, r: int, s: int, liq: float, vol: float,
                       prob: float) -> dict[str, Any]:
        book = self.book
        m = int(book.slot_market[s])
        inst = book.instruments[m]
        a = self.settle_asset[m]
        px = float(book.asset_price[a])
        lots = int(book.slot_lots[s])
        contracts = Decimal(lots) * inst.lot_size
        cost = int(book.slot_cost[s]) / book.asset_scale[a]
        value, im, mm = (int(x) / book.asset_scale[a] for x in book.cache[s])
        notional = abs(value)
        if inst.is_inverse:
            entry = abs(float(contracts) * float(inst.contract_size) / cost) if cost else 0.0
        else:
            entry = cost / (float(contracts) * float(inst.contract_size)) if lots else 0.0
        return {
            "market": inst.name,
            "row": book.rows[r].name,
            "isolated": book.rows[r].market >= 0,
            "size": str(contracts),
            "entry_price": _fmt(entry),
            "mark_price": str(book.marks[m]),
            "settle": inst.settle,
            "notional": _fmt(notional * px),
            "initial_margin": _fmt(im * px),
            "maintenance_margin": _fmt(mm * px),
            "unrealized_pnl": _fmt((value - cost) * px),
            "liquidation_price": None if np.isnan(liq) else _fmt(liq),
            "volatility": _fmt(vol),
            "liquidation_probability": _fmt(prob),
        }

    # ================================================================ portfolio margin

    def underlying_usd(self, symbol: str) -> float:
        """USD price of an underlying coin: its asset price, else a futures market's mark."""
        book = self.book
        a = book.asset_index.get(symbol)
        if a is not None and np.isfinite(book.asset_price[a]):
            return float(book.asset_price[a])
        for m, inst in enumerate(book.instruments):
            if inst.base == symbol and not inst.is_option and book.marks[m] is not None:
                return float(book.marks[m] or 0)
        return float("nan")

    def pm_requirements(self, rows: np.ndarray, extra: tuple[int, int] | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Scenario-grid (IM, MM) in USD of ``rows``, optionally with ``extra`` =
        (market, lots) added to the first row (a what-if for a trade).

        Every option is fully revalued on the grid (Black-76 at its mark volatility, the
        engine clock, rate 0), futures and perpetuals linearly
        (``core/portfolio/kernel.py``); per underlying worst losses are summed.
        """
        assert self.pm_grid is not None
        book = self.book
        symbols: list[str] = []  # the underlyings these rows hold, in first-seen order
        u_of: dict[str, int] = {}
        now = self.clock_ms or 0
        acc: list[int] = []
        und: list[int] = []
        kind: list[int] = []
        strike: list[float] = []
        expiry: list[float] = []
        size: list[float] = []
        vol: list[float] = []

        def add(i: int, m: int, lots: int) -> None:
            inst = book.instruments[m]
            contracts = lots * book.lot_size[m] * float(inst.contract_size)
            if inst.base not in u_of:
                u_of[inst.base] = len(symbols)
                symbols.append(inst.base)
            u = u_of[inst.base]
            if inst.is_option:
                acc.append(i)
                und.append(u)
                kind.append(KIND_CALL if inst.option_kind == "call" else KIND_PUT)
                strike.append(float(inst.strike or 0))
                expiry.append(max((inst.expiry_ms or 0) - now, 1) / MS_PER_YEAR)
                size.append(contracts)
                vol.append(float(self.ivs.get(m, Decimal(str(DEFAULT_VOLATILITY)))))
                return
            mark = float(book.mk[m, 3])
            acc.append(i)
            und.append(u)
            kind.append(KIND_FUTURE)
            strike.append(0.0)
            expiry.append(0.0)
            size.append(contracts / mark if inst.is_inverse else contracts)
            vol.append(float("nan"))

        for i, r in enumerate(rows.tolist()):
            for s in book.row_slots(r):
                lots = int(book.st[s, S_LOTS])
                m = int(book.st[s, 0])
                if extra is not None and i == 0 and m == extra[0]:
                    lots += extra[1]
                if lots:
                    add(i, m, lots)
            if extra is not None and i == 0 and book.slot_of(r, extra[0]) < 0 and extra[1]:
                add(i, extra[0], extra[1])
        n = rows.shape[0]
        if not acc:
            return np.zeros(n), np.zeros(n)
        prices = np.array([self.underlying_usd(u) for u in symbols])
        corr = None
        if self.pm_combine == "correlation":
            corr = np.array([[1.0 if a == b else self.pm_correlation.get(
                tuple(sorted((a, b))), 1.0) for b in symbols] for a in symbols])
        res = portfolio_margin(account=np.array(acc), underlying=np.array(und),
                               kind=np.array(kind, dtype=np.int8), strike=np.array(strike),
                               expiry_yr=np.array(expiry), size=np.array(size),
                               vol=np.array(vol), underlying_price=prices, rate=0.0,
                               grid=self.pm_grid, n_accounts=n,
                               combine="correlation" if corr is not None else "sum",
                               correlation=corr)
        return np.asarray(res.im, dtype=np.float64), np.asarray(res.mm, dtype=np.float64)

    def refresh_pm(self, rows: np.ndarray) -> None:
        """Recompute the scenario-grid requirements of portfolio-margined ``rows``."""
        if rows.shape[0] == 0:
            return
        im, mm = self.pm_requirements(rows)
        self.book.pm[rows, 0] = im
        self.book.pm[rows, 1] = mm

    def greeks_exposure(self) -> dict[str, Any]:
        """Delta, gamma, vega and theta per account and underlying, and venue-wide.

        Per contract and then size-weighted (``core/options/exposure.py``): perpetuals
        and futures count delta only (``contract_size`` coin, or ``contract_size / mark``
        for inverse contracts); options use Black-76 at the underlying's mark, their mark
        volatility and the engine clock: delta in coin (coin-settled options: Deribit's net
        delta, Black delta less the premium in coin), gamma per coin, vega per 1.00 vol
        and theta per year in USD. Engine-run rows are included (they hold risk too).
        """
        book = self.book
        live = np.flatnonzero(book.st[: book.n_slots, 1] >= 0)
        underlyings = sorted({inst.base for inst in book.instruments})
        u_index = {u: i for i, u in enumerate(underlyings)}
        accounts = sorted({info.account for info in book.rows})
        a_index = {a: i for i, a in enumerate(accounts)}
        acc, und, size, greeks = [], [], [], []
        now = self.clock_ms or 0
        for s in live.tolist():
            m = int(book.st[s, 0])
            inst = book.instruments[m]
            contracts = int(book.st[s, S_LOTS]) * book.lot_size[m]
            row = np.zeros(4)
            cv = float(inst.contract_size)
            mark = float(book.mk[m, 3])
            if inst.is_option:
                u = book.market_index[str(inst.underlying)]
                f = float(book.marks[u] or 0)
                iv = self.ivs.get(m)
                t = max((inst.expiry_ms or 0) - now, 0) / MS_PER_YEAR
                if iv is None or f <= 0 or t <= 0:
                    continue
                g = black76_greeks(forward=f, strike=float(inst.strike or 0), time_yr=t,
                                   vol=float(iv), rate=0.0,
                                   is_call=inst.option_kind == "call")
                delta = float(g.delta[0]) - (float(g.price[0]) / f if inst.coin_settled
                                             else 0.0)
                row[:] = (delta * cv, float(g.gamma[0]) * cv, float(g.vega[0]) * cv,
                          float(g.theta[0]) * cv)
            else:
                row[0] = cv / mark if inst.is_inverse else cv
            acc.append(a_index[book.rows[int(book.st[s, 1])].account])
            und.append(u_index[inst.base])
            size.append(contracts)
            greeks.append(row)
        names = ("delta", "gamma", "vega", "theta")
        if not acc:
            return {"by_account": {}, "venue": {}}
        exp = greeks_exposure(account=np.array(acc), underlying=np.array(und),
                              size=np.array(size), greeks=np.array(greeks),
                              n_accounts=len(accounts), n_underlyings=len(underlyings))
        by_account: dict[str, Any] = {}
        for ai, name in enumerate(accounts):
            per = {u: {k: f"{float(exp.by_account[ai, ui, j]):.12g}"
                       for j, k in enumerate(names)}
                   for u, ui in u_index.items() if np.any(exp.by_account[ai, ui] != 0)}
            if per:
                by_account[name] = per
        held = set(und)
        venue = {u: {k: f"{float(exp.by_underlying[ui, j]):.12g}" for j, k in enumerate(names)}
                 for u, ui in u_index.items() if ui in held}
        return {"by_account": by_account, "venue": venue}

    def open_interest(self) -> dict[str, str]:
        """One side's open interest per market, in contracts."""
        return {name: str(Decimal(self.book.oi_lots[m]) * self.book.instruments[m].lot_size)
                for m, name in enumerate(self.book.market_names)}

    def signed_size_sums(self) -> dict[str, int]:
        """Sum of signed lots per market (0 when every trade has two sides)."""
        book = self.book
        live = np.flatnonzero(book.slot_row[: book.n_slots] >= 0)
        sums = np.zeros(len(book.market_names), dtype=np.int64)
        np.add.at(sums, book.slot_market[live], book.slot_lots[live])
        return {name: int(sums[m]) for m, name in enumerate(book.market_names)}

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
            "ledger": self.ledger.dump(),
            "accounts": dict(sorted(self.accounts.items())),
            "rows": [[i.name, i.account, i.market, i.ledger_id] for i in book.rows],
            "positions": positions,
            "marks": [None if p is None else str(p) for p in book.marks],
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
            },
            "fee_share_ppm": self.fee_share_ppm,
            "ivs": {book.market_names[m]: [str(v), float(book.mk[m, MK_IM_SLOPE]).hex(),
                                           float(book.mk[m, MK_MM_SLOPE]).hex()]
                    for m, v in sorted(self.ivs.items())},
            "feeds": self.feeds.dump(),
            "counts": dict(self.counts),
            "liquidation_counts": dict(self.liquidator.counts),
        }

    @classmethod
    def restore(cls, snap: Mapping[str, Any], *, liquidity: Liquidity | None = None,
                policy: LiquidationPolicy | None = None,
                pm_grid: ScenarioGrid | None = None) -> Engine:
        """Rebuild an engine from :meth:`snapshot` output (same ports as the original)."""
        if snap.get("version") != SNAPSHOT_VERSION:
            raise EngineError(f"snapshot version {snap.get('version')} is not supported")
        engine = cls(build_venue(snap["venue"]), liquidity=liquidity, policy=policy,
                     pm_grid=pm_grid)
        book = engine.book
        engine.ledger = Ledger.load(engine.venue.assets, snap["ledger"])
        engine.accounts = dict(snap["accounts"])
        for name, account, market, ledger_id in snap["rows"]:
            book.add_row(name, account, int(market), ledger_id, int(market) < 0)
        for m, p in enumerate(snap["marks"]):
            if p is not None:
                book.set_mark(m, Decimal(p))
        for name, market, lots, cost in snap["positions"]:
            r = book.row_index[name]
            m = book.market_index[market]
            s = book.open_slot(r, m)
            book.slot_lots[s] = int(lots)
            book.slot_cost[s] = int(cost)
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
        for name, (iv, im_hex, mm_hex) in snap["ivs"].items():
            o = book.market_index[name]
            engine.ivs[o] = Decimal(iv)
            # the per-contract requirements in force, bit for bit (they were computed at
            # the clock of the last re-pricing, not the snapshot's)
            book.mk[o, MK_IM_SLOPE] = float.fromhex(im_hex)
            book.mk[o, MK_MM_SLOPE] = float.fromhex(mm_hex)
        engine.feeds.load(snap["feeds"])
        for name, mode in engine.accounts.items():
            if mode == "portfolio" and name in book.row_index:
                engine._set_portfolio(book.row_index[name], True)
        liq = snap["liquidation"]
        engine.liquidator.last_partial_ms = {book.row_index[k]: int(v)
                                             for k, v in liq["last_partial_ms"].items()}
        engine.liquidator.deficit_rows = {book.row_index[k] for k in liq["deficit_rows"]}
        engine.liquidator.blocked_assets = set(liq["blocked_assets"])
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
        ``positions`` (positions, realized); ``marks`` (marks, expired, option ivs);
        ``volatility``; ``feeds`` (oracle guard, mark pricers, breakers); ``liquidation``
        (partial-liquidation clock, deficits, blocked withdrawals); ``params`` (venue, fee
        share); ``sequence`` (seen ids, clock, out-event sequence). Together they cover
        exactly what :meth:`state_hash` covers.
        """
        state = self._hashed_state()
        out = {name: _sha256({k: state.pop(k) for k in keys})
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
        for m, _name in enumerate(self.book.market_names):
            longs = sum(int(self.book.slot_lots[s]) for s in self.book.holders[m].view().tolist()
                        if self.book.slot_lots[s] > 0)
            if longs != self.book.oi_lots[m]:
                raise EngineError(f"open interest index of market {m} is stale")
        if self.ledger.balance(CLEARING, next(iter(self.book.asset_names))) != 0:
            raise EngineError("clearing account not empty")
        return totals

    def out_json(self, events: Iterable[OutEvent]) -> list[dict[str, object]]:
        """JSON objects of out-events."""
        return [event_to_json(e) for e in events]


_SECTIONS: dict[str, tuple[str, ...]] = {
    "ledger": ("ledger",),
    "accounts": ("accounts", "rows", "warned"),
    "positions": ("positions", "realized"),
    "marks": ("marks", "expired", "ivs"),
    "volatility": ("volatility",),
    "feeds": ("feeds",),
    "liquidation": ("liquidation",),
    "params": ("version", "venue", "fee_share_ppm"),
    "sequence": ("seen_ids", "clock_ms", "out_seq"),
}


def _sha256(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _toward_zero(num: int, den: int) -> int:
    """``num / den`` rounded toward zero, for ``den > 0``."""
    return num // den if num >= 0 else -(-num // den)


def _ratio(mm: float, coll: float) -> float:
    if mm <= 0.0:
        return 0.0
    return mm / coll if coll > 0.0 else float("inf")


def _fmt(x: float) -> str:
    if np.isnan(x):
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    return f"{x:.10g}" if abs(x) < 1e-4 and x != 0 else f"{x:.6f}".rstrip("0").rstrip(".")


_GRID = Context(prec=60, traps=[Inexact])


def _on_grid(value: Decimal, step: Decimal, field: str, reason: str) -> int:
    # value / step in a context that traps rounding: exact, and ~2x faster than divmod
    try:
        q = _GRID.divide(value, step)
    except Inexact:
        raise RejectReason(reason, f"{field} {value} is not a multiple of {step}") from None
    n = int(q)
    if n != q:
        raise RejectReason(reason, f"{field} {value} is not a multiple of {step}")
    if n <= 0 or n > MAX_QUANTA:
        raise RejectReason(reason, f"{field} {value} out of range")
    return n


def _risk_grows(old: int, new: int) -> bool:
    return abs(new) > abs(old) or (old != 0 and new != 0 and (old > 0) != (new > 0))
