"""Stress-lab metrics: per-step series of a run and the summary numbers computed from them.

A run (:func:`solvency.sim.run.run_scenario`) records a :class:`StepSeries` -- one value
per path point for prices, liquidations, the insurance fund, bad debt, ADL, accounts at
risk, margin rates and breaker states -- and :func:`summarize` turns it into the summary
of ``metrics.json``. Definitions (also in ``docs/stress_lab.md``):

* ``liquidations`` -- executed liquidation out-events (``via`` market, backstop or
  insurance fund; a position closed in several slices counts once per slice);
  ``accounts_liquidated`` -- distinct margin rows with at least one.
* ``liquidated_notional`` -- sum of ``size x price`` of those events, in the settlement
  asset (ADL closes are counted apart, in ``adl_notional``).
* ``bad_debt`` -- the venue's recorded loss at the end: minus the balance of the ledger
  account ``sys:bad_debt`` (a shortfall neither the account, the fund, ADL nor a
  socialized loss covered).
* ``insurance_fund_min`` -- lowest balance of ``sys:insurance`` (cash; positions the fund
  took over are shown apart as fund equity); ``insurance_fund_drawdown`` -- largest fall
  from a running peak of that balance. ``insurance_fund_equity_min`` and
  ``insurance_fund_equity_drawdown`` -- the same for the fund's equity: its cash, plus its
  position account (``sys:insurance_positions``: what it paid for positions it took over
  and what unwinding them brought back), plus those positions at the mark. A takeover
  does not spend the fund's cash; its equity falls only by the position's loss.
  ``insurance_fund_equity_end`` -- the equity at the end.
* ``insurance_fund_positions_max``, ``insurance_fund_positions_end`` -- gross notional
  (``|value|`` at the mark) of the positions the fund holds: the largest and the last;
  ``insurance_fund_unwind_pnl`` -- the fund's realized P&L from closing them (proceeds
  less their takeover cost), cumulative at the end.
* ``adl_count``, ``adl_notional`` -- ADL fills and their ``size x price``.
* ``adl_haircut`` -- sum over ADL fills of the counterparty's loss against closing at the
  mark, ``max(0, s x (mark - price) x size)`` with ``s = +1`` for a long counterparty and
  ``-1`` for a short one.
* ``adl_overshoot`` -- the part of the ADL haircut the fund could have absorbed under
  the venue's own rule (issue 27): in each step ``t``, ``min(C_t, sum over (market, side)
  of H x min(1, R / N))`` where ``C_t`` is the fund's counted capacity at the start of
  the step (``policy.fund_capacity``: cash, equity or equity at depth) above the venue's
  ADL threshold, ``H`` and ``N`` the step's ADL haircut and notional in that market
  against positions of that side, and ``R`` the notional the fund's position cap still
  allowed it to take there (Binance: net notional at most 100 % of the fund per market;
  unlimited without a cap or on the side that reduces the fund's position); summed over
  steps. The minimum haircut is the rest. Read at the step's start, it is an upper
  bound within the step (takeovers later in the step use capacity and cap room); ADL
  the cap forced, or beyond the counted capacity, is not overshoot. It is zero when ADL
  is a true last resort.
* ``open_interest_start_notional`` -- the venue's open interest at the start, one side
  (as venues report it): half the gross notional of every position at point 0, the
  counterparty's included, at the start marks, in the settlement asset; per market in
  ``open_interest_start_notional_by_market``. ``liquidated_share_of_oi`` --
  ``liquidated_notional`` over it (per market: ``liquidated_share_of_oi_by_market``),
  the figure venues' reported liquidation shares compare with.
  ``liquidated_long_share`` -- the part of ``liquidated_notional`` that closed long
  positions (data vendors report the long share of a day's liquidations).
  ``liquidated_share`` is the older ratio over the *gross* notional of user positions
  (long + short). Every ``liquidated_notional*`` and ``liquidated_*share*`` figure counts
  the population's accounts only: the lab's own agent accounts (the arbitrageur) are left
  out of them, so that an agent that keeps re-entering and being liquidated does not
  stand in for the population's losses (review 2, item 4). ``liquidations`` and
  ``accounts_liquidated`` count every executed liquidation, the agents' included.
* ``agents_liquidated_notional`` -- ``size x price`` of the liquidations of the lab's
  agent accounts, apart; per agent account in ``agents_liquidated_notional_by_agent``;
  ``agents_liquidated_share_of_oi`` -- it over ``open_interest_start_notional`` (0 and
  an empty table without such an agent or liquidation).
* ``cascade_amplification`` -- largest peak-to-trough fall of the venue's trade price
  (index x exp(impact)) divided by that of the same path with impact off. With impact
  off (``Y = 0``) the trade price *is* the index path, so the denominator is the index's
  fall (a test runs the impact-off twin and checks this). The largest ratio over markets;
  per market in ``cascade_amplification_by_market``.
* ``capital_efficiency`` -- time average of initial margin locked per unit notional over
  all user positions (sum IM / sum notional): lower is more capital efficient.
* ``breaker_time_ms`` -- per market, time spent in each breaker state.
* ``conserved`` -- every ``Engine.verify()`` check passed and the fund never went
  negative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from solvency.core.typing import Float64Array1D, Float64Array2D, Int64Array1D
from solvency.core.var import empirical_var_es_losses
from solvency.engine.breakers import STATES

__all__ = [
    "QUANTILES",
    "SUMMARY_KEYS",
    "StepSeries",
    "bad_debt_var",
    "fan",
    "flatten",
    "max_drawdown",
    "summarize",
    "summarize_paths",
]

SUMMARY_KEYS: Final[tuple[str, ...]] = (
    "liquidations", "accounts_liquidated", "liquidated_notional", "bad_debt",
    "insurance_fund_start", "insurance_fund_min", "insurance_fund_end",
    "insurance_fund_drawdown", "insurance_fund_equity_min", "insurance_fund_equity_end",
    "insurance_fund_positions_max", "insurance_fund_unwind_pnl",
    "adl_count", "adl_notional", "adl_haircut", "adl_overshoot",
    "cascade_amplification", "capital_efficiency", "max_accounts_at_risk", "conserved",
)
"""Keys every summary carries (more are added around them)."""


@dataclass(slots=True)
class StepSeries:
    """Per-point series of one run; index ``k`` is the state after path point ``k``.

    Point 0 is the loaded book at the start prices (nothing liquidated yet).

    Attributes
    ----------
    ts_ms : Int64Array1D
        Time of each point.
    index, mark, trade : dict of Float64Array1D
        Per market: the path (index) price, the mark applied to the engine and the
        venue's trade price ``index x exp(impact)`` after the step's liquidations.
    mm_rate, im_rate : dict of Float64Array1D
        Per market: maintenance and initial margin in force per unit notional over user
        positions.
    depth_factor : dict of Float64Array1D
        Per market: the liquidity model's depth factor.
    breaker : dict of Int64Array1D
        Per market: breaker state as an index into ``solvency.engine.breakers.STATES``.
    liq_count, adl_count, at_risk : Int64Array1D
        Liquidation and ADL fills in the step; rows at or above the margin-call ratio.
    liq_notional, adl_notional, adl_haircut, adl_overshoot : Float64Array1D
        In the settlement asset, per step.
    insurance_fund, insurance_fund_equity, bad_debt : Float64Array1D
        Fund cash, fund equity (cash + position account + positions at the mark),
        cumulative bad debt; settlement asset units.
    insurance_fund_positions, insurance_fund_unwind_pnl : Float64Array1D
        Gross notional of the positions the fund holds; its cumulative realized P&L from
        closing them (settlement asset units).
    im_locked, notional : Float64Array1D
        Sum of initial margin and of notional over all user positions.
    extra : dict
        Free-form additions.
    premium, funding_rate : dict of Float64Array1D
        Per market, with the funding agent: the premium index sampled at the point and
        the last funding rate applied (0 before the first).
    mm_depth_fraction : dict of Float64Array1D
        Per market: the share ``1 - w`` of the book market makers left (1 without them).
    topup_amount, liquidator_notional, funding_paid : Float64Array1D
        Per step: deposits of traders answering margin calls, notional the liquidators
        took, funding paid by the payers (settlement asset units).
    liq_notional_long : Float64Array1D
        Per step: the part of ``liq_notional`` that closed long positions.
    liq_notional_market, adl_notional_market : dict of Float64Array1D
        Per market: ``liq_notional`` and ``adl_notional`` of the step, split by market.
        ``liq_notional``, ``liq_notional_long`` and ``liq_notional_market`` count the
        population's accounts only.
    agent_liq_notional : dict of Float64Array1D
        Per lab agent account (the arbitrageur): the notional of its liquidations in the
        step (settlement asset units); kept out of ``liq_notional``.
    notional_market : dict of Float64Array1D
        Per market: gross notional of user positions (long + short, settlement asset).
    open_interest_start : dict of float
        Per market: the venue's open interest at point 0, one side (half the gross
        notional of every position, the counterparty's included: longs and shorts are
        equal in lots), at the start marks, settlement asset units.
    """

    ts_ms: Int64Array1D
    index: dict[str, Float64Array1D]
    mark: dict[str, Float64Array1D]
    trade: dict[str, Float64Array1D]
    mm_rate: dict[str, Float64Array1D]
    im_rate: dict[str, Float64Array1D]
    depth_factor: dict[str, Float64Array1D]
    breaker: dict[str, Int64Array1D]
    liq_count: Int64Array1D
    adl_count: Int64Array1D
    at_risk: Int64Array1D
    liq_notional: Float64Array1D
    adl_notional: Float64Array1D
    adl_haircut: Float64Array1D
    adl_overshoot: Float64Array1D
    insurance_fund: Float64Array1D
    insurance_fund_equity: Float64Array1D
    bad_debt: Float64Array1D
    im_locked: Float64Array1D
    notional: Float64Array1D
    extra: dict[str, Any] = field(default_factory=dict)
    premium: dict[str, Float64Array1D] = field(default_factory=dict)
    funding_rate: dict[str, Float64Array1D] = field(default_factory=dict)
    mm_depth_fraction: dict[str, Float64Array1D] = field(default_factory=dict)
    topup_amount: Float64Array1D = field(default_factory=lambda: np.zeros(0))
    liquidator_notional: Float64Array1D = field(default_factory=lambda: np.zeros(0))
    funding_paid: Float64Array1D = field(default_factory=lambda: np.zeros(0))
    insurance_fund_positions: Float64Array1D = field(default_factory=lambda: np.zeros(0))
    insurance_fund_unwind_pnl: Float64Array1D = field(default_factory=lambda: np.zeros(0))
    liq_notional_long: Float64Array1D = field(default_factory=lambda: np.zeros(0))
    liq_notional_market: dict[str, Float64Array1D] = field(default_factory=dict)
    adl_notional_market: dict[str, Float64Array1D] = field(default_factory=dict)
    notional_market: dict[str, Float64Array1D] = field(default_factory=dict)
    open_interest_start: dict[str, float] = field(default_factory=dict)
    agent_liq_notional: dict[str, Float64Array1D] = field(default_factory=dict)

    @classmethod
    def empty(cls, ts_ms: Int64Array1D, markets: tuple[str, ...]) -> StepSeries:
        """Return zero-filled series for ``ts_ms`` and ``markets``."""
        n = ts_ms.shape[0]

        def f() -> Float64Array1D:
            return np.zeros(n, dtype=np.float64)

        def i() -> Int64Array1D:
            return np.zeros(n, dtype=np.int64)

        return cls(
            ts_ms=ts_ms, index={m: f() for m in markets}, mark={m: f() for m in markets},
            trade={m: f() for m in markets}, mm_rate={m: f() for m in markets},
            im_rate={m: f() for m in markets}, depth_factor={m: f() for m in markets},
            breaker={m: i() for m in markets}, liq_count=i(), adl_count=i(), at_risk=i(),
            liq_notional=f(), adl_notional=f(), adl_haircut=f(), adl_overshoot=f(),
            insurance_fund=f(), insurance_fund_equity=f(), bad_debt=f(), im_locked=f(),
            notional=f(), premium={m: f() for m in markets},
            funding_rate={m: f() for m in markets},
            mm_depth_fraction={m: np.ones(n, dtype=np.float64) for m in markets},
            topup_amount=f(), liquidator_notional=f(), funding_paid=f(),
            insurance_fund_positions=f(), insurance_fund_unwind_pnl=f(),
            liq_notional_long=f(), liq_notional_market={m: f() for m in markets},
            adl_notional_market={m: f() for m in markets},
            notional_market={m: f() for m in markets})

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` points (a run stopped by a broken invariant)."""
        for name in ("ts_ms", "liq_count", "adl_count", "at_risk", "liq_notional",
                     "adl_notional", "adl_haircut", "adl_overshoot", "insurance_fund",
                     "insurance_fund_equity", "bad_debt", "im_locked", "notional",
                     "topup_amount", "liquidator_notional", "funding_paid",
                     "insurance_fund_positions", "insurance_fund_unwind_pnl",
                     "liq_notional_long"):
            setattr(self, name, getattr(self, name)[:n])
        for name in ("index", "mark", "trade", "mm_rate", "im_rate", "depth_factor",
                     "breaker", "premium", "funding_rate", "mm_depth_fraction",
                     "liq_notional_market", "adl_notional_market", "notional_market",
                     "agent_liq_notional"):
            d = getattr(self, name)
            for k in d:
                d[k] = d[k][:n]


def max_drawdown(x: Float64Array1D) -> float:
    """Return the largest fall from a running peak, ``max(1 - x / cummax(x))`` (>= 0)."""
    if x.shape[0] == 0:
        return 0.0
    peak = np.maximum.accumulate(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, 1.0 - x / peak, 0.0)
    return float(max(dd.max(), 0.0))


def _fund_drawdown(x: Float64Array1D) -> float:
    if x.shape[0] == 0:
        return 0.0
    return float(max((np.maximum.accumulate(x) - x).max(), 0.0))


def _amplification(series: StepSeries) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for m in series.index:
        base = max_drawdown(series.index[m])
        hit = max_drawdown(series.trade[m])
        if base > 0:
            out[m] = hit / base
        else:
            out[m] = 1.0 if hit == 0 else None  # a fall from impact alone: unbounded
    return out


def _breaker_time(series: StepSeries) -> dict[str, dict[str, int]]:
    dt = np.diff(series.ts_ms)
    out: dict[str, dict[str, int]] = {}
    for m, states in series.breaker.items():
        # the state after point k holds until point k + 1
        spent = np.bincount(states[:-1], weights=dt, minlength=len(STATES)) \
            if dt.shape[0] else np.zeros(len(STATES))
        out[m] = {s: int(spent[i]) for i, s in enumerate(STATES)}
    return out


def summarize(series: StepSeries, *, conserved: bool,
              accounts_liquidated: int) -> dict[str, Any]:
    """Return the summary metrics of one run (see the module docstring).

    Parameters
    ----------
    series : StepSeries
        The run's series.
    conserved : bool
        Whether every invariant check passed.
    accounts_liquidated : int
        Distinct margin rows liquidated at least once.
    """
    fund = series.insurance_fund
    amp = _amplification(series)
    finite = [v for v in amp.values() if v is not None]
    worst: float | None = max(finite) if finite and len(finite) == len(amp) else (
        None if any(v is None for v in amp.values()) else 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = np.where(series.notional > 0, series.im_locked / series.notional, np.nan)
    eff_mean = float(np.nanmean(eff)) if np.isfinite(eff).any() else 0.0
    return {
        "liquidations": int(series.liq_count.sum()),
        "accounts_liquidated": int(accounts_liquidated),
        "liquidated_notional": float(series.liq_notional.sum()),
        "bad_debt": float(series.bad_debt[-1]) if series.bad_debt.shape[0] else 0.0,
        "insurance_fund_start": float(fund[0]) if fund.shape[0] else 0.0,
        "insurance_fund_min": float(fund.min()) if fund.shape[0] else 0.0,
        "insurance_fund_end": float(fund[-1]) if fund.shape[0] else 0.0,
        "insurance_fund_drawdown": _fund_drawdown(fund),
        "insurance_fund_equity_min": (float(series.insurance_fund_equity.min())
                                      if fund.shape[0] else 0.0),
        "insurance_fund_equity_drawdown": _fund_drawdown(series.insurance_fund_equity),
        "insurance_fund_equity_end": _last(series.insurance_fund_equity),
        "insurance_fund_positions_max": (float(series.insurance_fund_positions.max())
                                         if series.insurance_fund_positions.shape[0]
                                         else 0.0),
        "insurance_fund_positions_end": _last(series.insurance_fund_positions),
        "insurance_fund_unwind_pnl": _last(series.insurance_fund_unwind_pnl),
        "adl_count": int(series.adl_count.sum()),
        "adl_notional": float(series.adl_notional.sum()),
        "adl_haircut": float(series.adl_haircut.sum()),
        "adl_overshoot": float(series.adl_overshoot.sum()),
        "cascade_amplification": worst,
        "cascade_amplification_by_market": amp,
        "capital_efficiency": eff_mean,
        "max_accounts_at_risk": int(series.at_risk.max()) if series.at_risk.shape[0] else 0,
        "breaker_time_ms": _breaker_time(series),
        "price_drawdown": {m: max_drawdown(v) for m, v in series.index.items()},
        "trade_price_drawdown": {m: max_drawdown(v) for m, v in series.trade.items()},
        "conserved": bool(conserved),
        **_headline(series),
    }


def _first_ms(series: StepSeries, counts: Int64Array1D) -> int | None:
    hit = np.flatnonzero(counts > 0)
    return int(series.ts_ms[hit[0]]) if hit.shape[0] else None


def _crash_window(series: StepSeries) -> dict[str, int | None]:
    """``{"peak": ms, "low": ms}``: the times of the largest peak-to-trough fall of the
    first market's index (the window the report shades); ``None`` values without a fall.
    A mapping, so that sweep tables flatten it into two scalar columns."""
    none: dict[str, int | None] = {"peak": None, "low": None}
    if not series.index or series.ts_ms.shape[0] < 2:
        return none
    x = next(iter(series.index.values()))
    peak = np.maximum.accumulate(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, 1.0 - x / peak, 0.0)
    low = int(np.argmax(dd))
    if dd[low] <= 0:
        return none
    top = int(np.argmax(x[: low + 1]))
    return {"peak": int(series.ts_ms[top]), "low": int(series.ts_ms[low])}


def _headline(series: StepSeries) -> dict[str, Any]:
    """The report's headline figures that the series alone decide (additive keys)."""
    fund = series.insurance_fund
    start = float(fund[0]) if fund.shape[0] else 0.0
    eq_min = float(series.insurance_fund_equity.min()) if fund.shape[0] else 0.0
    used = max(0.0, start - eq_min)
    oi = float(series.notional[0]) if series.notional.shape[0] else 0.0
    liq = float(series.liq_notional.sum())
    oi_one = float(sum(series.open_interest_start.values()))
    liq_by = {m: float(v.sum()) for m, v in series.liq_notional_market.items()}
    low_k = int(np.argmin(series.insurance_fund_equity)) if fund.shape[0] else 0
    agents_by = {a: float(v.sum()) for a, v in series.agent_liq_notional.items()}
    agents_liq = float(sum(agents_by.values()))
    return {
        "insurance_fund_used": used,
        "insurance_fund_used_share": used / start if start > 0 else None,
        "open_interest_start": oi,
        "open_interest_start_by_market": {
            m: float(v[0]) for m, v in series.notional_market.items() if v.shape[0]},
        "liquidated_share": liq / oi if oi > 0 else None,
        "liquidated_notional_by_market": liq_by,
        "open_interest_start_notional": oi_one,
        "open_interest_start_notional_by_market": dict(series.open_interest_start),
        "liquidated_share_of_oi": liq / oi_one if oi_one > 0 else None,
        "liquidated_long_share": (float(series.liq_notional_long.sum()) / liq
                                  if liq > 0 and series.liq_notional_long.shape[0] else None),
        "liquidated_share_of_oi_by_market": {
            m: (liq_by.get(m, 0.0) / v if v > 0 else None)
            for m, v in series.open_interest_start.items()},
        "agents_liquidated_notional": agents_liq,
        "agents_liquidated_notional_by_agent": agents_by,
        "agents_liquidated_share_of_oi": agents_liq / oi_one if oi_one > 0 else None,
        "adl_notional_by_market": {
            m: float(v.sum()) for m, v in series.adl_notional_market.items()},
        "first_liquidation_ms": _first_ms(series, series.liq_count),
        "first_adl_ms": _first_ms(series, series.adl_count),
        "insurance_fund_low_ms": (int(series.ts_ms[low_k])
                                  if fund.shape[0] and used > 0 else None),
        "crash_window_ms": _crash_window(series),
    }


QUANTILES: Final[tuple[float, ...]] = (0.05, 0.25, 0.5, 0.75, 0.95)
"""Quantiles over Monte Carlo paths: of each metric (``quantiles``) and of each series
(the report's fan charts)."""


def flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return ``metrics`` with nested tables as dotted keys (``price_drawdown.BTC-PERP``)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _mean_of(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, Mapping):
        keys = [k for k in first if all(isinstance(v, Mapping) and k in v for v in values)]
        return {k: _mean_of([v[k] for v in values]) for k in keys}
    if all(isinstance(v, bool) for v in values):
        return all(values)
    if all(_number(v) for v in values):
        return float(np.mean(np.asarray(values, dtype=np.float64)))
    if any(v is None for v in values) and all(v is None or _number(v) for v in values):
        return None  # a metric undefined on some path has no mean
    return first if all(v == first for v in values) else None


def summarize_paths(per_path: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return the summary of Monte Carlo paths: every metric of one run, each the mean over
    paths (booleans: all paths; text: the common value, else ``None``; a number missing
    on some path: ``None``), and ``quantiles``: per numeric metric (dotted key) its
    :data:`QUANTILES` over the paths where it is defined (``p05`` ... ``p95``, linear
    interpolation, numpy's default) and the number of those paths ``n``.

    Raises
    ------
    ValueError
        If there is no path.
    """
    if not per_path:
        raise ValueError("summarize_paths: no paths")
    out: dict[str, Any] = {k: _mean_of([p.get(k) for p in per_path])
                           for k in per_path[0]}
    flat = [flatten(p) for p in per_path]
    quant: dict[str, dict[str, float | int]] = {}
    for key in flat[0]:
        xs = [f.get(key) for f in flat]
        vals = np.asarray([v for v in xs if _number(v)], dtype=np.float64)
        if vals.shape[0] == 0 or not any(_number(v) for v in xs):
            continue
        qs = np.quantile(vals, QUANTILES)
        quant[key] = {f"p{round(q * 100):02d}": float(v) for q, v in zip(QUANTILES, qs,
                                                                          strict=True)}
        quant[key]["n"] = int(vals.shape[0])
    out["quantiles"] = quant
    return out


def fan(paths: Sequence[Float64Array1D], qs: Sequence[float] = QUANTILES) -> Float64Array2D:
    """Return the quantiles ``qs`` over paths of one series, per point: shape
    ``(len(qs), points)``. A path stopped early (a broken invariant) counts up to its
    last point only."""
    if not paths:
        raise ValueError("fan: no paths")
    n = max(p.shape[0] for p in paths)
    grid = np.full((len(paths), n), np.nan)
    for i, p in enumerate(paths):
        grid[i, : p.shape[0]] = p
    with np.errstate(all="ignore"):
        return np.asarray(np.nanquantile(grid, list(qs), axis=0), dtype=np.float64)


def _last(x: Float64Array1D) -> float:
    return float(x[-1]) if x.shape[0] else 0.0


def bad_debt_var(bad_debt: Float64Array1D, levels: tuple[float, ...] = (0.95, 0.99)
                 ) -> dict[str, float]:
    """Return the VaR of bad debt at each level and its mean and maximum.

    VaR at level ``q`` is the ``q``-quantile of the bad-debt distribution over paths
    (the convention of on-chain risk vendors' insolvency VaR), taken as the empirical
    order statistic ``x_(ceil(q n))`` (``numpy.quantile(..., method="inverted_cdf")``):
    never an interpolation below an observed loss. ES at level ``q`` (``es99_bad_debt``)
    is the mean loss in the worst ``1 - q`` of paths, the fractional path at the VaR
    included (:func:`solvency.core.var.empirical_var_es_losses`, Acerbi and Tasche 2002).
    """
    x = np.asarray(bad_debt, dtype=np.float64)
    if x.shape[0] == 0:
        raise ValueError("bad_debt_var: no paths")
    out = {f"var{round(q * 100)}_bad_debt": float(np.quantile(x, q, method="inverted_cdf"))
           for q in levels}
    for q in levels:
        out[f"es{round(q * 100)}_bad_debt"] = float(empirical_var_es_losses(x, q)[1])
    out["mean_bad_debt"] = float(x.mean())
    out["max_bad_debt"] = float(x.max())
    out["p_bad_debt"] = float((x > 0).mean())
    if not all(math.isfinite(v) for v in out.values()):
        raise ValueError("bad_debt_var: non-finite values")
    return out
