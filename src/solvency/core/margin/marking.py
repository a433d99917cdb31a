"""A price update's kernel: re-mark one market's holders and value their rows, one pass.

:func:`mark_holders` does what :func:`~.kernels.apply_slots` followed by
:func:`~.kernels.evaluate_rows` do for a market's holder slots (one slot per row: a row
holds a market once), with the same per-position quanta (the engine's own
:func:`~.kernels.slot_quanta`) and the same row valuation, so the two paths give the same
integers and the same floats bit for bit (tests hold them to each other). What it adds
is memory-level parallelism: the holders of a market are scattered over the slot table
and the row sums (two cache misses per holder on a book of a million accounts), and one
iteration of the re-mark is long enough (the tier search, the roundings) that the CPU
never has more than one or two of those misses in flight. A software prefetch of the
slot ``PREFETCH_SLOTS`` holders ahead, and of its row ``PREFETCH_ROWS`` ahead, keeps
them in flight: on the 2-core AMD EPYC VM (512 KiB L2) the re-mark and valuation of one
market's 100,023 holders in a 1,000,000-account book take 3.1 ms of CPU time against
20.2 ms for the two kernels (bench/bench_engine.py, both in one run; docs/benchmarks.md).
A prefetch is a hint to the cache, it changes no value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.extending import intrinsic, overload

from solvency.core.margin.kernels import (
    MK_CV,
    MK_KIND,
    MK_LOT,
    MK_MARK,
    MK_OI_CONTRACTS,
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
    _inline,
    _jit,
    _own_quanta,
    _weighted,
    plain_market,
    plain_slot_quanta,
    slot_quanta,
)
from solvency.core.typing import (
    BoolArray1D,
    Float64Array1D,
    Float64Array2D,
    Int64Array1D,
    Int64Array2D,
)

__all__ = ["PREFETCH_ROWS", "PREFETCH_SLOTS", "QUIET_MARGIN", "mark_holders",
           "mark_holders_watch", "prefetch"]

PREFETCH_SLOTS = 32
"""How many holders ahead the slot's cache line is requested."""
PREFETCH_ROWS = 16
"""How many holders ahead the row's cache line is requested (its index is read from the
slot line requested ``PREFETCH_SLOTS - PREFETCH_ROWS`` holders earlier)."""
QUIET_MARGIN = 1e-9
"""Relative margin by which :func:`mark_holders_watch` wants a row's exact ratio of
maintenance to net quanta away from the margin-call level (and from 1, maintenance)
before it leaves the row unvalued; the float valuation's error is a few 1e-16."""


def prefetch(arr: Any, flat_index: Any) -> None:
    """Ask the cache for element ``flat_index`` of the C-contiguous array ``arr``.

    A hint: it reads and changes nothing. In Python (``NUMBA_DISABLE_JIT=1``, or a
    kernel's ``py_func``) it does nothing; compiled, :func:`_prefetch_overload` gives
    it LLVM's ``llvm.prefetch``.
    """


def _prefetch_typer(typingctx: Any, arr: Any, flat_index: Any) -> Any:
    # llvm.prefetch(ptr, rw = 1: the lines are written, locality = 3: keep in all cache
    # levels, cache type = 1: data) on the address of arr.flat[flat_index]
    sig = types.void(arr, flat_index)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), i8p)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = builder.module.globals.get("llvm.prefetch.p0i8")
        if fn is None:
            fn = ir.Function(builder.module, fnty, name="llvm.prefetch.p0i8")
        builder.call(fn, [ptr, i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


_prefetch_llvm: Any = intrinsic(_prefetch_typer)


@overload(prefetch, inline="always")
def _prefetch_overload(arr: Any, flat_index: Any) -> Any:
    # compiled form of prefetch: the intrinsic (a plain call of an intrinsic from Python
    # raises, hence the Python function above and this overload)
    if isinstance(arr, types.Array) and isinstance(flat_index, types.Integer):
        def impl(arr: Any, flat_index: Any) -> None:
            _prefetch_llvm(arr, flat_index)
        return impl
    return None


@_jit
def mark_holders(
    slots: Int64Array1D, st: Int64Array2D, row_int: Int64Array2D, mk: Float64Array2D,
    mki: Int64Array2D, tiers: Float64Array2D, ascale: Float64Array1D, px: Float64Array1D,
    atier_start: Int64Array1D, atier_count: Int64Array1D, atiers: Float64Array2D,
    pm: Float64Array2D, rows_out: Int64Array1D, out: Float64Array2D,
    row_system: BoolArray1D, totals: Int64Array1D,
) -> None:
    """Re-mark ``slots`` at current marks (exact deltas into their rows' sums, as
    :func:`~.kernels.apply_slots`), then ``rows_out[i]`` = the row of ``slots[i]`` and
    ``out[i]`` = its ``(equity, collateral, initial, maintenance)`` in USD (as
    :func:`~.kernels.evaluate_rows`). ``totals`` (4 int64, zero on entry) receives what
    :func:`~.totals.holder_totals` would read of ``slots`` after the re-mark: ``sum
    |value|``, initial and maintenance over the slots of rows that ``row_system`` does
    not flag, and ``sum |value|`` over all (the slot lines are in cache here; a second
    pass over them cost ~0.8 ms a market at 100,000 accounts).

    Each row must appear once among ``slots`` (a market's holders: one slot per row),
    so a row is valued after its only change. ``st`` and ``row_int`` must be
    C-contiguous (the book's arrays are).
    """
    emit = np.empty(slots.shape[0], dtype=np.int64)
    _mark(slots, st, row_int, mk, mki, tiers, ascale, px, atier_start, atier_count, atiers,
          pm, rows_out, out, emit, np.zeros(1, dtype=np.bool_), 0.0, row_system, totals,
          False)


@_jit
def mark_holders_watch(
    slots: Int64Array1D, st: Int64Array2D, row_int: Int64Array2D, mk: Float64Array2D,
    mki: Int64Array2D, tiers: Float64Array2D, ascale: Float64Array1D, px: Float64Array1D,
    atier_start: Int64Array1D, atier_count: Int64Array1D, atiers: Float64Array2D,
    pm: Float64Array2D, rows_out: Int64Array1D, out: Float64Array2D, emit: Int64Array1D,
    warned: BoolArray1D, level: float, row_system: BoolArray1D, totals: Int64Array1D,
) -> int:
    """:func:`mark_holders` that values only the rows whose margin state may have
    changed: every slot is re-marked and every row's sums brought up to date as there
    (``rows_out[i]`` is still the row of ``slots[i]``), but a row whose state the new
    quanta provably leave as it was is not valued. Returns ``k``: ``emit[:k]`` are the
    indices ``i`` of the rows valued, ``out[:k]`` their values, in slot order.

    The state after a mark is what the engine reads of a valuation (``valuation.
    after_valuation``): the margin-call flag (``warned``: the ratio maintenance /
    collateral at or above ``level``) and whether collateral is below maintenance (a
    liquidation). A row is left out only when (a) its only asset is the market's
    settlement asset (no balance, value or requirement in another: its collateral is then
    its equity ``net x px / scale`` and its maintenance ``mm x px / scale``, whatever its
    collateral weights, :func:`~.kernels._own_quanta`) and (b) from its exact quanta
    ``net`` (balance + value) and ``mm``: no maintenance and not warned, or ``net > 0``
    and ``mm < net (1 - 1e-9)`` (not below maintenance) and ``mm / net`` on the side of
    ``level`` its flag says, by a relative margin of ``1e-9`` (:data:`QUIET_MARGIN`). The
    float valuation's ratio is ``mm / net`` within ~8 roundings (a few 1e-16), so the
    margin leaves out only rows the full valuation finds unchanged: ``margin_crossings``
    would flip nothing and the liquidation sweep would find nothing below maintenance.
    No portfolio-margined row may exist (their requirement is not the quanta's): the
    engine calls this only when ``n_pm_rows`` is 0 (``state.Book.mark_market``).
    """
    return _mark(slots, st, row_int, mk, mki, tiers, ascale, px, atier_start, atier_count,
                 atiers, pm, rows_out, out, emit, warned, level, row_system, totals, True)


@_inline
def _mark(
    slots: Int64Array1D, st: Int64Array2D, row_int: Int64Array2D, mk: Float64Array2D,
    mki: Int64Array2D, tiers: Float64Array2D, ascale: Float64Array1D, px: Float64Array1D,
    atier_start: Int64Array1D, atier_count: Int64Array1D, atiers: Float64Array2D,
    pm: Float64Array2D, rows_out: Int64Array1D, out: Float64Array2D, emit: Int64Array1D,
    warned: BoolArray1D, level: float, row_system: BoolArray1D, totals: Int64Array1D,
    watch: bool,
) -> int:
    # the body of mark_holders (watch False: every row valued, out[i] for slots[i]) and
    # mark_holders_watch (watch True: quiet rows left out, out compacted)
    hot_lo = level * (1.0 - QUIET_MARGIN)
    hot_hi = level * (1.0 + QUIET_MARGIN)
    below_lo = 1.0 - QUIET_MARGIN
    k = 0
    n_assets = ascale.shape[0]
    width = row_int.shape[1]
    n = slots.shape[0]
    # a market's holders: its terms read once, and a plain market's quanta computed
    # without slot_quanta's dispatch (the same integers; kernels.plain_slot_quanta)
    m0 = st[slots[0], S_MARKET] if n else 0
    plain = n > 0 and plain_market(m0, mk, mki, tiers)
    inverse = mk[m0, MK_KIND] == 1.0
    cv0 = mk[m0, MK_CV]
    lot0 = mk[m0, MK_LOT]
    mark0 = mk[m0, MK_MARK]
    t00 = mki[m0, MKI_TIER_START]
    tn0 = mki[m0, MKI_TIER_COUNT]
    sc0 = ascale[mki[m0, MKI_SETTLE]]
    n_user = 0
    im_user = 0
    mm_user = 0
    n_all = 0
    for i in range(n):
        if i + PREFETCH_SLOTS < n:
            prefetch(st, slots[i + PREFETCH_SLOTS] * S_COLUMNS)
        if i + PREFETCH_ROWS < n:
            # every cache line of the row: with 4 assets a row is 24 int64 (three lines),
            # and the valuation reads all of them
            base = st[slots[i + PREFETCH_ROWS], S_ROW] * width
            for off in range(0, width, 8):
                prefetch(row_int, base + off)
            prefetch(row_int, base + width - 1)  # a row need not start on a line
        s = slots[i]
        m = st[s, S_MARKET]
        r = st[s, S_ROW]
        rows_out[i] = r
        sa = mki[m, MKI_SETTLE]
        if plain and m == m0:
            v_q, im_q, mm_q = plain_slot_quanta(float(st[s, S_LOTS]), mark0, inverse, cv0,
                                                lot0, t00, tn0, tiers, sc0)
        else:
            v_q, im_q, mm_q = slot_quanta(m, float(st[s, S_LOTS]), mk[m, MK_MARK],
                                          mk[m, MK_OI_CONTRACTS], mk, mki, tiers, ascale,
                                          st[s, S_COST])
        row_int[r, n_assets + sa] += v_q - st[s, S_VALUE]
        row_int[r, 2 * n_assets + sa] += im_q - st[s, S_IM]
        row_int[r, 3 * n_assets + sa] += mm_q - st[s, S_MM]
        st[s, S_VALUE] = v_q
        st[s, S_IM] = im_q
        st[s, S_MM] = mm_q
        # the holder totals (totals.holder_totals), from the quanta just written
        av = v_q if v_q >= 0 else -v_q
        n_all += av
        if not row_system[r]:
            n_user += av
            im_user += im_q
            mm_user += mm_q
        if watch:
            quiet = False
            net_q = row_int[r, sa] + row_int[r, n_assets + sa]
            mm_sa = row_int[r, 3 * n_assets + sa]
            alone = px[sa] > 0.0
            for a in range(n_assets):
                if a != sa and (row_int[r, a] != 0 or row_int[r, n_assets + a] != 0
                                or row_int[r, 2 * n_assets + a] != 0
                                or row_int[r, 3 * n_assets + a] != 0):
                    alone = False
            if alone:
                if mm_sa == 0:
                    quiet = not warned[r]
                elif net_q > 0:
                    fn = float(net_q)
                    fm = float(mm_sa)
                    if fm < fn * below_lo:
                        if fm < fn * hot_lo:
                            quiet = not warned[r]
                        elif fm > fn * hot_hi:
                            quiet = warned[r]
            if quiet:
                continue
        # the row valuation of kernels.evaluate_rows, line for line (inline for the same
        # reason: kernels.value_row_reference)
        weighted = row_int[r, 4 * n_assets]
        equity = 0.0
        collateral = 0.0
        im = 0.0
        mm = 0.0
        n_req = 0
        req_a = -1
        if weighted != 0:
            for a in range(n_assets):
                if row_int[r, 2 * n_assets + a] != 0 or row_int[r, 3 * n_assets + a] != 0:
                    n_req += 1
                    req_a = a
        for a in range(n_assets):
            net = row_int[r, a] + row_int[r, n_assets + a]
            if net != 0:
                v = net / ascale[a] * px[a]
                equity += v
                if weighted == 0 or v <= 0.0:
                    collateral += v
                else:
                    own = _own_quanta(net, row_int[r, 2 * n_assets + a], a, n_req, req_a)
                    if own >= net:
                        collateral += v
                    elif atier_count[a] == 1:
                        v_own = own / ascale[a] * px[a]
                        collateral += v_own + (v - v_own) * atiers[atier_start[a], 1]
                    else:
                        v_own = own / ascale[a] * px[a]
                        collateral += v_own + _weighted(v, a, atier_start, atier_count,
                                                        atiers) - _weighted(
                            v_own, a, atier_start, atier_count, atiers)
            imq = row_int[r, 2 * n_assets + a]
            if imq != 0:
                im += imq / ascale[a] * px[a]
            mmq = row_int[r, 3 * n_assets + a]
            if mmq != 0:
                mm += mmq / ascale[a] * px[a]
        if row_int[r, 4 * n_assets + 1] != 0:
            im = pm[r, 0]
            mm = pm[r, 1]
        out[k, 0] = equity
        out[k, 1] = collateral
        out[k, 2] = im
        out[k, 3] = mm
        emit[k] = i
        k += 1
    totals[0] += n_user
    totals[1] += im_user
    totals[2] += mm_user
    totals[3] += n_all
    return k
