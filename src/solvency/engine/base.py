"""The engine's state, and the few helpers every event family shares.

:class:`EngineState` holds everything an :class:`~solvency.engine.engine.Engine` knows:
the venue, the book (arrays), the exact ledger, the liquidator, the feeds, the clock and
the out-event sequence, per-market indexes and the scratch buffers of the fill path. Its
methods are the shared vocabulary of the event families (``fills.py``, ``accounts.py``,
``funding.py``, ``expiry.py``, ``params.py``, ``marks.py`` ...): look a market, an asset or
an account up (or reject the event), post a ledger batch, mirror a balance into the book,
value a row as if a trade happened, move a position. It satisfies the two Protocols of
``context.py``, which is all that the liquidator and the feeds see of it.

Rejections are raised as :class:`RejectReason` before anything changes; a broken
invariant raises :class:`EngineError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Context, Decimal, Inexact
from typing import Any

import numpy as np

from solvency.core.ledger.ledger import INSURANCE, Ledger, Result, Transfer
from solvency.core.liquidation import (
    NO_POLICY_HINT,
    FeeSharePolicy,
    LiquidationPolicy,
    TargetFromLosses,
)
from solvency.core.margin.kernels import S_COST, S_LOTS, row_whatif
from solvency.core.model.instruments import Instrument
from solvency.core.model.venue import ConfigError, Venue
from solvency.core.portfolio import ScenarioGrid
from solvency.core.typing import Float64Array1D, Float64Array2D, Int64Array1D
from solvency.core.units import MAX_QUANTA, UnitError, to_quanta
from solvency.engine.collateral import CollateralValuer
from solvency.engine.context import PositionChange
from solvency.engine.feeds import Feeds
from solvency.engine.liquidation import FUND_POSITIONS, INSURANCE_ROW, Liquidator
from solvency.engine.open_orders import OpenOrders
from solvency.engine.option_book import MS_PER_YEAR
from solvency.engine.portfolio_margin import PortfolioMargin
from solvency.engine.ports import Liquidity, StaticDepth
from solvency.engine.state import Book, cost_after_trade

__all__ = [
    "DEFAULT_LIQUIDITY",
    "DEFAULT_VOLATILITY",
    "MS_PER_YEAR",
    "EngineError",
    "EngineState",
    "RejectReason",
    "cross_ledger_id",
    "format_number",
    "isolated_row_name",
    "on_grid",
    "tick_value_quanta_of",
]

DEFAULT_LIQUIDITY = StaticDepth(lots_per_level=10**12, level_bps=10, levels=10)
"""Without a liquidity model, liquidation orders fill in full 0.1 % through the mark."""
DEFAULT_VOLATILITY = 0.8
"""Annualized volatility assumed for a market before its marks carry timestamps."""


class EngineError(RuntimeError):
    """A broken invariant inside the engine (never an input error)."""


class RejectReason(Exception):  # noqa: N818 - an expected outcome, not an error
    """Raised by a handler before it mutates anything; becomes a Rejected out-event."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class EngineState:
    """Everything the engine knows, and the helpers its event families share.

    Parameters
    ----------
    venue
        The venue (a preset or a user's config) whose assets and markets it runs.
    liquidity
        What the venue's book absorbs when a position is liquidated
        (default :data:`DEFAULT_LIQUIDITY`).
    policy
        The liquidation policy (default: the venue's, :attr:`Venue.policy`: its
        ``liquidation`` section over its preset's); given, it replaces the venue's.
    pm_grid
        The scenario grid of portfolio margin (None: no portfolio mode).
    """

    quiet_marks: bool = True
    """A mark values only the holders whose margin state may have changed
    (``marking.mark_holders_watch``); False values every holder. The same events and
    state either way: a switch for the tests that hold the two paths equal."""

    def __init__(self, venue: Venue, *, liquidity: Liquidity | None = None,
                 policy: LiquidationPolicy | None = None,
                 pm_grid: ScenarioGrid | None = None) -> None:
        self.venue = venue
        self.portfolio_margin = PortfolioMargin(
            pm_grid, venue.raw.get("portfolio_margin", {}), DEFAULT_VOLATILITY)
        self.n_pm_rows = 0  # portfolio-margined rows (0: the fill path skips the check)
        self.liquidity: Liquidity = liquidity if liquidity is not None else DEFAULT_LIQUIDITY
        if policy is None:
            # the venue's own (its liquidation section over its preset's: build_venue)
            policy = venue.policy
        if policy is None:
            raise ConfigError(f"venue {venue.name!r}: {NO_POLICY_HINT}")
        self.liquidator = Liquidator(self, policy)
        self.market_data: dict[str, dict[str, Any]] = {
            name: dict(data) for name, data in dict(venue.raw.get("markets", {})).items()
        }
        self.book = Book(venue)
        self.shard = False
        """An account shard's engine (service/shards.py): its side of a fill between two
        shards is booked against :data:`~solvency.engine.fills.SHARD_CLEARING`, which
        reduce-only does not refuse. Set by the shard's genesis; in the snapshot."""
        self.collateral = CollateralValuer(self.book)  # empty unless assets have rules
        self.ledger = Ledger(venue.assets)
        self.feeds = Feeds(self, venue.raw.get("oracle"))
        # the section's keys and ranges are checked by the venue schema (build_venue)
        ins = dict(venue.raw.get("insurance") or {})
        self.fee_share_ppm = int(ins.get("fee_share_ppm", 0))
        self.fee_target_quanta: int | None = None  # the policy's target_fund in quanta
        try:
            self.fee_policy = _fee_policy(ins["policy"]) if "policy" in ins else None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ConfigError(f"insurance.policy: {exc}") from None
        if self.fee_policy is not None and self.fee_policy.target_fund is not None:
            target_asset = str(self.fee_policy.target_asset)
            if target_asset not in venue.assets:
                raise ConfigError(f"insurance.policy.target_asset: unknown asset "
                                  f"{target_asset!r}")
            self.fee_target_quanta = to_quanta(self.fee_policy.target_fund,
                                               venue.assets[target_asset].decimals, "up")
            if self.fee_target_quanta <= 0:
                raise ConfigError("insurance.policy.target_fund: below one quantum")
            if self.fee_policy.target_from_losses is not None:
                # the liquidator records the realized losses in this asset (issue 19)
                self.liquidator.loss_rule = self.fee_policy.target_from_losses
                self.liquidator.loss_asset = target_asset
        self.margin_call_ratio = float(venue.margin_call_ratio)
        self.accounts: dict[str, str] = {}  # account -> default margin mode
        self.open_orders = OpenOrders()  # resting orders (engine/open_orders.py)
        self.seen_ids: set[str] = set()
        self.clock_ms: int | None = None
        self.out_seq = 0
        self.counts = {"events": 0, "applied": 0, "rejected": 0, "duplicates": 0}
        # bumped by anything that may change the state (every apply, the direct loaders):
        # read-only views cache what they derive from the whole book (ADL ranks) per epoch
        self.epoch = 0
        self.adl_rank_cache: dict[int, tuple[int, Int64Array1D, Int64Array1D]] = {}
        # market -> (epoch, ranks counted in that epoch, the scored holders they were
        # counted over): views count one slot's rank until the table pays for itself
        self.adl_rank_counts: dict[int, tuple[int, int, tuple[Any, Any, Any, Any]]] = {}
        self.realized: dict[str, int] = {}  # row name -> realized PnL quanta (reporting)
        book = self.book
        self.tick_value_quanta = [tick_value_quanta_of(venue, i) for i in book.instruments]
        self.asset_decimals = [venue.assets[x].decimals for x in book.asset_names]
        # options: mark implied vols; per underlying market its option markets, the
        # settlement asset of each market and the name index (reindex_markets)
        self.ivs: dict[int, Decimal] = {}
        self.settle_asset: list[int] = []
        self.options_by_underlying: dict[int, list[int]] = {}
        self.market_by_name: dict[str, int] = {}
        self.reindex_markets()
        # EWMA of mark log returns per market (RiskMetrics lambda 0.94 per day, scaled to
        # each step's length): the volatility behind the liquidation probabilities.
        n_m = len(book.market_names)
        self.vol_var_annual = np.full(n_m, np.nan)
        self.vol_last = np.full(n_m, np.nan)
        self.vol_last_ms = np.zeros(n_m, dtype=np.int64)
        self.default_volatility = DEFAULT_VOLATILITY
        # Scratch buffers, reused (an allocation costs ~0.5 us on a ~20 us fill): the
        # what-if of one row, and the slots, rows and valuation of a fill's sides.
        self.whatif_balance_delta = np.zeros(len(book.asset_names), dtype=np.int64)
        self.whatif_out: Float64Array1D = np.empty(4)
        self.fill_out: Float64Array2D = np.empty((8, 4))
        self.fill_slots = np.empty(8, dtype=np.int64)
        self.fill_rows = np.empty(8, dtype=np.int64)
        self.fill_two_rows = np.empty(2, dtype=np.int64)
        self.fill_two_slots = np.empty(2, dtype=np.int64)
        self.fill_two_out = self.fill_out[:2]  # the valuation of fill_two_rows
        self.fill_below_maintenance = np.zeros(1, dtype=np.int64)  # set by touch_rows
        self.fill_traded_slots: list[int] = []

    def reindex_markets(self) -> None:
        """Market name or alias -> index, resolved as :meth:`Venue.resolve` does (names
        first, then aliases in market order): a dict hit instead of a scan per fill; and
        each market's settlement asset and each underlying's options, rebuilt after a
        ``params`` event changes contract terms (a stale settle asset once mirrored
        balances into the wrong asset column)."""
        book = self.book
        self.settle_asset = [book.asset_index[i.settle] for i in book.instruments]
        by_underlying: dict[int, list[int]] = {}
        for o, inst in enumerate(book.instruments):
            if inst.is_option:
                u = book.market_index[str(inst.underlying)]
                by_underlying.setdefault(u, []).append(o)
        self.options_by_underlying = by_underlying
        index = {name: self.book.market_index[name] for name in self.venue.markets}
        for inst in self.venue.markets.values():
            for alias in inst.aliases:
                index.setdefault(alias, self.book.market_index[inst.name])
        self.market_by_name = index

    def next_id(self) -> str:
        """The next out-event id (advances the out-event sequence)."""
        self.out_seq += 1
        return f"o{self.out_seq}"

    # ------------------------------------------------------------ lookups (or reject)

    def resolve_market(self, name: str) -> tuple[int, Instrument]:
        """Index and instrument of a market by name or alias; rejects ``unknown_market``."""
        inst = self.venue.resolve(name)
        if inst is None:
            raise RejectReason("unknown_market", f"market {name!r}")
        m = self.book.market_index[inst.name]
        return m, self.book.instruments[m]

    def resolve_asset(self, symbol: str) -> int:
        """Index of an asset; rejects ``unknown_asset``."""
        a = self.book.asset_index.get(symbol)
        if a is None:
            raise RejectReason("unknown_asset", f"asset {symbol!r}")
        return a

    def require_account(self, account: str) -> None:
        """Reject ``unknown_account`` unless ``account`` has made a deposit."""
        if account not in self.accounts:
            raise RejectReason("unknown_account", f"account {account!r} has no deposit")

    def require_user_account(self, account: str) -> None:
        """:meth:`require_account`, and reject ``system_account`` for the insurance fund:
        its money is ``sys:insurance``, and a withdrawal named ``__insurance__`` once moved
        money through a phantom ``u:__insurance__`` instead (issue 13's fuzz)."""
        if account == INSURANCE_ROW:
            raise RejectReason("system_account", f"{account} is run by the engine")
        self.require_account(account)

    def amount_quanta(self, value: Decimal, a: int, field: str) -> int:
        """``value`` of asset ``a`` in exact quanta; rejects ``invalid_amount`` (not a
        whole number of quanta) and ``amount_too_large`` (beyond ``MAX_QUANTA``)."""
        if not value:
            return 0
        if value.__class__ is Decimal:
            # to_quanta's exact branch, inlined (two per fill): a scale in a context
            # that traps rounding, then the check that nothing is left below the quantum
            try:
                scaled = value.scaleb(self.asset_decimals[a], context=_EXACT)
            except Inexact:
                scaled = None
            if scaled is not None:
                q = int(scaled)
                if scaled == q:
                    if abs(q) > MAX_QUANTA:
                        raise RejectReason("amount_too_large", f"{field}: {value}")
                    return q
        try:
            q = to_quanta(value, self.asset_decimals[a], "exact")
        except UnitError as exc:
            raise RejectReason("invalid_amount", f"{field}: {exc}") from None
        if abs(q) > MAX_QUANTA:
            raise RejectReason("amount_too_large", f"{field}: {value}")
        return q

    # ------------------------------------------------------------ rows

    def rows_of(self, account: str) -> list[int]:
        """An account's rows in creation order (cross first, then isolated buckets)."""
        return self.book.account_rows.get(account, [])

    def ensure_cross_row(self, account: str) -> int:
        """The account's cross row, created if it has none yet."""
        r = self.book.row_index.get(account)
        if r is None:
            r = self.book.add_row(account, account, -1, cross_ledger_id(account), True)
        return r

    @staticmethod
    def ledger_id_of(account: str) -> str:
        """The ledger account of ``account``'s cross row: ``sys:insurance`` for the fund,
        ``u:<account>`` for everyone else (engine-run rows included)."""
        return INSURANCE if account == INSURANCE_ROW else cross_ledger_id(account)

    def system_ledger_id(self, name: str) -> str:
        """Ledger account of an engine-run row (created on first use)."""
        return self.book.rows[self.system_row(name)].ledger_id

    def system_row(self, name: str) -> int:
        """Row of an engine-run account: the market, the backstop vault, the fund."""
        r = self.book.row_index.get(name)
        if r is None:
            # the fund's positions are financed by its position account, not its cash
            ledger_id = FUND_POSITIONS if name == INSURANCE_ROW else self.ledger_id_of(name)
            r = self.book.add_row(name, name, -1, ledger_id, False)
            self.accounts.setdefault(name, "cross")
            for a in range(len(self.book.asset_names)):
                self.sync_balance(r, a)
        return r

    def allows_liquidation(self, m: int) -> bool:
        """Whether liquidations may run in market ``m`` now (circuit breakers)."""
        return self.feeds.allows(self.book.market_names[m], "liquidate")

    # ------------------------------------------------------------ money

    def post(self, batch: list[Transfer]) -> None:
        """Post a validated ledger batch; a refusal is a broken invariant."""
        result = self.ledger.post(batch)
        if result is not Result.OK:
            # Handlers check every precondition first; reaching here is a bug.
            raise EngineError(f"ledger refused a validated batch: {result}")

    def sync_balance(self, r: int, a: int) -> None:
        """Mirror row ``r``'s exact ledger balance of asset ``a`` into the book."""
        book = self.book
        q = self.ledger.balance(book.rows[r].ledger_id, book.asset_names[a])
        book.row_int[r, a] = q
        if book.tracked[a]:
            book.set_balance(r, a, q)

    def wallet_quanta(self, r: int, a: int) -> int:
        """Wallet balance of a row in an asset: ledger balance plus the entry value of its
        positions settled in that asset (the cash it would hold with positions at entry)."""
        book = self.book
        cash = self.ledger.balance(book.rows[r].ledger_id, book.asset_names[a])
        for s in book.row_slots(r):
            if self.settle_asset[int(book.slot_market[s])] == a:
                cash += int(book.slot_cost[s])
        return cash

    def has_negative_balance(self, r: int) -> bool:
        """Whether row ``r`` owes in any asset."""
        return bool((self.book.row_int[r, : len(self.book.asset_names)] < 0).any())

    # ------------------------------------------------------------ margin

    def whatif(self, r: int, weighted: bool, m: int, delta_lots: int, oi_lots_m: int,
               a: int, delta_quanta: int, trade_cost_quanta: int | None = None
               ) -> Float64Array1D:
        """Row ``r`` valued as if market ``m``'s position moved by ``delta_lots`` (open
        interest ``oi_lots_m``; the trade costing ``trade_cost_quanta``, by default
        ``-delta_quanta``, which sets the position's cost basis after it) and its balance
        of asset ``a`` by ``delta_quanta``.

        Returns a reused buffer (``kernels.OUT_*`` columns): read it before the next call.
        """
        book = self.book
        vec = self.whatif_balance_delta  # all zero between calls
        vec[a] = delta_quanta
        out = self.whatif_out
        oi_c = oi_lots_m * book.lot_size[m] if m >= 0 else 0.0
        cost_m = 0
        if m >= 0 and delta_lots != 0:
            s = book.slot_of(r, m) if r >= 0 else -1
            old = int(book.st[s, S_LOTS]) if s >= 0 else 0
            cost_m, _ = cost_after_trade(
                int(book.st[s, S_COST]) if s >= 0 else 0, old, old + delta_lots,
                -delta_quanta if trade_cost_quanta is None else trade_cost_quanta)
        try:
            row_whatif(r, 1 if weighted else 0, m, float(delta_lots), oi_c, vec,
                       book.row_first, book.st, book.row_int, book.mk, book.mki, book.tiers,
                       book.asset_price, book.ascale, book.atier_start, book.atier_count,
                       book.atiers, out, cost_m)
        finally:
            vec[a] = 0
        return out

    def pm_requirements(self, rows: Int64Array1D, extra: tuple[int, int] | None = None
                        ) -> tuple[Float64Array1D, Float64Array1D]:
        """Scenario-grid (IM, MM) in USD of ``rows``, optionally with ``extra`` =
        (market, lots) added to the first row (see :class:`PortfolioMargin`)."""
        return self.portfolio_margin.requirements(self.book, self.ivs, self.clock_ms or 0,
                                                  rows, extra)

    def refresh_pm(self, rows: Int64Array1D) -> None:
        """Recompute the scenario-grid requirements of portfolio-margined ``rows``."""
        if rows.shape[0] == 0:
            return
        im, mm = self.pm_requirements(rows)
        self.book.pm[rows, 0] = im
        self.book.pm[rows, 1] = mm

    # ------------------------------------------------------------ positions

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
        cost, realized = cost_after_trade(book.slot_cost.item(s), old, new, trade_cost_quanta)
        if realized is not None:
            self.realized[change.row_name] = self.realized.get(change.row_name, 0) + realized
        if new == 0:
            book.st[s, S_LOTS] = 0
            book.slot_cost[s] = 0
            book.close_slot(s)
            return -1
        book.st[s, S_LOTS] = new
        book.slot_cost[s] = cost
        return s


def _fee_policy(data: Any) -> FeeSharePolicy:
    """The venue file's ``insurance.policy`` (its schema checked the keys and types)."""
    if not isinstance(data, Mapping):
        raise TypeError("expected a table")
    kw = dict(data)
    if kw.get("target_fund") is not None:
        kw["target_fund"] = Decimal(str(kw["target_fund"]))
    if kw.get("target_from_losses") is not None:
        kw["target_from_losses"] = TargetFromLosses(**dict(kw["target_from_losses"]))
    return FeeSharePolicy(**kw)


def cross_ledger_id(account: str) -> str:
    """Ledger account of an account's cross row."""
    return f"u:{account}"


def isolated_row_name(account: str, market: str) -> str:
    """Row name of an account's isolated bucket in a market."""
    return f"{account}/{market}"


def tick_value_quanta_of(venue: Venue, inst: Instrument) -> int:
    """Settlement quanta per lot per tick (0 for inverse markets: not exact)."""
    if inst.is_inverse:
        return 0
    return inst.tick_value_quanta(venue.assets[inst.settle].decimals)


def format_number(x: float) -> str:
    """A float for an out-event or a view: 6 decimals without trailing zeros (10
    significant digits below 1e-4), ``nan``, ``inf`` or ``-inf``."""
    if x.__class__ is float and -1e300 < x < 1e300:  # finite (not NaN): most calls
        if x != 0.0 and -1e-4 < x < 1e-4:
            return f"{x:.10g}"
        return f"{x:.6f}".rstrip("0").rstrip(".")
    if math.isnan(x):  # math, not np.isnan: ~10x cheaper on a Python float
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.10g}" if abs(x) < 1e-4 and x != 0 else f"{x:.6f}".rstrip("0").rstrip(".")


_GRID = Context(prec=60, traps=[Inexact])
_EXACT = Context(prec=60, traps=[Inexact])
_STEP_RATIO: dict[Decimal, tuple[int, int]] = {}


def on_grid(value: Decimal, step: Decimal, field: str, reason: str) -> int:
    """``value / step`` as a whole number in ``[1, MAX_QUANTA]``; rejects ``reason``
    otherwise (a size off the lot grid, a price off the tick grid)."""
    # Fast path, in exact integers: value = n / d and step = sn / sd, so value / step is
    # (n * sd) / (d * sn). Only an answer in range is taken from it; anything else (off
    # the grid, out of range, huge or not finite) goes to the slow path below, which
    # decides and words the rejection as it always did.
    ratio = _STEP_RATIO.get(step)
    if ratio is None:
        ratio = _STEP_RATIO[step] = step.as_integer_ratio()
    if value.adjusted() < 19 and value.is_finite():
        n, d = value.as_integer_ratio()
        q, rem = divmod(n * ratio[1], d * ratio[0])
        if not rem and 0 < q <= MAX_QUANTA:
            return q
    return _on_grid_slow(value, step, field, reason)


def _on_grid_slow(value: Decimal, step: Decimal, field: str, reason: str) -> int:
    """:func:`on_grid` by a decimal division that traps rounding."""
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

