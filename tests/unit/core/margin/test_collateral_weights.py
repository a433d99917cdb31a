"""Collateral weights of a cross row: a coin backs positions settled in itself at par.

Sources (read 2025): Binance FAQ 'Leverage and Margin in Coin-Margined Futures Contracts'
("In Cross Margin Mode, the margin can only be shared with the same type of asset ... all
BTC in the COIN-M Futures wallet can be used for all BTC based contracts": no haircut) and
'What Is Multi-Assets Mode' (BTC used as margin for USDⓈ-M contracts: 95 % collateral
value); BitMEX 'What Asset Margining Modes are there' (XBT margin for XBT settlement 0 %
haircut, for USDT settlement 5 %). The three valuations (the inlined ``evaluate_rows``,
``usd_from_quanta`` behind the liquidation search and pre-trade checks, and the plain
twin ``value_row_reference``) are held to the same hand-computed numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

from solvency.core.margin.kernels import evaluate_rows, usd_from_quanta, value_row_reference

# assets: 0 USDT (1e6 quanta, $1, weight 1), 1 BTC (1e8 quanta, $100,000, weight 0.95)
PX = np.array([1.0, 100000.0])
ASCALE = np.array([1e6, 1e8])
ATIER_START = np.array([0, 1], dtype=np.int64)
ATIER_COUNT = np.array([1, 1], dtype=np.int64)
ATIERS = np.array([[0.0, 1.0], [0.0, 0.95]])

# BTC net 0.17368421 (0.2 BTC wallet, short 500 x 100 USD BTCUSD_PERP from 95,000 at
# 100,000), its own IM 0.004 BTC, MM 0.002 BTC; USDT: 10,000 wallet, IM 1,000, MM 500
BTC_NET = 17_368_421
CASES = [
    # id, weighted, (bal, val, im, mm) quanta per asset [USDT, BTC], collateral USD
    ("coin-only-at-par", 1, ([0, 20_000_000], [0, BTC_NET - 20_000_000],
                             [0, 400_000], [0, 200_000]), 17368.421),
    # BTC backs its own 0.004 BTC IM at par, the rest backs USDT requirements at 95 %:
    # 400 + 0.95 x (17,368.421 - 400) + 10,000 = 26,520.0
    ("coin-and-usdt-positions", 1, ([10_000_000_000, 20_000_000],
                                    [0, BTC_NET - 20_000_000],
                                    [1_000_000_000, 400_000], [500_000_000, 200_000]),
     400 + 0.95 * (17368.421 - 400) + 10000),
    # BTC as collateral for USDT positions only: 95 % of all of it
    ("coin-backs-usdt-only", 1, ([0, BTC_NET], [0, 0], [1_000_000_000, 0],
                                 [500_000_000, 0]), 0.95 * 17368.421),
    # no requirement anywhere: weighted as before (nothing to back)
    ("no-positions", 1, ([0, BTC_NET], [0, 0], [0, 0], [0, 0]), 0.95 * 17368.421),
    # isolated rows are never weighted
    ("isolated", 0, ([0, BTC_NET], [0, 0], [1_000_000_000, 0], [500_000_000, 0]),
     17368.421),
]


@pytest.mark.parametrize(("weighted", "amounts", "collateral_usd"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_collateral_of_a_row(weighted: int, amounts: tuple[list[int], ...],
                             collateral_usd: float) -> None:
    bal, val, im, mm = (np.array(x, dtype=np.int64) for x in amounts)
    row_int = np.zeros((1, 10), dtype=np.int64)
    row_int[0, 0:2], row_int[0, 2:4], row_int[0, 4:6], row_int[0, 6:8] = bal, val, im, mm
    row_int[0, 8] = weighted
    out = np.zeros((1, 4))
    evaluate_rows(np.array([0], dtype=np.int64), row_int, PX, ASCALE, ATIER_START,
                  ATIER_COUNT, ATIERS, out, np.full((1, 2), np.nan))
    twin = value_row_reference(0, row_int, PX, ASCALE, ATIER_START, ATIER_COUNT, ATIERS)
    direct = usd_from_quanta(bal, val, im, mm, weighted, PX, ASCALE, ATIER_START,
                             ATIER_COUNT, ATIERS)
    for got in (out[0, 1], twin[1], direct[1]):
        assert got == pytest.approx(collateral_usd, abs=1e-6)
    assert out[0].tolist() == pytest.approx(list(twin))
    assert out[0].tolist() == pytest.approx(list(direct))
