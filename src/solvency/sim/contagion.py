"""Several venues on one price path and one clock, and the links between them (issue 22).

A scenario's ``[[venues]]`` names the venues (``name``, ``preset``, optionally its own
``insurance_fund`` and ``population_share``); :func:`run_venues` drives each venue's real
engine over the same paths, built once from the scenario's seeds, on the same steps.

With no link (``--links none``) nothing one venue does reaches another, so each venue's
run *is* its single-venue run and its figures equal ``solvency simulate --venue PRESET``
exactly (a test holds them equal). With links, the venues run in lockstep in one process
(:func:`solvency.sim.run.venue_steps`: each venue pauses at the start of every step, after
its books moved to the step's time and before the step's marks) and the links act between
them there:

* ``liquidity`` (:class:`Arbitrageurs`): each venue has its own books and impact
  (:class:`~solvency.sim.market.ImpactLiquidity`, one per venue); arbitrageurs with a
  finite capital and a latency trade the basis between the venues' books back toward
  each other, so one venue's liquidation flow reaches another's book only through them;
* ``traders`` (:class:`SharedTraders`): a share of the accounts are one trader on every
  venue with one wallet; margin calls draw on the wallet and the deposits land after a
  transfer delay, so what one venue's calls took cannot reach another;
* ``collateral`` (:class:`CollateralBooks`): each venue's own spot book of each
  collateral asset valued by rule; the engine's collateral sales move that venue's book,
  whose price is reported as the asset's ``book`` source at the next step, so a rule
  that weights its own book revalues every holder's collateral (the 2025-10-10 spiral).

The result keeps both views: ``venues`` (the run with the links) and ``isolated`` (each
venue alone), each venue's leave-one-out run (``without``) for the spillover matrix
(:meth:`MultiVenueResult.spillover`) and the system totals
(:meth:`MultiVenueResult.systemic`); the basis of each venue's book against the index over
time is in each venue's series (:func:`basis_bps`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from multiprocessing import get_context
from typing import Any, Final

import numpy as np

from solvency.core.margin.kernels import OUT_COLLATERAL, OUT_MM
from solvency.core.model.events import Deposit
from solvency.core.typing import Int64Array1D
from solvency.engine.engine import Engine
from solvency.sim.market import DAYS_PER_YEAR, ImpactLiquidity, sqrt_impact
from solvency.sim.paths import PathSet
from solvency.sim.run import (
    Progress,
    RunResult,
    VenueStep,
    build_paths,
    path_price,
    run_named,
    venue_steps,
)
from solvency.sim.scenario import (
    CollateralBookSpec,
    LiquidityLinkSpec,
    Scenario,
    ScenarioError,
    TradersLinkSpec,
    book_source,
)

__all__ = [
    "FIGURES",
    "LINKS",
    "MODELLED",
    "Arbitrageurs",
    "CollateralBook",
    "CollateralBooks",
    "MultiVenueResult",
    "SharedTraders",
    "capital_fraction",
    "equalizing_flows",
    "parse_links",
    "run_linked",
    "run_venues",
]

LINKS: Final = ("liquidity", "traders", "collateral")
"""The links between venues the issue names."""

MODELLED: Final = ("liquidity", "traders", "collateral")
"""The links a run can switch on today."""


FIGURES: Final = ("liquidations", "liquidated_notional", "accounts_liquidated",
                   "insurance_fund_used", "adl_notional", "bad_debt")
"""The attribution's figures of each venue (its run's metrics of those names; amounts in
its settlement asset)."""


@dataclass(frozen=True, slots=True)
class MultiVenueResult:
    """A multi-venue run: each venue's run with ``links`` and each venue alone, by name,
    what the links did (``arbitrage``: :meth:`Arbitrageurs.metrics`, empty without the
    liquidity link) and, with links, each leave-one-out run (``without``: left-out venue
    -> the other venues' runs with the links; ``without_links``: left-out venue -> what
    the links did in that run, as ``arbitrage``, ``traders``, ``collateral``)."""

    links: tuple[str, ...]
    venues: dict[str, RunResult]
    isolated: dict[str, RunResult]
    arbitrage: dict[str, Any] = field(default_factory=dict)
    traders: dict[str, Any] = field(default_factory=dict)
    collateral: dict[str, Any] = field(default_factory=dict)
    without: dict[str, dict[str, RunResult]] = field(default_factory=dict)
    without_links: dict[str, dict[str, Any]] = field(default_factory=dict)

    def figures(self, runs: Mapping[str, RunResult]) -> dict[str, dict[str, float]]:
        """:data:`FIGURES` of each run."""
        return {k: {f: float(v.metrics.get(f) or 0.0) for f in FIGURES}
                for k, v in runs.items()}

    def spillover(self) -> dict[str, dict[str, dict[str, float]]]:
        """From venue ``i`` to venue ``j``: ``j``'s figures in the linked run less its
        figures in the linked run without ``i`` (all zero without links)."""
        full = self.figures(self.venues)
        out: dict[str, dict[str, dict[str, float]]] = {}
        for i in self.venues:
            left = self.figures(self.without[i]) if self.links else {
                j: full[j] for j in self.venues if j != i}
            out[i] = {j: {f: full[j][f] - left[j][f] for f in FIGURES}
                      for j in self.venues if j != i}
        return out

    def systemic(self) -> dict[str, dict[str, float]]:
        """System totals: each figure summed over the venues, in the linked run
        (``linked``), alone (``alone``) and the difference (``contagion``)."""
        linked = self.figures(self.venues)
        alone = self.figures(self.isolated)
        tot = {name: {f: math.fsum(v[f] for v in runs.values()) for f in FIGURES}
               for name, runs in (("linked", linked), ("alone", alone))}
        tot["contagion"] = {f: tot["linked"][f] - tot["alone"][f] for f in FIGURES}
        return tot


def parse_links(text: str) -> tuple[str, ...]:
    """``--links``: ``none``, or link names separated by commas.

    Raises
    ------
    ScenarioError
        For an unknown link (naming the valid ones), or one not modelled yet.
    """
    names = list(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    if names == ["none"]:
        return ()
    unknown = sorted(set(names) - set(LINKS))
    if unknown or not names:
        raise ScenarioError(f"--links: {unknown or text!r} unknown; give none or some of "
                            f"{', '.join(LINKS)}")
    return check_links(names, "--links")


def check_links(names: Sequence[str], key: str) -> tuple[str, ...]:
    """Return ``names`` in :data:`LINKS` order, refusing the links not modelled yet."""
    later = [x for x in names if x not in MODELLED]
    if later:
        raise ScenarioError(f"{key}: {', '.join(later)} not modelled yet (docs/contagion.md:"
                            f" today {', '.join(MODELLED)})")
    return tuple(x for x in LINKS if x in names)


# ============================================================================ liquidity


def impact_coefficient(model: ImpactLiquidity, market: str) -> float:
    """``c`` with ``flow = c x impact x |impact|`` in a market's book now: the inverse of
    the square-root law ``impact = sign(Q) Y sigma_daily sqrt(|Q| / V) / sqrt(1 - w)``,
    ``c = V (1 - w) / (Y sigma_daily)^2`` (``inf`` where the book has no impact)."""
    spec, st = model.specs[market], model.state[market]
    scale = spec.impact_y * st.vol_annual / math.sqrt(DAYS_PER_YEAR)
    if scale <= 0:
        return math.inf
    return spec.daily_volume_base * (1.0 - model.withdrawal(market)) / (scale * scale)


def equalizing_flows(flows: Sequence[float], coefficients: Sequence[float]) -> list[float]:
    """The flows (base units, buys positive) that bring every book to one impact, netting
    to zero: with ``F_v`` each book's flow and ``c_v`` its coefficient
    (:func:`impact_coefficient`), the common impact ``b`` solves
    ``sum_v c_v b |b| = sum_v F_v``, so book ``v`` ends at ``c_v S / C`` with
    ``S = sum F_v``, ``C = sum c_v``, and the flow sent to it is ``c_v S / C - F_v``."""
    total_c = math.fsum(coefficients)
    total_f = math.fsum(flows)
    return [c * total_f / total_c - f for f, c in zip(flows, coefficients, strict=True)]


def capital_fraction(held: Sequence[float], orders: Sequence[float], limit: float) -> float:
    """The largest ``a`` in ``[0, 1]`` with ``sum_i |held_i + a orders_i| <= limit`` (all
    in USD of notional), the gross inventory being convex in ``a``; where the inventory
    already exceeds ``limit`` (prices moved), orders may not raise it."""
    def gross(a: float) -> float:
        return math.fsum(abs(h + a * o) for h, o in zip(held, orders, strict=True))

    cap = max(limit, gross(0.0))
    if gross(1.0) <= cap:
        return 1.0
    cuts = sorted({-h / o for h, o in zip(held, orders, strict=True)
                   if o != 0 and 0.0 < -h / o < 1.0})
    lo = 0.0
    for hi in [*cuts, 1.0]:
        g_hi = gross(hi)
        if g_hi > cap:
            g_lo = gross(lo)
            slope = (g_hi - g_lo) / (hi - lo)
            return lo + (cap - g_lo) / slope if slope > 0 else lo
        lo = hi
    return 1.0


class Arbitrageurs:
    """The liquidity link: arbitrageurs trading the basis between venues' books.

    At the start of every step (after each venue's books moved to the step's time,
    before its marks) they look, per market, at each venue's book as it was ``lag =
    ceil(latency / step)`` steps ago plus their own orders sent since (``lag = 0``: the
    books now), i.e. at the flow ``F_v`` behind each book's impact. When the widest gap
    between two venues' impacts exceeds ``threshold_bps`` they send each book the flow
    that would bring all of them to one impact (:func:`equalizing_flows`: buying where
    the book is cheap, selling where it is rich, netting to zero), scaled down by one
    factor so that their gross inventory over every venue and market, at the index,
    stays within ``capital`` (:func:`capital_fraction`). The orders are flow on each
    book (:meth:`ImpactLiquidity.record_flow`), decaying with the book's resilience as
    any flow does; they do not go through the venues' engines (their margin and P&L are
    not modelled) and are never unwound except by trading the basis back.

    Parameters
    ----------
    spec : LiquidityLinkSpec
        Capital, latency and threshold.
    markets : Sequence[str]
        The markets, in the order they are traded (one capital for all of them).
    step_ms : int
        The paths' step.
    """

    def __init__(self, spec: LiquidityLinkSpec, markets: Sequence[str], step_ms: int) -> None:
        self.spec = spec
        self.markets = tuple(markets)
        self.lag = math.ceil(spec.latency_ms / step_ms) if step_ms > 0 else 0
        self.position: dict[tuple[str, str], float] = {}
        self._seen: deque[dict[tuple[str, str], float]] = deque(maxlen=self.lag + 1)
        self._sent: deque[dict[tuple[str, str], float]] = deque(maxlen=max(self.lag, 1))
        self.traded_notional: dict[str, float] = {}
        self.gross_max = 0.0
        self.trades = 0

    def step(self, steps: Mapping[str, VenueStep]) -> dict[tuple[str, str], float]:
        """Trade the basis at one step; return the flow sent to each (venue, market)."""
        now = {(v, m): s.model.state[m].flow_base for v, s in steps.items()
               for m in self.markets if m in s.model.specs}
        self._seen.append(now)
        sent: dict[tuple[str, str], float] = {}
        if len(self._seen) > self.lag:
            view = dict(self._seen[0])
            for past in list(self._sent)[-self.lag:] if self.lag else ():
                for key, q in past.items():
                    view[key] = view.get(key, 0.0) + q
            sent = self._orders(steps, view)
        self._sent.append(sent)
        return sent

    def _orders(self, steps: Mapping[str, VenueStep], view: Mapping[tuple[str, str], float]
                ) -> dict[tuple[str, str], float]:
        sent: dict[tuple[str, str], float] = {}
        first = next(iter(steps.values()))
        for m in self.markets:
            names = [v for v, s in steps.items() if m in s.model.specs and (v, m) in view]
            if len(names) < 2:
                continue
            coef = [impact_coefficient(steps[v].model, m) for v in names]
            if not all(math.isfinite(c) for c in coef):
                continue  # a book without impact: no basis to trade
            flows = [view[(v, m)] for v in names]
            impacts = [math.copysign(math.sqrt(abs(f) / c), f) for f, c in zip(flows, coef,
                                                                               strict=True)]
            if (max(impacts) - min(impacts)) * 1e4 <= self.spec.threshold_bps:
                continue
            orders = equalizing_flows(flows, coef)
            price = first.index[m]
            held = [p * self._price(steps, key) for key, p in self.position.items()]
            new = [self.position.get((v, m), 0.0) * price for v in names]
            others = [h for key, h in zip(self.position, held, strict=True) if key[1] != m]
            a = capital_fraction([*others, *new], [0.0] * len(others)
                                 + [q * price for q in orders], self.spec.capital)
            if a <= 0:
                continue
            self.trades += 1
            for v, q in zip(names, orders, strict=True):
                q *= a
                if q == 0:
                    continue
                steps[v].model.record_flow(m, q)
                key = (v, m)
                self.position[key] = self.position.get(key, 0.0) + q
                sent[key] = q
                self.traded_notional[v] = self.traded_notional.get(v, 0.0) + abs(q) * price
        gross = math.fsum(abs(p) * self._price(steps, key)
                          for key, p in self.position.items())
        self.gross_max = max(self.gross_max, gross)
        return sent

    @staticmethod
    def _price(steps: Mapping[str, VenueStep], key: tuple[str, str]) -> float:
        return next(iter(steps.values())).index[key[1]]

    def metrics(self) -> dict[str, Any]:
        """What the arbitrageurs did: their parameters, the largest gross inventory they
        held (USD at the index), the notional each venue's books took from them, their
        inventory at the end per venue and market (base units) and the steps they
        traded."""
        return {"capital": self.spec.capital, "latency_ms": self.spec.latency_ms,
                "lag_steps": self.lag, "threshold_bps": self.spec.threshold_bps,
                "gross_max": self.gross_max, "trades": self.trades,
                "traded_notional": dict(sorted(self.traded_notional.items())),
                "position_end": {f"{v}/{m}": p for (v, m), p in sorted(self.position.items())}}


# ============================================================================ traders


_NEVER: Final = np.iinfo(np.int64).max
_MICRO: Final = 1_000_000  # the wallet's quanta: micro-USD


class SharedTraders:
    """The traders link: a share of the accounts are one trader on every venue, with one
    wallet outside the venues.

    Trader ``i`` (``i < round(share x n)``, ``n`` the smallest venue's number of
    accounts) is account ``i`` of every venue's population: its positions on each venue
    are that venue's draw for account ``i``. Its wallet holds, at the first step,
    ``wallet_multiple`` x its collateral summed over the venues (USD at the venues'
    prices, kept in integer micro-USD). At the start of every step, venue by venue in the
    scenario's order, each trader whose account on the venue is under a margin call
    (the engine's ``warned`` flag: margin ratio past the venue's ``margin_call_ratio``)
    and has no transfer under way asks the wallet for what brings that account back to
    ``target_margin_ratio`` (``MM / target - collateral``, as the top-up agent does); the
    wallet pays what it still holds, at once, and the deposit lands on the venue
    ``transfer_delay`` later (the same step with no delay), in the venue's settlement
    asset, rounded down to its quantum. A wallet emptied by one venue's calls has nothing
    left for another's: a loss on one venue reduces what can reach the others.
    Vectorized over traders (one deposit event per landed transfer).

    A leave-one-out run (the venues but ``i``) keeps the traders and wallets of the run
    with every venue: ``left_out`` gives the venues left out at their first step, which
    count in ``n`` and in the wallets but are not stepped (their calls are what the run
    leaves out, not the traders' money).

    Parameters
    ----------
    spec : TradersLinkSpec
        Share, wallet multiple, delay, target ratio.
    steps : Mapping[str, VenueStep]
        The venues at their first step (population loaded).
    left_out : Mapping[str, VenueStep]
        The venues of the scenario not in this run, at their first step.
    """

    def __init__(self, spec: TradersLinkSpec, steps: Mapping[str, VenueStep],
                 left_out: Mapping[str, VenueStep] | None = None) -> None:
        self.spec = spec
        every = {**(left_out or {}), **steps}
        n = min(len(s.accounts) for s in every.values())
        self.n = round(spec.share * n)
        self.rows: dict[str, Int64Array1D] = {}
        start = np.zeros(self.n, dtype=np.int64)
        for v, s in every.items():
            book = s.engine.book
            rows = np.array([book.row_index.get(a, -1) for a in s.accounts[:self.n]],
                            dtype=np.int64)
            if v in steps:
                self.rows[v] = rows
            known = np.flatnonzero(rows >= 0)
            if known.shape[0]:
                coll = np.maximum(book.aggregate(rows[known])[:, OUT_COLLATERAL], 0.0)
                start[known] += np.floor(coll * _MICRO).astype(np.int64)
        self.wallet_start: Int64Array1D = np.floor(
            start.astype(np.float64) * spec.wallet_multiple).astype(np.int64)
        self.wallet: Int64Array1D = self.wallet_start.copy()
        self.due: dict[str, Int64Array1D] = {v: np.full(self.n, _NEVER, dtype=np.int64)
                                             for v in steps}
        self.amount: dict[str, Int64Array1D] = {v: np.zeros(self.n, dtype=np.int64)
                                                for v in steps}
        self.requested = 0
        self.short = 0
        self.landed: dict[str, int] = dict.fromkeys(steps, 0)
        self.landed_usd: dict[str, float] = dict.fromkeys(steps, 0.0)

    def step(self, steps: Mapping[str, VenueStep]) -> None:
        """Ask the wallet for the venues' margin calls, then land the transfers due."""
        for v, s in steps.items():
            book = s.engine.book
            rows, due = self.rows[v], self.due[v]
            n_rows = len(book.rows)
            live = (rows >= 0) & (rows < n_rows)
            called = np.zeros(self.n, dtype=np.bool_)
            called[live] = book.warned[rows[live]]
            ask = np.flatnonzero(called & (due == _NEVER) & (self.wallet > 0))
            if ask.shape[0]:
                val = book.aggregate(rows[ask])
                mm, coll = val[:, OUT_MM], val[:, OUT_COLLATERAL]
                need_usd = np.where(mm > 0, mm / self.spec.target_margin_ratio - coll, 0.0)
                need = np.ceil(np.maximum(need_usd, 0.0) * _MICRO).astype(np.int64)
                pay = np.minimum(need, self.wallet[ask])
                go = pay > 0
                self.short += int(np.count_nonzero(need[go] > self.wallet[ask][go]))
                self.requested += int(np.count_nonzero(go))
                self.wallet[ask] -= pay
                due[ask[go]] = s.now_ms + self.spec.transfer_delay_ms
                self.amount[v][ask[go]] = pay[go]
            self._land(v, s)

    def _land(self, v: str, s: VenueStep) -> None:
        due = self.due[v]
        ready = np.flatnonzero(due <= s.now_ms)
        if ready.shape[0] == 0:
            return
        book = s.engine.book
        a = book.asset_index[s.settle]
        px, scale = float(book.asset_price[a]), int(book.asset_scale[a])
        dec = int(s.engine.venue.assets[s.settle].decimals)
        usd = self.amount[v][ready]
        due[ready] = _NEVER
        self.amount[v][ready] = 0
        quanta = np.floor(usd.astype(np.float64) / _MICRO / px * scale).astype(np.int64)
        for i, q, u in zip(ready.tolist(), quanta.tolist(), usd.tolist(), strict=True):
            if q <= 0:
                continue
            self.landed[v] += 1
            self.landed_usd[v] += u / _MICRO
            s.engine.apply(Deposit(id=f"link:traders:{v}:{i}:{s.k}",
                                   account=s.accounts[i], asset=s.settle,
                                   amount=Decimal(q).scaleb(-dec), ts_ms=s.now_ms))

    def metrics(self) -> dict[str, Any]:
        """What the shared traders did: how many, their wallets at the start and what is
        left (USD), the transfers asked for, those short of what was needed, and the
        transfers landed and their amount per venue."""
        return {"traders": self.n, "share": self.spec.share,
                "wallet_multiple": self.spec.wallet_multiple,
                "transfer_delay_ms": self.spec.transfer_delay_ms,
                "wallet_start": float(self.wallet_start.sum()) / _MICRO,
                "wallet_left": float(self.wallet.sum()) / _MICRO,
                "transfers": self.requested, "transfers_short": self.short,
                "landed": dict(self.landed), "landed_usd": dict(self.landed_usd)}


# ============================================================================ collateral


_PRICE_QUANTUM: Final = Decimal("1e-8")


class CollateralBook:
    """One venue's own spot book of one collateral asset (the collateral link).

    It holds the sold flow ``Q`` (units of the asset, sells negative) behind its impact,
    decaying with the half-life ``h`` (the book's resilience back toward its reference:
    ``Q <- Q 2^(-dt / h)``), and trades at ``P = R exp(b)`` with ``b = -Y sigma_daily
    sqrt(|Q| / V)`` (:func:`~solvency.sim.market.sqrt_impact`, the perp books' law;
    ``V`` the spec's daily volume times the venue's ``depth_scale``, ``sigma_daily =
    vol_annual / sqrt(365)``). ``R`` is the price the book would report without the
    sales: the scenario's ``[[collateral_reports]]`` path of the asset's book source at
    that time where it has one, else the price it reported at the start.
    """

    def __init__(self, spec: CollateralBookSpec, *, depth_scale: float, now_ms: int,
                 start_price: Decimal) -> None:
        self.spec = spec
        self.daily_volume = spec.daily_volume * depth_scale
        self.sigma_daily = spec.vol_annual / math.sqrt(DAYS_PER_YEAR)
        self.now_ms = now_ms
        self.start_price = start_price
        self.flow = 0.0
        self.sold = 0.0
        self.low: Decimal = start_price

    def sell(self, units: float) -> None:
        """Add a sale of ``units`` to the flow behind the impact (at the book's time)."""
        self.flow -= units
        self.sold += units

    def advance(self, now_ms: int) -> None:
        """Decay the flow to ``now_ms``."""
        dt = now_ms - self.now_ms
        if dt > 0:
            self.flow *= 2.0 ** (-dt / self.spec.half_life_ms)
            self.now_ms = now_ms

    def impact(self) -> float:
        """The book's log price impact ``b`` now."""
        return sqrt_impact(self.flow, daily_volume_base=self.daily_volume,
                           sigma_daily=self.sigma_daily, y=self.spec.impact_y)

    def price(self, reference: Decimal) -> Decimal:
        """``R exp(b)`` floored to 1e-8 (``R`` itself while the book holds no flow), and
        at least 1e-8: a book drained below one price quantum still prints (the engine
        refuses a price of 0, and a refused report would leave the holders valued at the
        last one, so the thinnest book would spiral least)."""
        b = self.impact()
        if b == 0.0:
            return reference
        return max(_PRICE_QUANTUM, (reference * Decimal(repr(math.exp(b)))).quantize(
            _PRICE_QUANTUM, rounding=ROUND_FLOOR))


class CollateralBooks:
    """The collateral link: each venue's own book of each collateral asset it values by
    rule from a ``book`` source, for the assets of ``[links.collateral]``.

    At the pause of every step, for each venue and asset: the units the venue's engine
    sold since the last pause (its auto-exchange on liquidations, at the previous step's
    time: :attr:`VenueStep.sales`) are sold into the venue's book, which then decays to
    the step's time; the book's price (:meth:`CollateralBook.price`) is what the asset's
    book source reports at this step (:attr:`VenueStep.book_prices`: the run applies it
    as an ``OracleReport`` through ``Engine.apply``, in place of the scenario's path of
    that source). Under a rule that weights its own book the report revalues every
    holder's collateral, which may liquidate more holders and sell more at the next
    step; under a rule with own-book weight 0 it moves the book, not the valuation. Each
    venue's sales move only that venue's books: nothing links the collateral books of
    different venues (docs/contagion.md says why).

    Parameters
    ----------
    specs : Mapping[str, CollateralBookSpec]
        ``[links.collateral]``: each asset's book.
    steps : Mapping[str, VenueStep]
        The venues at their first pause.
    depth_scale : Mapping[str, float]
        Each venue's ``depth_scale`` (1 where it has none).
    scenario : Scenario
        The scenario, whose ``[[collateral_reports]]`` give the books' reference.
    """

    def __init__(self, specs: Mapping[str, CollateralBookSpec],
                 steps: Mapping[str, VenueStep], depth_scale: Mapping[str, float],
                 scenario: Scenario) -> None:
        self.books: dict[tuple[str, str], CollateralBook] = {}
        self.source: dict[tuple[str, str], str] = {}
        self.paths = {(p.asset, p.source): p for p in scenario.collateral_reports}
        for v, s in steps.items():
            valuer = s.engine.collateral
            for asset, spec in specs.items():
                src = book_source(s.engine.venue, asset)
                if src is None:
                    continue
                a = s.engine.book.asset_index[asset]
                start = valuer.reports[a].get(src)
                if start is None:
                    continue  # nobody posts it here: no book price to start from
                self.books[(v, asset)] = CollateralBook(
                    spec, depth_scale=depth_scale.get(v, 1.0), now_ms=s.now_ms,
                    start_price=start[0])
                self.source[(v, asset)] = src

    def step(self, steps: Mapping[str, VenueStep]) -> None:
        """Sell each venue's sales into its books and set the prices they report."""
        for v, s in steps.items():
            for asset, units in s.sales:
                book = self.books.get((v, asset))
                if book is not None:
                    book.sell(units)
            for (name, asset), book in self.books.items():
                if name != v:
                    continue
                src = self.source[(v, asset)]
                if book.flow:
                    # the book right after the sales, before it recovers toward R
                    low = book.price(self._reference(book, asset, src, book.now_ms,
                                                     s.engine))
                    book.low = min(book.low, low)
                book.advance(s.now_ms)
                ref = self._reference(book, asset, src, s.now_ms, s.engine)
                s.book_prices[(asset, src)] = book.price(ref)

    def _reference(self, book: CollateralBook, asset: str, src: str, now_ms: int,
                   engine: Engine) -> Decimal:
        """``R``: the scenario's path of the source at ``now_ms`` (a relative path at the
        asset's redemption value in ``engine`` now), else the start price."""
        path = self.paths.get((asset, src))
        ref = path_price(engine, path, now_ms) if path is not None else None
        return book.start_price if ref is None else ref

    def metrics(self) -> dict[str, Any]:
        """Per venue and asset: the book's parameters, the units sold into it, its
        lowest price (right after a step's sales) and its price reference at the
        start."""
        out: dict[str, Any] = {}
        for (v, asset), book in sorted(self.books.items()):
            out.setdefault(v, {})[asset] = {
                "daily_volume": book.daily_volume, "vol_annual": book.spec.vol_annual,
                "impact_y": book.spec.impact_y, "half_life_ms": book.spec.half_life_ms,
                "sold_units": book.sold, "book_start": float(book.start_price),
                "book_low": float(book.low)}
        return out


# ============================================================================ runs


def run_linked(scenario: Scenario, runs: Mapping[str, tuple[Scenario, str | None]],
               links: Sequence[str], paths: Mapping[str, PathSet], *,
               progress: Progress | None = None,
               left_out: Mapping[str, tuple[Scenario, str | None]] | None = None,
               engines: dict[str, Engine] | None = None
               ) -> tuple[dict[str, RunResult], dict[str, Any]]:
    """Run named ``(scenario, preset)`` venues in lockstep on ``paths`` with ``links``;
    return each venue's result and the arbitrageurs' metrics (empty without the
    liquidity link). ``left_out``: the scenario's venues not in ``runs`` (a
    leave-one-out run); with the traders link their first step is loaded so that the
    shared traders and their wallets are those of the run with every venue. ``engines``,
    when given, gets each venue's engine (after the run: its state at the end, e.g. for
    per-account figures; scripts/depeg_rule.py)."""
    gens = {name: venue_steps(sc, venue=preset, paths=paths)
            for name, (sc, preset) in runs.items()}
    live: dict[str, VenueStep] = {}
    results: dict[str, RunResult] = {}
    for name, gen in gens.items():
        try:
            live[name] = next(gen)
        except StopIteration as done:
            results[name] = done.value
        else:
            if engines is not None:
                engines[name] = live[name].engine
    arbs = None
    traders = None
    if "traders" in links and live:
        tspec = scenario.links.traders
        if tspec is None:
            raise ScenarioError("links: the traders link needs [links.traders] with the "
                                "share and wallet (docs/contagion.md)")
        traders = SharedTraders(tspec, live, _first_steps(left_out or {}, paths))
    if "liquidity" in links:
        spec = scenario.links.liquidity
        if spec is None:
            raise ScenarioError("links: the liquidity link needs [links.liquidity] with "
                                "the arbitrageurs' capital (docs/contagion.md)")
        step_ms = next(iter(live.values())).step_ms if live else scenario.step_ms
        arbs = Arbitrageurs(spec, scenario.markets, step_ms)
    books = None
    if "collateral" in links and live:
        scale = {v.name: v.depth_scale or 1.0 for v in scenario.venues}
        books = CollateralBooks(scenario.links.collateral, live, scale, scenario)
    n = int(paths[scenario.markets[0]].ts_ms.shape[0])
    while live:
        if arbs is not None:
            arbs.step(live)
        if traders is not None:
            traders.step(live)
        if books is not None:
            books.step(live)
        k = next(iter(live.values())).k
        for name in list(live):
            try:
                live[name] = next(gens[name])
            except StopIteration as done:
                results[name] = done.value
                del live[name]
        if progress is not None:
            progress(k, n - 1)
    metrics: dict[str, Any] = {}
    if arbs is not None:
        metrics["arbitrage"] = arbs.metrics()
    if traders is not None:
        metrics["traders"] = traders.metrics()
    if books is not None:
        metrics["collateral"] = books.metrics()
    return {name: results[name] for name in runs}, metrics


def _first_steps(runs: Mapping[str, tuple[Scenario, str | None]],
                 paths: Mapping[str, PathSet]) -> dict[str, VenueStep]:
    """Each venue's first step (its population loaded), the run then dropped."""
    out = {}
    for name, (sc, preset) in runs.items():
        gen = venue_steps(sc, venue=preset, paths=paths)
        try:
            out[name] = next(gen)
        except StopIteration:
            continue
        gen.close()
    return out


def _linked_task(scenario: Scenario, runs: Mapping[str, tuple[Scenario, str | None]],
                 links: Sequence[str], paths: Mapping[str, PathSet],
                 left_out: Mapping[str, tuple[Scenario, str | None]]
                 ) -> tuple[dict[str, RunResult], dict[str, Any]]:
    return run_linked(scenario, runs, links, paths, left_out=left_out)


def run_venues(scenario: Scenario, *, links: Sequence[str] = (), jobs: int = 1,
               progress: Progress | None = None) -> MultiVenueResult:
    """Run the scenario's ``[[venues]]`` on one path and one clock.

    Parameters
    ----------
    scenario : Scenario
        A scenario with ``venues``.
    links : Sequence[str]
        The links between venues (``()``: none; :data:`MODELLED`).
    jobs : int
        Processes to run the venues in (as ``simulate --compare``: the same results). With
        links, the linked run is one process beside the venues' runs alone.
    progress : Progress or None
        Called with ``(done, total)`` points.

    Raises
    ------
    ScenarioError
        If the scenario lists no venues, a link is not modelled, or a link's parameters
        are missing.
    """
    if not scenario.venues:
        raise ScenarioError("the scenario lists no [[venues]]")
    links = check_links(list(links), "links")
    if "liquidity" in links and scenario.links.liquidity is None:
        raise ScenarioError("links: the liquidity link needs [links.liquidity] with the "
                            "arbitrageurs' capital (docs/contagion.md)")
    if "traders" in links and scenario.links.traders is None:
        raise ScenarioError("links: the traders link needs [links.traders] with the "
                            "share and wallet (docs/contagion.md)")
    runs = {v.name: (v.scenario_of(scenario), v.run_preset) for v in scenario.venues}
    if "collateral" in links:
        _check_collateral_books(scenario, runs)
    if not links:
        # one path set for every venue, built once from the scenario's seeds
        venues = run_named(scenario, runs, jobs=jobs, progress=progress)
        # no link: nothing one venue does reaches another, so each venue's run with the
        # links is its run alone (the same result, not a second computation)
        return MultiVenueResult(links=(), venues=venues, isolated=dict(venues))
    for sc, preset in runs.values():
        sc.venue(preset)
    paths = build_paths(scenario)
    # the linked run, one leave-one-out run per venue (with two venues and only the
    # liquidity link each of those is the other venue alone: not run twice) and each
    # venue alone
    # (each venue alone runs with no link: its single-venue run)
    tasks: dict[str, tuple[Mapping[str, tuple[Scenario, str | None]], Sequence[str]]] = {
        "": (runs, links)}
    for name in runs:
        rest = {k: v for k, v in runs.items() if k != name}
        # the collateral and traders links act within one venue too (its sales move its
        # own book; its traders' calls draw on their wallets): a venue left on its own
        # still runs with them, its own spiral and wallets no one else's spillover
        if len(rest) > 1 or (rest and {"collateral", "traders"} & set(links)):
            tasks[name] = (rest, links)
    for name, run in runs.items():
        tasks[f"alone:{name}"] = ({name: run}, ())
    done: dict[str, tuple[dict[str, RunResult], dict[str, Any]]] = {}
    # a leave-one-out run keeps the shared traders and wallets of the run with every venue
    out_of = {key: {k: v for k, v in runs.items() if k not in task}
              for key, (task, _) in tasks.items()}
    if jobs <= 1:
        for key, (task, task_links) in tasks.items():
            done[key] = run_linked(scenario, task, task_links, paths,
                                   progress=progress if key == "" else None,
                                   left_out=out_of[key])
    else:
        ctx = get_context("spawn")  # as run.py and sweep.py: the parent may hold threads
        with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=ctx) as pool:
            futures = {key: pool.submit(_linked_task, scenario, task, task_links, paths,
                                        out_of[key])
                       for key, (task, task_links) in tasks.items()}
            done = {key: fut.result() for key, fut in futures.items()}
    alone = {name: done[f"alone:{name}"][0][name] for name in runs}
    without = {name: done[name][0] if name in done else {
        k: alone[k] for k in runs if k != name} for name in runs}
    linked, link_metrics = done[""]
    return MultiVenueResult(links=tuple(links), venues=linked, isolated=alone,
                            arbitrage=link_metrics.get("arbitrage", {}),
                            traders=link_metrics.get("traders", {}),
                            collateral=link_metrics.get("collateral", {}), without=without,
                            without_links={name: done[name][1] if name in done else {}
                                           for name in runs})


def _check_collateral_books(scenario: Scenario,
                            runs: Mapping[str, tuple[Scenario, str | None]]) -> None:
    """The collateral link needs a book for every asset the population posts that a venue
    values by rule from its own book."""
    posted = set(scenario.population.collateral_mix)
    for name, (sc, preset) in runs.items():
        venue = sc.venue(preset)
        for asset in sorted(posted - set(scenario.links.collateral)):
            if book_source(venue, asset) is not None:
                raise ScenarioError(
                    f"links: the collateral link needs [links.collateral.{asset}] (the "
                    f"population posts {asset}, valued from its own book on {name}; "
                    "docs/contagion.md)")


def basis_bps(result: RunResult) -> dict[str, list[float]]:
    """A venue's basis over time: its books' trade price against the index, in bps, per
    market (the series' ``trade / index - 1``)."""
    s = result.series
    return {m: [round((t / i - 1.0) * 1e4, 6) if i > 0 else 0.0
                for t, i in zip(s.trade[m].tolist(), s.index[m].tolist(), strict=True)]
            for m in s.index}
