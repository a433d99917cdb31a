"""Greeks exposure: size-weighted sums of option Greeks per account, underlying and venue.

Positions arrive as flat arrays (one row per position): the account and underlying
indices, the signed size in contracts, and the Greeks of ONE contract, already in the
units the sums should carry (see ``docs/greeks_and_hedging.md``):

=========  =========================================================================
column     unit of one contract's value (what the caller passes)
=========  =========================================================================
delta      base units (coin) per contract: Black-76 ``delta x contract size`` for a
           linear option, Deribit's net transaction delta for an inverse one, the
           contract size for a linear perpetual
gamma      base units per quote unit (d delta / dF)
vega       quote currency per 1.00 vol
theta      quote currency per year
=========  =========================================================================

Sums (``size`` weights every row)::

    E[a, u, g] = sum_{i: account_i = a, underlying_i = u} size_i * greek_i[g]
    by_underlying[u, g] = sum_a E[a, u, g]                  (venue-wide, per underlying)

Delta and gamma of different underlyings do not add (BTC and ETH); :func:`cash_exposure`
converts them with the underlying price ``F_u`` to quote-currency amounts that do::

    cash delta = delta F               (quote value of the delta, per 100 % move)
    cash gamma = gamma F^2 / 100       (change of cash delta for a 1 % move)
    vega, theta (and further columns) summed as they are (already quote)

The fast path is one ``np.bincount`` per Greek over the flattened ``(account,
underlying)`` index; :func:`greeks_exposure_slow` is its plain-Python twin. Floats: these
are estimates, never ledger amounts.
"""

from __future__ import annotations

from typing import Final, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from solvency.core.typing import Float64Array1D, Float64Array2D, Int64Array1D

__all__ = [
    "GREEKS",
    "CashExposure",
    "Float64Array3D",
    "GreeksExposure",
    "cash_exposure",
    "greeks_exposure",
    "greeks_exposure_slow",
]

# Kept here until core/typing.py grows a rank-3 alias.
Float64Array3D = np.ndarray[tuple[int, int, int], np.dtype[np.float64]]

GREEKS: Final = ("delta", "gamma", "vega", "theta")
"""Column order of the ``greeks`` matrix (further columns, e.g. rho, are allowed)."""

CASH_GAMMA_MOVE: Final = 0.01
"""Cash gamma is quoted for a 1 % move of the underlying."""


class GreeksExposure(NamedTuple):
    """Size-weighted Greeks sums.

    Attributes
    ----------
    by_account
        ``(n_accounts, n_underlyings, n_greeks)``: per account and underlying.
    by_underlying
        ``(n_underlyings, n_greeks)``: venue-wide, per underlying (sum over accounts).
    """

    by_account: Float64Array3D
    by_underlying: Float64Array2D


class CashExposure(NamedTuple):
    """Quote-currency Greeks summed over underlyings.

    Attributes
    ----------
    by_account
        ``(n_accounts, n_greeks)``: cash delta, cash gamma (per 1 % move), vega, theta, ...
    venue
        ``(n_greeks,)``: the same, summed over every account.
    """

    by_account: Float64Array2D
    venue: Float64Array1D


def _validate(
    account: npt.ArrayLike, underlying: npt.ArrayLike, size: npt.ArrayLike,
    greeks: npt.ArrayLike, n_accounts: int, n_underlyings: int,
) -> tuple[Int64Array1D, Int64Array1D, Float64Array1D, Float64Array2D]:
    acc = np.asarray(account)
    und = np.asarray(underlying)
    q = np.asarray(size, dtype=np.float64)
    g = np.asarray(greeks, dtype=np.float64)
    if n_accounts < 0 or n_underlyings < 0:
        raise ValueError("n_accounts and n_underlyings must be >= 0")
    if acc.ndim != 1 or und.shape != acc.shape or q.shape != acc.shape:
        raise ValueError(f"account, underlying and size must be 1-D of one length, got "
                         f"{acc.shape}, {und.shape}, {q.shape}")
    if g.ndim != 2 or g.shape[0] != acc.shape[0]:
        raise ValueError(f"greeks must be (n_positions, n_greeks), got {g.shape}")
    for name, idx, n in (("account", acc, n_accounts), ("underlying", und, n_underlyings)):
        if idx.size and (not np.issubdtype(idx.dtype, np.integer)
                         or idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"{name}: indices must be integers in [0, {n})")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"size: position {int(np.argmin(np.isfinite(q)))} is not finite")
    bad = ~np.isfinite(g)
    if bad.any():
        row, col = (int(x[0]) for x in np.nonzero(bad))
        raise ValueError(f"greeks: position {row}, column {col} is not finite")
    return (cast(Int64Array1D, acc.astype(np.int64)), cast(Int64Array1D, und.astype(np.int64)),
            cast(Float64Array1D, q), cast(Float64Array2D, g))


def greeks_exposure(
    *, account: npt.ArrayLike, underlying: npt.ArrayLike, size: npt.ArrayLike,
    greeks: npt.ArrayLike, n_accounts: int, n_underlyings: int,
) -> GreeksExposure:
    """Sum size-weighted Greeks per account and underlying, and venue-wide per underlying.

    Parameters
    ----------
    account, underlying
        Integer indices per position, in ``[0, n_accounts)`` and ``[0, n_underlyings)``.
    size
        Signed contracts per position.
    greeks
        ``(n_positions, n_greeks)`` Greeks of one contract, columns in :data:`GREEKS`
        order (see the module docstring for units).
    n_accounts, n_underlyings
        Output dimensions (accounts or underlyings without positions give zeros).

    Returns
    -------
    GreeksExposure
        ``by_account`` ``(A, U, G)`` and ``by_underlying`` ``(U, G)``.

    Raises
    ------
    ValueError
        On shapes that do not match, indices out of range or non-finite values.
    """
    acc, und, q, g = _validate(account, underlying, size, greeks, n_accounts, n_underlyings)
    n_cells = n_accounts * n_underlyings
    flat = acc * n_underlyings + und
    weighted = g * q[:, None]
    out = np.empty((n_cells, g.shape[1]), dtype=np.float64)
    for j in range(g.shape[1]):
        out[:, j] = np.bincount(flat, weights=weighted[:, j], minlength=n_cells)
    by_account: Float64Array3D = out.reshape(n_accounts, n_underlyings, g.shape[1])
    by_underlying: Float64Array2D = by_account.sum(axis=0)
    return GreeksExposure(by_account, by_underlying)


def greeks_exposure_slow(
    *, account: npt.ArrayLike, underlying: npt.ArrayLike, size: npt.ArrayLike,
    greeks: npt.ArrayLike, n_accounts: int, n_underlyings: int,
) -> GreeksExposure:
    """Compute :func:`greeks_exposure` one position at a time (the plain twin for tests).

    Parameters
    ----------
    account, underlying, size, greeks, n_accounts, n_underlyings
        As in :func:`greeks_exposure`.

    Returns
    -------
    GreeksExposure
        The same sums, accumulated in Python floats.
    """
    acc, und, q, g = _validate(account, underlying, size, greeks, n_accounts, n_underlyings)
    n_greeks = g.shape[1]
    cells = [[[0.0] * n_greeks for _ in range(n_underlyings)] for _ in range(n_accounts)]
    totals = [[0.0] * n_greeks for _ in range(n_underlyings)]
    for i in range(acc.shape[0]):
        a, u, qi = int(acc[i]), int(und[i]), float(q[i])
        for j in range(n_greeks):
            cells[a][u][j] += qi * float(g[i, j])
    for a in range(n_accounts):
        for u in range(n_underlyings):
            for j in range(n_greeks):
                totals[u][j] += cells[a][u][j]
    by_account: Float64Array3D = np.array(cells, dtype=np.float64).reshape(
        n_accounts, n_underlyings, n_greeks)
    by_underlying: Float64Array2D = np.array(totals, dtype=np.float64).reshape(
        n_underlyings, n_greeks)
    return GreeksExposure(by_account, by_underlying)


def cash_exposure(by_account: npt.ArrayLike, underlying_price: npt.ArrayLike) -> CashExposure:
    """Convert per-underlying exposure to quote currency and sum over underlyings.

    Parameters
    ----------
    by_account
        ``(n_accounts, n_underlyings, n_greeks)`` from :func:`greeks_exposure`, columns in
        :data:`GREEKS` order (at least delta and gamma).
    underlying_price
        ``(n_underlyings,)`` price ``F`` of each underlying (quote per base), > 0.

    Returns
    -------
    CashExposure
        Cash delta ``delta F``, cash gamma ``gamma F^2 / 100``, other columns unchanged,
        per account and venue-wide.

    Raises
    ------
    ValueError
        If the shapes do not match or a price is not finite and positive.
    """
    e = np.asarray(by_account, dtype=np.float64)
    f = np.asarray(underlying_price, dtype=np.float64)
    if e.ndim != 3 or e.shape[2] < 2 or f.shape != (e.shape[1],):
        raise ValueError(f"by_account {e.shape} and underlying_price {f.shape} do not match")
    if not np.all(np.isfinite(f) & (f > 0.0)):
        raise ValueError("underlying_price: must be finite and > 0")
    scale = np.ones((e.shape[1], e.shape[2]), dtype=np.float64)
    scale[:, 0] = f
    scale[:, 1] = f * f * CASH_GAMMA_MOVE
    per_account = cast(Float64Array2D, (e * scale[None, :, :]).sum(axis=1))
    return CashExposure(per_account, cast(Float64Array1D, per_account.sum(axis=0)))
