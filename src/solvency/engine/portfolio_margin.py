"""Portfolio margin in the engine: scenario-grid requirements of portfolio-margined rows.

A row in ``portfolio`` mode is margined by the worst loss of its whole portfolio over a
scenario grid (``core/portfolio``) instead of per position: every option is revalued with
Black-76 at its mark volatility and the engine clock (rate 0), futures and perpetuals
linearly; per-underlying worst losses are summed, or combined with the venue's
correlations (``portfolio_margin.combine = "correlation"``). The book keeps the result in
``Book.pm`` (USD, NaN for rows not in portfolio mode), where the margin kernels read it.

:class:`PortfolioMargin` holds the venue's grid and combination rule and computes; the
engine decides when (after a valuation, before a trade or a withdrawal).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np

from solvency.core.margin.kernels import S_LOTS, S_MARKET, S_NEXT
from solvency.core.model.venue import ConfigError
from solvency.core.portfolio import (
    KIND_CALL,
    KIND_FUTURE,
    KIND_PUT,
    ScenarioGrid,
    portfolio_margin,
)
from solvency.core.portfolio.kernel import (
    combine_requirements,
    requirement_parts,
    scenario_losses,
    scenario_moves,
    validate_correlation,
)
from solvency.core.typing import Float64Array1D, Float64Array2D, Int64Array1D
from solvency.engine.option_book import MS_PER_YEAR
from solvency.engine.state import Book

__all__ = ["PortfolioMargin", "underlying_usd"]


class PortfolioMargin:
    """The venue's portfolio-margin rule: a scenario grid and how underlyings combine.

    Parameters
    ----------
    grid
        The scenario grid; None when the engine offers no portfolio mode.
    config
        The venue's ``portfolio_margin`` section: ``combine`` (``"sum"`` or
        ``"correlation"``) and ``correlation`` (``{"BTC/ETH": 0.8}``).
    default_vol
        Volatility of an option market before its first mark implied volatility.
    """

    def __init__(self, grid: ScenarioGrid | None, config: Mapping[str, Any],
                 default_vol: float) -> None:
        self.grid = grid
        section = dict(config)
        unknown_pm = set(section) - {"combine", "correlation"}
        if unknown_pm:
            raise ConfigError(f"portfolio_margin: unknown keys {sorted(unknown_pm)}")
        self.combine = str(section.get("combine", "sum"))
        if self.combine not in ("sum", "correlation"):
            raise ConfigError("portfolio_margin.combine: 'sum' or 'correlation'")
        # {"BTC/ETH": 0.8}: correlation of per-underlying requirements (default 1: sum)
        self.correlation = {tuple(sorted(str(k).split("/"))): float(v)
                            for k, v in dict(section.get("correlation", {})).items()}
        self.default_vol = default_vol
        # The named correlations are checked once here (symmetric PSD, unit diagonal),
        # off the decision path: LAPACK's eigvalsh takes CPU-dependent code paths. Any
        # principal submatrix of a PSD matrix is PSD, so rows holding only these
        # symbols need no check per call; a symbol named nowhere (correlation 1 with
        # every other) is checked when it appears.
        self._checked_symbols: frozenset[str] = frozenset()
        if self.combine == "correlation":
            named = sorted({sym for pair in self.correlation for sym in pair})
            matrix = [[1.0 if a == b else self.correlation.get(tuple(sorted((a, b))), 1.0)
                       for b in named] for a in named]
            try:
                validate_correlation(matrix, len(named))
            except ValueError as exc:
                raise ConfigError(f"portfolio_margin.correlation: {exc}") from None
            self._checked_symbols = frozenset(named)

    def requirements(self, book: Book, ivs: Mapping[int, Decimal], now_ms: int,
                     rows: Int64Array1D, extra: tuple[int, int] | None = None
                     ) -> tuple[Float64Array1D, Float64Array1D]:
        """Scenario-grid (IM, MM) in USD of ``rows``, optionally with ``extra`` =
        (market, lots) added to the first row (a what-if for a trade).

        Every option is fully revalued on the grid (Black-76 at its mark volatility
        ``ivs``, time to expiry from ``now_ms``, rate 0), futures and perpetuals linearly
        (``core/portfolio/kernel.py``); per underlying worst losses are summed.
        """
        assert self.grid is not None
        n = rows.shape[0]
        inputs, pools = self._inputs(book, ivs, now_ms, rows, extra)
        if inputs is None:
            return np.zeros(n), np.zeros(n)
        symbols = [sym for sym, _ in pools]
        corr = self._corr(symbols)
        res = portfolio_margin(**inputs, **self._ranges(symbols), rate=0.0, grid=self.grid,
                               n_accounts=n,
                               combine="correlation" if corr is not None else "sum",
                               correlation=corr,
                               check_psd=not set(symbols) <= self._checked_symbols)
        return np.asarray(res.im, dtype=np.float64), np.asarray(res.mm, dtype=np.float64)

    def _ranges(self, symbols: list[str]) -> dict[str, Float64Array1D]:
        """The scan ranges per kernel underlying: the grid file's ``[underlyings.SYM]``
        where given (SPAN's ranges are per combined commodity), else the grid's."""
        assert self.grid is not None
        pr, up, down = self.grid.ranges(symbols)
        return {"price_range": pr, "vol_range_up": up, "vol_range_down": down}

    def _corr(self, symbols: list[str]) -> Float64Array2D | None:
        if self.combine != "correlation":
            return None
        return np.array([[1.0 if a == b else self.correlation.get(
            tuple(sorted((a, b))), 1.0) for b in symbols] for a in symbols])

    def breakdown(self, book: Book, ivs: Mapping[int, Decimal], now_ms: int,
                  row: int) -> dict[str, Any]:
        """The requirement of one row, part by part, from the same computation the
        engine margins with: per underlying (by symbol) its price, the weighted loss of
        every scenario (the risk vector: price move, vol move, weight, loss in USD), the
        worst scenario, the scan loss, the delta charge, the offsetting-futures (roll)
        charge, the short-option minimum and the requirement; then the row's
        maintenance and initial margin (USD floats). The scenario losses and charges
        are in the grid's P&L currency (``pnl_currency``: USD, or the underlying's coin
        for a coin grid such as ``deribit_pm``), ``requirement_usd`` and the margins in
        USD."""
        assert self.grid is not None
        grid = self.grid
        rows = np.array([row], dtype=np.int64)
        inputs, pools = self._inputs(book, ivs, now_ms, rows, None)
        symbols = [sym for sym, _ in pools]
        out: dict[str, Any] = {"grid": grid.name, "title": grid.title,
                               "source": grid.source, "combine": self.combine,
                               "mm_factor": grid.mm_factor, "im_factor": grid.im_factor,
                               "pnl_currency": grid.pnl_currency,
                               "underlyings": [], "maintenance_margin": 0.0,
                               "initial_margin": 0.0}
        if inputs is None:
            return out
        ranges = self._ranges(symbols)
        loss, acc = scenario_losses(**inputs, **ranges, rate=0.0, grid=grid, n_accounts=1)
        parts = requirement_parts(loss, acc, grid, inputs["underlying_price"],
                                  inputs["coin"])
        moves = scenario_moves(grid, ranges["price_range"], len(symbols))
        for u, (sym, coin) in enumerate(pools):
            out["underlyings"].append({
                "underlying": f"{sym} ({sym}-settled)" if coin else sym,
                "pnl_currency": sym if coin else "USD",
                "price": float(inputs["underlying_price"][u]),
                "price_range": float(ranges["price_range"][u]),
                "worst_scenario": int(parts.worst[0, u]),
                "scan_loss": float(parts.scan[0, u]),
                "delta_charge": float(parts.delta[0, u]),
                "roll_charge": float(parts.roll[0, u]),
                "short_option_minimum": float(parts.short_option_minimum[0, u]),
                "requirement": float(parts.requirement[0, u]),
                "requirement_usd": float(parts.requirement_quote[0, u]),
                "scenarios": [
                    {"price_move": float(moves[u, s_]), "vol_move": float(grid.vol_move[s_]),
                     "weight": float(grid.weight[s_]),
                     "loss": float(parts.weighted[0, u, s_])}
                    for s_ in range(grid.n_scenarios)],
            })
        # combined from the same parts (no second scan), as portfolio_margin combines them
        corr = self._corr(symbols)
        mm = combine_requirements(parts.requirement_quote,
                                  "correlation" if corr is not None else "sum", corr,
                                  check_psd=not set(symbols) <= self._checked_symbols)
        out["maintenance_margin"] = float(mm[0])
        out["initial_margin"] = float(mm[0] * grid.im_factor)
        return out

    def _inputs(self, book: Book, ivs: Mapping[int, Decimal], now_ms: int,
                rows: Int64Array1D, extra: tuple[int, int] | None
                ) -> tuple[dict[str, Any] | None, list[tuple[str, bool]]]:
        """The kernel's position arrays for ``rows`` (None without positions) and its
        underlyings in kernel order: (symbol, coin). Under a coin grid
        (``pnl_currency = "coin"``, Deribit) a symbol's coin-settled instruments (settled
        in the base coin: inverse futures, BTC options) are a pool of their own,
        revalued in the coin, its linear (USDC-settled) ones another, in USD, as
        Deribit margins a BTC book and a USDC book apart."""
        # A fixed order that follows from the state alone (the same live and after a
        # restore, which renumbers slots): each row's positions by market index, the
        # underlyings by symbol. The kernel adds losses in this order. Vectorized over
        # the rows: their slot lists are walked one link deep at a time (a row holds a
        # few positions), and every per-position value is an array operation in the
        # same order of the same IEEE operations as the per-position formula.
        st = book.st
        owner_parts: list[Int64Array1D] = []
        slot_parts: list[Int64Array1D] = []
        idx = np.arange(rows.shape[0], dtype=np.int64)
        cur = book.row_first[rows].astype(np.int64)
        live = cur >= 0
        idx, cur = idx[live], cur[live]
        while cur.shape[0]:
            owner_parts.append(idx)
            slot_parts.append(cur)
            cur = st[cur, S_NEXT].astype(np.int64)
            live = cur >= 0
            idx, cur = idx[live], cur[live]
        slots = np.concatenate(slot_parts) if slot_parts else np.zeros(0, np.int64)
        owner = np.concatenate(owner_parts) if owner_parts else np.zeros(0, np.int64)
        market = st[slots, S_MARKET].astype(np.int64)
        lots = st[slots, S_LOTS].astype(np.int64)
        if extra is not None and extra[1] and rows.shape[0]:
            here = np.flatnonzero((owner == 0) & (market == extra[0]))
            if here.shape[0]:
                lots[here[0]] += extra[1]
            else:
                owner = np.append(owner, 0)
                market = np.append(market, extra[0])
                lots = np.append(lots, extra[1])
        order = np.lexsort((market, owner))  # by row, then market
        owner, market, lots = owner[order], market[order], lots[order]
        held = lots != 0
        owner, market, lots = owner[held], market[held], lots[held]
        split = self.grid is not None and self.grid.pnl_currency == "coin"

        def pool(m: int) -> tuple[str, bool]:
            inst = book.instruments[m]
            return str(inst.base), split and inst.settle == inst.base

        # per held market (a few; never a loop over the rows or the positions)
        held_markets, at = np.unique(market, return_inverse=True)
        markets = held_markets.tolist()
        pools = sorted({pool(m) for m in markets})
        u_of = {p: u for u, p in enumerate(pools)}
        default_iv = Decimal(str(self.default_vol))
        n_held = len(markets)
        m_und = np.empty(n_held, dtype=np.int64)
        m_kind = np.empty(n_held, dtype=np.int8)
        m_strike = np.empty(n_held)
        m_expiry = np.empty(n_held)
        m_vol = np.empty(n_held)
        m_lot = np.empty(n_held)
        m_cs = np.empty(n_held)
        m_mark = np.ones(n_held)  # divides an inverse future's size; 1 elsewhere
        m_inverse_future = np.zeros(n_held, dtype=np.bool_)
        for j, m in enumerate(markets):
            inst = book.instruments[m]
            m_und[j] = u_of[pool(m)]
            m_lot[j] = book.lot_size[m]
            m_cs[j] = float(inst.contract_size)
            if inst.is_option:
                m_kind[j] = KIND_CALL if inst.option_kind == "call" else KIND_PUT
                m_strike[j] = float(inst.strike or 0)
                m_expiry[j] = max((inst.expiry_ms or 0) - now_ms, 1) / MS_PER_YEAR
                m_vol[j] = float(ivs.get(m, default_iv))
                continue
            m_kind[j] = KIND_FUTURE
            m_strike[j] = 0.0
            m_expiry[j] = 0.0
            m_vol[j] = float("nan")
            if inst.is_inverse:
                m_mark[j] = float(book.mk[m, 3])
                m_inverse_future[j] = True
        if owner.shape[0] == 0:
            return None, pools
        # contracts = lots x lot size x contract size, left to right as in Python
        contracts = lots.astype(np.float64) * m_lot[at] * m_cs[at]
        size = np.where(m_inverse_future[at], contracts / m_mark[at], contracts)
        prices = np.array([underlying_usd(book, sym) for sym, _ in pools])
        return ({"account": owner, "underlying": m_und[at], "kind": m_kind[at],
                 "strike": m_strike[at], "expiry_yr": m_expiry[at], "size": size,
                 "vol": m_vol[at], "underlying_price": prices,
                 "coin": np.array([c for _, c in pools], dtype=np.bool_)}, pools)


def underlying_usd(book: Book, symbol: str) -> float:
    """USD price of an underlying coin: its asset price, else a futures market's mark."""
    a = book.asset_index.get(symbol)
    if a is not None and np.isfinite(book.asset_price[a]):
        return float(book.asset_price[a])
    for m, inst in enumerate(book.instruments):
        if inst.base == symbol and not inst.is_option and book.marks[m] is not None:
            return float(book.marks[m] or 0)
    return float("nan")
