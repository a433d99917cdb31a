"""Vectorized margin kernels over all positions and accounts (numba, with plain twins).

Layout (struct of arrays, owned by ``engine/state.py``):

* positions live in *slots*: ``slot_market[s]``, ``slot_lots[s]`` (signed lots), and a
  per-slot cache ``cache[s] = (value, notional, initial, maintenance)`` in the settlement
  asset of the slot's market;
* each margin account (*row*) links its slots: ``row_first[r]`` and ``slot_next[s]``
  (-1 ends the list);
* balances ``bal[r, a]`` are float64 mirrors of the exact ledger, per asset.

The market table ``mk[m, MK_*]`` and integer table ``mki[m, MKI_*]`` hold each market's
contract terms, mark and unified risk row; ``tiers[t] = (floor, mmr, imr, mm_amount,
im_amount)``. See :mod:`solvency.core.margin.models` for which venue rule each column
reproduces. numba compiles the loops (numpy alone needs several passes and temporaries
per position: measured 3-4x slower on the 1,000,000-account benchmark); every kernel has
a plain-Python twin in :mod:`solvency.core.margin.reference` that the tests hold it to.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

import numba
import numpy as np

from solvency.core.typing import (
    Float64Array1D,
    Float64Array2D,
    Int32Array1D,
    Int64Array1D,
    Int64Array2D,
)

__all__ = [
    "MKI_SETTLE",
    "MKI_TIER_COUNT",
    "MKI_TIER_START",
    "MK_COLUMNS",
    "MK_CV",
    "MK_IMF",
    "MK_IM_SLOPE",
    "MK_KIND",
    "MK_LOT",
    "MK_MARK",
    "MK_MM_SLOPE",
    "MK_OI_CONTRACTS",
    "MK_OI_LOWER",
    "MK_OI_UPPER",
    "OUT_COLLATERAL",
    "OUT_EQUITY",
    "OUT_IM",
    "OUT_MM",
    "aggregate_rows",
    "liquidation_prices",
    "refresh_slots",
    "requirement",
    "row_health_at",
    "row_whatif",
]

MK_KIND: Final = 0  # 0 linear, 1 inverse
MK_CV: Final = 1  # contract size
MK_LOT: Final = 2  # contracts per lot
MK_MARK: Final = 3
MK_OI_LOWER: Final = 4
MK_OI_UPPER: Final = 5
MK_OI_CONTRACTS: Final = 6  # open interest (one side) in contracts
MK_IMF: Final = 7
MK_IM_SLOPE: Final = 8
MK_MM_SLOPE: Final = 9
MK_COLUMNS: Final = 10

MKI_TIER_START: Final = 0
MKI_TIER_COUNT: Final = 1
MKI_SETTLE: Final = 2

OUT_EQUITY: Final = 0
OUT_COLLATERAL: Final = 1
OUT_IM: Final = 2
OUT_MM: Final = 3

F = TypeVar("F", bound=Callable[..., Any])


def _jit(func: F) -> F:
    # Typed wrapper: numba's decorator is untyped, mypy strict would flag every kernel.
    return cast(F, numba.njit(cache=True, nogil=True)(func))


@_jit
def requirement(
    kind: float, cv: float, lot: float, mark: float, lots: float, t0: int, tn: int,
    tiers: Float64Array2D, oi_lower: float, oi_upper: float, oi_contracts: float,
    imf: float, im_slope: float, mm_slope: float,
) -> tuple[float, float, float, float]:
    """Value, notional, initial and maintenance margin of one position (settle units).

    Linear: ``value = contracts * cv * mark``; inverse: ``value = -contracts * cv / mark``
    (a long inverse contract is short coin-denominated USD). Notional is ``|value|``.
    Rates: bracket by notional, plus size slope (Deribit), size premium (Drift), then the
    open-interest scaling of the initial rate (dYdX); each capped at 1.
    """
    contracts = lots * lot
    if kind == 0.0:
        value = contracts * cv * mark
        size_base = abs(contracts) * cv
        oi_notional = oi_contracts * cv * mark
    else:
        value = -contracts * cv / mark
        size_base = abs(value)
        oi_notional = oi_contracts * cv / mark
    notional = abs(value)
    t = t0
    for j in range(t0 + 1, t0 + tn):
        if notional >= tiers[j, 0]:
            t = j
        else:
            break
    mmr = tiers[t, 1] + mm_slope * size_base
    imr = tiers[t, 2] + im_slope * size_base
    if imf > 0.0:
        root = math.sqrt(size_base)
        mmr = max(mmr, 0.8 * mmr + imf * root)
        imr = max(imr, 0.8 * imr + imf * root)
    if oi_upper > 0.0 and oi_notional > oi_lower:
        if oi_notional >= oi_upper:
            imr = 1.0
        else:
            imr = imr + (1.0 - imr) * (oi_notional - oi_lower) / (oi_upper - oi_lower)
    mmr = min(mmr, 1.0)
    imr = min(imr, 1.0)
    mm = notional * mmr - tiers[t, 3]
    im = notional * imr - tiers[t, 4]
    return value, notional, im, mm


@_jit
def refresh_slots(
    slots: Int64Array1D, slot_market: Int32Array1D, slot_lots: Int64Array1D,
    mk: Float64Array2D, mki: Int64Array2D, tiers: Float64Array2D, cache: Float64Array2D,
) -> None:
    """Recompute ``cache[s]`` for the given slots at the markets' current marks."""
    for i in range(slots.shape[0]):
        s = slots[i]
        m = slot_market[s]
        v, n, im, mm = requirement(
            mk[m, MK_KIND], mk[m, MK_CV], mk[m, MK_LOT], mk[m, MK_MARK], float(slot_lots[s]),
            mki[m, MKI_TIER_START], mki[m, MKI_TIER_COUNT], tiers, mk[m, MK_OI_LOWER],
            mk[m, MK_OI_UPPER], mk[m, MK_OI_CONTRACTS], mk[m, MK_IMF], mk[m, MK_IM_SLOPE],
            mk[m, MK_MM_SLOPE],
        )
        cache[s, 0] = v
        cache[s, 1] = n
        cache[s, 2] = im
        cache[s, 3] = mm


@_jit
def _weighted(value_usd: float, a: int, atier_start: Int64Array1D, atier_count: Int64Array1D,
              atiers: Float64Array2D) -> float:
    # Positive value counts tier by tier at its weight; a liability counts in full.
    if value_usd <= 0.0:
        return value_usd
    total = 0.0
    t0 = atier_start[a]
    tn = atier_count[a]
    for j in range(t0, t0 + tn):
        lo = atiers[j, 0]
        if value_usd <= lo:
            break
        hi = atiers[j + 1, 0] if j + 1 < t0 + tn else math.inf
        total += (min(value_usd, hi) - lo) * atiers[j, 1]
    return total


@_jit
def aggregate_rows(
    rows: Int64Array1D, row_first: Int64Array1D, row_weighted: Int64Array1D,
    slot_next: Int64Array1D, slot_market: Int32Array1D, mki: Int64Array2D,
    cache: Float64Array2D, bal: Float64Array2D, asset_price: Float64Array1D,
    atier_start: Int64Array1D, atier_count: Int64Array1D, atiers: Float64Array2D,
    out: Float64Array2D,
) -> None:
    """Per row: equity, weighted collateral, initial and maintenance margin, all in USD.

    ``net[a] = bal[a] + sum(value of positions settled in a)``; equity is
    ``sum(net[a] * price[a])``; collateral weighs each positive ``net[a]`` by the asset's
    tiered weights (cross rows only; isolated rows count at 1); margins are
    ``sum(requirement * price[settle])``.
    """
    n_assets = bal.shape[1]
    net = np.zeros(n_assets)
    for i in range(rows.shape[0]):
        r = rows[i]
        for a in range(n_assets):
            net[a] = bal[r, a]
        im = 0.0
        mm = 0.0
        s = row_first[r]
        while s >= 0:
            a = mki[slot_market[s], MKI_SETTLE]
            px = asset_price[a]
            net[a] += cache[s, 0]
            im += cache[s, 2] * px
            mm += cache[s, 3] * px
            s = slot_next[s]
        equity = 0.0
        collateral = 0.0
        for a in range(n_assets):
            v = net[a] * asset_price[a] if net[a] != 0.0 else 0.0
            equity += v
            if row_weighted[r] != 0:
                collateral += _weighted(v, a, atier_start, atier_count, atiers)
            else:
                collateral += v
        out[i, 0] = equity
        out[i, 1] = collateral
        out[i, 2] = im
        out[i, 3] = mm


@_jit
def row_health_at(
    r: int, m: int, price: float, row_first: Int64Array1D, row_weighted: Int64Array1D,
    slot_next: Int64Array1D, slot_market: Int32Array1D, slot_lots: Int64Array1D,
    mk: Float64Array2D, mki: Int64Array2D, tiers: Float64Array2D, bal: Float64Array2D,
    asset_price: Float64Array1D, asset_link: Int64Array1D, atier_start: Int64Array1D,
    atier_count: Int64Array1D, atiers: Float64Array2D,
) -> float:
    """Collateral minus maintenance margin (USD) of row ``r`` if market ``m`` marked at
    ``price``, every asset valued by that market moving in proportion, all else fixed.

    This is the function whose sign decides liquidation (``< 0``), evaluated with the same
    :func:`requirement` as the engine, so tiers are re-selected at the trial price.
    """
    n_assets = bal.shape[1]
    scale = price / mk[m, MK_MARK]
    px = np.empty(n_assets)
    net = np.empty(n_assets)
    for a in range(n_assets):
        px[a] = asset_price[a] * scale if asset_link[a] == m else asset_price[a]
        net[a] = bal[r, a]
    mm = 0.0
    s = row_first[r]
    while s >= 0:
        k = slot_market[s]
        mark = price if k == m else mk[k, MK_MARK]
        v, _n, _im, req = requirement(
            mk[k, MK_KIND], mk[k, MK_CV], mk[k, MK_LOT], mark, float(slot_lots[s]),
            mki[k, MKI_TIER_START], mki[k, MKI_TIER_COUNT], tiers, mk[k, MK_OI_LOWER],
            mk[k, MK_OI_UPPER], mk[k, MK_OI_CONTRACTS], mk[k, MK_IMF], mk[k, MK_IM_SLOPE],
            mk[k, MK_MM_SLOPE],
        )
        a = mki[k, MKI_SETTLE]
        net[a] += v
        mm += req * px[a]
        s = slot_next[s]
    collateral = 0.0
    for a in range(n_assets):
        v = net[a] * px[a] if net[a] != 0.0 else 0.0
        if row_weighted[r] != 0:
            collateral += _weighted(v, a, atier_start, atier_count, atiers)
        else:
            collateral += v
    return collateral - mm


@_jit
def liquidation_prices(
    rows: Int64Array1D, slots: Int64Array1D, row_first: Int64Array1D,
    row_weighted: Int64Array1D, slot_next: Int64Array1D, slot_market: Int32Array1D,
    slot_lots: Int64Array1D, mk: Float64Array2D, mki: Int64Array2D, tiers: Float64Array2D,
    bal: Float64Array2D, asset_price: Float64Array1D, asset_link: Int64Array1D,
    atier_start: Int64Array1D, atier_count: Int64Array1D, atiers: Float64Array2D,
    out: Float64Array1D,
) -> None:
    """Mark of each slot's market at which its row's health crosses zero (NaN if never).

    From the current mark, step away geometrically in the adverse direction (down for a
    long, up for a short; the favourable one if the row is already below maintenance) to
    bracket the nearest sign change of :func:`row_health_at`, then bisect to float
    precision. Searched range: mark x e^-25 .. mark x e^14.
    """
    for i in range(slots.shape[0]):
        r = rows[i]
        s = slots[i]
        m = slot_market[s]
        mark0 = mk[m, MK_MARK]
        lots = slot_lots[s]
        if lots == 0:
            out[i] = math.nan
            continue
        h0 = row_health_at(r, m, mark0, row_first, row_weighted, slot_next, slot_market,
                           slot_lots, mk, mki, tiers, bal, asset_price, asset_link,
                           atier_start, atier_count, atiers)
        down = lots > 0
        if h0 < 0.0:
            down = not down
        lo_x = 0.0
        h_lo = h0
        found = False
        hi_x = 0.0
        x = 1e-5
        limit = 25.0 if down else 14.0
        while x <= limit:
            p = mark0 * math.exp(-x if down else x)
            h = row_health_at(r, m, p, row_first, row_weighted, slot_next, slot_market,
                              slot_lots, mk, mki, tiers, bal, asset_price, asset_link,
                              atier_start, atier_count, atiers)
            if (h < 0.0) != (h_lo < 0.0):
                hi_x = x
                found = True
                break
            lo_x = x
            h_lo = h
            x *= 2.0
        if not found:
            out[i] = math.nan
            continue
        sign = -1.0 if down else 1.0
        a_p = mark0 * math.exp(sign * lo_x)
        b_p = mark0 * math.exp(sign * hi_x)
        neg_lo = h_lo < 0.0
        for _ in range(200):
            mid = 0.5 * (a_p + b_p)
            if not min(a_p, b_p) < mid < max(a_p, b_p):
                break
            h = row_health_at(r, m, mid, row_first, row_weighted, slot_next, slot_market,
                              slot_lots, mk, mki, tiers, bal, asset_price, asset_link,
                              atier_start, atier_count, atiers)
            if (h < 0.0) == neg_lo:
                a_p = mid
            else:
                b_p = mid
        # b_p is the first price on the other side: liquidatable if we started healthy.
        out[i] = b_p if not neg_lo else a_p


@_jit
def row_whatif(
    r: int, weighted: int, m: int, delta_lots: float, oi_contracts_m: float,
    dbal: Float64Array1D, row_first: Int64Array1D, slot_next: Int64Array1D,
    slot_market: Int32Array1D, slot_lots: Int64Array1D, mk: Float64Array2D,
    mki: Int64Array2D, tiers: Float64Array2D, bal: Float64Array2D,
    asset_price: Float64Array1D, atier_start: Int64Array1D, atier_count: Int64Array1D,
    atiers: Float64Array2D, out: Float64Array1D,
) -> None:
    """Equity, collateral, IM and MM (USD) of row ``r`` (``-1``: a new, empty row) if its
    position in market ``m`` changed by ``delta_lots``, its balances by ``dbal``, and the
    market's open interest were ``oi_contracts_m``. Mutates nothing: pre-trade checks and
    withdrawals decide on it before any state changes.
    """
    n_assets = dbal.shape[0]
    net = np.empty(n_assets)
    for a in range(n_assets):
        net[a] = dbal[a] + (bal[r, a] if r >= 0 else 0.0)
    im = 0.0
    mm = 0.0
    seen = False
    s = row_first[r] if r >= 0 else -1
    while True:
        if s >= 0:
            k = slot_market[s]
            lots = float(slot_lots[s])
            if k == m:
                lots += delta_lots
                seen = True
            nxt = slot_next[s]
        elif not seen and delta_lots != 0.0:
            k = m
            lots = delta_lots
            seen = True
            nxt = -1
        else:
            break
        oi = oi_contracts_m if k == m else mk[k, MK_OI_CONTRACTS]
        v, _n, req_im, req_mm = requirement(
            mk[k, MK_KIND], mk[k, MK_CV], mk[k, MK_LOT], mk[k, MK_MARK], lots,
            mki[k, MKI_TIER_START], mki[k, MKI_TIER_COUNT], tiers, mk[k, MK_OI_LOWER],
            mk[k, MK_OI_UPPER], oi, mk[k, MK_IMF], mk[k, MK_IM_SLOPE], mk[k, MK_MM_SLOPE],
        )
        a = mki[k, MKI_SETTLE]
        px = asset_price[a]
        net[a] += v
        im += req_im * px
        mm += req_mm * px
        s = nxt
    equity = 0.0
    collateral = 0.0
    for a in range(n_assets):
        v = net[a] * asset_price[a]
        if net[a] == 0.0:  # an asset without a price yet counts nothing if not held
            v = 0.0
        equity += v
        if weighted != 0:
            collateral += _weighted(v, a, atier_start, atier_count, atiers)
        else:
            collateral += v
    out[0] = equity
    out[1] = collateral
    out[2] = im
    out[3] = mm
