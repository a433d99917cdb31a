"""The scan values each distinct listed option once per scenario: the same bits as
valuing every position on its own (issue 14, portfolio margin <= 1 s)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import solvency.core.portfolio.kernel as kernel
from solvency.adapters.grids import load_grid
from solvency.core.portfolio import (
    KIND_CALL,
    KIND_FUTURE,
    KIND_PUT,
    portfolio_margin,
    scenario_losses,
)

# Instruments that differ from the first in one field each: two of them merged into one
# instrument would give one of them the other's values.
BASE = (0, KIND_CALL, 60_000.0, 30 / 365, 0.6, 60_000.0)  # und, kind, K, T, vol, F
NEIGHBOURS = [
    BASE,
    (1, KIND_CALL, 60_000.0, 30 / 365, 0.6, 60_000.0),  # underlying
    (0, KIND_PUT, 60_000.0, 30 / 365, 0.6, 60_000.0),  # kind
    (0, KIND_CALL, 60_000.0 + 1e-9, 30 / 365, 0.6, 60_000.0),  # strike, last bits
    (0, KIND_CALL, 60_000.0, 31 / 365, 0.6, 60_000.0),  # expiry
    (0, KIND_CALL, 60_000.0, 30 / 365, 0.6 + 1e-15, 60_000.0),  # vol, last bits
    (0, KIND_CALL, 60_000.0, 30 / 365, 0.6, 60_100.0),  # forward
    (0, KIND_PUT, 58_000.0, 0.5 / 365, 0.9, 60_000.0),  # expires inside the lookahead
]


def _book(n_acc: int, seed: int) -> dict[str, np.ndarray]:
    """A book of positions on NEIGHBOURS and a small listing, futures, zero sizes."""
    rng = np.random.default_rng(seed)
    listed = list(NEIGHBOURS)
    for _ in range(40):
        listed.append((int(rng.integers(0, 2)), int(rng.integers(1, 3)),
                       float(np.round(60_000 * np.exp(rng.normal(0, 0.2)), -2)),
                       float(rng.choice([1, 7, 28, 91])) / 365,
                       float(rng.uniform(0.4, 1.0)), 60_000.0))
    rows = []
    for a in range(n_acc):
        for i in sorted(rng.choice(len(listed), 6, replace=False).tolist()):
            u, kind, k, t, v, f = listed[i]
            f = f if u == 0 else 3_000.0 * f / 60_000.0
            k = k if u == 0 else 3_000.0 * k / 60_000.0
            size = 0.0 if rng.random() < 0.05 else float(np.round(rng.normal(0, 4), 1))
            rows.append((a, u, kind, k, t, size, v, f))
        if a % 3 == 0:
            rows.append((a, a % 2, KIND_FUTURE, 0.0, 0.0, float(rng.normal(0, 2)),
                         np.nan, 60_000.0 if a % 2 == 0 else 3_000.0))
    cols = list(zip(*rows, strict=True))
    return {"account": np.array(cols[0], np.int64), "underlying": np.array(cols[1]),
            "kind": np.array(cols[2], np.int8), "strike": np.array(cols[3]),
            "expiry_yr": np.array(cols[4]), "size": np.array(cols[5]),
            "vol": np.array(cols[6]), "forward": np.array(cols[7]),
            "underlying_price": np.array([60_000.0, 3_000.0])}


def _grids():
    deribit = load_grid("deribit_pm")
    return [deribit, replace(deribit, pnl_currency="quote", short_option_net="position"),
            load_grid("cme_span_16")]


def test_distinct_instruments_found_by_every_field():
    b = _book(300, 1)
    n = b["account"].shape[0]
    inst = np.empty(n, dtype=np.int64)
    reps = np.empty(n, dtype=np.int64)
    args = (b["underlying"], b["kind"], b["size"], b["strike"].view(np.int64),
            b["expiry_yr"].view(np.int64), b["vol"].view(np.int64),
            b["forward"].view(np.int64))
    n_inst = kernel._instrument_ids(*args, n, inst, reps)
    option = (b["kind"] != KIND_FUTURE) & (b["size"] != 0.0)
    keys = {(int(b["underlying"][i]), int(b["kind"][i]), float(b["strike"][i]),
             float(b["expiry_yr"][i]), float(b["vol"][i]), float(b["forward"][i]))
            for i in np.flatnonzero(option)}
    assert n_inst == len(keys) > len(NEIGHBOURS)
    assert np.all(inst[~option] == -1)
    # each option row's instrument is the one whose first row has its key
    for i in np.flatnonzero(option):
        r = reps[inst[i]]
        for name in ("underlying", "kind", "strike", "expiry_yr", "vol", "forward"):
            assert b[name][r] == b[name][i]
    # past the cap it stops and says so
    assert kernel._instrument_ids(*args, n_inst - 1, inst, reps) == -1


@pytest.mark.parametrize("grid", _grids(), ids=lambda g: g.name + "-" + g.pnl_currency)
def test_listed_values_equal_each_position_valued_alone(grid, monkeypatch):
    # 1,300 accounts x ~6 positions: the block path crosses several 1,024-row blocks
    b = _book(1_300, 2)
    n_acc = 1_300
    shared = portfolio_margin(**b, rate=0.01, grid=grid, n_accounts=n_acc)
    loss, acc = scenario_losses(**b, rate=0.01, grid=grid, n_accounts=n_acc)
    # a table too small for the book: every option position valued on its own
    monkeypatch.setattr(kernel, "_TABLE_VALUES", 1)
    alone = portfolio_margin(**b, rate=0.01, grid=grid, n_accounts=n_acc)
    loss_alone, acc_alone = scenario_losses(**b, rate=0.01, grid=grid, n_accounts=n_acc)
    assert loss.tobytes() == loss_alone.tobytes()
    assert acc.tobytes() == acc_alone.tobytes()
    for field in shared._fields:
        assert np.asarray(getattr(shared, field)).tobytes() == \
            np.asarray(getattr(alone, field)).tobytes(), field
    assert np.count_nonzero(shared.mm) > n_acc * 0.9
