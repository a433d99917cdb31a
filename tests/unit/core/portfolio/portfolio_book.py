"""Shared book builder for the portfolio margin tests (a helper module, not a test)."""

from __future__ import annotations

import numpy as np

from solvency.core.portfolio.reference import Position


def book(rows, n_und=1, prices=(60_000.0,)):
    """Return kernel keyword arrays and per-account Position lists from row tuples.

    Each row: (account, underlying, kind, strike, expiry_yr, size, vol).
    """
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 7
    acct = np.asarray(cols[0], np.int64)
    und = np.asarray(cols[1], np.int64)
    fwd = np.asarray(prices, float)[und] if rows else np.zeros(0)
    arrays = dict(
        account=acct, underlying=und, kind=np.asarray(cols[2], np.int8),
        strike=np.asarray(cols[3], float), expiry_yr=np.asarray(cols[4], float),
        size=np.asarray(cols[5], float), vol=np.asarray(cols[6], float),
        underlying_price=np.asarray(prices, float),
    )
    n_acc = int(acct.max()) + 1 if rows else 0
    per = [[] for _ in range(n_acc)]
    for i, r in enumerate(rows):
        per[r[0]].append(Position(r[1], r[2], r[3], r[4], r[5], r[6], float(fwd[i])))
    return arrays, per
