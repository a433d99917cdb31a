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
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import numpy as np

from solvency.core.ledger.ledger import (
    CLEARING,
    Ledger,
)
from solvency.core.liquidation import LiquidationPolicy
from solvency.core.margin.kernels import (
    MK_IM_SLOPE,
    MK_MM_SLOPE,
    OUT_COLLATERAL,
    OUT_EQUITY,
    OUT_IM,
    OUT_MM,
    S_LOTS,
    S_VALUE,
)
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
from solvency.core.options import black76_greeks
from solvency.core.options.exposure import greeks_exposure
from solvency.core.oracle import OracleReport
from solvency.core.portfolio import ScenarioGrid
from solvency.core.volatility import liquidation_probability_driftless
from solvency.engine.accounts import (
    apply_account_mode,
    apply_deposit,
    apply_isolated_margin,
    apply_withdraw,
    set_portfolio,
)
from solvency.engine.base import (
    MS_PER_YEAR,
    EngineError,
    EngineState,
    RejectReason,
    format_number,
)
from solvency.engine.expiry import apply_expiry
from solvency.engine.fills import apply_fill
from solvency.engine.funding import apply_funding
from solvency.engine.insurance import coverage, open_interest_quanta
from solvency.engine.loading import STREET, load_book, seed_position, transfer_isolated
from solvency.engine.marks import apply_oracle, apply_price, apply_vol, time_passes, volatility
from solvency.engine.options import option_price, option_requirements
from solvency.engine.orders import apply_order
from solvency.engine.params import apply_params
from solvency.engine.portfolio_margin import underlying_usd
from solvency.engine.ports import Liquidity
from solvency.engine.pretrade import Order

__all__ = ["MS_PER_YEAR", "STREET", "Engine", "EngineError", "RejectReason"]

SNAPSHOT_VERSION = 1


HANDLERS: Mapping[type, Callable[[EngineState, Any], list[Any]]] = {
    Fill: apply_fill,
    Price: apply_price,
    Vol: apply_vol,
    OracleReport: apply_oracle,
    Order: apply_order,
    Deposit: apply_deposit,
    Withdraw: apply_withdraw,
    AccountMode: apply_account_mode,
    IsolatedMargin: apply_isolated_margin,
    Funding: apply_funding,
    Expiry: apply_expiry,
    Params: apply_params,
}
"""Input event type -> the function that handles it (``module.function(state, event)``):
each validates, then changes the state, then returns its out-events."""


class Engine(EngineState):
    """Deterministic risk engine over one venue's accounts.

    Parameters
    ----------
    venue
        The venue (a preset or a user's config) whose assets and markets it runs.
    liquidity
        What the venue's book absorbs when a position is liquidated.
    policy
        The liquidation policy (default: the venue's preset policy).
    pm_grid
        The scenario grid of portfolio margin (None: no portfolio mode).
    """

    def __init__(self, venue: Venue, *, liquidity: Liquidity | None = None,
                 policy: LiquidationPolicy | None = None,
                 pm_grid: ScenarioGrid | None = None) -> None:
        super().__init__(venue, liquidity=liquidity, policy=policy, pm_grid=pm_grid)

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
            handler = HANDLERS.get(type(event))
            if handler is None:
                raise RejectReason("unknown_type", f"{type(event).__name__}")
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

    def apply_all(self, events: Iterable[InputEvent | OracleReport | Order]) -> list[Any]:
        """Apply events in order; return every out-event."""
        out: list[Any] = []
        for ev in events:
            out.extend(self.apply(ev))
        return out

    # ================================================================ lookups

    # ================================================================ handlers

    # ---------------------------------------------------------------- options

    # ---------------------------------------------------------------- oracle, orders

    # ---------------------------------------------------------------- fills

    # ---------------------------------------------------------------- settlements

    # ================================================================ book loading

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
        rows = self.rows_of(account)
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
                equity[sym] = format_number((cash[a] + int(pos_value[a])) / book.asset_scale[a])
        coll = float(out[:, OUT_COLLATERAL].sum())
        mm = float(out[:, OUT_MM].sum())
        im = float(out[:, OUT_IM].sum())
        return {
            "account": account,
            "mode": self.accounts.get(account, "cross"),
            "equity": equity,
            "equity_usd": format_number(float(out[:, OUT_EQUITY].sum())),
            "collateral_usd": format_number(coll),
            "initial_margin": format_number(im),
            "maintenance_margin": format_number(mm),
            "margin_ratio": format_number(
                mm / coll if coll > 0 else (float("inf") if mm > 0 else 0.0)),
            "free_collateral": format_number(coll - im),
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
        hit = self.adl_rank_cache.get(m)
        if hit is None or hit[0] != self.epoch:
            slots, ranks = self.liquidator.adl_rank_table(m)
            hit = (self.epoch, slots, ranks)
            self.adl_rank_cache[m] = hit
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
            "entry_price": format_number(entry),
            "mark_price": str(book.marks[m]),
            "settle": inst.settle,
            "notional": format_number(notional * px),
            "initial_margin": format_number(im * px),
            "maintenance_margin": format_number(mm * px),
            "unrealized_pnl": format_number((value - cost) * px),
            "liquidation_price": None if np.isnan(liq) else format_number(liq),
            "volatility": format_number(vol),
            "liquidation_probability": format_number(prob),
        }

    # ================================================================ portfolio margin

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

    def option_price(self, o: int) -> float | None:
        """Black-76 premium of option market ``o``
        (:func:`~solvency.engine.options.option_price`)."""
        return option_price(self, o)

    def option_requirements(self, o: int, mark: float) -> tuple[float, float]:
        """Margin per short contract of option market ``o`` at premium ``mark``
        (:func:`~solvency.engine.options.option_requirements`)."""
        return option_requirements(self, o, mark)

    def volatility(self, m: int) -> float:
        """Annualized volatility of a market's mark (EWMA; the default before data)."""
        return volatility(self, m)

    def open_interest_quanta(self, asset: str) -> int:
        """Open-interest notional of markets settled in ``asset``, in its quanta."""
        return open_interest_quanta(self, asset)

    def coverage(self, asset: str) -> float:
        """Insurance fund / open-interest notional of the markets settled in ``asset``."""
        return coverage(self, asset)

    def underlying_usd(self, symbol: str) -> float:
        """USD price of an underlying coin: its asset price, else a futures market's mark."""
        return underlying_usd(self.book, symbol)

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
                set_portfolio(engine, book.row_index[name], True)
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


