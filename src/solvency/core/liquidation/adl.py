"""Auto-deleveraging (ADL): ranking, quintile lights, eligibility, exact allocation;
and the two socialized-loss rules (pro rata over winners; Drift's funding index).

Scores are floats (they only order the queue); allocations and charges are exact
integers that sum to what was asked, so the engine can post them as ledger transfers.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from solvency.core.liquidation.policy import AdlRanking
from solvency.core.typing import BoolArray1D, Float64Array1D, Int64Array1D

__all__ = [
    "adl_allocate",
    "adl_eligible",
    "adl_lights",
    "adl_order",
    "adl_quintiles",
    "adl_scores",
    "allocate_pro_rata",
    "drift_funding_rate_delta",
    "socialize_funding_index",
    "socialize_pro_rata_winners",
]

# Drift precisions (programs/drift/src/math/constants.rs).
_DRIFT_AMM_RESERVE_PRECISION = 10**9
_DRIFT_FUNDING_RATE_TO_QUOTE_PRECISION_PRECISION_RATIO = 1_000


def adl_scores(
    ranking: AdlRanking, *, mark_value: Float64Array1D, entry_value: Float64Array1D,
    bankrupt_value: Float64Array1D, margin_ratio: Float64Array1D | None = None,
) -> Float64Array1D:
    """Return each position's ADL score: higher is deleveraged first (vectorized).

    ``bitmex``: ``pnl% x leverage`` if ``pnl% > 0`` else ``pnl% / leverage``, with
    ``leverage = |mark value| / (mark value - bankrupt value)`` and ``pnl% = (mark value
    - entry value) / |entry value|`` (BitMEX app/autoDeleveraging). ``binance``:
    ``pnl% x margin ratio`` if ``pnl% > 0`` else ``pnl% / margin ratio`` (draft:
    Binance's ADL queue by profit and margin ratio). ``pro_rata``: 1 for every position
    (allocation then by size). Values are signed (shorts negative), settle units.

    Parameters
    ----------
    ranking
        The venue's rule.
    mark_value, entry_value, bankrupt_value
        Position value at the mark, at the average entry price, at its bankruptcy price.
    margin_ratio
        ``binance`` only: the account's maintenance margin / margin balance.
    """
    if ranking in {"pro_rata", "none"}:
        return np.ones_like(mark_value)
    pnl = np.divide(mark_value - entry_value, np.abs(entry_value),
                    out=np.zeros_like(mark_value), where=entry_value != 0)
    if ranking == "bitmex":
        gap = mark_value - bankrupt_value
        lev = np.divide(np.abs(mark_value), gap, out=np.full_like(mark_value, np.inf),
                        where=gap > 0)
    else:
        if margin_ratio is None:
            raise ValueError("binance ranking needs margin_ratio")
        lev = margin_ratio
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(pnl > 0, pnl * lev, np.divide(pnl, lev))
    return np.nan_to_num(score, nan=0.0, posinf=np.finfo(np.float64).max,
                         neginf=-np.finfo(np.float64).max)


def adl_order(scores: Float64Array1D) -> Int64Array1D:
    """Return position indices in queue order: highest score first, ties by index."""
    return np.lexsort((np.arange(scores.shape[0]), -scores)).astype(np.int64)


def adl_quintiles(scores: Float64Array1D, size: Int64Array1D) -> Int64Array1D:
    """Return each position's queue quintile 1..5 (1: deleveraged first).

    Positions sorted by score; quintile ``ceil(5 x cumulative size / total size)``, the
    cumulative size including the position itself (BitMEX autoDeleveragingExamples: six
    longs of 10, 20, 30, 10, 20, 10 ranked 6, 5, 4, 3, 2, 1 sit at 20%, 40%, 60%, 80%,
    80%, 100%). Size 0 everywhere: all 5.
    """
    n = scores.shape[0]
    out = np.full(n, 5, dtype=np.int64)
    absz = np.abs(size).astype(np.int64)
    total = int(absz.sum())
    if n == 0 or total == 0:
        return out
    order = adl_order(scores)
    cum = np.cumsum(absz[order])
    # integer ceil(5 * cum / total), exact
    q = -((-5 * cum) // total)
    out[order] = np.clip(q, 1, 5)
    return out


def adl_lights(quintiles: Int64Array1D) -> Int64Array1D:
    """Return the indicator lights 1..5 (5 lit: first in the queue) from quintiles."""
    return (6 - quintiles).astype(np.int64)


def adl_eligible(*, lots: Int64Array1D, entry_price: Float64Array1D, mark_price: float,
                 exec_price: float, liquidated_long: bool) -> BoolArray1D:
    """Return which positions may be deleveraged against a liquidated position.

    Only the opposite side (shorts against a liquidated long and vice versa), only in
    profit at the mark, and still in profit when closed at the execution (bankruptcy)
    price: ADL never makes a losing position realize a loss.
    """
    side = np.sign(lots)
    opposite = side == (-1 if liquidated_long else 1)
    pnl_mark = side * (mark_price - entry_price)
    pnl_exec = side * (exec_price - entry_price)
    out: BoolArray1D = opposite & (pnl_mark > 0) & (pnl_exec > 0)
    return out


SMALL_QUEUE = 32
"""Queue heads up to this many positions are allocated in Python ints (0: always numpy)."""


def adl_allocate(need_lots: int, *, lots: Int64Array1D, order: Int64Array1D,
                 eligible: BoolArray1D) -> Int64Array1D:
    """Return lots to deleverage per position, taking the queue in ``order``.

    Each eligible position in turn gives up to its whole size until ``need_lots`` is
    met (BitMEX: "Account 2 will have their entire position closed, while the remaining
    contracts are assigned to account 5"). Exact: the result sums to
    ``min(need, eligible size)`` and is never above a position's size.
    """
    if need_lots < 0:
        raise ValueError("need_lots must be non-negative")
    n = order.shape[0]
    if n <= SMALL_QUEUE and n == lots.shape[0]:
        # the engine passes the head of the queue, a few positions: the same walk in
        # Python ints (seven numpy calls on two-element arrays measured ~20 us a step)
        ls, el = lots.tolist(), eligible.tolist()
        small = [0] * n
        left = need_lots
        for i in order.tolist():
            if left <= 0:
                break
            if el[i]:
                k = min(abs(ls[i]), left)
                small[i] = k
                left -= k
        return np.array(small, dtype=np.int64)
    avail = np.where(eligible, np.abs(lots), 0).astype(np.int64)
    q = avail[order]
    before = np.cumsum(q) - q
    take = np.clip(need_lots - before, 0, q)
    out = np.zeros_like(avail)
    out[order] = take
    return out


def _hamilton(total: int, weights: list[int]) -> list[int]:
    # Largest remainder split of total over weights (sum > 0), Python ints (no overflow).
    ws = sum(weights)
    parts = [total * x // ws for x in weights]
    rems = [total * x % ws for x in weights]
    rest = total - sum(parts)
    for i in sorted(range(len(weights)), key=lambda i: (-rems[i], i))[:rest]:
        parts[i] += 1
    return parts


def allocate_pro_rata(total: int, weights: Int64Array1D, *,
                      caps: Int64Array1D | None = None) -> Int64Array1D:
    """Split the integer ``total`` in proportion to integer ``weights``, exactly.

    Largest remainder (Hamilton): floors first, the leftover units one each to the
    largest remainders, ties by index; the parts sum to ``total`` when any weight is
    positive (all zero: nothing is allocated). With ``caps``, no part exceeds its cap:
    what does not fit is re-spread over the others, and the parts sum to
    ``min(total, sum of caps over positive weights)``.
    """
    w = [int(x) for x in np.asarray(weights, dtype=np.int64).tolist()]
    if total < 0 or any(x < 0 for x in w):
        raise ValueError("total and weights must be non-negative")
    out = [0] * len(w)
    if caps is None:
        if sum(w) > 0:
            out = _hamilton(total, w)
        return np.array(out, dtype=np.int64)
    cap = [int(x) for x in np.asarray(caps, dtype=np.int64).tolist()]
    left = total
    active = [i for i, x in enumerate(w) if x > 0 and cap[i] > 0]
    while left > 0 and active:
        parts = _hamilton(left, [w[i] for i in active])
        for i, p in zip(active, parts, strict=True):
            give = min(p, cap[i] - out[i])
            out[i] += give
            left -= give
        active = [i for i in active if out[i] < cap[i]]
    return np.array(out, dtype=np.int64)


def socialize_pro_rata_winners(loss_quanta: int, *, profit_quanta: Int64Array1D) -> Int64Array1D:
    """Return each winner's charge to absorb a loss, pro rata to profit (Deribit-style).

    Only positive profits take part; each charge is at most that profit, the charges sum
    to ``min(loss, total profit)`` exactly (largest remainder, ties by index). What is
    left is bad debt the caller records.
    """
    p = np.maximum(np.asarray(profit_quanta, dtype=np.int64), 0)
    return allocate_pro_rata(max(loss_quanta, 0), p, caps=p)


def socialize_funding_index(loss_quanta: int, *, lots: Int64Array1D) -> tuple[Fraction,
                                                                                Int64Array1D]:
    """Return the per-lot index delta and each position's charge to absorb a loss.

    Drift resolves a perp bankruptcy by moving the cumulative funding rate so that every
    unit of base, long or short, pays ``loss / (|longs| + |shorts|)``
    (``calculate_funding_rate_deltas_to_resolve_bankruptcy``). Charges are
    ``ceil(loss x |lots| / total)``, rounded up so their sum covers the loss (the
    surplus, less than one quantum per position, goes to the rounding account).
    """
    a = np.abs(np.asarray(lots, dtype=np.int64))
    total = int(a.sum())
    if total == 0:
        raise ValueError("cannot socialize over zero open interest")
    loss = max(loss_quanta, 0)
    if loss * int(a.max()) < 2**62:
        # exact in int64 (the product is bounded): one vectorized ceil division
        charges = -((-loss * a) // total)
    else:
        # Python ints when loss x lots could pass int64
        charges = np.array([-((-loss * int(x)) // total) for x in a.tolist()],
                           dtype=np.int64)
    return Fraction(loss, total), charges


def drift_funding_rate_delta(loss: int, *, base_long: int, base_short: int) -> int:
    """Return Drift's cumulative funding rate delta that resolves a bankruptcy loss.

    ``ceil(|loss| x AMM_RESERVE_PRECISION / (|base long| + |base short|)) x
    FUNDING_RATE_TO_QUOTE_PRECISION_PRECISION_RATIO`` (Drift units; rounded up so the
    market collects at least the loss; protocol-v2 math/liquidation.rs tests
    ``total_base_asset_amount_not_zero``).
    """
    total = abs(base_long) + abs(base_short)
    if total == 0:
        raise ValueError("cannot resolve a bankruptcy with zero base asset amount")
    per = -((-abs(loss) * _DRIFT_AMM_RESERVE_PRECISION) // total)
    return per * _DRIFT_FUNDING_RATE_TO_QUOTE_PRECISION_PRECISION_RATIO
