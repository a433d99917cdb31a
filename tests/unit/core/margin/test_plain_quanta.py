"""A plain market's quanta without the dispatch equal the engine's own (issue 17, speed).

:func:`plain_slot_quanta` (the price update's loop over one market's holders) must give
the integers of :func:`slot_quanta` for every market :func:`plain_market` admits: held on
every preset's perps, linear and inverse, at lots around each tier's floor (the tier
search's edges), zero, tiny and huge positions, and marks on and off round numbers; and
:func:`plain_market` must refuse the markets whose terms the plain form leaves out (size
slope, size premium, open-interest scaling, options, integer rules).
"""

from __future__ import annotations

import numpy as np
import pytest

from solvency.core.margin.kernels import (
    MK_CV,
    MK_IM_SLOPE,
    MK_IMF,
    MK_KIND,
    MK_LOT,
    MK_OI_CONTRACTS,
    MK_OI_UPPER,
    MKI_SETTLE,
    MKI_TIER_COUNT,
    MKI_TIER_START,
    _jit,
    plain_market,
    plain_slot_quanta,
    slot_quanta,
)
from solvency.core.model.presets import load_preset, preset_names
from solvency.engine.engine import Engine

PRESETS = tuple(preset_names())


@_jit
def _both(m, lots, mark, mk, mki, tiers, ascale):  # type: ignore[no-untyped-def]
    out = np.empty((lots.shape[0], 6), dtype=np.int64)
    sc = ascale[mki[m, MKI_SETTLE]]
    for i in range(lots.shape[0]):
        a = slot_quanta(m, lots[i], mark, mk[m, MK_OI_CONTRACTS], mk, mki, tiers, ascale,
                        0)
        b = plain_slot_quanta(lots[i], mark, mk[m, MK_KIND] == 1.0, mk[m, MK_CV],
                              mk[m, MK_LOT], mki[m, MKI_TIER_START], mki[m, MKI_TIER_COUNT],
                              tiers, sc)
        out[i, 0], out[i, 1], out[i, 2] = a
        out[i, 3], out[i, 4], out[i, 5] = b
    return out


@_jit
def _plain(m, mk, mki, tiers):  # type: ignore[no-untyped-def]
    return plain_market(m, mk, mki, tiers)


def _lots_at_floors(book, m: int, mark: float, rng: np.random.Generator) -> np.ndarray:
    # lots whose notional sits on and around every tier floor, both sides, plus a spread
    mk, mki, tiers = book.mk, book.mki, book.tiers
    t0, tn = int(mki[m, MKI_TIER_START]), int(mki[m, MKI_TIER_COUNT])
    per_lot = mk[m, MK_LOT] * mk[m, MK_CV] * (mark if mk[m, MK_KIND] != 1.0 else 1 / mark)
    out = [0.0, 1.0, -1.0, 2.0**40, -(2.0**40)]
    for t in range(t0, t0 + tn):
        base = np.floor(tiers[t, 0] / per_lot)
        out.extend(base + d for d in (-2, -1, 0, 1, 2))
    out.extend(rng.integers(1, 10**7, 400).astype(float))
    lots = np.array(out, dtype=np.float64)
    return np.concatenate([lots, -lots])


@pytest.mark.parametrize("preset", PRESETS)
def test_plain_quanta_equal_the_engine_quanta(preset: str) -> None:
    book = Engine(load_preset(preset)).book
    rng = np.random.default_rng(5)
    plain = 0
    for m in range(book.n_markets):
        if not _plain(m, book.mk, book.mki, book.tiers):
            continue
        plain += 1
        for mark in (1.0, 0.5, 3.0, 101.37, 2_999.99, 65_432.1, 100_000.0, 123_456.789):
            lots = _lots_at_floors(book, m, mark, rng)
            got = _both(m, lots, mark, book.mk, book.mki, book.tiers, book.ascale)
            assert np.array_equal(got[:, :3], got[:, 3:]), (book.market_names[m], mark)
    if preset in ("binance", "bitmex", "hyperliquid"):
        assert plain >= 1
    if preset in ("dydx", "drift"):  # integer rules: never plain
        assert plain == 0


def test_plain_market_refuses_the_terms_it_leaves_out() -> None:
    book = Engine(load_preset("binance")).book
    m = book.market_index["BTC-PERP"]
    assert _plain(m, book.mk, book.mki, book.tiers)
    for col, value in ((MK_IM_SLOPE, 1e-6), (MK_IMF, 0.001), (MK_OI_UPPER, 1e9),
                       (MK_KIND, 2.0)):
        saved = book.mk[m, col]
        book.mk[m, col] = value
        assert not _plain(m, book.mk, book.mki, book.tiers), col
        book.mk[m, col] = saved
    assert _plain(m, book.mk, book.mki, book.tiers)
