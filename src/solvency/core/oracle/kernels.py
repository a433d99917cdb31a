"""Vectorized source aggregation: a weighted median over a ``[markets x sources]`` array.

One call aggregates every market at once. Each cell holds a source's latest price and
its timestamp; masks come from the arrays themselves (NaN price = never reported), so the
kernel never raises: a bad cell gets a reason code in ``out_code`` and is left out.

Per market the kernel

1. classifies every cell: missing, invalid (non-finite or <= 0), zero weight, from the
   future (``ts > now + max_future_ms``), stale (``now - ts > stale_ms``), jumping (the
   caller's per-source jump flag);
2. takes the weighted median of the remaining *candidates* (first pass) and their spread
   ``(max - min) / median``;
3. drops candidates farther than ``band`` from that median (Binance's index rule: a
   source deviating more than 5 % from the median gets weight 0);
4. takes the weighted median of the survivors: the index. ``out_n`` counts them; the
   caller compares it with its quorum.

``aggregate`` is the numba kernel, ``aggregate_reference`` its plain twin (tests hold them
equal on random inputs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

import numba
import numpy as np

from solvency.core.typing import Float64Array1D, Float64Array2D, Int64Array1D, Int64Array2D

__all__ = [
    "CODE_DEVIATION",
    "CODE_FUTURE",
    "CODE_INVALID",
    "CODE_JUMP",
    "CODE_MISSING",
    "CODE_NAMES",
    "CODE_OK",
    "CODE_STALE",
    "CODE_ZERO_WEIGHT",
    "aggregate",
    "aggregate_reference",
    "weighted_median",
]

CODE_OK: Final = 0
CODE_MISSING: Final = 1
CODE_INVALID: Final = 2
CODE_ZERO_WEIGHT: Final = 3
CODE_FUTURE: Final = 4
CODE_STALE: Final = 5
CODE_JUMP: Final = 6
CODE_DEVIATION: Final = 7

CODE_NAMES: Final = ("ok", "missing", "invalid_price", "zero_weight", "future_timestamp",
                     "stale", "jump", "deviation")
"""Reason names by code, as they appear in provenance and out-events."""

F = TypeVar("F", bound=Callable[..., Any])


def _jit(func: F) -> F:
    # Typed wrapper: numba's decorator is untyped, mypy strict would flag every kernel.
    return cast(F, numba.njit(cache=True, nogil=True, error_model="numpy")(func))


def weighted_median(prices: Float64Array1D, weights: Float64Array1D) -> float:
    """Return the weighted median of ``prices`` (NaN when empty or all weights are zero).

    The lower weighted median: the smallest price whose cumulative weight reaches half
    the total; when the cumulative weight equals half exactly, the mean of that price and
    the next (so equal weights give the ordinary median of an even count).
    """
    return float(_wmedian(prices.copy(), weights.copy(), prices.shape[0]))


@_jit
def _wmedian(p: Float64Array1D, w: Float64Array1D, n: int) -> float:
    # insertion sort by price: n is a handful of sources
    for i in range(1, n):
        pk = p[i]
        wk = w[i]
        j = i - 1
        while j >= 0 and p[j] > pk:
            p[j + 1] = p[j]
            w[j + 1] = w[j]
            j -= 1
        p[j + 1] = pk
        w[j + 1] = wk
    total = 0.0
    for i in range(n):
        total += w[i]
    if n == 0 or not total > 0.0:
        return math.nan
    half = 0.5 * total
    cum = 0.0
    for i in range(n):
        cum += w[i]
        if cum == half and i + 1 < n:
            return float(0.5 * (p[i] + p[i + 1]))
        if cum >= half:
            return float(p[i])
    return float(p[n - 1])


@_jit
def aggregate(prices: Float64Array2D, ts_ms: Int64Array2D, weights: Float64Array2D,
              jump: np.ndarray, now_ms: int, stale_ms: int, max_future_ms: int, band: float,
              out_index: Float64Array1D, out_n: Int64Array1D, out_spread: Float64Array1D,
              out_code: Int64Array2D) -> None:
    """Aggregate every market's sources (see the module docstring); fill the outputs.

    ``out_index[m]`` is NaN and ``out_n[m]`` 0 when no source survives; ``out_spread[m]``
    is 0 with fewer than two candidates.
    """
    n_m, n_s = prices.shape
    p = np.empty(n_s)
    w = np.empty(n_s)
    for m in range(n_m):
        k = 0
        lo = math.inf
        hi = -math.inf
        for s in range(n_s):
            x = prices[m, s]
            t = ts_ms[m, s]
            wt = weights[m, s]
            if math.isnan(x) and t < 0:
                out_code[m, s] = CODE_MISSING
            elif not (math.isfinite(x) and x > 0.0):
                out_code[m, s] = CODE_INVALID
            elif not (wt > 0.0 and math.isfinite(wt)):
                out_code[m, s] = CODE_ZERO_WEIGHT
            elif t > now_ms + max_future_ms:
                out_code[m, s] = CODE_FUTURE
            elif now_ms - t > stale_ms:
                out_code[m, s] = CODE_STALE
            elif jump[m, s]:
                out_code[m, s] = CODE_JUMP
            else:
                out_code[m, s] = CODE_OK
                p[k] = x
                w[k] = wt
                k += 1
                lo = min(lo, x)
                hi = max(hi, x)
        if k == 0:
            out_index[m] = math.nan
            out_n[m] = 0
            out_spread[m] = 0.0
            continue
        med = _wmedian(p, w, k)
        out_spread[m] = (hi - lo) / med if k > 1 else 0.0
        k2 = 0
        for s in range(n_s):
            if out_code[m, s] != CODE_OK:
                continue
            x = prices[m, s]
            if abs(x / med - 1.0) > band:
                out_code[m, s] = CODE_DEVIATION
            else:
                p[k2] = x
                w[k2] = weights[m, s]
                k2 += 1
        out_n[m] = k2
        out_index[m] = _wmedian(p, w, k2) if k2 > 0 else math.nan


def aggregate_reference(prices: Float64Array2D, ts_ms: Int64Array2D, weights: Float64Array2D,
                        jump: np.ndarray, now_ms: int, stale_ms: int, max_future_ms: int,
                        band: float) -> tuple[list[float], list[int], list[float],
                                              list[list[int]]]:
    """Plain-Python twin of :func:`aggregate`: ``(index, n, spread, codes)`` as lists."""
    index: list[float] = []
    counts: list[int] = []
    spreads: list[float] = []
    codes: list[list[int]] = []
    for m in range(prices.shape[0]):
        row_codes = []
        cand: list[tuple[float, float]] = []
        for s in range(prices.shape[1]):
            x, t, wt = float(prices[m, s]), int(ts_ms[m, s]), float(weights[m, s])
            if math.isnan(x) and t < 0:
                c = CODE_MISSING
            elif not (math.isfinite(x) and x > 0):
                c = CODE_INVALID
            elif not (math.isfinite(wt) and wt > 0):
                c = CODE_ZERO_WEIGHT
            elif t > now_ms + max_future_ms:
                c = CODE_FUTURE
            elif now_ms - t > stale_ms:
                c = CODE_STALE
            elif bool(jump[m, s]):
                c = CODE_JUMP
            else:
                c = CODE_OK
                cand.append((x, wt))
            row_codes.append(c)
        if not cand:
            index.append(math.nan)
            counts.append(0)
            spreads.append(0.0)
            codes.append(row_codes)
            continue
        med = _median_py(cand)
        spreads.append((max(x for x, _ in cand) - min(x for x, _ in cand)) / med
                       if len(cand) > 1 else 0.0)
        kept = []
        for s, c in enumerate(row_codes):
            if c != CODE_OK:
                continue
            x = float(prices[m, s])
            if abs(x / med - 1.0) > band:
                row_codes[s] = CODE_DEVIATION
            else:
                kept.append((x, float(weights[m, s])))
        counts.append(len(kept))
        index.append(_median_py(kept) if kept else math.nan)
        codes.append(row_codes)
    return index, counts, spreads, codes


def _median_py(items: list[tuple[float, float]]) -> float:
    items = sorted(items, key=lambda it: it[0])
    total = sum(w for _, w in items)
    half = 0.5 * total
    cum = 0.0
    for i, (x, w) in enumerate(items):
        cum += w
        if cum == half and i + 1 < len(items):
            return 0.5 * (x + items[i + 1][0])
        if cum >= half:
            return x
    return items[-1][0]
