"""Plain-Python twin of the portfolio margin kernel: one account, one position at a time.

Obviously correct and slow: every scenario value is computed by
:func:`solvency.core.options.reference.black76_one` (or the intrinsic value at expiry),
every rule is written out as in :mod:`solvency.core.portfolio.kernel`'s docstring. The
tests hold :func:`solvency.core.portfolio.portfolio_margin` to it, and
``bench/bench_portfolio.py`` uses it as the per-account baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from solvency.core.options.reference import black76_one
from solvency.core.portfolio.grid import DAYS_PER_YEAR, ScenarioGrid
from solvency.core.portfolio.kernel import KIND_CALL, KIND_FUTURE

__all__ = ["Position", "account_margin_reference", "portfolio_margin_reference"]


@dataclass(frozen=True, slots=True)
class Position:
    """One position of one account (the row of the kernel's struct of arrays)."""

    underlying: int
    kind: int
    strike: float
    expiry_yr: float
    size: float
    vol: float
    forward: float


def _shocked_vol(grid: ScenarioGrid, p: Position, m: float, up: float, down: float) -> float:
    dte = p.expiry_yr * DAYS_PER_YEAR
    power = grid.vol_power_short if dte < grid.vol_term_ref_days else grid.vol_power_long
    scale = float((grid.vol_term_ref_days / max(grid.vol_term_floor_days, dte)) ** power)
    shift = m * (up if m > 0.0 else down) * scale
    sigma = p.vol * (1.0 + shift) if grid.vol_shift == "relative" else p.vol + shift
    sigma = max(sigma, grid.vol_floor)
    return max(sigma, grid.vol_up_floor) if m > 0.0 else sigma


def _value(f: float, p: Position, t: float, sigma: float, rate: float) -> float:
    if t <= 0.0:
        payoff = f - p.strike if p.kind == KIND_CALL else p.strike - f
        return max(payoff, 0.0)
    value = black76_one(f=f, k=p.strike, t=t, sigma=sigma, r=rate, is_call=p.kind == KIND_CALL)
    return float(value[0])


def _losses(
    grid: ScenarioGrid, p: Position, rate: float, price_range: float, up: float, down: float
) -> list[float]:
    out = []
    moves = [
        float(x) if fixed else price_range * float(x)
        for x, fixed in zip(grid.price_move, grid.move_is_fraction, strict=True)
    ]
    coin = grid.pnl_currency == "coin"
    if p.kind == KIND_FUTURE:
        for m, x, fixed in zip(moves, grid.price_move, grid.move_is_fraction, strict=True):
            if fixed and grid.extended_futures == "edge":
                m = price_range if x > 0.0 else -price_range  # the range's edge
            # USD P&L size F m; in coin at the scenario's price F (1 + m)
            out.append(-p.size * m / (1.0 + m) if coin else -p.size * p.forward * m)
        return out
    v0 = _value(p.forward, p, p.expiry_yr, p.vol, rate)
    t1 = p.expiry_yr - grid.lookahead_days / DAYS_PER_YEAR
    for m, vm in zip(moves, grid.vol_move, strict=True):
        sigma = _shocked_vol(grid, p, float(vm), up, down)
        f1 = p.forward * (1.0 + m)
        v1 = _value(f1, p, t1, sigma, rate)
        out.append(p.size * (v0 / p.forward - v1 / f1) if coin else p.size * (v0 - v1))
    return out


def _short_options(grid: ScenarioGrid, positions: Sequence[Position]) -> float:
    unit = (lambda p: 1.0) if grid.pnl_currency == "coin" else (lambda p: p.forward)
    options = [p for p in positions if p.kind != KIND_FUTURE and p.size != 0.0]
    if grid.short_option_net == "position":
        return sum(max(-p.size, 0.0) * unit(p) for p in options)
    net: dict[tuple[float, float], float] = {}
    for p in options:  # calls and puts of one expiry and strike netted
        key = (p.expiry_yr, p.strike)
        net[key] = net.get(key, 0.0) + p.size * unit(p)
    return sum(-x for x in net.values() if x < 0.0)


def _delta(p: Position, rate: float) -> float:
    if p.kind == KIND_FUTURE:
        return 1.0
    return black76_one(
        f=p.forward, k=p.strike, t=p.expiry_yr, sigma=p.vol, r=rate,
        is_call=p.kind == KIND_CALL,
    )[1]


def _requirement(
    grid: ScenarioGrid, positions: Sequence[Position], rate: float,
    price_range: float, up: float, down: float,
) -> tuple[float, int]:
    if not positions:
        return 0.0, -1
    total = [0.0] * grid.n_scenarios
    net = gross = long_fut = short_fut = 0.0
    coin = grid.pnl_currency == "coin"
    for p in positions:
        if p.size == 0.0:
            continue
        for s, x in enumerate(_losses(grid, p, rate, price_range, up, down)):
            total[s] += x
        unit = 1.0 if coin else p.forward
        d = p.size * _delta(p, rate) * unit
        net += d
        gross += abs(d)
        if p.kind == KIND_FUTURE:
            long_fut += max(p.size, 0.0) * unit
            short_fut += max(-p.size, 0.0) * unit
    short_opt = _short_options(grid, positions)
    weighted = [float(w) * x for w, x in zip(grid.weight, total, strict=True)]
    worst = max(range(len(weighted)), key=lambda s: (weighted[s], -s))
    scan = max(weighted[worst], 0.0)
    delta = grid.delta_net * abs(net) + grid.delta_hedged * max(0.5 * (gross - abs(net)), 0.0)
    base = scan + delta if grid.delta_rule == "add" else max(scan, delta)
    roll = grid.roll * (long_fut + short_fut if grid.roll_rule == "gross"
                        else min(long_fut, short_fut))
    som = grid.short_option_minimum * short_opt
    if grid.short_option_rule == "add":
        return (base + roll + som) * grid.mm_factor, worst
    return max(base + roll, som) * grid.mm_factor, worst


def account_margin_reference(
    positions: Sequence[Position], *, n_underlyings: int, rate: float, grid: ScenarioGrid,
    price_range: Sequence[float] | None = None, vol_range_up: Sequence[float] | None = None,
    vol_range_down: Sequence[float] | None = None, combine: str = "sum",
    correlation: Sequence[Sequence[float]] | None = None,
    underlying_price: Sequence[float] | None = None,
) -> tuple[float, float, int]:
    """Return ``(mm, im, worst_scenario)`` for one account, plainly.

    Parameters
    ----------
    positions
        The account's positions.
    n_underlyings, rate, grid, price_range, vol_range_up, vol_range_down, combine, correlation
        As in :func:`solvency.core.portfolio.portfolio_margin`.
    underlying_price
        Per underlying; needed by a coin grid (``pnl_currency = "coin"``) to convert
        its requirement to the quote currency.

    Returns
    -------
    tuple
        Maintenance margin, initial margin and the worst scenario of the underlying
        with the largest requirement (-1 without positions).
    """
    reqs: list[float] = []
    worsts: list[int] = []
    for u in range(n_underlyings):
        mine = [p for p in positions if p.underlying == u]
        pr = grid.price_range if price_range is None else price_range[u]
        up = grid.vol_range_up if vol_range_up is None else vol_range_up[u]
        down = grid.vol_range_down if vol_range_down is None else vol_range_down[u]
        req, worst = _requirement(grid, mine, rate, pr, up, down)
        if grid.pnl_currency == "coin" and mine:
            if underlying_price is None:
                msg = "a coin grid needs 'underlying_price' to convert the requirement"
                raise ValueError(msg)
            req *= underlying_price[u]  # coin -> quote at the underlying's price
        reqs.append(req)
        worsts.append(worst)
    if combine == "sum":
        mm = sum(reqs)
    else:
        if correlation is None:
            msg = "combine='correlation' needs a 'correlation' matrix"
            raise ValueError(msg)
        quad = sum(
            correlation[i][j] * reqs[i] * reqs[j]
            for i in range(n_underlyings) for j in range(n_underlyings)
        )
        mm = math.sqrt(max(quad, 0.0))
    held = [u for u in range(n_underlyings) if worsts[u] >= 0]
    top = max(held, key=lambda u: (reqs[u], -u)) if held else -1
    return mm, mm * grid.im_factor, worsts[top] if top >= 0 else -1


def portfolio_margin_reference(
    positions_by_account: Sequence[Sequence[Position]], **kwargs: object
) -> list[tuple[float, float, int]]:
    """Return :func:`account_margin_reference` for each account, in a Python loop.

    Parameters
    ----------
    positions_by_account
        Positions per account.
    **kwargs
        Keyword arguments of :func:`account_margin_reference`.

    Returns
    -------
    list of tuple
        ``(mm, im, worst_scenario)`` per account.
    """
    return [
        account_margin_reference(ps, **kwargs)  # type: ignore[arg-type]
        for ps in positions_by_account
    ]
