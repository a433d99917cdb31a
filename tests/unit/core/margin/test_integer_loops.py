"""The integer-rule re-margin loops give slot_quanta's integers bit for bit (issue 24 perf).

``kernels.apply_all`` and ``apply_slots`` hoist the market-only part of the dYdX and Drift
rules out of their positions (``_integer_params``: whole-ppm rates, dYdX's
open-interest-scaled IM ppm, Drift's 1e-9 units per lot) and skip the guard division of
``_mul_div_floor`` for Drift's ratios. On a mixed book (float tiers, dYdX linear and
inverse with the open-interest scaling inside, at and above its caps, Drift with and
without size premium, with Drift's weight on positive unrealized PnL against random cost
bases, whole and fractional lots, 1 to 1e10 lots)
every slot's cached value, IM and MM and every row sum must equal what
:func:`~solvency.core.margin.kernels.slot_quanta`, the per-position function the venue
vectors and the what-if use, gives for the same position.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from solvency.core.margin.kernels import (
    MK_COLUMNS,
    MK_CV,
    MK_IM_SLOPE,
    MK_IMF,
    MK_KIND,
    MK_LOT,
    MK_MARK,
    MK_MM_SLOPE,
    MK_OI_CONTRACTS,
    MK_OI_LOWER,
    MK_OI_UPPER,
    MK_UPNL,
    MK_UPNL_MAX,
    MKI_SETTLE,
    MKI_TIER_COUNT,
    MKI_TIER_START,
    S_COLUMNS,
    S_COST,
    S_IM,
    S_LOTS,
    S_MARKET,
    S_MM,
    S_ROW,
    S_VALUE,
    _mul_bp_floor,
    _mul_div_floor,
    apply_all,
    apply_slots,
    slot_quanta,
)
from solvency.core.margin.models import (
    MarginModel,
    MarginTier,
    OIScaledModel,
    SizePremiumModel,
    TieredModel,
    risk_row,
)

D = Decimal

# (model, kind, cv, lot, mark, open interest in contracts)
MARKETS: list[tuple[MarginModel, float, float, float, float, float]] = [
    (TieredModel(tiers=(MarginTier(floor=D(0), mmr=D("0.004"), imr=D("0.008")),
                        MarginTier(floor=D(50_000), mmr=D("0.005"), imr=D("0.01")))),
     0.0, 0.001, 1.0, 43_210.7, 0.0),
    # dYdX, OI scaling inside the caps (5e6 .. 5e9 USDC): 2e6 BTC-units x 0.001 x 43k
    (OIScaledModel(imr=D("0.05"), maintenance_fraction=D("0.6"),
                   open_interest_lower_cap=D(5_000_000),
                   open_interest_upper_cap=D(5_000_000_000)), 0.0, 1e-9, 1000.0, 43_210.7,
     3.3e10),
    # dYdX inverse, OI above the upper cap (IM 100 %)
    (OIScaledModel(imr=D("0.02"), maintenance_fraction=D("0.5"),
                   open_interest_lower_cap=D(1), open_interest_upper_cap=D(2)),
     1.0, 100.0, 1.0, 43_210.7, 1e6),
    # dYdX, caps off (the Large-Cap preset)
    (OIScaledModel(imr=D("0.02"), maintenance_fraction=D("0.6"),
                   open_interest_lower_cap=D(0), open_interest_upper_cap=D(0)),
     0.0, 0.0001, 1.0, 2_345.67, 5e9),
    # Drift, size premium, lots of whole 1e-9 units (1e-4 base)
    (SizePremiumModel(imr=D("0.1"), mmr=D("0.05"), imf_factor=D("0.00025")),
     0.0, 0.0001, 1.0, 43_210.7, 0.0),
    # Drift, lot not a whole number of 1e-9 units, heavy premium
    (SizePremiumModel(imr=D("0.1"), mmr=D("0.05"), imf_factor=D("0.0025")),
     0.0, 3.3e-10, 1.0, 99.99, 0.0),
    # Drift without premium, and inverse
    (SizePremiumModel(imr=D("0.2"), mmr=D("0.1"), imf_factor=D(0)), 0.0, 1.0, 1.0, 0.5,
     0.0),
    (SizePremiumModel(imr=D("0.1"), mmr=D("0.05"), imf_factor=D("0.0005")),
     1.0, 10.0, 1.0, 43_210.7, 0.0),
    # Drift with its positive-PnL weight (size-discounted initial weight, maintenance
    # weight below 1, the 100 USDC initial cap), premium on and off
    (SizePremiumModel(imr=D("0.1"), mmr=D("0.05"), imf_factor=D("0.00025"),
                      unrealized_pnl_initial_asset_weight=D("0.8"),
                      unrealized_pnl_maintenance_asset_weight=D("0.95"),
                      unrealized_pnl_imf_factor=D("0.00125")),
     0.0, 0.0001, 1.0, 43_210.7, 0.0),
    (SizePremiumModel(imr=D("0.05"), mmr=D("0.03"),
                      unrealized_pnl_initial_asset_weight=D("1"),
                      unrealized_pnl_initial_max=D("1000000")),
     0.0, 0.001, 1.0, 2_345.67, 0.0),
]


def _book(rng: np.random.Generator, n_slots: int) -> tuple[np.ndarray, ...]:
    n = len(MARKETS)
    mk = np.zeros((n, MK_COLUMNS))
    mki = np.zeros((n, 3), dtype=np.int64)
    rows: list[tuple[float, ...]] = []
    for m, (model, kind, cv, lot, mark, oi) in enumerate(MARKETS):
        row = risk_row(model)
        mk[m, MK_KIND], mk[m, MK_CV], mk[m, MK_LOT], mk[m, MK_MARK] = kind, cv, lot, mark
        mk[m, MK_OI_CONTRACTS] = oi
        mk[m, MK_OI_LOWER], mk[m, MK_OI_UPPER] = row.oi_lower, row.oi_upper
        mk[m, MK_IMF], mk[m, MK_IM_SLOPE], mk[m, MK_MM_SLOPE] = (
            row.imf_factor, row.im_slope, row.mm_slope)
        mk[m, MK_UPNL : MK_UPNL_MAX + 1] = row.upnl
        mki[m, MKI_TIER_START], mki[m, MKI_TIER_COUNT] = len(rows), len(row.tiers)
        mki[m, MKI_SETTLE] = 1 if kind == 1.0 else 0
        rows.extend(row.tiers)
    tiers = np.array(rows, dtype=np.float64)
    ascale = np.array([1e6, 1e8])
    st = np.zeros((n_slots, S_COLUMNS), dtype=np.int64)
    st[:, S_MARKET] = rng.integers(0, n, n_slots)
    st[:, S_ROW] = rng.integers(0, n_slots // 4, n_slots)
    mag = 10.0 ** rng.uniform(0, 10, n_slots)  # 1 .. 1e10 lots
    st[:, S_LOTS] = (mag * rng.choice([-1, 1], n_slots)).astype(np.int64)
    st[::97, S_LOTS] = 0
    # cost bases around the entry value (profits and losses both ways, some zero)
    st[:, S_COST] = (st[:, S_LOTS].astype(np.float64) * rng.uniform(-500, 3000, n_slots)
                     ).astype(np.int64)
    st[::13, S_COST] = 0
    return st, mk, mki, tiers, ascale


@pytest.mark.parametrize("seed", [1, 2])
def test_integer_loops_equal_slot_quanta(seed: int) -> None:
    rng = np.random.default_rng(seed)
    st, mk, mki, tiers, ascale = _book(rng, 4_000)
    n_rows = int(st[:, S_ROW].max()) + 1
    row_int = np.zeros((n_rows, 4 * 2 + 2), dtype=np.int64)
    apply_all(st.shape[0], st, row_int, mk, mki, tiers, ascale)
    want = np.zeros((st.shape[0], 3), dtype=np.int64)
    sums = np.zeros_like(row_int)
    for s in range(st.shape[0]):
        m = int(st[s, S_MARKET])
        want[s] = slot_quanta(m, float(st[s, S_LOTS]), mk[m, MK_MARK], mk[m, MK_OI_CONTRACTS],
                              mk, mki, tiers, ascale, int(st[s, S_COST]))
        a, r = int(mki[m, MKI_SETTLE]), int(st[s, S_ROW])
        for k in range(3):
            sums[r, (k + 1) * 2 + a] += want[s, k]
    assert (st[:, [S_VALUE, S_IM, S_MM]] == want).all()
    assert (row_int == sums).all()
    # a mark move re-marked through apply_slots lands on the same integers again
    mk[:, MK_MARK] *= 0.97
    slots = np.arange(st.shape[0], dtype=np.int64)
    apply_slots(slots, st, row_int, mk, mki, tiers, ascale)
    for s in range(0, st.shape[0], 7):
        m = int(st[s, S_MARKET])
        assert tuple(st[s, [S_VALUE, S_IM, S_MM]]) == slot_quanta(
            m, float(st[s, S_LOTS]), mk[m, MK_MARK], mk[m, MK_OI_CONTRACTS], mk, mki, tiers,
            ascale, int(st[s, S_COST]))


@pytest.mark.parametrize("bp", [0, 1, 9_999, 10_000, 123_456_789, 2**31 - 1,
                                461_168_601_842_738, 461_168_601_842_739, 2**55])
def test_mul_bp_floor_is_mul_div_floor(bp: int) -> None:
    for a in (0, 1, 9_999, 10_001, 123_456_789_012, 2**62 // max(bp, 1)):
        assert _mul_bp_floor(a, bp) == _mul_div_floor(a, bp, 10_000)
