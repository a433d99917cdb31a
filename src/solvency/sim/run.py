"""Run a scenario through the real engine: paths -> impact -> marks -> ``Engine.apply``.

Nothing here computes margin or liquidations: the engine does, with
:class:`~solvency.sim.market.ImpactLiquidity` as its liquidity port. A run:

1. builds the venue, the paths (:meth:`Scenario.path_specs`), the population at the
   paths' start prices (:func:`generate_population`) and the liquidity model;
2. creates ``Engine(venue, liquidity=model)``, deposits the insurance fund's capital to
   ``__insurance__`` and loads the population (:func:`load_population`);
3. tops up accounts that start below initial margin to exactly their initial margin (no
   venue lets a position open beyond its tier's leverage; the count is reported as
   ``topped_up_accounts``), so an unchanged price liquidates nobody;
4. at each path point: ``model.advance(ts, realized_vol)`` (rolling realized volatility of
   the path over ``vol_window`` steps), then per market the mark ``index x exp(w x
   impact)`` (``w`` the market's ``oracle_weight``) rounded half-even to the tick and
   applied as a ``Price`` event with ``ts``; out-events and engine state are recorded in
   a :class:`~solvency.sim.metrics.StepSeries`;
5. every ``verify_every`` steps and at the end runs ``Engine.verify()`` (conservation,
   balanced open interest) and the no-position immunity check (a cross account that holds
   no position has not lost a quantum since the last check), and checks at every step
   that the fund is not negative. A violation stops the run and is reported
   (``conserved: false``, ``violation``).

Results depend only on the scenario and its seeds: Monte Carlo path ``i`` uses the
market seed ``seeds.market + i`` and the same population.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from multiprocessing import get_context
from queue import Empty
from typing import Any

import numpy as np

from solvency.adapters.ohlcv import OhlcvError
from solvency.core.ledger.ledger import INSURANCE
from solvency.core.margin.kernels import (
    MKI_SETTLE,
    OUT_COLLATERAL,
    OUT_EQUITY,
    OUT_IM,
    OUT_MM,
    S_MARKET,
    S_ROW,
    S_VALUE,
)
from solvency.core.model.events import Deposit, Price
from solvency.core.model.venue import Venue
from solvency.core.oracle import OracleReport
from solvency.core.typing import Float64Array1D
from solvency.core.units import PPM
from solvency.engine.breakers import STATES
from solvency.engine.engine import Engine, EngineError
from solvency.engine.liquidation import BAD_DEBT, INSURANCE_ROW, LIQUIDATOR
from solvency.engine.summary import liquidations_at_risk
from solvency.sim.agents import Agents
from solvency.sim.market import ImpactLiquidity
from solvency.sim.metrics import StepSeries, bad_debt_var, flatten, summarize, summarize_paths
from solvency.sim.option_hedge import OptionHedger
from solvency.sim.option_holders import (
    OptionHolders,
    OptionVols,
    OptionWatch,
    draw_option_holders,
    holder_sides,
    load_option_holders,
    option_series,
)
from solvency.sim.oracle_feed import OracleFeed
from solvency.sim.paths import MS_PER_YEAR, PathSet, ReplaySpec, simulate_assets
from solvency.sim.population import Population, generate_population, load_population
from solvency.sim.scenario import CollateralPath, Scenario, ScenarioError

__all__ = [
    "MonteCarloResult",
    "Progress",
    "RunResult",
    "VenueStep",
    "build_paths",
    "path_price",
    "realized_vol",
    "redemption_multiple",
    "run_compare",
    "run_monte_carlo",
    "run_named",
    "run_scenario",
    "venue_steps",
]

Progress = Callable[[int, int], None]
"""Progress callback: ``(points done, points in total)``."""

_SEVERITY: dict[str, int] = {str(s): i for i, s in enumerate(STATES)}


@dataclass(frozen=True, slots=True)
class RunResult:
    """One run: its summary metrics, per-step series and engine counters.

    Attributes
    ----------
    scenario : str
        Scenario name.
    venue : str
        Venue name.
    seed_market, seed_population : int
        Seeds used.
    metrics : dict
        :func:`solvency.sim.metrics.summarize` plus run facts (accounts, steps, wall
        time, engine counters, ``violation``).
    series : StepSeries
        Per-point series (the report's charts).
    """

    scenario: str
    venue: str
    seed_market: int
    seed_population: int
    metrics: dict[str, Any]
    series: StepSeries


@dataclass(frozen=True, slots=True)
class MonteCarloResult:
    """Monte Carlo over market seeds: each path's metrics and the bad-debt VaR.

    Attributes
    ----------
    runs : list of RunResult
        One per path, in seed order.
    summary : dict
        Every metric of a run, each the mean over paths
        (:func:`solvency.sim.metrics.summarize_paths`; ``seed_market``: the list of
        seeds), ``quantiles`` (5 ... 95 % of each numeric metric over paths), ``per_path``
        (each path's metrics, dotted keys: the columns of a sweep's CSV), ``paths``,
        ``statistic`` and the bad-debt VaR and ES (``var95_bad_debt``, ``var99_bad_debt``,
        ``es95_bad_debt``, ``es99_bad_debt``, ``mean_bad_debt``, ``max_bad_debt``,
        ``p_bad_debt``: :func:`solvency.sim.metrics.bad_debt_var`).
    """

    runs: list[RunResult]
    summary: dict[str, Any]


# ============================================================================ paths


def _follow(lead: PathSet, s0: float) -> PathSet:
    prices = lead.prices / lead.prices[:, :1] * s0
    return PathSet(ts_ms=lead.ts_ms, prices=prices)


def _replay_window(spec: ReplaySpec, scenario: Scenario) -> ReplaySpec:
    # a --prices replay keeps the scenario's window when the file covers it
    return replace(spec, start_ms=scenario.start_ms,
                   end_ms=scenario.start_ms + scenario.horizon_ms)


def build_paths(scenario: Scenario, *, seed: int | None = None) -> dict[str, PathSet]:
    """Return one path per market of ``scenario`` (seed ``seeds.market`` by default).

    With a ``--prices`` override, markets without their own file follow the first
    file's relative moves from their scenario ``start_price`` (beta 1).

    Raises
    ------
    ScenarioError
        If a data file is missing or unreadable, or the models reject their inputs.
    """
    specs = scenario.path_specs()
    rng = scenario.seed_market if seed is None else seed
    try:
        if scenario.prices_override:
            return _override_paths(scenario, specs)
        return simulate_assets(specs, 1, rng, scenario.correlation)
    except (OhlcvError, ValueError, OSError) as exc:
        if isinstance(exc, ScenarioError):
            raise
        raise ScenarioError(f"paths: {exc}") from None


def _override_paths(scenario: Scenario, specs: Mapping[str, Any]) -> dict[str, PathSet]:
    windowed = {m: _replay_window(s, scenario) for m, s in specs.items()
                if isinstance(s, ReplaySpec)}
    try:
        got = simulate_assets(windowed, 1, 0)
    except ValueError:
        got = simulate_assets(specs, 1, 0)  # the file does not cover the scenario's window
    lead = got[next(iter(got))]
    out: dict[str, PathSet] = {}
    for m in scenario.markets:
        if m in got:
            out[m] = got[m]
            continue
        s0 = scenario.market_params[m].get("start_price")
        if not isinstance(s0, int | float) or s0 <= 0:
            raise ScenarioError(f"--prices: market {m} has no file and no start_price to "
                                "follow the first file from")
        out[m] = _follow(lead, float(s0))
    return out


def realized_vol(ts_ms: np.ndarray, prices: Float64Array1D, window: int) -> Float64Array1D:
    """Return the annualized realized volatility at each point from the last ``window``
    log returns: ``sqrt(sum r^2 / sum dt)`` with ``dt`` in years (0 at point 0)."""
    r2 = np.concatenate([[0.0], np.diff(np.log(prices)) ** 2])
    dt = np.concatenate([[0.0], np.diff(ts_ms).astype(np.float64) / MS_PER_YEAR])
    c_r = np.cumsum(r2)
    c_t = np.cumsum(dt)
    k = np.arange(r2.shape[0])
    lo = np.maximum(k - window, 0)
    num = c_r - c_r[lo]
    den = c_t - c_t[lo]
    with np.errstate(divide="ignore", invalid="ignore"):
        vol: Float64Array1D = np.where(den > 0, np.sqrt(num / den), 0.0)
    return vol


# ============================================================================ one run


class _Waits:
    """Each account's waits for liquidation, read from the out-events.

    A wait starts at the step an account is first found below maintenance (its first
    liquidation, or a sweep that left it waiting with nobody to take it: an
    ``unresolved`` liquidation) and lasts while every step names it again, by a
    liquidation or by ending with it among the engine's waiting rows
    (``Liquidator.deficit_rows``); a step without either means it was back above
    maintenance or flat. The time to liquidate of a wait is from its first step to the
    step of its last executed liquidation; a wait without one (back above maintenance, or
    still waiting at the end) is counted apart.
    """

    def __init__(self) -> None:
        # account -> [first ms, last step seen, last executed liquidation ms or -1]
        self.open: dict[str, list[int]] = {}
        self.spans_s: list[float] = []
        self.unliquidated = 0

    def seen(self, account: str, k: int, t_ms: int, *, executed: bool) -> None:
        """Note a liquidation out-event naming ``account`` at step ``k`` (time ``t_ms``)."""
        w = self.open.get(account)
        if w is None or w[1] < k - 1:
            if w is not None:
                self._close(w)
            w = self.open[account] = [t_ms, k, -1]
        w[1] = k
        if executed:
            w[2] = t_ms

    def _close(self, w: list[int]) -> None:
        if w[2] >= 0:
            self.spans_s.append((w[2] - w[0]) / 1000.0)
        else:
            self.unliquidated += 1

    def finish(self) -> tuple[list[float], int]:
        """Close the open waits; return the times to liquidate (s) and the count of
        waits that ended without a liquidation."""
        for w in self.open.values():
            self._close(w)
        self.open = {}
        return self.spans_s, self.unliquidated


class _Recorder:
    """Reads out-events and engine state into the series, one point at a time."""

    def __init__(self, engine: Engine, pop: Population, series: StepSeries,
                 settle: str, agent_accounts: Sequence[str] = ()) -> None:
        self.engine = engine
        self.series = series
        # the lab's own agent accounts: their liquidations are counted apart from the
        # population's (metrics: agents_liquidated_notional)
        self.agent_liq = {a: np.zeros(series.ts_ms.shape[0], dtype=np.float64)
                          for a in agent_accounts}
        series.agent_liq_notional = self.agent_liq
        self.settle = settle
        self.scale: int = 10 ** int(engine.venue.assets[settle].decimals)
        self.markets = tuple(series.index)
        self.m_idx = {m: engine.book.market_index[m] for m in self.markets}
        # sign of each (row name, market): sides never flip in a run (only liquidations
        # and ADL trade, and both only reduce)
        self.side: dict[tuple[str, str], int] = {}
        for a, mk, lots in zip(pop.pos_account.tolist(), pop.pos_market.tolist(),
                               pop.pos_lots.tolist(), strict=True):
            name = pop.accounts[a]
            market = pop.markets[mk]
            sign = 1 if lots > 0 else -1
            self.side[(name, market)] = sign
            self.side[(f"{name}/{market}", market)] = sign
        self.liquidated_rows: set[str] = set()
        self.asset = engine.book.asset_index[settle]
        # the ADL overshoot's reference, read at each step's start (begin_step): what the
        # venue's rule lets the fund absorb, and the ADL haircut and notional of the step
        # per (market, side of the liquidated position)
        self.absorbable = 0.0
        self.room: dict[tuple[str, int], float] = {}
        self.step_haircut: dict[tuple[str, int], float] = {}
        self.step_adl: dict[tuple[str, int], float] = {}
        self.step_taken: dict[tuple[str, int], float] = {}
        # a dynamic liquidation fee's effects (issue 19), only where the policy has one:
        # the presets' metrics keep their keys
        self.fees = engine.liquidator.policy.dynamic_fee is not None
        self.penalties = 0.0
        self.fee_ppm_max = 0
        self.fee_ppm_sum = 0
        self.fee_count = 0
        self.waiting_max = 0
        self.waits = _Waits()
        self.socialized = 0.0
        self.options: OptionWatch | None = None  # set when the population writes options
        # collateral valued by rule (only where the venue has some): what the engine
        # sold of it (units, USD at the rule's price) and the sales since the last pause
        # (the collateral link's book takes them), and the liquidations in the
        # out-events of a collateral asset's reports
        self.valued = bool(engine.collateral)
        self.sales: list[tuple[str, float]] = []
        self.sold: dict[str, list[float]] = {}
        self.revaluation_liquidations = 0
        self.revaluation_rows: set[str] = set()
        self.rejected_reports: dict[str, int] = {}  # refused collateral reports by reason

    def fund(self) -> float:
        return float(self.engine.ledger.balance(INSURANCE, self.settle)) / self.scale

    def begin_step(self) -> None:
        """Read what the venue's rule lets the fund absorb now, for the ADL overshoot:
        its counted capacity (``policy.fund_capacity``: cash, equity or equity at depth)
        above the ADL threshold, and, where the fund takes positions over within a
        position cap (Binance: net notional at most 100 % of the fund per market), the
        notional each market and side may still take (a side that reduces the fund's
        position is unlimited)."""
        liq = self.engine.liquidator
        p = liq.policy
        capacity = liq.fund_capacity_now_quanta(self.asset)
        self.absorbable = max(0, capacity - p.adl_fund_threshold_quanta) / self.scale
        self.room = {}
        holds = p.fund_takeover or (p.backstop and p.backstop_is_fund)
        if holds and p.fund_position_cap_ppm:
            book = self.engine.book
            cap = max(capacity, 0) * p.fund_position_cap_ppm / PPM / self.scale
            r = book.row_index.get(INSURANCE_ROW)
            for m in self.markets:
                slot = book.slot_of(r, self.m_idx[m]) if r is not None else -1
                held = float(book.st[slot, S_VALUE]) / self.scale if slot >= 0 else 0.0
                for side in (1, -1):
                    self.room[(m, side)] = (math.inf if side * held < 0
                                            else max(0.0, cap - abs(held)))
        self.step_haircut = {}
        self.step_adl = {}
        self.step_taken = {}

    def end_step(self, k: int) -> None:
        """The step's ADL overshoot: the part of its haircut the fund could have absorbed
        under the venue's rule, ``min(C, sum over (market, side) of H x min(1, R / N))``
        with ``C`` the absorbable capacity at the step's start, ``H`` and ``N`` the
        step's ADL haircut and notional there and ``R`` the notional the position cap
        still allowed there (unlimited without a cap) less what the fund took over
        there in the step."""
        could = 0.0
        for key, h in self.step_haircut.items():
            n = self.step_adl.get(key, 0.0)
            room = max(0.0, self.room.get(key, math.inf) - self.step_taken.get(key, 0.0))
            could += h if n <= 0 or room >= n else h * room / n
        self.series.adl_overshoot[k] += min(could, self.absorbable)

    def events(self, k: int, out: Sequence[Any]) -> None:
        s = self.series
        book = self.engine.book
        haircut = 0.0
        if self.options is not None:
            for e in out:
                self.options.event(e)
        for e in out:
            kind = e.type
            if kind == "liquidation":
                if e.via == "unresolved" and self.fees:
                    # below maintenance and nobody took it: it waits
                    self.waits.seen(e.account, k, int(s.ts_ms[k]), executed=False)
                    self.waiting_max = max(self.waiting_max, self.engine.liquidator.waiting)
                if e.via == "unresolved" or not e.price:
                    continue
                s.liq_count[k] += 1
                agent = self.agent_liq.get(e.account)
                if agent is not None:
                    agent[k] += float(e.size) * float(e.price)
                else:
                    s.liq_notional[k] += float(e.size) * float(e.price)
                    if self.side.get((e.account, e.market), 0) > 0:
                        s.liq_notional_long[k] += float(e.size) * float(e.price)
                    if e.market in s.liq_notional_market:
                        s.liq_notional_market[e.market][k] += (float(e.size)
                                                               * float(e.price))
                self.liquidated_rows.add(e.account)
                if self.fees:
                    self._fee_event(k, e)
                if e.via in ("insurance_fund", "backstop"):
                    key = (e.market, self.side.get((e.account, e.market), 0))
                    self.step_taken[key] = (self.step_taken.get(key, 0.0)
                                            + float(e.size) * float(e.price))
            elif kind == "adl":
                size, price = float(e.size), float(e.price)
                s.adl_count[k] += 1
                s.adl_notional[k] += size * price
                if e.market in s.adl_notional_market:
                    s.adl_notional_market[e.market][k] += size * price
                cp_side = -self.side.get((e.account, e.market), 0)
                mark = float(book.mk[book.market_index[e.market], 3])  # the mark now
                h = max(0.0, cp_side * (mark - price) * size)
                haircut += h
                key = (e.market, -cp_side)  # the liquidated position's side
                self.step_haircut[key] = self.step_haircut.get(key, 0.0) + h
                self.step_adl[key] = self.step_adl.get(key, 0.0) + size * price
            elif kind == "socialized_loss" and self.fees and e.account == "*":
                self.socialized += float(e.covered)  # charged to the others at a sweep's end
            elif kind == "collateral_exchanged":
                units = float(e.amount)
                self.sales.append((e.asset, units))
                got = self.sold.setdefault(e.asset, [0.0, 0.0])
                got[0] += units
                got[1] += units * float(e.price)
        s.adl_haircut[k] += haircut

    def revaluation(self, out: Sequence[Any]) -> bool:
        """Count the executed liquidations in a collateral report's out-events (their
        trigger: that asset's new price under the venue's rule) and the accounts they,
        or an ADL closing a liquidated account's position, name; and a report the engine
        refused (by reason). False if it was refused."""
        for e in out:
            if e.type == "rejected":
                self.rejected_reports[e.reason] = self.rejected_reports.get(e.reason, 0) + 1
                return False
            if e.type == "liquidation" and e.via != "unresolved" and e.price:
                self.revaluation_liquidations += 1
                self.revaluation_rows.add(e.account)
            elif e.type == "adl":
                self.revaluation_rows.add(e.account)
        return True

    def take_sales(self) -> list[tuple[str, float]]:
        """The collateral sales (asset, units) since the last call."""
        sales, self.sales = self.sales, []
        return sales

    def collateral_metrics(self) -> dict[str, Any]:
        """Collateral valued by rule: units and USD (at the rule's price) the engine's
        auto-exchange sold per asset, and the liquidations (and accounts) in the
        out-events of a collateral asset's price reports, and the reports the engine
        refused (reason -> count: a modelling failure, never noise)."""
        return {"sold": {a: {"units": u, "usd": usd} for a, (u, usd) in sorted(
                    self.sold.items())},
                "revaluation_liquidations": self.revaluation_liquidations,
                "revaluation_accounts": len(self.revaluation_rows),
                "rejected_reports": dict(sorted(self.rejected_reports.items()))}

    def _fee_event(self, k: int, e: Any) -> None:
        """Note a liquidation's penalty, the fee in force and its account's times."""
        liq = self.engine.liquidator
        self.penalties += float(e.penalty)
        fee = liq.liquidator_fee_ppm_now(self.engine.book.market_index[e.market])
        self.fee_ppm_max = max(self.fee_ppm_max, fee)
        self.fee_ppm_sum += fee
        self.fee_count += 1
        self.waiting_max = max(self.waiting_max, liq.waiting)
        self.waits.seen(e.account, k, int(self.series.ts_ms[k]), executed=True)

    def fee_metrics(self) -> dict[str, Any]:
        """The dynamic fee's run metrics: penalties paid by the liquidated accounts, the
        liquidators' share of them, the fee in force (largest, mean over liquidation
        events), the most liquidations waiting at a sweep's start, the time to liquidate
        and the waits that ended without one (:class:`_Waits`), the accounts still waiting
        at the end, and the losses charged to the other participants (socialized)."""
        spans, unliquidated = self.waits.finish()
        rewards = self.engine.ledger.balance(LIQUIDATOR, self.settle) / self.scale
        return {"penalties_paid": self.penalties, "liquidator_rewards": rewards,
                "fee_ppm_max": self.fee_ppm_max,
                "fee_ppm_mean": self.fee_ppm_sum / self.fee_count if self.fee_count else 0.0,
                "waiting_max": self.waiting_max,
                "time_to_liquidate_mean_s": float(np.mean(spans)) if spans else 0.0,
                "time_to_liquidate_p99_s": (float(np.percentile(spans, 99, method="higher"))
                                            if spans else 0.0),
                "time_to_liquidate_max_s": max(spans) if spans else 0.0,
                "waits_not_liquidated": unliquidated,
                "waiting_at_end": len(self.engine.liquidator.deficit_rows),
                "socialized_loss": self.socialized}

    def state(self, k: int, liq: ImpactLiquidity, index: Mapping[str, float]) -> None:
        eng, s, book = self.engine, self.series, self.engine.book
        if self.fees and eng.liquidator.deficit_rows:
            # still below maintenance at the step's end, waiting: their waits go on
            t = int(s.ts_ms[k])
            for r in eng.liquidator.deficit_rows:
                self.waits.seen(book.rows[r].name, k, t, executed=False)
        n_rows = len(book.rows)
        live = ~book.row_system[:n_rows] & (book.row_nslots[:n_rows] > 0)
        s.at_risk[k] = int(np.count_nonzero(book.warned[:n_rows] & live))
        s.insurance_fund[k] = self.fund()
        s.bad_debt[k] = -eng.ledger.balance(BAD_DEBT, self.settle) / self.scale
        a = book.asset_index[self.settle]
        cash, paid, held = eng.liquidator.fund_equity_quanta(a)
        s.insurance_fund_equity[k] = (cash + paid + held) / self.scale
        r_ins = book.row_index.get(INSURANCE_ROW)
        if r_ins is not None:
            slots = np.array(book.row_slots(r_ins), dtype=np.int64)
            s.insurance_fund_positions[k] = float(
                np.abs(book.st[slots, S_VALUE]).sum()) / self.scale if slots.shape[0] else 0.0
        s.insurance_fund_unwind_pnl[k] = eng.realized.get(INSURANCE_ROW, 0) / self.scale
        im_total = notional_total = 0.0
        for m in self.markets:
            mi = self.m_idx[m]
            # the sums the market's re-mark took of its holders when nothing changed
            # their quanta since, else one pass over the holders' slots
            notional_q, im_q, mm_q, notional_all_q = book.holder_totals(mi)
            notional, im, mm = float(notional_q), float(im_q), float(mm_q)
            s.mm_rate[m][k] = mm / notional if notional > 0 else 0.0
            s.im_rate[m][k] = im / notional if notional > 0 else 0.0
            im_total += im / self.scale
            notional_total += notional / self.scale
            if m in s.notional_market:
                s.notional_market[m][k] = notional / self.scale
            if k == 0:
                # one side of the venue's open interest: every holder, the street included
                s.open_interest_start[m] = float(notional_all_q) / 2.0 / self.scale
            s.index[m][k] = index[m]
            priced = m in liq.specs
            s.trade[m][k] = liq.trade_price(m, index[m]) if priced else index[m]
            s.depth_factor[m][k] = liq.depth_factor(m) if priced else 1.0
            s.breaker[m][k] = _SEVERITY.get(str(eng.feeds.breakers.state(m)), 0)
        s.im_locked[k] = im_total
        s.notional[k] = notional_total


LIQUIDATION_MAP_SHOCKS: tuple[float, ...] = (
    -0.30, -0.25, -0.20, -0.18, -0.16, -0.14, -0.12, -0.10, -0.08, -0.06, -0.04, -0.02,
    0.02, 0.04, 0.06, 0.08, 0.10, 0.12, 0.14, 0.16, 0.18, 0.20, 0.25, 0.30)
"""Moves of every mark at once in the liquidation map a run records at its start."""


def _rows_snapshot(engine: Engine) -> dict[str, Any]:
    """Every user row holding a position, read from the book (nothing recomputed): its
    name, margin ratio (maintenance margin / collateral, the liquidator's trigger at 1;
    ``inf`` without positive collateral) and leverage (gross notional / equity, ``inf``
    without positive equity), all in USD as :meth:`Book.aggregate` values them."""
    book = engine.book
    n = len(book.rows)
    rows = np.flatnonzero(~book.row_system[:n] & (book.row_nslots[:n] > 0))
    out = book.aggregate(rows)
    live = np.flatnonzero(book.st[: book.n_slots, S_ROW] >= 0)
    a = book.mki[book.st[live, S_MARKET], MKI_SETTLE]
    usd = np.abs(book.st[live, S_VALUE]) / book.ascale[a] * book.asset_price[a]
    notional = np.bincount(book.st[live, S_ROW], weights=usd, minlength=n)[rows]
    coll, eq = out[:, OUT_COLLATERAL], out[:, OUT_EQUITY]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(coll > 0, out[:, OUT_MM] / coll, np.inf)
        lev = np.where(eq > 0, notional / eq, np.inf)
    return {"rows": [book.rows[int(r)].name for r in rows], "margin_ratio": ratio,
            "leverage": lev, "notional": notional}


def _who_was_hit(start: dict[str, Any], low: dict[str, Any] | None, low_ms: int,
                 liquidated: set[str], liq_map: list[dict[str, Any]]) -> dict[str, Any]:
    hit = np.array([r in liquidated for r in start["rows"]], dtype=np.bool_)
    return {"rows": start["rows"], "margin_ratio_start": start["margin_ratio"],
            "margin_ratio_low": (low or start)["margin_ratio"], "low_ms": low_ms,
            "leverage_start": start["leverage"], "liquidated": hit,
            "notional_start": start["notional"],
            "liquidation_map": [{"shock": s, **{k: v for k, v in row.items()
                                                if k != "shock"}}
                                for s, row in zip(LIQUIDATION_MAP_SHOCKS, liq_map,
                                                  strict=True)]}


def _reads(venue: Venue, path: CollateralPath) -> bool:
    """Whether ``venue`` values ``path.asset`` by a rule with the path's source."""
    asset = venue.assets.get(path.asset)
    rule = None if asset is None else asset.valuation
    return rule is not None and any(x.source == path.source for x in rule.sources)


def path_price(engine: Engine, path: CollateralPath, now_ms: int) -> Decimal | None:
    """A collateral path's price at ``now_ms`` in USD: a relative path's multiple times
    the asset's redemption value in ``engine`` now (:func:`redemption_multiple`)."""
    value = path.price(now_ms)
    if value is not None and path.relative:
        return redemption_multiple(engine, path.asset, value)
    return value


def redemption_multiple(engine: Engine, asset: str, multiple: Decimal) -> Decimal | None:
    """``multiple`` x ``asset``'s redemption value now: its rule's redemption sources
    (rate x the underlying's price in the engine; their mean) at the step's start (the
    underlying's last mark or report), floored to 1e-8; None while the underlying has no
    price."""
    rule = engine.venue.assets[asset].valuation
    assert rule is not None
    num = Decimal(0)
    den = Decimal(0)
    book = engine.book
    for src in rule.sources:
        if src.kind != "redemption" or src.rate is None or src.underlying is None:
            continue
        px = book.asset_price_exact[book.asset_index[src.underlying]]
        if px is None:
            return None
        num += src.rate * px
        den += 1
    if den == 0:
        return None
    return (multiple * num / den).quantize(Decimal("1e-8"), rounding=ROUND_FLOOR)


def _tick_round(price: float, tick: Decimal) -> Decimal:
    steps = (Decimal(repr(price)) / tick).to_integral_value(ROUND_HALF_EVEN)
    return max(steps, Decimal(1)) * tick


def _settle(venue: Venue, markets: Sequence[str]) -> str:
    settles = {venue.markets[m].settle for m in markets}
    if len(settles) != 1:
        raise ScenarioError(f"markets must share one settlement asset, got {sorted(settles)}")
    return settles.pop()


def _top_up(engine: Engine, settle: str) -> int:
    """Deposit to every user row below initial margin what lifts it to it (rounded up)."""
    book = engine.book
    n = len(book.rows)
    rows = np.flatnonzero(~book.row_system[:n] & (book.row_nslots[:n] > 0))
    if rows.shape[0] == 0:
        return 0
    out = book.aggregate(rows)
    short = out[:, OUT_IM] - out[:, OUT_COLLATERAL]
    need = np.flatnonzero(short > 0)
    dec = engine.venue.assets[settle].decimals
    for i in need.tolist():
        info = book.rows[int(rows[i])]
        if info.market >= 0:
            continue  # isolated rows: margin moves between rows, keep them as drawn
        quanta = math.ceil(float(short[i]) * 10**dec) + 1
        engine.apply(Deposit(id=f"topup:{info.account}", account=info.account,
                             asset=settle, amount=Decimal(quanta).scaleb(-dec)))
    return int(need.shape[0])


def _option_book(scenario: Scenario, preset: str | None, step_ms: int, pop: Population,
                 start_ms: int, end_ms: int) -> tuple[Venue, OptionHolders]:
    """List the scenario's option series on its venue and draw their writers."""
    o = scenario.options
    assert o is not None
    base = scenario.venue(preset, step_ms=step_ms)
    under = base.markets[o.underlying]
    if min(o.expiries_ms) + start_ms <= end_ms:
        raise ScenarioError("population.options.expiries: every expiry must be after the "
                            "run's end (settlement inside a run is not modelled)")
    try:
        listing = option_series(o, under, pop.marks[o.underlying], start_ms)
        v = scenario.venue(preset, step_ms=step_ms, listing=listing)
        return v, draw_option_holders(o, v, pop, listing, start_ms)
    except ValueError as exc:
        if isinstance(exc, ScenarioError):
            raise
        raise ScenarioError(f"population.options.{exc}") from None


class _FlatWatch:
    """No-position immunity: a user row that holds no position is never charged (ADL,
    socialized losses and funding only touch positions), so from one check to the next
    its balances never fall while it stays flat (deposits may raise them).

    ``traded`` (the crew's :attr:`Agents.traded`) names the accounts a fill named since
    the last check, which it clears: such a row was not flat all along even when it is
    flat at both checks (it opened a position and closed it, or was liquidated, in
    between: its trading loss is no charge). Without it every row flat at two checks is
    taken as flat in between."""

    def __init__(self, engine: Engine, traded: set[str] | None = None) -> None:
        self.engine = engine
        self.traded = traded
        self.rows = np.zeros(0, dtype=np.int64)
        self.balances = np.zeros((0, 0), dtype=np.int64)

    def check(self) -> str:
        book = self.engine.book
        n = len(book.rows)
        n_a = len(book.asset_names)
        still = self.rows[book.row_nslots[self.rows] == 0] if self.rows.shape[0] else self.rows
        if self.traded:
            # the parties of the fills since the last check: drop their rows from the watch
            moved = [book.row_index[a] for a in self.traded if a in book.row_index]
            still = still[~np.isin(still, np.asarray(moved, dtype=np.int64))]
            self.traded.clear()
        if still.shape[0]:
            before = self.balances[np.searchsorted(self.rows, still)]
            fell = np.flatnonzero((book.row_int[still, :n_a] < before).any(axis=1))
            if fell.shape[0]:
                r = int(still[fell[0]])
                return (f"flat account {book.rows[r].name} was charged: balances "
                        f"{before[fell[0]].tolist()} -> {book.row_int[r, :n_a].tolist()}")
        # cross rows only: an emptied isolated bucket hands its margin back to the cross
        # row, a move the account owns (column 4A of row_int: the weighted = cross flag)
        cross = book.row_int[:n, 4 * n_a] == 1
        self.rows = np.flatnonzero(~book.row_system[:n] & (book.row_nslots[:n] == 0) & cross)
        self.balances = book.row_int[self.rows, :n_a].copy()
        return ""


def _check_invariants(engine: Engine, flat: _FlatWatch | None = None) -> str:
    try:
        engine.verify()
    except (EngineError, ArithmeticError, ValueError, RuntimeError) as exc:
        return f"engine.verify failed: {exc}"
    return flat.check() if flat is not None else ""


def run_scenario(scenario: Scenario, *, venue: str | None = None, seed: int | None = None,
                 impact: bool = True, paths: Mapping[str, PathSet] | None = None,
                 progress: Progress | None = None, state_hashes: bool = False) -> RunResult:
    """Run one path of ``scenario`` through a real engine and summarize it.

    Parameters
    ----------
    scenario : Scenario
        The scenario.
    venue : str or None
        Venue preset to use instead of the scenario's (see :meth:`Scenario.venue`).
    seed : int or None
        Market seed (default: the scenario's); the population seed never changes.
    impact : bool
        ``False`` runs with the square-root impact switched off (``Y = 0``).
    paths : Mapping[str, PathSet] or None
        Precomputed paths (row 0 is used); default :func:`build_paths`.
    progress : Progress or None
        Called with ``(done, total)`` points.
    state_hashes : bool
        Add the engine's final ``state_hash`` and ``section_hashes`` to the metrics
        (``engine_state_hash``, ``engine_section_hashes``): the determinism tests hold
        them to recorded values. Off by default (a snapshot of a large book costs ~1 s).

    Raises
    ------
    ScenarioError
        If the scenario cannot be built (venue, files, markets).
    """
    steps = venue_steps(scenario, venue=venue, seed=seed, impact=impact, paths=paths,
                        progress=progress, state_hashes=state_hashes)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: RunResult = done.value
            return result


@dataclass(slots=True)
class VenueStep:
    """A venue's run paused at the start of step ``k``, after its book moved to the
    step's time (:meth:`ImpactLiquidity.advance`) and before the step's marks: what a
    multi-venue run's links read and move (:mod:`solvency.sim.contagion`).

    Attributes
    ----------
    k, now_ms : int
        The step and its time.
    index : dict
        Each market's index price at the step.
    model : ImpactLiquidity
        The venue's books.
    engine : Engine
        The venue's engine.
    step_ms : int
        The paths' step.
    accounts : tuple of str
        The population's accounts, in order.
    settle : str
        The venue's settlement asset.
    sales : list of (str, float)
        The collateral the engine sold (auto-exchange) since the last pause: asset and
        units, at the previous step's time.
    book_prices : dict
        Set by the collateral link at the pause: ``(asset, source)`` -> the price its
        book reports at this step, in place of the scenario's path of that source.
    """

    k: int
    now_ms: int
    index: dict[str, float]
    model: ImpactLiquidity
    engine: Engine
    step_ms: int
    accounts: tuple[str, ...] = ()
    settle: str = ""
    sales: list[tuple[str, float]] = field(default_factory=list)
    book_prices: dict[tuple[str, str], Decimal] = field(default_factory=dict)


def venue_steps(scenario: Scenario, *, venue: str | None = None, seed: int | None = None,
                impact: bool = True, paths: Mapping[str, PathSet] | None = None,
                progress: Progress | None = None, state_hashes: bool = False
                ) -> Generator[VenueStep, None, RunResult]:
    """:func:`run_scenario` one step at a time: yields a :class:`VenueStep` at the start
    of each step (after the books moved to the step's time, before its marks) and
    returns the :class:`RunResult`; whatever the caller does between steps (a
    multi-venue run's links) moves the venue's books before the step's marks."""
    t0 = time.perf_counter()
    markets = scenario.markets
    scenario.venue(venue)  # an unknown venue fails before the paths are built
    p = dict(paths) if paths is not None else build_paths(scenario, seed=seed)
    ts = p[markets[0]].ts_ms
    prices = {m: p[m].prices[0] for m in markets}
    step_ms = int(np.median(np.diff(ts))) if ts.shape[0] > 1 else scenario.step_ms
    v = scenario.venue(venue, step_ms=step_ms)
    settle = _settle(v, markets)
    feed = None if scenario.oracle is None else OracleFeed(
        scenario.oracle, ts, prices,
        seed=scenario.seed_market if seed is None else seed)
    try:
        pop = generate_population(scenario.population, v,
                                  {m: float(prices[m][0]) for m in markets},
                                  scenario.seed_population,
                                  history=scenario.entry_history(int(ts[0])))
    except ValueError as exc:
        raise ScenarioError(f"population: {exc}") from None
    opt: OptionHolders | None = None
    if scenario.options is not None:
        v, opt = _option_book(scenario, venue, step_ms, pop, int(ts[0]), int(ts[-1]))
    # Without agents the engine tells the book what executed (ExecutionListener); with
    # agents their port reconciles quoted against executed flow (sim/agents.py).
    books = scenario.liquidity_specs(impact=impact)
    if opt is not None:
        books.update(scenario.option_liquidity([s.name for s in opt.series], impact=impact))
    model = ImpactLiquidity(v, books, start_ms=int(ts[0]), consume=scenario.agents.any)
    try:
        crew = Agents(scenario.agents, venue=v, book=model, markets=markets, settle=settle,
                      start_ms=int(ts[0]), seed=scenario.seed_agents)
    except ValueError as exc:
        raise ScenarioError(f"agents.{exc}") from None
    # writers under portfolio margin: the engine gets the grid, and the writers load one
    # event at a time in portfolio mode (the bulk load and every draw are unchanged)
    grid = None if opt is None or scenario.options is None else scenario.options.pm_grid
    engine = Engine(v, liquidity=crew.liquidity, pm_grid=grid)
    if scenario.insurance_fund > 0:
        engine.apply(Deposit(id="scenario:fund", account=INSURANCE_ROW, asset=settle,
                             amount=scenario.insurance_fund))
    # the collateral paths this venue's rule reads (a multi-venue scenario's paths go to
    # the venues that value the asset by rule with that source); a path that has a price
    # at the start reports it now, before the accounts load: an asset redeemed into
    # another (BNSOL into SOL's index) has no value until its underlying is reported
    collateral_paths = [c for c in scenario.collateral_reports if _reads(v, c)]
    reported: dict[tuple[str, str], Decimal] = {}
    for path in collateral_paths:
        value = None if path.relative else path.price(int(ts[0]))
        if value is not None:
            reported[(path.asset, path.source)] = value
            engine.apply(OracleReport(id=f"start:{path.asset}:{path.source}",
                                      source=path.source, price=value, ts_ms=int(ts[0]),
                                      asset=path.asset))
    load_population(engine, pop, ts_ms=int(ts[0]),
                    portfolio=None if grid is None or opt is None else opt.holders)
    vols = {m: realized_vol(ts, prices[m], scenario.vol_window) for m in markets}
    opt_vols: OptionVols | None = None
    if opt is not None and scenario.options is not None:
        load_option_holders(engine, pop, opt, ts_ms=int(ts[0]))
        opt_vols = OptionVols(scenario.options, opt, vols[opt.underlying])
    topped = _top_up(engine, settle)
    crew.attach(engine, pop)
    series = StepSeries.empty(ts, markets)
    arb = scenario.agents.arbitrage
    rec = _Recorder(engine, pop, series, settle,
                    agent_accounts=(arb.account,) if arb is not None else ())
    hedger: OptionHedger | None = None
    if opt is not None and scenario.options is not None:
        rec.options = OptionWatch(engine, pop, opt, scenario.options)
        rec.side.update(holder_sides(engine, pop, opt))
        if scenario.options.hedge is not None:
            hedger = OptionHedger(scenario.options.hedge, engine, model,
                                  underlying=opt.underlying, series=opt.series,
                                  names=[pop.accounts[i] for i in opt.holders.tolist()],
                                  start_ms=int(ts[0]), apply=crew.apply)
    ticks = {m: v.markets[m].tick_size for m in markets}
    for m in markets:
        series.mark[m][0] = float(pop.marks[m])
    rec.state(0, model, {m: float(prices[m][0]) for m in markets})
    # who was hit: the rows at the start and at the first market's index low, and the
    # liquidation map at the start (the risk report's liquidations at risk: the engine's
    # kernels on scratch copies, the book untouched)
    snap_start = _rows_snapshot(engine)
    liq_map = liquidations_at_risk(engine, LIQUIDATION_MAP_SHOCKS)[1:]
    k_low = int(np.argmin(prices[markets[0]]))
    snap_low: dict[str, Any] | None = None
    violation = ""
    flat = _FlatWatch(engine, crew.traded)
    n = ts.shape[0]
    for k in range(1, n):
        now = int(ts[k])
        rec.begin_step()
        rv = {m: float(vols[m][k]) for m in markets}
        if opt is not None:  # an option book's depth follows its underlying's vol
            rv.update({s.name: rv[opt.underlying] for s in opt.series})
        model.advance(now, {m: x for m, x in rv.items() if m in model.specs})
        index = {m: float(prices[m][k]) for m in markets}
        pause = VenueStep(k, now, index, model, engine, step_ms, pop.accounts, settle,
                          sales=rec.take_sales())
        yield pause
        rec.events(k, crew.before_prices(now, index))
        # a collateral source's price: the scenario's path (a relative one at the
        # redemption value now), or the collateral link's book where the link set one at
        # the pause (it takes the path in as its reference)
        booked = pause.book_prices
        sources: list[tuple[str, str, CollateralPath | Decimal]] = [
            (p.asset, p.source, booked.get((p.asset, p.source), p)) for p in collateral_paths]
        paths_of = {(a, src) for a, src, _ in sources}
        for a, src in booked.keys() - paths_of:
            # a book without a path: compared with its source's last report (the start)
            last = engine.collateral.reports[engine.book.asset_index[a]].get(src)
            reported.setdefault((a, src), last[0] if last is not None else Decimal(0))
        sources += [(a, src, v) for (a, src), v in booked.items() if (a, src) not in paths_of]
        for asset, source, item in sources:
            # a path's price read in the file's order, after the reports before it (a
            # relative BNSOL book reads the SOL index reported just above it)
            value = (path_price(engine, item, now) if isinstance(item, CollateralPath)
                     else item)
            if value is not None and value != reported.get((asset, source)):
                out = crew.apply(OracleReport(id=f"step:{k}:{asset}:{source}",
                                              source=source, price=value, ts_ms=now,
                                              asset=asset))
                rec.events(k, out)
                if rec.revaluation(out):  # a refused value is not the source's report
                    reported[(asset, source)] = value
        if opt_vols is not None:
            for ev in opt_vols.events(k, now):
                rec.events(k, crew.apply(ev))
        marks: dict[str, float] = {}
        for m in markets:
            if feed is not None:
                # the sources report; the engine's guard, mark preset and breakers decide
                trade = model.trade_price(m, index[m]) if m in model.specs else index[m]
                for report in feed.reports(k, m, trade):
                    rec.events(k, crew.apply(report))
                current = engine.book.marks[rec.m_idx[m]]
                marks[m] = float(current) if current is not None else float("nan")
                series.mark[m][k] = marks[m]
                continue
            oracle = model.oracle_price(m, index[m]) if m in model.specs else index[m]
            mark = _tick_round(oracle, ticks[m])
            marks[m] = float(mark)
            series.mark[m][k] = marks[m]
            out = crew.apply(Price(id=f"step:{k}:{m}", market=m, price=mark, ts_ms=now))
            rec.events(k, out)
        rec.events(k, crew.after_prices(now, index))
        if hedger is not None and opt_vols is not None:
            rec.events(k, hedger.step(float(opt_vols.current), now))
            for name, side in hedger.sides.items():  # a hedge may flip the perp's side
                rec.side[(name, hedger.underlying)] = side
            hedger.sides.clear()
        crew.record(k, series)
        rec.end_step(k)
        rec.state(k, model, index)
        if k == k_low:
            snap_low = _rows_snapshot(engine)
        if series.insurance_fund[k] < 0:
            violation = f"insurance fund negative at {now}: {series.insurance_fund[k]}"
        elif k % scenario.verify_every == 0 or k == n - 1:
            violation = _check_invariants(engine, flat)
        if violation:
            series.truncate(k + 1)
            break
        if progress is not None:
            progress(k, n - 1)
    if not violation and n == 1:
        violation = _check_invariants(engine)
    metrics = summarize(series, conserved=not violation,
                        accounts_liquidated=len(rec.liquidated_rows))
    series.extra["who_was_hit"] = _who_was_hit(snap_start, snap_low, int(ts[k_low]),
                                               rec.liquidated_rows, liq_map)
    metrics.update({
        "scenario": scenario.name, "venue": v.name, "seed_market": (
            scenario.seed_market if seed is None else seed),
        "seed_population": scenario.seed_population, "impact": impact,
        "accounts": scenario.population.n_accounts, "positions": int(pop.pos_lots.shape[0]),
        "points": int(series.ts_ms.shape[0]), "settle_asset": settle,
        "topped_up_accounts": topped, "engine_counts": dict(engine.liquidator.counts),
        "agents": sorted(n for n in ("topup", "liquidator", "market_maker", "arbitrage",
                                     "funding") if getattr(scenario.agents, n) is not None),
        **crew.metrics(),
        "violation": violation or None, "wall_s": time.perf_counter() - t0,
    })
    if rec.fees:
        metrics["liquidation_fees"] = rec.fee_metrics()
    if rec.valued:
        metrics["collateral"] = rec.collateral_metrics()
    if rec.options is not None and opt_vols is not None:
        metrics["options"] = rec.options.metrics(opt_vols.path)
        if hedger is not None:
            metrics["options"]["hedge"] = hedger.metrics()
    if state_hashes:
        metrics["engine_state_hash"] = engine.state_hash()
        metrics["engine_section_hashes"] = engine.section_hashes()
    return RunResult(scenario=scenario.name, venue=v.name,
                     seed_market=int(metrics["seed_market"]),
                     seed_population=scenario.seed_population, metrics=metrics,
                     series=series)


# ============================================================================ many runs


def run_compare(scenario: Scenario, venues: Sequence[str], *,
                progress: Progress | None = None, jobs: int = 1,
                state_hashes: bool = False) -> dict[str, RunResult]:
    """Run the same paths and population spec under each venue preset.

    Parameters
    ----------
    scenario : Scenario
        The scenario.
    venues : Sequence[str]
        Venue presets, in the order of the result.
    progress : Progress or None
        Called with ``(done, total)`` points; in parallel, the sum over the venues.
    jobs : int
        Processes to run the venues in (``1``: one after the other in this process).
        Each venue's run is the same computation wherever it runs (the paths are built
        once here and handed over; seeds are part of the scenario), so the results do not
        depend on ``jobs``.
    state_hashes : bool
        As :func:`run_scenario`.

    Raises
    ------
    ScenarioError
        If a venue is unknown (checked before any run starts).
    ValueError
        If ``jobs < 1``.
    """
    return run_named(scenario, {name: (scenario, name) for name in venues}, jobs=jobs,
                     progress=progress, state_hashes=state_hashes)


def run_named(scenario: Scenario, runs: Mapping[str, tuple[Scenario, str | None]], *,
              progress: Progress | None = None, jobs: int = 1,
              state_hashes: bool = False) -> dict[str, RunResult]:
    """Run named ``(scenario, venue preset)`` pairs on the paths of ``scenario``, built
    once (:func:`run_compare` is every preset under one scenario; a multi-venue run's
    venues may differ in their own settings, e.g. the fund).

    Raises
    ------
    ScenarioError
        If a venue is unknown (checked before any run starts).
    ValueError
        If ``jobs < 1``.
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    for sc, preset in runs.values():
        sc.venue(preset)
    paths = build_paths(scenario)
    workers = min(jobs, len(runs))
    if workers <= 1:
        return {name: run_scenario(sc, venue=preset, paths=paths, progress=progress,
                                   state_hashes=state_hashes)
                for name, (sc, preset) in runs.items()}
    return _compare_in_processes(scenario, runs, paths, workers=workers,
                                 progress=progress, state_hashes=state_hashes)


_PROGRESS_QUEUE: Any = None


def _init_worker(queue: Any) -> None:
    global _PROGRESS_QUEUE  # noqa: PLW0603  (one per spawned worker process)
    _PROGRESS_QUEUE = queue


def _venue_task(scenario: Scenario, preset: str | None, name: str, paths: Mapping[str, PathSet],
                state_hashes: bool) -> RunResult:
    """Run one venue of a compare in a worker, reporting progress to the parent."""
    queue = _PROGRESS_QUEUE

    def report(done: int, total: int) -> None:
        if queue is not None and (done % 20 == 0 or done == total):
            queue.put((name, done, total))

    return run_scenario(scenario, venue=preset, paths=paths, progress=report,
                        state_hashes=state_hashes)


def _compare_in_processes(scenario: Scenario, venues: Mapping[str, tuple[Scenario, str | None]],
                          paths: Mapping[str, PathSet], *, workers: int,
                          progress: Progress | None, state_hashes: bool
                          ) -> dict[str, RunResult]:
    # spawned, not forked, as sim/sweep.py: the parent may hold threads (numba) and locks
    ctx = get_context("spawn")
    queue = ctx.Queue()
    n_points = int(paths[scenario.markets[0]].ts_ms.shape[0])
    done = {name: 0 for name in venues}
    total = len(venues) * max(n_points - 1, 0)

    def drain() -> None:
        while True:
            try:
                name, k, _ = queue.get_nowait()
            except Empty:
                return
            done[name] = k
            if progress is not None:
                progress(sum(done.values()), total)

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                               initializer=_init_worker, initargs=(queue,))
    try:
        futures = {name: pool.submit(_venue_task, sc, preset, name, paths, state_hashes)
                   for name, (sc, preset) in venues.items()}
        pending: set[Future[RunResult]] = set(futures.values())
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            drain()
            for fut in finished:
                fut.result()  # a failed venue stops the compare at once
        drain()
        return {name: fut.result() for name, fut in futures.items()}
    finally:
        # on a failed venue or Ctrl-C, drop the venues not started instead of running them
        pool.shutdown(wait=True, cancel_futures=True)
        queue.close()


_PER_RUN_ONLY = frozenset({"wall_s", "engine_state_hash", "engine_section_hashes"})


def run_monte_carlo(scenario: Scenario, n_paths: int, *, venue: str | None = None,
                    progress: Progress | None = None) -> MonteCarloResult:
    """Run ``n_paths`` paths (market seeds ``seeds.market + i``) and the bad-debt VaR.

    Raises
    ------
    ValueError
        If ``n_paths < 1``.
    """
    if n_paths < 1:
        raise ValueError(f"--paths must be >= 1, got {n_paths}")
    runs = [run_scenario(scenario, venue=venue, seed=scenario.seed_market + i,
                         progress=progress) for i in range(n_paths)]
    bad = np.array([r.metrics["bad_debt"] for r in runs], dtype=np.float64)
    per_path = [{k: v for k, v in r.metrics.items() if k not in _PER_RUN_ONLY}
                for r in runs]
    summary = summarize_paths(per_path)
    summary["wall_s"] = float(sum(r.metrics["wall_s"] for r in runs))
    summary["seed_market"] = [r.seed_market for r in runs]
    summary["paths"] = n_paths
    summary["statistic"] = "mean over paths"
    summary.update(bad_debt_var(bad))
    summary["scenario"] = scenario.name
    summary["venue"] = runs[0].venue
    summary["per_path"] = [flatten(p) for p in per_path]
    return MonteCarloResult(runs=runs, summary=summary)
