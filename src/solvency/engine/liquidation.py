"""The liquidation engine: trigger, order, and the waterfall executed on the real ledger.

After every valuation (price update, fill, transfer, funding, parameter change) the
engine hands the rows it valued to :meth:`Liquidator.sweep`. Rows whose collateral is
below maintenance margin are liquidated most underwater first (ratio of the shortfall to
maintenance, then name), one position at a time (largest maintenance first), in steps
sized by the venue's policy, until the row is healthy, flat, or nothing more can be done
now (no liquidity within limits, breaker pause). Each step is planned by the pure
:func:`~solvency.core.liquidation.waterfall.plan_waterfall` and posted as one ledger
batch; every step is an out-event.

Accounts the engine runs itself never get liquidated: the counterparty of the order book
(``__market__``), the backstop vault (``__backstop__``), the insurance fund's position row
(``__insurance__``) and seeded counterparties (``__street__``).

The insurance fund is two ledger accounts: its cash (``sys:insurance``, never negative,
what deposits, fees and shortfall payments move) and its position account
(``sys:insurance_positions``, the ledger account of the ``__insurance__`` row) that
finances the positions it takes over at their bankruptcy price and receives what closing
them pays. Its equity is cash + position account + the positions at the mark. Where the
policy says so the fund unwinds its positions through the liquidity port a portion a step
within a band of the mark (:meth:`Liquidator.unwind_fund`); when it is flat in an asset
the position account's balance, the unwind P&L, moves to its cash. ADL runs only for
what the fund's counted capacity (``policy.fund_capacity``) cannot absorb
(docs/insurance_fund.md).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np

from solvency.core.ledger.ledger import INSURANCE, ROUNDING, Transfer
from solvency.core.liquidation import (
    AdlFill,
    BackstopTakeover,
    FundTakeover,
    InsurancePayment,
    LiquidationPolicy,
    MarketClose,
    Penalty,
    QuoteFn,
    SocializedLoss,
    TargetFromLosses,
    Unresolved,
    WaterfallPlan,
    adl_order,
    adl_quintiles,
    adl_scores,
    bankruptcy_quote_quanta,
    fillable_price,
    linear_quote,
    liquidation_size_reference,
    loss_history_target_quanta,
    plan_waterfall,
    realized_vol_ppm,
    return_sq_ppm2,
    socialize_funding_index,
    socialize_pro_rata_winners,
)
from solvency.core.margin.kernels import (
    OUT_COLLATERAL,
    OUT_MM,
    S_LOTS,
    S_MM,
    S_ROW,
    S_VALUE,
    evaluate_rows,
    slot_quanta,
)
from solvency.core.model.events import (
    BadDebt,
    CollateralExchanged,
    Deleveraged,
    FundUnwound,
    Liquidated,
    OutEvent,
    SocializedLossEvent,
    WithdrawalState,
)
from solvency.core.units import PPM, div_round, format_quanta
from solvency.engine.context import LiquidationContext, PositionChange
from solvency.engine.state import cost_after_trade

__all__ = ["BACKSTOP", "FUND_POSITIONS", "INSURANCE_ROW", "LIQUIDATOR", "MARKET", "SYSTEM_ROWS",
           "Liquidator"]

MARKET = "__market__"
"""Counterparty of liquidation orders filled in the book (the rest of the market)."""
BACKSTOP = "__backstop__"
"""The backstop / liquidator vault (Hyperliquid HLP style); fund it with deposits."""
INSURANCE_ROW = "__insurance__"
"""Row holding positions the insurance fund took over (ledger account FUND_POSITIONS)."""
FUND_POSITIONS = "sys:insurance_positions"
"""The fund's position account: pays takeovers at bankruptcy, receives unwind proceeds."""
LIQUIDATOR = "sys:liquidator"
"""Where the liquidator's share of penalties goes."""
BAD_DEBT = "sys:bad_debt"
"""The venue's recorded loss: a shortfall nobody covered (negative balance)."""
SOCIAL = "sys:social"
"""Transit of socialized losses within a sweep (zero after every event)."""
SYSTEM_ROWS = frozenset({MARKET, BACKSTOP, INSURANCE_ROW, "__street__"})
MAX_STEPS = 64
LAZY_ADL = True
"""Plan a step without walking the ADL queue where the fund absorbs it (False: walk the
queue at every step, the reference the fast path is tested against)."""


_Adl = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""The ADL head a plan takes: lots, queue order, eligibility, slots."""


@dataclass(slots=True)
class _Position:
    """A position of the row being liquidated: its slot, market, lots, settlement asset."""

    slot: int
    m: int
    lots: int
    a: int


@dataclass(slots=True)
class _MarkVol:
    """A market's trailing window of squared mark-to-mark returns (dynamic fee).

    ``returns`` holds ``(ts_ms, r^2 in ppm^2)`` within the window, ``sum_sq`` their sum."""

    last_ticks: int
    last_ms: int
    returns: deque[tuple[int, int]] = field(default_factory=deque)
    sum_sq: int = 0


class Liquidator:
    """Runs the venue's liquidation policy against an engine's book and ledger."""

    def __init__(self, ctx: LiquidationContext, policy: LiquidationPolicy) -> None:
        self.ctx = ctx
        self.policy = policy
        self.last_partial_ms: dict[int, int] = {}
        self.deficit_rows: set[int] = set()
        self.touched: set[int] = set()
        self.enabled = True
        self._adl_cache: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
        self._social_cache: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
        self.pending_social: dict[int, int] = {}  # market -> loss paid, to charge
        self.pending: set[int] = set()  # liquidatable rows seen while disabled
        self.blocked_assets: set[str] = set()
        self.counts = {"steps": 0, "liquidations": 0, "adl": 0, "backstop": 0,
                       "fund_takeover": 0, "socialized": 0, "bad_debt": 0}
        self.last_unwind_ms: dict[int, int] = {}  # market -> clock of the fund's last unwind
        self.venue_wide: str | None = None
        """Set (never cleared here) to what a sweep or unwind decided from state that only
        the whole venue holds: the fund's balance or positions, the ADL queue, the
        socialized-loss holders, the backstop, a deficit, the withdrawal block. An account
        shard (service/shards.py) clears it before an event and, when it is set after,
        decides the event over the gathered venue instead. Not part of the state."""
        self._close_cost: dict[int, int] = {}  # market -> fund's close cost at depth
        self.mark_vol: dict[int, _MarkVol] = {}  # market -> its window (dynamic fee only)
        self.waiting = 0  # liquidations waiting when the current sweep started
        # realized losses in the fund target's asset, (clock, quanta) per sweep with a loss
        # (only with insurance.policy.target_from_losses: set by the engine)
        self.loss_rule: TargetFromLosses | None = None
        self.loss_asset = ""
        self.losses: deque[tuple[int, int]] = deque()
        self.event_ms: int | None = None  # the time of the event being applied
        self._sweep_adl_haircut = 0
        self._sweep_social = 0
        self._sweep_fund_in = 0
        self._one_row = np.zeros(1, dtype=np.int64)  # _value's buffers
        self._system_roles: tuple[str, dict[str, str]] | None = None  # per sweep
        self._one_out = np.empty((1, 4))
        self._far_cache: dict[tuple[int, bool, Decimal, Decimal, int], int] = {}
        self._floors: dict[int, tuple[int, int, list[float]]] = {}  # m -> tier floors

    # ------------------------------------------------------------------ realized losses

    def _fund_realized_quanta(self, a: int) -> int:
        """The fund's realized equity in asset ``a``: its cash, its position account and
        the positions it holds at their cost (what it paid taking them over), exact
        quanta. A takeover at the bankruptcy price leaves it unchanged (the position
        account pays what the position costs); the loss or gain of a held position is
        realized when the fund unwinds it (:meth:`_unwind`)."""
        cash, paid, _held = self.fund_equity_quanta(a)
        cost = self.ctx.book.slot_cost
        return cash + paid + sum(int(cost[s]) for s in self._fund_slots(a))

    def _loss_start(self) -> tuple[int, int]:
        """The fund's realized equity and the bad-debt account in the loss asset, at a
        sweep's start; the sweep's counters reset."""
        a = self.ctx.book.asset_index[self.loss_asset]
        self._sweep_adl_haircut = self._sweep_social = self._sweep_fund_in = 0
        return (self._fund_realized_quanta(a),
                self.ctx.ledger.balance(BAD_DEBT, self.loss_asset))

    def _loss_end(self, equity0: int, bad0: int) -> None:
        """Record the sweep's realized loss: the fund's draw (the fall of its realized
        equity net of the penalties it received), the ADL haircuts against the mark, the
        socialized losses charged, and the new bad debt."""
        a = self.ctx.book.asset_index[self.loss_asset]
        draw = max(0, equity0 + self._sweep_fund_in - self._fund_realized_quanta(a))
        bad = max(0, bad0 - self.ctx.ledger.balance(BAD_DEBT, self.loss_asset))
        self._record_loss(draw + self._sweep_adl_haircut + self._sweep_social + bad)

    def _record_loss(self, loss: int) -> None:
        """Add a realized loss (quanta of the loss asset) to the history, dated by the
        event being applied: the event's time (the clock moves once the event is
        applied), never before the clock or the last loss, so the history stays in time
        order; losses older than the history window leave it."""
        if loss <= 0:
            return
        assert self.loss_rule is not None
        now = max(self.event_ms or 0, self.ctx.clock_ms or 0,
                  self.losses[-1][0] if self.losses else 0)
        self.losses.append((now, loss))
        while self.losses and self.losses[0][0] <= now - self.loss_rule.history_ms:
            self.losses.popleft()

    def loss_target_quanta(self) -> int:
        """The fund target the realized losses call for (0 without the rule):
        :func:`~solvency.core.liquidation.loss_history_target_quanta` at the clock."""
        if self.loss_rule is None:
            return 0
        now = max(self.event_ms or 0, self.ctx.clock_ms or 0)
        return loss_history_target_quanta(self.losses, now_ms=now, rule=self.loss_rule)

    # ------------------------------------------------------------------ dynamic fee

    def track_mark(self, m: int, price: Decimal, ts_ms: int) -> None:
        """Add a mark to market ``m``'s realized-volatility window (only with a dynamic
        fee: the presets keep no window, so their state and hashes are unchanged)."""
        fee = self.policy.dynamic_fee
        if fee is None:
            return
        ticks = int(price / self.ctx.book.instruments[m].tick_size)  # on the grid: exact
        w = self.mark_vol.get(m)
        if w is None:
            self.mark_vol[m] = _MarkVol(ticks, ts_ms)
            return
        # a mark older than the window's last keeps the window's clock (the deque stays
        # in time order); its move still counts
        w.last_ms = max(w.last_ms, ts_ms)
        if ticks != w.last_ticks:
            r2 = return_sq_ppm2(w.last_ticks, ticks)
            w.returns.append((w.last_ms, r2))
            w.sum_sq += r2
        w.last_ticks = ticks
        self._trim(w, fee.vol_window_ms)

    @staticmethod
    def _trim(w: _MarkVol, window_ms: int) -> None:
        start = w.last_ms - window_ms
        while w.returns and w.returns[0][0] <= start:
            w.sum_sq -= w.returns.popleft()[1]

    def realized_vol_ppm(self, m: int) -> int:
        """Annualized realized volatility of market ``m``'s marks over the dynamic fee's
        window, ppm (0 without a dynamic fee or before two marks)."""
        fee = self.policy.dynamic_fee
        w = self.mark_vol.get(m)
        if fee is None or w is None:
            return 0
        return realized_vol_ppm(w.sum_sq, fee.vol_window_ms)

    def liquidator_fee_ppm_now(self, m: int) -> int:
        """The liquidator's fee on a liquidation in market ``m`` now: the dynamic fee at
        the market's realized volatility and the liquidations waiting, else the policy's
        fixed ``liquidator_fee_ppm``."""
        fee = self.policy.dynamic_fee
        if fee is None:
            return self.policy.liquidator_fee_ppm
        return fee.fee_ppm(vol_ppm=self.realized_vol_ppm(m), waiting=self.waiting)

    def mark_vol_dump(self) -> dict[str, list[object]]:
        """The windows as JSON-able data keyed by market name (snapshot and hash)."""
        names = self.ctx.book.market_names
        return {names[m]: [w.last_ticks, w.last_ms, [list(x) for x in w.returns]]
                for m, w in sorted(self.mark_vol.items())}

    def mark_vol_load(self, data: dict[str, list[Any]]) -> None:
        """Rebuild the windows from :meth:`mark_vol_dump` output."""
        index = self.ctx.book.market_index
        self.mark_vol = {}
        for name, (ticks, last_ms, returns) in data.items():
            rs = deque((int(t), int(r2)) for t, r2 in returns)
            self.mark_vol[index[name]] = _MarkVol(int(ticks), int(last_ms), rs,
                                                  sum(r2 for _t, r2 in rs))

    # ------------------------------------------------------------------ trigger

    def sweep(self, rows: np.ndarray, out: np.ndarray, cause: str) -> list[OutEvent]:
        """Liquidate the rows of ``rows`` (valued in ``out``) that are below maintenance."""
        n = rows.shape[0]
        if self.policy.dynamic_fee is not None:
            self.waiting = len(self.deficit_rows)  # until the candidates below are known
        if n == 0:
            return []
        if n <= 4 and not self.deficit_rows:
            # the fill path values one or two rows: plain floats beat numpy on tiny arrays
            vals = out.tolist()
            if not any(v[OUT_COLLATERAL] < v[OUT_MM] and v[OUT_MM] > 0 for v in vals):
                return []
        coll = out[:, OUT_COLLATERAL]
        mm = out[:, OUT_MM]
        bad = np.flatnonzero((coll < mm) & (mm > 0))
        if self.deficit_rows:
            self._drop_recovered(rows, (coll >= mm) & (coll >= 0))
        if bad.shape[0] == 0 and not self.deficit_rows:
            return []
        book = self.ctx.book
        if not self.enabled:  # detection only (benchmarks, dry runs)
            self.pending.update(int(rows[i]) for i in bad.tolist())
            return []
        cands = [(float((coll[i] - mm[i]) / mm[i]), book.rows[int(rows[i])].name, int(rows[i]))
                 for i in bad.tolist()
                 if book.rows[int(rows[i])].account not in SYSTEM_ROWS]
        cands.sort()
        if self.policy.dynamic_fee is not None:
            # the queue the dynamic fee reads: rows below maintenance now and rows left
            # waiting by earlier sweeps (no liquidity, a breaker's pause)
            self.waiting = len({r for _, _, r in cands} | self.deficit_rows)
        loss0 = self._loss_start() if self.loss_rule is not None and cands else None
        events: list[OutEvent] = []
        done: set[int] = set()
        self._adl_cache = {}  # queues are ranked once per sweep
        self._floors = {}
        self._system_roles = None
        self._close_cost = {}  # the fund's close cost at depth, once per sweep and market
        self._social_cache = {}
        self.pending_social = {}
        for _round in range(16):
            self.touched = set()
            for _, _, r in cands:
                events.extend(self._liquidate_row(r, cause))
                done.add(r)
            # counterparties of ADL and socialized losses may now be below maintenance
            again = np.array(sorted(self.touched - done), dtype=np.int64)
            if again.shape[0] == 0:
                break
            vals = book.aggregate(again)
            cands = sorted(
                (float((vals[i, OUT_COLLATERAL] - vals[i, OUT_MM]) / vals[i, OUT_MM]),
                 book.rows[int(again[i])].name, int(again[i]))
                for i in range(again.shape[0])
                if vals[i, OUT_COLLATERAL] < vals[i, OUT_MM] and vals[i, OUT_MM] > 0
                and book.rows[int(again[i])].account not in SYSTEM_ROWS)
            if not cands:
                break
        events.extend(self._settle_social(cause))
        events.extend(self._update_system_state(cause))
        if loss0 is not None:
            self._loss_end(*loss0)
        return events

    def _drop_recovered(self, rows: np.ndarray, ok: np.ndarray) -> None:
        """Forget the waiting rows that this valuation finds back above maintenance
        (``ok``: collateral at or above it, and not negative): a price move or a deposit
        lifted them, so nothing is left to liquidate. Without this a row left waiting
        stayed in the set until it next fell below maintenance, counted by the dynamic
        fee's queue (and kept every mark on the full re-margin path) long after it
        recovered."""
        flag = np.zeros(len(self.ctx.book.rows), dtype=np.bool_)
        flag[rows[ok]] = True
        waiting = np.fromiter(self.deficit_rows, dtype=np.int64, count=len(self.deficit_rows))
        recovered = waiting[flag[waiting]]
        if recovered.shape[0]:
            self.deficit_rows.difference_update(recovered.tolist())

    def _settle_social(self, cause: str) -> list[OutEvent]:
        """Charge the socialized losses of this sweep, once per market, to the
        participants at the sweep's end (Drift: every unit of base, both sides; Deribit:
        winners pro rata to profit, at most their profit). The accounts were paid from
        ``sys:social`` as they were liquidated; this returns it to zero: surplus of the
        rounded-up charges to the rounding account, what winners could not cover to bad
        debt. One batch a market (per-step charges to every holder measured O(holders)
        per liquidation step: minutes on a 50,000-account crash)."""
        ctx = self.ctx
        book = ctx.book
        events: list[OutEvent] = []
        if self.pending_social:
            self.venue_wide = self.venue_wide or "a socialized loss"
        for m, total in sorted(self.pending_social.items()):
            settle = book.instruments[m].settle
            social = self._social_weights(_Position(-1, m, 0, ctx.settle_asset[m]), -1)
            if social is None:
                charges = np.zeros(0, dtype=np.int64)
                slots = np.zeros(0, dtype=np.int64)
            elif self.policy.socialize == "funding_index":
                _d, charges = socialize_funding_index(total, lots=social[0])
                slots = social[1]
            else:
                charges = socialize_pro_rata_winners(total, profit_quanta=social[0])
                slots = social[1]
            # one leg per charged holder: the ledger keeps a balance per account id, so
            # this loop is the posting itself (once per market per sweep, not per step)
            nz = np.flatnonzero(charges)
            rows = book.st[slots[nz], S_ROW]
            batch = [Transfer(book.rows[row].ledger_id, SOCIAL, settle, c, "socialized_loss")
                     for row, c in zip(rows.tolist(), charges[nz].tolist(), strict=True)]
            charged = int(charges.sum())
            if self.loss_rule is not None and settle == self.loss_asset:
                self._sweep_social += min(charged, total)  # the rest is bad debt
            diff = charged - total
            if diff > 0:
                batch.append(Transfer(SOCIAL, ROUNDING, settle, diff, "rounding"))
            elif diff < 0:
                batch.append(Transfer(BAD_DEBT, SOCIAL, settle, -diff, "bad_debt"))
                self.counts["bad_debt"] += 1
            if batch:
                ctx.post(batch)
            a = ctx.settle_asset[m]
            charged_rows = np.unique(rows)
            for row in charged_rows.tolist():
                ctx.sync_balance(row, a)
            if charged_rows.shape[0]:
                # a charge may leave a holder below maintenance after its last round: it
                # waits as a deficit row for the next sweep (the sweep's invariant)
                book.refresh(book.rows_slots(charged_rows))
                vals = book.aggregate(charged_rows)
                under = (vals[:, OUT_COLLATERAL] < vals[:, OUT_MM]) & (vals[:, OUT_MM] > 0)
                self.deficit_rows.update(int(x) for x in charged_rows[under].tolist())
            dec = ctx.asset_decimals[a]
            events.append(SocializedLossEvent(
                id=ctx.next_id(), event=cause, account="*", market=book.instruments[m].name,
                rule=str(self.policy.socialize), loss=format_quanta(total, dec),
                covered=format_quanta(min(charged, total), dec),
                bad_debt=format_quanta(max(-diff, 0), dec)))
        self.pending_social = {}
        return events

    # ------------------------------------------------------------------ one row

    def _value(self, r: int) -> tuple[float, float]:
        book = self.ctx.book
        rows = self._one_row
        rows[0] = r
        if not math.isnan(book.pm[r, 0]):
            # positions just changed: the grid again (its own array: nothing keeps ours)
            self.ctx.refresh_pm(np.array([r], dtype=np.int64))
        out = self._one_out  # reused: read into floats before the next call
        evaluate_rows(rows, book.row_int, book.asset_price, book.ascale, book.atier_start,
                      book.atier_count, book.atiers, out, book.pm)
        return float(out[0, OUT_COLLATERAL]), float(out[0, OUT_MM])

    def _liquidate_row(self, r: int, cause: str) -> list[OutEvent]:
        ctx = self.ctx
        book = ctx.book
        events: list[OutEvent] = []
        last_resort = False
        for _ in range(MAX_STEPS):
            positions = self._positions(r)
            if not positions:
                # flat: a negative balance left over is paid by the fund or recorded
                events.extend(self._settle_deficit(r, cause))
                break
            coll, mm = self._value(r)
            if not coll < mm or mm <= 0:
                self.deficit_rows.discard(r)
                break
            # largest maintenance margin first; ties by market (a slot number would
            # change with a restore)
            pos = max(positions, key=lambda p: (int(book.st[p.slot, S_MM])
                                                * float(book.asset_price[p.a]), -p.m))
            if not ctx.allows_liquidation(pos.m):
                self.deficit_rows.add(r)
                break
            step = self._step(r, pos, coll, mm, cause, last_resort=last_resort)
            unresolved = bool(step) and isinstance(step[-1], Liquidated) and (
                step[-1].via == "unresolved")
            if unresolved and not last_resort:
                events.extend(step[:-1])  # what did execute; the rest goes to last resort
            else:
                events.extend(step)
            if unresolved:
                if last_resort:
                    self.deficit_rows.add(r)
                    break
                # Nobody took it within the policy's steps: close in the book at whatever
                # price it gives, the shortfall socialized where the venue does, else
                # recorded as bad debt.
                last_resort = True
        else:
            self.deficit_rows.add(r)
        return events

    def _positions(self, r: int) -> list[_Position]:
        book = self.ctx.book
        out = []
        for s in book.row_slots(r):
            m = int(book.slot_market[s])
            out.append(_Position(s, m, int(book.st[s, S_LOTS]), self.ctx.settle_asset[m]))
        return out

    # ------------------------------------------------------------------ one step

    def _step(self, r: int, pos: _Position, coll: float, mm: float, cause: str, *,
              last_resort: bool = False) -> list[OutEvent]:
        ctx = self.ctx
        book = ctx.book
        inst = book.instruments[pos.m]
        policy = self.policy
        if policy.dynamic_fee is not None:
            policy = replace(policy, liquidator_fee_ppm=self.liquidator_fee_ppm_now(pos.m))
        a = pos.a
        px = float(book.asset_price[a])
        scale = book.asset_scale[a]
        equity_q, mm_total_q = self._equity_and_mm_quanta(r, a, coll, mm, px, scale)
        value_q = int(book.st[pos.slot, S_VALUE])
        pos_mm_q = int(book.st[pos.slot, S_MM])
        notional = abs(value_q) / scale
        now = ctx.clock_ms or 0
        cooldown = False
        if self.policy.cooldown_ms:
            last = self.last_partial_ms.get(r, -1)
            cooldown = last >= 0 and now - last < self.policy.cooldown_ms
        floor = self._tier_floor(pos.m, notional)
        # one position: the scalar twin (held equal to the vectorized liquidation_size by
        # the policy tests) avoids ~20 us of numpy overhead per step
        total_q = notional * scale
        if self.policy.sizing == "drift":  # the buffer counts on every liability (Drift)
            total_q = sum(abs(int(book.st[p.slot, S_VALUE])) for p in self._positions(r)
                          if p.a == a)
        close = liquidation_size_reference(
            policy, lots=pos.lots, notional=notional, mm=pos_mm_q / scale,
            collateral=equity_q / scale, mm_total=mm_total_q / scale, tier_floor=floor,
            cooldown=cooldown, notional_total=total_q / scale)
        close = max(1, min(close, abs(pos.lots)))
        is_long = pos.lots > 0
        sign = 1 if is_long else -1
        new_lots = pos.lots - sign * close
        mark = float(book.mk[pos.m, 3])
        oi = float(book.mk[pos.m, 6])
        # the position's cost basis after the close (the closed share removed)
        cost_new, _ = cost_after_trade(int(book.slot_cost[pos.slot]), pos.lots, new_lots, 0)
        v_new, _im_new, mm_new = slot_quanta(pos.m, float(new_lots), mark, oi, book.mk,
                                             book.mki, book.tiers, book.ascale, cost_new)
        delta_mm = min(0, mm_new - pos_mm_q)
        bq = bankruptcy_quote_quanta(delta_value_quanta=v_new - value_q,
                                     delta_mm_quanta=delta_mm, equity_quanta=equity_q,
                                     mm_total_quanta=max(mm_total_q, 1))
        quote = self._quote_fn(pos.m, is_long)
        marks = book.marks[pos.m]
        assert marks is not None
        fills = ctx.liquidity.quote(inst.name, -sign * close, marks, inst.tick_size)
        levels = [(f.lots, int(f.price / inst.tick_size)) for f in fills if f.lots > 0]
        limit = self._limit_ticks(pos, value_q, pos_mm_q, equity_q, mm_total_q, inst)
        fund = ctx.ledger.balance(INSURANCE, inst.settle)
        far = self._far_ticks(pos.m, is_long)
        adl = social = None
        top_ok = bool(levels) and quote(1, levels[0][1]) * close >= bq
        quick = plan_waterfall(policy, position_lots=pos.lots, close_lots=close,
                               bankruptcy_quanta=bq, levels=levels, quote=quote, fund_quanta=0,
                               limit_ticks=None) if top_ok and not last_resort else None
        if quick is not None and quick.closed_lots == close:
            # the book took all of it at or above bankruptcy: no queue needed
            return self._execute(r, pos, quick, None, cause, bq, close)
        self.venue_wide = self.venue_wide or "the waterfall past the book (fund, ADL, backstop)"
        ranked = self._adl_ranked(pos, bq)  # the queue, ranked once per sweep
        if pos.m not in self._social_cache:
            self._social_cache[pos.m] = self._social_weights(pos, -1)
        social = self._social_cache[pos.m]
        if last_resort:
            policy = replace(policy, fund_covers_shortfall=False, backstop=False,
                             adl_ranking="none", socialize=(
                                 policy.socialize if policy.socialize != "none"
                                 else "pro_rata_winners"))
            limit = 0 if is_long else 10**18
            ranked = None
            if social is None or self.policy.socialize == "none":
                social = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        capacity = self.fund_capacity_quanta(a)
        take_max = self._takeover_lots_max(pos, value_q, capacity)
        backstop_ok = policy.backstop_eligible(collateral=coll, mm=mm)

        def plan_with(adl: _Adl | None) -> WaterfallPlan:
            return plan_waterfall(
                policy, position_lots=pos.lots, close_lots=close, bankruptcy_quanta=bq,
                levels=levels, quote=quote, fund_quanta=fund, limit_ticks=limit,
                fund_capacity_quanta=capacity, takeover_far_ticks=far,
                takeover_lots_max=take_max, backstop_eligible=backstop_ok,
                adl_lots=adl[0] if adl else None, adl_order=adl[1] if adl else None,
                adl_eligible=adl[2] if adl else None,
                social_weights=social[0] if social else None,
                social_charges=False)  # charged once per market per sweep (_settle_social)

        adl = None
        if ranked is not None:
            threshold = policy.adl_fund_threshold_quanta
            if LAZY_ADL and capacity > threshold:
                # The queue's head only matters to the plan when the fund cannot absorb
                # it all: a plan without it that closes everything before the ADL step
                # (no socialized part, which comes after it) and leaves the capacity
                # above the ADL threshold (it only falls within a plan, so it was above
                # at every takeover) is the plan with it, step for step. Walking the
                # queue cost ~20 us a step where the fund takes over.
                plan = plan_with(None)
                if (plan.closed_lots == close
                        and capacity - plan.capacity_used_quanta > threshold
                        and not any(isinstance(x, SocializedLoss) for x in plan.steps)):
                    return self._execute(r, pos, plan, None, cause, bq, close)
            adl = self._adl_queue(pos, r, bq, close, ranked)
        return self._execute(r, pos, plan_with(adl), adl, cause, bq, close)

    def _equity_and_mm_quanta(self, r: int, a: int, coll: float, mm: float, px: float,
                              scale: int) -> tuple[int, int]:
        """Equity (``TNC``) and maintenance (``TMMR``) of the row in quanta of ``a``: exact
        from the integer sums when ``a`` is the row's only asset, else converted from USD
        (collateral rounded down, requirement up)."""
        book = self.ctx.book
        n_a = len(book.asset_names)
        row = book.row_int[r].tolist()  # Python ints: one read, no numpy scalars
        others = [b for b in range(n_a) if b != a
                  and (row[b] + row[n_a + b] != 0 or row[3 * n_a + b] != 0)]
        weight_one = (int(book.atier_count[a]) == 1
                      and float(book.atiers[int(book.atier_start[a]), 1]) == 1.0)
        portfolio = not math.isnan(book.pm[r, 0])
        if not others and not portfolio and (weight_one or row[4 * n_a] == 0):
            return row[a] + row[n_a + a], row[3 * n_a + a]
        return math.floor(coll / px * scale), math.ceil(mm / px * scale)

    def _tier_floor(self, m: int, notional: float) -> float:
        book = self.ctx.book
        t0, tn = int(book.mki[m, 0]), int(book.mki[m, 1])
        cached = self._floors.get(m)
        if cached is None or cached[0] != t0 or cached[1] != tn:
            # read once per sweep (the tier table does not change within one): bisect on
            # a list is searchsorted(side="right") without numpy's per-call overhead
            cached = (t0, tn, [float(x) for x in book.tiers[t0:t0 + tn, 0].tolist()])
            self._floors[m] = cached
        floors = cached[2]
        return floors[bisect.bisect_right(floors, notional) - 1]

    def _quote_fn(self, m: int, is_long: bool) -> QuoteFn:
        """Exact settle-quanta the account receives (signed) for closing ``lots`` at
        ``ticks``; inverse amounts rounded against the account, as in a fill."""
        ctx = self.ctx
        inst = ctx.book.instruments[m]
        tv = ctx.tick_value_quanta[m]
        if not inst.is_inverse:
            return linear_quote(tv, is_long=is_long)
        dec = ctx.asset_decimals[ctx.settle_asset[m]]
        unit = Fraction(inst.lot_size) * Fraction(inst.contract_size) * 10**dec / Fraction(
            inst.tick_size)

        def inverse(lots: int, ticks: int) -> int:
            coin = unit * lots / ticks
            # closing a long inverse buys back coin exposure: the account pays, rounded up
            if is_long:
                return -div_round(coin.numerator, coin.denominator, "ceil")
            return div_round(coin.numerator, coin.denominator, "floor")

        return inverse

    def _limit_ticks(self, pos: _Position, value_q: int, pos_mm_q: int, equity_q: int,
                     mm_total_q: int, inst: object) -> int | None:
        """dYdX fillable price rounded to ticks away from the account, or None."""
        p = self.policy
        if not p.fund_covers_shortfall or (p.bankruptcy_adjustment_ppm == 0
                                           and p.spread_to_mm_ratio_ppm == 0):
            return None
        ctx = self.ctx
        book = ctx.book
        if book.instruments[pos.m].is_inverse or mm_total_q <= 0:
            return None
        tv = ctx.tick_value_quanta[pos.m]
        try:
            price_per_lot = fillable_price(
                position_value_quanta=value_q, position_mm_quanta=pos_mm_q,
                position_size=pos.lots, equity_quanta=equity_q, mm_total_quanta=mm_total_q,
                bankruptcy_adjustment_ppm=p.bankruptcy_adjustment_ppm,
                spread_to_mm_ratio_ppm=p.spread_to_mm_ratio_ppm)
        except ValueError:
            return None
        ticks = price_per_lot / tv
        if pos.lots > 0:
            return max(1, div_round(ticks.numerator, ticks.denominator, "ceil"))
        return max(1, div_round(ticks.numerator, ticks.denominator, "floor"))

    def _adl_ranked(self, pos: _Position, bq: int) -> tuple[list[int], list[int]] | None:
        """The opposite side's ADL queue (slots in queue order, and the index of its
        first live entry), ranked at the first step of the sweep that may deleverage in
        that market and side; None where this step deleverages nobody.

        The queue is ranked once per sweep and market side (scores over all holders,
        vectorized) and walked lazily (:meth:`_adl_queue`), so a liquidation costs what
        it deleverages, not the size of the market.
        """
        if self.policy.adl_ranking == "none":
            return None
        book = self.ctx.book
        # bq is what the account receives for the close: settle currency for a linear
        # long's sale (> 0 at a positive price) or coin for an inverse short's (the
        # quote functions' signs). With the other sign the bankruptcy price is not
        # positive (a short whose deficit exceeds its notional): no opposite position is
        # in profit there, so none is deleveraged (_exec_price's abs() made it look like
        # a high price, and the counterparty paid the deficit).
        receives = (pos.lots > 0) != book.instruments[pos.m].is_inverse
        if (bq <= 0) if receives else (bq >= 0):
            return None
        want = -1 if pos.lots > 0 else 1
        key = (pos.m, want)
        cached = self._adl_cache.get(key)
        if cached is None:
            slots = self._holders_by_row(pos.m)
            slots = slots[np.sign(book.st[slots, S_LOTS]) == want]
            scores = self._scores(pos.m, slots) if slots.shape[0] else np.zeros(0)
            cached = (slots[adl_order(scores)].tolist(), [0])  # Python ints
            self._adl_cache[key] = cached
        return cached

    def _adl_queue(self, pos: _Position, r: int, bq: int, close: int,
                   queue: tuple[list[int], list[int]]) -> _Adl | None:
        """The head of the opposite side's ADL queue (:meth:`_adl_ranked`): eligible
        positions in queue order until their lots cover ``close``.

        Eligibility (in profit at the mark and at the execution price) is checked at
        execution time, position by position. An entry once gone (closed, flipped, its
        slot reused: within a sweep only by the engine's own rows) stays gone, so the
        head moves past it for good.
        """
        book = self.ctx.book
        want = -1 if pos.lots > 0 else 1
        ranked, head = queue
        inst = book.instruments[pos.m]
        mark = float(book.mk[pos.m, 3])
        exec_price = self._exec_price(pos, bq, close)
        chosen: list[int] = []
        covered = 0
        st = book.st
        row_system = book.row_system
        for i in range(head[0], len(ranked)):
            s = ranked[i]
            fields = st[s].tolist()  # one read of the slot (Python ints)
            lots = fields[S_LOTS]
            row = fields[S_ROW]
            gone = (row < 0 or fields[0] != pos.m or (lots > 0) != (want > 0)
                    or lots == 0 or bool(row_system[row]))
            if gone and i == head[0]:
                head[0] = i + 1  # closed by an earlier deleveraging: never comes back
            if gone or row == r:
                continue
            if not self._adl_profitable(s, lots, inst, mark, exec_price, pos.a):
                continue
            chosen.append(s)
            covered += abs(lots)
            if covered >= close:
                break
        if not chosen:
            return None
        arr = np.array(chosen, dtype=np.int64)
        k = arr.shape[0]
        return (book.st[arr, S_LOTS].copy(), np.arange(k, dtype=np.int64),
                np.ones(k, dtype=np.bool_), arr)

    def _adl_profitable(self, s: int, lots: int, inst: object, mark: float,
                        exec_price: float, a: int) -> bool:
        """In profit at the mark and at the execution price (``adl_eligible``'s rule)."""
        book = self.ctx.book
        cost = float(book.slot_cost[s])
        m = int(book.st[s, 0])
        ins = book.instruments[m]
        if ins.is_inverse:
            contracts = abs(lots) * float(ins.lot_size) * float(ins.contract_size)
            entry = -abs(cost) / book.asset_scale[a] / contracts
            mark_p, exec_p = -1.0 / mark, -1.0 / exec_price
        else:
            entry = cost / (lots * self.ctx.tick_value_quanta[m]) * float(ins.tick_size)
            mark_p, exec_p = mark, exec_price
        # adl_eligible's rule for one position, in scalars (a 1-element numpy call per
        # candidate cost ~10 us, measured on the liquidation benchmark)
        side = 1 if lots > 0 else -1
        return bool(side * (mark_p - entry) > 0 and side * (exec_p - entry) > 0)

    def _exec_price(self, pos: _Position, bq: int, close: int) -> float:
        """Bankruptcy price of the closed part, as a float (display and ranking)."""
        inst = self.ctx.book.instruments[pos.m]
        scale = self.ctx.book.asset_scale[pos.a]
        contracts = close * float(inst.lot_size) * float(inst.contract_size)
        amount = abs(bq) / scale
        if amount == 0:
            return float(self.ctx.book.mk[pos.m, 3])
        return float(contracts / amount if inst.is_inverse else amount / contracts)

    def _social_weights(self, pos: _Position, r: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Participants of a socialized loss: both sides' lots (Drift) or profits."""
        rule = self.policy.socialize
        if rule == "none":
            return None
        book = self.ctx.book
        # in row order, like the ADL queue: the remainder quanta of the allocation go by
        # this order, and slot numbers change with a restore (row numbers do not)
        slots = self._holders_by_row(pos.m)
        arr = slots[book.st[slots, S_ROW] != r]
        if arr.shape[0] == 0:
            return None
        if rule == "funding_index":
            w = np.abs(book.st[arr, S_LOTS]).astype(np.int64)
        else:
            w = np.maximum(book.st[arr, S_VALUE] - book.slot_cost[arr], 0).astype(np.int64)
        if int(w.sum()) == 0:
            return None
        return w, arr

    # ------------------------------------------------------------------ execute

    def _execute(self, r: int, pos: _Position, plan: object, adl: object,
                 cause: str, bq: int, close: int) -> list[OutEvent]:
        assert isinstance(plan, WaterfallPlan)
        ctx = self.ctx
        book = ctx.book
        inst = book.instruments[pos.m]
        settle = inst.settle
        row_id = book.rows[r].ledger_id
        adl_slots: list[int] = [int(s) for s in adl[3].tolist()] if adl else []  # type: ignore[index]
        vault = INSURANCE_ROW if self.policy.backstop_is_fund else BACKSTOP
        system = self._system_roles
        if system is None or system[0] != vault:
            # once per sweep (system_ledger_id creates the rows on first use, as before)
            system = self._system_roles = (vault, {
                "market": ctx.system_ledger_id(MARKET), "insurance": INSURANCE,
                "liquidator": LIQUIDATOR, "rounding": ROUNDING,
                "backstop": ctx.system_ledger_id(vault),
                "fund_positions": ctx.system_ledger_id(INSURANCE_ROW)})
        roles = dict(system[1])
        roles["account"] = row_id

        def ledger_of(role: str) -> str:
            if role in roles:
                return roles[role]
            _adl, idx = role.split(":")  # social:<i> legs are not asked for (see below)
            slot = adl_slots[int(idx)]
            return book.rows[int(book.st[slot, S_ROW])].ledger_id

        # socialized losses: the account is paid from sys:social now; the charges to the
        # participants are posted once per market at the end of the sweep (_settle_social)
        batch = [Transfer(ledger_of(leg.debit), ledger_of(leg.credit), settle,
                          leg.amount_quanta, leg.code)
                 for leg in plan.transfers(social_legs=False)]
        for step in plan.steps:
            if isinstance(step, SocializedLoss) and step.covered_quanta:
                batch.append(Transfer(SOCIAL, row_id, settle, step.covered_quanta,
                                      "socialized_loss"))
                self.pending_social[pos.m] = self.pending_social.get(pos.m, 0) + (
                    step.covered_quanta)
        if batch:
            ctx.post(batch)
        events: list[OutEvent] = []
        sign = 1 if pos.lots > 0 else -1
        touched = {r}
        penalty = 0
        fund_delta = 0
        for step in plan.steps:
            if isinstance(step, Penalty):
                penalty += step.liquidator_quanta + step.insurance_quanta
                fund_delta += step.insurance_quanta
            elif isinstance(step, InsurancePayment):
                fund_delta -= step.amount_quanta
        if self.loss_rule is not None and settle == self.loss_asset:
            self._note_losses(pos, plan)
        if plan.capacity_used_quanta and self._close_cost:
            self._close_cost.pop(pos.m, None)  # the fund's position there changed
        dec = ctx.asset_decimals[pos.a]
        # closes against a system counterparty: (its row, count key, event label)
        takers = {MarketClose: (MARKET, "liquidations", "market"),
                  BackstopTakeover: (vault, "backstop", "backstop"),
                  FundTakeover: (INSURANCE_ROW, "fund_takeover", "insurance_fund")}
        for step in plan.steps:
            if isinstance(step, MarketClose | BackstopTakeover | FundTakeover):
                role, count, label = takers[type(step)]
                other = self._counterparty_row(role)
                self._trade(r, other, pos.m, sign, step.lots, step.quote_quanta)
                if role == MARKET and step.lots:
                    listener = getattr(ctx.liquidity, "executed", None)
                    if listener is not None:  # an ExecutionListener: what really traded
                        listener(inst.name, -sign * step.lots, step.quote_quanta)
                touched.add(other)
                self.counts[count] += 1
                events.append(self._liquidated(r, pos, step.lots, label,
                                               self._price_of(pos.m, step.lots,
                                                              step.quote_quanta),
                                               cause, bq, close, penalty, fund_delta, dec))
            elif isinstance(step, AdlFill):
                slot = adl_slots[step.position]
                other = int(book.st[slot, S_ROW])
                self._trade(r, other, pos.m, sign, step.lots, step.quote_quanta)
                touched.add(other)
                self.counts["adl"] += 1
                events.append(Deleveraged(
                    id=ctx.next_id(), event=cause, account=book.rows[r].name,
                    counterparty=book.rows[other].name, market=inst.name,
                    size=str(Decimal(step.lots) * inst.lot_size),
                    price=_format_price(self._price_of(pos.m, step.lots, step.quote_quanta))))
            elif isinstance(step, SocializedLoss):
                self.counts["socialized"] += 1
                events.append(SocializedLossEvent(
                    id=ctx.next_id(), event=cause, account=book.rows[r].name,
                    market=inst.name, rule=str(step.rule),
                    loss=format_quanta(step.loss_quanta, dec),
                    covered=format_quanta(step.covered_quanta, dec),
                    bad_debt=format_quanta(step.bad_debt_quanta, dec)))
            elif isinstance(step, Unresolved):
                events.append(Liquidated(
                    id=ctx.next_id(), event=cause, account=book.rows[r].name,
                    market=inst.name, size=str(Decimal(step.lots) * inst.lot_size),
                    price="", via="unresolved", bankruptcy_price="", penalty="0",
                    insurance_fund_delta="0"))
        if plan.closed_lots:
            self.counts["steps"] += 1
        if self.policy.cooldown_ms and close < abs(pos.lots):
            self.last_partial_ms[r] = ctx.clock_ms or 0
        self.touched |= touched
        rows = np.array(sorted(touched), dtype=np.int64)
        for x in rows.tolist():
            for b in range(len(book.asset_names)):
                ctx.sync_balance(x, b)
        insurance_row = book.row_index.get(INSURANCE_ROW)
        if insurance_row is not None:
            ctx.sync_balance(insurance_row, pos.a)
        book.refresh(book.rows_slots(rows))
        return events

    def _note_losses(self, pos: _Position, plan: WaterfallPlan) -> None:
        """Add a step's penalties to the fund and its ADL haircuts (each fill's price
        against the position's value at the mark, for the counterparty: ``|quote| -
        |value|`` on a long, the reverse on a short, and reversed again on an inverse
        market, whose coin amounts fall as prices rise) to the sweep's counters."""
        book = self.ctx.book
        value = abs(int(book.st[pos.slot, S_VALUE]))
        lots = abs(pos.lots)
        side = (1 if pos.lots > 0 else -1) * (-1 if book.instruments[pos.m].is_inverse else 1)
        for step in plan.steps:
            if isinstance(step, Penalty):
                self._sweep_fund_in += step.insurance_quanta
            elif isinstance(step, AdlFill) and lots:
                v = value * step.lots // lots
                self._sweep_adl_haircut += max(0, side * (abs(step.quote_quanta) - v))

    def _counterparty_row(self, name: str) -> int:
        return self.ctx.system_row(name)

    def _trade(self, r: int, other: int, m: int, sign: int, lots: int, quote_q: int) -> None:
        """Move ``lots`` of the liquidated position to ``other`` at ``quote_q`` (exact)."""
        ctx = self.ctx
        book = ctx.book
        oi = book.oi_lots[m]
        for row, direction, cost in ((r, -sign, -quote_q), (other, sign, quote_q)):
            s = book.slot_of(row, m)
            old = int(book.st[s, S_LOTS]) if s >= 0 else 0
            new = old + direction * lots
            info = book.rows[row]
            change = PositionChange(info.account, row, info.name, info.ledger_id,
                                    info.market >= 0, old, new, 0)
            ctx.move_position(change, m, cost)
            oi += max(new, 0) - max(old, 0)
        book.set_oi(m, oi)

    def _price_of(self, m: int, lots: int, quote_q: int) -> float:
        inst = self.ctx.book.instruments[m]
        scale = self.ctx.book.asset_scale[self.ctx.settle_asset[m]]
        contracts = lots * float(inst.lot_size) * float(inst.contract_size)
        amount = abs(quote_q) / scale
        if contracts == 0 or amount == 0:
            return float("nan")
        return float(contracts / amount if inst.is_inverse else amount / contracts)

    def _liquidated(self, r: int, pos: _Position, lots: int, via: str, price: float, cause: str,
                    bq: int, close: int, penalty: int, fund_delta: int,
                    dec: int) -> Liquidated:
        ctx = self.ctx
        inst = ctx.book.instruments[pos.m]
        return Liquidated(
            id=ctx.next_id(), event=cause, account=ctx.book.rows[r].name, market=inst.name,
            size=str(Decimal(lots) * inst.lot_size), price=_format_price(price), via=via,
            bankruptcy_price=_format_price(self._exec_price(pos, bq, close)),
            penalty=format_quanta(penalty, dec),
            insurance_fund_delta=format_quanta(fund_delta, dec))

    # ------------------------------------------------------------------ the fund

    def _fund_row(self) -> int | None:
        return self.ctx.book.row_index.get(INSURANCE_ROW)

    def fund_equity_quanta(self, a: int) -> tuple[int, int, int]:
        """The fund in asset ``a``: ``(cash, position account, positions at the mark)``
        in quanta; its equity is their sum (exact: ledger balances and the book's
        integer position values)."""
        ctx = self.ctx
        book = ctx.book
        sym = book.asset_names[a]
        cash = ctx.ledger.balance(INSURANCE, sym)
        r = self._fund_row()
        if r is None:
            return cash, 0, 0
        n_a = len(book.asset_names)
        return cash, ctx.ledger.balance(FUND_POSITIONS, sym), int(book.row_int[r, n_a + a])

    def fund_capacity_quanta(self, a: int) -> int:
        """What the ADL trigger counts of the fund in asset ``a`` (``policy.fund_capacity``):
        its cash; its equity (cash + position account + positions at the mark); or that
        equity less what closing the positions would cost at the book's current depth
        (mark value less what the liquidity port's levels pay, lots beyond them at the
        unwind band's limit). Exact quanta; the close cost is quoted once per sweep and
        market (again after the fund's position there changed)."""
        cash, held_cost, held_value = self.fund_equity_quanta(a)
        rule = self.policy.fund_capacity
        if rule == "cash":
            return cash
        equity = cash + held_cost + held_value
        if rule == "equity" or (held_value == 0 and held_cost == 0):
            return equity
        return equity - sum(self._close_cost_quanta(s) for s in self._fund_slots(a))

    def fund_capacity_now_quanta(self, a: int) -> int:
        """:meth:`fund_capacity_quanta` read from outside a sweep (the stress lab's
        recorder): the close cost at depth is quoted afresh and the sweep's cache is left
        as it was, so reading it changes nothing the engine decides."""
        saved = self._close_cost
        self._close_cost = {}
        try:
            return self.fund_capacity_quanta(a)
        finally:
            self._close_cost = saved

    def _fund_slots(self, a: int) -> list[int]:
        # the fund's slots in markets settled in asset ``a``, in market order
        r = self._fund_row()
        if r is None:
            return []
        st = self.ctx.book.st
        settle = self.ctx.settle_asset
        held = []
        for s in self.ctx.book.row_slots(r):
            fields = st[s].tolist()  # one read of the slot (Python ints)
            m = fields[0]
            if settle[m] == a and fields[S_LOTS] != 0:
                held.append((m, s))
        held.sort()  # market order (a row holds one slot a market)
        return [s for _m, s in held]

    def _close_cost_quanta(self, s: int) -> int:
        """Mark value of fund slot ``s`` less what closing it at current depth pays."""
        book = self.ctx.book
        m = int(book.slot_market[s])
        cached = self._close_cost.get(m)
        if cached is not None:
            return cached
        lots = int(book.st[s, S_LOTS])
        is_long = lots > 0
        value_q = int(book.st[s, S_VALUE])
        _lots, depth = self._book_close(m, is_long, abs(lots), banded=False)
        cost = value_q - depth
        self._close_cost[m] = cost
        return cost

    def _book_close(self, m: int, is_long: bool, lots: int, *,
                    banded: bool) -> tuple[int, int]:
        """Lots and exact quanta of closing ``lots`` of a ``is_long`` position in the book
        now: the port's levels (only those within the unwind band when ``banded``), lots
        beyond them valued at the band's limit (``banded=False``) or left open."""
        ctx = self.ctx
        inst = ctx.book.instruments[m]
        marks = ctx.book.marks[m]
        if marks is None or lots == 0:
            return 0, 0
        sign = 1 if is_long else -1
        quote = self._quote_fn(m, is_long)
        far = self._far_ticks(m, is_long)
        # a valuation, not an order: a port that moves its book by what it quotes (the
        # stress lab's with agents) offers ``peek``, a quote that leaves the book as it is
        peek = getattr(ctx.liquidity, "peek", None)
        fills = (peek or ctx.liquidity.quote)(inst.name, -sign * lots, marks, inst.tick_size)
        done = value = 0
        for f in fills:
            if f.lots <= 0:
                continue
            ticks = int(f.price / inst.tick_size)
            if banded and (ticks < far if is_long else ticks > far):
                break
            take = min(f.lots, lots - done)
            value += quote(take, ticks)
            done += take
            if done == lots:
                break
        if not banded and done < lots:
            value += quote(lots - done, far)
            done = lots
        return done, value

    def _far_ticks(self, m: int, is_long: bool) -> int:
        """The fund's worst unwind price for a ``is_long`` position, in ticks: the mark
        less (a sale) or plus (a purchase) the policy's band, rounded against the fund
        (at least one tick)."""
        book = self.ctx.book
        marks = book.marks[m]
        if marks is None:
            return 1
        ppm = self.policy.fund_unwind_band_ppm
        tick = book.instruments[m].tick_size
        key = (m, is_long, marks, tick, ppm)
        far = self._far_cache.get(key)
        if far is not None:
            return far
        # asked on every liquidation step and fund valuation at an unchanged mark: the
        # Fraction arithmetic once per (mark, side) (~55 us a step on the 20 % shock)
        band = Fraction(ppm, PPM)
        t = Fraction(marks) / Fraction(tick)
        if is_long:
            x = t * (1 - band)
            far = max(1, div_round(x.numerator, x.denominator, "floor"))
        else:
            x = t * (1 + band)
            far = max(1, div_round(x.numerator, x.denominator, "ceil"))
        if len(self._far_cache) >= 1024:
            self._far_cache.clear()
        self._far_cache[key] = far
        return far

    def _takeover_lots_max(self, pos: _Position, value_q: int, capacity: int) -> int | None:
        """Lots the fund may take over in ``pos``'s market within its position cap:
        net notional at most ``fund_position_cap_ppm`` of its counted capacity (Binance:
        100% of the fund); a takeover that reduces its net position always fits. A
        sizing limit: the notional per lot is a float estimate."""
        cap_ppm = self.policy.fund_position_cap_ppm
        if cap_ppm == 0 or pos.lots == 0:
            return None
        book = self.ctx.book
        r = self._fund_row()
        held = 0
        if r is not None:
            s = book.slot_of(r, pos.m)
            held = int(book.st[s, S_LOTS]) if s >= 0 else 0
        unit = abs(value_q) / abs(pos.lots)
        cap_lots = int(max(capacity, 0) * cap_ppm / PPM / unit) if unit > 0 else 0
        side = 1 if pos.lots > 0 else -1
        if side * held < 0:
            return abs(held) + cap_lots
        return max(0, cap_lots - abs(held))

    def unwind_fund(self, m: int, now_ms: int | None, cause: str) -> list[OutEvent]:
        """Close part of the fund's position in market ``m`` through the liquidity port,
        as a liquidator would; called when ``m``'s mark moved (at ``now_ms``, the mark's
        time). At most ``fund_unwind_portion_ppm`` of the position, only at levels within
        ``fund_unwind_band_ppm`` of the new mark, at most once per
        ``fund_unwind_interval_ms`` of that time per market (at each mark move when the
        mark has no time), never while the market's breaker pauses liquidations.

        The schedule depends on the mark's moves and their times only, not on how many
        events carry them: a run fed by oracle reports whose median moves the mark is the
        run of the same marks as price events. Proceeds go to the fund's position
        account, exact; a position closed to flat in an asset moves that account's
        balance (the unwind P&L) to the fund's cash."""
        p = self.policy
        r = self._fund_row()
        if p.fund_unwind_band_ppm == 0 or r is None or not self.enabled:
            return []
        ctx = self.ctx
        book = ctx.book
        s = book.slot_of(r, m)
        if s < 0:
            return []
        lots = int(book.st[s, S_LOTS])
        if lots == 0 or not ctx.allows_liquidation(m):
            return []
        last = self.last_unwind_ms.get(m)
        if now_ms is not None and last is not None and (
                now_ms <= last or now_ms - last < p.fund_unwind_interval_ms):
            return []
        want = min(max(abs(lots) * p.fund_unwind_portion_ppm // PPM, 1), abs(lots))
        done, q = self._book_close(m, lots > 0, want, banded=True)
        if not done:
            return []
        if getattr(ctx.liquidity, "peek", None) is not None:
            # the order: only the lots within the band (what was valued was peeked)
            marks = book.marks[m]
            assert marks is not None
            sign = 1 if lots > 0 else -1
            ctx.liquidity.quote(book.instruments[m].name, -sign * done, marks,
                                book.instruments[m].tick_size)
        self.venue_wide = self.venue_wide or "the fund's unwind"
        if now_ms is not None:
            self.last_unwind_ms[m] = now_ms
        events: list[OutEvent] = [self._unwind(r, s, m, lots, done, q, cause)]
        self._settle_fund_positions(r, ctx.settle_asset[m])
        return events

    def _unwind(self, r: int, s: int, m: int, lots: int, done: int, q: int,
                cause: str) -> FundUnwound:
        """Post one unwind: the book's row takes ``done`` lots of the fund's position for
        ``q`` quanta (signed: what the fund receives)."""
        ctx = self.ctx
        book = ctx.book
        inst = book.instruments[m]
        settle = inst.settle
        sign = 1 if lots > 0 else -1
        cost_before = int(book.slot_cost[s])
        market = ctx.system_row(MARKET)
        market_id = book.rows[market].ledger_id
        if q > 0:
            ctx.post([Transfer(market_id, FUND_POSITIONS, settle, q, "insurance_unwind")])
        elif q < 0:
            ctx.post([Transfer(FUND_POSITIONS, market_id, settle, -q, "insurance_unwind")])
        self._trade(r, market, m, sign, done, q)
        listener = getattr(ctx.liquidity, "executed", None)
        if listener is not None:
            listener(inst.name, -sign * done, q)
        s_after = book.slot_of(r, m)
        cost_after = int(book.slot_cost[s_after]) if s_after >= 0 else 0
        pnl = q - (cost_before - cost_after)
        if self.loss_rule is not None and settle == self.loss_asset:
            # the fund sold below (bought back above) what it paid taking the position
            # over: a realized loss, dated by the mark's event
            self._record_loss(-pnl)
        self.counts["fund_unwind"] = self.counts.get("fund_unwind", 0) + 1
        self._close_cost.pop(m, None)
        for x in (r, market):
            ctx.sync_balance(x, ctx.settle_asset[m])
        book.refresh(book.rows_slots(np.array(sorted((r, market)), dtype=np.int64)))
        dec = ctx.asset_decimals[ctx.settle_asset[m]]
        return FundUnwound(
            id=ctx.next_id(), event=cause, market=inst.name,
            size=str(Decimal(-sign * done) * inst.lot_size),
            price=_format_price(self._price_of(m, done, q)),
            proceeds=format_quanta(q, dec), pnl=format_quanta(pnl, dec),
            left=str(Decimal(lots - sign * done) * inst.lot_size))

    def _settle_fund_positions(self, r: int, a: int) -> None:
        """When the fund holds nothing settled in asset ``a``, move its position account's
        balance to its cash: a gain in full; a loss from the cash as far as it reaches,
        the rest recorded as bad debt (the fund's equity went below zero)."""
        if self._fund_slots(a):
            return
        ctx = self.ctx
        sym = ctx.book.asset_names[a]
        bal = ctx.ledger.balance(FUND_POSITIONS, sym)
        batch = []
        if bal > 0:
            batch.append(Transfer(FUND_POSITIONS, INSURANCE, sym, bal, "insurance_unwind_pnl"))
        elif bal < 0:
            pay = min(max(ctx.ledger.balance(INSURANCE, sym), 0), -bal)
            if pay:
                batch.append(Transfer(INSURANCE, FUND_POSITIONS, sym, pay,
                                      "insurance_unwind_pnl"))
            if -bal - pay:
                batch.append(Transfer(BAD_DEBT, FUND_POSITIONS, sym, -bal - pay, "bad_debt"))
                self.counts["bad_debt"] += 1
        if batch:
            ctx.post(batch)
            ctx.sync_balance(r, a)

    # ------------------------------------------------------------------ deficits

    def _settle_deficit(self, r: int, cause: str) -> list[OutEvent]:
        """A flat row with negative balances: collateral valued by rule exchanged into
        what it owes (:meth:`_auto_exchange`), then the shortfall recorded as bad debt."""
        ctx = self.ctx
        book = ctx.book
        events: list[OutEvent] = self._auto_exchange(r, cause) if self._valued else []
        info = book.rows[r]
        n_a = len(book.asset_names)
        coll, _mm = self._value(r)
        if coll >= 0:
            # collateral in other assets still covers it: a borrow, not a bad debt
            self.deficit_rows.discard(r)
            return events
        self.venue_wide = self.venue_wide or "a deficit paid by the fund or recorded"
        for a, sym in enumerate(book.asset_names):
            bal = ctx.ledger.balance(info.ledger_id, sym)
            if bal >= 0 or book.row_int[r, n_a + a] != 0:
                continue
            fund = ctx.ledger.balance(INSURANCE, sym)
            pay = min(fund, -bal)
            batch = []
            if pay:
                batch.append(Transfer(INSURANCE, info.ledger_id, sym, pay, "insurance_payment"))
            rest = -bal - pay
            if rest:
                batch.append(Transfer(BAD_DEBT, info.ledger_id, sym, rest, "bad_debt"))
            ctx.post(batch)
            ctx.sync_balance(r, a)
            if pay:
                # the fund's row mirrors its ledger balance too (it may hold positions)
                fund_row = book.row_index.get(INSURANCE_ROW)
                if fund_row is not None:
                    ctx.sync_balance(fund_row, a)
            dec = ctx.asset_decimals[a]
            if rest:
                self.counts["bad_debt"] += 1
            events.append(BadDebt(id=ctx.next_id(), event=cause, account=info.name, asset=sym,
                                  insurance_paid=format_quanta(pay, dec),
                                  bad_debt=format_quanta(rest, dec)))
        self.deficit_rows.discard(r)
        return events

    @property
    def _valued(self) -> list[int]:
        """Assets the venue values by rule (``assets.X.valuation``)."""
        book = self.ctx.book
        return [a for a, sym in enumerate(book.asset_names)
                if book.venue.assets[sym].valuation is not None]

    def _usd_exact(self, a: int) -> Fraction | None:
        """Exact USD price of asset ``a`` (:meth:`Book.usd_price_exact`) as a fraction."""
        px = self.ctx.book.usd_price_exact(a)
        return None if px is None else Fraction(px)

    def _auto_exchange(self, r: int, cause: str) -> list[OutEvent]:
        """Exchange a liquidated, flat row's collateral valued by rule into the assets it
        owes, in proportion to the collateral's value (Binance's auto-exchange).

        Binance, "Multi-Assets Mode" trading rules
        (https://www.binance.com/en-NG/futures/trading-rules/perpetual/multi-asset-info,
        read 2026-12-07): on a liquidation whose USDT balance does not cover the deficit,
        auto-exchange converts collateral at its haircut value, "20,000 BUSD / 97.5 % =
        20,513 BUSD of the BTC", several assets "according to the proportion of each
        asset". Here: for a debt ``D`` (USD value ``D x p_a``) each held valued asset
        ``c`` gives ``D x p_a x v_c / sum(v)`` (``v = balance x p_c x w_c``, ``w`` its
        first collateral tier's weight), selling ``share / (p_c x w_c)`` of it rounded
        *up* to a quantum (at most the balance) and crediting the sale's haircut value
        rounded *down* (at most the debt): both roundings in the venue's favour. The buyer
        is the venue's book (``__market__``), at the rule's price.
        """
        ctx = self.ctx
        book = ctx.book
        info = book.rows[r]
        events: list[OutEvent] = []
        valued = self._valued
        market = ctx.system_row(MARKET)
        market_id = book.rows[market].ledger_id
        for a, sym in enumerate(book.asset_names):
            debt = -ctx.ledger.balance(info.ledger_id, sym)
            px_a = self._usd_exact(a)
            if debt <= 0 or a in valued or px_a is None or px_a <= 0:
                continue
            held = []
            for c in valued:
                bal = ctx.ledger.balance(info.ledger_id, book.asset_names[c])
                px_c = self._usd_exact(c)
                if bal > 0 and px_c is not None and px_c > 0:
                    w = Fraction(book.venue.assets[book.asset_names[c]].collateral[0].weight)
                    if w > 0:
                        held.append((c, bal, px_c * w))
            if not held:
                continue
            scale_a = book.asset_scale[a]
            need = Fraction(debt, scale_a) * px_a  # USD
            total = sum(Fraction(bal, book.asset_scale[c]) * unit for c, bal, unit in held)
            for c, bal, unit in held:
                scale_c = book.asset_scale[c]
                value = Fraction(bal, scale_c) * unit
                share = need * value / total if total > need else value
                q = min(bal, math.ceil(share / unit * scale_c))
                credit = min(debt, math.floor(Fraction(q, scale_c) * unit / px_a * scale_a))
                if q <= 0:
                    continue
                sym_c = book.asset_names[c]
                batch = [Transfer(info.ledger_id, market_id, sym_c, q, "collateral_exchange")]
                if credit > 0:
                    batch.append(Transfer(market_id, info.ledger_id, sym, credit,
                                          "collateral_exchange"))
                ctx.post(batch)
                debt -= credit
                for row in (r, market):
                    ctx.sync_balance(row, c)
                    ctx.sync_balance(row, a)
                events.append(CollateralExchanged(
                    id=ctx.next_id(), event=cause, account=info.name, asset=sym_c,
                    amount=format_quanta(q, ctx.asset_decimals[c]),
                    price=str(book.asset_price_exact[c]), to_asset=sym,
                    credited=format_quanta(credit, ctx.asset_decimals[a])))
        return events

    def _update_system_state(self, cause: str) -> list[OutEvent]:
        """Block withdrawals in a collateral pool while a deficit is unresolved (dYdX)."""
        ctx = self.ctx
        book = ctx.book
        pending: set[str] = set()
        for r in sorted(self.deficit_rows):
            coll, _mm = self._value(r)
            if coll < 0:
                for s in book.row_slots(r):
                    pending.add(book.instruments[int(book.slot_market[s])].settle)
        events: list[OutEvent] = []
        for sym in sorted(pending - self.blocked_assets):
            events.append(WithdrawalState(id=ctx.next_id(), event=cause, asset=sym,
                                          state="blocked",
                                          reason="negative equity not yet resolved"))
        for sym in sorted(self.blocked_assets - pending):
            events.append(WithdrawalState(id=ctx.next_id(), event=cause, asset=sym,
                                          state="open", reason="deficits resolved"))
        if events:
            self.venue_wide = self.venue_wide or "the withdrawal block"
        self.blocked_assets = pending
        return events

    # ------------------------------------------------------------------ ranks

    def _scores(self, m: int, slots: np.ndarray) -> np.ndarray:
        """ADL queue scores of positions (higher: deleveraged first), by the venue's rule.

        Leverage is BitMEX's effective leverage, ``|mark value| / (mark value - bankrupt
        value)`` with the bankrupt value taken as the mark value less the holding row's
        collateral (the whole collateral backs a cross position); Binance's rule uses the
        row's margin ratio. The same scores order execution and the displayed ranks.
        """
        book = self.ctx.book
        a = self.ctx.settle_asset[m]
        px = float(book.asset_price[a])
        scale = book.asset_scale[a]
        rows = book.st[slots, S_ROW]
        vals = book.aggregate(rows)
        coll_q = np.maximum(vals[:, OUT_COLLATERAL], 0.0) / px * scale
        value = book.st[slots, S_VALUE].astype(np.float64)
        entry = book.slot_cost[slots].astype(np.float64)
        # value at the bankruptcy price: the collateral is lost on either side (a long is
        # worth size x P_b = value - coll, a short -size x P_b = value - coll as well)
        bankrupt = value - coll_q
        ranking = self.policy.adl_ranking
        if ranking == "none":
            ranking = "bitmex"
        margin_ratio = None
        if ranking == "binance":
            with np.errstate(divide="ignore", invalid="ignore"):
                margin_ratio = np.where(vals[:, OUT_COLLATERAL] > 0,
                                        vals[:, OUT_MM] / vals[:, OUT_COLLATERAL], np.inf)
        scores: np.ndarray = adl_scores(ranking, mark_value=value, entry_value=entry,
                                        bankrupt_value=bankrupt, margin_ratio=margin_ratio)
        return scores

    def adl_rank_table(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        """ADL queue quintile of every position in market ``m``, per side (1: first to be
        deleveraged, like the venues' five lights; BitMEX quintiles of cumulative size).

        Returns the market's non-system slots in ascending order and their quintiles, both
        int64 arrays (vectorized over the holders; look a slot up with ``searchsorted``).
        """
        book = self.ctx.book
        slots = self._holders_by_row(m)
        ranks = np.zeros(slots.shape[0], dtype=np.int64)
        if slots.shape[0] == 0:
            return slots, ranks
        lots = book.st[slots, S_LOTS]
        scores = self._scores(m, slots)
        for side in (1, -1):
            sel = np.sign(lots) == side
            if sel.any():
                ranks[sel] = adl_quintiles(scores[sel], lots[sel])
        by_slot = np.argsort(slots)
        return slots[by_slot], ranks[by_slot]

    def adl_scored_holders(self, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                  np.ndarray]:
        """Market ``m``'s non-system slots in holder order with their rows, signed lots and
        ADL scores (:meth:`_scores`, the table's): what :func:`adl_rank_in` counts over."""
        book = self.ctx.book
        slots = book.holders[m].view()
        rows = book.st[slots, S_ROW]
        keep = ~book.row_system[rows]
        slots, rows = slots[keep], rows[keep]
        lots = book.st[slots, S_LOTS]
        return slots, rows, lots, self._scores(m, slots)

    def adl_rank_of_slot(self, m: int, s: int) -> int | None:
        """ADL queue quintile of slot ``s`` in market ``m`` alone, equal to its entry in
        :meth:`adl_rank_table` (None: not ranked: a system row's or not a holder), by
        :func:`adl_rank_in` over :meth:`adl_scored_holders`: no sort (issue 26)."""
        return adl_rank_in(self.adl_scored_holders(m), s)

    def _holders_by_row(self, m: int) -> np.ndarray:
        """Non-system slots of market ``m`` in row order: the ADL queue's tie order.

        Ties of equal score go to the older row (rows are numbered in creation order and a
        restore recreates them in that order); slot numbers would not do, since a restore
        or a reused free slot renumbers positions, and a restored engine would deleverage
        another counterparty than the one that never stopped.
        """
        book = self.ctx.book
        slots = book.holders[m].view()
        rows = book.st[slots, S_ROW]
        keep = ~book.row_system[rows]
        slots, rows = slots[keep], rows[keep]
        ordered: np.ndarray = slots[np.argsort(rows, kind="stable")]
        return ordered


def _format_price(x: float) -> str:
    # out-event prices: 8 significant digits, empty when there is none
    if not math.isfinite(x):
        return ""
    return f"{x:.8g}"


def adl_rank_in(scored: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                s: int) -> int | None:
    """ADL quintile of slot ``s`` among ``scored = (slots, rows, lots, scores)``
    (:meth:`Liquidator.adl_scored_holders`), equal to its entry in
    :meth:`Liquidator.adl_rank_table`; None when ``s`` is not among them, 0 for a flat one.

    The table sorts each side by score (ties to the older row) and gives a position
    ``ceil(5 x cum / total)``, ``cum`` the side's size up to and including it; so one
    pass counts it: the size of the side's positions with a higher score, or the same
    score and a lower row number, plus its own (issue 26: no sort for one account's view).
    """
    slots, rows, lots, scores = scored
    own = np.flatnonzero(slots == s)
    if own.shape[0] != 1:
        return None
    i = int(own[0])
    lots0 = int(lots[i])
    if lots0 == 0:
        return 0
    side = (lots > 0) if lots0 > 0 else (lots < 0)
    s0 = scores[i]
    ahead = side & ((scores > s0) | ((scores == s0) & (rows < rows[i])))
    absz = np.abs(lots)
    total = int(absz[side].sum())
    cum = int(absz[ahead].sum()) + abs(lots0)
    return min(max(-((-5 * cum) // total), 1), 5)
