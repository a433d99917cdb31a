"""holder_totals (numba) equals its plain twin and numpy's gathers, on random slot tables."""

from __future__ import annotations

import numpy as np
import pytest

from solvency.core.margin.kernels import S_COLUMNS, S_IM, S_MM, S_ROW, S_VALUE
from solvency.core.margin.totals import holder_totals, holder_totals_reference


def _numpy_totals(slots: np.ndarray, st: np.ndarray, system: np.ndarray
                  ) -> tuple[int, int, int, int]:
    # what the stress lab's recorder computed before (sim/run.py, commit fb79633)
    user = slots[~system[st[slots, S_ROW]]]
    return (int(np.abs(st[user, S_VALUE]).sum()), int(st[user, S_IM].sum()),
            int(st[user, S_MM].sum()), int(np.abs(st[slots, S_VALUE]).sum()))


@pytest.mark.parametrize("seed", range(8))
def test_holder_totals_twins_and_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_slots, n_rows = int(rng.integers(1, 400)), int(rng.integers(1, 50))
    st = np.zeros((n_slots, S_COLUMNS), dtype=np.int64)
    st[:, S_ROW] = rng.integers(0, n_rows, n_slots)
    st[:, S_VALUE] = rng.integers(-10**15, 10**15, n_slots)
    st[:, S_IM] = rng.integers(0, 10**14, n_slots)
    st[:, S_MM] = rng.integers(0, 10**14, n_slots)
    system = rng.random(n_rows) < 0.2
    slots = rng.choice(n_slots, size=int(rng.integers(0, n_slots + 1)), replace=False)
    slots = slots.astype(np.int64)
    want = _numpy_totals(slots, st, system)
    assert holder_totals_reference(slots, st, system) == want
    assert tuple(int(x) for x in holder_totals(slots, st, system)) == want
    assert want[3] >= want[0]  # every holder's notional holds the users'


def test_holder_totals_system_rows_only_in_the_all_sum() -> None:
    st = np.zeros((3, S_COLUMNS), dtype=np.int64)
    st[:, S_ROW] = [0, 1, 1]
    st[:, S_VALUE] = [-5, 7, -11]
    st[:, S_IM] = [1, 2, 3]
    st[:, S_MM] = [10, 20, 30]
    system = np.array([True, False])
    slots = np.arange(3, dtype=np.int64)
    assert tuple(int(x) for x in holder_totals(slots, st, system)) == (18, 5, 50, 23)
