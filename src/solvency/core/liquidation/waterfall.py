"""The liquidation waterfall as pure data: ordered steps with exact integer amounts.

Given a position to close, the liquidity the caller found (price levels, best first),
its bankruptcy amount, the insurance fund balance and the venue's policy,
:func:`plan_waterfall` returns what happens, in order:

1. market close at or better than the bankruptcy price (:class:`MarketClose`), and the
   penalty on the surplus (:class:`Penalty`, capped so it never creates bad debt);
2. market close worse than bankruptcy, within ``limit_ticks``, while the insurance fund
   can pay the shortfall (:class:`MarketClose` + :class:`InsurancePayment`);
3. what the book could not take: a backstop vault takes it at the bankruptcy price when
   eligible (:class:`BackstopTakeover`, Hyperliquid); else the fund takes it at the
   bankruptcy price (:class:`FundTakeover`, Binance, BitMEX) as far as its counted
   capacity covers the loss of the takeover (the bankruptcy amount less what the book's
   remaining depth would pay for the lots) and the venue's position cap allows; ADL
   against the opposite queue at the bankruptcy price (:class:`AdlFill`,
   BitMEX/Binance/dYdX/Hyperliquid) only for what the fund could not absorb;
4. what is still open: closed in the book with the shortfall socialized
   (:class:`SocializedLoss`: Drift funding index, Deribit pro rata over winners), any
   remainder recorded as bad debt; what no one took stays open (:class:`Unresolved`).

Every step is a frozen dataclass; :meth:`WaterfallPlan.transfers` turns the plan into
two-sided transfers between named roles (``account``, ``market``, ``insurance``,
``fund_positions``, ``liquidator``, ``backstop``, ``rounding``, ``adl:<i>``,
``social:<i>``) that the engine
maps onto ledger accounts. Amounts are settle-asset quanta; the account's quote amounts
are signed as in :mod:`solvency.core.liquidation.bankruptcy` (what it receives).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from solvency.core.liquidation.adl import (
    adl_allocate,
    socialize_funding_index,
    socialize_pro_rata_winners,
)
from solvency.core.liquidation.bankruptcy import bankruptcy_share_quanta
from solvency.core.liquidation.penalty import liquidation_penalty_quanta
from solvency.core.liquidation.policy import LiquidationPolicy, Socialize
from solvency.core.typing import BoolArray1D, Int64Array1D

__all__ = [
    "AdlFill",
    "BackstopTakeover",
    "FundTakeover",
    "InsurancePayment",
    "MarketClose",
    "Penalty",
    "QuoteFn",
    "SocializedLoss",
    "Step",
    "TransferLeg",
    "Unresolved",
    "WaterfallPlan",
    "linear_quote",
    "plan_waterfall",
]

QuoteFn = Callable[[int, int], int]
"""``quote(lots, ticks)``: what the account receives (signed) for closing ``lots > 0`` of
its position at ``ticks``, rounded against the account (see :func:`linear_quote`)."""


@dataclass(frozen=True, slots=True)
class MarketClose:
    """Close ``lots`` against the book at ``price_ticks``; the account receives
    ``quote_quanta`` (signed) from the market side."""

    lots: int
    price_ticks: int
    quote_quanta: int
    bankruptcy_quanta: int


@dataclass(frozen=True, slots=True)
class Penalty:
    """Liquidation penalty paid by the account to the liquidator and insurance fund."""

    liquidator_quanta: int
    insurance_quanta: int


@dataclass(frozen=True, slots=True)
class InsurancePayment:
    """The insurance fund pays the account the shortfall of a close below bankruptcy."""

    amount_quanta: int


@dataclass(frozen=True, slots=True)
class BackstopTakeover:
    """The backstop vault takes ``lots`` at the bankruptcy price: the account receives
    ``quote_quanta`` (signed) from the vault and keeps nothing of that part's margin."""

    lots: int
    quote_quanta: int


@dataclass(frozen=True, slots=True)
class FundTakeover:
    """The insurance fund takes ``lots`` into its own position at the bankruptcy price
    (financed by its position account, role ``fund_positions``, not paid from its cash)."""

    lots: int
    quote_quanta: int


@dataclass(frozen=True, slots=True)
class AdlFill:
    """Counterparty ``position`` (index into the ADL arrays) is deleveraged by ``lots``
    at the bankruptcy price; the liquidated account receives ``quote_quanta``."""

    position: int
    lots: int
    quote_quanta: int


@dataclass(frozen=True, slots=True)
class SocializedLoss:
    """A shortfall nobody absorbed, charged to others by ``rule``.

    ``charges[i]`` is what participant ``i`` pays; ``covered_quanta`` reaches the account,
    ``rounding_quanta`` (charges above the loss, funding-index round-up) goes to the
    rounding account, ``bad_debt_quanta`` is what stayed uncovered.
    """

    rule: Socialize
    loss_quanta: int
    charge_array: Int64Array1D = field(compare=False, repr=False)
    covered_quanta: int
    rounding_quanta: int
    bad_debt_quanta: int

    @property
    def charges(self) -> tuple[int, ...]:
        """The per-participant charges as exact Python ints."""
        return tuple(int(c) for c in self.charge_array.tolist())


@dataclass(frozen=True, slots=True)
class Unresolved:
    """Lots nobody took: they stay open on the account (retry on the next event)."""

    lots: int


Step = (MarketClose | Penalty | InsurancePayment | BackstopTakeover | FundTakeover | AdlFill
        | SocializedLoss | Unresolved)


@dataclass(frozen=True, slots=True)
class TransferLeg:
    """``amount_quanta`` (> 0) moves from role ``debit`` to role ``credit``."""

    debit: str
    credit: str
    amount_quanta: int
    code: str


@dataclass(frozen=True, slots=True)
class WaterfallPlan:
    """The ordered steps of one liquidation and their totals."""

    steps: tuple[Step, ...]
    close_lots: int
    closed_lots: int
    bankruptcy_quanta: int
    fund_used_quanta: int
    bad_debt_quanta: int
    notes: tuple[str, ...] = field(default=())
    capacity_used_quanta: int = 0
    """Counted capacity the plan used: shortfalls paid plus the loss at depth of what
    the fund took over (see ``fund_capacity_quanta`` of :func:`plan_waterfall`)."""

    def transfers(self, *, social_legs: bool = True) -> list[TransferLeg]:
        """Return the plan's money movements as two-sided legs, in step order.

        ``social_legs=False`` leaves out the per-participant socialized-loss charges and
        their rounding (the engine batches those once per market per sweep: building one
        leg per holder on every step measured O(holders) per step on the Drift replay).
        """
        legs: list[TransferLeg] = []

        def signed(role: str, q: int, code: str) -> None:
            if q > 0:
                legs.append(TransferLeg(role, "account", q, code))
            elif q < 0:
                legs.append(TransferLeg("account", role, -q, code))

        for s in self.steps:
            if isinstance(s, MarketClose):
                signed("market", s.quote_quanta, "liquidation_fill")
            elif isinstance(s, Penalty):
                if s.liquidator_quanta:
                    legs.append(TransferLeg("account", "liquidator", s.liquidator_quanta,
                                            "liquidation_fee"))
                if s.insurance_quanta:
                    legs.append(TransferLeg("account", "insurance", s.insurance_quanta,
                                            "liquidation_fee"))
            elif isinstance(s, InsurancePayment):
                legs.append(TransferLeg("insurance", "account", s.amount_quanta,
                                        "insurance_payment"))
            elif isinstance(s, BackstopTakeover):
                signed("backstop", s.quote_quanta, "backstop_takeover")
            elif isinstance(s, FundTakeover):
                signed("fund_positions", s.quote_quanta, "insurance_takeover")
            elif isinstance(s, AdlFill):
                signed(f"adl:{s.position}", s.quote_quanta, "adl_fill")
            elif isinstance(s, SocializedLoss) and social_legs:
                for i, c in enumerate(s.charges):
                    if c:
                        legs.append(TransferLeg(f"social:{i}", "account", c, "socialized_loss"))
                if s.rounding_quanta:
                    legs.append(TransferLeg("account", "rounding", s.rounding_quanta,
                                            "rounding"))
        return legs

    def net_by_role(self) -> dict[str, int]:
        """Return each role's net receipt over the plan (sums to zero)."""
        net: dict[str, int] = {}
        for leg in self.transfers():
            net[leg.debit] = net.get(leg.debit, 0) - leg.amount_quanta
            net[leg.credit] = net.get(leg.credit, 0) + leg.amount_quanta
        return net


def linear_quote(tick_value_quanta: int, *, is_long: bool) -> QuoteFn:
    """Return the exact quote function of a linear contract: closing a long of ``lots``
    at ``ticks`` receives ``lots x ticks x tick_value``; closing a short pays it."""
    sign = 1 if is_long else -1

    def quote(lots: int, ticks: int) -> int:
        return sign * lots * ticks * tick_value_quanta

    return quote


@dataclass(slots=True)
class _State:
    # Mutable accumulator of one planning run (never leaves this module).
    n: int
    b: int
    filled: int = 0
    fund_left: int = 0
    fund_used: int = 0
    capacity_left: int = 0
    capacity_used: int = 0
    depth_used: int = 0  # lots of the remaining depth already counted for a takeover
    bad_debt: int = 0
    steps: list[Step] = field(default_factory=list)
    social_charges: bool = True

    def pay(self, amount: int) -> None:
        self.fund_left -= amount
        self.fund_used += amount
        self.capacity_left -= amount
        self.capacity_used += amount

    def share(self, lots: int) -> int:
        return bankruptcy_share_quanta(self.b, part_lots=self.filled + lots, total_lots=self.n) - (
            bankruptcy_share_quanta(self.b, part_lots=self.filled, total_lots=self.n))


def _largest_within(take: int, budget: int, cost: Callable[[int], int]) -> int:
    # Largest k in [0, take] with cost(k) <= budget; cost is nondecreasing in k.
    lo, hi = 0, take
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def plan_waterfall(
    policy: LiquidationPolicy, *, position_lots: int, close_lots: int, bankruptcy_quanta: int,
    levels: Sequence[tuple[int, int]], quote: QuoteFn, fund_quanta: int,
    limit_ticks: int | None = None, backstop_eligible: bool = False,
    adl_lots: Int64Array1D | None = None, adl_order: Int64Array1D | None = None,
    adl_eligible: BoolArray1D | None = None, social_weights: Int64Array1D | None = None,
    social_charges: bool = True, fund_capacity_quanta: int | None = None,
    takeover_far_ticks: int | None = None, takeover_lots_max: int | None = None,
) -> WaterfallPlan:
    """Plan the liquidation of ``close_lots`` of a position, as ordered exact steps.

    Parameters
    ----------
    policy
        The venue's policy (penalty rates, backstop, fund, ADL and socialization rules).
    position_lots
        The signed position (its sign says long or short).
    close_lots
        Lots to close now, ``0 < close_lots <= |position_lots|`` (see
        :func:`~solvency.core.liquidation.policy.liquidation_size`).
    bankruptcy_quanta
        Bankruptcy amount of closing ``close_lots``
        (:func:`~solvency.core.liquidation.bankruptcy.bankruptcy_quote_quanta`); shares of
        it per part are rounded up, so parts never need the fund because of rounding.
    levels
        The liquidity port's offer on the closing side, ``(lots, price_ticks)`` best
        first.
    quote
        Exact money of closing ``lots`` at ``ticks`` (:func:`linear_quote`).
    fund_quanta
        Insurance fund balance available to this market.
    limit_ticks
        Worst price a close below bankruptcy may take (e.g. the fillable price); None:
        no close below bankruptcy.
    backstop_eligible
        Whether the backstop may take over now (``policy.backstop_eligible``).
    adl_lots, adl_order, adl_eligible
        The opposite side's positions (signed lots), queue order and eligibility
        (:mod:`solvency.core.liquidation.adl`); None: no ADL candidates.
    social_weights
        Participants of a socialized loss: profits (``pro_rata_winners``) or lots of
        both sides (``funding_index``).
    social_charges
        ``False``: do not split a socialized loss over the participants; the step then
        carries what is covered (from the weights' totals) with an empty charge array
        and no rounding, for a caller that charges the losses of many steps at once
        (the engine does, once per market per sweep).
    fund_capacity_quanta
        The fund's counted capacity (``policy.fund_capacity``: cash, equity, or equity
        less the cost of closing its positions at depth); None: ``fund_quanta``.
        Shortfall payments and the losses of takeovers are charged against it; ADL runs
        only for what it cannot absorb.
    takeover_far_ticks
        Price at which lots beyond the quoted depth are valued for a takeover's loss
        (the fund's unwind limit); None: such lots cannot be valued, so the fund does
        not take them.
    takeover_lots_max
        Most lots the fund may take over now (its position cap); None: no cap.

    Returns
    -------
    WaterfallPlan
        Steps in order; ``closed_lots`` may be below ``close_lots`` (then the last step
        is :class:`Unresolved`).
    """
    n = close_lots
    if not 0 < n <= abs(position_lots):
        raise ValueError("need 0 < close_lots <= |position_lots|")
    if fund_quanta < 0:
        raise ValueError("fund_quanta must be non-negative")
    is_long = position_lots > 0
    st = _State(n=n, b=bankruptcy_quanta, fund_left=fund_quanta, social_charges=social_charges,
                capacity_left=fund_quanta if fund_capacity_quanta is None
                else fund_capacity_quanta)
    book = [(int(q), int(t)) for q, t in levels if q > 0]
    cursor = 0
    surplus = 0
    notional = 0

    def within_limit(ticks: int) -> bool:
        if limit_ticks is None:
            return False
        return ticks >= limit_ticks if is_long else ticks <= limit_ticks

    # 1. at or better than bankruptcy
    while cursor < len(book) and st.filled < n:
        lv, ticks = book[cursor]
        take = min(lv, n - st.filled)
        q = quote(take, ticks)
        b = st.share(take)
        if q < b:
            break
        st.steps.append(MarketClose(take, ticks, q, b))
        surplus += q - b
        notional += abs(q)
        st.filled += take
        book[cursor] = (lv - take, ticks)
        if lv == take:
            cursor += 1
    if notional:
        pen = liquidation_penalty_quanta(
            notional_quanta=notional, surplus_quanta=surplus,
            liquidator_fee_ppm=policy.liquidator_fee_ppm,
            insurance_fee_ppm=policy.insurance_fee_ppm, priority=policy.penalty_priority)
        if pen.total_quanta:
            st.steps.append(Penalty(pen.liquidator_quanta, pen.insurance_quanta))
    # 2. below bankruptcy, the fund pays the shortfall
    if policy.fund_covers_shortfall:
        cursor = _below_bankruptcy(st, book, cursor, quote, within_limit, fund=True)
    # 3. backstop, fund takeover or ADL for the rest, at the bankruptcy price
    adl_ready = (policy.adl_ranking != "none" and adl_lots is not None
                 and adl_order is not None and adl_eligible is not None)
    take_max = takeover_lots_max
    rest = n - st.filled
    if rest and backstop_eligible and policy.backstop:
        k = rest
        if policy.backstop_is_fund:  # the vault's capital is the fund's: same rule
            k = _fund_takes(st, policy, book, cursor, quote, rest, takeover_far_ticks,
                            take_max, adl_ready=adl_ready)
            take_max = None if take_max is None else take_max - k
        if k:
            st.steps.append(BackstopTakeover(k, st.share(k)))
            st.filled += k
    rest = n - st.filled
    if rest and policy.fund_takeover and policy.fund_covers_shortfall:
        k = _fund_takes(st, policy, book, cursor, quote, rest, takeover_far_ticks, take_max,
                        adl_ready=adl_ready)
        if k:
            # the fund buys a long (pays b) or is paid to take a short (b < 0), through
            # its position account: its cash is not spent on the notional
            st.steps.append(FundTakeover(k, st.share(k)))
            st.filled += k
    rest = n - st.filled
    holds = policy.fund_takeover or (policy.backstop and policy.backstop_is_fund)
    if rest and adl_ready and not holds and _absorbs(st, policy, book, cursor, quote, rest,
                                                   takeover_far_ticks):
        # the fund pays shortfalls but holds nothing (dYdX): while its cash covers the
        # loss at depth, the rest stays for the book (ADL only when it cannot)
        adl_ready = False
    if rest and adl_ready:
        assert adl_lots is not None and adl_order is not None and adl_eligible is not None
        alloc = adl_allocate(rest, lots=adl_lots, order=adl_order, eligible=adl_eligible)
        for i in adl_order.tolist():
            k = int(alloc[i])
            if k:
                st.steps.append(AdlFill(int(i), k, st.share(k)))
                st.filled += k
    # 4. socialize what the book takes below bankruptcy beyond the fund
    if n - st.filled and policy.socialize != "none" and social_weights is not None:
        _below_bankruptcy(st, book, cursor, quote, within_limit, fund=False,
                          rule=policy.socialize, weights=social_weights)
    if n - st.filled:
        st.steps.append(Unresolved(n - st.filled))
    return WaterfallPlan(tuple(st.steps), n, st.filled, bankruptcy_quanta, st.fund_used,
                         st.bad_debt, capacity_used_quanta=st.capacity_used)


def _depth_value(book: list[tuple[int, int]], cursor: int, skip: int, lots: int,
                 quote: QuoteFn, far_ticks: int | None) -> int | None:
    # What the book's remaining depth (after ``skip`` lots already counted) pays for
    # ``lots``; lots beyond it at ``far_ticks``; None when they cannot be valued.
    value = 0
    left = lots
    for lv, ticks in book[cursor:]:
        if left == 0:
            break
        if skip >= lv:
            skip -= lv
            continue
        take = min(lv - skip, left)
        skip = 0
        value += quote(take, ticks)
        left -= take
    if left:
        if far_ticks is None:
            return None
        value += quote(left, far_ticks)
    return value


def _takeover_loss(st: _State, book: list[tuple[int, int]], cursor: int, quote: QuoteFn,
                   lots: int, far_ticks: int | None) -> int | None:
    # The loss of taking ``lots`` over at their bankruptcy share, valued at depth.
    if lots == 0:
        return 0
    value = _depth_value(book, cursor, st.depth_used, lots, quote, far_ticks)
    return None if value is None else st.share(lots) - value


def _fund_takes(st: _State, policy: LiquidationPolicy, book: list[tuple[int, int]],
                cursor: int, quote: QuoteFn, rest: int, far_ticks: int | None,
                lots_max: int | None, *, adl_ready: bool) -> int:
    # Lots of ``rest`` the fund takes over: the most whose loss at depth its counted
    # capacity covers, within its position cap; with an ADL queue waiting, nothing at
    # or below the ADL threshold. Charges the loss to the capacity.
    limit = rest if lots_max is None else min(rest, max(lots_max, 0))
    if limit == 0 or st.capacity_left < 0:
        return 0
    if adl_ready and st.capacity_left <= policy.adl_fund_threshold_quanta:
        return 0

    def cost(k: int) -> int:
        loss = _takeover_loss(st, book, cursor, quote, k, far_ticks)
        return st.capacity_left + 1 if loss is None else loss

    # all of it when the capacity covers it (the loss need not grow with the lots when
    # the far price is better than bankruptcy), else the most it covers
    k = limit if cost(limit) <= st.capacity_left else _largest_within(
        limit, st.capacity_left, cost)
    if k:
        loss = cost(k)
        st.capacity_left -= loss
        st.capacity_used += loss
        st.depth_used += k
    return k


def _absorbs(st: _State, policy: LiquidationPolicy, book: list[tuple[int, int]],
             cursor: int, quote: QuoteFn, rest: int, far_ticks: int | None) -> bool:
    # Whether a fund that holds no positions can pay the loss of closing ``rest`` at
    # depth from what it counts (dYdX ShouldPerformDeleveraging: balance + delta >= 0
    # and balance >= MaxInsuranceFundQuantumsForDeleveraging).
    loss = _takeover_loss(st, book, cursor, quote, rest, far_ticks)
    return (loss is not None and st.capacity_left > policy.adl_fund_threshold_quanta
            and loss <= min(st.capacity_left, st.fund_left))


def _below_bankruptcy(
    st: _State, book: list[tuple[int, int]], cursor: int, quote: QuoteFn,
    within_limit: Callable[[int], bool], *, fund: bool, rule: Socialize = "none",
    weights: Int64Array1D | None = None,
) -> int:
    # Close against levels worse than bankruptcy: the fund pays the shortfall (fund=True,
    # as far as it reaches), or the shortfall is socialized (fund=False).
    while cursor < len(book) and st.filled < st.n:
        lv, ticks = book[cursor]
        if not within_limit(ticks):
            break
        want = min(lv, st.n - st.filled)

        def shortfall(k: int, ticks: int = ticks) -> int:
            return max(st.share(k) - quote(k, ticks), 0) if k else 0

        budget = min(st.fund_left, max(st.capacity_left, 0))
        take = _largest_within(want, budget, shortfall) if fund else want
        if take == 0:
            break
        q = quote(take, ticks)
        b = st.share(take)
        st.steps.append(MarketClose(take, ticks, q, b))
        gap = max(b - q, 0)
        if fund:
            if gap:
                st.steps.append(InsurancePayment(gap))
                st.pay(gap)
        elif gap:
            from_fund = min(gap, st.fund_left)
            if from_fund:
                st.steps.append(InsurancePayment(from_fund))
                st.pay(from_fund)
            social = _socialize(rule, gap - from_fund, weights, split=st.social_charges)
            st.steps.append(social)
            st.bad_debt += social.bad_debt_quanta
        st.filled += take
        book[cursor] = (lv - take, ticks)
        if lv == take:
            cursor += 1
    return cursor


def _socialize(rule: Socialize, loss: int, weights: Int64Array1D | None, *,
               split: bool = True) -> SocializedLoss:
    w = np.zeros(0, dtype=np.int64) if weights is None else np.asarray(weights, dtype=np.int64)
    none = np.zeros(0, dtype=np.int64)
    if loss <= 0 or w.shape[0] == 0 or not np.abs(w).any():
        return SocializedLoss(rule, loss, none, 0, 0, max(loss, 0))
    if not split:
        # what the split would cover, from totals: the funding index always covers the
        # loss; winners pay at most their profits (socialize_pro_rata_winners' sum)
        if rule == "funding_index":
            return SocializedLoss(rule, loss, none, loss, 0, 0)
        pos = np.maximum(w, 0)
        profit = (int(pos.sum()) if int(pos.max()) * pos.shape[0] < 2**62
                  else sum(pos.tolist()))  # Python ints only where int64 could overflow
        covered = min(loss, profit)
        return SocializedLoss(rule, loss, none, covered, 0, loss - covered)
    if rule == "funding_index":
        _delta, charges = socialize_funding_index(loss, lots=w)
        total = int(charges.sum())
        return SocializedLoss(rule, loss, charges, loss,
                              total - loss, 0)
    charges = socialize_pro_rata_winners(loss, profit_quanta=w)
    covered = int(charges.sum())
    return SocializedLoss(rule, loss, charges, covered, 0,
                          loss - covered)
