"""Agents of the stress lab: traders who top up, liquidators, market makers, arbitrage, funding.

Each agent acts on the real engine through its public inputs -- ``Engine.apply`` of
``Deposit``, ``Fill`` and ``Funding`` events -- or through the engine's ``Liquidity`` port;
none computes margin or liquidations itself. They are configured by the ``[agents]``
table of a scenario (:mod:`solvency.sim.scenario`); formulas and sources are in
``docs/stress_models.md``.

* :class:`TopUpAgent` -- traders who answer a ``margin_call`` out-event. Per account,
  drawn once from the agents' seed: whether it answers (``respond_fraction``), its
  latency (lognormal around ``latency_ms``) and its reserve (a Pareto multiple of its
  collateral at the start). ``latency`` after the call it deposits what lifts its margin
  ratio ``MM / collateral`` back to ``target_margin_ratio``, at most what is left of its
  reserve, if it still needs it.
* :class:`LiquidatorLiquidity` -- a ``Liquidity`` port in front of the book: liquidators
  take liquidation orders at ``discount_bps`` through the mark, up to a per-step
  notional capacity and a capital limit on the inventory they hold, once they have
  reacted (``latency_ms`` after the first order of a burst). The inventory is sold into
  the book with a half-life (flow, hence impact, later). What they do not take goes to
  the book (``overflow = "book"``) or is not quoted (``"defer"``; then the venue's
  waterfall decides -- fund, backstop, ADL -- and the position waits for the next price
  only when none of them can take it).
* :class:`ExecutedFlowLiquidity` -- the port every run with agents uses: the book's flow
  (hence its impact) is what the engine executed, not everything it was quoted.
* :class:`MarketMakerAgent` -- withdraws a fraction ``w`` of the book when realized
  volatility, the drawdown of the index or the recent liquidation flow rise, at once,
  and returns with a half-life; :meth:`ImpactLiquidity.set_withdrawal` applies it.
* :class:`ArbitrageAgent` -- an account that buys the perpetual when it trades at a
  discount to the index (sells at a premium), from the book's makers (``__market__``),
  closing ``speed`` of the premium per step within its capital.
* :class:`FundingAgent` -- the venue's funding: the time-weighted premium index over each
  interval and Binance's ``F = P + clamp(I - P, -c, c)``, capped, applied as ``Funding``
  events so every position pays or receives it in the ledger.

Randomness: only the top-up draws are random (seeded by ``seeds.agents``); the other
agents are deterministic functions of the seeded paths and of the engine's state. Every
per-account quantity is an array; Python loops run only over the accounts that act in a
step (one ``Deposit`` each, as the engine takes one event per account).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any, Final, Literal

import numpy as np

from solvency.core.margin.kernels import OUT_COLLATERAL, OUT_MM
from solvency.core.model.events import Deposit, Funding
from solvency.core.model.events import Fill as FillEvent
from solvency.core.model.instruments import Instrument
from solvency.core.model.venue import Venue
from solvency.core.typing import BoolArray1D, Float64Array1D, Int64Array1D
from solvency.engine.engine import Engine
from solvency.engine.liquidation import MARKET
from solvency.engine.ports import Fill, Liquidity
from solvency.sim.market import ImpactLiquidity
from solvency.sim.metrics import StepSeries
from solvency.sim.population import Population

__all__ = [
    "AGENT_METRIC_KEYS",
    "Agents",
    "AgentsSpec",
    "ArbitrageAgent",
    "ArbitrageSpec",
    "ExecutedFlowLiquidity",
    "FundingAgent",
    "FundingSpec",
    "LiquidatorLiquidity",
    "LiquidatorSpec",
    "MarketMakerAgent",
    "MarketMakerSpec",
    "TopUpAgent",
    "TopUpSpec",
    "funding_rate",
    "premium_index",
]

MINUTE_MS: Final = 60_000
NEVER: Final = np.iinfo(np.int64).max
Overflow = Literal["book", "defer"]
Apply = Callable[[Any], list[Any]]
"""How agents apply an event to the engine (the crew's :meth:`Agents.apply`)."""

AGENT_METRIC_KEYS: Final[tuple[str, ...]] = (
    "topups", "topup_amount", "topup_accounts", "topup_reserve_limited",
    "liquidator_absorbed_notional", "liquidator_capacity_hits", "liquidator_offline_quotes",
    "liquidator_inventory_max",
    "mm_depth_min_fraction",
    "arb_trades", "arb_volume_notional", "arb_rejected", "arb_position_max_notional",
    "arb_funding_paid",
    "funding_events", "funding_paid", "funding_rate_min", "funding_rate_max",
)
"""Agent keys of a run's metrics (zero, or 1.0 for the depth fraction, when an agent is
off)."""


def _check(ok: bool, name: str, rule: str, value: object) -> None:
    if not ok:
        raise ValueError(f"{name}: must be {rule}, got {value}")


def _finite(x: float) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


# ============================================================================ specs


@dataclass(frozen=True, slots=True)
class TopUpSpec:
    """Traders who add collateral after a margin call.

    Parameters
    ----------
    respond_fraction : float
        Probability that an account answers margin calls at all, in ``[0, 1]`` (default
        0.3).
    latency_ms : int
        Median delay from the call to the deposit (default 10 min), ``>= 0``.
    latency_sigma : float
        Lognormal sigma of the per-account latency (default 0.75; 0: all the same).
    target_margin_ratio : float
        Margin ratio ``MM / collateral`` the deposit restores, in ``(0, 1)`` and below the
        venue's ``margin_call_ratio`` (default 0.4).
    reserve_multiple_min : float
        Scale ``x_m`` of the Pareto reserve multiple (default 0.25): an account can add at
        most ``multiple x`` its collateral at the start over the run.
    reserve_pareto_alpha : float
        Tail index of the multiple, ``multiple = x_m (1 + Lomax(alpha))`` (default 1.5:
        median ``x_m 2^(1/alpha) = 0.40``, mean ``x_m alpha / (alpha - 1) = 0.75``).
    reserve_multiple_max : float
        Clip of the multiple (default 20).
    """

    respond_fraction: float = 0.3
    latency_ms: int = 10 * MINUTE_MS
    latency_sigma: float = 0.75
    target_margin_ratio: float = 0.4
    reserve_multiple_min: float = 0.25
    reserve_pareto_alpha: float = 1.5
    reserve_multiple_max: float = 20.0

    def __post_init__(self) -> None:
        _check(_finite(self.respond_fraction) and 0.0 <= self.respond_fraction <= 1.0,
               "respond_fraction", "in [0, 1]", self.respond_fraction)
        _check(self.latency_ms >= 0, "latency", ">= 0", self.latency_ms)
        _check(_finite(self.latency_sigma) and self.latency_sigma >= 0, "latency_sigma",
               ">= 0", self.latency_sigma)
        _check(_finite(self.target_margin_ratio) and 0.0 < self.target_margin_ratio < 1.0,
               "target_margin_ratio", "in (0, 1)", self.target_margin_ratio)
        _check(_finite(self.reserve_multiple_min) and self.reserve_multiple_min >= 0,
               "reserve_multiple_min", ">= 0", self.reserve_multiple_min)
        _check(_finite(self.reserve_pareto_alpha) and self.reserve_pareto_alpha > 0,
               "reserve_pareto_alpha", "> 0", self.reserve_pareto_alpha)
        _check(_finite(self.reserve_multiple_max)
               and self.reserve_multiple_max >= self.reserve_multiple_min,
               "reserve_multiple_max", ">= reserve_multiple_min", self.reserve_multiple_max)


@dataclass(frozen=True, slots=True)
class LiquidatorSpec:
    """Liquidators (or a backstop desk) in front of the book.

    Parameters
    ----------
    capital_quote : float
        Largest inventory they hold, in notional (settlement asset) at the current prices
        (default 100,000,000, about 2.5 % of the open interest of the bundled default's
        sample, which sets 85,000,000, see ``scenarios/default.toml``).
    capacity_per_step_quote : float
        Largest notional they take per step (default 10,000,000).
    latency_ms : int
        Reaction time: they take orders from ``latency`` after the first order of a burst
        (default 1 min; 0: at once).
    idle_reset_ms : int
        Without any liquidation order for this long they stand down and need
        ``latency`` again (default 1 h).
    discount_bps : float
        They buy ``discount_bps`` below the mark (sell above), rounded against the
        liquidated account to the tick (default 10).
    overflow : {"book", "defer"}
        What they do not take: walks the book with impact (``"book"``, default) or is not
        quoted (``"defer"``: the venue's waterfall takes it or the position waits).
    unwind_half_life_ms : int
        Half-life with which they sell their inventory into the book (default 30 min).
    reward_elasticity : float
        How their capacity answers the venue's keeper reward (the liquidator's fee the
        engine would charge in that market now, a dynamic fee's included): per step they
        take up to ``capacity_per_step x ((discount + reward) / discount) ^ elasticity``,
        their margin per unit of notional against the discount alone (default 0: the
        reward changes nothing; 1: a reward equal to the discount doubles the capacity).
        An assumption of the lab: no venue publishes its liquidators' supply curve.
    """

    capital_quote: float = 100_000_000.0
    capacity_per_step_quote: float = 10_000_000.0
    latency_ms: int = MINUTE_MS
    idle_reset_ms: int = 60 * MINUTE_MS
    discount_bps: float = 10.0
    overflow: Overflow = "book"
    unwind_half_life_ms: int = 30 * MINUTE_MS
    reward_elasticity: float = 0.0

    def __post_init__(self) -> None:
        for name in ("capital_quote", "capacity_per_step_quote", "discount_bps",
                     "reward_elasticity"):
            v = getattr(self, name)
            _check(_finite(v) and v >= 0, name, ">= 0", v)
        _check(self.discount_bps < 10_000, "discount_bps", "< 10,000", self.discount_bps)
        _check(self.latency_ms >= 0, "latency", ">= 0", self.latency_ms)
        _check(self.idle_reset_ms > 0, "idle_reset", "> 0", self.idle_reset_ms)
        _check(self.unwind_half_life_ms > 0, "unwind_half_life", "> 0",
               self.unwind_half_life_ms)
        _check(self.overflow in ("book", "defer"), "overflow", "'book' or 'defer'",
               repr(self.overflow))
        _check(self.reward_elasticity == 0 or self.discount_bps > 0, "reward_elasticity",
               "0 when discount_bps is 0", self.reward_elasticity)


@dataclass(frozen=True, slots=True)
class MarketMakerSpec:
    """Market makers who pull depth in stress.

    Pressure ``x = vol_sensitivity max(0, sigma / sigma_ref - 1) + drawdown_sensitivity
    x drawdown + flow_sensitivity x |Q| / V``; target withdrawn fraction
    ``max_withdrawal x (1 - exp(-x))``.

    Parameters
    ----------
    vol_sensitivity : float
        Weight of realized volatility above the market's ``vol_ref_annual`` (default 0:
        the liquidity model already thins the book with volatility).
    drawdown_sensitivity : float
        Weight of the index's fall from its high over ``drawdown_window_ms`` (default 10:
        a 10 % fall gives ``x = 1``).
    drawdown_window_ms : int
        Look-back of that high (default 1 h).
    flow_sensitivity : float
        Weight of the decaying liquidation flow over daily volume (default 20: flow of 5 %
        of a day's volume gives ``x = 1``).
    max_withdrawal : float
        Largest fraction withdrawn, in ``[0, 1)`` (default 0.8).
    recovery_half_life_ms : int
        Half-life of the return of withdrawn depth (default 30 min).
    """

    vol_sensitivity: float = 0.0
    drawdown_sensitivity: float = 10.0
    drawdown_window_ms: int = 60 * MINUTE_MS
    flow_sensitivity: float = 20.0
    max_withdrawal: float = 0.8
    recovery_half_life_ms: int = 30 * MINUTE_MS

    def __post_init__(self) -> None:
        for name in ("vol_sensitivity", "drawdown_sensitivity", "flow_sensitivity"):
            v = getattr(self, name)
            _check(_finite(v) and v >= 0, name, ">= 0", v)
        _check(_finite(self.max_withdrawal) and 0.0 <= self.max_withdrawal < 1.0,
               "max_withdrawal", "in [0, 1)", self.max_withdrawal)
        _check(self.drawdown_window_ms > 0, "drawdown_window", "> 0",
               self.drawdown_window_ms)
        _check(self.recovery_half_life_ms > 0, "recovery_half_life", "> 0",
               self.recovery_half_life_ms)


@dataclass(frozen=True, slots=True)
class ArbitrageSpec:
    """An arbitrageur keeping the perpetual near the index.

    Parameters
    ----------
    capital_quote : float
        Collateral it deposits at the start, settlement asset (default 200,000,000: the
        bundled default's sample).
    max_leverage : float
        Largest position notional per unit of its current equity (its balance plus its
        positions' unrealized P&L at the mark), per market (default 3): an arbitrageur
        losing on a discount that lasts adds less, and nothing once its equity is gone.
    speed : float
        Fraction of the premium (log impact) it closes per step, in ``(0, 1]`` (default
        0.5).
    threshold_bps : float
        It trades only when ``|trade / index - 1|`` exceeds this (fees and hedge cost;
        default 5).
    account : str
        Its account name (default ``"arbitrageur"``).
    """

    capital_quote: float = 200_000_000.0
    max_leverage: float = 3.0
    speed: float = 0.5
    threshold_bps: float = 5.0
    account: str = "arbitrageur"

    def __post_init__(self) -> None:
        _check(_finite(self.capital_quote) and self.capital_quote > 0, "capital_quote", "> 0",
               self.capital_quote)
        _check(_finite(self.max_leverage) and self.max_leverage > 0, "max_leverage", "> 0",
               self.max_leverage)
        _check(_finite(self.speed) and 0.0 < self.speed <= 1.0, "speed", "in (0, 1]",
               self.speed)
        _check(_finite(self.threshold_bps) and self.threshold_bps >= 0, "threshold_bps",
               ">= 0", self.threshold_bps)
        _check(bool(self.account) and not self.account.startswith("__") and "/" not in
               self.account, "account", "a name without '/' not starting with '__'",
               repr(self.account))


@dataclass(frozen=True, slots=True)
class FundingSpec:
    """The venue's premium-based funding (Binance USD-M rule).

    Parameters
    ----------
    interval_ms : int
        Funding interval; settlements at multiples of it since the epoch (default 8 h:
        00:00, 08:00, 16:00 UTC).
    interest_rate : float
        ``I`` per interval (default 0.0001: Binance's 0.03 % a day).
    clamp : float
        ``c`` of ``clamp(I - P, -c, c)`` (default 0.0005).
    cap : float
        Rates are clipped to ``[-cap, cap]`` (default 0.003; Binance sets it per symbol).
    rate_decimals : int
        Decimals the rate is rounded to, half to even (default 8, as Binance publishes).
    """

    interval_ms: int = 8 * 60 * MINUTE_MS
    interest_rate: float = 0.0001
    clamp: float = 0.0005
    cap: float = 0.003
    rate_decimals: int = 8

    def __post_init__(self) -> None:
        _check(self.interval_ms > 0, "interval", "> 0", self.interval_ms)
        _check(_finite(self.interest_rate) and abs(self.interest_rate) < 1, "interest_rate",
               "finite with |I| < 1", self.interest_rate)
        _check(_finite(self.clamp) and self.clamp >= 0, "clamp", ">= 0", self.clamp)
        _check(_finite(self.cap) and 0 < self.cap < 1, "cap", "in (0, 1)", self.cap)
        _check(1 <= self.rate_decimals <= 12, "rate_decimals", "in [1, 12]",
               self.rate_decimals)


@dataclass(frozen=True, slots=True)
class AgentsSpec:
    """Which agents run (``None``: off) and their parameters."""

    topup: TopUpSpec | None = None
    liquidator: LiquidatorSpec | None = None
    market_maker: MarketMakerSpec | None = None
    arbitrage: ArbitrageSpec | None = None
    funding: FundingSpec | None = None

    @property
    def any(self) -> bool:
        """Return True when at least one agent runs."""
        return any(x is not None for x in (self.topup, self.liquidator, self.market_maker,
                                           self.arbitrage, self.funding))

    def check_venue(self, venue: Venue, markets: Sequence[str]) -> None:
        """Check the parameters that depend on the venue.

        Raises
        ------
        ValueError
            ``"topup.target_margin_ratio: ..."`` when the target is not below the venue's
            margin-call ratio (the deposit would not end the call).
        """
        if self.topup is not None and not (
                self.topup.target_margin_ratio < venue.margin_call_ratio):
            raise ValueError(f"topup.target_margin_ratio: must be below venue "
                             f"{venue.name!r}'s margin_call_ratio {venue.margin_call_ratio}, "
                             f"got {self.topup.target_margin_ratio}")


# ============================================================================ helpers


def _lot_base(inst: Instrument) -> float:
    return float(inst.lot_size * inst.contract_size)


def _on_tick(price: float, tick: Decimal, *, up: bool) -> Decimal:
    steps = (Decimal(repr(price)) / tick).to_integral_value(ROUND_CEILING if up else ROUND_FLOOR)
    return max(steps, Decimal(1)) * tick


def _settle_units(engine: Engine, settle: str) -> tuple[float, int]:
    """(USD price, quanta per unit) of the settlement asset."""
    book = engine.book
    a = book.asset_index[settle]
    return float(book.asset_price[a]), int(book.asset_scale[a])


def premium_index(*, index: float, impact_bid: float, impact_ask: float) -> float:
    """Return Binance's premium index ``[max(0, bid - index) - max(0, index - ask)] / index``.

    ``bid`` and ``ask`` are the impact bid and ask prices (the average fill of the impact
    margin notional on each side); zero while the index is inside the spread.
    """
    return (max(0.0, impact_bid - index) - max(0.0, index - impact_ask)) / index


def funding_rate(premium: float, spec: FundingSpec) -> Decimal:
    """Return the funding rate of an interval from its average premium index ``P``.

    ``F = P + clamp(I - P, -c, c)`` (Binance USD-M futures funding), then clipped to
    ``[-cap, cap]`` and rounded half to even to ``rate_decimals`` (8: Binance publishes
    ``fundingRate`` with 8 decimals). The rate is not money; the engine turns it into
    exact payments (payers rounded up, receivers down).
    """
    c = spec.clamp
    f = premium + min(max(spec.interest_rate - premium, -c), c)
    f = min(max(f, -spec.cap), spec.cap)
    return Decimal(repr(f)).quantize(Decimal(1).scaleb(-spec.rate_decimals), ROUND_HALF_EVEN)


# ============================================================================ top-ups


class TopUpAgent:
    """Accounts that deposit after a margin call (see the module docstring).

    Parameters
    ----------
    spec : TopUpSpec
        Parameters.
    engine : Engine
        The engine, with the population loaded.
    pop : Population
        The population (cross accounts answer; isolated rows' calls are ignored).
    settle : str
        Asset of the deposits.
    rng : numpy.random.Generator
        Draws, in this order: who responds, reserve multiples, latencies.
    """

    def __init__(self, spec: TopUpSpec, engine: Engine, pop: Population, settle: str,
                 rng: np.random.Generator) -> None:
        self.spec = spec
        self.engine = engine
        self.settle = settle
        self.names: tuple[str, ...] = pop.accounts
        self.index: dict[str, int] = {name: i for i, name in enumerate(pop.accounts)}
        n = len(pop.accounts)
        self.responder: BoolArray1D = rng.random(n) < spec.respond_fraction
        multiple = spec.reserve_multiple_min * (1.0 + rng.pareto(spec.reserve_pareto_alpha, n))
        multiple = np.minimum(multiple, spec.reserve_multiple_max)
        lat = spec.latency_ms * np.exp(spec.latency_sigma * rng.standard_normal(n))
        self.latency_ms: Int64Array1D = np.rint(lat).astype(np.int64)
        self.due_ms: Int64Array1D = np.full(n, NEVER, dtype=np.int64)
        self.reserve_quanta: Int64Array1D = self._reserves(multiple)
        self.count = 0
        self.amount_quanta = 0
        self.limited = 0
        self.step_quanta = 0
        self.accounts: set[int] = set()

    def _reserves(self, multiple: Float64Array1D) -> Int64Array1D:
        """Multiple x collateral value at the start (USD, weighted), in settle quanta,
        rounded down."""
        book = self.engine.book
        rows = np.array([book.row_index.get(name, -1) for name in self.names], dtype=np.int64)
        out = np.zeros(rows.shape[0], dtype=np.int64)
        known = np.flatnonzero(rows >= 0)
        if known.shape[0] == 0:
            return out
        coll = np.maximum(book.aggregate(rows[known])[:, OUT_COLLATERAL], 0.0)
        px, scale = _settle_units(self.engine, self.settle)
        out[known] = np.floor(multiple[known] * coll / px * scale).astype(np.int64)
        return out

    def observe(self, events: Sequence[Any], now_ms: int) -> None:
        """Schedule a deposit for each responding account the events call."""
        for e in events:
            if e.type != "margin_call":
                continue
            i = self.index.get(e.account)
            if i is None or not self.responder[i] or self.due_ms[i] != NEVER \
                    or self.reserve_quanta[i] <= 0:
                continue
            self.due_ms[i] = now_ms + int(self.latency_ms[i])

    def act(self, now_ms: int, apply: Apply) -> list[Any]:
        """Apply (with ``apply``) the deposits due by ``now_ms``; return the out-events."""
        self.step_quanta = 0
        due = np.flatnonzero(self.due_ms <= now_ms)
        if due.shape[0] == 0:
            return []
        self.due_ms[due] = NEVER
        book = self.engine.book
        rows = np.array([book.row_index[self.names[i]] for i in due.tolist()], dtype=np.int64)
        val = book.aggregate(rows)
        mm, coll = val[:, OUT_MM], val[:, OUT_COLLATERAL]
        px, scale = _settle_units(self.engine, self.settle)
        need_usd = np.where(mm > 0, mm / self.spec.target_margin_ratio - coll, 0.0)
        need = np.ceil(np.maximum(need_usd, 0.0) / px * scale)
        reserve = self.reserve_quanta[due]
        pay = np.minimum(need, reserve.astype(np.float64)).astype(np.int64)
        self.limited += int(np.count_nonzero((pay > 0) & (need > reserve)))
        self.reserve_quanta[due] -= pay
        dec = int(self.engine.venue.assets[self.settle].decimals)
        out: list[Any] = []
        for i, q in zip(due[pay > 0].tolist(), pay[pay > 0].tolist(), strict=True):
            name = self.names[i]
            self.count += 1
            out.extend(apply(Deposit(
                id=f"agent:topup:{name}:{self.count}", account=name, asset=self.settle,
                amount=Decimal(q).scaleb(-dec), ts_ms=now_ms)))
            self.accounts.add(i)
            self.amount_quanta += q
            self.step_quanta += q
        return out


# ============================================================================ liquidity


class ExecutedFlowLiquidity:
    """The book as a ``Liquidity`` port whose flow is what the engine executed.

    ``ImpactLiquidity(consume=True)`` records every quoted lot as flow, but the engine
    takes quoted levels best first only down to the account's bankruptcy price and
    declines the rest (a crashed book is often all below it), so quotes alone overstate
    the flow, and with it the impact the arbitrageur trades against and the market makers
    react to. The port cannot be told what executed, so this wrapper reconciles after
    each engine event (:meth:`begin`, :meth:`end`, called by :meth:`Agents.apply`): the
    lots the engine's ``__market__`` row took in each market (its position change; only
    liquidation closes move it during an event) against the lots quoted; the difference
    is taken back out of the book's flow. Quotes still move the book at once, so later
    liquidations of the same event see it. When one event quoted both directions in one
    market the net change cannot be split, and nothing is handed back.

    Runs with any agent use it; runs without agents keep the plain model (their results
    do not change).

    Parameters
    ----------
    venue : Venue
        Lot sizes of the markets.
    book : ImpactLiquidity
        The book.
    """

    def __init__(self, venue: Venue, book: ImpactLiquidity) -> None:
        self.book = book
        self.lot_base = {m: _lot_base(i) for m, i in venue.markets.items() if not i.is_inverse}
        self.engine: Engine | None = None
        self._before: dict[str, int] = {}
        self._quoted_own: dict[str, float] = {}  # base the layer in front took (+ bought)
        self._quoted_book: dict[str, float] = {}  # base the book took (+ bought)
        self._sides: dict[str, set[int]] = {}
        self.declined_base = 0.0

    def attach(self, engine: Engine) -> None:
        """Read executions from ``engine`` (its ``__market__`` row) from now on."""
        self.engine = engine

    def _maker_lots(self) -> dict[str, int]:
        assert self.engine is not None
        book = self.engine.book
        r = book.row_index.get(MARKET)
        out: dict[str, int] = {}
        for m in self.lot_base:
            s = book.slot_of(r, book.market_index[m]) if r is not None else -1
            out[m] = int(book.slot_lots[s]) if s >= 0 else 0
        return out

    def begin(self) -> None:
        """Start an engine event: note the book's position to reconcile against."""
        self._quoted_own.clear()
        self._quoted_book.clear()
        self._sides.clear()
        if self.engine is not None:
            self._before = self._maker_lots()

    def end(self) -> None:
        """End an engine event: take back the flow quoted and not executed (from the
        book first -- its levels are the farthest -- then from the layer in front)."""
        if self.engine is None or not self._sides:
            return
        after = self._maker_lots()
        for m, sides in self._sides.items():
            if len(sides) != 1:
                continue
            sign = next(iter(sides))  # +1: liquidation sells, bought by the book
            done = sign * (after[m] - self._before.get(m, 0)) * self.lot_base[m]
            q_book = abs(self._quoted_book.get(m, 0.0))
            q_own = abs(self._quoted_own.get(m, 0.0))
            declined = min(max(q_book + q_own - done, 0.0), q_book + q_own)
            back_book = min(declined, q_book)
            if back_book > 0 and m in self.book.specs:
                self.book.record_flow(m, sign * back_book)  # the sells that did not happen
            self._hand_back(m, sign, declined - back_book)
            self.declined_base += declined

    def _hand_back(self, market: str, sign: int, base: float) -> None:
        """Give the layer in front back ``base`` it quoted and did not execute."""

    def _note(self, market: str, lots: int, own: int, booked: int) -> None:
        sign = -1 if lots > 0 else 1
        lot_base = self.lot_base[market]
        self._sides.setdefault(market, set()).add(sign)
        self._quoted_own[market] = self._quoted_own.get(market, 0.0) + sign * own * lot_base
        self._quoted_book[market] = self._quoted_book.get(market, 0.0) + (
            sign * booked * lot_base)

    def peek(self, market: str, lots: int, mark: Decimal, tick: Decimal) -> list[Fill]:
        """Return the book's quote without moving it or noting it (a valuation: the
        engine values the insurance fund's positions at depth with it). Liquidators in
        front are not asked: the valuation is the book's alone."""
        return self.book.peek(market, lots, mark, tick)

    def quote(self, market: str, lots: int, mark: Decimal, tick: Decimal) -> list[Fill]:
        """Return the book's quote (:meth:`ImpactLiquidity.quote`), noted for :meth:`end`."""
        fills = self.book.quote(market, lots, mark, tick)
        if fills and market in self.lot_base:
            self._note(market, lots, 0, sum(f.lots for f in fills))
        return fills


@dataclass(slots=True)
class _LiqState:
    """Mutable state of the liquidators."""

    now_ms: int
    capacity_left: float
    online_at_ms: int | None = None
    last_order_ms: int = -1
    inventory_base: dict[str, float] = field(default_factory=dict)
    price: dict[str, float] = field(default_factory=dict)


class LiquidatorLiquidity(ExecutedFlowLiquidity):
    """Liquidators in front of the book, as the engine's ``Liquidity`` port.

    Quotes spend capacity and capital at once; after each event what the engine declined
    is handed back (see :class:`ExecutedFlowLiquidity`: the book's part first, then
    theirs); with ``overflow = "defer"`` their declined part already before their next
    quote (:meth:`_settle_open`).

    Parameters
    ----------
    spec : LiquidatorSpec
        Parameters.
    venue : Venue
        Lot sizes of the markets.
    book : ImpactLiquidity
        The book behind them (its flow takes the overflow and the unwinding).
    start_ms : int
        Model time at creation.
    """

    def __init__(self, spec: LiquidatorSpec, venue: Venue, book: ImpactLiquidity, *,
                 start_ms: int = 0) -> None:
        super().__init__(venue, book)
        self.spec = spec
        self.state = _LiqState(now_ms=start_ms, capacity_left=spec.capacity_per_step_quote)
        self.absorbed_quote = 0.0
        self.step_quote = 0.0
        self.capacity_hits = 0
        self.offline_quotes = 0
        self.inventory_max_quote = 0.0
        # overflow "defer": the last quote (market, sign, lots they took) and the lots the
        # engine executed since, settled at the next quote (see executed)
        self._open: tuple[str, int, int] | None = None
        self._open_done = 0

    def _hand_back(self, market: str, sign: int, base: float) -> None:
        if base <= 0:
            return
        st = self.state
        st.inventory_base[market] = st.inventory_base.get(market, 0.0) - sign * base
        notional = base * st.price.get(market, 0.0)
        st.capacity_left += notional
        self.absorbed_quote -= notional
        self.step_quote -= notional

    def executed(self, market: str, lots: int, quote_quanta: int) -> None:
        """The engine executed ``lots`` of the last quote (an ``ExecutionListener``)."""
        if self._open is not None and self._open[0] == market:
            self._open_done += abs(lots)

    def _settle_open(self) -> None:
        """With ``overflow = "defer"``, give back at once what the engine declined of the
        last quote (all of it is theirs): a declined order (an account past bankruptcy
        that this step of the waterfall cannot close) must not spend the capacity the
        next orders of the same event, its own last resort included, would get. The
        book's part is reconciled at the event's end as before (:meth:`end`)."""
        if self._open is None:
            return
        market, sign, own = self._open
        declined = max(own - self._open_done, 0)
        self._open = None
        self._open_done = 0
        if declined:
            base = declined * self.lot_base[market]
            self._hand_back(market, sign, base)
            self._quoted_own[market] = self._quoted_own.get(market, 0.0) - sign * base
            self.declined_base += base

    def end(self) -> None:
        """End an engine event: settle the last quote, then reconcile (see
        :meth:`ExecutedFlowLiquidity.end`)."""
        self._settle_open()
        super().end()

    def advance(self, now_ms: int, prices: Mapping[str, float]) -> None:
        """Start a step at ``now_ms``: refill capacity, unwind inventory into the book,
        stand down after ``idle_reset`` without orders."""
        st = self.state
        dt = now_ms - st.now_ms
        if dt < 0:
            raise ValueError(f"time went backwards: {now_ms} < {st.now_ms}")
        keep = 2.0 ** (-dt / self.spec.unwind_half_life_ms)
        for m, inv in st.inventory_base.items():
            sold = inv * (1.0 - keep)
            st.inventory_base[m] = inv - sold
            if sold and m in self.book.specs:
                self.book.record_flow(m, -sold)  # long inventory is sold into the book
        st.price.update(prices)
        st.capacity_left = self.spec.capacity_per_step_quote
        if st.online_at_ms is not None and now_ms - st.last_order_ms >= self.spec.idle_reset_ms:
            st.online_at_ms = None
        st.now_ms = now_ms
        self.step_quote = 0.0

    def _inventory_quote(self) -> float:
        st = self.state
        return sum(abs(v) * st.price.get(m, 0.0) for m, v in st.inventory_base.items())

    def _take(self, market: str, lots: int, mark: float) -> int:
        """Lots the liquidators take of an order of ``lots`` (signed); notional at ``mark``
        (the price their inventory is valued at)."""
        st = self.state
        st.last_order_ms = st.now_ms
        if st.online_at_ms is None:
            st.online_at_ms = st.now_ms + self.spec.latency_ms
        if st.now_ms < st.online_at_ms:
            self.offline_quotes += 1
            return 0
        per_lot = self.lot_base[market] * mark
        room = min(st.capacity_left + self._reward_bonus(market),
                   self.spec.capital_quote - self._inventory_quote())
        take = min(abs(lots), max(int(room // per_lot), 0)) if per_lot > 0 else 0
        if take < abs(lots):
            self.capacity_hits += 1
        if take:
            notional = take * per_lot
            st.capacity_left -= notional
            # a liquidation sell (lots < 0) is a buy of the liquidators
            st.inventory_base[market] = st.inventory_base.get(market, 0.0) - (
                math.copysign(take * self.lot_base[market], lots))
            self.absorbed_quote += notional
            self.step_quote += notional
            self.inventory_max_quote = max(self.inventory_max_quote, self._inventory_quote())
        return take

    def _reward_bonus(self, market: str) -> float:
        """Capacity the keeper reward adds this step: ``capacity_per_step x (((discount +
        reward) / discount) ^ elasticity - 1)`` (0 without an elasticity or an engine)."""
        spec = self.spec
        if spec.reward_elasticity == 0 or self.engine is None:
            return 0.0
        liq = self.engine.liquidator
        reward_bps = liq.liquidator_fee_ppm_now(self.engine.book.market_index[market]) / 100
        mult = float(((spec.discount_bps + reward_bps) / spec.discount_bps)
                     ** spec.reward_elasticity)
        return spec.capacity_per_step_quote * (mult - 1.0)

    def quote(self, market: str, lots: int, mark: Decimal, tick: Decimal) -> list[Fill]:
        """Return the liquidators' slice, then (``overflow = "book"``) the book's.

        The liquidators' price is ``mark x (1 -/+ discount_bps / 10,000)`` rounded
        against the liquidated account to the tick (a buy of theirs down, a sale up). The
        slices are ordered best first for the account and merged at equal prices; their
        lots sum to at most ``|lots|``.
        """
        if lots == 0 or market not in self.lot_base:
            return self.book.quote(market, lots, mark, tick) if lots else []
        if mark <= 0 or tick <= 0:
            raise ValueError("mark and tick must be > 0")
        buy = lots > 0  # the liquidated account buys (closes a short)
        d = self.spec.discount_bps / 10_000.0
        price = _on_tick(float(mark) * (1.0 + d if buy else 1.0 - d), tick, up=buy)
        self.state.price[market] = float(mark)
        defer = self.spec.overflow == "defer"
        if defer:
            self._settle_open()
        take = self._take(market, lots, float(mark))
        if defer and take:
            self._open = (market, -1 if lots > 0 else 1, take)
        fills = [Fill(take, price)] if take else []
        rest = abs(lots) - take
        booked = 0
        if rest and self.spec.overflow == "book":
            from_book = self.book.quote(market, rest if buy else -rest, mark, tick)
            booked = sum(f.lots for f in from_book)
            fills.extend(from_book)
        self._note(market, lots, take, booked)
        return _merge(fills, buy=buy)


def _merge(fills: list[Fill], *, buy: bool) -> list[Fill]:
    """Order slices best first for the taker (lowest price for a buy) and merge equal
    prices."""
    out: list[Fill] = []
    for f in sorted(fills, key=lambda f: f.price, reverse=not buy):
        if out and out[-1].price == f.price:
            out[-1] = Fill(out[-1].lots + f.lots, f.price)
        else:
            out.append(f)
    return out


# ============================================================================ market makers


class MarketMakerAgent:
    """Market makers who withdraw depth in stress (see :class:`MarketMakerSpec`).

    Parameters
    ----------
    spec : MarketMakerSpec
        Parameters.
    book : ImpactLiquidity
        The book whose depth they provide; markets without a liquidity model are skipped.
    start_ms : int
        Model time at creation.
    """

    def __init__(self, spec: MarketMakerSpec, book: ImpactLiquidity, *,
                 start_ms: int = 0) -> None:
        self.spec = spec
        self.book = book
        self.now_ms = start_ms
        self.markets = tuple(book.specs)
        self.withdrawn = dict.fromkeys(self.markets, 0.0)
        self.min_fraction = 1.0
        # monotone queues of (ts, price): the running high of the look-back window
        self._highs: dict[str, deque[tuple[int, float]]] = {m: deque() for m in self.markets}

    def pressure(self, market: str, index: float, now_ms: int) -> float:
        """Return ``x`` of the market now (see :class:`MarketMakerSpec`), updating the
        window of the index's high."""
        q = self._highs[market]
        while q and q[-1][1] <= index:
            q.pop()
        q.append((now_ms, index))
        while q[0][0] < now_ms - self.spec.drawdown_window_ms:
            q.popleft()
        drawdown = max(0.0, 1.0 - index / q[0][1])
        spec_l = self.book.specs[market]
        st = self.book.state[market]
        s = self.spec
        return (s.vol_sensitivity * max(0.0, st.vol_annual / spec_l.vol_ref_annual - 1.0)
                + s.drawdown_sensitivity * drawdown
                + s.flow_sensitivity * abs(st.flow_base) / spec_l.daily_volume_base)

    def advance(self, now_ms: int, index: Mapping[str, float]) -> None:
        """Move to ``now_ms`` (after the book's own ``advance``) and set the withdrawal:
        at once up to a higher target, back toward a lower one with the half-life."""
        dt = now_ms - self.now_ms
        if dt < 0:
            raise ValueError(f"time went backwards: {now_ms} < {self.now_ms}")
        keep = 2.0 ** (-dt / self.spec.recovery_half_life_ms)
        for m in self.markets:
            target = self.spec.max_withdrawal * -math.expm1(-self.pressure(m, index[m], now_ms))
            w = self.withdrawn[m]
            w = target if target >= w else target + (w - target) * keep
            self.withdrawn[m] = w
            self.book.set_withdrawal(m, w)
            self.min_fraction = min(self.min_fraction, 1.0 - w)
        self.now_ms = now_ms


# ============================================================================ arbitrage


class ArbitrageAgent:
    """An arbitrageur account that trades the premium away (see :class:`ArbitrageSpec`).

    Each step, in every linear perpetual with a book whose trade price is more than
    ``threshold_bps`` from the index, it trades against the decaying flow ``Q`` behind
    the impact: ``-Q (1 - (1 - speed)^2)`` base, so that the square-root impact (hence the
    log premium) shrinks by the factor ``1 - speed``. Its counterparty is the book's
    makers, the engine's ``__market__`` row (who absorbed that flow), at the trade price
    rounded against the arbitrageur to the tick; each position's notional stays within
    ``max_leverage x equity``, its equity now (balance + unrealized P&L at the mark,
    :meth:`equity_quanta`; it was the starting capital until review 2, item 4). The fill
    goes through ``Engine.apply``, which checks the initial margin of both sides;
    ``__market__`` posts no collateral, so when it refuses a trade that grows the
    makers' position, the arbitrageur takes over only what they hold on the other side
    (counted in ``arb_rejected`` when that is nothing). Its flow moves the book back.
    """

    def __init__(self, spec: ArbitrageSpec, venue: Venue, book: ImpactLiquidity,
                 markets: Sequence[str]) -> None:
        self.spec = spec
        self.book = book
        self.insts = {m: venue.markets[m] for m in markets
                      if m in book.specs and venue.markets[m].is_perpetual
                      and not venue.markets[m].is_inverse}
        self.engine: Engine | None = None
        self.asset = 0  # the settlement asset's index and quanta per unit (attach)
        self.scale = 1
        self.trades = 0
        self.rejected = 0
        self.volume_quote = 0.0
        self.position_max_quote = 0.0
        self.funding_paid_quanta = 0

    def attach(self, settle: str, apply: Apply, engine: Engine) -> list[Any]:
        """Deposit the capital (rounded down to the quantum) through ``apply``; return
        the out-events."""
        self.engine = engine
        self.asset = engine.book.asset_index[settle]
        engine.system_row(MARKET)
        dec = int(engine.venue.assets[settle].decimals)
        self.scale = 10 ** dec
        amount = Decimal(repr(self.spec.capital_quote)).quantize(Decimal(1).scaleb(-dec),
                                                                  ROUND_FLOOR)
        return apply(Deposit(id="agent:arb:capital", account=self.spec.account,
                                    asset=settle, amount=amount))

    def _lots(self, row: int, m: int) -> int:
        assert self.engine is not None
        book = self.engine.book
        s = book.slot_of(row, m)
        return int(book.slot_lots[s]) if s >= 0 else 0

    def balance_quanta(self, settle: str) -> int:
        """Return the arbitrageur's ledger balance in ``settle`` quanta."""
        assert self.engine is not None
        book = self.engine.book
        r = book.row_index[self.spec.account]
        return int(self.engine.ledger.balance(book.rows[r].ledger_id, settle))

    def equity_quanta(self) -> int:
        """Return the arbitrageur's equity in settlement quanta: its ledger balance (a
        fill moves the entry notional through it) plus its positions' value at the mark,
        the book's exact per-row sums (``row_int``: balance in column ``a``, values in
        ``A + a``). It equals the starting capital plus the unrealized P&L at the mark
        and the realized P&L and funding."""
        assert self.engine is not None
        book = self.engine.book
        r = book.row_index.get(self.spec.account)
        if r is None:
            return 0
        n_a = len(book.asset_names)
        return int(book.row_int[r, self.asset]) + int(book.row_int[r, n_a + self.asset])

    def act(self, now_ms: int, index: Mapping[str, float], apply: Apply) -> list[Any]:
        """Trade the premium of every market down (fills through ``apply``); return the
        out-events."""
        out: list[Any] = []
        for m, inst in self.insts.items():
            out.extend(self._market(m, inst, now_ms, index[m], apply))
        return out

    def _market(self, m: str, inst: Instrument, now_ms: int, index: float,
                apply: Apply) -> list[Any]:
        eng = self.engine
        assert eng is not None
        imp = self.book.impact(m)
        if abs(math.expm1(imp)) * 10_000.0 <= self.spec.threshold_bps:
            return []
        want = -self.book.state[m].flow_base * (1.0 - (1.0 - self.spec.speed) ** 2)
        buy = want > 0
        mi = eng.book.market_index[m]
        price = _on_tick(index * math.exp(imp), inst.tick_size, up=buy)
        lot_base = _lot_base(inst)
        per_lot = lot_base * float(price)
        pos = self._lots(eng.book.row_index[self.spec.account], mi)
        equity = max(0, self.equity_quanta()) / self.scale
        limit = int(self.spec.max_leverage * equity // per_lot)
        room = limit - pos if buy else limit + pos
        lots = min(int(abs(want) // lot_base), max(room, 0))
        if lots <= 0:
            return []
        buyer, seller = (self.spec.account, MARKET) if buy else (MARKET, self.spec.account)
        fill = FillEvent(id=f"agent:arb:{m}:{now_ms}", market=m, buyer=buyer, seller=seller,
                         size=Decimal(lots) * inst.lot_size, price=price, ts_ms=now_ms)
        res = apply(fill)
        if res and res[0].type == "rejected":
            # the makers' equity does not carry a larger position: take over only what
            # they hold on the other side (a trade that reduces theirs is never refused)
            held = self._lots(eng.system_row(MARKET), mi)
            lots = min(lots, held if buy else -held)
            if lots <= 0:
                self.rejected += 1
                return res
            res = apply(replace(fill, id=f"{fill.id}:held", size=Decimal(lots) * inst.lot_size))
            if res and res[0].type == "rejected":
                self.rejected += 1
                return res
        self.book.record_flow(m, lots * lot_base if buy else -lots * lot_base)
        self.trades += 1
        self.volume_quote += lots * per_lot
        new = pos + (lots if buy else -lots)
        self.position_max_quote = max(self.position_max_quote, abs(new) * per_lot)
        return res


# ============================================================================ funding


class FundingAgent:
    """The venue's funding settlements (see :func:`funding_rate`).

    Each step it samples the premium index of every perpetual with a book from the
    trade mid ``index x exp(impact)`` and the first band of the book around it (impact
    bid and ask ``mid x (1 -/+ band_bps / 10,000)``; markets without a book have ``P =
    0``), time-weighted by the step length. At each multiple of ``interval_ms`` it applies
    ``Funding(rate=F)`` from the interval's average premium.
    """

    def __init__(self, spec: FundingSpec, venue: Venue, book: ImpactLiquidity,
                 markets: Sequence[str], *, start_ms: int = 0) -> None:
        self.spec = spec
        self.book = book
        self.markets = tuple(m for m in markets if venue.markets[m].is_perpetual)
        self.last_ms = start_ms
        self.next_ms = (start_ms // spec.interval_ms + 1) * spec.interval_ms
        self.sum_p = dict.fromkeys(self.markets, 0.0)
        self.sum_t = 0
        self.premium = dict.fromkeys(self.markets, 0.0)
        self.rate = dict.fromkeys(self.markets, 0.0)
        self.events = 0
        self.paid_quanta = 0
        self.step_paid_quanta = 0
        self.rates: list[float] = []

    def sample(self, now_ms: int, index: Mapping[str, float]) -> None:
        """Add the premium index at ``now_ms`` for the time since the last sample."""
        dt = now_ms - self.last_ms
        for m in self.markets:
            p = 0.0
            if m in self.book.specs:
                mid = self.book.trade_price(m, index[m])
                h = self.book.specs[m].band_bps / 10_000.0
                p = premium_index(index=index[m], impact_bid=mid * (1.0 - h),
                                  impact_ask=mid * (1.0 + h))
            self.premium[m] = p
            self.sum_p[m] += p * dt
        self.sum_t += dt
        self.last_ms = now_ms

    def due(self, now_ms: int) -> bool:
        """Return True when a funding time is reached."""
        return now_ms >= self.next_ms

    def settle(self, venue: Venue, now_ms: int, apply: Apply) -> list[Any]:
        """Apply one ``Funding`` per market through ``apply``; return the out-events."""
        self.step_paid_quanta = 0
        out: list[Any] = []
        for m in self.markets:
            avg = self.sum_p[m] / self.sum_t if self.sum_t > 0 else 0.0
            rate = funding_rate(avg, self.spec)
            res = apply(Funding(id=f"agent:funding:{m}:{now_ms}", market=m, rate=rate,
                                       ts_ms=now_ms))
            self.rate[m] = float(rate)
            for e in res:
                if e.type == "settled" and e.kind == "funding":
                    self.events += 1
                    self.rates.append(float(rate))
                    dec = int(venue.assets[e.asset].decimals)
                    q = int(Decimal(e.paid).scaleb(dec))
                    self.paid_quanta += q
                    self.step_paid_quanta += q
            out.extend(res)
            self.sum_p[m] = 0.0
        self.sum_t = 0
        while self.next_ms <= now_ms:
            self.next_ms += self.spec.interval_ms
        return out


# ============================================================================ the crew


class Agents:
    """All agents of a run, behind the few hooks :func:`solvency.sim.run.run_scenario` calls.

    Order within a step ``k`` (time ``t``): :meth:`before_prices` (liquidators refill and
    unwind, market makers set depth, due top-ups are deposited), the ``Price`` events,
    then :meth:`after_prices` (arbitrage, the premium sample, funding at a funding time).
    Every event reaches the engine through :meth:`apply`.

    Parameters
    ----------
    spec : AgentsSpec
        Which agents run.
    venue : Venue
        The venue.
    book : ImpactLiquidity
        The liquidity model.
    markets : Sequence[str]
        The scenario's markets.
    settle : str
        Settlement asset of the markets.
    start_ms : int
        Time of point 0.
    seed : int
        Seed of the random draws (top-ups).
    """

    def __init__(self, spec: AgentsSpec, *, venue: Venue, book: ImpactLiquidity,
                 markets: Sequence[str], settle: str, start_ms: int, seed: int) -> None:
        spec.check_venue(venue, markets)
        self.spec = spec
        self.book = book
        self.markets = tuple(markets)
        self.settle = settle
        self.seed = seed
        self.engine: Engine | None = None
        self.liquidator = (LiquidatorLiquidity(spec.liquidator, venue, book, start_ms=start_ms)
                           if spec.liquidator is not None else None)
        self.port: ExecutedFlowLiquidity | None = self.liquidator if (
            self.liquidator is not None) else (
            ExecutedFlowLiquidity(venue, book) if spec.any else None)
        self.mm = (MarketMakerAgent(spec.market_maker, book, start_ms=start_ms)
                   if spec.market_maker is not None else None)
        self.arb = (ArbitrageAgent(spec.arbitrage, venue, book, markets)
                    if spec.arbitrage is not None else None)
        self.funding = (FundingAgent(spec.funding, venue, book, markets, start_ms=start_ms)
                        if spec.funding is not None else None)
        self.topup: TopUpAgent | None = None
        # accounts named by a fill applied through :meth:`apply` (a fill is the only
        # event that opens a position): the runner's flat-account check reads and clears it
        self.traded: set[str] = set()

    @property
    def liquidity(self) -> Liquidity:
        """Return the engine's liquidity port: liquidators and book with executed flow
        when any agent runs (:class:`ExecutedFlowLiquidity`), else the plain book."""
        return self.port if self.port is not None else self.book

    def apply(self, event: Any) -> list[Any]:
        """Apply ``event`` to the engine; the port reconciles its quotes with what
        executed, and the top-up traders read the margin calls. A fill's buyer and
        seller join :attr:`traded`."""
        assert self.engine is not None
        if isinstance(event, FillEvent):
            self.traded.update((event.buyer, event.seller))
        if self.port is not None:
            self.port.begin()
        out = self.engine.apply(event)
        if self.port is not None:
            self.port.end()
        if self.topup is not None:
            self.topup.observe(out, self.engine.clock_ms or 0)
        return out

    def attach(self, engine: Engine, pop: Population) -> list[Any]:
        """Bind to the engine once the population is loaded; return the out-events."""
        self.engine = engine
        if self.port is not None:
            self.port.attach(engine)
        out: list[Any] = []
        if self.spec.topup is not None:
            rng = np.random.default_rng([self.seed, 1])
            self.topup = TopUpAgent(self.spec.topup, engine, pop, self.settle, rng)
        if self.arb is not None:
            out.extend(self.arb.attach(self.settle, self.apply, engine))
        return out

    def before_prices(self, now_ms: int, index: Mapping[str, float]) -> list[Any]:
        """Start step ``now_ms`` (after the book's ``advance``); return out-events."""
        if self.liquidator is not None:
            self.liquidator.advance(now_ms, index)
        if self.mm is not None:
            self.mm.advance(now_ms, index)
        if self.topup is not None:
            return self.topup.act(now_ms, self.apply)
        return []

    def after_prices(self, now_ms: int, index: Mapping[str, float]) -> list[Any]:
        """Arbitrage, premium sampling and funding; return the out-events."""
        out: list[Any] = []
        if self.arb is not None:
            out.extend(self.arb.act(now_ms, index, self.apply))
        if self.funding is not None:
            self.funding.sample(now_ms, index)
            if self.funding.due(now_ms):
                assert self.engine is not None
                before = self.arb.balance_quanta(self.settle) if self.arb is not None else 0
                out.extend(self.funding.settle(self.engine.venue, now_ms, self.apply))
                if self.arb is not None:
                    self.arb.funding_paid_quanta += before - self.arb.balance_quanta(
                        self.settle)
        return out

    def record(self, k: int, series: StepSeries) -> None:
        """Write step ``k`` of the agent series of a :class:`~solvency.sim.metrics.StepSeries`."""
        scale = self._scale()
        if self.topup is not None:
            series.topup_amount[k] = self.topup.step_quanta / scale
        if self.liquidator is not None:
            series.liquidator_notional[k] = self.liquidator.step_quote
        for m in self.markets:
            if self.mm is not None and m in self.mm.withdrawn:
                series.mm_depth_fraction[m][k] = 1.0 - self.mm.withdrawn[m]
            if self.funding is not None and m in self.funding.premium:
                series.premium[m][k] = self.funding.premium[m]
                series.funding_rate[m][k] = self.funding.rate[m]
        if self.funding is not None:
            series.funding_paid[k] = self.funding.step_paid_quanta / scale
            self.funding.step_paid_quanta = 0

    def _scale(self) -> float:
        if self.engine is None:
            return 1.0
        return float(10 ** int(self.engine.venue.assets[self.settle].decimals))

    def metrics(self) -> dict[str, Any]:
        """Return the agent metrics (:data:`AGENT_METRIC_KEYS`), settlement asset units."""
        scale = self._scale()
        t, lq, mm, arb, f = self.topup, self.liquidator, self.mm, self.arb, self.funding
        return {
            "topups": t.count if t else 0,
            "topup_amount": t.amount_quanta / scale if t else 0.0,
            "topup_accounts": len(t.accounts) if t else 0,
            "topup_reserve_limited": t.limited if t else 0,
            "liquidator_absorbed_notional": lq.absorbed_quote if lq else 0.0,
            "liquidator_capacity_hits": lq.capacity_hits if lq else 0,
            "liquidator_offline_quotes": lq.offline_quotes if lq else 0,
            "liquidator_inventory_max": lq.inventory_max_quote if lq else 0.0,
            "mm_depth_min_fraction": mm.min_fraction if mm else 1.0,
            "arb_trades": arb.trades if arb else 0,
            "arb_volume_notional": arb.volume_quote if arb else 0.0,
            "arb_rejected": arb.rejected if arb else 0,
            "arb_position_max_notional": arb.position_max_quote if arb else 0.0,
            "arb_funding_paid": arb.funding_paid_quanta / scale if arb else 0.0,
            "funding_events": f.events if f else 0,
            "funding_paid": f.paid_quanta / scale if f else 0.0,
            "funding_rate_min": min(f.rates) if f and f.rates else 0.0,
            "funding_rate_max": max(f.rates) if f and f.rates else 0.0,
        }
