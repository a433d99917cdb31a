"""Joint probability of liquidation of one account under correlated moves of its markets.

Each position's own probability (:func:`~solvency.engine.views.account_view`) moves one
market with the others held at their marks. An account in cross margin is liquidated by
the moves of all its markets together; this module draws those moves jointly (log prices
as correlated driftless Brownian motions, the model of the per-position figure) and values
the account in every scenario with the engine's own kernels: positions re-margined by
``core.margin.stress.shock_rows_many``, rows valued by ``evaluate_rows`` (the
liquidator's trigger: collateral below a positive maintenance margin).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from scipy.special import ndtr

from solvency.core.margin.kernels import MK_MARK, S_MARKET
from solvency.core.margin.stress import evaluate_rows_many, shock_rows_many
from solvency.engine.base import EngineState, format_number
from solvency.engine.marks import volatility

__all__ = ["JointError", "JointSpec", "correlation_factor", "joint_liquidation",
           "terminal_probability"]

CHUNK: Final = 8192
"""Scenarios valued per kernel call (bounds the scratch copies of the row sums)."""


class JointError(ValueError):
    """A joint-probability request that cannot be answered (names what is missing)."""


@dataclass(frozen=True, slots=True)
class JointSpec:
    """What :func:`joint_liquidation` needs besides the account: the correlation of the
    markets ``names`` (``matrix``, row-major), where it came from, paths and seed."""

    names: tuple[str, ...]
    matrix: tuple[tuple[float, ...], ...]
    source: str
    paths: int = 100_000
    seed: int = 0


def correlation_factor(matrix: Any, names: Sequence[str]) -> Any:
    """Return ``F`` with ``F @ F.T == matrix``: the Cholesky factor, or for a positive
    semi-definite matrix (a correlation of 1) its eigen-decomposition ``V sqrt(L)``.

    Raises
    ------
    JointError
        A matrix that is not square, symmetric, with a unit diagonal, entries in [-1, 1]
        and positive semi-definite, naming the markets.
    """
    r = np.asarray(matrix, dtype=np.float64)
    n = len(names)
    if r.shape != (n, n) or not np.isfinite(r).all():
        raise JointError(f"correlation: expected a finite {n}x{n} matrix for "
                         f"{', '.join(names)}")
    if not np.allclose(r, r.T, rtol=0.0, atol=1e-12):
        raise JointError("correlation: the matrix is not symmetric")
    if not np.allclose(np.diag(r), 1.0, rtol=0.0, atol=1e-12) or (np.abs(r) > 1.0).any():
        raise JointError("correlation: the diagonal must be 1 and every entry in [-1, 1]")
    try:
        return np.linalg.cholesky(r)
    except np.linalg.LinAlgError:
        pass
    vals, vecs = np.linalg.eigh(r)
    if vals.min() < -1e-9:
        raise JointError(f"correlation: not positive semi-definite (eigenvalue "
                         f"{vals.min():.3g}); markets {', '.join(names)}")
    return vecs * np.sqrt(np.maximum(vals, 0.0))[None, :]


def terminal_probability(mark: float, liq_price: float | None, long: bool,
                         sigma: float, horizon_years: float) -> float:
    """Probability that the mark is beyond the liquidation price at the horizon's end:
    ``Phi(-|ln(liq/mark)| / (sigma sqrt T))`` for a driftless log price, half the first
    passage probability the position view gives (reflection principle: Shreve, *Stochastic
    Calculus for Finance II*, 2004, sec. 3.7.3); 1 when already beyond, 0 without a
    liquidation price."""
    if liq_price is None or not liq_price > 0.0:
        return 0.0
    y = math.log(mark / liq_price) if long else math.log(liq_price / mark)
    if y <= 0.0:
        return 1.0
    s = sigma * math.sqrt(horizon_years)
    return float(ndtr(-y / s)) if s > 0.0 else 0.0


def _moved_markets(state: EngineState, rows: list[int]) -> list[int]:
    """Markets whose move changes the account: those of its positions, and those pricing
    an asset it holds (a coin valued by its perp's mark)."""
    book = state.book
    n_a = len(book.asset_names)
    markets = {int(book.st[s, S_MARKET]) for r in rows for s in book.row_slots(r)}
    for r in rows:
        for a in range(n_a):
            link = int(book.asset_link[a])
            if link >= 0 and book.row_int[r, a] != 0:
                markets.add(link)
    return sorted(markets)


def joint_liquidation(state: EngineState, account: str, *, names: Sequence[str],
                      matrix: Any, horizon_days: float, paths: int, seed: int
                      ) -> dict[str, Any]:
    """Return the probability that ``account`` is below maintenance margin at the end of
    ``horizon_days``, its markets' log prices moving jointly.

    The log return of market ``i`` over ``T`` is ``sigma_i sqrt(T) Z_i`` with ``Z`` normal,
    unit variances and correlation ``matrix`` (over the markets ``names``; the account's
    markets are picked from it), ``sigma_i`` the market's annualized volatility as the
    position view uses it. ``paths`` scenarios are drawn from ``numpy.random.default_rng(
    seed)`` (same seed, same answer); in each every moved market's mark and the coins it
    prices move by ``exp`` of the return, and the account's rows are valued by the engine's
    kernels. The estimate is the share of scenarios in which a row (the cross account, or
    one isolated position) is liquidatable, with its Monte Carlo standard error
    ``sqrt(p (1 - p) / paths)``. Terminal, not first passage: a path that dips below and
    recovers before the horizon is not counted (for one market the first-passage figure is
    twice this, by the reflection principle).

    Raises
    ------
    JointError
        Options or portfolio margin in the account (their repricing is the scenario
        grid's), a market missing from ``names``, a bad matrix or path count.
    """
    if paths < 1:
        raise JointError("paths: must be >= 1")
    book = state.book
    rows = state.rows_of(account)
    for r in rows:
        if not math.isnan(book.pm[r, 0]):
            raise JointError("joint probability: a portfolio-margined account is valued "
                             "by its scenario grid (solvency margin --mode cross or "
                             "isolated, or --shock)")
    markets = _moved_markets(state, rows)
    for m in markets:
        if book.instruments[m].is_option:
            raise JointError(f"joint probability: {book.market_names[m]} is an option; "
                             "options are repriced by the scenario grid, not here")
    index = {n: i for i, n in enumerate(names)}
    missing = [book.market_names[m] for m in markets if book.market_names[m] not in index]
    if missing:
        raise JointError(f"correlation: no entry for {', '.join(missing)} (markets given: "
                         f"{', '.join(names) or 'none'})")
    pick = [index[book.market_names[m]] for m in markets]
    full = np.asarray(matrix, dtype=np.float64)
    sub = full[np.ix_(pick, pick)] if markets else np.zeros((0, 0))
    moved = [book.market_names[m] for m in markets]
    factor = correlation_factor(sub, moved)
    sigma = np.array([volatility(state, m) for m in markets])
    scale = sigma * math.sqrt(horizon_days / 365.0)
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, paths, CHUNK):
        k = min(CHUNK, paths - start)
        z = rng.standard_normal((k, len(markets))) @ factor.T
        hits += int(_liquidated(state, rows, markets, np.exp(z * scale[None, :])).sum())
    p = hits / paths
    return {
        "probability": format_number(p),
        "standard_error": format_number(math.sqrt(p * (1.0 - p) / paths)),
        "paths": paths,
        "seed": seed,
        "measure": "terminal",
        "markets": moved,
        "volatility": [format_number(float(s)) for s in sigma],
        "correlation": [[format_number(float(x)) for x in row] for row in sub],
    }


def _liquidated(state: EngineState, rows: list[int], markets: list[int],
                growth: Any) -> Any:
    """Per scenario (row of ``growth``: each moved market's price ratio), whether a row of
    ``rows`` is liquidatable at the moved marks (engine kernels, book untouched)."""
    book = state.book
    k = growth.shape[0]
    n = len(book.rows)
    base = book.mk[:, MK_MARK]
    marks = np.repeat(base[None, :], k, axis=0)
    marks[:, markets] = base[markets][None, :] * growth
    px = np.repeat(book.asset_price[None, :], k, axis=0)
    col = {m: j for j, m in enumerate(markets)}
    for a in range(len(book.asset_names)):
        link = int(book.asset_link[a])
        if link in col:
            px[:, a] = book.asset_price[a] * growth[:, col[link]]
    row2 = np.repeat(book.row_int[None, :n], k, axis=0)
    scratch = np.zeros((k, n))
    shock_rows_many(book.n_slots, book.st, row2, marks, book.mk, book.mki, book.tiers,
                    book.ascale, px, scratch, np.zeros((k, n)))
    arr = np.array(rows, dtype=np.int64)
    out = np.empty((k, len(rows), 4))
    evaluate_rows_many(arr, row2, px, book.ascale, book.atier_start, book.atier_count,
                       book.atiers, out, book.pm)
    coll, mm = out[:, :, 1], out[:, :, 3]
    return ((coll < mm) & (mm > 0.0)).any(axis=1)

