"""Scenario-grid portfolio margin over all accounts at once (numba, with a plain twin).

For every account ``a`` and underlying ``u`` the kernel revalues each position under each
scenario ``s`` of a :class:`~solvency.core.portfolio.grid.ScenarioGrid` and sums the
losses (quote currency, positive = loss)::

    option:  loss_s = size * (V(F, sigma, T) - V(F_s, sigma_s, T - lookahead))   Black-76
    future:  loss_s = -size * F * price_s * price_range                           linear

or, for an underlying whose P&L is in its coin (``coin[u]``; a grid with
``pnl_currency = "coin"``: Deribit's BTC-settled books), in coin at the scenario price::

    option:  loss_s = size * (V(F, sigma, T) / F - V(F_s, sigma_s, T_s) / F_s)
    future:  loss_s = -size * m_s / (1 + m_s)

its contingencies in coin and its requirement converted at ``F`` to the quote currency.

Options are fully revalued with Black-76 (the same formula as
:func:`solvency.core.options.black76_price`; at or past expiry in a scenario, the
intrinsic value), never a delta or delta-gamma approximation. Then, per ``(a, u)``::

    scan        = max(0, max_s weight_s * loss_s)                 worst weighted scenario
    delta       = (delta_net |D| + delta_hedged (G - |D|) / 2)     D = sum size delta F,
                                                                   G = sum |size delta F|
    base        = scan + delta          (delta_rule = "add")
                  max(scan, delta)      (delta_rule = "floor", Paradex)
    roll        = roll * min(long futures, short futures) * F     offsetting futures
                  roll * (long futures + short futures) * F       (roll_rule = "gross")
    som         = short_option_minimum * sum short option size * F
                  (short_option_net = "strike": per expiry and strike, calls and puts
                  netted, only a net short counted)
    requirement = mm_factor * max(base + roll, som)    (short_option_rule = "floor", SPAN)
                  mm_factor * (base + roll + som)      (short_option_rule = "add", Deribit)

Across underlyings::

    mm = sum_u R_u                                           (combine = "sum")
    mm = sqrt(sum_u sum_v rho_uv R_u R_v)                    (combine = "correlation")
    im = mm * im_factor

Futures take ``delta = 1``; an option's delta is Black-76's ``cp D N(cp d1)``. The
requirements are positive-homogeneous in the sizes (scaling every size by ``k > 0``
scales the margin by ``k``) and, with ``combine = "sum"`` and ``roll = 0``, subadditive
(the roll charge on offsetting futures is not: combining a long and a short future is
what it charges). Positions should be netted per instrument (one row per account and
instrument), as SPAN nets by contract before it charges the short option minimum.

Speed: a venue's positions are on its listed options (a thousand or so per underlying,
each at one mark vol), held by many accounts. A compiled pass finds the distinct
instruments (underlying, kind and the bits of strike, expiry, vol and forward: all a
value depends on; an open-addressing hash, no sort); each is valued once per scenario
(``log(F/K)``, the base value and delta, one shocked ``sigma sqrt(T)`` per distinct vol
move, then per scenario two ``erfc``: instruments x scenarios); then one pass over the
positions in row order adds ``size x`` its instrument's value changes into an
``(accounts, underlyings, scenarios)`` array (no Python loop over accounts). The value
of a position is the same expression of the same inputs either way, so the margins are
the bits of valuing every position on its own. A book with more distinct instruments
than a 32 MiB table holds is valued in blocks of 1,024 positions, each its own.
``bench/bench_portfolio.py`` measures both (100,000 accounts x 20 options, 27
scenarios: 0.14 s on 1,040 listed options, 2.7 s with every position its own option).
The plain twin is :func:`solvency.core.portfolio.reference.portfolio_margin_reference`.

Determinism (issue 30, docs/determinism.md): no ``fastmath``; ``log``, ``exp``, ``erfc``
and powers from :mod:`solvency.core.detmath` (IEEE basic operations only, not libm's
CPU-dispatched code); a row's positions in market-index order and underlyings by symbol
(the caller's, ``engine/portfolio_margin.py``), per-account sums and the correlation
form as loops in index order: the same bits on every machine and after a restore.
"""

from __future__ import annotations

import math
from typing import Final, Literal, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from solvency.core import detmath
from solvency.core.options.black76 import INV_SQRT_2, Int8Array1D, _jit
from solvency.core.portfolio.grid import DAYS_PER_YEAR, ScenarioGrid
from solvency.core.typing import (
    Float64Array1D,
    Float64Array2D,
    Int64Array1D,
    Int64Array2D,
)

__all__ = [
    "KIND_CALL",
    "KIND_FUTURE",
    "KIND_PUT",
    "Combine",
    "PortfolioMargin",
    "RequirementParts",
    "coin_flags",
    "combine_requirements",
    "portfolio_margin",
    "requirement_parts",
    "scenario_losses",
    "scenario_moves",
    "validate_correlation",
]

KIND_FUTURE: Final = 0
KIND_CALL: Final = 1
KIND_PUT: Final = 2

Combine = Literal["sum", "correlation"]

Float64Array3D = np.ndarray[tuple[int, int, int], np.dtype[np.float64]]

# Accumulator columns per (account, underlying), in quote currency.
_ACC_NET_DELTA: Final = 0
_ACC_GROSS_DELTA: Final = 1
_ACC_LONG_FUT: Final = 2
_ACC_SHORT_FUT: Final = 3
_ACC_SHORT_OPT: Final = 4
_ACC_COUNT: Final = 5
_ACC_COLUMNS: Final = 6


class PortfolioMargin(NamedTuple):
    """Portfolio margin per account, and its parts per account and underlying.

    Attributes
    ----------
    mm, im
        Maintenance and initial margin per account (quote currency), shape ``(A,)``.
    worst_scenario
        Per account, the worst scenario of the underlying with the largest requirement;
        -1 for an account without positions. Shape ``(A,)``.
    requirement
        Per account and underlying, the maintenance requirement before combination
        (quote currency; a coin grid's converted at the underlying price).
        Shape ``(A, U)``.
    scan_loss
        Per account and underlying, ``max(0, max_s weight_s loss_s)`` (quote currency,
        as ``requirement``). Shape ``(A, U)``.
    worst_scenario_by_underlying
        Per account and underlying, ``argmax_s weight_s loss_s`` (-1 without positions).
        Shape ``(A, U)``.
    """

    mm: Float64Array1D
    im: Float64Array1D
    worst_scenario: Int64Array1D
    requirement: Float64Array2D
    scan_loss: Float64Array2D
    worst_scenario_by_underlying: Int64Array2D


# Distinct instruments are valued once per scenario when at most this many float64
# values (instruments x scenarios) hold them all: 32 MiB. A book with more distinct
# instruments (every position its own strike, expiry and vol) is valued in blocks of
# _BLOCK positions instead, each option position its own instrument.
_TABLE_VALUES: Final = 1 << 22
_BLOCK: Final = 1024
# Multipliers of the instrument hash (odd 64-bit constants, as int64: numba's int64
# arithmetic wraps). The hash only finds equal keys; the values never depend on it.
_H1: Final = -7046029254386353131  # 0x9E3779B97F4A7C15
_H2: Final = -4658895280553007687  # 0xBF58476D1CE4E5B9


@_jit
def _instrument_ids(
    underlying: Int64Array1D, kind: Int8Array1D, size: Float64Array1D,
    strike_bits: Int64Array1D, expiry_bits: Int64Array1D, vol_bits: Int64Array1D,
    forward_bits: Int64Array1D, cap: int, inst: Int64Array1D, reps: Int64Array1D,
) -> int:
    # inst[i] = the index of row i's instrument among the distinct ones (first
    # appearance order), -1 for futures and zero sizes; reps[j] = the first row of
    # instrument j. Two option rows are one instrument when their underlying, kind and
    # the bits of strike, expiry, vol and forward are equal: everything the scenario
    # values depend on, so an instrument's values are those of each of its rows, bit
    # for bit. Returns the number of instruments, or -1 past ``cap`` (stopping there).
    n = underlying.shape[0]
    slots = 16
    while slots < 2 * cap:
        slots *= 2
    mask = slots - 1
    table = np.full(slots, -1, dtype=np.int64)
    n_inst = 0
    for i in range(n):
        inst[i] = -1
        if kind[i] == KIND_FUTURE or size[i] == 0.0:
            continue
        kb = strike_bits[i]
        tb = expiry_bits[i]
        vb = vol_bits[i]
        fb = forward_bits[i]
        h = (underlying[i] * 8 + kind[i]) * _H1
        h = (h ^ kb) * _H2
        h = (h ^ (h >> 31) ^ tb) * _H2
        h = (h ^ (h >> 31) ^ vb) * _H2
        h = (h ^ (h >> 31) ^ fb) * _H2
        h ^= h >> 31
        slot = h & mask
        while True:
            j = table[slot]
            if j < 0:
                if n_inst == cap:
                    return -1
                table[slot] = n_inst
                reps[n_inst] = i
                inst[i] = n_inst
                n_inst += 1
                break
            r = reps[j]
            if (strike_bits[r] == kb and expiry_bits[r] == tb and vol_bits[r] == vb
                    and forward_bits[r] == fb and underlying[r] == underlying[i]
                    and kind[r] == kind[i]):
                inst[i] = j
                break
            slot = (slot + 1) & mask
    return n_inst


@_jit
def _option_values(
    reps: Int64Array1D, underlying: Int64Array1D, kind: Int8Array1D,
    strike: Float64Array1D, expiry_yr: Float64Array1D, vol: Float64Array1D,
    forward: Float64Array1D, rate: float, growth: Float64Array2D,
    inv_growth: Float64Array2D, log_growth: Float64Array2D, level: Int64Array1D,
    level_mult: Float64Array1D, vol_up: Float64Array1D, vol_down: Float64Array1D,
    relative: bool, ref_days: float, floor_days: float, power_short: float,
    power_long: float, vol_floor: float, vol_up_floor: float, lookahead_yr: float,
    coin: Int8Array1D, change: Float64Array2D, disc_n1: Float64Array2D,
) -> None:
    # For each instrument j (represented by its row reps[j]): change[j, s] = its value
    # now less its value in scenario s (per unit of size; in coin, value / F_s, for a
    # coin underlying), and disc_n1[j] = (disc, N(cp d1)) for its delta.
    n_levels = level_mult.shape[0]
    n_scen = level.shape[0]
    inv_sd = np.empty(n_levels, dtype=np.float64)
    half_sd = np.empty(n_levels, dtype=np.float64)
    full_sd = np.empty(n_levels, dtype=np.float64)
    for j in range(reps.shape[0]):
        i = reps[j]
        u = underlying[i]
        f = forward[i]
        in_coin = coin[u] != 0
        k = strike[i]
        t = expiry_yr[i]
        sigma = vol[i]
        cp = 1.0 if kind[i] == KIND_CALL else -1.0
        x0 = detmath.log(f / k)
        s0 = sigma * math.sqrt(t)
        d1 = x0 / s0 + 0.5 * s0
        disc = detmath.exp(-rate * t)
        n1 = 0.5 * detmath.erfc(-cp * d1 * INV_SQRT_2)
        n2 = 0.5 * detmath.erfc(-cp * (d1 - s0) * INV_SQRT_2)
        v0 = disc * cp * (f * n1 - k * n2)
        disc_n1[j, 0] = disc
        disc_n1[j, 1] = n1
        out = change[j]
        t1 = t - lookahead_yr
        if t1 > 0.0:
            dte = t * DAYS_PER_YEAR
            power = power_short if dte < ref_days else power_long
            scale = detmath.pow_positive(ref_days / max(floor_days, dte), power)
            sqrt_t1 = math.sqrt(t1)
            cps = cp * INV_SQRT_2
            for m_ in range(n_levels):
                m = level_mult[m_]
                shift = m * (vol_up[u] if m > 0.0 else vol_down[u]) * scale
                sj = sigma * (1.0 + shift) if relative else sigma + shift
                sj = max(sj, vol_floor)
                if m > 0.0:
                    sj = max(sj, vol_up_floor)
                sv = sj * sqrt_t1
                # cp d1 / sqrt 2 = x * inv + half, cp d2 / sqrt 2 = that - full.
                inv_sd[m_] = cps / sv
                half_sd[m_] = 0.5 * cps * sv
                full_sd[m_] = cps * sv
            h = 0.5 * cp * detmath.exp(-rate * t1)
            if in_coin:
                # V_s / F_s = h (e1 - K / (F g_s) e2), against V0 / F
                v0c = v0 / f
                kf = k / f
                for s in range(n_scen):
                    m_ = level[s]
                    z1 = (x0 + log_growth[u, s]) * inv_sd[m_] + half_sd[m_]
                    e1 = detmath.erfc(-z1)
                    e2 = detmath.erfc(full_sd[m_] - z1)
                    v = h * (e1 - kf * inv_growth[u, s] * e2)
                    out[s] = v0c - v
                continue
            for s in range(n_scen):
                m_ = level[s]
                z1 = (x0 + log_growth[u, s]) * inv_sd[m_] + half_sd[m_]
                e1 = detmath.erfc(-z1)
                e2 = detmath.erfc(full_sd[m_] - z1)
                v = h * (f * growth[u, s] * e1 - k * e2)
                out[s] = v0 - v
        elif in_coin:
            v0c = v0 / f
            kf = k / f
            for s in range(n_scen):
                v = max(cp * (1.0 - kf * inv_growth[u, s]), 0.0)
                out[s] = v0c - v
        else:
            for s in range(n_scen):
                v = max(cp * (f * growth[u, s] - k), 0.0)
                out[s] = v0 - v


@_jit
def _add_positions(
    start: int, end: int, inst: Int64Array1D, account: Int64Array1D,
    underlying: Int64Array1D, kind: Int8Array1D, size: Float64Array1D,
    forward: Float64Array1D, fut_move: Float64Array2D, coin: Int8Array1D,
    short_by_row: bool, change: Float64Array2D, disc_n1: Float64Array2D,
    loss: Float64Array3D, acc: Float64Array3D,
) -> None:
    # Rows start..end in row order (the order every per-account sum is taken in): row
    # i's option is instrument inst[i - start] of change / disc_n1.
    n_scen = loss.shape[2]
    for i in range(start, end):
        q = size[i]
        a = account[i]
        u = underlying[i]
        f = forward[i]
        acc[a, u, _ACC_COUNT] += 1.0
        if q == 0.0:
            continue
        unit = 1.0 if coin[u] != 0 else f
        if kind[i] == KIND_FUTURE:
            notional = q * unit
            for s in range(n_scen):
                loss[a, u, s] -= notional * fut_move[u, s]
            acc[a, u, _ACC_NET_DELTA] += notional
            acc[a, u, _ACC_GROSS_DELTA] += abs(notional)
            if q > 0.0:
                acc[a, u, _ACC_LONG_FUT] += notional
            else:
                acc[a, u, _ACC_SHORT_FUT] -= notional
            continue
        j = inst[i - start]
        cp = 1.0 if kind[i] == KIND_CALL else -1.0
        dq = q * cp * disc_n1[j, 0] * disc_n1[j, 1] * unit
        acc[a, u, _ACC_NET_DELTA] += dq
        acc[a, u, _ACC_GROSS_DELTA] += abs(dq)
        if q < 0.0 and short_by_row:
            acc[a, u, _ACC_SHORT_OPT] -= q * unit
        row = change[j]
        for s in range(n_scen):
            loss[a, u, s] += q * row[s]


@_jit
def _scan_kernel(
    account: Int64Array1D, underlying: Int64Array1D, kind: Int8Array1D,
    strike: Float64Array1D, expiry_yr: Float64Array1D, size: Float64Array1D,
    vol: Float64Array1D, forward: Float64Array1D, rate: float,
    fut_move: Float64Array2D, growth: Float64Array2D, inv_growth: Float64Array2D,
    log_growth: Float64Array2D, level: Int64Array1D,
    level_mult: Float64Array1D, vol_up: Float64Array1D, vol_down: Float64Array1D,
    relative: bool, ref_days: float, floor_days: float, power_short: float,
    power_long: float, vol_floor: float, vol_up_floor: float, lookahead_yr: float,
    coin: Int8Array1D, short_by_row: bool, cap: int, loss: Float64Array3D,
    acc: Float64Array3D,
) -> None:
    # coin[u]: that underlying's P&L in its coin (value / F_s); its fut_move is then
    # m / (1 + m) and its accumulators are in coin (unit 1 instead of F).
    # A venue's positions are on its listed instruments (a few hundred to a few
    # thousand options, each at one mark vol): each distinct instrument is valued once
    # per scenario (two erfc each) and every position adds size x its value change.
    n = account.shape[0]
    n_scen = level.shape[0]
    inst = np.empty(n, dtype=np.int64)
    reps = np.empty(cap, dtype=np.int64)
    n_inst = _instrument_ids(underlying, kind, size, strike.view(np.int64),
                             expiry_yr.view(np.int64), vol.view(np.int64),
                             forward.view(np.int64), cap, inst, reps)
    if n_inst >= 0:
        change = np.empty((n_inst, n_scen), dtype=np.float64)
        disc_n1 = np.empty((n_inst, 2), dtype=np.float64)
        _option_values(reps[:n_inst], underlying, kind, strike, expiry_yr, vol, forward,
                       rate, growth, inv_growth, log_growth, level, level_mult, vol_up,
                       vol_down, relative, ref_days, floor_days, power_short, power_long,
                       vol_floor, vol_up_floor, lookahead_yr, coin, change, disc_n1)
        _add_positions(0, n, inst, account, underlying, kind, size, forward, fut_move,
                       coin, short_by_row, change, disc_n1, loss, acc)
        return
    # Too many distinct instruments to hold: blocks of rows, each option row its own.
    change = np.empty((_BLOCK, n_scen), dtype=np.float64)
    disc_n1 = np.empty((_BLOCK, 2), dtype=np.float64)
    block = np.empty(_BLOCK, dtype=np.int64)
    for start in range(0, n, _BLOCK):
        end = min(n, start + _BLOCK)
        m = 0
        for i in range(start, end):
            if kind[i] != KIND_FUTURE and size[i] != 0.0:
                block[m] = i
                inst[i - start] = m
                m += 1
        _option_values(block[:m], underlying, kind, strike, expiry_yr, vol, forward,
                       rate, growth, inv_growth, log_growth, level, level_mult, vol_up,
                       vol_down, relative, ref_days, floor_days, power_short, power_long,
                       vol_floor, vol_up_floor, lookahead_yr, coin, change, disc_n1)
        _add_positions(start, end, inst, account, underlying, kind, size, forward,
                       fut_move, coin, short_by_row, change, disc_n1, loss, acc)


@_jit
def _net_short_by_strike(
    order: Int64Array1D, account: Int64Array1D, underlying: Int64Array1D,
    expiry_yr: Float64Array1D, strike: Float64Array1D, amount: Float64Array1D,
    acc: Float64Array3D,
) -> None:
    # order lists the option rows grouped by (account, underlying, expiry, strike);
    # each group's amounts are added in that order and only a net short is charged.
    n = order.shape[0]
    i = 0
    while i < n:
        r = order[i]
        a = account[r]
        u = underlying[r]
        t = expiry_yr[r]
        k = strike[r]
        total = 0.0
        while i < n:
            r = order[i]
            if (account[r] != a or underlying[r] != u or expiry_yr[r] != t
                    or strike[r] != k):
                break
            total += amount[r]
            i += 1
        if total < 0.0:
            acc[a, u, _ACC_SHORT_OPT] -= total


@_jit
def _strike_groups(account: Int64Array1D, underlying: Int64Array1D,
                   expiry_yr: Float64Array1D, strike: Float64Array1D,
                   rows: Int64Array1D) -> Int64Array1D:
    # rows: option rows in account order. Within each account's run, a stable sort by
    # strike, then expiry, then underlying puts equal keys next to each other (a run
    # is one account's positions: small, so the sorts are cheap; no global sort).
    out = rows.copy()
    n = rows.shape[0]
    start = 0
    while start < n:
        a = account[rows[start]]
        end = start + 1
        while end < n and account[rows[end]] == a:
            end += 1
        if end - start > 1:
            run = rows[start:end]
            run = run[np.argsort(strike[run], kind="mergesort")]
            run = run[np.argsort(expiry_yr[run], kind="mergesort")]
            run = run[np.argsort(underlying[run], kind="mergesort")]
            out[start:end] = run
        start = end
    return out


@_jit
def _log_each(x: Float64Array2D) -> Float64Array2D:
    out = np.empty_like(x)
    flat_in = x.ravel()
    flat_out = out.ravel()
    for i in range(flat_in.shape[0]):
        flat_out[i] = detmath.log(flat_in[i])
    return out


@_jit
def _combine_sum(req: Float64Array2D) -> Float64Array1D:
    # Per account, underlyings added in index order: a fixed order (numpy's reductions
    # may pair terms by SIMD width, which depends on the CPU).
    out = np.zeros(req.shape[0], dtype=np.float64)
    for a in range(req.shape[0]):
        total = 0.0
        for u in range(req.shape[1]):
            total += req[a, u]
        out[a] = total
    return out


@_jit
def _combine_correlation(req: Float64Array2D, rho: Float64Array2D) -> Float64Array1D:
    # sqrt(R^T rho R) per account, the double sum in index order (not einsum/BLAS,
    # whose summation order depends on the CPU), floored at 0 before the square root.
    out = np.zeros(req.shape[0], dtype=np.float64)
    n = req.shape[1]
    for a in range(req.shape[0]):
        total = 0.0
        for u in range(n):
            row = 0.0
            for v in range(n):
                row += rho[u, v] * req[a, v]
            total += req[a, u] * row
        out[a] = math.sqrt(max(total, 0.0))
    return out


def _positions(
    n: int, *arrays: tuple[str, npt.ArrayLike, type[np.generic]]
) -> list[npt.NDArray[np.generic]]:
    out: list[npt.NDArray[np.generic]] = []
    for name, value, dtype in arrays:
        a = np.asarray(value)
        if a.ndim == 0:
            a = np.broadcast_to(a, (n,))
        if a.shape != (n,):
            msg = f"'{name}' must have shape ({n},), got {a.shape}"
            raise ValueError(msg)
        integral = np.issubdtype(a.dtype, np.integer)
        if not (integral or np.issubdtype(a.dtype, np.floating)) or (
            np.issubdtype(dtype, np.integer) and not integral
        ):
            msg = f"'{name}' has dtype {a.dtype}, expected {np.dtype(dtype)}"
            raise ValueError(msg)
        out.append(np.ascontiguousarray(a, dtype=dtype))
    return out


def _per_underlying(
    name: str, value: npt.ArrayLike | None, default: float, n_und: int
) -> Float64Array1D:
    a = np.full(n_und, default) if value is None else np.asarray(value, dtype=np.float64)
    a = np.ascontiguousarray(np.broadcast_to(a, (n_und,)), dtype=np.float64)
    if not (np.all(np.isfinite(a)) and np.all(a >= 0.0)):
        msg = f"'{name}' must be finite and >= 0 per underlying"
        raise ValueError(msg)
    return cast(Float64Array1D, a)


def _check_positions(
    account: Int64Array1D, underlying: Int64Array1D, kind: Int8Array1D,
    strike: Float64Array1D, expiry_yr: Float64Array1D, size: Float64Array1D,
    vol: Float64Array1D, forward: Float64Array1D, n_accounts: int, n_und: int,
) -> None:
    # Bad input is an error naming the field, never a NaN margin.
    checks = (
        ("account", (account >= 0) & (account < n_accounts)),
        ("underlying", (underlying >= 0) & (underlying < n_und)),
        ("kind", (kind >= KIND_FUTURE) & (kind <= KIND_PUT)),
        ("size", np.isfinite(size)),
        ("forward", np.isfinite(forward) & (forward > 0.0)),
    )
    for name, ok in checks:
        if not np.all(ok):
            bad = int(np.argmin(ok))
            msg = f"position {bad}: invalid '{name}'"
            raise ValueError(msg)
    opt = kind != KIND_FUTURE
    for name, arr in (("strike", strike), ("expiry_yr", expiry_yr), ("vol", vol)):
        ok = ~opt | (np.isfinite(arr) & (arr > 0.0))
        if not np.all(ok):
            bad = int(np.argmin(ok))
            msg = f"position {bad}: option '{name}' must be finite and > 0"
            raise ValueError(msg)


def validate_correlation(
    rho: npt.ArrayLike | None, n_und: int, check_psd: bool = True
) -> Float64Array2D:
    """Return ``rho`` as a ``(n_und, n_und)`` float matrix after checking that it is a
    symmetric correlation matrix (finite, unit diagonal, entries in [-1, 1]) and, with
    ``check_psd``, positive semi-definite; ValueError otherwise."""
    if rho is None:
        msg = "combine='correlation' needs a 'correlation' matrix"
        raise ValueError(msg)
    m = np.asarray(rho, dtype=np.float64)
    if m.shape != (n_und, n_und):
        msg = f"'correlation' must have shape ({n_und}, {n_und}), got {m.shape}"
        raise ValueError(msg)
    ok = (
        np.all(np.isfinite(m)) and np.allclose(m, m.T) and np.allclose(np.diag(m), 1.0)
        and np.all(np.abs(m) <= 1.0)
        and (not check_psd or float(np.min(np.linalg.eigvalsh(m))) >= -1e-12)
    )
    if not ok:
        msg = "'correlation' must be a symmetric PSD matrix with unit diagonal"
        raise ValueError(msg)
    return cast(Float64Array2D, m)


class _Scenarios(NamedTuple):
    move: Float64Array2D
    fut_move: Float64Array2D
    growth: Float64Array2D
    inv_growth: Float64Array2D
    log_growth: Float64Array2D
    level: Int64Array1D
    level_mult: Float64Array1D


def _scenarios(grid: ScenarioGrid, price_range: Float64Array1D,
               coin: npt.NDArray[np.bool_] | None = None) -> _Scenarios:
    scaled = price_range[:, None] * grid.price_move[None, :]
    fixed = grid.move_is_fraction[None, :] > 0.0
    move = np.ascontiguousarray(np.where(fixed, grid.price_move[None, :], scaled))
    if np.any(move <= -1.0):
        msg = "a price move of -100 % or below makes the forward non-positive"
        raise ValueError(msg)
    level_mult, level = np.unique(grid.vol_move, return_inverse=True)
    growth = np.ascontiguousarray(1.0 + move)
    # futures: in the extended table ("edge") the move of the range's edge on its side
    edge = np.where(grid.price_move[None, :] < 0.0, -price_range[:, None],
                    price_range[:, None])
    fut = np.where(fixed, edge, move) if grid.extended_futures == "edge" else move
    if coin is not None and np.any(coin):
        # a future's coin P&L per coin: m / (1 + m)
        fut = np.where(coin[:, None], fut / (1.0 + fut), fut)
    return _Scenarios(
        cast(Float64Array2D, move),
        cast(Float64Array2D, np.ascontiguousarray(fut, dtype=np.float64)),
        cast(Float64Array2D, growth),
        cast(Float64Array2D, np.ascontiguousarray(1.0 / growth)),
        # log of the growth the kernel multiplies by, with detmath's log (not numpy's
        # CPU-dispatched log1p): the scan must give the same bits on every machine
        _log_each(growth),
        level.astype(np.int64).ravel(),
        cast(Float64Array1D, level_mult.astype(np.float64)),
    )


def _short_options_by_strike(
    account: Int64Array1D, underlying: Int64Array1D, kind: Int8Array1D,
    strike: Float64Array1D, expiry_yr: Float64Array1D, amount: Float64Array1D,
    acc: Float64Array3D,
) -> None:
    # Deribit's contingency per net short option per strike: calls and puts of one
    # (account, underlying, expiry, strike) netted, only a net short charged.
    rows = np.flatnonzero(kind != KIND_FUTURE).astype(np.int64)
    if rows.shape[0] == 0:
        return
    if np.any(account[rows][1:] < account[rows][:-1]):
        rows = rows[np.argsort(account[rows], kind="stable")]
    order = _strike_groups(account, underlying, expiry_yr, strike, rows)
    _net_short_by_strike(order, account, underlying, expiry_yr, strike, amount, acc)


def scenario_losses(
    *,
    account: npt.ArrayLike, underlying: npt.ArrayLike, kind: npt.ArrayLike,
    strike: npt.ArrayLike, expiry_yr: npt.ArrayLike, size: npt.ArrayLike,
    vol: npt.ArrayLike, underlying_price: npt.ArrayLike, rate: float,
    grid: ScenarioGrid, n_accounts: int, forward: npt.ArrayLike | None = None,
    price_range: npt.ArrayLike | None = None, vol_range_up: npt.ArrayLike | None = None,
    vol_range_down: npt.ArrayLike | None = None, coin: npt.ArrayLike | None = None,
) -> tuple[Float64Array3D, Float64Array3D]:
    """Return unweighted scenario losses ``(A, U, S)`` and the add-on accumulators.

    Parameters are those of :func:`portfolio_margin`. The second array holds per
    ``(a, u)``: net delta, gross delta, long and short futures notional, short option
    notional (all ``* F`` in the quote currency, or in coin for a coin underlying) and
    the position count.

    Returns
    -------
    tuple of ndarray
        ``loss[a, u, s]`` (positive = loss; quote currency, or the underlying's coin
        where ``coin[u]``) and ``acc[a, u, 6]``.

    Raises
    ------
    ValueError
        On inputs of the wrong shape, out-of-range indices or kinds, non-finite sizes,
        non-positive forwards, or options with non-positive strike, expiry or vol.
    """
    if n_accounts < 0:
        msg = "'n_accounts' must be >= 0"
        raise ValueError(msg)
    if not math.isfinite(rate):
        msg = "'rate' must be finite"
        raise ValueError(msg)
    prices = np.atleast_1d(np.asarray(underlying_price, dtype=np.float64))
    if prices.ndim != 1 or not np.all(np.isfinite(prices) & (prices > 0.0)):
        msg = "'underlying_price' must be a 1-D array of finite prices > 0"
        raise ValueError(msg)
    n_und = prices.shape[0]
    n = int(np.asarray(account).shape[0]) if np.ndim(account) else 1
    cols = _positions(
        n, ("account", account, np.int64), ("underlying", underlying, np.int64),
        ("kind", kind, np.int8), ("strike", strike, np.float64),
        ("expiry_yr", expiry_yr, np.float64), ("size", size, np.float64),
        ("vol", vol, np.float64),
    )
    acct, und = cast(Int64Array1D, cols[0]), cast(Int64Array1D, cols[1])
    knd = cast(Int8Array1D, cols[2])
    k, t, q, sig = (cast(Float64Array1D, c) for c in cols[3:])
    und_ok = (und >= 0) & (und < n_und)
    if not np.all(und_ok):
        msg = f"position {int(np.argmin(und_ok))}: invalid 'underlying'"
        raise ValueError(msg)
    fwd = cast(
        Float64Array1D,
        prices[und] if forward is None
        else _positions(n, ("forward", forward, np.float64))[0],
    )
    _check_positions(acct, und, knd, k, t, q, sig, fwd, n_accounts, n_und)
    pr = _per_underlying("price_range", price_range, grid.price_range, n_und)
    in_coin = coin_flags(grid, coin, n_und)
    sc = _scenarios(grid, pr, in_coin)
    loss = np.zeros((n_accounts, n_und, grid.n_scenarios), dtype=np.float64)
    acc = np.zeros((n_accounts, n_und, _ACC_COLUMNS), dtype=np.float64)
    by_strike = grid.short_option_net == "strike"
    _scan_kernel(
        acct, und, knd, k, t, q, sig, fwd, float(rate),
        sc.fut_move, sc.growth, sc.inv_growth, sc.log_growth, sc.level, sc.level_mult,
        _per_underlying("vol_range_up", vol_range_up, grid.vol_range_up, n_und),
        _per_underlying("vol_range_down", vol_range_down, grid.vol_range_down, n_und),
        grid.vol_shift == "relative", grid.vol_term_ref_days, grid.vol_term_floor_days,
        grid.vol_power_short, grid.vol_power_long, grid.vol_floor, grid.vol_up_floor,
        grid.lookahead_days / DAYS_PER_YEAR, in_coin.astype(np.int8), not by_strike,
        min(n, max(1, _TABLE_VALUES // grid.n_scenarios)), loss, acc,
    )
    if by_strike:
        amount = cast(Float64Array1D, np.where(in_coin[und], q, q * fwd))
        _short_options_by_strike(acct, und, knd, k, t, amount, acc)
    return loss, acc


class RequirementParts(NamedTuple):
    """The parts of the per-(account, underlying) requirement, each ``(A, U)`` except
    ``weighted`` ``(A, U, S)``: the weighted scenario losses (the risk vector), the worst
    scenario (-1 without positions), the scan loss, the delta charge, the futures
    (roll) charge, the short-option minimum, and the maintenance requirement
    ``combine(scan, delta, roll, som) x mm_factor`` (see :class:`ScenarioGrid`), all in
    the grid's P&L currency (the coin under ``pnl_currency = "coin"``); and
    ``requirement_quote``, the requirement in the quote currency (coin x the
    underlying price)."""

    weighted: Float64Array3D
    worst: Int64Array2D
    scan: Float64Array2D
    delta: Float64Array2D
    roll: Float64Array2D
    short_option_minimum: Float64Array2D
    requirement: Float64Array2D
    requirement_quote: Float64Array2D


def requirement_parts(
    loss: Float64Array3D, acc: Float64Array3D, grid: ScenarioGrid,
    underlying_price: npt.ArrayLike | None = None, coin: npt.ArrayLike | None = None,
) -> RequirementParts:
    """Split the requirement of :func:`scenario_losses`' output into its parts (the one
    computation :func:`portfolio_margin` uses, so a breakdown adds up to the margin).

    ``underlying_price`` (per underlying) converts the requirement of a coin underlying
    (``coin``, as given to :func:`scenario_losses`) to the quote currency; it is needed
    only when one is in coin."""
    weighted = loss * grid.weight
    worst = np.argmax(weighted, axis=2)
    scan = np.maximum(np.take_along_axis(weighted, worst[..., None], axis=2)[..., 0], 0.0)
    net = np.abs(acc[..., _ACC_NET_DELTA])
    hedged = 0.5 * (acc[..., _ACC_GROSS_DELTA] - net)
    delta = grid.delta_net * net + grid.delta_hedged * np.maximum(hedged, 0.0)
    base = scan + delta if grid.delta_rule == "add" else np.maximum(scan, delta)
    long_fut, short_fut = acc[..., _ACC_LONG_FUT], acc[..., _ACC_SHORT_FUT]
    if grid.roll_rule == "gross":
        roll = grid.roll * (long_fut + short_fut)
    else:
        roll = grid.roll * np.minimum(long_fut, short_fut)
    som = grid.short_option_minimum * acc[..., _ACC_SHORT_OPT]
    if grid.short_option_rule == "add":
        req = (base + roll + som) * grid.mm_factor
    else:
        req = np.maximum(base + roll, som) * grid.mm_factor
    worst = np.where(acc[..., _ACC_COUNT] > 0.0, worst, -1)
    in_coin = coin_flags(grid, coin, req.shape[1])
    if np.any(in_coin):
        if underlying_price is None:
            msg = "a coin underlying's requirement needs 'underlying_price' to convert it"
            raise ValueError(msg)
        prices = np.atleast_1d(np.asarray(underlying_price, dtype=np.float64))
        req_quote = np.where(in_coin[None, :], req * prices[None, :], req)
    else:
        req_quote = req
    return RequirementParts(
        cast(Float64Array3D, weighted), cast(Int64Array2D, worst.astype(np.int64)),
        cast(Float64Array2D, scan), cast(Float64Array2D, delta), cast(Float64Array2D, roll),
        cast(Float64Array2D, som), cast(Float64Array2D, req),
        cast(Float64Array2D, req_quote),
    )


def scenario_moves(grid: ScenarioGrid, price_range: npt.ArrayLike | None,
                   n_und: int) -> Float64Array2D:
    """Per underlying and scenario, the price move as a fraction (``-0.16`` = -16 %)."""
    pr = _per_underlying("price_range", price_range, grid.price_range, n_und)
    return _scenarios(grid, pr).move


def combine_requirements(
    req: Float64Array2D, combine: Combine = "sum", correlation: npt.ArrayLike | None = None,
    check_psd: bool = True,
) -> Float64Array1D:
    """Per account, the maintenance margin from its per-underlying requirements
    ``req[a, u]``: their sum, or ``sqrt(R^T rho R)``, both in index order (see
    :func:`portfolio_margin`)."""
    if combine == "sum":
        return _combine_sum(np.ascontiguousarray(req))
    if combine == "correlation":
        rho = np.ascontiguousarray(validate_correlation(correlation, req.shape[1], check_psd))
        return _combine_correlation(np.ascontiguousarray(req), rho)
    msg = f"'combine' must be 'sum' or 'correlation', got {combine!r}"
    raise ValueError(msg)


def coin_flags(grid: ScenarioGrid, coin: npt.ArrayLike | None,
               n_und: int) -> npt.NDArray[np.bool_]:
    """Per underlying, whether its P&L is in its coin: ``coin`` as given (broadcast to
    ``(n_und,)``), else the grid's ``pnl_currency == "coin"`` for every underlying."""
    if coin is None:
        return np.full(n_und, grid.pnl_currency == "coin", dtype=np.bool_)
    flags = np.asarray(coin)
    if flags.dtype != np.bool_:
        msg = "'coin' must be booleans per underlying"
        raise ValueError(msg)
    return np.ascontiguousarray(np.broadcast_to(flags, (n_und,)))


def _requirements(
    loss: Float64Array3D, acc: Float64Array3D, grid: ScenarioGrid,
    underlying_price: npt.ArrayLike, coin: npt.ArrayLike | None,
) -> tuple[Float64Array2D, Float64Array2D, Int64Array2D]:
    parts = requirement_parts(loss, acc, grid, underlying_price, coin)
    scan = parts.scan
    in_coin = coin_flags(grid, coin, scan.shape[1])
    if np.any(in_coin):  # reported in the quote currency, as the margin
        prices = np.atleast_1d(np.asarray(underlying_price, dtype=np.float64))
        scan = cast(Float64Array2D, np.where(in_coin[None, :], scan * prices[None, :],
                                             scan))
    return parts.requirement_quote, scan, parts.worst


def portfolio_margin(
    *,
    account: npt.ArrayLike, underlying: npt.ArrayLike, kind: npt.ArrayLike,
    strike: npt.ArrayLike, expiry_yr: npt.ArrayLike, size: npt.ArrayLike,
    vol: npt.ArrayLike, underlying_price: npt.ArrayLike, rate: float,
    grid: ScenarioGrid, n_accounts: int, forward: npt.ArrayLike | None = None,
    price_range: npt.ArrayLike | None = None, vol_range_up: npt.ArrayLike | None = None,
    vol_range_down: npt.ArrayLike | None = None, combine: Combine = "sum",
    correlation: npt.ArrayLike | None = None, check_psd: bool = True,
    coin: npt.ArrayLike | None = None,
) -> PortfolioMargin:
    """Compute scenario-grid portfolio margin for every account in one pass.

    Parameters
    ----------
    account, underlying
        Per position (struct of arrays, length ``P``): account index in
        ``[0, n_accounts)`` and underlying index in ``[0, U)``.
    kind
        ``KIND_FUTURE`` (0, futures and perpetuals, linear), ``KIND_CALL`` (1) or
        ``KIND_PUT`` (2).
    strike, expiry_yr, vol
        Option strike, years to expiry and implied volatility (ignored for futures;
        NaN allowed there).
    size
        Signed size in units of the underlying (negative = short).
    underlying_price
        Price per underlying, shape ``(U,)``; the forward of every position unless
        ``forward`` (per position) is given.
    rate
        Continuously compounded rate of the Black-76 discount factor.
    grid
        The scenario grid (:func:`solvency.core.portfolio.grid.parse_grid`).
    n_accounts
        Number of accounts ``A`` (accounts without positions get 0).
    forward
        Optional forward per position (dated futures and options on them).
    price_range, vol_range_up, vol_range_down
        Optional per-underlying scan ranges, shape ``(U,)`` or scalar; default the grid's.
    combine, correlation
        ``"sum"`` of per-underlying requirements, or ``"correlation"``:
        ``sqrt(R^T rho R)`` with the ``(U, U)`` matrix ``correlation``.
    check_psd
        Check that ``correlation`` is positive semi-definite (LAPACK ``eigvalsh``). The
        engine checks its venue's matrix once when the venue is loaded and passes False:
        LAPACK's kernels are chosen by CPU, and a check on the decision path could
        refuse a borderline matrix on one machine and accept it on another.
    coin
        Optional booleans per underlying: revalue that underlying's positions in its
        coin (a coin-settled, inverse book: a future's P&L ``size m / (1 + m)``, an
        option's ``size (V0 / F - V_s / F_s)``, contingencies in coin) and convert its
        requirement to the quote currency at ``underlying_price``. Default: every
        underlying when the grid's ``pnl_currency`` is ``"coin"``, none otherwise.

    Returns
    -------
    PortfolioMargin
        ``mm``, ``im``, ``worst_scenario`` per account and the per-underlying parts.

    Raises
    ------
    ValueError
        On malformed input (see :func:`scenario_losses`) or an invalid correlation
        matrix.
    """
    loss, acc = scenario_losses(
        account=account, underlying=underlying, kind=kind, strike=strike,
        expiry_yr=expiry_yr, size=size, vol=vol, underlying_price=underlying_price,
        rate=rate, grid=grid, n_accounts=n_accounts, forward=forward,
        price_range=price_range, vol_range_up=vol_range_up, vol_range_down=vol_range_down,
        coin=coin,
    )
    req, scan, worst_u = _requirements(loss, acc, grid, underlying_price, coin)
    mm = combine_requirements(req, combine, correlation, check_psd)
    # The account's worst scenario is that of its largest requirement among the
    # underlyings it holds (-1 when it holds none).
    held = np.where(worst_u >= 0, req, -np.inf)
    top = np.argmax(held, axis=1) if req.shape[1] else np.zeros(req.shape[0], np.int64)
    worst = (
        np.take_along_axis(worst_u, top[:, None], axis=1)[:, 0]
        if req.shape[1] else np.full(req.shape[0], -1, dtype=np.int64)
    )
    return PortfolioMargin(
        mm=mm,
        im=cast(Float64Array1D, mm * grid.im_factor),
        worst_scenario=cast(Int64Array1D, worst.astype(np.int64)),
        requirement=req,
        scan_loss=scan,
        worst_scenario_by_underlying=worst_u,
    )
